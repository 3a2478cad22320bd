"""The TUI's run view, measured: log line to screen, bulk output, opening a big stored log.

    .venv/bin/python benchmarks/bench_run_view.py [--lines 50] [--bulk-mb 20] [--stored-mb 50]

An ephemeral embedded backend runs on its own thread (no demo runner); a second
supabase-py client plays the runner through the runner RPCs (claim,
append_run_log), and the real app shows the run in its run view (RunWatch ->
RunUpdateArrived -> LogPane). The runner client shares this process and its
event loop with the app, so the lag figures include its JSON encoding too.

1. append_run_log -> the line in the run view's log pane, p50/p99 (one chunk at a time);
2. BULK MB in 256 KB chunks, as fast as the RPC takes them: MB/s onto the screen,
   and the app's event-loop lag (a 10 ms timer) p50/p99 meanwhile;
3. a run with STORED MB of stored log: opening its run view to the last line shown
   (the view reads only the newest 8 MB; older output is left to `opstui runs logs`).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine, median, percentile  # noqa: E402

CHUNK = 256 * 1024


def _ms(samples: list[float]) -> str:
    return (
        f"p50 {median(samples) * 1000:.0f} ms, p99 {percentile(samples, 99) * 1000:.0f} ms "
        f"(n={len(samples)})"
    )


async def _setup_run(info, runner, api) -> str:
    import psycopg

    with psycopg.connect(info.db_url, autocommit=True) as conn:
        team, tenant = conn.execute(
            "select id, tenant_id from teams where name = 'Core'"
        ).fetchone()
        hosts = [r[0] for r in conn.execute("select id from hosts where team_id = %s limit 2", (team,))]
        deployment = conn.execute(
            "insert into deployments (name, team_id, tenant_id, schedule_type, scripts_path, "
            "host_ids) values (%s, %s, %s, 'now', %s, %s::uuid[]) returning id",
            (f"bench-run-view-{time.time_ns()}", team, tenant, ["run.sh"], hosts),
        ).fetchone()[0]
    run_id = await api.launch(runner, str(deployment))
    claimed = await api.claim(runner, "bench-runner", 120)
    assert claimed and claimed["id"] == run_id, "another queued Core run was handed out"
    return run_id


async def _open(app, pilot, run_id: str):
    from opstui.ui.screens.run import RunScreen
    from opstui.ui.widgets.log_pane import LogPane

    app.open_run(run_id)
    while not (isinstance(app.screen, RunScreen) and app.screen.query(LogPane)):
        await asyncio.sleep(0.005)
    return app.screen.query_one(LogPane)


async def main(lines: int, bulk_mb: int, stored_mb: int) -> None:
    from supabase import acreate_client

    from opstui.backend.background import BackgroundBackend
    from opstui.connect import EmbeddedConnector
    from opstui.runs import api
    from opstui.session import Target
    from opstui.ui.app import OpsApp
    from opstui.ui.screens.run import RunScreen

    # The backend on its own thread, as `opstui` runs it; no demo runner (this is the runner).
    background = BackgroundBackend(ephemeral=True, ssh_demo_hosts=False, demo_live_runs=False)
    info = await background.wait()
    backend = background.backend
    try:
        runner = await acreate_client(info.url, info.anon_key)
        password = next(u["password"] for u in info.users if u["email"] == "dev@globex.test")
        await runner.auth.sign_in_with_password({"email": "dev@globex.test", "password": password})
        connector = EmbeddedConnector(
            target=Target("embedded", "", "", is_embedded=True),
            backend=backend,
            owns_backend=False,
            demo_email="ops@globex.test",
        )
        app = OpsApp(connector)
        async with app.run_test(size=(160, 50)) as pilot:
            while app.store is None or not app.store.is_complete("deployment_runs"):
                await asyncio.sleep(0.02)

            # 1. one line at a time
            run_id = await _setup_run(info, runner, api)
            pane = await _open(app, pilot, run_id)
            while app.screen.run is None:
                await asyncio.sleep(0.005)
            latencies = []
            for n in range(1, lines + 1):
                started = time.perf_counter()
                await api.append_log(
                    runner, run_id, [{"host_id": None, "stream": "stdout", "text": f"line {n}\n"}]
                )
                while (pane.last_seq or 0) < n:
                    await asyncio.sleep(0.001)
                latencies.append(time.perf_counter() - started)
            print(f"1. append_run_log -> line in the run view: {_ms(latencies)}")

            # 2. bulk output while the view follows it
            lags: list[float] = []
            last = [time.perf_counter()]

            def tick() -> None:
                now = time.perf_counter()
                lags.append(now - last[0] - 0.010)
                last[0] = now

            timer = app.screen.set_interval(0.010, tick)
            text = ("x" * 99 + "\n") * (CHUNK // 100)
            chunks = bulk_mb * 1024 * 1024 // CHUNK
            started = time.perf_counter()
            for _ in range(chunks):
                await api.append_log(
                    runner, run_id, [{"host_id": None, "stream": "stdout", "text": text}]
                )
            target = lines + chunks
            while (pane.last_seq or 0) < target:
                await asyncio.sleep(0.005)
            elapsed = time.perf_counter() - started
            timer.stop()
            print(
                f"2. {chunks * CHUNK / 1e6:.0f} MB in {chunks} chunks onto the screen: "
                f"{chunks * CHUNK / 1e6 / elapsed:.1f} MB/s; event-loop lag {_ms(lags)}; "
                f"{len(pane.view)} lines kept"
            )
            await api.finish(runner, run_id, "succeeded")
            await pilot.press("escape")

            # 3. open a big stored log
            big = await _setup_run(info, runner, api)
            for _ in range(stored_mb * 1024 * 1024 // CHUNK):
                await api.append_log(runner, big, [{"host_id": None, "stream": "stdout", "text": text}])
            total = stored_mb * 1024 * 1024 // CHUNK
            started = time.perf_counter()
            pane = await _open(app, pilot, big)
            while (pane.last_seq or 0) < total:
                await asyncio.sleep(0.005)
            print(
                f"3. open a run with {stored_mb} MB of stored log to its last line shown: "
                f"{time.perf_counter() - started:.2f} s ({len(pane.view)} lines kept)"
            )
            await api.finish(runner, big, "succeeded")
            assert isinstance(app.screen, RunScreen)
        await runner.realtime.close()
    finally:
        await asyncio.to_thread(background.stop)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=50)
    parser.add_argument("--bulk-mb", type=int, default=20)
    parser.add_argument("--stored-mb", type=int, default=50)
    args = parser.parse_args()
    print(machine())
    asyncio.run(main(args.lines, args.bulk_mb, args.stored_mb))
