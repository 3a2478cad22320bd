"""A virtual table: renders only the lines on screen from a `TableView`.

The built-in DataTable builds every row up front (21 s for 100k rows on this
machine); this widget's cost per repaint is the visible lines, whatever the
row count. One generic widget serves every resource.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.cells import cell_len
from rich.segment import Segment
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from opstui.resources import ResourceSpec
from opstui.store import keep_snapshot_out_of_gc
from opstui.views import Labels, TableView, format_cell, is_ticking

# Status words to the component class that colours them (see app.tcss).
STATUS_CLASSES = {
    "success": "ok",
    "online": "ok",
    "synced": "ok",
    "connected": "ok",
    "failed": "bad",
    "offline": "bad",
    "error": "bad",
    "in_progress": "busy",
    "testing": "busy",
    "syncing": "busy",
    "running": "busy",
    "pending": "wait",
    "scheduled": "wait",
    "idle": "wait",
    "cancelled": "gone",
    # SSH health results (see ssh/health.py)
    "auth_failed": "bad",
    "host_key_changed": "bad",
    "timeout": "bad",
    "host_key_unknown": "wait",
    # deployment runs and their hosts
    "queued": "wait",
    "succeeded": "ok",
    "lost": "bad",
    "unreachable": "bad",
    "skipped": "gone",
}

GAP = 2
# Column widths come from the data: up to MEASURE_ROWS rows (the top of the display and
# an even sample of the rest), each column capped at its spec width or DEFAULT_CAP;
# status columns exactly as wide as their longest value, over every row. Spare terminal
# width goes to the name and description columns; a too narrow terminal takes width
# from the widest other columns first, down to MIN_WIDTH, and never from a status.
MEASURE_ROWS = 600
DEFAULT_CAP = 32
MIN_WIDTH = 6
GROWING_KEYS = ("name", "description")

# A filter keystroke scans only until the screen is full (or this long), then the
# rest is scanned in short slices between frames, so typing never waits on 100k rows.
FIRST_SCAN_SECONDS = 0.010
BACKGROUND_SCAN_SECONDS = 0.006


def _fit(text: str, width: int) -> str:
    if cell_len(text) <= width:
        return text + " " * (width - cell_len(text))
    return text[: max(0, width - 1)] + "…"


class ResourceTable(ScrollView, can_focus=True):
    """Rows of one resource; the cursor selects a row by key."""

    COMPONENT_CLASSES = {
        "resource-table--header",
        "resource-table--cursor",
        "resource-table--ok",
        "resource-table--bad",
        "resource-table--busy",
        "resource-table--wait",
        "resource-table--gone",
        "resource-table--pinned",
        "resource-table--marked",
    }

    BINDINGS = [
        Binding("up,k", "cursor(-1)", "Up", show=False, id="table.up"),
        Binding("down,j", "cursor(1)", "Down", show=False, id="table.down"),
        Binding("pageup,ctrl+b", "page(-1)", "Page up", show=False, id="table.page_up"),
        Binding("pagedown,ctrl+f", "page(1)", "Page down", show=False, id="table.page_down"),
        Binding("home,g", "jump(0)", "Top", show=False, id="table.top"),
        Binding("end,G", "jump(-1)", "Bottom", show=False, id="table.bottom"),
        Binding("enter", "select", "Detail", id="table.detail"),
    ]

    cursor = reactive(0, always_update=True)

    class Highlighted(Message):
        """The cursor moved to another row (or the row under it changed)."""

        def __init__(self, table: ResourceTable, key: str | None) -> None:
            super().__init__()
            self.table = table
            self.key = key

    class Selected(Message):
        """Enter (or a double click) on a row."""

        def __init__(self, table: ResourceTable, key: str) -> None:
            super().__init__()
            self.table = table
            self.key = key

    class MarksChanged(Message):
        """The set of marked rows changed."""

        def __init__(self, table: ResourceTable, keys: frozenset[str]) -> None:
            super().__init__()
            self.table = table
            self.keys = keys

    class Counted(Message):
        """The filter's scan reached the last row, so `len(table.view)` is final."""

        def __init__(self, table: ResourceTable) -> None:
            super().__init__()
            self.table = table

    class SortChanged(Message):
        def __init__(self, table: ResourceTable, column: str | None, reverse: bool) -> None:
            super().__init__()
            self.table = table
            self.column = column
            self.reverse = reverse

    def __init__(
        self,
        spec: ResourceSpec,
        *,
        clock: Any = None,
        labels: Labels | None = None,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.spec = spec
        self.labels = labels  # names for foreign keys, from rows the store holds
        self.view = TableView(spec.columns, clock=clock, labels=labels)
        # What each column's text needs (measured), and the widths laid out from it.
        self._natural = [cell_len(c.label) for c in spec.columns]
        self._widths = list(self._natural)
        self._laid_out_for = -1  # the width the columns were last laid out for
        self._highlighted: str | None = None
        self._resolved_component_styles: dict[str, Any] = {}
        self._warming: Any = None  # the interval timer preparing filter text, if running
        self._scanning: Any = None  # the interval timer finishing a filter's scan, if running
        self.marked: set[str] = set()  # multi-selection (space, ctrl+a), kept across filters
        if spec.order_by in {c.key for c in spec.columns} or spec.order_by:
            self.view.sort_column = spec.order_by
            self.view.sort_reverse = spec.order_by in ("created_at", "updated_at")

    # -- data -------------------------------------------------------------------------------

    def load(self, rows: dict[str, dict[str, Any]]) -> None:
        """Replace every row (a snapshot). Keeps the cursor on the same row if it survives."""
        keep = self.current_key
        self.view.set_rows(rows)
        keep_snapshot_out_of_gc(len(rows))  # the view's sort keys and lists are long-lived too
        self._measure()
        self._after_change(keep)
        if len(rows) > 2000 and self._warming is None:
            # Prepare the filter's text in small slices between frames, so the first
            # keystroke on a big table is a scan, and the UI never stalls meanwhile.
            self._warming = self.set_interval(0.01, self._warm_search)

    def _warm_search(self) -> None:
        # 1,500 rows is about 5 ms here: the longest frame gap while warming 100k rows went
        # from 54-122 ms (4,000 a slice) to 32-52 ms.
        if self.view.warm_search(budget=1500) and self._warming is not None:
            self._warming.stop()
            self._warming = None

    def apply_change(self, key: str, row: dict[str, Any] | None) -> None:
        keep = self.current_key
        if row is None:
            self.view.remove(key)
            self.marked.discard(key)
        else:
            self.view.upsert(key, row)
            self._grow_widths(row)
        self._after_change(keep, changed=key)

    def set_filter(self, text: str) -> None:
        keep = self.current_key
        self.view.set_filter(text)
        self._after_change(keep)

    def set_sort(self, column: str | None, reverse: bool) -> None:
        keep = self.current_key
        self.view.set_sort(column, reverse)
        self._after_change(keep)
        self.post_message(self.SortChanged(self, column, reverse))

    def set_pinned(self, keys: set[str]) -> None:
        keep = self.current_key
        self.view.set_pinned(keys)
        self._after_change(keep)

    def toggle_mark(self) -> None:
        key = self.current_key
        if key is None:
            return
        self.marked.symmetric_difference_update({key})
        self.refresh()
        self.post_message(self.MarksChanged(self, frozenset(self.marked)))
        self.action_cursor(1)

    def mark_all_shown(self) -> None:
        """Mark every row the filter shows; if all are already marked, clear the marks."""
        self._finish_scan()
        shown = {self.view.key_at(i) for i in range(len(self.view))}
        if shown and shown <= self.marked:
            self.marked -= shown
        else:
            self.marked |= shown
        self.refresh()
        self.post_message(self.MarksChanged(self, frozenset(self.marked)))

    @property
    def marked_rows(self) -> list[dict[str, Any]]:
        return [self.view.rows[key] for key in self.marked if key in self.view.rows]

    def cycle_sort(self, step: int = 1) -> None:
        keys = [c.key for c in self.spec.columns]
        current = self.view.sort_column
        index = keys.index(current) if current in keys else -1
        self.set_sort(keys[(index + step) % len(keys)], self.view.sort_reverse)

    def toggle_reverse(self) -> None:
        self.set_sort(self.view.sort_column, not self.view.sort_reverse)

    @property
    def current_key(self) -> str | None:
        if not len(self.view):
            return None
        return self.view.key_at(min(self.cursor, len(self.view) - 1))

    @property
    def current_row(self) -> dict[str, Any] | None:
        key = self.current_key
        return self.view.rows.get(key) if key else None

    def move_to(self, key: str) -> bool:
        index = self.view.index_of(key)
        if index is None:
            return False
        self.cursor = index
        return True

    def _after_change(self, keep: str | None, changed: str | None = None) -> None:
        if self.view.scanning:
            # Enough of the filter's result to fill the screen now; the rest in between frames.
            bottom = int(self.scroll_y) + self.size.height
            self.view.scan(seconds=FIRST_SCAN_SECONDS, want=max(bottom, self.cursor) + 1)
            if self._scanning is None:
                self._scanning = self.set_interval(1 / 60, self._scan_more)
        if keep is not None:
            index = self.view.index_of(keep)
            if index is not None:
                self.cursor = index
        self.cursor = max(0, min(self.cursor, len(self.view) - 1))
        self.virtual_size = Size(self._total_width(), len(self.view) + 1)
        self.refresh()
        if changed is not None and changed == self.current_key:
            self.post_message(self.Highlighted(self, changed))

    def _scan_more(self) -> None:
        shown = len(self.view)
        done = self.view.scan(seconds=BACKGROUND_SCAN_SECONDS)
        landed_on_screen = shown < int(self.scroll_y) + self.size.height and len(self.view) > shown
        # A new scroll size means a new layout and a whole-screen repaint, so it waits
        # for the final count unless the screen itself changed.
        if done or landed_on_screen:
            self.virtual_size = Size(self._total_width(), len(self.view) + 1)
            self.refresh()
        if done and self._scanning is not None:
            self._scanning.stop()
            self._scanning = None
            self.post_message(self.Counted(self))

    def _finish_scan(self) -> None:
        if self.view.scanning:
            self.view.finish_scan()
            self._scan_more()

    # -- layout -----------------------------------------------------------------------------

    def _measure(self) -> None:
        """Measure what the columns need from the rows (sampled), then lay them out."""
        rows = self.view.rows
        columns = self.spec.columns
        natural = [cell_len(c.label) for c in columns]
        sample = [self.view.key_at(i) for i in range(min(len(self.view), 50))]
        if len(rows) > MEASURE_ROWS:
            step = len(rows) // MEASURE_ROWS
            sample += list(rows)[::step]
        else:
            sample += list(rows)
        now = self.view.clock()
        for key in dict.fromkeys(sample):
            row = rows.get(key)
            if row is None:
                continue
            for i, column in enumerate(columns):
                if column.kind != "status":
                    text = format_cell(column, row, now, self.labels)
                    natural[i] = max(natural[i], cell_len(text))
        for i, column in enumerate(columns):
            if column.kind == "status":  # exact: a status is never cut
                values = {row.get(column.key) for row in rows.values()}
                natural[i] = max([natural[i], *(cell_len(str(v)) for v in values if v)])
        self._natural = natural
        self._layout()

    def _grow_widths(self, row: dict[str, Any]) -> None:
        now = self.view.clock()
        grown = False
        for i, column in enumerate(self.spec.columns):
            width = cell_len(format_cell(column, row, now, self.labels))
            if width > self._natural[i]:
                self._natural[i] = width
                grown = True
        if grown:
            self._layout()

    def _layout(self) -> None:
        """Widths from the measured needs and the width the table has on screen."""
        columns = self.spec.columns
        natural = self._natural
        status = [c.kind == "status" for c in columns]
        widths = [
            n if status[i] else min(n, columns[i].width or DEFAULT_CAP)
            for i, n in enumerate(natural)
        ]
        growing = [i for i, c in enumerate(columns) if c.key in GROWING_KEYS]
        if not growing:
            growing = [next((i for i, c in enumerate(columns) if c.kind == "text"), 0)]
        # Room on screen, less the marker column, the gaps and a vertical scrollbar (kept
        # free whether shown or not, so that showing it never adds a horizontal one).
        room = self.size.width - self.styles.scrollbar_size_vertical - 1 - GAP * len(columns)
        spare = room - sum(widths)
        if self.size.width and spare > 0:
            for i in growing:  # first up to what they hold, then what is left, shared
                extra = min(spare, natural[i] - widths[i])
                widths[i] += extra
                spare -= extra
            for number, i in enumerate(growing):
                widths[i] += spare // len(growing) + (number < spare % len(growing))
        elif self.size.width and spare < 0:
            floors = [
                widths[i] if status[i] else min(widths[i], max(MIN_WIDTH, cell_len(c.label)))
                for i, c in enumerate(columns)
            ]
            while spare < 0:
                widest = max(range(len(widths)), key=lambda i: widths[i] - floors[i])
                if widths[widest] <= floors[widest]:
                    break  # as narrow as it goes: the rest scrolls sideways
                widths[widest] -= 1
                spare += 1
        self._widths = widths
        self._laid_out_for = self.size.width

    def on_resize(self, event: events.Resize) -> None:
        # Resize also comes for every new scroll size (a filter keystroke): only a new
        # width changes the layout.
        if event.size.width != self._laid_out_for:
            self._layout()
            self.virtual_size = Size(self._total_width(), len(self.view) + 1)
            self.refresh()

    def _total_width(self) -> int:
        return sum(self._widths) + GAP * len(self._widths) + 1

    # -- rendering --------------------------------------------------------------------------

    @property
    def _base_style(self):
        # `rich_style` walks the DOM each time; resolve it once per style change.
        return self._component_style("")

    def _component_style(self, name: str):
        """Component styles, resolved once per theme/CSS change rather than per cell."""
        style = self._resolved_component_styles.get(name)
        if style is None:
            resolved = self.get_component_rich_style(name) if name else self.rich_style
            style = self._resolved_component_styles[name] = resolved
        return style

    def notify_style_update(self) -> None:
        self._resolved_component_styles.clear()
        super().notify_style_update()

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        if y == 0:
            strip = self._header_strip()
        else:
            index = scroll_y + y - 1
            if index >= len(self.view):
                return Strip.blank(width, self._base_style)
            strip = self._row_strip(index)
        return strip.crop_extend(scroll_x, scroll_x + width, self._base_style)

    def _header_strip(self) -> Strip:
        style = self._component_style("resource-table--header")
        segments = [Segment(" ", style)]
        for column, width in zip(self.spec.columns, self._widths, strict=True):
            label = column.label
            if column.key == self.view.sort_column:
                label += "↓" if self.view.sort_reverse else "↑"
            segments.append(Segment(_fit(label, width) + " " * GAP, style))
        return Strip(segments)

    def _row_strip(self, index: int) -> Strip:
        key = self.view.key_at(index)
        row = self.view.rows[key]
        now: datetime = self.view.clock()
        base = self._base_style
        if key in self.view.pinned:
            base = base + self._component_style("resource-table--pinned")
        marked = key in self.marked
        if marked:
            base = base + self._component_style("resource-table--marked")
        cursor = index == self.cursor
        cursor_style = self._component_style("resource-table--cursor") if cursor else None
        segments = [Segment("●" if marked else " ", cursor_style or base)]
        for column, width in zip(self.spec.columns, self._widths, strict=True):
            text = format_cell(column, row, now, self.labels)
            style = base
            if column.kind == "status" and text:
                status_class = STATUS_CLASSES.get(text.lower())
                if status_class:
                    style = base + self._component_style(f"resource-table--{status_class}")
            if cursor_style is not None:
                style = style + cursor_style
            segments.append(Segment(_fit(text, width), style))
            segments.append(Segment(" " * GAP, cursor_style or base))
        return Strip(segments)

    def has_ticking_rows(self) -> bool:
        _, scroll_y = self.scroll_offset
        end = min(len(self.view), scroll_y + self.size.height)
        if end > scroll_y and any(column.kind == "time" for column in self.spec.columns):
            # Relative times (AGE "3m") move with the clock in every row: repaint what shows.
            return True
        for index in range(scroll_y, end):
            row = self.view.rows[self.view.key_at(index)]
            if any(is_ticking(column, row) for column in self.spec.columns):
                return True
        return False

    # -- cursor -----------------------------------------------------------------------------

    def watch_cursor(self, old: int, new: int) -> None:
        self._scroll_cursor_into_view()
        self.refresh()
        key = self.current_key
        if key != self._highlighted:
            self._highlighted = key
            self.post_message(self.Highlighted(self, key))

    def _scroll_cursor_into_view(self) -> None:
        visible_rows = max(1, self.size.height - 1)
        top = int(self.scroll_y)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False)
        elif self.cursor >= top + visible_rows:
            self.scroll_to(y=self.cursor - visible_rows + 1, animate=False)

    def action_cursor(self, step: int) -> None:
        if len(self.view):
            self.cursor = max(0, min(len(self.view) - 1, self.cursor + step))

    def action_page(self, direction: int) -> None:
        self.action_cursor(direction * max(1, self.size.height - 2))

    def action_jump(self, where: int) -> None:
        if where != 0:
            self._finish_scan()
        if len(self.view):
            self.cursor = 0 if where == 0 else len(self.view) - 1

    def action_select(self) -> None:
        key = self.current_key
        if key is not None:
            self.post_message(self.Selected(self, key))

    # -- mouse ------------------------------------------------------------------------------

    async def _on_click(self, event: events.Click) -> None:
        _, scroll_y = self.scroll_offset
        if event.y == 0:
            column = self._column_at(event.x + int(self.scroll_x))
            if column is not None:
                if column == self.view.sort_column:
                    self.toggle_reverse()
                else:
                    self.set_sort(column, False)
            return
        index = scroll_y + event.y - 1
        if 0 <= index < len(self.view):
            self.cursor = index
            if event.chain >= 2:
                self.action_select()

    def _column_at(self, x: int) -> str | None:
        position = 1
        for column, width in zip(self.spec.columns, self._widths, strict=True):
            if position <= x < position + width + GAP:
                return column.key
            position += width + GAP
        return None
