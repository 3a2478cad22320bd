"""A capped log of prefixed output lines, rendered lazily (Line API).

RichLog renders every line to strips as it is written (about 130 µs a line
here), which a host streaming 50 MB/s turns into seconds of frozen UI. This
log stores plain `(prefix, prefix style, text, stream)` tuples in a deque of
at most `max_lines` and builds strips only for the lines on screen, so
appending is O(1) and a repaint costs the visible lines whatever the rate.

It follows the end while the view is at the bottom; scrolling up stops
following (and the view stays on the same lines as old ones drop off); `end`
follows again.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable

from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

_ESCAPES = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|[@-Z\\-_])")
_CONTROLS = {c: None for c in range(32) if c != 9} | {0x7F: None}


def printable(text: str) -> str:
    """What a log line may show: no escape sequences or control characters, tabs expanded."""
    if "\x1b" in text:
        text = _ESCAPES.sub("", text)
    return text.translate(_CONTROLS).expandtabs(8)


Line = tuple[str, str, str, str]  # prefix, prefix style, text, stream ('stdout'|'stderr'|'note')


class OutputLog(ScrollView, can_focus=True):
    COMPONENT_CLASSES = {"output-log--stderr", "output-log--note"}

    BINDINGS = [
        Binding("up,k", "scroll_up", "Up", show=False, id="output_log.up"),
        Binding("down,j", "scroll_down", "Down", show=False, id="output_log.down"),
        Binding("pageup", "page_up", "Page up", show=False, id="output_log.page_up"),
        Binding("pagedown", "page_down", "Page down", show=False, id="output_log.page_down"),
        Binding("home,g", "scroll_home", "Top", show=False, id="output_log.top"),
        Binding("end,G", "scroll_end", "Follow", show=False, id="output_log.follow"),
    ]

    def __init__(
        self,
        *,
        max_lines: int = 5000,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._lines: deque[Line] = deque(maxlen=max_lines)
        self._width = 0
        self._styles: dict[str, Style] = {}
        self.follow = True

    @property
    def max_lines(self) -> int:
        return self._lines.maxlen or 0

    def __len__(self) -> int:
        return len(self._lines)

    @property
    def plain_lines(self) -> list[str]:
        return [prefix + text for prefix, _, text, _ in self._lines]

    def write_lines(self, lines: Iterable[Line]) -> None:
        before = len(self._lines)
        added = 0
        width = self._width
        for line in lines:
            self._lines.append(line)
            added += 1
            width = max(width, len(line[0]) + len(line[2]))
        if not added:
            return
        dropped = max(0, before + added - self.max_lines)
        self._width = width
        self.virtual_size = Size(width, len(self._lines))
        if self.follow:
            self.scroll_to(y=max(0, len(self._lines) - self.size.height), animate=False)
        elif dropped:
            self.scroll_to(y=max(0, self.scroll_y - dropped), animate=False)
        self.refresh()

    def clear(self) -> None:
        self._lines.clear()
        self._width = 0
        self.follow = True
        self.virtual_size = Size(0, 0)
        self.scroll_to(0, 0, animate=False)
        self.refresh()

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        self.follow = new >= self.max_scroll_y

    def action_scroll_end(self) -> None:
        self.follow = True
        self.scroll_to(y=self.max_scroll_y, animate=False)

    def _style(self, spec: str) -> Style:
        style = self._styles.get(spec)
        if style is None:
            style = self._styles[spec] = Style.parse(spec) if spec else Style()
        return style

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        base = self.rich_style
        index = scroll_y + y
        if index >= len(self._lines):
            return Strip.blank(width, base)
        prefix, prefix_style, text, stream = self._lines[index]
        text_style = base
        if stream in ("stderr", "note"):
            text_style = base + self.get_component_rich_style(f"output-log--{stream}")
        strip = Strip(
            [
                Segment(prefix, base + self._style(prefix_style)),
                Segment(printable(text), text_style),
            ]
        )
        return strip.crop_extend(scroll_x, scroll_x + width, base)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self.refresh()
