"""Runners racing, dying, stopping and cancelling; big logs; schedules firing once.

`opstui runner` runs as a real subprocess where a signal matters (SIGKILL, SIGTERM)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from opstui.runs import api
from opstui.runs.logstream import RunLogFollower
from opstui.runs.schedule import latest_tick
from tests import ssh_support
from tests.runner_support import (
    LONG,
    close_runner,
    db,
    deployment_on,
    host_output,
    log_text,
    make_runner,
    process_alive,
    recorded_pid,
    trusting,
    wait_run,
)
from tests.ssh_support import until

ssh_hosts, ssh_home = ssh_support.ssh_hosts, ssh_support.ssh_home


async def test_two_runners_racing_claim_each_run_exactly_once(
    backend, sign_in, ssh_hosts, ssh_home, tmp_path
):
    admin = await sign_in("admin@acme.test")
    server = await ssh_hosts("race")
    deployments = []
    for _ in range(6):
        deployments.append(
            (await deployment_on(admin, tmp_path, [server], {"hi.sh": "#!/bin/sh\necho hi\n"}))[1]
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
    hosts, deployment = await deployment_on(admin, tmp_path, servers, {"long.sh": LONG})
    runner = make_runner(admin, trusting(tmp_path, servers))
    task = asyncio.create_task(runner.run())
    try:
        run_id = await api.launch(admin, deployment["id"])
        await until(lambda: all(recorded_pid(s) for s in servers), 15, "both scripts running")
        pids = [recorded_pid(s) for s in servers]
        assert all(process_alive(p) for p in pids)
        asked = time.monotonic()
        await api.cancel(admin, run_id)
        run = await wait_run(admin, run_id, timeout=10)
        took = time.monotonic() - asked
        await until(lambda: not any(process_alive(p) for p in pids), 5, "remote processes gone")
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
    hosts, deployment = await deployment_on(admin, tmp_path, [server], {"big.sh": script})
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
    _, deployment = await deployment_on(admin, tmp_path, [server], {"hi.sh": "#!/bin/sh\necho hi\n"},
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
    _, deployment = await deployment_on(admin, tmp_path, [server], {"hi.sh": "#!/bin/sh\necho hi\n"},
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
    _, deployment = await deployment_on(admin, tmp_path, [server], {"hi.sh": "#!/bin/sh\necho hi\n"},
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
    _, deployment = await deployment_on(admin, tmp_path, [server], {"hi.sh": "#!/bin/sh\necho hi\n"},
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
