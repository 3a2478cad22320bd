"""One deployment run: its header, its hosts, its log, live for every viewer.

A worker follows the run through `RunWatch` (data layer: subscribe, snapshot,
merge by seq) and posts `RunUpdateArrived`; this screen only paints. It waits
for each update to be handled before taking the next, so a chatty run paces
itself and the screen never faces a backlog.

Keys: ctrl+k cancels a queued or running run (after a confirmation), x runs a
finished run again (a new run, trigger `retry`, with the old run's snapshot),
f shows only the host highlighted in the table (f again: all hosts), escape
goes back. The log pane has its own keys (/, n, N, w, t, h).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from rich.console import Group
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable, Static

from opstui.run_watch import RunUpdate, RunWatch, RunWatchError
from opstui.store import Decision, PageLoaded, RowChanged, Store, StoreEvent
from opstui.ui.messages import RunLaunched, WriteFailed
from opstui.ui.screens.base import OpsScreen
from opstui.ui.widgets.log_pane import LogPane, LogView
from opstui.ui.widgets.resource_table import STATUS_CLASSES
from opstui.views import human_span, parse_time

ACTIVE = ("queued", "running")
STATUS_STYLES = {"ok": "bold green", "bad": "bold red", "busy": "bold yellow", "wait": "cyan"}
BUILD_COLUMNS = (
    ("job", "CI/CD JOB"),
    ("status", "STATUS"),
    ("number", "BUILD"),
    ("url", "URL"),
    ("error", "ERROR"),
)
HOST_COLUMNS = (
    ("host", "HOST"),
    ("batch", "BATCH"),
    ("status", "STATUS"),
    ("exit", "EXIT"),
    ("duration", "DURATION"),
    ("error", "ERROR"),
)


def status_text(status: str | None) -> Text:
    style = STATUS_STYLES.get(STATUS_CLASSES.get(status or "", ""), "dim")
    return Text(status or "?", style=style)


def span_between(start: Any, end: Any, now) -> str:
    started = parse_time(start)
    if started is None:
        return ""
    ended = parse_time(end) or now
    return human_span((ended - started).total_seconds())


def host_progress(run: dict[str, Any] | None, hosts: dict[str, dict[str, Any]]) -> tuple[str, int]:
    """"N of M done, K skipped" and the failed count, for the header and the table title alike.

    Counted from the host rows when there are any (they arrive live with the run), else from
    the run row's counters. Skipped hosts count as done, as the runner's counters do.
    """
    if hosts:
        statuses = [row.get("status") for row in hosts.values()]
        total = len(statuses)
        done = sum(1 for status in statuses if status not in ("pending", "running"))
        skipped = statuses.count("skipped")
        failed = sum(1 for status in statuses if status in ("failed", "unreachable"))
    else:
        run = run or {}
        total, done = run.get("hosts_total") or 0, run.get("hosts_done") or 0
        skipped, failed = 0, run.get("hosts_failed") or 0
    words = f"{done} of {total} done" + (f", {skipped} skipped" if skipped else "")
    return words, failed


def person(store: Store | None, profile_id: str | None) -> str:
    if not profile_id:
        return "nobody"
    row = store.row("profiles", profile_id) if store else None
    return (row or {}).get("email") or profile_id[:8]


def run_label(run: dict[str, Any]) -> str:
    name = (run.get("spec") or {}).get("deployment_name") or "deployment"
    return f"{name} #{run.get('number', '?')}"


def describe_rollout(rollout: dict[str, Any]) -> str:
    """The rollout settings in words, as the confirmation and the header show them."""
    size = str(rollout.get("batch_size") or "100%").strip()
    if size in ("100%", ""):
        batches = "all hosts at once"
    elif size.endswith("%"):
        batches = f"batches of {size} of the hosts"
    else:
        batches = f"batches of {size}"
    failures = int(rollout.get("max_failures") or 0)
    if failures == 0:
        stop = "the first failure stops the hosts not yet started"
    else:
        stop = f"stops once more than {failures} hosts failed"
    timeout = rollout.get("host_timeout_seconds")
    limit = f"; {human_span(int(timeout))} per host" if timeout else ""
    return f"{batches}; {stop}{limit}"


def launch_summary(store: Store, deployment: dict[str, Any]) -> tuple[str, str]:
    """The launch confirmation: the question, and what exactly will run where."""
    hosts = {row["id"]: row for row in store.rows("hosts")}
    host_ids = deployment.get("host_ids") or []
    names = [hosts.get(host_id, {}).get("name") or f"unknown host {host_id[:8]}" for host_id in host_ids]
    shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
    scripts = deployment.get("scripts_path") or []
    parameters = deployment.get("scripts_parameters") or []
    script_lines = []
    for index, script in enumerate(scripts):
        argument = parameters[index] if index < len(parameters) else ""
        script_lines.append(f"  {index + 1}. {script}{(' ' + argument) if argument else ''}")
    repository = store.row("repositories", deployment.get("repository_id") or "") or {}
    branch = deployment.get("repository_branch") or repository.get("default_branch") or ""
    rollout = {
        "batch_size": deployment.get("rollout_batch_size"),
        "max_failures": deployment.get("rollout_max_failures"),
        "host_timeout_seconds": deployment.get("host_timeout_seconds"),
    }
    lines = [
        f"On {len(host_ids)} host{'s' if len(host_ids) != 1 else ''}: {shown or 'none'}",
        f"Scripts ({len(scripts)}):",
        *script_lines,
    ]
    if repository:
        lines.append(f"From {repository.get('name')}{(' @ ' + branch) if branch else ''}")
    lines.append(f"Rollout: {describe_rollout(rollout)}")
    return f"Run deployment {deployment.get('name')!r} now?", "\n".join(lines)


def active_run(store: Store, deployment_id: str) -> dict[str, Any] | None:
    return next(
        (
            run
            for run in store.rows("deployment_runs")
            if run.get("deployment_id") == deployment_id and run.get("status") in ACTIVE
        ),
        None,
    )


def latest_run(store: Store, deployment_id: str) -> dict[str, Any] | None:
    runs = [run for run in store.rows("deployment_runs") if run.get("deployment_id") == deployment_id]
    return max(runs, key=lambda run: run.get("number") or 0, default=None)


class RunUpdateArrived(Message):
    """The run, its hosts or its log changed (one `RunUpdate`)."""

    def __init__(self, update: RunUpdate, handled: asyncio.Event) -> None:
        super().__init__()
        self.update = update
        self.handled = handled


class RunWatchFailed(Message):
    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


class RunScreen(OpsScreen):
    AUTO_FOCUS = "LogView"

    BINDINGS = [
        Binding("escape", "back", "Back", id="run.back"),
        Binding("ctrl+k", "cancel_run", "Cancel run", id="run.cancel"),
        Binding("x", "retry", "Run again", id="run.retry"),
        Binding("f", "only_host", "One host / all", id="run.only_host"),
        Binding("slash", "search", "Search log", show=False, id="run.search"),
        Binding("b", "open_build", "Build step", id="run.open_build"),
        # Fallbacks: reached only when the action above is not allowed.
        Binding("ctrl+k", "denied('cancel')", show=False),
        Binding("x", "denied('retry')", show=False),
    ]

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id
        self.run: dict[str, Any] | None = None
        self.hosts: dict[str, dict[str, Any]] = {}
        self.problem = ""
        self._following = False

    def compose_body(self) -> ComposeResult:
        yield Static(id="run-header")
        yield DataTable(id="run-hosts", cursor_type="row", zebra_stripes=True)
        # The run's CI/CD steps (cicd_builds.run_id), shown only when it has any.
        yield DataTable(id="run-builds", cursor_type="row", classes="hidden")
        yield LogPane(id="run-log", title="log")

    def on_mount(self) -> None:
        table = self.query_one("#run-hosts", DataTable)
        for key, label in HOST_COLUMNS:
            table.add_column(label, key=key)
        table.border_title = "hosts"
        builds = self.query_one("#run-builds", DataTable)
        for key, label in BUILD_COLUMNS:
            builds.add_column(label, key=key)
        super().on_mount()
        self.render_header()

    @property
    def pane(self) -> LogPane:
        return self.query_one(LogPane)

    # -- following --------------------------------------------------------------------------

    def store_ready(self) -> None:
        self._paint_builds()
        if not self._following and self.store is not None:
            self._following = True
            self.follow()

    @work(group="run-watch", exclusive=True, exit_on_error=False)
    async def follow(self) -> None:
        assert self.store is not None
        watch = RunWatch(self.store.client, self.run_id)
        try:
            async with contextlib.aclosing(watch.updates()) as updates:
                async for update in updates:
                    handled = asyncio.Event()
                    self.post_message(RunUpdateArrived(update, handled))
                    await handled.wait()
        except RunWatchError as exc:
            self.post_message(RunWatchFailed(str(exc)))

    @on(RunUpdateArrived)
    def _updated(self, message: RunUpdateArrived) -> None:
        try:
            self._take(message.update)
        finally:
            message.handled.set()

    def _take(self, update: RunUpdate) -> None:
        if update.run is not None:
            self.run = update.run
        if update.snapshot:
            self.hosts = {}
        for row in update.hosts:
            self.hosts[row["host_id"]] = row
        if update.snapshot or update.hosts:
            self.pane.set_sources(
                {host_id: row.get("host_name") or host_id for host_id, row in self._ordered_hosts()}
            )
            self._paint_hosts(rebuild=update.snapshot)
        if update.note:
            self.pane.add_note(update.note)
        if update.chunks:
            self.pane.add_chunks(update.chunks)
        if update.run is not None or update.hosts:
            self.render_header()
            self.refresh_bindings()

    @on(RunWatchFailed)
    def _failed(self, message: RunWatchFailed) -> None:
        self.problem = message.reason
        self.render_header()

    def tick(self) -> None:
        # Running durations change with the clock alone.
        if self.run is not None and self.run.get("status") in ACTIVE:
            self.render_header()
            self._paint_hosts(rebuild=False, only_running=True)
        self.refresh_context()

    # -- painting ---------------------------------------------------------------------------

    def _ordered_hosts(self) -> list[tuple[str, dict[str, Any]]]:
        return sorted(
            self.hosts.items(),
            key=lambda item: (item[1].get("batch") or 0, item[1].get("position") or 0, item[0]),
        )

    def _cells(self, row: dict[str, Any]) -> tuple[Any, ...]:
        now = self.app.clock()
        exit_code = row.get("exit_code")
        return (
            Text(row.get("host_name") or row["host_id"], style="bold"),
            str(row.get("batch") or ""),
            status_text(row.get("status")),
            "" if exit_code is None else str(exit_code),
            span_between(row.get("started_at"), row.get("finished_at"), now),
            Text(row.get("error") or "", style="red"),
        )

    def _paint_hosts(self, *, rebuild: bool, only_running: bool = False) -> None:
        table = self.query_one("#run-hosts", DataTable)
        if rebuild:
            table.clear()
        existing = {key.value for key in table.rows}
        for host_id, row in self._ordered_hosts():
            if only_running and row.get("status") != "running":
                continue
            cells = self._cells(row)
            if host_id not in existing:
                table.add_row(*cells, key=host_id)
                continue
            for (column, _), value in zip(HOST_COLUMNS, cells, strict=True):
                # Columns grow with their text: "succeeded" after "pending", errors whole.
                table.update_cell(host_id, column, value, update_width=True)
        progress, failed = host_progress(self.run, self.hosts)
        table.border_title = f"hosts · {progress}" + (f", {failed} failed" if failed else "")

    def render_header(self) -> None:
        header = self.query_one("#run-header", Static)
        run = self.run
        if run is None:
            header.update(Text(self.problem or "loading the run…", style="red" if self.problem else "dim"))
            return
        now = self.app.clock()
        status = run.get("status")
        first = Text.assemble(
            (run_label(run), "bold"),
            "  ",
            status_text(status),
            "  ",
            (f"{run.get('trigger')}", "cyan"),
            f" by {person(self.store, run.get('requested_by'))}",
        )
        times: list[str] = []
        requested = parse_time(run.get("requested_at"))
        if requested is not None:
            times.append(f"requested {human_span((now - requested).total_seconds())} ago")
        started = parse_time(run.get("started_at"))
        if started is not None:
            times.append(f"started {started:%Y-%m-%d %H:%M:%S}")
            times.append(f"took {span_between(run.get('started_at'), run.get('finished_at'), now)}")
        if run.get("runner_name"):
            times.append(f"runner {run['runner_name']}")
        when = Text(" · ".join(times), style="dim")
        progress, failed = host_progress(run, self.hosts)
        second = Text.assemble(
            ("hosts ", "dim"),
            (progress, "bold"),
            (f", {failed} failed" if failed else "", "bold red"),
            (" · batch ", "dim"),
            f"{run.get('current_batch') or 0} of {run.get('batch_count') or 0}",
            (" · rollout ", "dim"),
            describe_rollout((run.get("spec") or {}).get("rollout") or {}),
        )
        parts: list[Any] = [first, when, second]
        if run.get("cancel_requested_at") and status in ACTIVE:
            who = person(self.store, run.get("cancel_requested_by"))
            parts.append(Text(f"cancel requested by {who}; the runner is stopping it", "yellow"))
        if run.get("error"):
            parts.append(Text(f"error: {run['error']}", style="bold red"))
        if self.problem:
            parts.append(Text(self.problem, style="red"))
        header.update(Group(*parts))
        self.pane.title = f"log of {run_label(run)}"
        self.pane.refresh_title()

    # -- keys -------------------------------------------------------------------------------

    def _decision(self, what: str) -> Decision:
        run, store = self.run, self.store
        if run is None or store is None:
            return Decision(False, "the run is still loading")
        status = run.get("status")
        if what == "cancel":
            if status not in ACTIVE:
                return Decision(False, f"run {run_label(run)} already ended ({status})")
            if run.get("cancel_requested_at"):
                return Decision(False, "a cancel was already requested; the runner is stopping it")
        elif status in ACTIVE:
            return Decision(False, f"run {run_label(run)} is still {status}; cancel it first (ctrl+k)")
        return store.can("deployments", "execute")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel_run":
            return self._decision("cancel").allowed
        if action == "retry":
            return self._decision("retry").allowed
        if action == "open_build":
            return bool(self._builds())
        return True

    def action_denied(self, what: str) -> None:
        decision = self._decision(what)
        if not decision.allowed:
            title = "Cancel" if what == "cancel" else "Run again"
            self.notify(f"Not allowed: {decision.reason}.", title=title, severity="warning")

    def action_back(self) -> None:
        self.app.pop_screen()

    # -- CI/CD steps ------------------------------------------------------------------------

    def on_store_event(self, event: StoreEvent) -> None:
        if isinstance(event, RowChanged | PageLoaded) and event.table == "cicd_builds":
            self._paint_builds()
            self.refresh_bindings()

    def _builds(self) -> list[dict[str, Any]]:
        store = self.store
        if store is None:
            return []
        steps = [b for b in store.rows("cicd_builds") if b.get("run_id") == self.run_id]
        return sorted(steps, key=lambda b: str(b.get("requested_at") or ""))

    def _paint_builds(self) -> None:
        table = self.query_one("#run-builds", DataTable)
        steps = self._builds()
        table.set_class(not steps, "hidden")
        if not steps:
            return
        keep = table.cursor_row
        table.clear()
        for build in steps:
            number = build.get("number")
            table.add_row(
                Text(build.get("job_name") or "?", style="bold"),
                status_text(build.get("status")),
                f"#{number}" if number else "",
                build.get("url") or "",
                Text((build.get("error") or "")[:100], style="red"),
                key=build["id"],
            )
        table.move_cursor(row=min(keep, len(steps) - 1))
        done = sum(1 for b in steps if b.get("status") not in ACTIVE)
        table.border_title = f"CI/CD steps · {done} of {len(steps)} done · b opens one"

    def action_open_build(self) -> None:
        table = self.query_one("#run-builds", DataTable)
        steps = self._builds()
        if not steps:
            return
        key = steps[0]["id"]
        if table.row_count:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        self.app.open_build(str(key))

    def action_search(self) -> None:
        self.pane.action_search()

    def action_only_host(self) -> None:
        pane = self.pane
        table = self.query_one("#run-hosts", DataTable)
        if pane.view.only is None and table.row_count:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
            pane.show_only(str(key))
        else:
            pane.show_only(None)
        self.query_one(LogView).focus()

    def action_cancel_run(self) -> None:
        from opstui.ui.screens.confirm import ConfirmScreen

        run = self.run
        assert run is not None
        detail = (
            "It has not started: it will not run."
            if run.get("status") == "queued"
            else "The runner stops its remote processes within seconds; "
            "hosts not yet started are skipped."
        )

        def decided(yes: bool | None) -> None:
            if yes:
                self.cancel_run()

        self.app.push_screen(
            ConfirmScreen(
                f"Cancel run {run_label(run)}?",
                detail,
                yes_label="Cancel run (y)",
                no_label="Keep it (n)",
            ),
            decided,
        )

    @work(group="run-writes", exit_on_error=False)
    async def cancel_run(self) -> None:
        from opstui.runs import api

        assert self.store is not None
        try:
            await api.cancel(self.store.client, self.run_id)
        except api.RunsError as exc:
            self.post_message(WriteFailed(str(exc)))
        else:
            self.notify("Cancel requested; the run stops within seconds.", title="Cancel")

    def action_retry(self) -> None:
        from opstui.ui.screens.confirm import ConfirmScreen

        run = self.run
        assert run is not None
        spec = run.get("spec") or {}
        hosts = [row.get("host_name") or host_id for host_id, row in self._ordered_hosts()]
        scripts = ", ".join(spec.get("scripts") or []) or "none"
        detail = (
            f"A new run with what {run_label(run)} ran (its snapshot, not today's settings): "
            f"{len(hosts)} host(s) {', '.join(hosts[:8])}; scripts {scripts}."
        )

        def decided(yes: bool | None) -> None:
            if yes:
                self.retry_run()

        self.app.push_screen(
            ConfirmScreen(
                f"Run {run_label(run)} again?",
                detail,
                yes_label="Run (y)",
                no_label="Cancel (n)",
                classes="wide",
            ),
            decided,
        )

    @work(group="run-writes", exit_on_error=False)
    async def retry_run(self) -> None:
        from opstui.runs import api

        assert self.store is not None
        try:
            run_id = await api.retry(self.store.client, self.run_id)
        except api.RunsError as exc:
            self.post_message(WriteFailed(str(exc)))
        else:
            self.post_message(RunLaunched(run_id, run_label(self.run or {}) + " again"))
