"""The resource table widget on its own: a big filter is shown before it is fully scanned."""

from __future__ import annotations

import gc
import random

from textual import on
from textual.app import App, ComposeResult

from opstui.resources import RESOURCES
from opstui.store import BIG_SNAPSHOT_ROWS, keep_snapshot_out_of_gc
from opstui.ui.widgets.resource_table import ResourceTable
from tests.tui_support import wait_for

SPEC = RESOURCES["hosts"]
ROWS = 6000


def _rows() -> dict[str, dict]:
    rng = random.Random(5)
    rows = {}
    for i in range(ROWS):
        key = f"h{i:05d}"
        rows[key] = {
            "id": key,
            "name": f"{rng.choice(['web', 'db', 'cache', 'edge'])}-{i}",
            "status": rng.choice(["online", "offline"]),
            "ip": f"192.0.2.{i % 250}",
            "port": 22,
            "user": "ops",
            "is_windows": False,
            "type": "ssh",
            "updated_at": f"2026-11-20T11:{i % 60:02d}:00Z",
        }
    return rows


class TableApp(App):
    def __init__(self) -> None:
        super().__init__()
        self.counted = 0

    def compose(self) -> ComposeResult:
        yield ResourceTable(SPEC, id="table")

    @on(ResourceTable.Counted)
    def _counted(self) -> None:
        self.counted += 1


def _matching(table: ResourceTable, text: str) -> list[str]:
    """Brute force: every row whose name contains `text`, in the table's display order."""
    keys = [k for k, row in table.view.rows.items() if text in row["name"]]
    column = table.view.sort_column
    keys.sort(key=lambda k: (table.view.rows[k][column], k), reverse=table.view.sort_reverse)
    return keys


def _shown(table: ResourceTable) -> list[str]:
    return [table.view.key_at(i) for i in range(len(table.view))]


async def _loaded(app: TableApp, pilot, slice_rows: int) -> ResourceTable:
    """The app's table with every row loaded, scanning `slice_rows` rows a slice."""
    table = app.query_one(ResourceTable)
    table.view.scan_slice_rows = slice_rows
    table.load(_rows())
    await pilot.pause()
    return table


async def test_a_filter_paints_the_first_screen_and_counts_the_rest_between_frames():
    app = TableApp()
    async with app.run_test(size=(120, 30)) as pilot:
        table = await _loaded(app, pilot, slice_rows=64)  # so that 6,000 rows take many slices
        expected = _matching(table, "web")

        table.set_filter("web")
        # At once: at least a screenful, and exactly the top of the full result.
        assert table.view.scanning
        assert table.size.height <= len(table.view) < len(expected)
        assert _shown(table) == expected[: len(table.view)]
        assert app.counted == 0

        await wait_for(pilot, lambda: app.counted == 1, what="the filter's final count")
        assert not table.view.scanning
        assert _shown(table) == expected
        assert table.virtual_size.height == len(expected) + 1


async def test_rare_matches_found_between_frames_are_painted_before_the_count_is_final(
    monkeypatch,
):
    from opstui.ui.widgets import resource_table

    monkeypatch.setattr(resource_table, "FIRST_SCAN_SECONDS", 0)  # one slice per call
    monkeypatch.setattr(resource_table, "BACKGROUND_SCAN_SECONDS", 0)
    app = TableApp()
    async with app.run_test(size=(120, 30)) as pilot:
        table = await _loaded(app, pilot, slice_rows=100)

        table.set_filter("edge-5")  # a few matches per slice: the screen is not full yet
        first = len(table.view)
        assert table.view.scanning and first < table.size.height - 1
        table._scanning.stop()  # drive the between-frames slices by hand
        while len(table.view) == first:
            table._scan_more()
        assert table.view.scanning and len(table.view) < table.size.height
        # The new rows are on screen, so the table was resized (and repainted) for them.
        assert table.virtual_size.height == len(table.view) + 1


async def test_jumping_to_the_bottom_or_marking_all_finishes_the_scan_first():
    app = TableApp()
    async with app.run_test(size=(120, 30)) as pilot:
        table = await _loaded(app, pilot, slice_rows=64)
        expected = _matching(table, "db")
        table.focus()

        table.set_filter("db")
        assert table.view.scanning
        await pilot.press("G")
        assert table.current_key == expected[-1]

        await pilot.press("g")  # back to the top, so the next filter needs only a screenful
        table.set_filter("edge")
        assert table.view.scanning
        table.mark_all_shown()  # ctrl+a on the list screens
        assert table.marked == set(_matching(table, "edge"))


def test_only_big_snapshots_are_frozen_out_of_the_gc():
    before = gc.get_freeze_count()
    try:
        keep_snapshot_out_of_gc(BIG_SNAPSHOT_ROWS - 1)
        assert gc.get_freeze_count() == before
        keep_snapshot_out_of_gc(BIG_SNAPSHOT_ROWS)
        assert gc.get_freeze_count() > before
    finally:
        gc.unfreeze()
