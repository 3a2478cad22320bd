"""The log renderer shared by runs, CI/CD builds and multi-host output (see log_pane.py).

`LogView` is a capped buffer of lines drawn lazily (Line API), so appending is
O(1) and a repaint costs the lines on screen, whatever the rate or the size of
the log. RichLog renders every line to strips as it is written (about 130 µs a
line here), which a host streaming 50 MB turns into seconds of frozen UI. It
follows the end while the view is at the bottom (scrolling up stops following;
`end`/`G` follows again), wraps, shows timestamps, shows one source (host) or
all, renders ANSI colours (SGR only; other escapes are dropped), and highlights
a search.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections import deque
from collections.abc import Iterable
from typing import Any

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

_ESCAPES = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|[@-Z\\-_])")
# Every escape sequence but SGR (colours): cursor moves, OSC titles, erases...
_NOT_SGR = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-ln-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|[@-Z\\-_])")
_CONTROLS = {c: None for c in range(32) if c != 9} | {0x7F: None}
_CONTROLS_BUT_ESC = {c: None for c in range(32) if c not in (9, 27)} | {0x7F: None}
_REGEX_CHARS = set(".*+?[](){}|^$\\")

MAX_LINE = 4000  # characters kept of one line
def _last_overwrite(text: str) -> str:
    """`a\\rb` shows as a terminal would leave it: b (progress bars redraw with \\r)."""
    text = text.rstrip("\r")
    return text.rsplit("\r", 1)[-1] if "\r" in text else text


def printable(text: str) -> str:
    """What a log line may show: no escape sequences or control characters, tabs expanded."""
    if "\r" in text:
        text = _last_overwrite(text)
    if "\x1b" in text:
        text = _ESCAPES.sub("", text)
    return text.translate(_CONTROLS).expandtabs(8)


def ansi_text(text: str) -> Text:
    """A line as Rich Text: SGR colours kept, every other escape and control dropped."""
    if "\r" in text:
        text = _last_overwrite(text)
    if "\x1b" not in text:
        return Text(text.translate(_CONTROLS).expandtabs(8))
    cleaned = _NOT_SGR.sub("", text).translate(_CONTROLS_BUT_ESC).expandtabs(8)
    return Text.from_ansi(cleaned, end="")


def search_pattern(text: str) -> re.Pattern[str] | None:
    """Case-insensitive; a regex if it has regex syntax (and compiles), else literal."""
    text = text.strip()
    if not text:
        return None
    if any(char in _REGEX_CHARS for char in text):
        try:
            return re.compile(text, re.IGNORECASE)
        except re.error:
            pass
    return re.compile(re.escape(text), re.IGNORECASE)


# A line: (prefix, prefix style, text (raw, may hold ANSI), stream, source, time, ordinal).
# Streams: stdout | stderr | system (or "note", the multi-host screen's own lines).
Line = tuple[Any, ...]
RECENT = 4096  # how far back a continued line is looked for


def _replace_recent(lines: deque[Line], old: Line, new: Line) -> None:
    """Put `new` where `old` is, among the newest RECENT lines (older: left as it was)."""
    for index in range(len(lines) - 1, max(-1, len(lines) - 1 - RECENT), -1):
        if lines[index] is old:
            lines[index] = new
            return
_PREFIX, _PREFIX_STYLE, _TEXT, _STREAM, _SOURCE, _AT, _N = range(7)


class LogView(ScrollView, can_focus=True):
    """The lazy renderer; see the module docstring."""

    COMPONENT_CLASSES = {
        "log-view--stderr",
        "log-view--system",
        "log-view--time",
        "log-view--match",
        "log-view--current-match",
    }

    BINDINGS = [
        Binding("up,k", "scroll_up", "Up", show=False, id="log.up"),
        Binding("down,j", "scroll_down", "Down", show=False, id="log.down"),
        Binding("pageup", "page_up", "Page up", show=False, id="log.page_up"),
        Binding("pagedown", "page_down", "Page down", show=False, id="log.page_down"),
        Binding("home,g", "scroll_home", "Top", show=False, id="log.top"),
        Binding("end,G", "scroll_end", "Follow", show=False, id="log.follow"),
    ]

    def __init__(
        self,
        *,
        max_lines: int = 10_000,
        per_source_lines: int = 0,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._lines: deque[Line] = deque(maxlen=max_lines)
        # Each source's own tail, so a quiet host's lines survive a chatty one (0: none).
        self.per_source_lines = per_source_lines
        self._by_source: dict[str | None, deque[Line]] = {}
        self._ordinal = 0
        self._width = 0
        self._styles: dict[str, Style] = {}
        self._strips: dict[int, Strip] = {}  # rendered lines by ordinal, for the screen's lines
        self._rows: deque[tuple[Line, int]] = deque()  # wrap mode: (line, first cell) per row
        self._rows_width = 0
        self.follow = True
        self.wrap = False
        self.timestamps = False
        self.only: str | None = None
        self.pattern: re.Pattern[str] | None = None
        self.current_match: int | None = None  # ordinal of the line the search is on
        self.dropped = 0  # lines that fell off the top of the full buffer

    # -- reading ----------------------------------------------------------------------------

    @property
    def max_lines(self) -> int:
        return self._lines.maxlen or 0

    @property
    def shown(self) -> deque[Line]:
        """The lines of the current view: every source's, or one source's tail."""
        if self.only is None:
            return self._lines
        return self._by_source.get(self.only) or deque()

    def __len__(self) -> int:
        return len(self.shown)

    @property
    def plain_lines(self) -> list[str]:
        """The lines shown (prefixes included), as plain text."""
        return [self._plain(line) for line in self.shown]

    @property
    def sources(self) -> list[str | None]:
        return list(self._by_source)

    def _plain(self, line: Line) -> str:
        return line[_PREFIX] + printable(line[_TEXT])

    # -- writing ----------------------------------------------------------------------------

    def write_lines(self, lines: Iterable[tuple[str, str, str, str]]) -> None:
        """Append `(prefix, prefix style, text, stream)` lines (no source, no time)."""
        self.append(
            [self.new_line(prefix, style, text, stream) for prefix, style, text, stream in lines]
        )

    def new_line(
        self,
        prefix: str,
        prefix_style: str,
        text: str,
        stream: str,
        source: str | None = None,
        at: str = "",
    ) -> Line:
        """A line for `append`."""
        self._ordinal += 1
        return (prefix, prefix_style, text[:MAX_LINE], stream, source, at, self._ordinal)

    def take_ordinals(self, count: int) -> int:
        """Reserve `count` ordinals for lines built in bulk; returns the first."""
        first = self._ordinal + 1
        self._ordinal += count
        return first

    def append(self, new: list[Line]) -> None:
        """Append lines made by `new_line`, in order."""
        lines, keep = self._lines, self.per_source_lines
        only, rows_on = self.only, self.wrap and self._rows_width > 0
        width = self._width
        added = dropped_shown = 0
        for line in new:
            if len(lines) == lines.maxlen:
                self.dropped += 1
                if only is None:
                    dropped_shown += 1
                    if rows_on:
                        self._drop_rows(lines[0])
            lines.append(line)
            source = line[_SOURCE]
            if keep:
                tail = self._by_source.get(source)
                if tail is None:
                    tail = self._by_source[source] = deque(maxlen=keep)
                if source == only and only is not None and len(tail) == keep:
                    dropped_shown += 1
                    if rows_on:
                        self._drop_rows(tail[0])
                tail.append(line)
            if only is None or source == only:
                added += 1
                width = max(width, len(line[_PREFIX]) + len(line[_TEXT]))
                if rows_on:
                    self._add_rows(line)
        if not added:
            return
        self._width = width
        self._resize_virtual()
        if self.follow:
            self.scroll_to(y=self.max_scroll_y, animate=False)
        elif dropped_shown:
            self.scroll_to(y=max(0, self.scroll_y - dropped_shown), animate=False)
        self.refresh()

    def extend_line(self, line: Line, more: str) -> Line:
        """Continue a line already shown (its end arrived in a later chunk); the new line.

        Lines are tuples of plain values, which the cyclic GC stops tracking: lists
        made every full collection walk the whole buffer (100-200 ms pauses while a
        run streamed, in bench_run_view). So a continued line is a new tuple put in
        the old one's place, looked for among the newest lines only.
        """
        if not more or len(line[_TEXT]) >= MAX_LINE:
            return line
        new = (*line[:_TEXT], (line[_TEXT] + more)[:MAX_LINE], *line[_TEXT + 1 :])
        _replace_recent(self._lines, line, new)
        tail = self._by_source.get(line[_SOURCE])
        if tail is not None:
            _replace_recent(tail, line, new)
        self._strips.pop(line[_N], None)
        if self.only is not None and line[_SOURCE] != self.only:
            return new
        self._width = max(self._width, len(new[_PREFIX]) + len(new[_TEXT]))
        if self.wrap and self._rows_width:
            rows, n, width = self._rows, line[_N], self._rows_width
            first = bisect_left(rows, n, key=lambda row: row[0][_N])
            have = 0
            while first + have < len(rows) and rows[first + have][0] is line:
                rows[first + have] = (new, rows[first + have][1])
                have += 1
            if have:  # still in the buffer
                for start in range(have * width, self._line_cells(new), width):
                    rows.insert(first + have, (new, start))
                    have += 1
        self._resize_virtual()
        if self.follow:
            self.scroll_to(y=self.max_scroll_y, animate=False)
        self.refresh()
        return new

    def clear(self) -> None:
        self._lines.clear()
        self._by_source.clear()
        self._strips.clear()
        self._rows.clear()
        self._width = 0
        self.dropped = 0
        self.follow = True
        self.current_match = None
        self.virtual_size = Size(0, 0)
        self.scroll_to(0, 0, animate=False)
        self.refresh()

    # -- view settings ----------------------------------------------------------------------

    def set_wrap(self, wrap: bool) -> None:
        self.wrap = wrap
        self._relayout()

    def set_timestamps(self, shown: bool) -> None:
        self.timestamps = shown
        self._relayout()

    def set_only(self, source: str | None) -> None:
        """Show one source's lines (its kept tail), or every source's (None)."""
        self.only = source
        self.follow = True
        self.current_match = None
        self._relayout()

    def set_search(self, pattern: re.Pattern[str] | None) -> None:
        self.pattern = pattern
        self.current_match = None
        self._strips.clear()
        self.refresh()

    def find(self, forward: bool) -> tuple[int, int] | None:
        """Move to the next (or previous) matching line; (match number, matches) or None.

        The first search starts from the bottom of the screen going up when
        following (the newest match), else from the top of the screen.
        """
        pattern = self.pattern
        if pattern is None:
            return None
        shown = self.shown
        search = pattern.search
        hits = [i for i, line in enumerate(shown) if search(printable(line[_TEXT]))]
        if not hits:
            self.current_match = None
            self.refresh()
            return (0, 0)
        ordinals = [shown[i][_N] for i in hits]
        if self.current_match is None:
            if self.follow:
                position = len(hits) - 1
            else:
                top = self._line_index_at_row(int(self.scroll_y))
                position = min(bisect_left(hits, top), len(hits) - 1)
        else:
            here = bisect_left(ordinals, self.current_match)
            exact = here < len(ordinals) and ordinals[here] == self.current_match
            if forward:
                position = (here + 1) % len(hits) if exact else here % len(hits)
            else:
                position = (here - 1) % len(hits)
        self.current_match = ordinals[position]
        self._strips.clear()
        self._show_line(hits[position])
        return (position + 1, len(hits))

    def _show_line(self, index: int) -> None:
        row = self._row_of_line(index)
        self.follow = False
        target = max(0, row - self.size.height // 2)
        self.scroll_to(y=min(target, self.max_scroll_y), animate=False)
        self.refresh()

    # -- layout -----------------------------------------------------------------------------

    def _relayout(self) -> None:
        self._strips.clear()
        self._rows.clear()
        self._rows_width = 0
        shown = self.shown
        self._width = max((len(line[_PREFIX]) + len(line[_TEXT]) for line in shown), default=0)
        if self.wrap and self.size.width > 0:
            self._rows_width = self._text_width()
            for line in shown:
                self._add_rows(line)
        self._resize_virtual()
        if self.follow:
            self.scroll_to(y=self.max_scroll_y, animate=False)
        self.refresh()

    def _text_width(self) -> int:
        return max(1, self.scrollable_content_region.width or self.size.width)

    def _line_cells(self, line: Line) -> int:
        stamp = 9 if self.timestamps else 0
        return stamp + cell_len(line[_PREFIX]) + cell_len(printable(line[_TEXT]))

    def _add_rows(self, line: Line) -> None:
        width = self._rows_width
        cells = self._line_cells(line)
        for start in range(0, max(cells, 1), width):
            self._rows.append((line, start))

    def _drop_rows(self, line: Line) -> None:
        rows = self._rows
        while rows and rows[0][0] is line:
            rows.popleft()

    def _resize_virtual(self) -> None:
        if self.wrap and self._rows_width:
            self.virtual_size = Size(self._rows_width, len(self._rows))
        else:
            stamp = 9 if self.timestamps else 0
            self.virtual_size = Size(self._width + stamp, len(self.shown))

    def _row_of_line(self, index: int) -> int:
        if not (self.wrap and self._rows_width):
            return index
        n = self.shown[index][_N]
        return bisect_left(self._rows, n, key=lambda row: row[0][_N])

    def _line_index_at_row(self, row: int) -> int:
        if not (self.wrap and self._rows_width):
            return row
        if not self._rows or row >= len(self._rows):
            return len(self.shown)
        n = self._rows[row][0][_N]
        return bisect_left(self.shown, n, key=lambda line: line[_N])

    def on_resize(self, event: events.Resize) -> None:
        if self.wrap and self._text_width() != self._rows_width:
            self._relayout()

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        self.follow = new >= self.max_scroll_y

    def action_scroll_end(self) -> None:
        self.follow = True
        self.scroll_to(y=self.max_scroll_y, animate=False)

    # -- rendering --------------------------------------------------------------------------

    def _style(self, spec: str) -> Style:
        style = self._styles.get(spec)
        if style is None:
            style = self._styles[spec] = Style.parse(spec) if spec else Style()
        return style

    def _strip(self, line: Line) -> Strip:
        cached = self._strips.get(line[_N])
        if cached is not None:
            return cached
        base = self.rich_style
        stream = line[_STREAM]
        text_style = base
        if stream == "stderr":
            text_style = base + self.get_component_rich_style("log-view--stderr")
        elif stream in ("system", "note"):
            text_style = base + self.get_component_rich_style("log-view--system")
        segments: list[Segment] = []
        if self.timestamps:
            stamp = f"{line[_AT] or '':<8} "
            segments.append(Segment(stamp, base + self.get_component_rich_style("log-view--time")))
        segments.append(Segment(line[_PREFIX], base + self._style(line[_PREFIX_STYLE])))
        text = ansi_text(line[_TEXT])
        if self.pattern is not None:
            component = (
                "log-view--current-match" if line[_N] == self.current_match else "log-view--match"
            )
            text.highlight_regex(self.pattern, self.get_component_rich_style(component))
        segments.extend(
            Segment(segment.text, text_style + segment.style if segment.style else text_style)
            for segment in text.render(self.app.console)
        )
        strip = Strip(segments)
        if len(self._strips) > 512:  # a few screens' worth
            self._strips.clear()
        self._strips[line[_N]] = strip
        return strip

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        base = self.rich_style
        index = scroll_y + y
        if self.wrap and self._rows_width:
            if index >= len(self._rows):
                return Strip.blank(width, base)
            line, start = self._rows[index]
            return self._strip(line).crop_extend(start, start + width, base)
        shown = self.shown
        if index >= len(shown):
            return Strip.blank(width, base)
        return self._strip(shown[index]).crop_extend(scroll_x, scroll_x + width, base)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()
        self.refresh()
