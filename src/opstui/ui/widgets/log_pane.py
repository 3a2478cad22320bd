"""One log widget for deployment runs, CI/CD builds and multi-host output.

`LogView` (log_view.py) is the renderer: capped, lazily drawn, following,
wrapping, timestamps, one source or all, ANSI colours, search highlights.

`LogPane` puts a search box under a `LogView` and takes stored log *chunks*
(`seq`, `host_id`, `stream`, `text`, `created_at`, as in `deployment_run_logs`:
rows, or `opstui.runs.logstream.LogChunk`s).
It never shows a chunk twice: a chunk whose `seq` it has already shown is
dropped, so the stored log loaded first and the live chunks that arrived while
it loaded merge cleanly. Closing gaps is the follower's job (the data layer);
the pane counts any it sees, so a test can prove there were none.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Input

from opstui.ui.widgets.log_view import (
    MAX_LINE,
    LogView,
    ansi_text,
    printable,
    search_pattern,
)
from opstui.views import parse_time

__all__ = ["LogPane", "LogView", "ansi_text", "printable", "search_pattern"]

HOST_COLOURS = (
    "cyan",
    "magenta",
    "green",
    "yellow",
    "bright_blue",
    "bright_red",
    "bright_cyan",
    "bright_magenta",
    "bright_green",
    "bright_yellow",
)
RUNNER_SOURCE = "runner"  # the name shown for lines with no host (the runner's own)


def _chunk_fields(chunk: Any) -> tuple[int, str | None, str, str, str | None]:
    """(seq, host_id, stream, text, created_at) of a chunk: a row (mapping) or a LogChunk."""
    get = chunk.get if isinstance(chunk, Mapping) else lambda name: getattr(chunk, name, None)
    host = get("host_id")
    return (
        int(get("seq")),
        None if host is None else str(host),
        get("stream") or "stdout",
        get("text") or "",
        get("created_at"),
    )


def _by_seq(fields: tuple) -> int:
    return fields[0]


class LogPane(Vertical):
    """A `LogView` with search, fed stored log chunks that it merges by `seq`."""

    BINDINGS = [
        Binding("slash", "search", "Search log", id="log.search"),
        Binding("n", "find(True)", "Next match", show=False, id="log.next"),
        Binding("N", "find(False)", "Previous match", show=False, id="log.previous"),
        Binding("w", "toggle_wrap", "Wrap", id="log.wrap"),
        Binding("t", "toggle_timestamps", "Timestamps", id="log.timestamps"),
        Binding("h", "next_source", "Host: one/all", id="log.host"),
    ]

    def __init__(
        self,
        *,
        max_lines: int = 10_000,
        per_source_lines: int = 2_000,
        title: str = "log",
        view: LogView | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        """`view`: a ready LogView (say, one fed ready-made lines) instead of a new one."""
        super().__init__(id=id, classes=classes)
        if view is None:
            view = LogView(max_lines=max_lines, per_source_lines=per_source_lines)
        self.view = view
        self.title = title
        self.last_seq: int | None = None
        self.duplicates = 0  # chunks dropped because their seq was already shown
        self.gaps: list[tuple[int, int]] = []  # (after seq, next seq seen) where seqs jumped
        # The last line of each (source, stream) when its chunk ended mid-line.
        self._open: dict[tuple[str | None, str], tuple] = {}
        self._names: dict[str | None, str] = {None: RUNNER_SOURCE}
        self._colours: dict[str | None, str] = {None: "dim"}
        self._name_width = len(RUNNER_SOURCE)
        self._match_info = ""

    def compose(self) -> ComposeResult:
        yield self.view
        yield Input(placeholder="search the log: text or regex", id="log-search", classes="hidden")

    def on_mount(self) -> None:
        self.refresh_title()

    # -- sources ----------------------------------------------------------------------------

    def set_sources(self, names: Mapping[str, str]) -> None:
        """Name (and colour) each source, in order: host id -> host name."""
        for source, name in names.items():
            if source not in self._colours:
                self._colours[source] = HOST_COLOURS[(len(self._colours) - 1) % len(HOST_COLOURS)]
            self._names[source] = name
        self._name_width = max(len(name) for name in self._names.values())
        if self.is_mounted:
            self.refresh_title()

    def _prefix(self, source: str | None) -> tuple[str, str]:
        if source not in self._names:
            self.set_sources({source: source})  # type: ignore[dict-item]
        return f"{self._names[source]:<{self._name_width}} │ ", f"bold {self._colours[source]}"

    # -- chunks -----------------------------------------------------------------------------

    def add_chunks(self, chunks: Iterable[Any]) -> int:
        """Show chunks in `seq` order, each once; returns how many lines were added.

        A chunk need not end at a line end: the runner flushes whatever a host
        printed, so the rest of a line can come in the host's next chunk, and it
        continues that line instead of starting a new one.
        """
        view = self.view
        new: list[tuple] = []
        in_batch: dict[tuple[str | None, str], int] = {}  # open lines not yet shown
        prefixes: dict[str | None, tuple[str, str]] = {}
        for seq, source, stream, text, created_at in sorted(map(_chunk_fields, chunks), key=_by_seq):
            if self.last_seq is not None:
                if seq <= self.last_seq:
                    self.duplicates += 1
                    continue
                if seq != self.last_seq + 1:
                    self.gaps.append((self.last_seq, seq))
            self.last_seq = seq
            if not text:
                continue
            parts = text.split("\n")
            complete = parts[-1] == ""
            if complete:
                parts.pop()
            key = (source, stream)
            open_line = self._open.pop(key, None)
            if open_line is not None and parts:
                more = parts.pop(0)
                pending = in_batch.pop(key, None)
                if pending is not None:  # the line is in this batch, not yet shown
                    line = new[pending]
                    new[pending] = (*line[:2], (line[2] + more)[:MAX_LINE], *line[3:])
                    open_line = new[pending]
                    in_batch[key] = pending
                else:
                    open_line = view.extend_line(open_line, more)
            if not parts:
                if not complete and open_line is not None:
                    self._open[key] = open_line
                continue
            in_batch.pop(key, None)
            prefix = prefixes.get(source)
            if prefix is None:
                prefix = prefixes[source] = self._prefix(source)
            moment = parse_time(created_at)
            at = moment.strftime("%H:%M:%S") if moment else ""
            keep = max(view.max_lines, view.per_source_lines)
            if len(parts) > keep:  # lines that would only fall off the top at once
                view.dropped += len(parts) - keep
                parts = parts[-keep:]
            first = view.take_ordinals(len(parts))
            head, style = prefix
            new.extend(
                (head, style, part[:MAX_LINE], stream, source, at, first + i)
                for i, part in enumerate(parts)
            )
            if not complete:
                self._open[key] = new[-1]
                in_batch[key] = len(new) - 1
        sources = len(view.sources)
        view.append(new)
        if len(view.sources) != sources:
            self.refresh_bindings()  # `h` works once a second source has lines
        if view.pattern is not None and self._match_info:
            self.refresh_title()
        return len(new)

    def add_note(self, text: str) -> None:
        """A line of the viewer's own (not part of the log, no seq)."""
        prefix, style = self._prefix(None)
        self.view.append([self.view.new_line(prefix, style, text, "system")])

    def clear(self) -> None:
        self.view.clear()
        self._open.clear()
        self.last_seq = None
        self.duplicates = 0
        self.gaps.clear()

    # -- keys -------------------------------------------------------------------------------

    def action_search(self) -> None:
        box = self.query_one("#log-search", Input)
        box.remove_class("hidden")
        box.focus()

    @on(Input.Submitted, "#log-search")
    def _search_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        pattern = search_pattern(event.value)
        self.view.set_search(pattern)
        box = self.query_one("#log-search", Input)
        if pattern is None:
            box.add_class("hidden")
            self._match_info = ""
        else:
            self._show_match(self.view.find(forward=True))
        self.view.focus()
        self.refresh_title()

    def on_key(self, event: events.Key) -> None:
        box = self.query_one("#log-search", Input)
        if event.key == "escape" and box.has_focus:
            event.stop()
            box.value = ""
            box.add_class("hidden")
            self.view.set_search(None)
            self._match_info = ""
            self.view.focus()
            self.refresh_title()

    def action_find(self, forward: bool) -> None:
        if self.view.pattern is None:
            self.action_search()
            return
        self._show_match(self.view.find(forward))

    def _show_match(self, found: tuple[int, int] | None) -> None:
        if found is None:
            self._match_info = ""
        elif found[1] == 0:
            self._match_info = "no match"
        else:
            self._match_info = f"match {found[0]} of {found[1]}"
        self.refresh_title()

    def action_toggle_wrap(self) -> None:
        self.view.set_wrap(not self.view.wrap)
        self.refresh_title()

    def action_toggle_timestamps(self) -> None:
        self.view.set_timestamps(not self.view.timestamps)
        self.refresh_title()

    def action_next_source(self) -> None:
        """All sources → each source in turn → all again."""
        present = set(self.view.sources)
        cycle: list[str | None] = [None, *(s for s in self._names if s is not None and s in present)]
        position = cycle.index(self.view.only) if self.view.only in cycle else 0
        self.show_only(cycle[(position + 1) % len(cycle)])

    def show_only(self, source: str | None) -> None:
        self.view.set_only(source)
        if self.view.pattern is not None:
            self._show_match(self.view.find(forward=True))
        self.refresh_title()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "next_source":
            return any(source is not None for source in self.view.sources)
        return True

    def refresh_title(self) -> None:
        parts = [self.title]
        only = self.view.only
        if only is not None:
            parts.append(f"only {self._names.get(only, only)}")
        elif any(source is not None for source in (*self._names, *self.view.sources)):
            parts.append("all hosts")
        if self.view.wrap:
            parts.append("wrap")
        if self.view.timestamps:
            parts.append("times")
        if self.view.pattern is not None:
            parts.append(f"/{self.view.pattern.pattern}/ {self._match_info}".strip())
        self.border_title = " · ".join(parts)
