"""SSH against the embedded backend's demo hosts: health written through the rpc and
seen live by another client, the audit trail and its RLS, SFTP, a PTY session, and
the headless `opstui exec` / `opstui cp`."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from postgrest.exceptions import APIError

from opstui.ssh import ConnectionPool, SshSettings, SshTarget, rpc_password_source
from opstui.ssh.audit import SupabaseAudit
from opstui.ssh.exec import run_command
from opstui.ssh.health import NOT_PERMITTED, HealthChecker, rpc_health_writer
from opstui.ssh.pty import PtySession
from opstui.ssh.sftp import SftpError, download, upload
from tests import ssh_support
from tests.conftest import demo_password
from tests.ssh_support import until

# Shared fixtures (assigned, so each test's parameters resolve to them).
known, ssh_home = ssh_support.known, ssh_support.ssh_home

WAIT = 10


async def _rows(client, *names: str) -> dict[str, dict]:
    data = (await client.table("hosts").select("*").in_("name", list(names)).execute()).data
    return {r["name"]: r for r in data}


def _pool(backend, known, client) -> ConnectionPool:
    for host in backend.ssh_demo.hosts:
        if not host.down:
            known.remember("127.0.0.1", host.port, host.host_key())
    return ConnectionPool(
        SshSettings(
            known_hosts=known,
            agent_path=None,
            client_keys=None,
            password_source=rpc_password_source(client),
        )
    )


def _db(backend_info, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(backend_info.db_url, autocommit=True) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


async def test_health_by_a_member_who_may_execute_is_written_and_seen_live(
    backend, sign_in, known, ssh_home
):
    dev = await sign_in("dev@acme.test")  # can_execute on hosts: records for the team
    watcher = await sign_in("admin@acme.test")
    rows = await _rows(dev, "lab-web-01", "lab-down-01")
    changes: asyncio.Queue = asyncio.Queue()
    states: asyncio.Queue = asyncio.Queue()
    channel = watcher.channel("ssh-health").on_postgres_changes(
        "UPDATE",
        changes.put_nowait,
        schema="public",
        table="hosts",
        filter=f"team_id=eq.{rows['lab-web-01']['team_id']}",
    )
    await channel.subscribe(lambda state, err: states.put_nowait(state.value))
    assert await asyncio.wait_for(states.get(), WAIT) == "SUBSCRIBED"
    # The developer cannot update hosts directly (update_own only, not the creator)...
    direct = (
        await dev.table("hosts")
        .update({"status": "online"})
        .eq("id", rows["lab-web-01"]["id"])
        .execute()
    )
    assert direct.data == []

    # ...but records health through the rpc.
    async with _pool(backend, known, dev) as pool:
        checker = HealthChecker(pool, writer=rpc_health_writer(dev))
        results = await checker.check_many([SshTarget.from_host(r) for r in rows.values()])
    assert checker.write_errors == []
    by_name = {r.target.name: r for r in results}
    assert by_name["lab-web-01"].status == "online" and by_name["lab-down-01"].status == "offline"
    seen = {}
    while len(seen) < 2:
        record = (await asyncio.wait_for(changes.get(), WAIT))["data"]["record"]
        if record["name"] in rows:
            seen[record["name"]] = record
    web = seen["lab-web-01"]
    assert web["status"] == "online" and web["last_checked_at"]
    assert web["health"]["mem_total_kb"] > 0 and len(web["health"]["load"]) == 3
    assert 0 <= web["health"]["disk_root_used_pct"] <= 100
    assert (
        seen["lab-down-01"]["status"] == "offline"
        and "refused" in seen["lab-down-01"]["health"]["error"]
    )
    await watcher.remove_channel(channel)

    # Only the documented statuses, and only for hosts of the caller's teams.
    with pytest.raises(APIError) as bad:
        await dev.rpc(
            "record_host_health",
            {"p_host_id": rows["lab-web-01"]["id"], "p_status": "great", "p_health": {}},
        ).execute()
    assert "invalid health status" in bad.value.message
    outsider = await sign_in("ops@globex.test")
    with pytest.raises(APIError) as denied:
        await outsider.rpc(
            "record_host_health",
            {"p_host_id": rows["lab-web-01"]["id"], "p_status": "error", "p_health": {}},
        ).execute()
    assert denied.value.code == "42501"


async def test_health_by_a_viewer_is_not_recorded_and_says_why(
    backend, backend_info, sign_in, known, ssh_home
):
    """A viewer may not read the hosts' passwords, so their check fails; recording that
    as the team's health would be a lie. Nothing is written, and the viewer is told."""
    viewer = await sign_in("viewer@acme.test")  # can_select on hosts, no can_execute
    rows = await _rows(viewer, "lab-web-01", "lab-down-01")
    ids = [r["id"] for r in rows.values()]
    state = "select id, status, last_checked_at, health from hosts where id = any(%s) order by id"
    before = _db(backend_info, state, (ids,))
    async with _pool(backend, known, viewer) as pool:
        checker = HealthChecker(pool, writer=rpc_health_writer(viewer))
        targets = [SshTarget.from_host(r) for r in rows.values()]
        results = await checker.check_many(targets)
    assert {r.target.name: r.status for r in results}["lab-web-01"] == "auth_failed"
    assert sorted(checker.write_errors) == sorted(f"{t.label}: {NOT_PERMITTED}" for t in targets)
    assert NOT_PERMITTED == "not recorded: you need execute permission on hosts to record health"
    assert _db(backend_info, state, (ids,)) == before
    with pytest.raises(APIError) as denied:
        await viewer.rpc(
            "record_host_health",
            {"p_host_id": rows["lab-web-01"]["id"], "p_status": "online", "p_health": {}},
        ).execute()
    assert denied.value.code == "42501" and "can_execute on hosts" in denied.value.message


async def test_audit_rows_and_their_rls(backend, backend_info, sign_in, known, ssh_home):
    admin = await sign_in("admin@acme.test")
    me = (await admin.auth.get_user()).user.id
    row = (await _rows(admin, "lab-db-01"))["lab-db-01"]
    marker = f"echo audit-{os.getpid()}-{id(admin)}"
    async with _pool(backend, known, admin) as pool:
        run = run_command(
            pool, [SshTarget.from_host(row)], marker + "; exit 4", audit=SupabaseAudit(admin)
        )
        await run.wait()
    assert run.audit_errors == [] and run.results["lab-db-01"].exit_status == 4
    trail = await SupabaseAudit(admin).trail(row["id"])
    mine = [r for r in trail if r["command"] == marker + "; exit 4"]
    assert len(mine) == 1
    entry = mine[0]
    assert entry["kind"] == "command" and entry["exit_code"] == 4 and entry["profile_id"] == me
    assert entry["team_id"] == row["team_id"] and entry["duration_ms"] >= 0 and entry["started_at"]

    # Another tenant's user sees nothing of it.
    outsider = await sign_in("ops@globex.test")
    assert (
        await outsider.table("ssh_audit").select("*").eq("id", entry["id"]).execute()
    ).data == []
    # Nobody updates or deletes, not even the author.
    for attempt in (
        admin.table("ssh_audit").update({"exit_code": 0}).eq("id", entry["id"]),
        admin.table("ssh_audit").delete().eq("id", entry["id"]),
    ):
        with pytest.raises(APIError) as refused:
            await attempt.execute()
        assert refused.value.code == "42501"
    assert _db(
        backend_info, "select exit_code from public.ssh_audit where id = %s", (entry["id"],)
    ) == [(4,)]
    # Members insert only their own rows, in their own teams.
    dev_id = _db(backend_info, "select id::text from auth.users where email = 'dev@acme.test'")[0][
        0
    ]
    base = {"team_id": row["team_id"], "host_id": row["id"], "kind": "command", "command": "x"}
    for bad in ({**base, "profile_id": dev_id}, {**base, "team_id": outsider_team(backend_info)}):
        with pytest.raises(APIError) as forged:
            await admin.table("ssh_audit").insert(bad).execute()
        assert forged.value.code == "42501"


def outsider_team(backend_info) -> str:
    return _db(backend_info, "select id::text from public.teams where name = 'Core'")[0][0]


async def test_sftp_upload_and_download_with_progress(backend, sign_in, known, ssh_home, tmp_path):
    admin = await sign_in("admin@acme.test")
    row = (await _rows(admin, "lab-db-01"))["lab-db-01"]
    target = SshTarget.from_host(row)
    payload = os.urandom(300_000)
    source = tmp_path / "up.bin"
    source.write_bytes(payload)
    sandbox = backend.ssh_demo.by_name("lab-db-01").sandbox
    up_progress: list[tuple[int, int]] = []
    down_progress: list[tuple[int, int]] = []
    async with _pool(backend, known, admin) as pool:
        assert (
            await upload(
                pool, target, source, "up.bin", progress=lambda d, t: up_progress.append((d, t))
            )
            == 300_000
        )
        assert (sandbox / "up.bin").read_bytes() == payload  # landed in the host's sandbox (chroot)
        back = tmp_path / "down.bin"
        await download(
            pool, target, "/up.bin", back, progress=lambda d, t: down_progress.append((d, t))
        )
        assert back.read_bytes() == payload
        with pytest.raises(SftpError) as missing:
            await download(pool, target, "/no/such/file", tmp_path / "x")
    assert up_progress[-1] == (300_000, 300_000) and len(up_progress) > 1
    assert down_progress[-1] == (300_000, 300_000)
    assert "no such file" in str(missing.value) and "\n" not in str(missing.value)


async def test_pty_session_size_resize_exit_and_audit(backend, sign_in, known, ssh_home):
    admin = await sign_in("admin@acme.test")
    row = (await _rows(admin, "lab-web-01"))["lab-web-01"]
    async with _pool(backend, known, admin) as pool:
        session = await PtySession.open(
            pool, SshTarget.from_host(row), cols=91, rows=27, audit=SupabaseAudit(admin)
        )
        received = bytearray()

        async def reader():
            async for chunk in session:
                received.extend(chunk)

        task = asyncio.create_task(reader())
        session.write(b"echo T=$TERM; stty size\r")
        await until(
            lambda: b"T=xterm-256color" in received and b"27 91" in received, what="pty size"
        )
        session.resize(120, 40)
        session.write(b"stty size\r")
        await until(lambda: b"40 120" in received, what="resized pty")
        session.write(b"exit 7\r")
        await asyncio.wait_for(task, WAIT)
    assert session.closed and session.exit_status == 7
    trail = await SupabaseAudit(admin).trail(row["id"])
    assert any(r["kind"] == "session" and r["exit_code"] == 7 for r in trail)


@pytest.fixture
def cli_env(tmp_path, backend_info, ssh_home) -> dict[str, str]:
    config = tmp_path / "config"
    config.mkdir()
    (config / "config.toml").write_text(
        f'default_profile = "local"\n\n[profiles.local]\nurl = "{backend_info.url}"\nanon_key = "{backend_info.anon_key}"\n'
    )
    return {
        **os.environ,
        "OPSTUI_CONFIG_DIR": str(config),
        "OPSTUI_DATA_DIR": str(tmp_path / "data"),
    }


async def _opstui(env, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "opstui", *args, env=env,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 60)
    return subprocess.CompletedProcess(args, proc.returncode, out.decode(), err.decode())


async def test_headless_exec_and_cp(backend, cli_env, tmp_path):
    login = await _opstui(cli_env, "login", "--email", "admin@acme.test", stdin=demo_password(backend.info, "admin@acme.test") + "\n")
    assert login.returncode == 0, login.stderr
    # Unknown host keys are refused headless...
    refused = await _opstui(
        cli_env, "exec", "--team", "Platform", "--hosts", "lab-web-01", "--", "echo hi"
    )
    assert (
        refused.returncode == 1
        and "host key unknown" in refused.stderr
        and "Traceback" not in refused.stderr
    )
    # ...unless --accept-new; one failing host makes the exit status non-zero.
    both = await _opstui(
        cli_env, "exec", "--team", "Platform", "--hosts", "lab-web-01,lab-down-01", "--accept-new", "--json",
        "--", "echo", "hello",
    )  # fmt: skip
    assert both.returncode == 1, both.stderr
    events = [json.loads(line) for line in both.stdout.splitlines()]
    assert {"event": "output", "host": "lab-web-01", "stream": "stdout", "line": "hello"} in events
    exits = {e["host"]: e for e in events if e["event"] == "exit"}
    assert exits["lab-web-01"]["status"] == "ok" and exits["lab-web-01"]["exit_status"] == 0
    assert (
        exits["lab-down-01"]["status"] == "unreachable"
        and "refused" in exits["lab-down-01"]["error"]
    )
    assert events[-1]["event"] == "summary" and events[-1]["unreachable"] == ["lab-down-01"]
    ok = await _opstui(
        cli_env,
        "exec",
        "--team",
        "Platform",
        "--hosts",
        "lab-web-01",
        "--",
        "echo hi; echo warn >&2; sleep 0.3",
    )
    assert ok.returncode == 0, ok.stderr
    took = float(re.search(r"succeeded.* in (\d+\.\d\d)s", ok.stderr).group(1))
    assert took >= 0.3, ok.stderr
    assert ok.stdout == "lab-web-01 | hi\n" and "lab-web-01 | warn" in ok.stderr

    local = tmp_path / "notes.txt"
    local.write_text("from the laptop\n")
    put = await _opstui(cli_env, "cp", "--team", "Platform", str(local), "lab-web-01:/notes.txt")
    assert put.returncode == 0, put.stderr
    # Without a terminal there is no "\r" progress: one plain line says it is done.
    assert put.stderr.splitlines() == [f"{local} -> lab-web-01:/notes.txt  done, 16 bytes"]
    sandbox = backend.ssh_demo.by_name("lab-web-01").sandbox
    assert (sandbox / "notes.txt").read_text() == "from the laptop\n"
    get = await _opstui(
        cli_env, "cp", "--team", "Platform", "lab-web-01:/README.txt", str(tmp_path / "r.txt")
    )
    assert get.returncode == 0, get.stderr
    assert Path(tmp_path / "r.txt").read_text().startswith("opstui demo host lab-web-01")
    bad = await _opstui(
        cli_env, "cp", "--team", "Platform", "lab-web-01:/missing.txt", str(tmp_path / "m")
    )
    assert (
        bad.returncode == 1
        and "no such file" in bad.stderr
        and len(bad.stderr.strip().splitlines()) == 1
    )
