"""`opstui runner` as a real process (SIGKILL mid-run -> lost; SIGTERM -> clean exit), and
the runner against the real OpenSSH sshd."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest

from opstui.runs import api
from opstui.ssh import KnownHosts
from tests import ssh_support, test_ssh_sshd
from tests.conftest import demo_password
from tests.runner_support import (
    LONG,
    deployment_on,
    host_output,
    log_text,
    make_deployment,
    make_repo,
    process_alive,
    recorded_pid,
    team_id,
    wait_run,
)
from tests.ssh_support import until

ssh_hosts, ssh_home = ssh_support.ssh_hosts, ssh_support.ssh_home
SSHD, sshd = test_ssh_sshd.SSHD, test_ssh_sshd.sshd


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
    hosts, deployment = await deployment_on(admin, tmp_path, [server], {"long.sh": LONG})
    proc = await _start_runner_process(runner_env, tmp_path, [server])
    try:
        run_id = await api.launch(admin, deployment["id"])
        await wait_run(admin, run_id, statuses={"running"}, timeout=20)
        await until(lambda: recorded_pid(server), 15, "the script started")
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
        pid = recorded_pid(server)
        if pid and process_alive(pid):
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
    hosts, deployment = await deployment_on(admin, tmp_path, [server], {"long.sh": LONG})
    proc = await _start_runner_process(runner_env, tmp_path, [server], "--drain", "1")
    try:
        run_id = await api.launch(admin, deployment["id"])
        await until(lambda: recorded_pid(server), 20, "the script started")
        pid = recorded_pid(server)
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
    await until(lambda: not process_alive(pid), 5, "the remote process gone")


# -- the real OpenSSH sshd ----------------------------------------------------------------------


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
        await until(lambda: not process_alive(pid), 5, "sshd process gone")
        assert cancelled["status"] == "cancelled" and time.monotonic() - asked < 6
    finally:
        runner.stop()
        await asyncio.wait_for(task, 30)
        await pool.close()


def asyncssh_public(root):
    import asyncssh

    return asyncssh.read_public_key(str(root / "host_key.pub"))
