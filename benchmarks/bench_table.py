"""The resource list at scale: 100k deployments through TableView and the Textual table.

Measures, on this machine:
- TableView: load + sort, a filter keystroke (narrowing and not), a live change;
- the ResourceTable widget in a headless Textual app: first paint of 100k rows,
  a filter keystroke to repaint, a live change to repaint, and peak memory.
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
    for text in ["b", "bi", "bil", "bill", "billing-p", "!canary", "fail.*9$", ""]:
        started = time.perf_counter()
        view.set_filter(text)
        typed.append(time.perf_counter() - started)
        print(f"  filter {text!r:<12} -> {len(view.keys):>6,} rows in {ms(typed[-1])}")
    print(
        f"  filter keystroke median {ms(statistics.median(typed))}, max {ms(max(typed))} (target 50 ms)"
    )
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


async def bench_widget(rows: dict[str, dict]) -> None:
    from textual.app import App, ComposeResult

    from opstui.ui.widgets.resource_table import ResourceTable

    class Bench(App):
        def compose(self) -> ComposeResult:
            yield ResourceTable(SPEC, id="table")

    app = Bench()
    async with app.run_test(size=(160, 50)) as pilot:
        table = app.query_one(ResourceTable)
        await pilot.pause()
        # The store paints the first page (200 rows) as soon as it arrives...
        first_page = dict(list(rows.items())[:200])
        started = time.perf_counter()
        table.load(first_page)
        await pilot.pause()
        print(
            f"ResourceTable: first page (200 rows) to painted: {ms(time.perf_counter() - started)} (target 500 ms)"
        )
        # ...and swaps in the whole snapshot once it is complete.
        started = time.perf_counter()
        table.load(dict(rows))
        await pilot.pause()
        print(
            f"  whole snapshot of {len(rows):,} rows to painted: {ms(time.perf_counter() - started)}"
        )
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
        samples = []
        for text in ["b", "bi", "bil", "bill", "!canary", "fail.*9$", ""]:
            started = time.perf_counter()
            table.set_filter(text)
            await pilot.pause()
            samples.append(time.perf_counter() - started)
        print(
            f"  filter keystroke to repaint median {ms(statistics.median(samples))}, "
            f"max {ms(max(samples))} (target 50 ms; includes ~20 ms of pilot.pause)"
        )
        rng = random.Random(2)
        keys = [table.view.key_at(i) for i in range(40)]
        samples = []
        for _ in range(50):
            key = rng.choice(keys)
            row = {**table.view.rows[key], "status": rng.choice(STATUSES)}
            started = time.perf_counter()
            table.apply_change(key, row)
            await pilot.pause()
            samples.append(time.perf_counter() - started)
        print(
            f"  live change to repaint median {ms(statistics.median(samples))}, "
            f"max {ms(max(samples))} (target 50 ms; includes pilot.pause)"
        )


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
