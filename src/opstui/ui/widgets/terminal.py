"""A terminal emulator widget: pyte behind the Line API, over any byte-stream session.

`TerminalView` shows one `TerminalSession` (an SSH PTY, or anything that
yields output bytes and accepts input bytes): colours (16, 256 and truecolor
as pyte reports them), bold/italic/underline/strike/reverse, the cursor,
the alternate screen (so `top`, `vim` and `less` restore the shell when they
exit), cursor addressing, resize (widget size -> pyte -> `session.resize`),
and a capped scrollback (shift+pageup / shift+pagedown).

Keys go to the session as xterm sequences, except the widget's own bindings:
ctrl+] hands focus back to opstui (like telnet's escape), shift+pageup/down
scroll back. Priority app bindings (ctrl+q) still quit.

Output is coalesced: the reader only appends bytes to a backlog; a drain
feeds pyte for at most `FEED_BUDGET` seconds per frame and repaints the dirty
lines at most `FPS` times a second. pyte parses roughly 0.3-1 MB/s, so a host
streaming faster than that would grow the backlog without bound: past
`BACKLOG_LIMIT` bytes the oldest output is skipped (from a line boundary),
the widget says how much, and typing stays responsive (mosh does the same).

Scrollback: pyte's `HistoryScreen` wraps every parser event in
`__getattribute__` (about 2x slower to feed, measured) and pages by moving
lines through the live buffer, so output arriving while scrolled back jumps
the view. `TermScreen` keeps a capped deque of the lines that scroll off the
top of the main screen instead, and the view reads it at render time.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, Protocol, runtime_checkable

import pyte
from pyte.screens import Margins
from rich.segment import Segment
from rich.style import Style
from textual import events, work
from textual.binding import Binding
from textual.geometry import Region
from textual.message import Message
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget

FPS = 30
FEED_BUDGET = 0.012  # seconds of pyte parsing per frame
FEED_CHUNK = 4096  # bytes per pyte.feed call (checked against the budget between calls)
BACKLOG_LIMIT = 1 << 20  # bytes not yet parsed before the oldest are skipped
BACKLOG_KEEP = 64 << 10  # bytes kept when skipping
DEFAULT_HISTORY = 5000  # scrollback lines

# Private modes that switch to the alternate screen (xterm).
ALT_SCREEN_MODES = {47, 1047, 1049}
BRACKETED_PASTE = 2004
DECCKM = 1 << 5  # application cursor keys (private mode 1, shifted as pyte stores it)


@runtime_checkable
class TerminalSession(Protocol):
    """What the widget needs from a session (ssh/pty.py provides one).

    `write` may return an awaitable; `exit_status` is read once output ends.
    """

    def write(self, data: bytes) -> Any: ...

    def resize(self, cols: int, rows: int) -> Any: ...

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    async def close(self) -> None: ...


class TermScreen(pyte.Screen):
    """A pyte screen with a capped scrollback and xterm's alternate screen."""

    def __init__(self, columns: int, lines: int, history: int = DEFAULT_HISTORY) -> None:
        self.history: deque[Any] = deque(maxlen=max(0, history))
        self.scrolled_off = 0  # lines pushed to history, ever (the view anchors on it)
        self._main: Any = None  # the main screen's buffer while the alternate one shows
        self.responder: Any = None  # callable(str): answers to device status queries
        super().__init__(columns, lines)

    @property
    def alternate(self) -> bool:
        return self._main is not None

    def index(self) -> None:
        top, bottom = self.margins or Margins(0, self.lines - 1)
        if self.cursor.y == bottom and top == 0 and self._main is None and self.history.maxlen:
            # The line object leaves the buffer in super().index(): it is never mutated again.
            self.history.append(self.buffer[top])
            self.scrolled_off += 1
        super().index()

    def erase_in_display(self, how: int = 0, *args: Any, **kwargs: Any) -> None:
        super().erase_in_display(how, *args, **kwargs)
        if how == 3:  # "clear scrollback" (clear(1) sends it)
            self.history.clear()

    def set_mode(self, *modes: int, **kwargs: Any) -> None:
        if kwargs.get("private") and ALT_SCREEN_MODES & set(modes) and self._main is None:
            if 1049 in modes:
                self.save_cursor()
            self._main = self.buffer
            self.buffer = self._fresh_buffer()
            self.dirty.update(range(self.lines))
            modes = tuple(m for m in modes if m not in ALT_SCREEN_MODES)
        super().set_mode(*modes, **kwargs)

    def reset_mode(self, *modes: int, **kwargs: Any) -> None:
        if kwargs.get("private") and ALT_SCREEN_MODES & set(modes) and self._main is not None:
            self.buffer = self._main
            self._main = None
            if 1049 in modes:
                self.restore_cursor()
            self.dirty.update(range(self.lines))
            modes = tuple(m for m in modes if m not in ALT_SCREEN_MODES)
        super().reset_mode(*modes, **kwargs)

    def _fresh_buffer(self) -> Any:
        from collections import defaultdict

        from pyte.screens import StaticDefaultDict

        return defaultdict(lambda: StaticDefaultDict(self.default_char))

    def write_process_input(self, data: str) -> None:
        # Cursor position and device attribute reports go back to the program.
        if self.responder is not None:
            self.responder(data)


# -- colours and styles -----------------------------------------------------------------------

_NAMED = {
    "black": "black",
    "red": "red",
    "green": "green",
    "brown": "yellow",
    "yellow": "yellow",
    "blue": "blue",
    "magenta": "magenta",
    "cyan": "cyan",
    "white": "white",
}


def _colour(name: str) -> str | None:
    if name == "default" or not name:
        return None
    if name in _NAMED:
        return _NAMED[name]
    if name.startswith(("bright", "bfight")):  # pyte spells one of them "bfightmagenta"
        base = _NAMED.get(name[6:])
        return f"bright_{base}" if base else None
    if len(name) == 6:
        try:
            int(name, 16)
        except ValueError:
            return None
        return f"#{name}"
    return None


_STYLES: dict[tuple, Style] = {}


def char_style(char: Any) -> Style:
    """The Rich style of one pyte Char (cached: a screen uses few distinct styles)."""
    key = (
        char.fg,
        char.bg,
        char.bold,
        char.italics,
        char.underscore,
        char.strikethrough,
        char.reverse,
        char.blink,
    )
    style = _STYLES.get(key)
    if style is None:
        if len(_STYLES) > 4096:
            _STYLES.clear()
        style = Style(
            color=_colour(char.fg),
            bgcolor=_colour(char.bg),
            bold=char.bold or None,
            italic=char.italics or None,
            underline=char.underscore or None,
            strike=char.strikethrough or None,
            reverse=char.reverse or None,
            blink=char.blink or None,
        )
        _STYLES[key] = style
    return style


def line_segments(
    line: Any, columns: int, base: Style, cursor_x: int | None, cursor_style: Style
) -> list[Segment]:
    """Segments for one pyte line: runs of equally styled cells joined."""
    segments: list[Segment] = []
    run: list[str] = []
    run_style: Style | None = None
    default = line.default if hasattr(line, "default") else None
    for x in range(columns):
        char = line[x] if x in line else default
        if char is None:
            text, style = " ", base
        else:
            text = char.data
            if text == "":  # the right half of a wide character
                continue
            style = char_style(char)
        if x == cursor_x:
            if run:
                segments.append(Segment("".join(run), base + run_style))
                run = []
            segments.append(Segment(text, base + style + cursor_style))
            run_style = None
            continue
        if style is not run_style:
            if run:
                segments.append(Segment("".join(run), base + run_style))
            run = [text]
            run_style = style
        else:
            run.append(text)
    if run:
        segments.append(Segment("".join(run), base + run_style))
    return segments


# -- keys -------------------------------------------------------------------------------------

_CSI_TILDE = {
    "insert": 2,
    "delete": 3,
    "pageup": 5,
    "pagedown": 6,
    "f5": 15,
    "f6": 17,
    "f7": 18,
    "f8": 19,
    "f9": 20,
    "f10": 21,
    "f11": 23,
    "f12": 24,
}
_CURSOR = {"up": "A", "down": "B", "right": "C", "left": "D", "home": "H", "end": "F"}
_SS3_F = {"f1": "P", "f2": "Q", "f3": "R", "f4": "S"}
_MODIFIERS = {"shift": 1, "alt": 2, "ctrl": 4}
_PLAIN = {
    "enter": "\r",
    "tab": "\t",
    "shift+tab": "\x1b[Z",
    "backspace": "\x7f",
    "ctrl+h": "\x08",
    "escape": "\x1b",
    "space": " ",
    "ctrl+space": "\x00",
    "ctrl+at": "\x00",
    "ctrl+backslash": "\x1c",
    "ctrl+circumflex_accent": "\x1e",
    "ctrl+underscore": "\x1f",
    "ctrl+left_square_bracket": "\x1b",
}


def key_sequence(key: str, character: str | None, *, app_cursor: bool = False) -> str | None:
    """The bytes (as str) an xterm sends for a Textual key, or None if it sends nothing."""
    if key in _PLAIN:
        return _PLAIN[key]
    *mods, name = key.split("+")
    bits = sum(_MODIFIERS.get(m, 0) for m in mods)
    modifier = f";{bits + 1}" if bits else ""
    if name in _CURSOR:
        if bits:
            return f"\x1b[1{modifier}{_CURSOR[name]}"
        return ("\x1bO" if app_cursor else "\x1b[") + _CURSOR[name]
    if name in _SS3_F:
        return f"\x1b[1{modifier}{_SS3_F[name]}" if bits else f"\x1bO{_SS3_F[name]}"
    if name in _CSI_TILDE:
        return f"\x1b[{_CSI_TILDE[name]}{modifier}~"
    if mods == ["ctrl"] and len(name) == 1 and name.isalpha():
        return chr(ord(name.lower()) - 96)
    if mods and mods[0] == "alt" and character:
        return "\x1b" + character
    if character and (character.isprintable() or len(character) == 1):
        return character
    return None


# -- the widget -------------------------------------------------------------------------------


class TerminalView(Widget, can_focus=True):
    """A terminal over one session. Attach a session with `attach()`."""

    COMPONENT_CLASSES = {"terminal-view--cursor", "terminal-view--notice"}

    BINDINGS = [
        Binding(
            "ctrl+right_square_bracket",
            "release",
            "Back to opstui (ctrl+])",
            id="terminal.release",
        ),
        Binding("shift+pageup", "scroll_back(1)", "Scroll back", show=False, id="terminal.back"),
        Binding(
            "shift+pagedown", "scroll_back(-1)", "Scroll forward", show=False, id="terminal.fwd"
        ),
    ]

    scrollback = reactive(0, layout=False, repaint=True)  # lines scrolled back from live

    class Released(Message):
        """The user pressed the escape key (ctrl+]): opstui keys apply again."""

        def __init__(self, view: TerminalView) -> None:
            super().__init__()
            self.view = view

        @property
        def control(self) -> TerminalView:
            return self.view

    class SessionEnded(Message):
        """The session's output ended; `exit_status` is the remote status if known."""

        def __init__(self, view: TerminalView, exit_status: int | None, error: str = "") -> None:
            super().__init__()
            self.view = view
            self.exit_status = exit_status
            self.error = error

        @property
        def control(self) -> TerminalView:
            return self.view

    def __init__(
        self,
        session: TerminalSession | None = None,
        *,
        history: int = DEFAULT_HISTORY,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.screen_model = TermScreen(80, 24, history=history)
        self.screen_model.responder = self._respond
        self.stream = pyte.ByteStream(self.screen_model)
        self.session: TerminalSession | None = None
        self.ended = False
        self.skipped_bytes = 0
        self.fed_bytes = 0
        self._backlog: deque[bytes] = deque()
        self._backlog_size = 0
        self._drain_scheduled = False
        self._last_drain = 0.0
        self._strips: dict[int, Strip] = {}
        self._cursor_seen: tuple[int, int, bool] | None = None
        self._anchor = 0  # screen_model.scrolled_off when scrollback was last set
        self._pending = session

    # -- lifecycle --------------------------------------------------------------------------

    def on_mount(self) -> None:
        if self._pending is not None:
            session, self._pending = self._pending, None
            self.attach(session)

    def attach(self, session: TerminalSession) -> None:
        """Start showing `session`: size it to the widget, then read its output."""
        self.session = session
        self.ended = False
        if self.size.width and self.size.height:
            self._call(session.resize, self.screen_model.columns, self.screen_model.lines)
        self._read(session)

    @work(group="terminal-read", exit_on_error=False)
    async def _read(self, session: TerminalSession) -> None:
        error = ""
        try:
            async for chunk in session:
                if chunk:
                    self.receive(chunk if isinstance(chunk, bytes) else chunk.encode())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - shown in the tab, never a traceback
            error = str(exc) or type(exc).__name__
        status = getattr(session, "exit_status", None)
        self.post_message(self.SessionEnded(self, status, error))

    def on_terminal_view_session_ended(self, message: SessionEnded) -> None:
        if message.view is self:
            self.ended = True
            self._drain()

    # -- output -----------------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        """Queue output bytes; the next drain parses them (bounded work per frame)."""
        self._backlog.append(data)
        self._backlog_size += len(data)
        if self._backlog_size > BACKLOG_LIMIT:
            self._skip_backlog()
        self._schedule_drain()

    def feed(self, data: bytes) -> None:
        """Parse bytes now (tests and replays); the next refresh shows them."""
        self.receive(data)
        while self._backlog:
            self._feed_some(budget=None)
        self._after_feed()

    def _skip_backlog(self) -> None:
        data = b"".join(self._backlog)
        keep = data[-BACKLOG_KEEP:]
        newline = keep.find(b"\n")
        if 0 <= newline < len(keep) - 1:
            keep = keep[newline + 1 :]
        self.skipped_bytes += len(data) - len(keep)
        self._backlog = deque([keep])
        self._backlog_size = len(keep)
        self.stream.feed(b"\x1b[0m\r\n")  # leave any half-parsed sequence and style

    def _schedule_drain(self) -> None:
        if self._drain_scheduled:
            return
        self._drain_scheduled = True
        wait = max(0.0, self._last_drain + 1 / FPS - time.monotonic())
        if wait:
            self.set_timer(wait, self._drain)
        else:
            self.call_later(self._drain)

    def _drain(self) -> None:
        self._drain_scheduled = False
        self._last_drain = time.monotonic()
        if self._backlog:
            self._feed_some(budget=FEED_BUDGET)
            self._after_feed()
        if self._backlog:
            self._schedule_drain()

    def _feed_some(self, budget: float | None) -> None:
        deadline = time.perf_counter() + budget if budget is not None else None
        while self._backlog:
            chunk = self._backlog.popleft()
            if len(chunk) > FEED_CHUNK:
                self._backlog.appendleft(chunk[FEED_CHUNK:])
                chunk = chunk[:FEED_CHUNK]
            self._backlog_size -= len(chunk)
            self.stream.feed(chunk)
            self.fed_bytes += len(chunk)
            if deadline is not None and time.perf_counter() >= deadline:
                break

    def _after_feed(self) -> None:
        screen = self.screen_model
        dirty = set(screen.dirty)
        screen.dirty.clear()
        cursor = (screen.cursor.x, screen.cursor.y, screen.cursor.hidden)
        if self._cursor_seen != cursor:
            if self._cursor_seen is not None:
                dirty.add(self._cursor_seen[1])
            dirty.add(cursor[1])
            self._cursor_seen = cursor
        if self.scrollback:
            # Keep the view on the same lines while output scrolls underneath.
            grown = screen.scrolled_off - self._anchor
            self._anchor = screen.scrolled_off
            if grown:
                self.scrollback = min(len(screen.history), self.scrollback + grown)
                return
            self.refresh()
            return
        self._anchor = screen.scrolled_off
        width = self.size.width
        for y in dirty:
            self._strips.pop(y, None)
        if len(dirty) > screen.lines // 2:
            self.refresh()
        else:
            for y in dirty:
                if 0 <= y < screen.lines:
                    self.refresh(Region(0, y, width, 1))
        if self.skipped_bytes:
            self.border_subtitle = f"skipped {_size(self.skipped_bytes)} of fast output"

    # -- input ------------------------------------------------------------------------------

    def _respond(self, text: str) -> None:
        self.send(text)

    def send(self, text: str | bytes) -> None:
        """Write input to the session (keys, paste, replies to terminal queries)."""
        session = self.session
        if session is None or self.ended:
            return
        data = text.encode("utf-8", "replace") if isinstance(text, str) else text
        self._call(session.write, data)

    def _call(self, method: Any, *args: Any) -> None:
        try:
            result = method(*args)
        except Exception:  # noqa: BLE001 - a closed session ends through _read
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    def _own_keys(self) -> set[str]:
        return set(self._bindings.key_to_bindings)

    async def _on_key(self, event: events.Key) -> None:
        if event.key in self._own_keys():
            return  # the binding handles it
        if self.session is None or self.ended:
            return  # nothing to type into: the keys are opstui's (w closes, R reconnects)
        sequence = key_sequence(
            event.key, event.character, app_cursor=DECCKM in self.screen_model.mode
        )
        if sequence is None:
            return
        event.stop()
        event.prevent_default()
        if self.scrollback:
            self.scrollback = 0
        self.send(sequence)

    def _on_paste(self, event: events.Paste) -> None:
        event.stop()
        text = event.text.replace("\r\n", "\r").replace("\n", "\r")
        if (BRACKETED_PASTE << 5) in self.screen_model.mode:
            text = f"\x1b[200~{text}\x1b[201~"
        self.send(text)

    def action_release(self) -> None:
        self.post_message(self.Released(self))

    def action_scroll_back(self, pages: int) -> None:
        step = max(1, self.screen_model.lines // 2) * pages
        self._anchor = self.screen_model.scrolled_off
        self.scrollback = max(0, min(len(self.screen_model.history), self.scrollback + step))

    def watch_scrollback(self, old: int, new: int) -> None:
        self._strips.clear()
        self.border_subtitle = f"scrollback -{new}" if new else ""

    # -- size -------------------------------------------------------------------------------

    def on_resize(self, event: events.Resize) -> None:
        columns, lines = max(2, event.size.width), max(1, event.size.height)
        screen = self.screen_model
        if (columns, lines) == (screen.columns, screen.lines):
            return
        screen.resize(lines=lines, columns=columns)
        self._strips.clear()
        self.refresh()
        if self.session is not None and not self.ended:
            self._call(self.session.resize, columns, lines)

    def on_focus(self) -> None:
        self._strips.pop(self.screen_model.cursor.y, None)
        self.refresh()

    def on_blur(self) -> None:
        self._strips.pop(self.screen_model.cursor.y, None)
        self.refresh()

    # -- rendering --------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        base = self.rich_style
        screen = self.screen_model
        back = self.scrollback
        if back:
            history = screen.history
            index = len(history) - back + y
            if index < 0:
                return Strip.blank(width, base)
            line = history[index] if index < len(history) else screen.buffer[index - len(history)]
            segments = line_segments(line, screen.columns, base, None, Style())
            return Strip(segments).crop_extend(0, width, base)
        strip = self._strips.get(y)
        if strip is None:
            if y >= screen.lines:
                return Strip.blank(width, base)
            cursor = screen.cursor
            cursor_x = (
                cursor.x
                if y == cursor.y and not cursor.hidden and self.has_focus and not self.ended
                else None
            )
            cursor_style = self.get_component_rich_style("terminal-view--cursor") or Style(
                reverse=True
            )
            line = screen.buffer[y] if y in screen.buffer else {}
            segments = line_segments(line, screen.columns, base, cursor_x, cursor_style)
            strip = Strip(segments).crop_extend(0, width, base)
            self._strips[y] = strip
        return strip

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()

    # -- reading the screen (tests, titles) ---------------------------------------------------

    @property
    def lines(self) -> list[str]:
        """The text of the visible screen, one string per line."""
        return self.screen_model.display

    @property
    def cursor(self) -> tuple[int, int]:
        return self.screen_model.cursor.x, self.screen_model.cursor.y

    @property
    def backlog_bytes(self) -> int:
        return self._backlog_size

    async def close(self) -> None:
        """Close the session (the reader then ends)."""
        session = self.session
        if session is not None:
            try:
                await session.close()
            except Exception:  # noqa: BLE001 - already gone
                pass


def _size(count: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count} B"
