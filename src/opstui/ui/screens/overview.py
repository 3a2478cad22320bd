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
RUNS_FPS = 4
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
            ("hosts-health", "Host health (this team)"),
            ("running", "Running"),
            ("failed", "Recently failed"),
            ("tier", "Team, tenant and subscription"),
        ):
            self.query_one(f"#{panel_id}").border_title = title
        self._usage: dict[str, Any] = {}
        self._failing: dict[str, str] = {}  # failed run id -> "web-03 exit 1"
        self._render_scheduled = False
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
        if isinstance(event, RowChanged) and event.table == "deployment_runs":
            # Runs progress live: repaint soon, at most RUNS_FPS times a second.
            if not self._render_scheduled:
                self._render_scheduled = True
                self.set_timer(1 / RUNS_FPS, self._scheduled_render)

    def _scheduled_render(self) -> None:
        self._render_scheduled = False
        self.render_panels()

    def tick(self) -> None:
        # Durations of running deployments tick; counts are redrawn if anything changed.
        self._dirty = True
        self.render_panels()
        self.refresh_context()

    @work(group="failing-hosts", exit_on_error=False)
    async def load_failing_hosts(self, run_ids: list[str]) -> None:
        """Which host failed each failed run (host rows are read per run, not kept live)."""
        store = self.store
        if store is None:
            return
        for run_id in run_ids:
            self._failing.setdefault(run_id, "")  # asked once, whatever the answer
        try:
            result = await (
                store.client.table("deployment_run_hosts")
                .select("run_id, host_name, host_id, status, exit_code, error, position")
                .in_("run_id", run_ids)
                .in_("status", ["failed", "unreachable"])
                .order("position")
                .execute()
            )
        except Exception:  # noqa: BLE001 - a nicety: the panel falls back to the run's error
            return
        for host in result.data or []:
            if self._failing.get(host["run_id"]):
                continue  # the first failing host (by position) names the run
            name = host.get("host_name") or host.get("host_id")
            if host.get("status") == "unreachable":
                self._failing[host["run_id"]] = f"{name} unreachable"
            else:
                self._failing[host["run_id"]] = f"{name} exit {host.get('exit_code')}"
        self._dirty = True
        self.render_panels()

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

        runs = store.rows("deployment_runs")
        going = sorted(
            (r for r in runs if r.get("status") in ("running", "queued")),
            key=lambda r: (r.get("status") != "running", r.get("requested_at") or ""),
        )
        self.query_one("#running", Static).update(_running_table(going[:10], now))
        failed = sorted(
            (r for r in runs if r.get("status") in ("failed", "lost")),
            key=lambda r: r.get("finished_at") or r.get("requested_at") or "",
            reverse=True,
        )[:10]
        missing = [r["id"] for r in failed if r["id"] not in self._failing]
        if missing:
            self.load_failing_hosts(missing)
        self.query_one("#failed", Static).update(_failed_table(failed, self._failing, now))
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
        if any(usage.get(resource) for resource in LIMITED):
            # The tenant's counts, all teams together (not the team's, shown beside them).
            grid.add_row(Text("tenant usage", style="dim"), "", "")
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


def _run_name(run: dict[str, Any], width: int = 26) -> str:
    """`name #7`, the name shortened so the number always shows."""
    name = str((run.get("spec") or {}).get("deployment_name", "?"))
    if len(name) > width:
        name = name[: width - 1] + "…"
    return f"{name} #{run.get('number', '?')}"


def _running_table(runs: list[dict[str, Any]], now) -> Table | Text:
    """Runs going now: hosts done of total as a bar, the batch, how long."""
    if not runs:
        return Text("none", style="dim")
    table = Table.grid(padding=(0, 1))
    for run in runs:
        if run.get("status") == "queued":
            queued = parse_time(run.get("requested_at"))
            wait = human_span((now - queued).total_seconds()) if queued else ""
            table.add_row(Text(_run_name(run)), Text("queued", style="cyan"), "", "", wait)
            continue
        total = run.get("hosts_total") or 0
        done = run.get("hosts_done") or 0
        filled = round(10 * done / total) if total else 0
        bar = Text("█" * filled, style="yellow") + Text("░" * (10 - filled), style="dim")
        started = parse_time(run.get("started_at"))
        span = human_span((now - started).total_seconds()) if started else ""
        failed = run.get("hosts_failed") or 0
        table.add_row(
            Text(_run_name(run), style="bold"),
            bar,
            Text(f"{done}/{total}" + (f" ({failed} failed)" if failed else ""),
                 style="red" if failed else ""),
            f"batch {run.get('current_batch') or 0}/{run.get('batch_count') or 0}",
            span,
        )  # fmt: skip
    return table


def _failed_table(runs: list[dict[str, Any]], failing: dict[str, str], now) -> Table | Text:
    """Recently failed runs, each with its failing host (or its error)."""
    if not runs:
        return Text("none", style="dim")
    names = [_run_name(run, width=40) for run in runs]
    table = Table.grid(padding=(0, 2))
    # The name keeps its width (it is what people look for); the reason gives way.
    table.add_column(no_wrap=True, min_width=max(len(name) for name in names))
    table.add_column(no_wrap=True, overflow="ellipsis", ratio=1)
    for run, name in zip(runs, names, strict=True):
        ended = parse_time(run.get("finished_at"))
        ago = f"  {human_span((now - ended).total_seconds())} ago" if ended else ""
        why = failing.get(run["id"]) or (run.get("error") or run.get("status") or "")[:40]
        table.add_row(
            Text(name), Text(why, style=status_style("failed")) + Text(ago, style="dim")
        )
    return table
