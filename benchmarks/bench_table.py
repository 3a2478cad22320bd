"""The resource list at scale: 100k deployments through TableView and the Textual table.

Measures, on this machine:
- TableView: load + sort, a whole filter scan (narrowing and not), a live change;
- the ResourceTable widget in a headless Textual app: first paint of 100k rows,
  keys typed into a filter box to the frame that shows the result (and to the
  final row count), a live change to repaint, and peak memory.
Usage: python benchmarks/bench_table.py [--rows N]
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine  # noqa: E402

from opstui.resources import RESOURCES  # noqa: E402
from opstui.views import TableView  # noqa: E402

SPEC = RESOURCES["deployments"]
STATUSES = ["pending", "scheduled", "in_progress", "success", "failed", "cancelled"]
SERVICES = ["api", "web", "billing", "search", "ledger", "auth", "edge", "batch"]


def make_rows(count: int) -> dict[str, dict]:
    rng = random.Random(42)
    rows = {}
    for i in range(count):
        key = f"00000000-0000-4000-8000-{i:012d}"
        day = 1 + i % 28
        rows[key] = {
            "id": key,
            "name": f"{rng.choice(SERVICES)}-{rng.choice(['prod', 'staging', 'canary'])}-{i}",
            "status": rng.choice(STATUSES),
            "schedule_type": rng.choice(["now", "later", "cron"]),
            "cron_expression": "*/15 * * * *" if i % 3 == 0 else None,
            "host_ids": ["h1", "h2"],
            "started_at": f"2026-11-{day:02d}T10:00:00Z",
            "completed_at": f"2026-11-{day:02d}T10:03:10Z" if i % 5 else None,
            "created_at": f"2026-11-{day:02d}T09:{i % 60:02d}:00Z",
            "team_id": "t1",
        }
    return rows


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def bench_view(rows: dict[str, dict]) -> None:
    view = TableView(SPEC.columns)
    view.set_sort("created_at", reverse=True)
    started = time.perf_counter()
    view.set_rows(dict(rows))
    print(f"TableView load+sort {len(rows):,} rows: {ms(time.perf_counter() - started)}")
    typed = []
    while not view.warm_search(budget=len(rows)):
        pass  # the widget does this between frames after a load
    for text in ["b", "bi", "bil", "bill", "billing-p", "!canary", "fail.*9$", ""]:
        started = time.perf_counter()
        view.set_filter(text)
        view.finish_scan()
        typed.append(time.perf_counter() - started)
        print(f"  filter {text!r:<12} -> {len(view.keys):>6,} rows, whole scan {ms(typed[-1])}")
    print(f"  whole filter scan median {ms(statistics.median(typed))}, max {ms(max(typed))}")
    rng = random.Random(1)
    keys = list(rows)
    samples = []
    for _ in range(500):
        key = rng.choice(keys)
        row = {
            **view.rows[key],
            "status": rng.choice(STATUSES),
            "created_at": "2026-11-30T00:00:00Z",
        }
        started = time.perf_counter()
        view.upsert(key, row)
        samples.append(time.perf_counter() - started)
    print(
        f"  live change (upsert + reorder) median {ms(statistics.median(samples))}, max {ms(max(samples))}"
    )


# Typed into the filter box one key at a time, as a person would; "ctrl+u" clears it.
TYPED = ["b", "i", "l", "l", "i", "n", "g", "ctrl+u"]
TYPED += ["!", "c", "a", "n", "a", "r", "y", "ctrl+u"]
TYPED += ["f", "a", "i", "l", ".", "*", "9", "dollar_sign", "ctrl+u"]


class FrameClock:
    """When frames reach the terminal driver (`App._display`, where Textual writes them)."""

    def __init__(self, app) -> None:
        self.frames: list[float] = []
        display = app._display

        def timed_display(screen, renderable):
            self.frames.append(time.perf_counter())
            return display(screen, renderable)

        app._display = timed_display

    async def first_after(self, moment: float) -> float:
        import asyncio

        while not self.frames or self.frames[-1] < moment:
            await asyncio.sleep(0.0005)
        return next(f for f in self.frames if f >= moment)


async def type_filters(
    pilot, clock: FrameClock, table, open_key: str | None = None
) -> tuple[list[float], list[float]]:
    """Per key: time to the first frame drawn after the table applied it, and to the final count.

    The filter box is opened with `open_key` (the real screens' "/"), or by a click.
    """
    import asyncio

    applied: list[float] = []
    set_filter = table.set_filter

    def timed_set_filter(text: str) -> None:
        set_filter(text)
        applied.append(time.perf_counter())

    table.set_filter = timed_set_filter
    if open_key:
        await pilot.press(open_key)
    else:
        await pilot.click("#filter")
    repaint, counted = [], []
    for key in TYPED:
        await pilot.pause()
        applied.clear()
        started = time.perf_counter()
        await pilot.press(key)
        while not applied:
            await asyncio.sleep(0.0005)
        repaint.append(await clock.first_after(applied[0]) - started)
        while table.view.scanning:
            await asyncio.sleep(0.0005)
        counted.append(time.perf_counter() - started)
    return repaint, counted


def summary(samples: list[float]) -> str:
    ordered = sorted(samples)
    return (
        f"median {ms(statistics.median(ordered))}, p90 {ms(ordered[int(len(ordered) * 0.9)])}, "
        f"max {ms(ordered[-1])} over {len(ordered)}"
    )


async def bench_widget(rows: dict[str, dict]) -> None:
    from textual import on
    from textual.app import App, ComposeResult
    from textual.widgets import Input

    from opstui.ui.widgets.resource_table import ResourceTable

    class Bench(App):
        def compose(self) -> ComposeResult:
            yield Input(id="filter")
            yield ResourceTable(SPEC, id="table")

        @on(Input.Changed)
        def _typed(self, event: Input.Changed) -> None:
            self.query_one(ResourceTable).set_filter(event.value)

    app = Bench()
    async with app.run_test(size=(160, 50)) as pilot:
        clock = FrameClock(app)
        table = app.query_one(ResourceTable)
        await pilot.pause()
        # The store paints the first page (200 rows) as soon as it arrives...
        first_page = dict(list(rows.items())[:200])
        started = time.perf_counter()
        table.load(first_page)
        painted = await clock.first_after(time.perf_counter())
        print(
            f"ResourceTable: first page (200 rows) to painted: {ms(painted - started)} (target 500 ms)"
        )
        # ...and swaps in the whole snapshot once it is complete.
        started = time.perf_counter()
        table.load(dict(rows))
        painted = await clock.first_after(time.perf_counter())
        print(f"  whole snapshot of {len(rows):,} rows to painted: {ms(painted - started)}")
        # Filter text is prepared between frames after a load; wait for it (a condition).
        lags, last = [], time.perf_counter()
        while table._warming is not None:
            await pilot.pause(0.005)
            now = time.perf_counter()
            lags.append(now - last)
            last = now
        print(
            f"  filter text prepared in the background; longest frame gap meanwhile {ms(max(lags or [0]))}"
        )
        repaint, counted = await type_filters(pilot, clock, table)
        print(f"  filter keystroke to repaint: {summary(repaint)} keys (target 50 ms)")
        print(f"  filter keystroke to final row count: {summary(counted)} keys")
        rng = random.Random(2)
        keys = [table.view.key_at(i) for i in range(40)]
        samples = []
        for _ in range(50):
            await pilot.pause()
            key = rng.choice(keys)
            row = {**table.view.rows[key], "status": rng.choice(STATUSES)}
            started = time.perf_counter()
            table.apply_change(key, row)
            samples.append(await clock.first_after(time.perf_counter()) - started)
        print(f"  live change to repaint: {summary(samples)} changes (target 50 ms)")


def main() -> None:
    import asyncio

    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    print(machine())
    rows = make_rows(args.rows)
    bench_view(rows)
    asyncio.run(bench_widget(rows))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MiB (target 500 MiB)")


if __name__ == "__main__":
    main()
