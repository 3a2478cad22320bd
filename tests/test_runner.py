"""The runner end to end: real Postgres, real supabase-py, real asyncssh hosts, real git.

A deployment is launched through `launch_deployment`, a `Runner` claims it, fetches the
repository, uploads the scripts over SFTP and runs them; every host's output, exit code and
audit row is checked in the database."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from opstui.runs import api
from opstui.runs.logsink import LogSink
from opstui.runs.logstream import LogChunk, RunLogFollower, SeqMerge
from tests import ssh_support
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

ssh_hosts, ssh_home = ssh_support.ssh_hosts, ssh_support.ssh_home

SCRIPTS = {
    "deploy/01-build.sh": '#!/bin/sh\necho "build on $OPSTUI_DEMO_HOST args=$*"\n'
    'echo "token=$APP_TOKEN"\necho "to stderr" >&2\n',
    "deploy/02-check.sh": '#!/bin/sh\n[ "$OPSTUI_DEMO_HOST" = "b" ] && { echo "b is unhealthy"; exit 3; }\n'
    "echo healthy\n",
    "deploy/03-mark.sh": "#!/bin/sh\ntouch ran-03\necho marked\n",
}


async def test_a_run_on_several_hosts_records_output_exit_codes_and_audit(
    backend, backend_info, sign_in, ssh_hosts, ssh_home, tmp_path
):
    admin = await sign_in("admin@acme.test")
    team = await team_id(admin)
    servers = [await ssh_hosts(n) for n in ("a", "b", "c")]
    hosts = await register_hosts(admin, team, servers)
    repo = make_repo(tmp_path / "repo", SCRIPTS)
    secret = f"s3cr3t-{uuid.uuid4().hex[:8]}"
    deployment = await make_deployment(
        admin, team, repo, hosts, list(SCRIPTS),
        params=["--env 'prod eu' -v", "", ""], env={"APP_TOKEN": secret},
    )  # fmt: skip
    runner = make_runner(admin, trusting(tmp_path, servers))
    task = asyncio.create_task(runner.run())
    try:
        run_id = await api.launch(admin, deployment["id"])
        run = await wait_run(admin, run_id)
    finally:
        await close_runner(runner, task)
    assert run["status"] == "failed" and run["runner_name"] == runner.settings.name
    assert "1 of 3 hosts failed" in run["error"] and "exited with status 3" in run["error"]
    rows = {r["host_id"]: r for r in await api.run_hosts(admin, run_id)}
    a, b, c = (h["id"] for h in hosts)
    assert (rows[a]["status"], rows[a]["exit_code"]) == ("succeeded", 0)
    assert (rows[c]["status"], rows[c]["exit_code"]) == ("succeeded", 0)
    assert (rows[b]["status"], rows[b]["exit_code"]) == ("failed", 3)
    assert all(r["started_at"] and r["finished_at"] for r in rows.values())

    log = await log_text(admin, run_id)
    seqs = [r["seq"] for r in log]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    out_a = host_output(log, a)
    # Parameters arrive as separate, quoted words; environment values reach the script.
    assert "build on a args=--env prod eu -v" in out_a and f"token={secret}" in out_a
    assert "healthy" in out_a and "marked" in out_a
    assert "to stderr" in host_output(log, a, "stderr")
    assert "b is unhealthy" in host_output(log, b) and "marked" not in host_output(log, b)
    # b stopped at its first failing script: the third never ran there.
    assert (servers[0].sandbox / f".opstui/runs/{run_id}").exists() is False  # cleaned up
    assert not list(servers[1].sandbox.rglob("ran-03"))
    # Every script is in the audit trail, and no environment value is.
    audit = db(backend_info, "select host_id, command, exit_code from public.ssh_audit where host_id = any(%s)",
               ([a, b, c],))  # fmt: skip
    assert len([r for r in audit if r[0] == a]) == 3 and len([r for r in audit if r[0] == b]) == 2
    assert sorted(r[2] for r in audit if r[0] == b) == [0, 3]
    assert all(secret not in r[1] for r in audit)
    assert all(secret not in (r["text"] or "") for r in log if r["stream"] == "system")
    # Nothing opstui-ish (keys, tokens) was written onto a host.
    for server in servers:
        for path in server.sandbox.rglob("*"):
            if path.is_file():
                text = path.read_bytes()
                assert backend_info.anon_key.encode() not in text and b"eyJ" not in text


async def test_rollout_stops_past_the_failure_threshold_and_skips_the_rest(
    backend, sign_in, ssh_hosts, ssh_home, tmp_path
):
    admin = await sign_in("admin@acme.test")
    team = await team_id(admin)
    servers = [await ssh_hosts(n) for n in ("b", "x1", "x2", "x3", "x4")]
    hosts = await register_hosts(admin, team, servers)
    repo = make_repo(tmp_path / "repo", {"check.sh": SCRIPTS["deploy/02-check.sh"]})
    deployment = await make_deployment(
        admin, team, repo, hosts, ["check.sh"], batch="2", max_failures=0
    )
    runner = make_runner(admin, trusting(tmp_path, servers))
    task = asyncio.create_task(runner.run())
    try:
        run_id = await api.launch(admin, deployment["id"])
        run = await wait_run(admin, run_id)
    finally:
        await close_runner(runner, task)
    rows = await api.run_hosts(admin, run_id)
    assert [r["batch"] for r in rows] == [1, 1, 2, 2, 3]
    assert [r["status"] for r in rows] == ["failed", "succeeded", "skipped", "skipped", "skipped"]
    assert run["status"] == "failed" and "rollout stopped after batch 1" in run["error"]
    assert run["batch_count"] == 3
    log = await log_text(admin, run_id)
    assert any("rollout stopped after batch 1" in r["text"] for r in log if r["stream"] == "system")


async def test_unreachable_and_unknown_key_hosts_are_per_host_results(
    backend, sign_in, ssh_hosts, ssh_home, tmp_path
):
    admin = await sign_in("admin@acme.test")
    team = await team_id(admin)
    good, stranger, down = (
        await ssh_hosts("good"),
        await ssh_hosts("stranger"),
        await ssh_hosts("down", down=True),
    )
    hosts = await register_hosts(admin, team, [good, stranger, down])
    repo = make_repo(tmp_path / "repo", {"hello.sh": "#!/bin/sh\necho hello\n"})
    deployment = await make_deployment(admin, team, repo, hosts, ["hello.sh"], max_failures=5)
    runner = make_runner(admin, trusting(tmp_path, [good]))  # the stranger's key is unknown
    task = asyncio.create_task(runner.run())
    try:
        run = await wait_run(admin, await api.launch(admin, deployment["id"]))
    finally:
        await close_runner(runner, task)
    rows = {r["host_id"]: r for r in await api.run_hosts(admin, run["id"])}
    g, s, d = (h["id"] for h in hosts)
    assert rows[g]["status"] == "succeeded"
    assert rows[s]["status"] == "unreachable" and "host key unknown" in rows[s]["error"]
    assert "--accept-new" in rows[s]["error"] and "opstui hosts check" in rows[s]["error"]
    assert rows[d]["status"] == "unreachable" and "refused" in rows[d]["error"]
    assert all("\n" not in (r["error"] or "") for r in rows.values())
    assert run["status"] == "failed" and "2 of 3 hosts failed" in run["error"]


async def test_a_second_client_receives_the_log_live_in_order(
    backend, sign_in, ssh_hosts, ssh_home, tmp_path
):
    admin = await sign_in("admin@acme.test")
    watcher = await sign_in("dev@acme.test")
    team = await team_id(admin)
    server = await ssh_hosts("live")
    hosts = await register_hosts(admin, team, [server])
    script = "#!/bin/sh\nfor i in 1 2 3 4 5 6; do echo line-$i; sleep 0.3; done\n"
    repo = make_repo(tmp_path / "repo", {"tick.sh": script})
    deployment = await make_deployment(admin, team, repo, hosts, ["tick.sh"])
    runner = make_runner(admin, trusting(tmp_path, [server]))
    task = asyncio.create_task(runner.run())
    try:
        run_id = await api.launch(admin, deployment["id"])
        follower = RunLogFollower(watcher, run_id, follow=True)
        arrivals: list[tuple[float, LogChunk]] = []
        loop = asyncio.get_running_loop()
        async for batch in follower.batches():
            arrivals += [(loop.time(), c) for c in batch]
    finally:
        await close_runner(runner, task)
    seqs = [c.seq for _, c in arrivals]
    assert seqs == list(range(1, len(seqs) + 1)), "no gap, no duplicate"
    text = "".join(c.text for _, c in arrivals if c.host_id == hosts[0]["id"])
    assert [f"line-{i}" for i in range(1, 7)] == [x for x in text.split() if x.startswith("line-")]
    # It streamed: the lines did not all arrive at the end.
    firsts = [t for t, c in arrivals if "line-1" in c.text]
    lasts = [t for t, c in arrivals if "line-6" in c.text]
    assert lasts[0] - firsts[0] > 0.8
    assert follower.run["status"] == "succeeded"


def test_seq_merge_hands_out_contiguous_chunks_once():
    merge = SeqMerge()
    chunk = lambda n: LogChunk(n, None, "stdout", f"{n}\n")  # noqa: E731
    assert merge.add([chunk(2), chunk(3)]) == [] and merge.missing() == (1, 1)
    assert [c.seq for c in merge.add([chunk(1), chunk(2)])] == [1, 2, 3]
    assert merge.add([chunk(3), chunk(1)]) == [] and merge.missing() is None
    assert [c.seq for c in merge.add([chunk(5), chunk(4)])] == [4, 5]


async def test_log_sink_keeps_the_row_rate_in_budget_whatever_the_hosts():
    calls: list[tuple[float, list[dict]]] = []
    loop = asyncio.get_running_loop()

    async def write(chunks):
        calls.append((loop.time(), chunks))

    sink = LogSink(write, rows_per_second=10, interval=0.05).start()
    started = loop.time()
    for _ in range(40):  # 30 hosts writing steadily for ~2 s
        for host in range(30):
            sink.add(f"h{host}", "stdout", "x" * 10 + "\n")
        await asyncio.sleep(0.05)
    elapsed = loop.time() - started
    await sink.close()
    rows_during = sum(len(c) for t, c in calls if t <= started + elapsed)
    assert rows_during <= 10 * elapsed + 10, f"{rows_during} rows in {elapsed:.1f}s"
    assert all(len(c) <= 10 for t, c in calls if t <= started + elapsed)
    # Nothing lost, per host in order.
    for host in range(30):
        text = "".join(ch["text"] for _, c in calls for ch in c if ch["host_id"] == f"h{host}")
        assert text == ("x" * 10 + "\n") * 40


async def test_one_host_flushes_every_interval():
    calls: list[float] = []
    loop = asyncio.get_running_loop()

    async def write(chunks):
        calls.append(loop.time())

    sink = LogSink(write, interval=0.2).start()
    for _ in range(20):
        sink.add("h", "stdout", "line\n")
        await asyncio.sleep(0.05)
    await sink.close()
    gaps = [b - a for a, b in zip(calls, calls[1:], strict=False)]
    assert len(calls) >= 4 and max(gaps) < 0.45


@pytest.mark.parametrize("bad", ["*/0 * * * *", "61 * * * *", "* * *"])
def test_the_form_validator_is_croniter(bad):
    from opstui.models import validate_cron

    with pytest.raises(ValueError) as error:
        validate_cron(bad)
    assert "cron" in str(error.value) and "\n" not in str(error.value)
    assert validate_cron("0 3 * * MON-FRI") == "0 3 * * MON-FRI"


async def test_a_host_past_its_timeout_fails_and_its_script_is_stopped(
    backend, sign_in, ssh_hosts, ssh_home, tmp_path
):
    from tests.runner_support import LONG, process_alive, recorded_pid

    admin = await sign_in("admin@acme.test")
    team = await team_id(admin)
    server = await ssh_hosts("slow")
    hosts = await register_hosts(admin, team, [server])
    repo = make_repo(tmp_path / "repo", {"long.sh": LONG})
    deployment = await make_deployment(admin, team, repo, hosts, ["long.sh"], timeout=2)
    runner = make_runner(admin, trusting(tmp_path, [server]))
    task = asyncio.create_task(runner.run())
    try:
        run = await wait_run(admin, await api.launch(admin, deployment["id"]), timeout=20)
    finally:
        await close_runner(runner, task)
    row = (await api.run_hosts(admin, run["id"]))[0]
    assert row["status"] == "failed" and "timed out after 2s" in row["error"]
    pid = recorded_pid(server)
    assert pid and not process_alive(pid)


async def test_git_fetch_errors_are_one_line_and_never_show_the_token(tmp_path):
    import socket

    from opstui.runs.gitfetch import GitFetchError, fetch

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = "ghp_" + uuid.uuid4().hex
    with pytest.raises(GitFetchError) as failed:
        await fetch(f"http://127.0.0.1:{port}/acme/app.git", "main", tmp_path / "x", token=token)
    message = str(failed.value)
    assert "cannot fetch http://127.0.0.1" in message and "\n" not in message
    assert token not in message and "check the URL" in message
    with pytest.raises(GitFetchError) as userinfo:
        await fetch(f"http://user:{token}@127.0.0.1:{port}/a.git", None, tmp_path / "y")
    assert token not in str(userinfo.value)
    # A branch that does not exist, in a real local repository.
    repo = make_repo(tmp_path / "repo", {"a.sh": "echo a\n"})
    with pytest.raises(GitFetchError) as branch:
        await fetch(str(repo), "no-such-branch", tmp_path / "z")
    assert "no-such-branch" in str(branch.value)
    assert len(await fetch(str(repo), None, tmp_path / "ok")) == 40
