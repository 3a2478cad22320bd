"""The embedded demo: safe on a shared machine (issue 9 §6), runs its deployments for real
(issue 8 §3), and its data tells no lies (issue 11 §7)."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import socket
import stat
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import bcrypt
import psycopg
import pytest

from opstui.backend import demo
from opstui.backend.demo_repos import FAILING_HOST, ensure_repos, repo_path
from opstui.backend.demo_runner import DemoRunners
from opstui.backend.demo_ssh import DemoSshFleet
from opstui.backend.embedded import EmbeddedBackend, PortInUse
from opstui.runs.gitfetch import fetch
from tests.runner_support import TERMINAL, log_text, wait_run
from tests.sql_fixtures import FIXED_NOW, prepared_database


def _rows(info, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(info.db_url, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def _loopback(url: str) -> bool:
    host = urlsplit(url).hostname
    return host is not None and ipaddress.ip_address(host).is_loopback


# -- issue 9 §6: no published password, nothing off the machine --------------------------


async def test_demo_passwords_are_made_per_install_and_kept_private(backend, backend_info, sign_in):
    passwords = {u["email"]: u["password"] for u in backend_info.users}
    assert set(passwords) == set(demo.DEMO_EMAILS)
    assert "opstui-demo" not in passwords.values()
    assert len(set(passwords.values())) == len(passwords), "one password per account"
    path = demo.accounts_file(backend._root)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = {a["email"]: a["password"] for a in json.loads(path.read_text())["accounts"]}
    assert stored == passwords
    # The published password opens nothing; this install's does.
    client = await sign_in()
    with pytest.raises(Exception, match="(?i)invalid"):
        await client.auth.sign_in_with_password(
            {"email": "admin@acme.test", "password": "opstui-demo"}
        )
    await client.auth.sign_in_with_password(
        {"email": "admin@acme.test", "password": passwords["admin@acme.test"]}
    )


def _opstui(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OPSTUI_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "opstui", *args], capture_output=True, text=True, env=env,
        timeout=60, check=False,
    )  # fmt: skip


def test_opstui_demo_accounts_prints_the_accounts_with_their_passwords(tmp_path):
    missing = _opstui("demo", "accounts", data_dir=tmp_path)
    assert missing.returncode == 1
    assert missing.stderr.count("\n") == 1 and "start the demo once" in missing.stderr
    passwords, _ = demo.load_or_create_accounts(tmp_path / "embedded")
    shown = _opstui("demo", "accounts", data_dir=tmp_path)
    assert shown.returncode == 0, shown.stderr
    for email, password in passwords.items():
        line = next(line for line in shown.stdout.splitlines() if line.startswith(email))
        assert password in line
    as_json = json.loads(_opstui("demo", "accounts", "--json", data_dir=tmp_path).stdout)
    assert {a["email"]: a["password"] for a in as_json} == passwords


def test_every_address_the_demo_seeds_is_loopback_or_a_local_path(backend_info):
    hosts = _rows(backend_info, "select name, ip, port from hosts")
    assert len(hosts) >= 20
    for name, ip, _port in hosts:
        assert ipaddress.ip_address(ip).is_loopback, (name, ip)
    # Hosts the demo seeds that are not lab servers sit where nothing listens: a check fails
    # fast, locally. (Other tests add their own rows to this shared backend: left out here.)
    seeded = {entry[0] for team_hosts in demo._HOSTS.values() for entry in team_hosts}
    idle = [(ip, port) for name, ip, port in hosts if name in seeded and "lab" not in name]
    assert idle and all(ip.startswith("127.0.0.2") for ip, _ in idle)
    assert {port for _, port in idle} <= {demo.UNUSED_PORT, 5985, 5986}
    for (url,) in _rows(backend_info, "select url from cicd_providers"):
        assert _loopback(url), url
    for (url,) in _rows(backend_info, "select server_url from git_providers where server_url is not null"):
        assert _loopback(url), url
    for (url,) in _rows(
        backend_info,
        "select build_url from deployment_cicd_mappings where build_url is not null"
        " union all select url from cicd_builds where url is not null",
    ):
        assert _loopback(url), url
    seeded = set(demo.DEMO_EMAILS)  # (other tests add repositories of their own)
    repos = _rows(
        backend_info,
        "select r.name, r.url from repositories r join profiles p on p.id = r.creator_id"
        " where p.email = any(%s) and r.name = any(%s)",
        (list(seeded), [name for _, _, name, *_ in demo._REPOS]),
    )
    assert len(repos) == len(demo._REPOS)
    for name, url in repos:
        assert "://" not in url and Path(url).is_absolute(), url
        assert (Path(url) / "HEAD").is_file(), f"{name}: {url} is not a git repository"
    for (url,) in _rows(
        backend_info, "select distinct spec->>'repository_url' from deployment_runs"
        " where runner_name = 'demo-runner'",
    ):  # fmt: skip
        assert url and "://" not in url, url


# -- issue 8 §3: real repositories, real scripts, real runs ---------------------------------


async def test_the_demo_repositories_are_real_and_their_health_check_fails_on_one_host(tmp_path):
    repos = tmp_path / "repos"
    assert await ensure_repos(repos, [("demo-app", "trunk")]) == []
    head = (repo_path(repos, "demo-app") / "refs" / "heads" / "trunk").read_text()
    assert await ensure_repos(repos, [("demo-app", "trunk")]) == []  # idempotent
    assert (repo_path(repos, "demo-app") / "refs" / "heads" / "trunk").read_text() == head
    commit = await fetch(str(repo_path(repos, "demo-app")), "trunk", tmp_path / "clone")
    assert commit == head.strip()

    async def health(host: str) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            "sh", str(tmp_path / "clone" / "scripts" / "healthcheck.sh"),
            env={"PATH": os.environ["PATH"], "OPSTUI_DEMO_HOST": host},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await process.communicate()
        return process.returncode, out.decode()

    (ok, ok_out), (bad, bad_out) = await asyncio.gather(health("lab-web-01"), health(FAILING_HOST))
    assert ok == 0 and "\x1b[32m" in ok_out and "healthy" in ok_out
    assert bad == 1 and "503 Service Unavailable" in bad_out


def test_the_seeded_history_is_runs_that_finished_and_deployments_follow_them(backend_info):
    runs = _rows(
        backend_info,
        "select r.status, d.status, r.started_at = d.started_at, count(h.*), count(l.*)"
        " from deployment_runs r join deployments d on d.id = r.deployment_id"
        " left join deployment_run_hosts h on h.run_id = r.id"
        " left join deployment_run_logs l on l.run_id = r.id and l.host_id is null"
        " where r.runner_name = 'demo-runner' and r.number = (select max(number)"
        "  from deployment_runs x where x.deployment_id = r.deployment_id)"
        " group by r.id, d.id",
    )
    assert len(runs) >= 20
    follows = {"succeeded": "success", "failed": "failed", "cancelled": "cancelled"}
    statuses = set()
    for run_status, deployment_status, _same, _hosts, system_lines in runs:
        assert deployment_status == follows[run_status]
        assert system_lines >= 2  # claimed ... run <status>
        statuses.add(run_status)
    assert statuses == set(follows)
    # Nothing ticks forever: no seeded run is left going, no deployment in_progress without one.
    assert _rows(
        backend_info, "select count(*) from deployment_runs where runner_name like 'demo-runner%%'"
        " and status in ('queued', 'running')",
    ) == [(0,)]  # fmt: skip
    stuck = _rows(
        backend_info,
        "select d.name from deployments d where d.status = 'in_progress' and not exists"
        " (select 1 from deployment_runs r where r.deployment_id = d.id and r.status = 'running')",
    )
    assert stuck == []
    failed = _rows(
        backend_info,
        "select h.host_name, h.status, h.exit_code from deployment_runs r"
        " join deployments d on d.id = r.deployment_id join deployment_run_hosts h on h.run_id = r.id"
        " where d.name = 'lab-full-rollout' and r.number = 3 order by h.position",
    )
    assert failed == [("lab-web-01", "succeeded", 0), ("lab-db-01", "failed", 1),
                      ("localhost-lab", "skipped", None)]  # fmt: skip


def test_seeded_rows_tell_the_truth_and_an_old_install_loses_the_published_password(
    cluster, tmp_path
):
    """Issue 11 §7: lab hosts not `offline`, no .ps1 on Linux, tenant names, live runs
    queued; issue 9 §6: passwords survive a restart, the published one is replaced."""
    first, new = demo.load_or_create_accounts(tmp_path)
    assert new and first == demo.load_or_create_accounts(tmp_path)[0]
    with prepared_database(cluster, "truth") as conn:
        # An install seeded before passwords were per install.
        published = dict.fromkeys(demo.DEMO_EMAILS, "opstui-demo")
        demo.seed_demo(conn, now=FIXED_NOW, passwords=published, live_runs=True)
        assert demo.set_passwords(conn, first) == len(demo.DEMO_EMAILS)
        for email, hashed in conn.execute("select email, encrypted_password from auth.users"):
            if email in first:
                assert not bcrypt.checkpw(b"opstui-demo", hashed.encode())
                assert bcrypt.checkpw(first[email].encode(), hashed.encode())
        labs = dict(conn.execute("select name, status from hosts where name like '%%lab%%'"))
        assert labs["localhost-lab"] == "pending" and "lab-web-01" in labs
        assert set(labs.values()) == {"pending"}
        bad = conn.execute(
            "select d.name, h.name from deployments d join hosts h on h.id = any(d.host_ids::text[])"
            " where exists (select 1 from unnest(d.scripts_path) s where s like '%%.ps1')"
            " <> h.is_windows"
        ).fetchall()
        assert bad == []
        names = dict(conn.execute(
            "select p.email, p.tenant_name from profiles p"))  # fmt: skip
        assert names["admin@acme.test"] == "Acme Corp" and names["ops@globex.test"] == "Globex"
        queued = conn.execute(
            "select d.name, r.spec->'rollout'->>'batch_size' from deployment_runs r"
            " join deployments d on d.id = r.deployment_id where r.status = 'queued' order by 1"
        ).fetchall()
        assert queued == [("lab-full-rollout", "2"), ("lab-web-release", "1")]
        # A data directory seeded by an older opstui (documentation addresses, remote URLs,
        # tenant 'pro') is brought up to these rules at start. The documentation address is
        # only stored, never connected to: the restart below rewrites it before anything runs.
        conn.execute("update hosts set ip = '192.0.2.11', port = 22 where name = 'bastion-01'")
        conn.execute("update repositories set url = 'https://github.example.com/acme/ledger'"
                     " where name = 'ledger'")  # fmt: skip
        conn.execute("update cicd_providers set url = 'https://jenkins.acme.test', port = 8443"
                     " where name = 'jenkins-platform'")  # fmt: skip
        conn.execute("update profiles set tenant_name = 'pro'")
        assert demo.repair_old_demo(conn, tmp_path / "repos") >= 4
        assert conn.execute("select ip, port from hosts where name = 'bastion-01'").fetchone() == (
            "127.0.0.201", demo.UNUSED_PORT)  # fmt: skip
        assert conn.execute("select url from repositories where name = 'ledger'").fetchone() == (
            str(tmp_path / "repos" / "ledger.git"),)  # fmt: skip
        assert _loopback(conn.execute(
            "select url from cicd_providers where name = 'jenkins-platform'").fetchone()[0])  # fmt: skip
        assert conn.execute("select count(*) from profiles where tenant_name = 'pro'").fetchone() == (0,)
        assert demo.repair_old_demo(conn, tmp_path / "repos") == 0  # idempotent


async def test_the_demo_runner_runs_a_lab_deployment_for_real(backend, backend_info, sign_in):
    admin = await sign_in("admin@acme.test")
    template = (
        await admin.table("deployments").select("*").eq("name", "lab-full-rollout").execute()
    ).data[0]
    # A copy, so the shared estate keeps its seeded history.
    copy = {k: template[k] for k in ("repository_id", "scripts_path", "host_ids", "team_id",
                                     "environment_vars", "rollout_batch_size", "rollout_max_failures")}  # fmt: skip
    copy["name"] = f"demo-test-{uuid.uuid4().hex[:6]}"
    deployment = (await admin.table("deployments").insert(copy).execute()).data[0]
    runners = DemoRunners()
    await runners.start(backend_info, backend.ssh_demo, schedules=False, builds=False,
                        poll_interval=0.5)  # fmt: skip
    try:
        run_id = (await admin.rpc("launch_deployment", {"p_deployment_id": deployment["id"]}).execute()).data
        run = await wait_run(admin, run_id, TERMINAL, timeout=60)
        hosts = {
            h["host_name"]: h
            for h in (await admin.table("deployment_run_hosts").select("*").eq("run_id", run_id).execute()).data
        }  # fmt: skip
        logs = await log_text(admin, run_id)
    finally:
        await runners.stop()
        await admin.table("deployments").delete().eq("id", deployment["id"]).execute()
    assert run["status"] == "failed" and run["runner_name"] == "demo-runner"
    assert hosts["lab-web-01"]["status"] == "succeeded" and hosts["lab-web-01"]["exit_code"] == 0
    assert hosts["lab-db-01"]["status"] == "failed" and hosts["lab-db-01"]["exit_code"] == 1
    assert hosts["localhost-lab"]["status"] == "skipped"  # batch 2 never started
    text = "".join(chunk["text"] for chunk in logs)
    for step in ("build v2.1.0", "schema at 0043", "app.service active", "503 Service Unavailable"):
        assert step in text, step
    assert "\x1b[" in text  # colour went through as the scripts printed it


# -- issue 11 §7: stable ports ------------------------------------------------------------


async def test_lab_host_ports_are_stable_across_restarts(tmp_path):
    fleet = DemoSshFleet(tmp_path / "ssh-demo")
    await fleet.start()
    ports = {h.name: h.port for h in fleet.hosts}
    await fleet.stop()
    again = DemoSshFleet(tmp_path / "ssh-demo")
    # Another program takes one port meanwhile: that host alone moves.
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", ports["lab-web-01"]))
        squatter.listen()
        await again.start()
        try:
            moved = {h.name: h.port for h in again.hosts}
        finally:
            await again.stop()
    assert moved["lab-web-01"] != ports["lab-web-01"]
    assert {k: v for k, v in moved.items() if k != "lab-web-01"} == {
        k: v for k, v in ports.items() if k != "lab-web-01"
    }


def test_serve_keeps_its_port_per_data_directory_and_says_when_it_is_busy(tmp_path):
    backend = EmbeddedBackend(data_dir=tmp_path, keep_port=True)
    first = backend._bind_gateway(tmp_path)
    port = first.getsockname()[1]
    first.close()
    assert (tmp_path / "gateway-port").read_text().strip() == str(port)
    second = EmbeddedBackend(data_dir=tmp_path, keep_port=True)._bind_gateway(tmp_path)
    try:
        assert second.getsockname()[1] == port
        with pytest.raises(PortInUse) as busy:
            EmbeddedBackend(data_dir=tmp_path, keep_port=True)._bind_gateway(tmp_path)
        assert str(port) in busy.value.strerror and "--port" in busy.value.strerror
        assert "gateway-port" in busy.value.strerror
        # --port overrides (and is not remembered).
        other = EmbeddedBackend(data_dir=tmp_path, keep_port=True, port=0)
        other.port = _free_port()
        override = other._bind_gateway(tmp_path)
        assert override.getsockname()[1] == other.port
        override.close()
        assert (tmp_path / "gateway-port").read_text().strip() == str(port)
    finally:
        second.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_seeded_audit_rows_are_in_the_past(backend_info):
    future = _rows(
        backend_info,
        "select count(*) from ssh_audit a join hosts h on h.id = a.host_id"
        " where h.name like '%%lab%%' and a.started_at > now() + interval '1 minute'",
    )
    assert future == [(0,)]
    assert _rows(backend_info, "select count(*) from ssh_audit a join hosts h on h.id = a.host_id"
                               " where h.name = 'lab-web-01'")[0][0] >= 2  # fmt: skip


async def test_opstui_alone_runs_the_queued_lab_deployments_with_its_own_runners():
    """The TUI's path: the connector starts the demo SSH hosts, then the demo's runners,
    which pick up the runs queued at the first start (that a demo runner finishes a lab
    run is the test above), and stop with the connector."""
    runners = None
    from opstui.backend.background import BackgroundBackend
    from opstui.connect import EmbeddedConnector
    from opstui.session import Target
    background = BackgroundBackend(ephemeral=True, defer_ssh_demo=True, demo_now=FIXED_NOW)
    connector = EmbeddedConnector(
        target=Target("embedded", "", "", is_embedded=True), background=background
    )
    try:
        await connector.start()
        info = connector.backend.info
        assert await connector.resume() is not None
        connector.first_data_shown()
        query = (
            "select d.name, r.status, r.runner_name from deployment_runs r"
            " join deployments d on d.id = r.deployment_id where r.requested_by is not null"
            " and d.name = any(%s) and r.number = (select max(number) from deployment_runs x"
            " where x.deployment_id = r.deployment_id) order by 1"
        )
        names = list(demo.LIVE_LAB_RUNS)
        latest: list = []

        async def claimed() -> bool:
            latest[:] = await asyncio.to_thread(_rows, info, query, (names,))
            return len(latest) == 2 and all(r[1] != "queued" for r in latest)

        deadline = asyncio.get_running_loop().time() + 60
        while not await claimed():
            assert asyncio.get_running_loop().time() < deadline, latest
            await asyncio.sleep(0.25)
        assert [(name, runner) for name, _, runner in latest] == [
            ("lab-full-rollout", "demo-runner"), ("lab-web-release", "demo-runner")]  # fmt: skip
        runners = connector.backend.demo_runners
        while len(runners.runners) < 2:  # the Globex one signs in after Acme's
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.1)
        assert {r.settings.name for r in runners.runners} == {"demo-runner", "demo-runner-globex"}
    finally:
        await connector.close()
    assert runners.stopped and runners.runners == []  # closing stopped them


async def test_the_overview_says_which_counts_are_the_tenants_and_which_the_teams(backend):
    from tests.tui_support import SIZE, make_app, ready, text_of, wait_for

    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        assert "this team" in app.screen.query_one("#hosts-health").border_title
        tier = app.screen.query_one("#tier")
        await wait_for(pilot, lambda: "hosts" in text_of(tier), what="the tenant's usage")
        text = text_of(tier)
        assert "tenant usage" in text and text.index("tenant usage") < text.index("hosts")
