"""Runners racing, dying, stopping and cancelling; big logs; schedules firing once.

`opstui runner` runs as a real subprocess where a signal matters (SIGKILL, SIGTERM)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from opstui.runs import api
from opstui.runs.logstream import RunLogFollower
from opstui.runs.schedule import latest_tick
from opstui.ssh import KnownHosts
from tests import ssh_support, test_ssh_sshd
from tests.conftest import demo_password
from tests.runner_support import (
    close_runner,
    db,
    host_output,
    log_text,
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

# A script that records its pid on the host, then runs until it is stopped.
LONG = '#!/bin/sh\necho $$ > "$HOME/long.pid"\necho started\nexec sleep 120\n'


def _alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def _pid(server) -> int | None:
    path = server.sandbox / "long.pid"
    return int(path.read_text()) if path.exists() and path.read_text().strip() else None


async def _deployment(admin, tmp_path, servers, files, scripts=None, **kwargs):
    team = await team_id(admin)
    hosts = await register_hosts(admin, team, servers)
    repo = make_repo(tmp_path / f"repo-{time.monotonic_ns()}", files)
    return hosts, await make_deployment(admin, team, repo, hosts, scripts or list(files), **kwargs)


async def test_two_runners_racing_claim_each_run_exactly_once(
    backend, sign_in, ssh_hosts, ssh_home, tmp_path
):
    admin = await sign_in("admin@acme.test")
    server = await ssh_hosts("race")
    deployments = []
    for _ in range(6):
        deployments.append(
            (await _deployment(admin, tmp_path, [server], {"hi.sh": "#!/bin/sh\necho hi\n"}))[1]
        )
    known = trusting(tmp_path, [server])
    first, second = make_runner(admin, known), make_runner(admin, known)
    run_ids = [await api.launch(admin, d["id"]) for d in deployments]
    tasks = [asyncio.create_task(r.run()) for r in (first, second)]
    try:
        runs = [await wait_run(admin, run_id) for run_id in run_ids]
    finally:
        for runner, task in zip((first, second), tasks, strict=True):
            await close_runner(runner, task)
    mine = set(run_ids)
    a, b = set(first.claimed) & mine, set(second.claimed) & mine
    assert a | b == mine and not (a & b), "every run claimed exactly once"
    assert len(first.claimed) == len(set(first.claimed))
    assert all(r["status"] == "succeeded" for r in runs)
    assert {r["runner_name"] for r in runs} <= {first.settings.name, second.settings.name}


async def test_cancel_stops_the_remote_process_within_seconds(
    backend, sign_in, ssh_hosts, ssh_home, tmp_path
):
    admin = await sign_in("admin@acme.test")
    servers = [await ssh_hosts("c1"), await ssh_hosts("c2")]
    hosts, deployment = await _deployment(admin, tmp_path, servers, {"long.sh": LONG})
    runner = make_runner(admin, trusting(tmp_path, servers))
    task = asyncio.create_task(runner.run())
    try:
        run_id = await api.launch(admin, deployment["id"])
        await until(lambda: all(_pid(s) for s in servers), 15, "both scripts running")
        pids = [_pid(s) for s in servers]
        assert all(_alive(p) for p in pids)
        asked = time.monotonic()
        await api.cancel(admin, run_id)
        run = await wait_run(admin, run_id, timeout=10)
        took = time.monotonic() - asked
        await until(lambda: not any(_alive(p) for p in pids), 5, "remote processes gone")
    finally:
        await close_runner(runner, task)
    assert run["status"] == "cancelled" and took < 5, f"cancelled after {took:.1f}s"
    rows = await api.run_hosts(admin, run_id)
    assert [r["status"] for r in rows] == ["cancelled", "cancelled"]
    assert all("stopped by the cancel request" in r["error"] for r in rows)


async def test_ten_megabytes_from_one_host_arrive_complete_and_in_order(
    backend, sign_in, ssh_hosts, ssh_home, tmp_path
):
    admin = await sign_in("admin@acme.test")
    watcher = await sign_in("dev@acme.test")
    server = await ssh_hosts("big")
    # 10 MB: 131072 numbered lines of 80 bytes.
    script = "#!/bin/sh\nawk 'BEGIN { for (i = 0; i < 131072; i++) printf \"%079d\\n\", i }'\n"
    hosts, deployment = await _deployment(admin, tmp_path, [server], {"big.sh": script})
    runner = make_runner(admin, trusting(tmp_path, [server]))
    task = asyncio.create_task(runner.run())
    try:
        run_id = await api.launch(admin, deployment["id"])
        received = []
        async for batch in RunLogFollower(watcher, run_id).batches():
            received += batch
    finally:
        await close_runner(runner, task)
    assert [c.seq for c in received] == list(range(1, len(received) + 1))
    text = "".join(c.text for c in received if c.host_id == hosts[0]["id"] and c.stream == "stdout")
    assert len(text) == 131072 * 80
    assert text == "".join(f"{i:079d}\n" for i in range(131072))
    stored = await log_text(admin, run_id)
    assert host_output(stored, hosts[0]["id"]) == text
    # Batched: a few hundred rows for 10 MB, not a row a line.
    assert len(stored) < 300, len(stored)


# -- schedules ----------------------------------------------------------------------------------


async def _seed_fired_tick(admin, deployment_id: str, tick: datetime) -> None:
    """Record that `tick` already fired (its run cancelled at once)."""
    run_id = await api.queue_scheduled(admin, deployment_id, tick.isoformat())
    assert run_id
    await api.cancel(admin, run_id)


async def test_a_cron_tick_with_two_runners_fires_once(
    backend, sign_in, ssh_hosts, ssh_home, tmp_path
):
    admin = await sign_in("admin@acme.test")
    server = await ssh_hosts("cron")
    _, deployment = await _deployment(admin, tmp_path, [server], {"hi.sh": "#!/bin/sh\necho hi\n"},
                                      schedule_type="cron", cron_expression="* * * * *")  # fmt: skip
    now = datetime.now(UTC)
    latest = latest_tick("* * * * *", now)
    await _seed_fired_tick(admin, deployment["id"], latest - timedelta(minutes=1))
    known = trusting(tmp_path, [server])
    runners = [make_runner(admin, known) for _ in range(2)]
    queued = await asyncio.gather(
        *(r.fire_schedules(now, only=[deployment["id"]]) for r in runners)
    )
    queued += await asyncio.gather(
        *(r.fire_schedules(now, only=[deployment["id"]]) for r in runners)
    )  # and again
    mine = [run_id for ids in queued for run_id in ids]
    assert len(mine) == 1, "one tick, one run, whatever the number of runners"
    rows = db(backend.info, "select scheduled_for, trigger from public.deployment_runs "
              "where deployment_id = %s order by scheduled_for", (deployment["id"],))  # fmt: skip
    assert [r[0] for r in rows] == [latest - timedelta(minutes=1), latest]
    assert {r[1] for r in rows} == {"schedule"}
    for runner in runners:
        await runner.pool.close()
    await api.cancel(admin, mine[0])


async def test_missed_ticks_are_not_replayed_and_the_skip_is_logged(
    backend, sign_in, ssh_hosts, ssh_home, tmp_path
):
    admin = await sign_in("admin@acme.test")
    server = await ssh_hosts("missed")
    _, deployment = await _deployment(admin, tmp_path, [server], {"hi.sh": "#!/bin/sh\necho hi\n"},
                                      schedule_type="cron", cron_expression="* * * * *")  # fmt: skip
    now = datetime.now(UTC)
    latest = latest_tick("* * * * *", now)
    await _seed_fired_tick(admin, deployment["id"], latest - timedelta(minutes=10))
    runner = make_runner(admin, trusting(tmp_path, [server]))
    queued = await runner.fire_schedules(now, only=[deployment["id"]])
    await runner.pool.close()
    assert len(queued) == 1
    run = await api.get_run(admin, queued[0])
    assert run["scheduled_for"].startswith(latest.strftime("%Y-%m-%dT%H:%M"))
    count = db(backend.info, "select count(*) from public.deployment_runs where deployment_id = %s",
               (deployment["id"],))[0][0]  # fmt: skip
    assert count == 2, "the nine missed ticks were not replayed"
    log = await log_text(admin, queued[0])
    assert any("skipped 9 missed ticks" in r["text"] for r in log if r["stream"] == "system")
    await api.cancel(admin, queued[0])


async def test_repeat_count_stops_cron_after_n_runs(
    backend, sign_in, ssh_hosts, ssh_home, tmp_path
):
    admin = await sign_in("admin@acme.test")
    server = await ssh_hosts("repeat")
    _, deployment = await _deployment(admin, tmp_path, [server], {"hi.sh": "#!/bin/sh\necho hi\n"},
                                      schedule_type="cron", cron_expression="* * * * *",
                                      repeat_count=2)  # fmt: skip
    latest = latest_tick("* * * * *", datetime.now(UTC))
    await _seed_fired_tick(admin, deployment["id"], latest - timedelta(minutes=3))
    runner = make_runner(admin, trusting(tmp_path, [server]))
    # The second scheduled run is allowed, a third is not.
    second = await runner.fire_schedules(
        latest - timedelta(minutes=2) + timedelta(seconds=1), only=[deployment["id"]]
    )
    assert len(second) == 1
    await api.cancel(admin, second[0])
    third = await runner.fire_schedules(datetime.now(UTC), only=[deployment["id"]])
    await runner.pool.close()
    assert third == []
    count = db(backend.info, "select count(*) from public.deployment_runs where deployment_id = %s",
               (deployment["id"],))[0][0]  # fmt: skip
    assert count == 2


async def test_a_later_schedule_fires_once_at_its_time(
    backend, sign_in, ssh_hosts, ssh_home, tmp_path
):
    admin = await sign_in("admin@acme.test")
    server = await ssh_hosts("later")
    when = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)
    _, deployment = await _deployment(admin, tmp_path, [server], {"hi.sh": "#!/bin/sh\necho hi\n"},
                                      schedule_type="later", scheduled_time=when.isoformat())  # fmt: skip
    runner = make_runner(admin, trusting(tmp_path, [server]))
    early = await runner.fire_schedules(when - timedelta(seconds=30), only=[deployment["id"]])
    fired = await runner.fire_schedules(only=[deployment["id"]])
    again = await make_runner(admin, trusting(tmp_path, [server])).fire_schedules(
        only=[deployment["id"]]
    )
    await runner.pool.close()
    assert early == [] and len(fired) == 1 and again == []
    await api.cancel(admin, fired[0])


# -- the process ----------------------------------------------------------------------------------


_ADMIN_PASSWORD: list[str] = []  # the test backend's (made per backend)


@pytest.fixture
def runner_env(tmp_path, backend_info, ssh_home) -> dict[str, str]:
    _ADMIN_PASSWORD[:] = [demo_password(backend_info, "admin@acme.test")]
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


async def _start_runner_process(env, tmp_path, servers, *args: str) -> asyncio.subprocess.Process:
    # (asyncio, never subprocess.run: the backend under test serves on this event loop)
    login = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "opstui", "login", "--email", "admin@acme.test",
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(login.communicate(f"{_ADMIN_PASSWORD[0]}\n".encode()), 60)
    assert login.returncode == 0, err.decode()
    own = KnownHosts(user_path=tmp_path / "unused", own_path=tmp_path / "data" / "known_hosts")
    for server in servers:
        own.remember("127.0.0.1", server.port, server.host_key())
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "opstui", "runner", "--name", f"proc-{os.getpid()}-{time.monotonic_ns()}",
        "--lease", "5", "--poll", "0.5", *args,
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


async def test_a_runner_killed_mid_run_leaves_a_lost_run_not_a_running_one(
    backend, sign_in, ssh_hosts, ssh_home, tmp_path, runner_env
):
    admin = await sign_in("admin@acme.test")
    server = await ssh_hosts("kill9")
    hosts, deployment = await _deployment(admin, tmp_path, [server], {"long.sh": LONG})
    proc = await _start_runner_process(runner_env, tmp_path, [server])
    try:
        run_id = await api.launch(admin, deployment["id"])
        await wait_run(admin, run_id, statuses={"running"}, timeout=20)
        await until(lambda: _pid(server), 15, "the script started")
        proc.kill()  # SIGKILL: no goodbye, no finish
        await proc.wait()
        run = await api.get_run(admin, run_id)
        assert run["status"] == "running"
        # Any signed-in runner's sweep turns it lost once the 5 s lease lapsed.
        deadline = time.monotonic() + 15
        while run["status"] == "running" and time.monotonic() < deadline:
            await api.expire_leases(admin)
            await asyncio.sleep(0.5)
            run = await api.get_run(admin, run_id)
    finally:
        if proc.returncode is None:
            proc.kill()
        pid = _pid(server)
        if pid and _alive(pid):
            os.kill(pid, signal.SIGKILL)
    assert run["status"] == "lost" and "stopped heartbeating" in run["error"]
    assert "lease expired" in run["error"]
    rows = await api.run_hosts(admin, run_id)
    assert rows[0]["status"] in ("cancelled", "skipped")
    # A retry is a new run, never a silent re-run of this one.
    assert (await api.get_run(admin, run_id))["status"] == "lost"


async def test_sigterm_stops_claiming_cancels_what_it_holds_and_exits_cleanly(
    backend, sign_in, ssh_hosts, ssh_home, tmp_path, runner_env
):
    admin = await sign_in("admin@acme.test")
    server = await ssh_hosts("term")
    hosts, deployment = await _deployment(admin, tmp_path, [server], {"long.sh": LONG})
    proc = await _start_runner_process(runner_env, tmp_path, [server], "--drain", "1")
    try:
        run_id = await api.launch(admin, deployment["id"])
        await until(lambda: _pid(server), 20, "the script started")
        pid = _pid(server)
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
    assert proc.returncode == 0, err.decode()
    assert "stopped cleanly" in err.decode() and "Traceback" not in err.decode()
    run = await api.get_run(admin, run_id)
    assert run["status"] == "cancelled" and "was stopped" in (run["error"] or "")
    rows = await api.run_hosts(admin, run_id)
    assert rows[0]["status"] == "cancelled" and rows[0]["finished_at"]
    await until(lambda: not _alive(pid), 5, "the remote process gone")


# -- the real OpenSSH sshd ----------------------------------------------------------------------

SSHD, sshd = test_ssh_sshd.SSHD, test_ssh_sshd.sshd


@pytest.mark.skipif(SSHD is None, reason="OpenSSH sshd is not installed")
async def test_a_run_on_the_real_sshd_records_output_and_exit_code_and_cancel_kills(
    backend, sign_in, sshd, ssh_home, tmp_path
):
    import getpass
    import pwd
    from pathlib import Path

    from opstui.runs.runner import Runner, RunnerSettings
    from opstui.ssh import ConnectionPool, SshSettings, rpc_password_source

    port, root, client_key = sshd
    admin = await sign_in("admin@acme.test")
    team = await team_id(admin)
    host = (await admin.table("hosts").insert({
        "name": f"rt-sshd-{time.monotonic_ns()}", "type": "ssh", "ip": "127.0.0.1", "port": port,
        "user": getpass.getuser(), "team_id": team,
    }).execute()).data[0]  # fmt: skip
    files = {
        "one.sh": '#!/bin/sh\necho "one on $(id -un) with $GREETING"\necho warn >&2\n',
        "two.sh": "#!/bin/sh\necho two; exit 4\n",
    }
    repo = make_repo(tmp_path / "repo", files)
    deployment = await make_deployment(
        admin, team, repo, [host], list(files), env={"GREETING": "hi there"}
    )
    known = KnownHosts(user_path=tmp_path / "u", own_path=tmp_path / "o")
    known.remember("127.0.0.1", port, asyncssh_public(root))
    pool = ConnectionPool(SshSettings(known_hosts=known, agent_path=None, client_keys=[client_key],
                                      password_source=rpc_password_source(admin)))  # fmt: skip
    runner = Runner(admin, RunnerSettings(name="rt-sshd", lease_seconds=10, poll_interval=1,
                                          schedules=False), pool=pool)  # fmt: skip
    task = asyncio.create_task(runner.run())
    try:
        run = await wait_run(admin, await api.launch(admin, deployment["id"]))
        rows = await api.run_hosts(admin, run["id"])
        log = await log_text(admin, run["id"])
        assert run["status"] == "failed" and (rows[0]["status"], rows[0]["exit_code"]) == (
            "failed",
            4,
        )
        out = host_output(log, host["id"])
        assert f"one on {getpass.getuser()} with hi there" in out and "two" in out
        assert "warn" in host_output(log, host["id"], "stderr")
        assert not (
            Path(pwd.getpwnam(getpass.getuser()).pw_dir) / ".opstui/runs" / run["id"]
        ).exists()

        # Cancel on sshd: the remote process is gone within seconds.
        marker = tmp_path / "sshd-long.pid"
        long_repo = make_repo(
            tmp_path / "long", {"long.sh": f"#!/bin/sh\necho $$ > {marker}\nexec sleep 120\n"}
        )
        long = await make_deployment(admin, team, long_repo, [host], ["long.sh"])
        run_id = await api.launch(admin, long["id"])
        await until(
            lambda: marker.exists() and marker.read_text().strip(), 15, "sshd script running"
        )
        pid = int(marker.read_text())
        asked = time.monotonic()
        await api.cancel(admin, run_id)
        cancelled = await wait_run(admin, run_id, timeout=10)
        await until(lambda: not _alive(pid), 5, "sshd process gone")
        assert cancelled["status"] == "cancelled" and time.monotonic() - asked < 6
    finally:
        runner.stop()
        await asyncio.wait_for(task, 30)
        await pool.close()


def asyncssh_public(root):
    import asyncssh

    return asyncssh.read_public_key(str(root / "host_key.pub"))
