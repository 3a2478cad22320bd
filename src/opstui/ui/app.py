"""OpsApp: the k9s-style shell around the store.

The connector (a profile, or the embedded demo) is injected, so tests drive
the real app against their own backend. Workers do all I/O; results come back
as messages; store events fan out to screens through one Signal.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from textual import on, work
from textual.app import App
from textual.binding import Binding
from textual.signal import Signal
from textual.worker import Worker, WorkerState

from opstui.connect import Connector
from opstui.resources import RESOURCES, ResourceSpec, resolve
from opstui.session import SignInError
from opstui.store import Store, StoreError, StoreEvent
from opstui.ui.messages import (
    ConnectionFailed,
    RunLaunched,
    SignInNeeded,
    StoreEventArrived,
    StoreOpened,
    WriteFailed,
)

MAIN_VIEWS = ("overview", "teams", "hosts", "repositories", "deployments", "cicd")
# Bound to printable keys: never taken from a form or a text field that has focus.
TYPED_ACTIONS = {"view", "command_line", "help"}


def _typing(screen: Any, focused: Any) -> bool:
    from textual.widgets import Input, TextArea

    from opstui.ui.screens.form import FormScreen

    return isinstance(screen, FormScreen) or isinstance(focused, Input | TextArea)


def _main_screen(name: str) -> Callable[[], Any]:
    def build():
        if name == "overview":
            from opstui.ui.screens.overview import OverviewScreen

            return OverviewScreen()
        if name == "sessions":
            from opstui.ui.screens.sessions import SessionsScreen

            return SessionsScreen()
        if name == "hosts":
            from opstui.ui.screens.hosts import HostsScreen

            return HostsScreen(RESOURCES[name])
        if name == "cicd":
            from opstui.ui.screens.cicd import CicdScreen

            return CicdScreen(RESOURCES[name])
        from opstui.ui.screens.resource import ResourceScreen

        return ResourceScreen(RESOURCES[name])

    return build


class OpsApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "opstui"
    MODES = {name: _main_screen(name) for name in (*MAIN_VIEWS, "sessions")}
    DEFAULT_MODE = "overview"

    BINDINGS = [
        Binding("colon", "command_line", "Command", id="app.command"),
        Binding("question_mark", "help", "Help", id="app.help"),
        Binding("0", "view('overview')", "Overview", show=False, id="app.view.overview"),
        Binding("1", "view('teams')", "Teams", show=False, id="app.view.teams"),
        Binding("2", "view('hosts')", "Hosts", show=False, id="app.view.hosts"),
        Binding("3", "view('repositories')", "Repos", show=False, id="app.view.repositories"),
        Binding("4", "view('deployments')", "Deploys", show=False, id="app.view.deployments"),
        Binding("5", "view('cicd')", "CI/CD", show=False, id="app.view.cicd"),
        Binding("6", "view('sessions')", "Sessions", show=False, id="app.view.sessions"),
        Binding("ctrl+q", "quit", "Quit", id="app.quit", priority=True),
    ]

    def __init__(
        self,
        connector: Connector,
        *,
        team: str | None = None,
        clock: Callable[[], datetime] | None = None,
        tick_seconds: float = 1.0,
        health_interval: float = 0.0,
        exit_on_signals: bool = False,
        theme: str | None = None,
        remember_theme: bool = False,
    ) -> None:
        super().__init__()
        self.exit_on_signals = exit_on_signals
        if theme and theme in self.available_themes:
            self.theme = theme
        self.remember_theme = remember_theme
        self.connector = connector
        self.initial_team = team
        self.clock = clock or (lambda: datetime.now(UTC))
        self.tick_seconds = tick_seconds
        self.health_interval = health_interval
        self.store: Store | None = None
        self.connection_error: str | None = None  # why the start failed, for the header
        self.store_changed: Signal[StoreEvent] = Signal(self, "store-changed")

    @property
    def backend_label(self) -> str:
        return self.connector.label

    def get_system_commands(self, screen):  # type: ignore[override]
        from opstui.ui.commands import ops_commands

        yield from super().get_system_commands(screen)
        yield from ops_commands(self)

    # -- connecting -------------------------------------------------------------------------

    def on_mount(self) -> None:
        if self.exit_on_signals:
            # A closed terminal (SIGHUP) or a kill (SIGTERM) ends the app as ctrl+q does,
            # so the embedded Postgres stops with it instead of outliving the terminal.
            import asyncio
            import signal

            loop = asyncio.get_running_loop()
            for sig in (signal.SIGHUP, signal.SIGTERM):
                loop.add_signal_handler(sig, self.exit)
        if self.remember_theme:
            self.theme_changed_signal.subscribe(self, self._theme_changed)
        self.connect()
        if self.tick_seconds:
            self.set_interval(self.tick_seconds, self._tick)

    def _theme_changed(self, theme: Any) -> None:
        from opstui.config import save_setting

        # Picked in the palette: remembered in the config file for the next start.
        self.run_worker(
            lambda: save_setting("theme", theme.name),
            thread=True,
            group="config",
            exit_on_error=False,
        )

    @work(exclusive=True, group="connect", exit_on_error=False)
    async def connect(self) -> None:
        try:
            await self.connector.start()
            client = await self.connector.resume()
        except (SignInError, StoreError) as exc:
            self.post_message(ConnectionFailed(str(exc)))
            return
        except OSError as exc:
            self.post_message(ConnectionFailed(f"cannot reach the backend: {exc}"))
            return
        if client is None:
            self.post_message(SignInNeeded())
            return
        await self._open_store(client)

    @work(exclusive=True, group="connect", exit_on_error=False)
    async def sign_in(self, email: str, password: str) -> None:
        try:
            client = await self.connector.sign_in(email, password)
        except SignInError as exc:
            self.post_message(ConnectionFailed(str(exc)))
            return
        await self._open_store(client)

    async def _open_store(self, client: Any) -> None:
        self.connection_error = None
        store = Store(client, clock=self.clock)
        store.listen(lambda event: self.post_message(StoreEventArrived(event)))
        self.store = store
        self.post_message(StoreOpened(store))
        try:
            await store.open(self.initial_team)
        except StoreError as exc:
            self.post_message(ConnectionFailed(str(exc)))
            return
        self.connector.first_data_shown()

    @on(StoreOpened)
    def _store_opened(self, message: StoreOpened) -> None:
        if self.health_interval > 0:
            from opstui.ui.ssh_bridge import ssh_for

            ssh_for(self).start_periodic_health(self.health_interval)
        if isinstance(self.screen, _signin_screen_type()):
            self.pop_screen()
        screen = self.screen
        if hasattr(screen, "store_ready"):
            screen.store_ready()

    @on(StoreEventArrived)
    def _store_event(self, message: StoreEventArrived) -> None:
        self.store_changed.publish(message.event)

    @on(SignInNeeded)
    def _sign_in_needed(self) -> None:
        from opstui.ui.screens.signin import SignInScreen

        self.push_screen(SignInScreen(self.connector.label, self.connector.email_hint))

    @on(ConnectionFailed)
    def _connection_failed(self, message: ConnectionFailed) -> None:
        from opstui.ui.screens.signin import SignInScreen

        self.connection_error = message.reason
        if isinstance(self.screen, SignInScreen):
            self.screen.show_error(message.reason)
        else:
            self.notify(message.reason, title="Connection", severity="error", timeout=30)
            if hasattr(self.screen, "refresh_context"):
                self.screen.refresh_context()

    @on(WriteFailed)
    def _write_failed(self, message: WriteFailed) -> None:
        self.notify(message.reason, title="Refused", severity="error", timeout=10)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # One place for worker failures: a one-line notice, never a traceback.
        if event.state is WorkerState.ERROR and event.worker.error is not None:
            error = event.worker.error
            self.notify(f"{type(error).__name__}: {error}", title="Error", severity="error")

    async def on_unmount(self) -> None:
        from opstui.ui.ssh_bridge import close_ssh

        await close_ssh(self)
        if self.store is not None:
            await self.store.close()
        await self.connector.close()

    def _tick(self) -> None:
        # Running durations and "reconnecting (12s)" change with the clock alone.
        screen = self.screen
        if hasattr(screen, "tick"):
            screen.tick()

    # -- keys -------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        focused = self.focused
        # In a shell every key goes to the host, ctrl+q included (ctrl+] gives keys back).
        if type(focused).__name__ == "TerminalView" and (
            action == "quit" or action in TYPED_ACTIONS
        ):
            return False
        # Printable keys belong to a form or an input while it has focus.
        if action in TYPED_ACTIONS and _typing(self.screen, focused):
            return False
        return True

    async def action_quit(self) -> None:
        busy = [summary for summary in self._busy_work() if summary]
        if not busy:
            self.exit()
            return
        from opstui.ui.screens.confirm import ConfirmScreen

        def decided(yes: bool | None) -> None:
            if yes:
                self.exit()

        self.push_screen(
            ConfirmScreen(
                "Quit opstui?",
                "Still going: " + "; ".join(busy) + ". Quitting closes them.",
                yes_label="Quit (y)",
                no_label="Stay (n)",
            ),
            decided,
        )

    def _busy_work(self) -> list[str | None]:
        """What quitting would cut short: each live screen's own `busy_summary()`."""
        stacks = getattr(self, "_screen_stacks", {})
        screens = [screen for stack in stacks.values() for screen in stack]
        found = [screen.busy_summary() for screen in screens if hasattr(screen, "busy_summary")]
        return [*found, self.connector.busy_summary()]

    # -- navigation -------------------------------------------------------------------------

    def action_view(self, name: str) -> None:
        # A number key always lands on its view's own list, whatever `:` stacked on it.
        # Not awaited: the mode's screen mounts on its own (awaiting it here, in the app's
        # message loop, stalled at 100k rows); switch_mode changes screen_stack at once.
        self.switch_mode(name)
        while len(self.screen_stack) > 1 and not self.screen.is_modal:
            self.pop_screen()

    def action_help(self) -> None:
        from opstui.ui.screens.help import HelpScreen

        self.push_screen(HelpScreen(self.screen))

    def action_command_line(self) -> None:
        from opstui.ui.screens.prompt import CommandPrompt

        self.push_screen(CommandPrompt(), self.run_command)

    def run_command(self, text: str | None) -> None:
        """`:hosts`, `:deploy`, `:team NAME`, `:q` — as typed in the command line."""
        if not text:
            return
        verb, _, argument = text.strip().lstrip(":").partition(" ")
        verb = verb.lower()
        if verb in ("q", "quit", "q!"):
            self.exit()
            return
        if verb in ("team", "teams", "ctx") and argument:
            self.switch_team(argument.strip())
            return
        if verb in ("overview", "home", "0"):
            self.switch_mode("overview")
            return
        spec = resolve(verb)
        if spec is None:
            self.notify(f"unknown command {verb!r}; press ? for the list", severity="warning")
            return
        self.show_resource(spec)

    def show_resource(self, spec: ResourceSpec) -> None:
        if spec.name in MAIN_VIEWS:
            self.action_view(spec.name)
            return
        from opstui.ui.screens.resource import ResourceScreen

        screen = ResourceScreen(spec)
        if spec.table in ("cicd_providers", "cicd_builds"):
            from opstui.ui.screens.cicd import list_screen

            screen = list_screen(spec)  # providers: t / r; builds: enter opens the build view
        # As in k9s, a `:` view replaces a `:` view (esc goes back to the list it came from).
        if len(self.screen_stack) > 1 and isinstance(self.screen, ResourceScreen):
            self.switch_screen(screen)
        else:
            self.push_screen(screen)

    def open_detail(self, spec: ResourceSpec, key: str, *, raw: bool = False) -> None:
        from opstui.ui.screens.detail import DetailScreen

        self.push_screen(DetailScreen(spec, key, raw=raw))

    # -- team ------------------------------------------------------------------------------

    @work(exclusive=True, group="team", exit_on_error=False)
    async def switch_team(self, wanted: str) -> None:
        if self.store is None:
            return
        try:
            team_id = self.store.find_team(wanted)
            await self.store.switch_team(team_id)
        except StoreError as exc:
            self.post_message(WriteFailed(str(exc)))

    # -- writes ----------------------------------------------------------------------------

    def open_form(self, spec: ResourceSpec, row: dict[str, Any] | None) -> None:
        from opstui.ui.screens.form import FormScreen, form_supported

        if not form_supported(spec):
            self.notify(f"{spec.title} have no form yet", severity="warning")
            return
        self.push_screen(FormScreen(spec, row))

    def confirm_delete(self, spec: ResourceSpec, row: dict[str, Any]) -> None:
        from opstui.ui.screens.confirm import ConfirmScreen

        label = row.get(spec.label_key) or spec.key_of(row)
        question = f"Delete {spec.singular} {label!r}?"
        detail = _delete_consequences(self.store, spec, row)

        def decided(yes: bool | None) -> None:
            if yes:
                self.delete_row(spec, row)

        self.push_screen(ConfirmScreen(question, detail), decided)

    @work(group="writes", exit_on_error=False)
    async def delete_row(self, spec: ResourceSpec, row: dict[str, Any]) -> None:
        assert self.store is not None
        try:
            await self.store.delete(spec.table, row)
        except StoreError as exc:
            self.post_message(WriteFailed(str(exc)))
        else:
            self.notify(f"Deleted {row.get(spec.label_key)!r}; the list updates live.")

    # -- deployment runs --------------------------------------------------------------------

    def execute(self, spec: ResourceSpec, row: dict[str, Any]) -> None:
        """`x` on a deployment: say exactly what will run where, and launch only on yes."""
        from opstui.ui.screens.confirm import ConfirmScreen
        from opstui.ui.screens.run import active_run, launch_summary, run_label

        store = self.store
        if spec.table != "deployments" or store is None:
            self.notify(f"{spec.title} cannot be run from here", severity="warning")
            return
        going = active_run(store, row["id"])
        if going is not None:
            self.notify(
                f"Not launched: {run_label(going)} is {going['status']}; "
                "wait for it or cancel it (l opens it, ctrl+k there cancels).",
                title="Run",
                severity="warning",
            )
            return
        question, detail = launch_summary(store, row)

        def decided(yes: bool | None) -> None:
            if yes:
                self.launch_deployment(row)

        self.push_screen(
            ConfirmScreen(
                question, detail, yes_label="Run (y)", no_label="Cancel (n)", classes="wide"
            ),
            decided,
        )

    @work(group="writes", exit_on_error=False)
    async def launch_deployment(self, row: dict[str, Any]) -> None:
        from opstui.runs import api

        assert self.store is not None
        try:
            run_id = await api.launch(self.store.client, row["id"])
        except api.RunsError as exc:
            self.post_message(WriteFailed(str(exc)))
        else:
            self.post_message(RunLaunched(run_id, repr(row.get("name"))))

    @on(RunLaunched)
    def _run_launched(self, message: RunLaunched) -> None:
        from opstui.ui.screens.run import RunScreen

        self.notify(f"Launched {message.label}; its run is queued for a runner.", title="Run")
        if isinstance(self.screen, RunScreen):
            self.switch_screen(RunScreen(message.run_id))
        else:
            self.push_screen(RunScreen(message.run_id))

    def open_run(self, run_id: str) -> None:
        from opstui.ui.screens.run import RunScreen

        self.push_screen(RunScreen(run_id))

    def open_build(self, build_id: str) -> None:
        from opstui.ui.screens.build import BuildScreen

        self.push_screen(BuildScreen(build_id))

    @work(group="writes", exit_on_error=False)
    async def toggle_pin(self, row: dict[str, Any]) -> None:
        store = self.store
        assert store is not None and store.identity is not None
        pinned = any(
            pin["repository_id"] == row["id"] for pin in store.rows("profile_repository_pins")
        )
        try:
            if pinned:
                await store.delete(
                    "profile_repository_pins",
                    {"profile_id": store.identity.user_id, "repository_id": row["id"]},
                )
            else:
                await store.insert(
                    "profile_repository_pins",
                    {"profile_id": store.identity.user_id, "repository_id": row["id"]},
                )
        except StoreError as exc:
            self.post_message(WriteFailed(str(exc)))


def _delete_consequences(store: Store | None, spec: ResourceSpec, row: dict[str, Any]) -> str:
    """Name what goes with the row, so the confirmation is informed."""
    if store is None:
        return ""
    parts = []
    if spec.table == "hosts":
        used = [
            d["name"] for d in store.rows("deployments") if row["id"] in (d.get("host_ids") or [])
        ]
        if used:
            parts.append(f"It is a target of {len(used)} deployment(s): {', '.join(used[:5])}.")
    if spec.table == "repositories":
        used = [d["name"] for d in store.rows("deployments") if d.get("repository_id") == row["id"]]
        if used:
            parts.append(f"{len(used)} deployment(s) use it: {', '.join(used[:5])}.")
    if spec.table == "cicd_providers":
        jobs = [j["name"] for j in store.rows("cicd_jobs") if j.get("provider_id") == row["id"]]
        if jobs:
            parts.append(f"Its {len(jobs)} job(s) go too: {', '.join(jobs[:5])}.")
    if spec.table == "deployments":
        maps = [
            m for m in store.rows("deployment_cicd_mappings") if m.get("deployment_id") == row["id"]
        ]
        if maps:
            parts.append(f"Its {len(maps)} CI/CD mapping(s) go too.")
    return " ".join(parts) or "This cannot be undone."


def _signin_screen_type():
    from opstui.ui.screens.signin import SignInScreen

    return SignInScreen
