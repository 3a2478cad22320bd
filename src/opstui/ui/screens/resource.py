"""One generic list screen for every resource; per-resource behaviour comes from its spec.

Actions show in the footer only where the highlighted row allows them
(`check_action`); pressing the key anyway falls through to a hidden binding
that explains which permission is missing. The database enforces it all
regardless.
"""

from __future__ import annotations

from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Input

from opstui.resources import ResourceSpec
from opstui.store import PageLoaded, RowChanged, StoreEvent, TeamSwitched
from opstui.ui.screens.base import OpsScreen
from opstui.ui.widgets.resource_table import ResourceTable

# Action -> the permission_matrix operation it needs.
ROW_ACTIONS = {
    "create": "insert",
    "edit": "update",
    "delete": "delete",
    "execute": "execute",
}


class ResourceScreen(OpsScreen):
    BINDINGS = [
        Binding("slash", "filter", "Filter", id="list.filter"),
        Binding("escape", "clear_filter", "Clear filter", show=False, id="list.clear_filter"),
        Binding("o", "sort_next", "Order by", id="list.sort"),
        Binding("O", "sort_reverse", "Reverse order", show=False, id="list.reverse"),
        Binding("space", "toggle_mark", "Mark", show=False, id="list.mark"),
        Binding("ctrl+a", "mark_all", "Mark all shown", show=False, id="list.mark_all"),
        Binding("y", "raw", "YAML", id="list.raw"),
        Binding("c", "create", "Create", id="row.create"),
        Binding("e", "edit", "Edit", id="row.edit"),
        Binding("ctrl+d", "delete", "Delete", id="row.delete"),
        Binding("p", "pin", "Pin/unpin", id="row.pin"),
        Binding("x", "execute", "Run", id="row.execute"),
        Binding("u", "use_team", "Use team", id="teams.use"),
        Binding("l", "latest_run", "Latest run", id="deployments.latest_run"),
        # Fallbacks: reached only when the action above is not allowed.
        Binding("c", "denied('create')", show=False),
        Binding("e", "denied('edit')", show=False),
        Binding("ctrl+d", "denied('delete')", show=False),
        Binding("x", "denied('execute')", show=False),
    ]

    def __init__(self, spec: ResourceSpec, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec = spec

    def _label_of(self, ref: tuple[str, str], key: object) -> str | None:
        store = self.app.store
        return store.label(ref, key) if store is not None else None

    def compose_body(self) -> ComposeResult:
        table = ResourceTable(
            spec=self.spec, id="table", clock=self.app.clock, labels=self._label_of
        )
        table.border_title = self.spec.title
        yield table
        yield Input(placeholder="filter: fuzzy · regex · !invert", id="filter", classes="hidden")

    @property
    def table(self) -> ResourceTable:
        return self.query_one(ResourceTable)

    # -- data -------------------------------------------------------------------------------

    def store_ready(self) -> None:
        self._reload()

    def _reload(self) -> None:
        store = self.store
        if store is None:
            return
        self.table.load(dict(store.tables[self.spec.table].rows))
        self._update_pins()
        self._update_title()
        self.refresh_bindings()

    def on_store_event(self, event: StoreEvent) -> None:
        if isinstance(event, TeamSwitched):
            self.table.load({})
            self._update_title()
        elif isinstance(event, PageLoaded):
            if event.table == self.spec.table:
                self._reload()
            elif event.table in ("profile_repository_pins", "permission_matrix"):
                self._update_pins()
                self.refresh_bindings()
        elif isinstance(event, RowChanged):
            if event.table == self.spec.table:
                self.table.apply_change(event.key, event.row)
                self._update_title()
                self.refresh_bindings()
            elif event.table == "profile_repository_pins":
                self._update_pins()
            elif event.table == "permission_matrix":
                self.refresh_bindings()

    def _update_pins(self) -> None:
        if self.spec.name != "repositories" or self.store is None:
            return
        pins = {row["repository_id"] for row in self.store.rows("profile_repository_pins")}
        self.table.set_pinned(pins)

    def _update_title(self) -> None:
        store = self.store
        team = ""
        if store and store.identity:
            team = next((t["name"] for t in store.identity.teams if t["id"] == store.team_id), "")
        loaded = store.is_complete(self.spec.table) if store else False
        loaded = loaded and not self.table.view.scanning
        count = f"{len(self.table.view)}" if loaded else f"{len(self.table.view)}…"
        title = f"{self.spec.name}({team})[{count}]"
        if self.table.view.filter.text:
            title += f" </{self.table.view.filter.text}>"
        self.table.border_title = title

    def tick(self) -> None:
        # Only running durations change with the clock; repaint just the visible lines.
        if self.table.has_ticking_rows():
            self.table.refresh()
        self.refresh_context()

    # -- filter and sort --------------------------------------------------------------------

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.remove_class("hidden")
        box.focus()

    @on(Input.Changed, "#filter")
    def _filter_typed(self, event: Input.Changed) -> None:
        self.table.set_filter(event.value)
        self._update_title()
        # Not a pattern (yet): the bar says why, and the table keeps the last good filter.
        error = self.table.view.filter_error
        box = self.query_one("#filter", Input)
        box.border_subtitle = f"✕ {error}" if error else ""
        box.set_class(bool(error), "-invalid")

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        box = self.query_one("#filter", Input)
        if not event.value:
            box.add_class("hidden")
        self.table.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        if box.value or not box.has_class("hidden"):
            box.value = ""
            box.add_class("hidden")
            self.table.set_filter("")
            self._update_title()
            self.table.focus()
        elif len(self.app.screen_stack) > 1:
            self.app.pop_screen()

    def action_toggle_mark(self) -> None:
        self.table.toggle_mark()

    def action_mark_all(self) -> None:
        self.table.mark_all_shown()

    def action_sort_next(self) -> None:
        self.table.cycle_sort()

    def action_sort_reverse(self) -> None:
        self.table.toggle_reverse()

    # -- rows -------------------------------------------------------------------------------

    @on(ResourceTable.Counted)
    def _counted(self) -> None:
        self._update_title()

    @on(ResourceTable.Selected)
    def _open_detail(self, event: ResourceTable.Selected) -> None:
        if self.spec.table == "deployment_runs":
            self.app.open_run(event.key)  # a run's own view: header, hosts, live log
            return
        if self.spec.table == "cicd_builds":
            self.app.open_build(event.key)  # a build's own view: status, URL, live log
            return
        self.app.open_detail(self.spec, event.key)

    @on(ResourceTable.Highlighted)
    def _highlighted(self, event: ResourceTable.Highlighted) -> None:
        self.refresh_bindings()

    def action_raw(self) -> None:
        key = self.table.current_key
        if key is not None:
            self.app.open_detail(self.spec, key, raw=True)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "use_team":
            row = self.table.current_row
            store = self.store
            return (
                self.spec.name == "teams"
                and row is not None
                and store is not None
                and store.identity is not None
                and row["id"] in store.identity.memberships
                and row["id"] != store.team_id
            )
        if action == "pin":
            return self.spec.name == "repositories" and self.table.current_row is not None
        if action == "latest_run":
            return self.spec.table == "deployments" and self.table.current_row is not None
        operation = ROW_ACTIONS.get(action)
        if operation is None:
            return True
        decision = self._decision(action)
        return decision.allowed

    def _decision(self, action: str):
        from opstui.store import Decision

        store = self.store
        spec = self.spec
        operation = ROW_ACTIONS[action]
        if store is None:
            return Decision(False, "not connected yet")
        if spec.permission_type is None or (action == "execute" and not spec.executable):
            return Decision(False, f"{spec.title.lower()} cannot be {action}d here")
        if action in ("create",) and not spec.writable:
            return Decision(False, f"{spec.title.lower()} are read-only here")
        row = self.table.current_row
        if action != "create" and row is None:
            return Decision(False, "no row selected")
        return store.can(spec.permission_type, operation, row)  # type: ignore[arg-type]

    def action_denied(self, action: str) -> None:
        decision = self._decision(action)
        if not decision.allowed:
            self.notify(
                f"Not allowed: {decision.reason}.",
                title=action.replace("_", " ").capitalize(),
                severity="warning",
            )

    def action_create(self) -> None:
        self.app.open_form(self.spec, None)

    def action_edit(self) -> None:
        row = self.table.current_row
        if row is not None:
            self.app.open_form(self.spec, row)

    def action_delete(self) -> None:
        row = self.table.current_row
        if row is not None:
            self.app.confirm_delete(self.spec, row)

    def action_execute(self) -> None:
        row = self.table.current_row
        if row is not None:
            self.app.execute(self.spec, row)

    def action_latest_run(self) -> None:
        from opstui.ui.screens.run import latest_run

        row = self.table.current_row
        if row is None or self.store is None:
            return
        run = latest_run(self.store, row["id"])
        if run is None:
            self.notify(f"{row.get('name')!r} has not run yet; x runs it.", title="Runs")
            return
        self.app.open_run(run["id"])

    def action_use_team(self) -> None:
        row = self.table.current_row
        if row is not None:
            self.app.switch_team(row["name"])

    def action_pin(self) -> None:
        row = self.table.current_row
        if row is not None:
            self.app.toggle_pin(row)
