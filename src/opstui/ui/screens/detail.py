"""Detail of one row: every field, its related rows, and the raw row as YAML or JSON."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Group
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Static

from opstui.resources import ResourceSpec
from opstui.store import RowChanged, Store, StoreEvent
from opstui.ui.screens.base import OpsScreen
from opstui.views import to_yaml


def related_rows(
    store: Store, spec: ResourceSpec, row: dict[str, Any], extra: dict[str, list] | None = None
) -> list[tuple[str, list[dict], tuple[str, ...]]]:
    """(title, rows, columns) sections for a row's relations, from the live store."""
    sections: list[tuple[str, list[dict], tuple[str, ...]]] = []
    if spec.table == "deployments":
        repo = [r for r in store.rows("repositories") if r["id"] == row.get("repository_id")]
        sections.append(("Repository", repo, ("name", "owner", "default_branch", "url")))
        host_ids = set(row.get("host_ids") or [])
        hosts = [h for h in store.rows("hosts") if h["id"] in host_ids]
        sections.append(("Target hosts", hosts, ("name", "status", "ip", "port", "user")))
        jobs = {j["id"]: j for j in store.rows("cicd_jobs")}
        maps = []
        for mapping in store.rows("deployment_cicd_mappings"):
            if mapping.get("deployment_id") == row["id"]:
                job = jobs.get(mapping.get("cicd_job_id"), {})
                maps.append({**mapping, "job": job.get("name", mapping.get("cicd_job_id"))})
        sections.append(("CI/CD mappings", maps, ("job", "build_number", "build_url")))
        provider = [
            p for p in store.rows("cicd_providers") if p["id"] == row.get("cicd_provider_id")
        ]
        if provider:
            sections.append(("CI/CD provider", provider, ("name", "type", "url")))
        runs = sorted(
            (r for r in store.rows("deployment_runs") if r.get("deployment_id") == row["id"]),
            key=lambda r: r.get("number") or 0,
            reverse=True,
        )
        sections.append(
            (
                "Runs, newest first (l opens the latest)",
                runs[:15],
                ("number", "status", "trigger", "started_at", "finished_at", "error"),
            )
        )
    elif spec.table == "hosts":
        deployments = [
            d for d in store.rows("deployments") if row["id"] in (d.get("host_ids") or [])
        ]
        sections.append(
            (
                "Deployments targeting this host",
                deployments,
                ("name", "status", "schedule_type", "started_at"),
            )
        )
    elif spec.table == "repositories":
        deployments = [d for d in store.rows("deployments") if d.get("repository_id") == row["id"]]
        sections.append(
            ("Deployments of this repository", deployments, ("name", "status", "started_at"))
        )
    elif spec.table == "cicd_providers":
        jobs = [j for j in store.rows("cicd_jobs") if j.get("provider_id") == row["id"]]
        sections.append(("Jobs", jobs, ("name", "external_id", "description")))
    elif spec.table == "teams":
        # The active team's members are live in the store; another team's are fetched
        # on demand (`extra`, loaded by DetailScreen) since the store holds one team.
        people = {p["id"]: p for p in store.rows("profiles")}
        active = row["id"] == store.team_id
        source = {
            "team_members": store.rows("team_members") if active else None,
            "permission_matrix": store.rows("permission_matrix") if active else None,
        }
        for table in source:
            if source[table] is None:
                source[table] = (extra or {}).get(table, [])

        def named(rows: list[dict]) -> list[dict]:
            return [
                {**r, "email": people.get(r["profile_id"], {}).get("email", r["profile_id"])}
                for r in rows
            ]

        sections.append(("Members", named(source["team_members"]), ("email", "role")))
        sections.append(
            (
                "Permissions",
                sorted(
                    named(source["permission_matrix"]),
                    key=lambda p: (p["email"], p["resource_type"]),
                ),
                (
                    "email",
                    "resource_type",
                    "can_select",
                    "can_insert",
                    "can_update",
                    "can_delete",
                    "can_execute",
                    "can_update_own",
                    "can_delete_own",
                ),
            )
        )
    return sections


# Foreign keys in a detail view read as names: (table, column) -> (referenced table, label).
FOREIGN_KEYS: dict[tuple[str, str], tuple[str, str]] = {
    ("*", "repository_id"): ("repositories", "name"),
    ("*", "cicd_provider_id"): ("cicd_providers", "name"),
    ("*", "team_id"): ("teams", "name"),
    ("*", "deployment_id"): ("deployments", "name"),
    ("*", "cicd_job_id"): ("cicd_jobs", "name"),
    ("*", "job_id"): ("cicd_jobs", "name"),
    ("*", "host_ids"): ("hosts", "name"),
    ("*", "host_id"): ("hosts", "name"),
    ("*", "profile_id"): ("profiles", "email"),
    ("*", "creator_id"): ("profiles", "email"),
    ("*", "user_id"): ("profiles", "email"),
    ("*", "requested_by"): ("profiles", "email"),
    ("repositories", "provider_id"): ("git_providers", "name"),
    ("cicd_jobs", "provider_id"): ("cicd_providers", "name"),
}


def _named_cell(store: Any, table: str, name: str, value: Any) -> str:
    """A field's value; a foreign key as `name (id)`, so no one has to read a UUID."""
    ref = FOREIGN_KEYS.get((table, name)) or FOREIGN_KEYS.get(("*", name))
    if ref is None or store is None or value in (None, "", []):
        return _cell(value)
    if isinstance(value, list):
        return ", ".join(store.label(ref, item) or str(item) for item in value)
    label = store.label(ref, value)
    return f"{label}  ({value})" if label else _cell(value)


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "✓" if value else "·"
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


class DetailScreen(OpsScreen):
    BINDINGS = [
        Binding("escape", "back", "Back", id="detail.back"),
        Binding("y", "toggle_raw", "Raw YAML/JSON", id="detail.raw"),
        Binding("J", "toggle_format", "JSON ⇄ YAML", id="detail.format"),
        # Hosts only (see check_action): SFTP through the host's SSH panel.
        Binding("u", "transfer('upload')", "Upload", id="detail.upload"),
        Binding("d", "transfer('download')", "Download", id="detail.download"),
        Binding("l", "latest_run", "Latest run", id="detail.latest_run"),
        Binding("u", "denied_transfer", show=False),
        Binding("d", "denied_transfer", show=False),
    ]

    def __init__(self, spec: ResourceSpec, key: str, *, raw: bool = False) -> None:
        super().__init__()
        self.spec = spec
        self.key = key
        self.raw = raw
        self.format = "yaml"
        self._extra: dict[str, list] = {}

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(id="detail"):
            yield Static(id="detail-body")
            if self.spec.table == "hosts":
                from opstui.ui.widgets.host_ssh import HostSshPanel

                yield HostSshPanel(self.key, id="host-ssh")

    def store_ready(self) -> None:
        self.render_row()
        if self.spec.table == "teams" and self.store and self.key != self.store.team_id:
            self.load_team_members()

    @work(exclusive=True, group="detail", exit_on_error=False)
    async def load_team_members(self) -> None:
        """Another team's members and permissions (RLS shows them only to its members)."""
        client = self.store.client
        extra = {}
        for table in ("team_members", "permission_matrix"):
            result = await client.table(table).select("*").eq("team_id", self.key).execute()
            extra[table] = result.data or []
        self._extra = extra
        self.render_row()

    def on_store_event(self, event: StoreEvent) -> None:
        if isinstance(event, RowChanged):
            self.render_row()
            if event.table == "hosts" and event.key == self.key:
                self._host_changed()

    def render_row(self) -> None:
        store = self.store
        body = self.query_one("#detail-body", Static)
        scroll = self.query_one("#detail", VerticalScroll)
        row = store.row(self.spec.table, self.key) if store else None
        if row is None:
            scroll.border_title = f"{self.spec.name}/{self.key}"
            body.update(
                Text("This row is gone (deleted, or no longer visible to you).", style="bold red")
            )
            return
        label = row.get(self.spec.label_key) or self.key
        scroll.border_title = f"{self.spec.name}/{label}"
        if self.raw:
            if self.format == "json":
                text = json.dumps(row, indent=2, sort_keys=True, default=str)
                body.update(Syntax(text, "json", theme="ansi_dark", word_wrap=True))
            else:
                body.update(Syntax(to_yaml(row), "yaml", theme="ansi_dark", word_wrap=True))
            return
        fields = Table.grid(padding=(0, 2))
        fields.add_column(style="bold cyan", no_wrap=True)
        fields.add_column()
        for name in sorted(row):
            fields.add_row(name, _named_cell(store, self.spec.table, name, row[name]))
        parts: list[Any] = [fields]
        for title, rows, columns in related_rows(store, self.spec, row, self._extra):
            section = Table(title=f"{title} ({len(rows)})", title_justify="left", expand=True)
            for column in columns:
                section.add_column(column.upper())
            for related in rows:
                section.add_row(*(_cell(related.get(c)) for c in columns))
            parts.append(Text(""))
            parts.append(section if rows else Text(f"{title}: none", style="dim"))
        body.update(Group(*parts))

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_toggle_raw(self) -> None:
        self.raw = not self.raw
        self.render_row()

    def action_toggle_format(self) -> None:
        self.raw = True
        self.format = "json" if self.format == "yaml" else "yaml"
        self.render_row()

    # -- hosts: health, audit trail and files (widgets/host_ssh.py) ---------------------------

    def _host_changed(self) -> None:
        for panel in self.query("#host-ssh"):
            panel.show_health()  # type: ignore[attr-defined]
            panel.load_trail()  # type: ignore[attr-defined]

    def _transfer_decision(self):
        from opstui.store import Decision

        row = self.store.row("hosts", self.key) if self.store else None
        if self.spec.table != "hosts" or row is None:
            return Decision(False, "only hosts have files")
        return self.store.can("hosts", "execute", row)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "transfer":
            return self._transfer_decision().allowed
        if action == "denied_transfer":
            return self.spec.table == "hosts"
        if action == "latest_run":
            return self.spec.table == "deployments"
        return True

    def action_latest_run(self) -> None:
        from opstui.ui.screens.run import latest_run

        run = latest_run(self.store, self.key) if self.store else None
        if run is None:
            self.notify("This deployment has not run yet.", title="Runs")
        else:
            self.app.open_run(run["id"])

    def action_transfer(self, direction: str) -> None:
        self.query_one("#host-ssh").ask_transfer(direction)  # type: ignore[attr-defined]

    def action_denied_transfer(self) -> None:
        reason = self._transfer_decision().reason
        self.notify(f"Not allowed: {reason}.", title="Files", severity="warning")
