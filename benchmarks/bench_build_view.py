"""The TUI's CI/CD path, measured: trigger from the form -> the build's first log line on screen.

    .venv/bin/python benchmarks/bench_build_view.py [--triggers 10]

An ephemeral embedded backend runs on its own thread (no demo runner); a FAKE Jenkins
(queue delay 0.1 s, one log line every 50 ms) and a BuildWorker (the runner's build loop,
production settings, as dev@acme.test) share this process and its event loop with the real
app (admin@acme.test). Each round: `x` on the job in the CI/CD view, then the trigger form's
save action (what `ctrl+s` runs; the clock starts there), and the clock stops when the build view's log pane shows the first chunk, and then
the first line Jenkins printed ("Checking out revision"). Target: p50 under 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine, median, percentile  # noqa: E402


def _s(samples: list[float]) -> str:
    return f"p50 {median(samples):.3f} s, p99 {percentile(samples, 99):.3f} s (n={len(samples)})"


async def _until(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.002)
    return True


async def _first_chunk_time(client, build_id: str):
    from opstui.views import parse_time

    rows = (
        await client.table("cicd_build_logs").select("created_at").eq("build_id", build_id)
        .order("seq").limit(1).execute()
    ).data  # fmt: skip
    return parse_time(rows[0]["created_at"])


async def main(triggers: int) -> None:
    from supabase import acreate_client

    from opstui.backend.background import BackgroundBackend
    from opstui.backend.fake_cicd import FakeJenkins
    from opstui.cicd import api
    from opstui.connect import EmbeddedConnector
    from opstui.runs.builds import BuildSettings, BuildWorker
    from opstui.session import Target
    from opstui.ui.app import OpsApp
    from opstui.ui.screens.build import BuildScreen
    from opstui.ui.screens.cicd import CicdScreen, TriggerScreen
    from opstui.ui.widgets.log_pane import LogPane
    from opstui.ui.widgets.resource_table import ResourceTable
    from opstui.views import parse_time

    background = BackgroundBackend(ephemeral=True, ssh_demo_hosts=False, demo_live_runs=False)
    info = await background.wait()
    fake = await FakeJenkins(queue_seconds=0.1, line_seconds=0.05).start()
    runner = await acreate_client(info.url, info.anon_key)
    password = next(u["password"] for u in info.users if u["email"] == "dev@acme.test")
    await runner.auth.sign_in_with_password({"email": "dev@acme.test", "password": password})
    team = (await runner.table("teams").select("id").eq("name", "Platform").execute()).data[0]["id"]
    provider = (
        await runner.table("cicd_providers")
        .insert({"name": "bench-fake-jenkins", "type": "jenkins", "url": fake.url, "team_id": team,
                 "config": {"username": fake.user, "api_token": fake.token}})
        .execute()
    ).data[0]  # fmt: skip
    job = (
        await runner.table("cicd_jobs")
        .insert({"provider_id": provider["id"], "external_id": "build", "name": "bench-build",
                 "team_id": team})
        .execute()
    ).data[0]  # fmt: skip
    worker = BuildWorker(runner, name="bench-runner", settings=BuildSettings())
    worker_task = asyncio.create_task(worker.run())
    print(machine())
    print(f"when: {datetime.now(UTC):%Y-%m-%d %H:%M UTC}; FakeJenkins queue 0.1 s, a line every 50 ms")
    connector = EmbeddedConnector(
        target=Target("embedded", "", "", is_embedded=True),
        backend=background.backend,
        owns_backend=False,
        demo_email="admin@acme.test",
    )
    app = OpsApp(connector)
    to_chunk: list[float] = []
    runner_part: list[float] = []  # requested -> first chunk stored (database clock)
    screen_part: list[float] = []  # first chunk stored -> on screen (same machine's clock)
    to_line: list[float] = []
    try:
        async with app.run_test(size=(160, 50)) as pilot:
            await _until(lambda: app.store is not None and app.store.is_complete("cicd_builds"), 60)
            await pilot.press("5")
            await _until(lambda: isinstance(app.screen, CicdScreen) and app.screen.query(ResourceTable))
            table = app.screen.query_one(ResourceTable)
            await _until(lambda: table.move_to(job["id"]))
            for _ in range(triggers):
                await pilot.press("x")
                await _until(lambda: isinstance(app.screen, TriggerScreen) and app.screen.is_mounted)
                started = time.perf_counter()
                # ctrl+s's action, called directly: pilot.press would wait for the app to go
                # idle, and a streaming log keeps it busy, so its return time says nothing.
                app.screen.action_save()
                await _until(lambda: isinstance(app.screen, BuildScreen) and app.screen.query(LogPane))
                screen = app.screen
                pane = screen.query_one(LogPane)
                if await _until(lambda p=pane: (p.last_seq or 0) >= 1):
                    to_chunk.append(time.perf_counter() - started)
                    shown_at = datetime.now(UTC)
                    stored_at = await _first_chunk_time(runner, screen.build_id)
                    requested_at = parse_time(
                        (await api.get_build(runner, screen.build_id))["requested_at"]
                    )
                    runner_part.append((stored_at - requested_at).total_seconds())
                    screen_part.append((shown_at - stored_at).total_seconds())
                if await _until(lambda p=pane: any("Checking out" in x for x in p.view.plain_lines)):
                    to_line.append(time.perf_counter() - started)
                await _until(lambda s=screen: (s.build or {}).get("status") in api.TERMINAL, 30)
                await pilot.press("escape")
                await _until(lambda: isinstance(app.screen, CicdScreen))
    finally:
        worker.stop()
        await asyncio.wait_for(worker_task, 30)
        await fake.stop()
        background.stop()
    print(f"1. ctrl+s on the trigger form -> first log chunk in the build view: {_s(to_chunk)}")
    print(f"   -> first Jenkins line on screen: {_s(to_line)} (target p50 < 1 s)")
    print(f"   of which: requested -> first chunk stored (runner): {_s(runner_part)}; "
          f"stored -> on screen (Realtime + the build view): {_s(screen_part)}")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triggers", type=int, default=10)
    asyncio.run(main(parser.parse_args().triggers))
