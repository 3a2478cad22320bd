"""The hosts list with SSH keys, k9s-style.

    s   shell in a session tab (then switches to the sessions view, 6)
    n   the same target in the system `ssh` (opstui suspends, then returns)
    h   health check of the marked hosts, or of the highlighted one
    H   health check of every host in the team
    r   run one command on the marked hosts (or the highlighted one)
    x   the same as r

Marks: space toggles, ctrl+a marks every host the filter shows ("select by
filter"). Shell, native ssh and commands need `can_execute` on every host
concerned; a health check only needs to see the hosts (any team member).
Keys not allowed are hidden from the footer; pressing one anyway says which
permission is missing.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

from textual import on, work
from textual.binding import Binding
from textual.message import Message

from opstui.ssh.health import HealthResult
from opstui.ssh.known_hosts import KnownHosts
from opstui.ssh.target import SshTarget
from opstui.store import Decision
from opstui.ui.screens.resource import ResourceScreen
from opstui.ui.ssh_bridge import ssh_for
from opstui.ui.widgets.resource_table import ResourceTable

# Action -> (the permission_matrix operation it needs, which rows: 'one' | 'marked' | 'all').
SSH_ACTIONS = {
    "shell": ("execute", "one"),
    "native_ssh": ("execute", "one"),
    "run": ("execute", "marked"),
    "execute": ("execute", "marked"),
    "health": ("select", "marked"),
    "health_all": ("select", "all"),
}


def call_in_foreground(argv: list[str]) -> int:
    """Run `argv` on the terminal, with ctrl+c meant for it alone.

    ctrl+c at ssh's host-key or password prompt signals the whole foreground
    process group, opstui included. A no-op handler (not SIG_IGN, which the child
    would inherit) keeps opstui alive while the child still gets the default.
    """
    previous = signal.signal(signal.SIGINT, lambda *_: None)
    try:
        return subprocess.call(argv, env=os.environ.copy())  # noqa: S603 - no shell
    finally:
        signal.signal(signal.SIGINT, previous)


def native_ssh_argv(target: SshTarget, known_hosts: KnownHosts) -> list[str]:
    """`ssh` with the same target and both known_hosts files; never a password."""
    argv = ["ssh"]
    default_config = Path("~", ".ssh", "config").expanduser()
    if target.config and Path(target.config[0]) != default_config:
        argv += ["-F", target.config[0]]
    if target.port:
        argv += ["-p", str(target.port)]
    files = (known_hosts.user_file(), known_hosts.own_file())
    quoted = " ".join(f'"{f}"' if " " in str(f) else str(f) for f in files)
    argv += ["-o", f"UserKnownHostsFile={quoted}"]
    argv.append(f"{target.username}@{target.host}" if target.username else target.host)
    return argv


class HealthChecked(Message):
    """A health check round finished (results are also in the host rows, live)."""

    def __init__(self, results: list[HealthResult], errors: list[str]) -> None:
        super().__init__()
        self.results = results
        self.errors = errors


class HostsScreen(ResourceScreen):
    BINDINGS = [
        Binding("s", "shell", "Shell", id="hosts.shell"),
        Binding("n", "native_ssh", "Native ssh", id="hosts.native_ssh"),
        Binding("h", "health", "Health check", id="hosts.health"),
        Binding("H", "health_all", "Check all", id="hosts.health_all"),
        Binding("r", "run", "Run command", id="hosts.run"),
        # Fallbacks: reached only when the action above is not allowed.
        Binding("s", "denied('shell')", show=False),
        Binding("n", "denied('native_ssh')", show=False),
        Binding("h", "denied('health')", show=False),
        Binding("H", "denied('health_all')", show=False),
        Binding("r", "denied('run')", show=False),
    ]

    # -- which rows, and may I --------------------------------------------------------------

    def _rows_for(self, scope: str) -> list[dict[str, Any]]:
        if scope == "all":
            return list(self.table.view.rows.values())
        if scope == "marked" and self.table.marked_rows:
            return sorted(self.table.marked_rows, key=lambda r: str(r.get("name")))
        row = self.table.current_row
        return [row] if row is not None else []

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in SSH_ACTIONS:
            return self._decision(action).allowed
        return super().check_action(action, parameters)

    def _decision(self, action: str) -> Decision:
        if action not in SSH_ACTIONS:
            return super()._decision(action)
        store = self.store
        if store is None:
            return Decision(False, "not connected yet")
        operation, scope = SSH_ACTIONS[action]
        rows = self._rows_for(scope)
        if not rows:
            return Decision(False, "no host selected")
        for row in rows:
            decision = store.can("hosts", operation, row)  # type: ignore[arg-type]
            if not decision.allowed:
                return Decision(False, f"{decision.reason} (host {row.get('name')})")
        return Decision(True)

    @on(ResourceTable.MarksChanged)
    def _marks_changed(self, event: ResourceTable.MarksChanged) -> None:
        self.refresh_bindings()

    # -- shell ------------------------------------------------------------------------------

    async def action_shell(self) -> None:
        row = self.table.current_row
        if row is None:
            return
        try:
            SshTarget.from_host(row)
        except ValueError as exc:
            self.notify(str(exc), title="Shell", severity="warning")
            return
        await self.app.switch_mode("sessions")
        sessions = self.app.screen_stack[0]
        await sessions.open_session(row)  # type: ignore[attr-defined]

    def action_native_ssh(self) -> None:
        row = self.table.current_row
        if row is None:
            return
        try:
            target = SshTarget.from_host(row)
        except ValueError as exc:
            self.notify(str(exc), severity="error")
            return
        argv = native_ssh_argv(target, ssh_for(self.app).known_hosts)
        if shutil.which(argv[0]) is None:
            self.notify("No ssh client on PATH; install OpenSSH.", severity="error")
            return
        try:
            with self.app.suspend():
                print(f"opstui: {' '.join(argv)}  (exit the shell to return)", flush=True)
                code = call_in_foreground(argv)
        except Exception as exc:  # noqa: BLE001 - e.g. SuspendNotSupported (no real terminal)
            self.notify(
                f"Cannot suspend here ({type(exc).__name__}); run: {' '.join(argv)}",
                title="Native ssh",
                severity="warning",
                timeout=20,
            )
            return
        self.notify(f"ssh to {target.name} exited with {code}", title="Native ssh")

    # -- health -----------------------------------------------------------------------------

    def action_health(self) -> None:
        self._check(self._rows_for("marked"))

    def action_health_all(self) -> None:
        self._check(self._rows_for("all"))

    def _check(self, rows: list[dict[str, Any]]) -> None:
        targets, problems = [], []
        for row in rows:
            try:
                targets.append(SshTarget.from_host(row))
            except ValueError as exc:
                problems.append(str(exc))
        for problem in problems:
            self.notify(problem, severity="warning")
        if targets:
            self.notify(f"Checking {len(targets)} host(s)…", title="Health")
            self.check_health(targets)

    @work(group="health", exit_on_error=False)
    async def check_health(self, targets: list[SshTarget]) -> None:
        checker = ssh_for(self.app).health_checker()
        results = await checker.check_many(targets)
        self.post_message(HealthChecked(results, list(checker.write_errors)))

    @on(HealthChecked)
    def _health_checked(self, message: HealthChecked) -> None:
        counts: dict[str, int] = {}
        for result in message.results:
            counts[result.status] = counts.get(result.status, 0) + 1
        summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        failed = [r for r in message.results if r.status != "online"]
        detail = "".join(f"\n{r.error}" for r in failed[:3] if r.error)
        self.notify(
            f"{len(message.results)} checked: {summary}{detail}",
            title="Health",
            severity="warning" if failed else "information",
        )
        for error in message.errors[:3]:
            self.notify(error, title="Health not recorded", severity="error")

    # -- commands ---------------------------------------------------------------------------

    def action_run(self) -> None:
        from opstui.ui.screens.multirun import MultiRunScreen, RunPrompt

        rows = self._rows_for("marked")
        if not rows:
            return

        def submitted(command: str | None) -> None:
            if command:
                self.app.push_screen(MultiRunScreen(rows, command))

        self.app.push_screen(RunPrompt([str(r.get("name")) for r in rows]), submitted)

    def action_execute(self) -> None:
        self.action_run()
