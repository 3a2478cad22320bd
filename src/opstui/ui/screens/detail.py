"""Detail of one row: every field, its related rows, and the raw row as YAML or JSON."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Group
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Static

from opstui.resources import ResourceSpec
from opstui.store import RowChanged, Store, StoreEvent
from opstui.ui.screens.base import OpsScreen
from opstui.views import to_yaml


def related_rows(
    store: Store, spec: ResourceSpec, row: dict[str, Any]
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
        people = {p["id"]: p for p in store.rows("profiles")}
        if row["id"] == store.team_id:
            members = [
                {**m, "email": people.get(m["profile_id"], {}).get("email", m["profile_id"])}
                for m in store.rows("team_members")
            ]
            sections.append(("Members", members, ("email", "role")))
            perms = [
                {**p, "email": people.get(p["profile_id"], {}).get("email", p["profile_id"])}
                for p in store.rows("permission_matrix")
            ]
            sections.append(
                (
                    "Permissions",
                    sorted(perms, key=lambda p: (p["email"], p["resource_type"])),
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
        else:
            sections.append(("Members", [], ("email",)))
    return sections


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
    ]

    def __init__(self, spec: ResourceSpec, key: str, *, raw: bool = False) -> None:
        super().__init__()
        self.spec = spec
        self.key = key
        self.raw = raw
        self.format = "yaml"

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(id="detail"):
            yield Static(id="detail-body")

    def store_ready(self) -> None:
        self.render_row()

    def on_store_event(self, event: StoreEvent) -> None:
        if isinstance(event, RowChanged):
            self.render_row()

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
            fields.add_row(name, _cell(row[name]))
        parts: list[Any] = [fields]
        for title, rows, columns in related_rows(store, self.spec, row):
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
