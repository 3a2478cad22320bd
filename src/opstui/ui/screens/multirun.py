"""One command on many hosts: streamed output per host, exit codes, cancel, a summary.

The SSH layer's `run_command` does the work in a worker; its event batches
come back as `RunProgressed` messages. Output lines wait in a bounded queue
per host and reach the log at most `FLUSH_FPS` times a second, as one write:
a host streaming heavy output cannot freeze the UI, and cannot push the other
hosts' lines out (each host keeps at most `PENDING_PER_HOST` unshown lines;
the rest are counted and reported as skipped). The log itself keeps
`LOG_LINES` lines.

Keys: escape or ctrl+c cancels what is still running (escape again goes back).
"""

from __future__ import annotations

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
from textual.widgets import DataTable, Input, Label, RichLog

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

FLUSH_FPS = 20
PENDING_PER_HOST = 400
LOG_LINES = 5000
MAX_LINE = 2000  # characters shown of one line

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
    """Events from the SSH run arrived (already coalesced per host and stream)."""

    def __init__(self, events: list[Event]) -> None:
        super().__init__()
        self.events = events


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


class MultiRunScreen(OpsScreen):
    BINDINGS = [
        Binding("escape", "cancel_or_back", "Cancel / back", id="multirun.cancel_or_back"),
        Binding("ctrl+c", "cancel", "Cancel", id="multirun.cancel"),
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

    def compose_body(self) -> ComposeResult:
        yield Label(Text.assemble(("$ ", "dim"), (self.command, "bold")), id="multirun-command")
        yield DataTable(id="multirun-status", cursor_type="row", zebra_stripes=True)
        yield RichLog(id="multirun-log", max_lines=LOG_LINES, wrap=False, markup=False)
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
        log = self.query_one(RichLog)
        log.border_title = f"output · {len(self.lanes)} host(s)"
        for problem in self.problems:
            log.write(Text(problem, style="bold red"))
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
            async for batch in self.run.batches():
                self.post_message(RunProgressed(batch))
        except Exception as exc:  # noqa: BLE001 - one line, never a traceback
            self.post_message(RunCrashed(f"{type(exc).__name__}: {exc}"))

    @on(RunProgressed)
    def _progressed(self, message: RunProgressed) -> None:
        changed: set[str] = set()
        for event in message.events:
            if isinstance(event, Output):
                lane = self.lanes.get(event.host)
                if lane is None:
                    continue
                text = event.text[:-1] if event.text.endswith("\n") else event.text
                for line in text.split("\n"):
                    if len(lane.pending) == lane.pending.maxlen:
                        lane.skipped += 1
                    lane.pending.append((next(self._seq), event.stream, line))
                    lane.lines += 1
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
        notes: list[Text] = []
        for lane in self.lanes.values():
            if lane.skipped:
                notes.append(
                    Text(
                        f"{lane.name:<{self.width}} │ … {lane.skipped} lines skipped "
                        "(output faster than the screen; the log keeps the newest)",
                        style=f"italic {lane.colour}",
                    )
                )
                lane.skipped = 0
            while lane.pending:
                seq, stream, line = lane.pending.popleft()
                lines.append((seq, lane, stream, line))
        lines.sort(key=lambda item: item[0])
        if notes or lines:
            out = Text(no_wrap=True, end="")
            for note in notes:
                out.append_text(note)
                out.append("\n")
            for _, lane, stream, line in lines:
                out.append(f"{lane.name:<{self.width}} │ ", style=f"bold {lane.colour}")
                out.append(line[:MAX_LINE], style="red" if stream == "stderr" else "")
                out.append("\n")
            out.rstrip()
            self.query_one(RichLog).write(out)
        changed, self._status_changed = self._status_changed, set()
        table = self.query_one(DataTable)
        for name in changed:
            lane = self.lanes[name]
            for key, value in zip(
                ("host", "state", "exit", "duration", "lines", "error"),
                self._cells(lane),
                strict=True,
            ):
                table.update_cell(name, key, value)
        self._show_summary()

    def _cells(self, lane: HostLane) -> tuple[Any, ...]:
        return (
            Text(lane.name, style=f"bold {lane.colour}"),
            Text(lane.state, style=STATE_STYLES.get(lane.state, "")),
            "" if lane.exit_status is None else str(lane.exit_status),
            "" if lane.duration is None else f"{lane.duration:.2f}s",
            str(lane.lines),
            lane.error[:80],
        )

    def _show_summary(self) -> None:
        label = self.query_one("#multirun-summary", Label)
        if self.finished:
            label.update(Text(f"done: {self.summary_line}", style="bold"))
            return
        done = sum(1 for lane in self.lanes.values() if lane.state not in ("queued", "running"))
        what = "cancelling…" if self.cancelling else "esc/ctrl+c cancels"
        label.update(f"running: {done} of {len(self.lanes)} finished · {what}")

    # -- keys -------------------------------------------------------------------------------

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
