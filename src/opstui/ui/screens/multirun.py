"""One command on many hosts: streamed output per host, exit codes, cancel, a summary.

The SSH layer's `run_command` does the work in a worker; its event batches
come back as `RunProgressed` messages. Output lines wait in a bounded queue
per host and reach the log at most `FLUSH_FPS` times a second, in one write.
The log (`OutputLog`) stores plain tuples and renders only the lines on
screen, so a host streaming heavy output cannot freeze the UI; a host that
outruns even that loses its oldest unshown lines (each host keeps at most
`PENDING_PER_HOST`, the rest are counted and reported as skipped), and can
never push another host's unshown lines out. The log keeps `LOG_LINES` lines;
each host's last `TAIL_PER_HOST` lines are kept apart for the one-host view.

Keys: escape or ctrl+c cancels what is still running (escape again goes back);
f shows only the host highlighted in the status table (its last
`TAIL_PER_HOST` lines), f again shows every host.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Label

from opstui.ssh.exec import (
    Event,
    ExecRun,
    HostFinished,
    HostStarted,
    Output,
    RunFinished,
    run_command,
    unique_names,
)
from opstui.ssh.target import SshTarget
from opstui.ui.screens.base import OpsScreen
from opstui.ui.ssh_bridge import ssh_for
from opstui.ui.widgets.log_pane import HOST_COLOURS, LogPane
from opstui.ui.widgets.output_log import OutputLog

FLUSH_FPS = 20
STATUS_EVERY = 0.5  # seconds between status-table refreshes of mere line counts
PENDING_PER_HOST = 5000
TAIL_PER_HOST = 1000  # lines kept per host, for the one-host view (f)
LOG_LINES = 5000
COMBINED_LINES = LOG_LINES  # all hosts, kept for f back to every host
MAX_LINE = 2000  # characters shown of one line

STATE_STYLES = {
    "ok": "green",
    "failed": "bold red",
    "unreachable": "bold red",
    "cancelled": "yellow",
    "running": "cyan",
    "queued": "dim",
}


class RunPrompt(ModalScreen[str | None]):
    """The command to run on the chosen hosts."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="run_prompt.cancel")]

    def __init__(self, hosts: list[str]) -> None:
        super().__init__()
        self.hosts = hosts

    def compose(self) -> ComposeResult:
        names = ", ".join(self.hosts[:6]) + (
            f" +{len(self.hosts) - 6}" if len(self.hosts) > 6 else ""
        )
        yield Label(f"Run on {len(self.hosts)} host(s): {names}", id="run-hint")
        yield Input(placeholder="command, e.g. uptime", id="run-command")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class RunProgressed(Message):
    """Events from the SSH run arrived (already coalesced per host and stream).

    The worker waits for `handled` before taking the next batch: the UI paces the
    run (the SSH layer's bounded queue and flow control hold the rest), and the
    screen never faces a backlog of messages that it would process in one go.
    """

    def __init__(self, events: list[Event], handled: asyncio.Event) -> None:
        super().__init__()
        self.events = events
        self.handled = handled


class RunCrashed(Message):
    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


@dataclass
class HostLane:
    name: str
    colour: str
    state: str = "queued"
    exit_status: int | None = None
    duration: float | None = None
    error: str = ""
    lines: int = 0
    skipped: int = 0
    pending: deque = field(default_factory=lambda: deque(maxlen=PENDING_PER_HOST))
    tail: deque = field(default_factory=lambda: deque(maxlen=TAIL_PER_HOST))


class MultiRunScreen(OpsScreen):
    BINDINGS = [
        Binding("escape", "cancel_or_back", "Cancel / back", id="multirun.cancel_or_back"),
        Binding("ctrl+c", "cancel", "Cancel", id="multirun.cancel"),
        Binding("f", "only_host", "One host / all", id="multirun.only_host"),
    ]

    def __init__(self, rows: list[dict[str, Any]], command: str) -> None:
        super().__init__()
        self.command = command
        self.targets: list[SshTarget] = []
        self.problems: list[str] = []
        for row in rows:
            try:
                self.targets.append(SshTarget.from_host(row))
            except ValueError as exc:
                self.problems.append(str(exc))
        names = unique_names(self.targets)
        self.lanes: dict[str, HostLane] = {
            name: HostLane(name, HOST_COLOURS[i % len(HOST_COLOURS)])
            for i, name in enumerate(names)
        }
        self.width = max((len(n) for n in names), default=4)
        self.run: ExecRun | None = None
        self.finished = False
        self.cancelling = False
        self.summary_line = ""
        self._seq = itertools.count()
        self._flush_scheduled = False
        self._last_flush = 0.0
        self._status_changed: set[str] = set()
        self._status_shown: dict[str, tuple[Any, ...]] = {}
        self._status_at = 0.0
        self._summary_shown = ""
        self.only: str | None = None  # show one host's output (f)
        self.combined: deque = deque(maxlen=COMBINED_LINES)  # every host's, for f back to all

    def busy_summary(self) -> str | None:
        """What quitting would cut short (the app asks first)."""
        if self.run is None or self.finished:
            return None
        return f"{self.command!r} still running on {len(self.lanes)} host(s)"

    def compose_body(self) -> ComposeResult:
        yield Label(Text.assemble(("$ ", "dim"), (self.command, "bold")), id="multirun-command")
        yield DataTable(id="multirun-status", cursor_type="row", zebra_stripes=True)
        # The shared log pane (search, wrap, timestamps) around this screen's own lines.
        yield LogPane(view=OutputLog(max_lines=LOG_LINES), id="multirun-log", title="output")
        yield Label("", id="multirun-summary")

    def on_mount(self) -> None:
        super().on_mount()
        table = self.query_one(DataTable)
        for key, label in (
            ("host", "HOST"),
            ("state", "STATE"),
            ("exit", "EXIT"),
            ("duration", "DURATION"),
            ("lines", "LINES"),
            ("error", "ERROR"),
        ):
            table.add_column(label, key=key)
        for lane in self.lanes.values():
            table.add_row(*self._cells(lane), key=lane.name)
        log = self._log
        self._title(f"output · {len(self.lanes)} host(s)")
        log.write_lines(("", "", problem, "stderr") for problem in self.problems)
        self._show_summary()
        if self.targets:
            self.start()
        else:
            self.finished = True
            self._show_summary()

    # -- the run ----------------------------------------------------------------------------

    @work(group="multirun", exclusive=True, exit_on_error=False)
    async def start(self) -> None:
        bridge = ssh_for(self.app)
        try:
            self.run = run_command(bridge.pool, self.targets, self.command, audit=bridge.audit)
            async for batch in self.run.batches(max_events=32):  # <= 2 MB a message
                handled = asyncio.Event()
                self.post_message(RunProgressed(batch, handled))
                await handled.wait()
        except Exception as exc:  # noqa: BLE001 - one line, never a traceback
            self.post_message(RunCrashed(f"{type(exc).__name__}: {exc}"))

    @on(RunProgressed)
    def _progressed(self, message: RunProgressed) -> None:
        try:
            self._take(message.events)
        finally:
            message.handled.set()

    def _take(self, events: list[Event]) -> None:
        changed: set[str] = set()
        for event in events:
            if isinstance(event, Output):
                lane = self.lanes.get(event.host)
                if lane is None:
                    continue
                text = event.text[:-1] if event.text.endswith("\n") else event.text
                lines = text.split("\n")
                lane.lines += len(lines)
                seq = next(self._seq)  # one per event: the sort is stable within it
                lane.tail.extend((event.stream, line) for line in lines[-TAIL_PER_HOST:])
                room = PENDING_PER_HOST - len(lane.pending)
                if len(lines) > room:
                    lane.skipped += len(lines) - max(room, 0)
                    lines = lines[-PENDING_PER_HOST:]
                lane.pending.extend((seq, event.stream, line) for line in lines)
                changed.add(event.host)
            elif isinstance(event, HostStarted):
                lane = self.lanes.get(event.host)
                if lane is not None:
                    lane.state = "running"
                    changed.add(event.host)
            elif isinstance(event, HostFinished):
                lane = self.lanes.get(event.host)
                if lane is not None:
                    lane.state = event.status
                    lane.exit_status = event.exit_status
                    lane.duration = event.duration
                    lane.error = event.error or ""
                    changed.add(event.host)
            elif isinstance(event, RunFinished):
                self.finished = True
                self.summary_line = event.summary.line()
        self._status_changed |= changed
        self._schedule_flush()

    @on(RunCrashed)
    def _crashed(self, message: RunCrashed) -> None:
        self.finished = True
        self.summary_line = f"the run failed: {message.error}"
        self._show_summary()

    def _schedule_flush(self) -> None:
        if self._flush_scheduled:
            return
        self._flush_scheduled = True
        wait = max(0.0, self._last_flush + 1 / FLUSH_FPS - time.monotonic())
        if wait:
            self.set_timer(wait, self._flush)
        else:
            self.call_later(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        self._last_flush = time.monotonic()
        lines: list[tuple[int, HostLane, str, str]] = []
        notes: list[tuple[HostLane, str, str]] = []
        for lane in self.lanes.values():
            if lane.skipped:
                notes.append((lane, "note", f"… {lane.skipped} lines skipped"))
                lane.skipped = 0
            while lane.pending:
                seq, stream, line = lane.pending.popleft()
                lines.append((seq, lane, stream, line))
        lines.sort(key=lambda item: item[0])
        ordered = [*notes, *((lane, stream, line) for _, lane, stream, line in lines)]
        # Every host's lines are kept (capped), so `f` back to all hosts loses nothing.
        self.combined.extend(ordered)
        if self.only is not None:
            ordered = [item for item in ordered if item[0].name == self.only]
        if ordered:
            self._write(ordered)
        self._update_status()
        self._show_summary()

    def _update_status(self) -> None:
        """Repaint changed status rows; line counts alone at most every STATUS_EVERY s.

        Every DataTable update drops its render cache, and a repaint of the table is
        the costliest thing on this screen.
        """
        now = time.monotonic()
        counts_due = now - self._status_at >= STATUS_EVERY or self.finished
        table = self.query_one(DataTable)
        keep: set[str] = set()
        for name in self._status_changed:
            lane = self.lanes[name]
            cells = self._cells(lane)
            shown = self._status_shown.get(name)
            if shown is not None and shown[:3] == cells_key(cells)[:3] and not counts_due:
                keep.add(name)  # only the line count moved: later
                continue
            for key, value, old in zip(
                ("host", "state", "exit", "duration", "lines", "error"),
                cells,
                shown or (None,) * 6,
                strict=True,
            ):
                if str(value) != old:
                    # Widen as values grow: `unreachable` and errors are never cut to `unreac`.
                    table.update_cell(name, key, value, update_width=True)
            self._status_shown[name] = cells_key(cells)
        if counts_due:
            self._status_at = now
        self._status_changed = keep
        if keep:
            self._schedule_flush()

    def _write(self, lines: list[tuple[HostLane, str, str]]) -> None:
        width = self.width
        self._log.write_lines(
            (f"{lane.name:<{width}} │ ", f"bold {lane.colour}", line[:MAX_LINE], stream)
            for lane, stream, line in lines
        )

    def action_only_host(self) -> None:
        """Show only the highlighted host's output (its kept tail), or every host again."""
        table = self.query_one(DataTable)
        log = self._log
        if self.only is None and table.row_count:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
            self.only = str(key)
            lane = self.lanes[self.only]
            log.clear()
            self._title(f"output · only {lane.name} (f: all hosts)")
            self._write([(lane, stream, line) for stream, line in lane.tail])
            if not lane.tail:
                # An unreachable host printed nothing: say what happened to it instead.
                why = f": {lane.error}" if lane.error else ""
                self._write([(lane, "note", f"no output ({lane.state}{why})")])
        else:
            self.only = None
            log.clear()
            self._title(f"output · {len(self.lanes)} host(s)")
            self._write(list(self.combined))

    @property
    def _log(self) -> OutputLog:
        return self.query_one(LogPane).view  # type: ignore[return-value]

    def _title(self, title: str) -> None:
        pane = self.query_one(LogPane)
        pane.title = title
        pane.refresh_title()

    def _cells(self, lane: HostLane) -> tuple[Any, ...]:
        return (
            Text(lane.name, style=f"bold {lane.colour}"),
            Text(lane.state, style=STATE_STYLES.get(lane.state, "")),
            "" if lane.exit_status is None else str(lane.exit_status),
            "" if lane.duration is None else f"{lane.duration:.2f}s",
            str(lane.lines),
            lane.error[:200],
        )

    def _show_summary(self) -> None:
        if self.finished:
            text = f"done: {self.summary_line}"
        else:
            done = sum(1 for lane in self.lanes.values() if lane.state not in ("queued", "running"))
            what = "cancelling…" if self.cancelling else "esc/ctrl+c cancels"
            text = f"running: {done} of {len(self.lanes)} finished · {what}"
        if text != self._summary_shown:  # a label update costs a layout
            self._summary_shown = text
            self.query_one("#multirun-summary", Label).update(text)

    # -- keys -------------------------------------------------------------------------------

    def on_unmount(self) -> None:
        if self.run is not None and not self.finished:
            self.run.cancel()  # leaving the screen stops what still runs

    def action_cancel(self) -> None:
        if self.run is not None and not self.finished and not self.cancelling:
            self.cancelling = True
            self.run.cancel()
            self._show_summary()

    def action_cancel_or_back(self) -> None:
        if self.finished:
            self.app.pop_screen()
        else:
            self.action_cancel()


def cells_key(cells: tuple[Any, ...]) -> tuple[str, ...]:
    """The status cells as strings, in order: host, state, exit, duration, lines, error."""
    return tuple(str(cell) for cell in cells)
