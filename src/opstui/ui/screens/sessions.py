"""SSH sessions in tabs: each tab is a terminal on one host, alive while you browse.

The screen is the `sessions` mode (key 6), so switching to other views keeps
its tabs, their connections and their readers running. A tab's title shows the
host and the session's state (connecting, open, exited N, failed). Keys while
a terminal has focus go to the host; ctrl+] hands them back to opstui (the tab
bar gets focus), then: enter/i types in the session again, w closes it,
left/right move between tabs, and the number keys switch views as usual.
Once a session has ended (or failed to open) its tab takes opstui's keys
directly: w closes it, R reconnects.

Every session is audited through the SSH layer (`PtySession(audit=...)`
records one 'session' row at close: start, duration, exit status).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import Static, TabbedContent, TabPane, Tabs

from opstui.ssh.errors import HostKeyChanged, SshError
from opstui.ssh.pty import PtySession
from opstui.ssh.target import SshTarget
from opstui.ui.screens.base import OpsScreen
from opstui.ui.ssh_bridge import ssh_for
from opstui.ui.widgets.terminal import TerminalView

_IDS = itertools.count(1)


@dataclass
class Session:
    """One tab: the host, its terminal, and where the session stands."""

    pane_id: str
    row: dict[str, Any]
    target: SshTarget
    view: TerminalView
    state: str = "connecting"
    pty: Any = None
    error: str = ""
    closing: bool = field(default=False, repr=False)

    @property
    def name(self) -> str:
        return self.target.name or self.target.host

    @property
    def title(self) -> str:
        marks = {"connecting": "…", "open": "●", "failed": "✗"}
        mark = marks.get(self.state, "■")
        return f"{self.name} {mark} {self.state}"


class SessionOpened(Message):
    """A PTY session to the host is open."""

    def __init__(self, pane_id: str, pty: PtySession) -> None:
        super().__init__()
        self.pane_id = pane_id
        self.pty = pty


class SessionFailed(Message):
    """Opening the session failed; `error` is the SSH layer's one line."""

    def __init__(self, pane_id: str, error: SshError) -> None:
        super().__init__()
        self.pane_id = pane_id
        self.error = error


class SessionsScreen(OpsScreen):
    BINDINGS = [
        Binding("enter,i", "attach", "Type in session", id="sessions.attach"),
        Binding("w", "close_session", "Close session", id="sessions.close"),
        Binding("R", "reconnect", "Reconnect", id="sessions.reconnect"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.sessions: dict[str, Session] = {}

    def compose_body(self) -> ComposeResult:
        yield Static(
            "No sessions yet. Press 2 for the hosts, then s on a host to open a shell here.\n"
            "In a session every key goes to the host; ctrl+] gives the keys back to opstui.",
            id="sessions-empty",
        )
        yield TabbedContent(id="sessions-tabs", classes="hidden")

    @property
    def tabs(self) -> TabbedContent:
        return self.query_one("#sessions-tabs", TabbedContent)

    @property
    def current(self) -> Session | None:
        active = self.tabs.active
        return self.sessions.get(active) if active else None

    def busy_summary(self) -> str | None:
        """What quitting would close (the app asks first)."""
        live = [s.name for s in self.sessions.values() if s.state in ("connecting", "open")]
        if not live:
            return None
        return f"{len(live)} shell(s) open ({', '.join(live)})"

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("attach", "close_session"):
            return self.current is not None
        if action == "reconnect":
            session = self.current
            return session is not None and session.state not in ("connecting", "open")
        return True

    # -- opening ----------------------------------------------------------------------------

    async def open_session(self, row: dict[str, Any]) -> Session:
        """A new tab with a terminal on the host; connects in a worker."""
        target = SshTarget.from_host(row)
        pane_id = f"session-{next(_IDS)}"
        view = TerminalView(id=f"term-{pane_id}")
        session = Session(pane_id, row, target, view)
        self.sessions[pane_id] = session
        self.query_one("#sessions-empty").add_class("hidden")
        self.tabs.remove_class("hidden")
        await self.tabs.add_pane(TabPane(session.title, view, id=pane_id))
        self.tabs.active = pane_id
        view.focus()
        self._connect(session)
        return session

    @work(group="sessions", exit_on_error=False)
    async def _connect(self, session: Session) -> None:
        bridge = ssh_for(self.app)
        screen = session.view.screen_model
        try:
            pty = await PtySession.open(
                bridge.pool,
                session.target,
                cols=screen.columns,
                rows=screen.lines,
                audit=bridge.audit,
            )
        except SshError as exc:
            self.post_message(SessionFailed(session.pane_id, exc))
        else:
            self.post_message(SessionOpened(session.pane_id, pty))

    @on(SessionOpened)
    async def _opened(self, message: SessionOpened) -> None:
        session = self.sessions.get(message.pane_id)
        if session is None or session.closing:
            await message.pty.close()  # the tab went while connecting
            return
        session.pty = message.pty
        session.state = "open"
        session.view.attach(message.pty)
        self._retitle(session)
        self.refresh_bindings()

    @on(SessionFailed)
    def _failed(self, message: SessionFailed) -> None:
        session = self.sessions.get(message.pane_id)
        if session is None:
            return
        session.state = "failed"
        session.error = str(message.error)
        session.view.feed(f"\x1b[1;31m{message.error}\x1b[0m\r\n".encode())
        session.view.feed(b"\r\nw closes this tab, R tries again.\r\n")
        self._retitle(session)
        self.refresh_bindings()
        if isinstance(message.error, HostKeyChanged):
            self._host_key_changed(session, message.error)

    def _host_key_changed(self, session: Session, error: HostKeyChanged) -> None:
        from opstui.ui.screens.hostkey import HostKeyChangedScreen

        def decided(forget: bool | None) -> None:
            if forget:
                self._forget_key(session)

        self.app.push_screen(HostKeyChangedScreen(session.target, error), decided)

    @work(group="sessions", exit_on_error=False)
    async def _forget_key(self, session: Session) -> None:
        import asyncio

        bridge = ssh_for(self.app)
        await asyncio.to_thread(bridge.known_hosts.forget, session.target.host, session.target.port)
        self.notify(
            f"Forgot the recorded key of {session.name}; R reconnects and asks about the new one."
        )

    # -- the session's life -----------------------------------------------------------------

    @on(TerminalView.SessionEnded)
    def _ended(self, message: TerminalView.SessionEnded) -> None:
        session = self._by_view(message.view)
        if session is None or session.state != "open":
            return
        status = message.exit_status
        dropped = getattr(session.pty, "disconnected", None) or message.error
        session.state = f"exited {status}" if status is not None else "closed"
        if dropped and status is None:
            session.state = "dropped"
        note = (
            f"[session ended: {session.state}{' · ' + dropped if dropped else ''}]"
            " w closes this tab, R reconnects"
        )
        session.view.feed(f"\r\n\x1b[7m{note}\x1b[0m\r\n".encode())
        self._retitle(session)
        self.refresh_bindings()

    @on(TerminalView.Released)
    def _released(self, message: TerminalView.Released) -> None:
        self.query_one("#sessions-tabs Tabs", Tabs).focus()

    @on(TabbedContent.TabActivated)
    def _activated(self, event: TabbedContent.TabActivated) -> None:
        self.refresh_bindings()

    def _by_view(self, view: TerminalView) -> Session | None:
        return next((s for s in self.sessions.values() if s.view is view), None)

    def _retitle(self, session: Session) -> None:
        try:
            self.tabs.get_tab(session.pane_id).label = session.title
        except Exception:  # noqa: BLE001 - the tab is being removed
            pass

    # -- actions ----------------------------------------------------------------------------

    def action_attach(self) -> None:
        session = self.current
        if session is not None:
            session.view.focus()

    async def action_close_session(self) -> None:
        session = self.current
        if session is None:
            return
        await self.close_session(session)

    async def close_session(self, session: Session) -> None:
        session.closing = True
        self.sessions.pop(session.pane_id, None)
        pty = session.pty
        await self.tabs.remove_pane(session.pane_id)
        if pty is not None:
            self._close_pty(pty)
        if not self.sessions:
            self.tabs.add_class("hidden")
            empty = self.query_one("#sessions-empty", Static)
            # Not "yet": there were sessions, and the last one just closed.
            empty.update(
                "No open sessions. Press 2 for the hosts, then s on a host to open another.\n"
                "In a session every key goes to the host; ctrl+] gives the keys back to opstui."
            )
            empty.remove_class("hidden")
        else:
            self.query_one("#sessions-tabs Tabs", Tabs).focus()
        self.refresh_bindings()

    @work(group="sessions-close", exit_on_error=False)
    async def _close_pty(self, pty: PtySession) -> None:
        await pty.close()  # records the audit row

    def action_reconnect(self) -> None:
        session = self.current
        if session is None or session.state in ("connecting", "open"):
            return
        session.state = "connecting"
        session.pty = None
        session.view.feed(b"\x1b[2J\x1b[H")
        self._retitle(session)
        self.refresh_bindings()
        session.view.focus()
        self._connect(session)

    async def on_unmount(self) -> None:
        for session in list(self.sessions.values()):
            session.closing = True
            if session.pty is not None:
                try:
                    await session.pty.close()
                except Exception:  # noqa: BLE001 - best effort at exit
                    pass
