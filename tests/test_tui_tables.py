"""Pilot tests of the resource tables: widths from the data and the screen, the filter bar."""

from __future__ import annotations

import re

import psycopg
from rich.cells import cell_len

from opstui.ui.screens.resource import ResourceScreen
from opstui.ui.widgets.resource_table import GAP, ResourceTable
from opstui.views import format_cell
from tests.tui_support import SIZE, make_app, ready, wait_for


def _db(backend_info, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(backend_info.db_url, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def _table(app) -> ResourceTable:
    return app.screen.query_one(ResourceTable)


def _cut_cells(table: ResourceTable) -> list[tuple[str, str]]:
    """(column, text) of every cell on screen that does not fit its column."""
    now = table.view.clock()
    cut = []
    for index in range(min(len(table.view), table.size.height - 1)):
        row = table.view.rows[table.view.key_at(index)]
        for column, width in zip(table.spec.columns, table._widths, strict=True):
            text = format_cell(column, row, now, table.labels)
            if cell_len(text) > width:
                cut.append((column.label, text))
    return cut


def _used_width(table: ResourceTable) -> int:
    scrollbar = table.styles.scrollbar_size_vertical
    return sum(table._widths) + GAP * len(table._widths) + 1 + scrollbar


async def test_columns_fit_the_rows_after_a_filter_and_a_team_switch(backend, backend_info):
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("2")
        await wait_for(
            pilot, lambda: isinstance(app.screen, ResourceScreen) and len(_table(app).view)
        )
        # The walk: a filter that nothing in the next team matches, the switch
        # (its table is measured while the filter hides every row), then the filter cleared.
        await pilot.press("slash", *"^lab-web", "enter")
        await pilot.press("colon", *"team Payments", "enter")
        payments = str(_db(backend_info, "select id from teams where name = 'Payments'")[0][0])
        await wait_for(pilot, lambda: app.store.team_id == payments, what="team switched")
        await ready(pilot)
        hosts = _db(backend_info, "select count(*) from hosts where team_id = %s", (payments,))
        table = _table(app)
        await wait_for(pilot, lambda: len(table.view.rows) == hosts[0][0], what="hosts")
        await pilot.press("escape")
        await wait_for(pilot, lambda: not table.view.filter.text, what="the filter cleared")
        await pilot.pause()

        assert len(table.view) == hosts[0][0] > 0
        assert _cut_cells(table) == [], "nothing is cut while the screen has room"
        assert _used_width(table) == table.size.width, "the spare width is used"
        name = next(i for i, c in enumerate(table.spec.columns) if c.key == "name")
        assert table._widths[name] == max(table._widths), "the spare width went to NAME"


async def test_widths_follow_the_terminal_and_never_cut_a_status(backend):
    app = make_app(backend)
    async with app.run_test(size=(200, 30)) as pilot:
        await ready(pilot)
        await pilot.press("2")
        await wait_for(
            pilot, lambda: isinstance(app.screen, ResourceScreen) and len(_table(app).view)
        )
        table = _table(app)
        await pilot.pause()
        wide = list(table._widths)
        assert _used_width(table) == table.size.width > 190

        await pilot.resize_terminal(80, 24)
        await wait_for(pilot, lambda: table.size.width <= 80, what="the resize")
        await pilot.pause()
        narrow = list(table._widths)
        assert sum(narrow) < sum(wide)
        assert _used_width(table) <= table.size.width
        statuses = [c.label for c in table.spec.columns if c.kind == "status"]
        assert statuses and not [c for c in _cut_cells(table) if c[0] in statuses]


async def test_the_filter_matches_columns_alone_and_a_bad_pattern_says_why(backend):
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("2")
        await wait_for(
            pilot, lambda: isinstance(app.screen, ResourceScreen) and len(_table(app).view)
        )
        table = _table(app)
        names = [row["name"] for row in table.view.rows.values()]
        expected = sorted(n for n in names if re.fullmatch(r"lab-.*01", n, re.IGNORECASE))
        assert expected, "the demo team has lab hosts"

        await pilot.press("slash", *"^lab-.*01$")
        await wait_for(pilot, lambda: not table.view.scanning, what="the scan")
        assert sorted(table.view.rows[k]["name"] for k in table.view.keys) == expected

        box = app.screen.query_one("#filter")
        await pilot.press("ctrl+u", *"^lab-[a-")
        await pilot.pause()
        assert box.border_subtitle == "✕ invalid pattern: unterminated character set at 5"
        assert box.has_class("-invalid")
        assert sorted(table.view.rows[k]["name"] for k in table.view.keys) == expected

        await pilot.press("ctrl+u", *"online$")
        await pilot.pause()
        assert box.border_subtitle == "" and not box.has_class("-invalid")
        shown = {table.view.rows[k]["status"] for k in table.view.keys}
        assert shown == {"online"}
