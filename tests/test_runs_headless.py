"""`opstui deploy run --follow`, `runs list|logs|cancel`, run as a CI job would: real processes,
a signed-in profile, a runner working in this process, real asyncssh hosts, a real git repo."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest

from opstui.runs import api
from tests import ssh_support
from tests.conftest import demo_password
from tests.runner_support import (
    close_runner,
    make_deployment,
    make_repo,
    make_runner,
    register_hosts,
    team_id,
    trusting,
    wait_run,
)
from tests.ssh_support import until

ssh_hosts, ssh_home = ssh_support.ssh_hosts, ssh_support.ssh_home


@pytest.fixture
def env(tmp_path, backend_info, ssh_home) -> dict[str, str]:
    config = tmp_path / "config"
    config.mkdir()
    (config / "config.toml").write_text(
        f'default_profile = "local"\n\n[profiles.local]\nurl = "{backend_info.url}"\n'
        f'anon_key = "{backend_info.anon_key}"\n'
    )
    return {
        **os.environ,
        "OPSTUI_CONFIG_DIR": str(config),
        "OPSTUI_DATA_DIR": str(tmp_path / "data"),
    }


async def _opstui(env, *args: str, stdin: str = "", timeout: float = 60):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "opstui", *args, env=env,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), timeout)
    return subprocess.CompletedProcess(args, proc.returncode, out.decode(), err.decode())


@pytest.fixture
async def setup(backend, sign_in, ssh_hosts, env, tmp_path):
    login = await _opstui(env, "login", "--email", "admin@acme.test", stdin=demo_password(backend.info, "admin@acme.test") + "\n")
    assert login.returncode == 0, login.stderr
    admin = await sign_in("admin@acme.test")
    team = await team_id(admin)
    servers = [await ssh_hosts("h1"), await ssh_hosts("b")]
    hosts = await register_hosts(admin, team, servers)
    runner = make_runner(admin, trusting(tmp_path, servers))
    task = asyncio.create_task(runner.run())
    yield admin, team, servers, hosts
    await close_runner(runner, task)


async def test_deploy_run_follow_streams_host_prefixed_lines_and_exits_by_the_outcome(
    setup, env, tmp_path
):
    admin, team, servers, hosts = setup
    ok_repo = make_repo(
        tmp_path / "ok", {"hello.sh": "#!/bin/sh\necho hello from $OPSTUI_DEMO_HOST\n"}
    )
    ok = await make_deployment(admin, team, ok_repo, hosts, ["hello.sh"])
    result = await _opstui(env, "deploy", "run", ok["name"], "--team", "Platform", "--follow")
    assert result.returncode == 0, result.stderr
    names = {h["id"]: h["name"] for h in hosts}
    for host in hosts:
        short = host["name"].rsplit("-", 1)[1]
        assert any(
            line.startswith(names[host["id"]]) and line.endswith(f"| hello from {short}")
            for line in result.stdout.splitlines()
        ), result.stdout
    assert "succeeded" in result.stderr.splitlines()[-1] and "2 succeeded" in result.stderr

    bad_repo = make_repo(
        tmp_path / "bad",
        {"check.sh": '#!/bin/sh\n[ "$OPSTUI_DEMO_HOST" = b ] && exit 5\necho ok\n'},
    )
    bad = await make_deployment(admin, team, bad_repo, hosts, ["check.sh"], max_failures=1)
    failed = await _opstui(env, "deploy", "run", bad["name"], "--follow", "--json")
    assert failed.returncode == 1, failed.stderr
    events = [json.loads(line) for line in failed.stdout.splitlines()]
    assert events[0]["event"] == "queued" and events[-1]["event"] == "finished"
    assert events[-1]["status"] == "failed"
    by_host = {h["host"]: h for h in events[-1]["hosts"]}
    assert (
        by_host[hosts[1]["name"]]["exit_code"] == 5
        and by_host[hosts[0]["name"]]["status"] == "succeeded"
    )
    logs = [e for e in events if e["event"] == "log"]
    assert {"seq", "host", "stream", "line"} <= set(logs[0])
    assert any(e["line"] == "ok" and e["host"] == hosts[0]["name"] for e in logs)

    # Without --follow it only queues (exit 0) and says which run.
    queued = await _opstui(env, "deploy", "run", ok["name"])
    assert queued.returncode == 0 and "queued run #2" in queued.stderr
    run = await api.find_run(admin, f"{ok['name']}#2", team)
    await wait_run(admin, run["id"])

    # runs list / runs logs
    listed = await _opstui(env, "runs", "list", "--team", "Platform")
    assert listed.returncode == 0 and f"{ok['name']}#2\tsucceeded" in listed.stdout
    as_json = await _opstui(env, "runs", "list", "--json")
    listed_rows = json.loads(as_json.stdout)  # one JSON array, as `hosts list --json`
    assert isinstance(listed_rows, list) and any(row["id"] == run["id"] for row in listed_rows)
    logs = await _opstui(env, "runs", "logs", f"{ok['name']}#1")
    assert logs.returncode == 0 and "hello from h1" in logs.stdout

    # Refusals are one line: an unknown deployment, a run going on.
    unknown = await _opstui(env, "deploy", "run", "no-such-deployment")
    assert unknown.returncode == 1 and unknown.stderr.count("\n") == 1
    assert "no deployment named 'no-such-deployment'" in unknown.stderr


async def test_runs_cancel_stops_a_followed_run(setup, env, tmp_path):
    admin, team, servers, hosts = setup
    repo = make_repo(tmp_path / "long", {"long.sh": "#!/bin/sh\necho started\nexec sleep 60\n"})
    deployment = await make_deployment(admin, team, repo, hosts[:1], ["long.sh"])
    follower = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "opstui", "deploy", "run", deployment["name"], "--follow", env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    run = None

    async def started() -> bool:
        nonlocal run
        runs = await api.list_runs(admin, team, limit=20)
        run = next((r for r in runs if r["deployment_id"] == deployment["id"]), None)
        return bool(run and run["status"] == "running")

    deadline = asyncio.get_running_loop().time() + 20
    while not await started():
        assert asyncio.get_running_loop().time() < deadline, "the run never started"
        await asyncio.sleep(0.2)
    again = await _opstui(env, "deploy", "run", deployment["name"])
    assert again.returncode == 1 and "running" in again.stderr and again.stderr.count("\n") == 1
    cancel = await _opstui(env, "runs", "cancel", f"{deployment['name']}#{run['number']}")
    assert cancel.returncode == 0 and "cancel requested" in cancel.stderr
    out, err = await asyncio.wait_for(follower.communicate(), 20)
    assert follower.returncode == 1 and "cancelled" in err.decode().splitlines()[-1]
    assert "started" in out.decode()
    done = await _opstui(env, "runs", "cancel", run["id"])
    assert done.returncode == 1 and "already cancelled" in done.stderr
    await until(lambda: True)


async def test_deploy_run_follow_says_when_no_runner_claims_it_and_times_out(
    backend, sign_in, ssh_hosts, env, tmp_path
):
    login = await _opstui(env, "login", "--email", "admin@acme.test", stdin=demo_password(backend.info, "admin@acme.test") + "\n")
    assert login.returncode == 0, login.stderr
    admin = await sign_in("admin@acme.test")
    team = await team_id(admin)
    servers = [await ssh_hosts("h1")]
    hosts = await register_hosts(admin, team, servers)
    repo = make_repo(tmp_path / "q", {"hello.sh": "#!/bin/sh\necho hi\n"})
    deployment = await make_deployment(admin, team, repo, hosts, ["hello.sh"])
    quick = {**env, "OPSTUI_QUEUED_NOTICE_SECONDS": "0.3"}

    # No runner: one line says why it waits; --timeout gives up (exit 1), the run stays queued.
    waited = await _opstui(quick, "deploy", "run", deployment["name"], "--follow", "--timeout", "2")
    assert waited.returncode == 1, waited.stderr
    assert "run #1 is queued and no runner has claimed it yet" in waited.stderr
    assert "is `opstui runner` running for this team?" in waited.stderr
    assert "stopped waiting for run #1 after 2s; the run goes on" in waited.stderr.splitlines()[-1]
    assert "Traceback" not in waited.stderr
    run = await api.find_run(admin, f"{deployment['name']}#1", team)
    assert run["status"] == "queued"
    await api.cancel(admin, run["id"])

    # Without --timeout it keeps waiting after the notice, and exits by the outcome once a
    # runner comes.
    follower = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "opstui", "deploy", "run", deployment["name"], "--follow", env=quick,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    seen = ""
    while "no runner has claimed it yet" not in seen:
        seen += (await asyncio.wait_for(follower.stderr.readline(), 30)).decode()
    runner = make_runner(admin, trusting(tmp_path, servers))
    task = asyncio.create_task(runner.run())
    try:
        out, err = await asyncio.wait_for(follower.communicate(), 60)
    finally:
        await close_runner(runner, task)
    assert follower.returncode == 0, seen + err.decode()
    assert "hi" in out.decode()

    bad = await _opstui(env, "deploy", "run", deployment["name"], "--timeout", "5")
    assert bad.returncode != 0 and "--follow" in bad.stderr and "Traceback" not in bad.stderr
