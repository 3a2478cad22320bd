"""The SSH part of a host's detail view: last health, the audit trail, file transfers.

`HostSshPanel` is mounted by the detail screen for hosts. It shows the health
figures the last check wrote to the row, the host's `ssh_audit` rows (loaded
in a worker through `store.client.table('ssh_audit')`; the store does not
load that table), and SFTP uploads/downloads with a progress bar and a one
line error on failure (`TransferPrompt` asks for the two paths).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Input, Label, ProgressBar, Static

from opstui.ssh import sftp
from opstui.ssh.errors import SshError
from opstui.ssh.target import SshTarget

AUDIT_ROWS = 50


class TransferPrompt(ModalScreen[tuple[str, str] | None]):
    """Source and destination of one SFTP transfer."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="transfer.cancel")]

    def __init__(self, direction: str, host: str, source: str = "", destination: str = "") -> None:
        super().__init__()
        self.direction = direction
        self.host = host
        self.source = source
        self.destination = destination

    def compose(self) -> ComposeResult:
        upload = self.direction == "upload"
        with Vertical(id="transfer-dialog"):
            yield Label(
                f"Upload a local file to {self.host}"
                if upload
                else f"Download a file from {self.host}",
                id="transfer-title",
            )
            yield Input(
                self.source,
                placeholder="local file" if upload else "remote path",
                id="transfer-source",
            )
            yield Input(
                self.destination,
                placeholder="remote path" if upload else "local file",
                id="transfer-destination",
            )

    def on_mount(self) -> None:
        self.query_one("#transfer-source", Input).focus()

    @on(Input.Submitted, "#transfer-source")
    def _next(self) -> None:
        self.query_one("#transfer-destination", Input).focus()

    @on(Input.Submitted, "#transfer-destination")
    def _done(self) -> None:
        source = self.query_one("#transfer-source", Input).value.strip()
        destination = self.query_one("#transfer-destination", Input).value.strip()
        if source and destination:
            self.dismiss((source, destination))
        else:
            self.notify("Both paths are needed.", severity="warning")

    def action_cancel(self) -> None:
        self.dismiss(None)


class AuditTrailLoaded(Message):
    def __init__(self, rows: list[dict[str, Any]], error: str = "") -> None:
        super().__init__()
        self.rows = rows
        self.error = error


class TransferProgressed(Message):
    def __init__(self, done: int, total: int) -> None:
        super().__init__()
        self.done = done
        self.total = total


class TransferFinished(Message):
    def __init__(self, description: str, size: int = 0, error: str = "") -> None:
        super().__init__()
        self.description = description
        self.size = size
        self.error = error


class HostSshPanel(Vertical):
    def __init__(self, host_key: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.host_key = host_key
        self.audit_rows: list[dict[str, Any]] | None = None
        self.transferring = False

    def compose(self) -> ComposeResult:
        yield Static(id="host-health")
        with Vertical(id="transfer", classes="hidden"):
            yield Label("", id="transfer-status")
            yield ProgressBar(id="transfer-progress", show_eta=False)
        yield Static("SSH audit trail: loading…", id="host-audit")

    @property
    def row(self) -> dict[str, Any] | None:
        store = self.app.store  # type: ignore[attr-defined]
        return store.row("hosts", self.host_key) if store else None

    def on_mount(self) -> None:
        self.show_health()
        self.load_trail()

    # -- health -----------------------------------------------------------------------------

    def show_health(self) -> None:
        row = self.row
        box = self.query_one("#host-health", Static)
        if row is None:
            box.update("")
            return
        health = row.get("health") or {}
        checked = row.get("last_checked_at")
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold cyan", no_wrap=True)
        grid.add_column()
        grid.add_row("status", str(row.get("status") or ""))
        grid.add_row("last checked", str(checked) if checked else "never (h on the hosts list)")
        for label, value in _health_figures(health):
            grid.add_row(label, value)
        box.update(Group(Text("Health", style="bold"), grid))

    # -- audit trail ------------------------------------------------------------------------

    @work(group="host-audit", exclusive=True, exit_on_error=False)
    async def load_trail(self) -> None:
        store = self.app.store  # type: ignore[attr-defined]
        if store is None:
            return
        try:
            response = await (
                store.client.table("ssh_audit")
                .select("*")
                .eq("host_id", self.host_key)
                .order("started_at", desc=True)
                .limit(AUDIT_ROWS)
                .execute()
            )
        except Exception as exc:  # noqa: BLE001 - one line in the panel
            message = getattr(exc, "message", None) or str(exc)
            self.post_message(AuditTrailLoaded([], message))
            return
        self.post_message(AuditTrailLoaded(list(response.data or [])))

    @on(AuditTrailLoaded)
    def _trail_loaded(self, message: AuditTrailLoaded) -> None:
        box = self.query_one("#host-audit", Static)
        if message.error:
            box.update(Text(f"SSH audit trail: {message.error}", style="red"))
            return
        self.audit_rows = message.rows
        if not message.rows:
            box.update(Text("SSH audit trail: none yet", style="dim"))
            return
        store = self.app.store  # type: ignore[attr-defined]
        people = {p["id"]: p.get("email") for p in store.rows("profiles")} if store else {}
        table = Table(
            title=f"SSH audit trail ({len(message.rows)})",
            title_justify="left",
            expand=True,
        )
        for column in ("WHEN", "WHO", "KIND", "COMMAND", "EXIT", "DURATION"):
            table.add_column(column)
        for row in message.rows:
            duration = row.get("duration_ms")
            table.add_row(
                str(row.get("started_at") or "")[:19].replace("T", " "),
                str(people.get(row.get("profile_id"), row.get("profile_id") or "")),
                str(row.get("kind") or ""),
                str(
                    row.get("command") or ("(interactive)" if row.get("kind") == "session" else "")
                ),
                "" if row.get("exit_code") is None else str(row.get("exit_code")),
                "" if duration is None else f"{duration / 1000:.1f}s",
            )
        box.update(table)

    # -- files ------------------------------------------------------------------------------

    def ask_transfer(self, direction: str) -> None:
        row = self.row
        if row is None or self.transferring:
            return
        name = str(row.get("name"))

        def chosen(paths: tuple[str, str] | None) -> None:
            if paths:
                self.transfer(direction, row, *paths)

        self.app.push_screen(TransferPrompt(direction, name), chosen)

    @work(group="host-transfer", exclusive=True, exit_on_error=False)
    async def transfer(self, direction: str, row: dict[str, Any], source: str, dest: str) -> None:
        from opstui.ui.ssh_bridge import ssh_for

        self.transferring = True
        try:
            target = SshTarget.from_host(row)
        except ValueError as exc:
            self.post_message(TransferFinished("", error=str(exc)))
            return
        arrow = f"{source} → {target.name}:{dest}" if direction == "upload" else (
            f"{target.name}:{source} → {dest}"
        )  # fmt: skip
        self.post_message(TransferProgressed(0, 0))
        last = [0.0]

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if done >= total or now - last[0] > 0.05:
                last[0] = now
                self.post_message(TransferProgressed(done, total))

        pool = ssh_for(self.app).pool  # type: ignore[arg-type]
        try:
            if direction == "upload":
                size = await sftp.upload(
                    pool, target, Path(source).expanduser(), dest, progress=progress
                )
            else:
                size = await sftp.download(
                    pool, target, source, Path(dest).expanduser(), progress=progress
                )
        except SshError as exc:
            self.post_message(TransferFinished(arrow, error=str(exc)))
        else:
            self.post_message(TransferFinished(arrow, size))

    @on(TransferProgressed)
    def _progressed(self, message: TransferProgressed) -> None:
        self.query_one("#transfer").remove_class("hidden")
        bar = self.query_one("#transfer-progress", ProgressBar)
        if message.total:
            bar.update(total=message.total, progress=message.done)
        else:
            bar.update(total=None)
        self.query_one("#transfer-status", Label).update(
            Text(f"transferring… {message.done} of {message.total or '?'} bytes")
        )

    @on(TransferFinished)
    def _finished(self, message: TransferFinished) -> None:
        self.transferring = False
        status = self.query_one("#transfer-status", Label)
        bar = self.query_one("#transfer-progress", ProgressBar)
        self.query_one("#transfer").remove_class("hidden")
        if message.error:
            status.update(Text(f"✗ {message.error}", style="bold red"))
            bar.update(total=1, progress=0)
            self.notify(message.error, title="Transfer failed", severity="error", timeout=15)
        else:
            status.update(Text(f"✓ {message.description} ({message.size} bytes)", style="green"))
            bar.update(total=max(1, message.size), progress=max(1, message.size))
            self.notify(f"{message.description}: {message.size} bytes", title="Transferred")


def _health_figures(health: dict[str, Any]) -> list[tuple[str, str]]:
    """Readable lines for the probe figures (other keys are shown as they are)."""
    figures: list[tuple[str, str]] = []
    rest = dict(health)
    uptime = rest.pop("uptime_s", None)
    if isinstance(uptime, int | float):
        days, left = divmod(int(uptime), 86400)
        figures.append(("uptime", f"{days}d {left // 3600}h {left % 3600 // 60}m"))
    load = rest.pop("load", None)
    if isinstance(load, list):
        figures.append(("load", " ".join(str(x) for x in load)))
    if rest.get("mem_used_pct") is not None:
        total = rest.pop("mem_total_kb", None)
        of = f" of {int(total) // 1024} MB" if isinstance(total, int | float) else ""
        figures.append(("memory", f"{rest.pop('mem_used_pct')}% used{of}"))
        rest.pop("mem_available_kb", None)
    if rest.get("disk_root_used_pct") is not None:
        total = rest.pop("disk_root_total_kb", None)
        of = f" of {int(total) // 1048576} GB" if isinstance(total, int | float) else ""
        figures.append(("disk /", f"{rest.pop('disk_root_used_pct')}% used{of}"))
    for key, value in sorted(rest.items()):
        figures.append((key.replace("_", " "), str(value)))
    return figures
