"""The overview: what is running, what failed, host health, and the tier's headroom."""

from __future__ import annotations

from collections import Counter
from typing import Any

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Grid
from textual.widgets import Static

from opstui.models import DeploymentStatus
from opstui.store import PageLoaded, RowChanged, StoreEvent, TeamSwitched
from opstui.ui.screens.base import OpsScreen
from opstui.ui.widgets.resource_table import STATUS_CLASSES
from opstui.views import human_span, parse_time

STATUS_STYLES = {"ok": "green", "bad": "red", "busy": "yellow", "wait": "cyan", "gone": "magenta"}
LIMITED = ("hosts", "repositories", "deployments", "cicd_providers", "teams")


def status_style(status: str | None) -> str:
    return STATUS_STYLES.get(STATUS_CLASSES.get((status or "").lower(), ""), "")


class OverviewScreen(OpsScreen):
    """Counts recompute at most once a tick, however fast changes arrive."""

    def compose_body(self) -> ComposeResult:
        with Grid(id="overview"):
            yield Static(id="deploy-counts", classes="panel")
            yield Static(id="hosts-health", classes="panel")
            yield Static(id="running", classes="panel")
            yield Static(id="failed", classes="panel")
            yield Static(id="tier", classes="panel wide")

    def on_mount(self) -> None:
        for panel_id, title in (
            ("deploy-counts", "Deployments by status"),
            ("hosts-health", "Host health"),
            ("running", "Running"),
            ("failed", "Recently failed"),
            ("tier", "Team, tenant and subscription"),
        ):
            self.query_one(f"#{panel_id}").border_title = title
        self._usage: dict[str, Any] = {}
        self._dirty = True
        super().on_mount()

    def store_ready(self) -> None:
        self._dirty = True
        self.render_panels()
        self.load_usage()

    def on_store_event(self, event: StoreEvent) -> None:
        if isinstance(event, PageLoaded | RowChanged | TeamSwitched):
            self._dirty = True
            if isinstance(event, PageLoaded) and event.complete:
                self.render_panels()
        if isinstance(event, TeamSwitched) or (
            isinstance(event, RowChanged) and event.table in LIMITED
        ):
            self.load_usage()

    def tick(self) -> None:
        # Durations of running deployments tick; counts are redrawn if anything changed.
        self._dirty = True
        self.render_panels()
        self.refresh_context()

    @work(exclusive=True, group="usage", exit_on_error=False)
    async def load_usage(self) -> None:
        store = self.store
        if store is None:
            return
        try:
            result = await store.client.rpc("tenant_usage").execute()
        except Exception:  # noqa: BLE001 - usage is a nicety; the panel says so
            self._usage = {"error": "usage unavailable"}
        else:
            self._usage = result.data or {}
        self._dirty = True
        self.render_panels()

    def render_panels(self) -> None:
        store = self.store
        if store is None or not self._dirty:
            return
        self._dirty = False
        now = self.app.clock()
        deployments = store.rows("deployments")
        counts = Counter(d.get("status") for d in deployments)

        table = Table.grid(padding=(0, 2))
        total = max(1, len(deployments))
        for status in DeploymentStatus:
            n = counts.get(status.value, 0)
            bar = "█" * round(24 * n / total)
            table.add_row(
                Text(status.value, style=status_style(status.value)),
                Text(str(n), justify="right"),
                Text(bar, style=status_style(status.value)),
            )
        self.query_one("#deploy-counts", Static).update(table)

        hosts = store.rows("hosts")
        health = Counter(h.get("status") for h in hosts)
        grid = Table.grid(padding=(0, 2))
        for status in ("online", "offline", "pending", "testing", "failed"):
            if health.get(status) or status in ("online", "offline"):
                grid.add_row(Text(status, style=status_style(status)), str(health.get(status, 0)))
        windows = sum(1 for h in hosts if h.get("is_windows"))
        grid.add_row(Text("linux / windows", style="dim"), f"{len(hosts) - windows} / {windows}")
        self.query_one("#hosts-health", Static).update(grid)

        running = sorted(
            (d for d in deployments if d.get("status") == "in_progress"),
            key=lambda d: d.get("started_at") or "",
        )
        self.query_one("#running", Static).update(_runs_table(running[:10], now, running=True))
        failed = sorted(
            (d for d in deployments if d.get("status") == "failed"),
            key=lambda d: d.get("completed_at") or "",
            reverse=True,
        )
        self.query_one("#failed", Static).update(_runs_table(failed[:10], now, running=False))
        self.query_one("#tier", Static).update(self._tier_table())

    def _tier_table(self) -> Table:
        store = self.store
        identity = store.identity if store else None
        grid = Table.grid(padding=(0, 2))
        if identity is None:
            return grid
        team = next((t for t in identity.teams if t["id"] == store.team_id), {})
        grid.add_row(
            "team", Text(team.get("name", "—"), style="bold"), (team.get("description") or "")
        )
        grid.add_row(
            "tenant",
            (identity.tenant or {}).get("name", "—"),
            (identity.tenant or {}).get("domain") or "",
        )
        tier = identity.tier or {}
        grid.add_row(
            "tier", Text(tier.get("name", "none"), style="bold"), tier.get("description") or ""
        )
        usage = self._usage.get("resources", {}) if isinstance(self._usage, dict) else {}
        if self._usage.get("error"):
            grid.add_row("usage", Text(self._usage["error"], style="dim"), "")
        for resource in LIMITED:
            info = usage.get(resource)
            if not info:
                continue
            used = info.get("used", 0)
            if info.get("unlimited") or info.get("max") is None:
                grid.add_row(resource, f"{used}", Text("unlimited", style="dim"))
            else:
                limit = int(info["max"])
                share = used / limit if limit else 1
                style = "red" if share >= 1 else "yellow" if share >= 0.8 else "green"
                bar = "█" * round(20 * min(1, share)) + "░" * (20 - round(20 * min(1, share)))
                grid.add_row(resource, Text(f"{used}/{limit}", style=style), Text(bar, style=style))
        return grid


def _runs_table(rows: list[dict[str, Any]], now, *, running: bool) -> Table | Text:
    if not rows:
        return Text("none", style="dim")
    table = Table.grid(padding=(0, 2))
    for row in rows:
        started = parse_time(row.get("started_at"))
        ended = parse_time(row.get("completed_at"))
        if running:
            span = human_span((now - started).total_seconds()) if started else "—"
        else:
            span = human_span((ended - started).total_seconds()) if started and ended else "—"
            if ended:
                span += f"  {human_span((now - ended).total_seconds())} ago"
        table.add_row(Text(row.get("name", "?"), style="bold" if running else ""), span)
    return table
