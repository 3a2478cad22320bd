"""The CI/CD view (5): each job with its last build; providers (`:providers`); builds (`:builds`).

The jobs list is the generic resource table over `cicd_jobs`, each row carrying its
latest build (`last_build`, from the store's live `cicd_builds`), so a build that
starts or ends anywhere repaints its job's row. `x` opens the trigger form (one
field per parameter definition, pre-filled and checked with `opstui.cicd.params`,
the same check as `opstui cicd trigger --param`); the build is queued through
`trigger_cicd_job` and a runner does the rest: the TUI never holds a provider token.
That is also why `t` (test connection) and `r` (refresh jobs) on a provider are
provider *tasks* a runner picks up; the screen waits for the task's one-line result.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from typing import Any
from urllib.parse import urlparse

from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Checkbox, Input, Label, Select

from opstui.resources import RESOURCES, ResourceSpec
from opstui.store import Decision, PageLoaded, RowChanged, Store, StoreEvent, TeamSwitched
from opstui.ui.messages import WriteFailed
from opstui.ui.screens.form import FormScreen
from opstui.ui.screens.resource import ResourceScreen
from opstui.ui.widgets.footer import OpsFooter

DEMO_MARK = "(demo CI server)"
TASK_TIMEOUT = 60.0  # seconds to wait for a runner to test a provider or refresh its jobs
TASK_POLL = 0.5


# -- shared helpers ----------------------------------------------------------------------------


def is_loopback(url: str | None) -> bool:
    host = (urlparse(url or "").hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_demo_provider(app: Any, provider: dict[str, Any] | None) -> bool:
    """A provider of the embedded demo on a loopback address: one of the demo's fake CI servers."""
    from opstui.connect import EmbeddedConnector

    return (
        provider is not None
        and isinstance(getattr(app, "connector", None), EmbeddedConnector)
        and is_loopback(provider.get("url"))
    )


def provider_name(app: Any, provider: dict[str, Any] | None) -> str:
    if provider is None:
        return "unknown provider"
    name = str(provider.get("name") or provider.get("id"))
    return f"{name} {DEMO_MARK}" if is_demo_provider(app, provider) else name


def latest_builds(store: Store) -> dict[str, dict[str, Any]]:
    """Each job's newest build (by request time) among the builds the store holds."""
    latest: dict[str, dict[str, Any]] = {}
    for build in store.rows("cicd_builds"):
        job = build.get("job_id")
        known = latest.get(job)
        if known is None or str(build.get("requested_at") or "") > str(known.get("requested_at") or ""):
            latest[job] = build
    return latest


def build_label(build: dict[str, Any]) -> str:
    number = build.get("number")
    return f"{build.get('job_name') or 'build'}{(' #' + str(number)) if number else ''}"


def definitions_of(job: dict[str, Any]) -> list[dict[str, Any]]:
    """The job's parameter definitions; a job never refreshed offers its stored parameters."""
    definitions = [d for d in job.get("parameter_definitions") or [] if isinstance(d, dict)]
    if definitions:
        return definitions
    legacy = job.get("parameters")
    if not isinstance(legacy, dict):
        return []
    return [
        {"name": name, "type": "boolean" if isinstance(value, bool) else "string", "default": value}
        for name, value in legacy.items()
    ]


# -- the jobs view -----------------------------------------------------------------------------


class CicdScreen(ResourceScreen):
    """Jobs with their last build (status, number, age, error)."""

    BINDINGS = [
        Binding("x", "execute", "Trigger", id="cicd.trigger"),
        Binding("l", "latest_run", "Latest build", id="cicd.latest_build"),
        Binding("p", "providers", "Providers", id="cicd.providers"),
        Binding("b", "builds", "Builds", id="cicd.builds"),
        Binding("x", "denied('execute')", show=False),
    ]

    def __init__(self, spec: ResourceSpec | None = None, **kwargs: Any) -> None:
        super().__init__(spec or RESOURCES["cicd"], **kwargs)

    def _label_of(self, ref: tuple[str, str], key: object) -> str | None:
        label = super()._label_of(ref, key)
        store = self.store
        if ref[0] == "cicd_providers" and store is not None and label is not None:
            if is_demo_provider(self.app, store.row("cicd_providers", str(key))):
                return f"{label} (demo)"
        return label

    def _decorated(self, job: dict[str, Any], latest: dict[str, dict[str, Any]]) -> dict[str, Any]:
        return {**job, "last_build": latest.get(job["id"])}

    def _reload(self) -> None:
        store = self.store
        if store is None:
            return
        latest = latest_builds(store)
        rows = store.tables[self.spec.table].rows
        self.table.load({key: self._decorated(row, latest) for key, row in rows.items()})
        self._update_title()
        self._update_demo_note()
        self.refresh_bindings()

    def on_store_event(self, event: StoreEvent) -> None:
        store = self.store
        if store is not None and isinstance(event, RowChanged) and event.table == "cicd_jobs":
            row = event.row and self._decorated(event.row, latest_builds(store))
            self.table.apply_change(event.key, row)
            self._update_title()
            self.refresh_bindings()
            return
        if store is not None and isinstance(event, RowChanged) and event.table == "cicd_builds":
            self._build_changed(event.row)
            return
        if isinstance(event, PageLoaded) and event.table in ("cicd_builds", "cicd_providers"):
            self._reload()
            return
        super().on_store_event(event)
        if isinstance(event, TeamSwitched):
            self._update_demo_note()

    def _build_changed(self, build: dict[str, Any] | None) -> None:
        """One build changed: repaint its job's row if it is (now) the job's latest build.

        Heartbeats update running builds every few seconds: no scan of every build for them.
        """
        store = self.store
        job = store.row("cicd_jobs", build.get("job_id") or "") if store and build else None
        if job is None:
            self._reload()  # a build went (deleted): recompute every row
            return
        shown = (self.table.view.rows.get(job["id"]) or {}).get("last_build")
        if shown is not None and shown.get("id") != build["id"]:
            if str(build.get("requested_at") or "") < str(shown.get("requested_at") or ""):
                return  # an older build of the job: its row shows a newer one
        self.table.apply_change(job["id"], {**job, "last_build": build})
        self.refresh_bindings()

    def _update_demo_note(self) -> None:
        store = self.store
        demo = store is not None and any(
            is_demo_provider(self.app, p) for p in store.rows("cicd_providers")
        )
        self.table.border_subtitle = (
            "(demo) = a demo CI server: a protocol fake on 127.0.0.1, not a real Jenkins/GitHub/GitLab"
            if demo
            else ""
        )

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "latest_run":
            return self.table.current_row is not None
        if action in ("providers", "builds"):
            return True
        return super().check_action(action, parameters)

    def _decision(self, action: str) -> Decision:
        if action == "edit":
            return Decision(False, "jobs come from their provider; r on it in :providers refreshes them")
        decision = super()._decision(action)
        row = self.table.current_row
        if action == "execute" and decision.allowed and row is not None and row.get("vanished_at"):
            return Decision(False, f"job {row.get('name')!r} vanished from its provider; refresh it")
        return decision

    def action_execute(self) -> None:
        row = self.table.current_row
        if row is not None:
            self.app.push_screen(TriggerScreen(row))

    def action_latest_run(self) -> None:
        row = self.table.current_row
        if row is None:
            return
        build = row.get("last_build")
        if build is None:
            self.notify(f"{row.get('name')!r} has no build yet; x triggers it.", title="Builds")
            return
        self.app.open_build(build["id"])

    def action_providers(self) -> None:
        self.app.show_resource(RESOURCES["providers"])

    def action_builds(self) -> None:
        self.app.show_resource(RESOURCES["builds"])


# -- providers -----------------------------------------------------------------------------------


class ProvidersScreen(ResourceScreen):
    """CI/CD providers: the usual create/edit/delete, and t / r as runner tasks."""

    BINDINGS = [
        Binding("t", "test_provider", "Test connection", id="providers.test"),
        Binding("r", "refresh_jobs", "Refresh jobs", id="providers.refresh"),
        Binding("t", "task_denied('test')", show=False),
        Binding("r", "task_denied('refresh')", show=False),
    ]

    def __init__(self, spec: ResourceSpec | None = None, **kwargs: Any) -> None:
        super().__init__(spec or RESOURCES["providers"], **kwargs)

    def _reload(self) -> None:
        super()._reload()
        store = self.store
        rows = store.rows("cicd_providers") if store else []
        demo = sorted(p["name"] for p in rows if is_demo_provider(self.app, p))
        shown = ", ".join(demo[:3]) + (f" and {len(demo) - 3} more" if len(demo) > 3 else "")
        self.table.border_subtitle = (
            f"demo CI servers (protocol fakes on 127.0.0.1): {shown}" if demo else ""
        )

    def _task_decision(self, kind: str) -> Decision:
        store, row = self.store, self.table.current_row
        if store is None:
            return Decision(False, "not connected yet")
        if row is None:
            return Decision(False, "no provider selected")
        if kind == "test":
            return store.can("cicd_providers", "execute", row)
        return store.can("cicd_jobs", "update")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "test_provider":
            return self._task_decision("test").allowed
        if action == "refresh_jobs":
            return self._task_decision("refresh").allowed
        return super().check_action(action, parameters)

    def action_task_denied(self, kind: str) -> None:
        decision = self._task_decision(kind)
        if not decision.allowed:
            title = "Test connection" if kind == "test" else "Refresh jobs"
            self.notify(f"Not allowed: {decision.reason}.", title=title, severity="warning")

    def action_test_provider(self) -> None:
        row = self.table.current_row
        if row is not None:
            self.run_task(row, "test")

    def action_refresh_jobs(self) -> None:
        row = self.table.current_row
        if row is not None:
            self.run_task(row, "refresh")

    @work(group="provider-tasks", exit_on_error=False)
    async def run_task(self, provider: dict[str, Any], kind: str) -> None:
        """Queue the task for a runner (only runners read tokens) and report its one line."""
        from opstui.cicd import api

        store = self.store
        assert store is not None
        title = "Test connection" if kind == "test" else "Refresh jobs"
        name = provider_name(self.app, provider)
        try:
            task_id = await api.request_task(store.client, provider["id"], kind)
        except api.BuildsError as exc:
            self.post_message(WriteFailed(str(exc)))
            return
        self.notify(f"{name}: asked a runner to {'test it' if kind == 'test' else 'refresh its jobs'}…", title=title)
        deadline = time.monotonic() + TASK_TIMEOUT
        task: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            try:
                task = await api.get_task(store.client, task_id)
            except api.BuildsError as exc:
                self.notify(f"{name}: {exc}", title=title, severity="error")
                return
            if task is not None and task.get("status") in ("succeeded", "failed", "lost"):
                break
            await asyncio.sleep(TASK_POLL)
        else:
            self.notify(
                f"{name}: no runner took the task within {TASK_TIMEOUT:.0f} s; "
                "is `opstui runner` running for this team?",
                title=title,
                severity="warning",
            )
            return
        assert task is not None
        ok = task["status"] == "succeeded"
        self.notify(
            f"{name}: {task.get('result') or task['status']}",
            title=title,
            severity="information" if ok else "error",
            timeout=10,
        )


# -- builds --------------------------------------------------------------------------------------


class BuildsScreen(ResourceScreen):
    """`:builds`: the team's builds, newest first; enter opens one (ResourceScreen)."""

    def __init__(self, spec: ResourceSpec | None = None, **kwargs: Any) -> None:
        super().__init__(spec or RESOURCES["builds"], **kwargs)


def list_screen(spec: ResourceSpec) -> ResourceScreen:
    """The list screen for a CI/CD resource."""
    if spec.table == "cicd_providers":
        return ProvidersScreen(spec)
    if spec.table == "cicd_builds":
        return BuildsScreen(spec)
    return CicdScreen(spec)


# -- the trigger form ----------------------------------------------------------------------------


class TriggerScreen(FormScreen):
    """One field per parameter: choices as a list, booleans as a box, secrets hidden.

    A FormScreen for the app's key rules (printable keys stay in the form) and its styles;
    its own fields, checks and save.
    """

    BINDINGS = [
        Binding("ctrl+s", "save", "Trigger", id="trigger.save"),
        Binding("escape", "cancel", "Cancel", id="trigger.cancel"),
    ]

    def __init__(self, job: dict[str, Any]) -> None:
        Screen.__init__(self)
        self.job = {k: v for k, v in job.items() if k != "last_build"}
        self.spec = RESOURCES["cicd"]
        self.row = self.job
        self.definitions = definitions_of(self.job)

    def compose(self) -> ComposeResult:
        store = self.app.store
        provider = store.row("cicd_providers", self.job.get("provider_id") or "") if store else None
        with VerticalScroll(id="form"):
            yield Label(f"Trigger {self.job.get('name')} on {provider_name(self.app, provider)}", id="form-title")
            yield Label("", id="form-error")
            if not self.definitions:
                yield Label("This job takes no parameters.", classes="field-hint")
            for index, definition in enumerate(self.definitions):
                name = str(definition.get("name"))
                label = name + (" *" if definition.get("required") else "")
                with Horizontal(classes="form-row"):
                    yield Label(label, classes="field-label")
                    yield self._field(index, definition)
                if definition.get("description"):
                    yield Label(str(definition["description"]), classes="field-hint")
                yield Label("", id=f"param-{index}-error", classes="field-error")
            with Horizontal(id="form-buttons"):
                yield Button("Trigger (ctrl+s)", variant="primary", id="trigger", compact=True)
                yield Button("Cancel (esc)", id="cancel", compact=True)
        yield OpsFooter()

    def _field(self, index: int, definition: dict[str, Any]):
        kind = definition.get("type") or "string"
        default = definition.get("default")
        widget_id = f"param-{index}"
        if kind == "boolean":
            value = default if isinstance(default, bool) else str(default).lower() in ("true", "1", "yes")
            return Checkbox("yes", value=bool(value), id=widget_id, compact=True)
        if kind == "choice" and definition.get("choices"):
            choices = [str(c) for c in definition["choices"]]
            initial = str(default) if default is not None and str(default) in choices else choices[0]
            return Select([(c, c) for c in choices], value=initial, id=widget_id, allow_blank=False, compact=True)
        text = "" if default is None or kind == "password" else str(default)
        return Input(
            value=text,
            password=kind == "password",
            placeholder="secret: sent to the provider, never stored in a row" if kind == "password" else "",
            type="number" if kind == "number" else "text",
            id=widget_id,
            compact=True,
        )

    def values(self) -> dict[str, Any] | None:
        """The checked parameters, or None with each problem shown under its field."""
        from opstui.cicd import params

        for label in self.query(".field-error"):
            label.update("")
            label.remove_class("-shown")
        error = self.query_one("#form-error", Label)
        error.update("")
        raw: dict[str, Any] = {}
        problems: dict[int, str] = {}
        for index, definition in enumerate(self.definitions):
            name = str(definition.get("name"))
            widget = self.query_one(f"#param-{index}")
            if isinstance(widget, Checkbox):
                value: Any = widget.value
            elif isinstance(widget, Select):
                value = None if widget.value is Select.NULL else widget.value
            else:
                value = widget.value.strip()  # type: ignore[attr-defined]
            if value in (None, ""):
                if definition.get("required"):
                    problems[index] = f"{name} is required"
                continue
            try:
                raw[name] = params.coerce(definition, value)
            except ValueError as exc:
                problems[index] = str(exc).removeprefix(f"parameter {name}: ")
        for index, message in problems.items():
            target = self.query_one(f"#param-{index}-error", Label)
            target.update(f"✕ {message}")
            target.add_class("-shown")
        if problems:
            error.update(f"✕ {len(problems)} parameter(s) need a fix")
            return None
        try:
            return params.check(self.definitions, raw)
        except ValueError as exc:
            error.update(f"✕ {exc}")
            return None

    def on_mount(self, event: events.Mount) -> None:
        event.prevent_default()  # not FormScreen's: it expects a field to exist
        fields = self.query(".form-row > *:last-child")
        # The first field; for a job without parameters, the Trigger button.
        (fields.first() if fields else self.query_one("#trigger", Button)).focus()

    @on(Button.Pressed, "#trigger")
    def action_save(self) -> None:
        values = self.values()
        if values is not None:
            self.trigger(values)

    @work(exclusive=True, group="trigger", exit_on_error=False)
    async def trigger(self, values: dict[str, Any]) -> None:
        from opstui.cicd import api

        store = self.app.store
        if store is None:
            return
        self.query_one("#form-error", Label).update("triggering…")
        try:
            build_id = await api.trigger(store.client, self.job["id"], values)
        except api.BuildsError as exc:
            self.query_one("#form-error", Label).update(f"✕ {exc}")
            return
        self.app.notify(f"Triggered {self.job.get('name')!r}; its build is queued for a runner.", title="Build")
        self.app.pop_screen()
        self.app.open_build(build_id)
