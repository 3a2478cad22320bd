"""One CI/CD build: status, number, its URL (open or copy), a live log, cancel.

The build row comes from the store (the team's `cicd_builds`, live through Realtime);
the log from `BuildLogFollower` (opstui.cicd.logstream: subscribe first, then the stored
chunks, then live ones merged by seq), in the same `LogPane` as runs. A worker follows
the log and waits for each batch to be painted before taking the next.

Keys: ctrl+k cancels a queued or running build (after a confirmation), o opens the
build's URL in a browser where one exists, c or y copies it, escape goes back.
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
from textual.widgets import Static

from opstui.store import Decision, RowChanged, StoreEvent
from opstui.ui.messages import WriteFailed
from opstui.ui.screens.base import OpsScreen
from opstui.ui.screens.cicd import build_label, provider_name
from opstui.ui.screens.run import person, span_between, status_text
from opstui.ui.widgets.log_pane import LogPane
from opstui.views import human_span, parse_time

ACTIVE = ("queued", "running")
RETRY_SECONDS = 5.0  # a log follow that failed mid-build starts again after this


def progress_line(progress: Any) -> str:
    """The provider's jobs/steps (GitHub, GitLab) or stage (Jenkins), as one line."""
    if not isinstance(progress, dict):
        return ""
    jobs = progress.get("jobs")
    if isinstance(jobs, list) and jobs:
        parts = []
        for job in jobs[:8]:
            if isinstance(job, dict):
                state = job.get("conclusion") or job.get("status") or "?"
                parts.append(f"{job.get('name') or '?'} {state}")
        return " · ".join(parts)
    stage = progress.get("stage")
    return f"stage {stage}" if stage else ""


class BuildLogArrived(Message):
    def __init__(self, chunks: list[Any], build: dict[str, Any] | None, handled: asyncio.Event) -> None:
        super().__init__()
        self.chunks = chunks
        self.build = build
        self.handled = handled


class BuildFollowFailed(Message):
    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


class BuildScreen(OpsScreen):
    AUTO_FOCUS = "LogView"

    BINDINGS = [
        Binding("escape", "back", "Back", id="build.back"),
        Binding("ctrl+k", "cancel_build", "Cancel build", id="build.cancel"),
        Binding("o", "open_url", "Open URL", id="build.open"),
        Binding("c,y", "copy_url", "Copy URL", id="build.copy"),
        Binding("slash", "search", "Search log", show=False, id="build.search"),
        # Fallbacks: reached only when the action above is not allowed.
        Binding("ctrl+k", "denied('cancel')", show=False),
        Binding("o", "denied('open')", show=False),
        Binding("c,y", "denied('copy')", show=False),
    ]

    def __init__(self, build_id: str) -> None:
        super().__init__()
        self.build_id = build_id
        self.build: dict[str, Any] | None = None
        self.problem = ""
        self._following = False

    def compose_body(self) -> ComposeResult:
        yield Static(id="build-header")
        yield LogPane(id="build-log", title="log")

    def on_mount(self) -> None:
        super().on_mount()
        self.render_header()

    @property
    def pane(self) -> LogPane:
        return self.query_one(LogPane)

    # -- following --------------------------------------------------------------------------

    def store_ready(self) -> None:
        store = self.store
        if store is not None:
            self.build = store.row("cicd_builds", self.build_id) or self.build
            self.render_header()
        if not self._following and store is not None:
            self._following = True
            self.follow()

    def on_store_event(self, event: StoreEvent) -> None:
        if isinstance(event, RowChanged) and event.table == "cicd_builds" and event.key == self.build_id:
            if event.row is not None:
                self.build = event.row
                self.render_header()
                self.refresh_bindings()

    @work(group="build-log", exclusive=True, exit_on_error=False)
    async def follow(self) -> None:
        from opstui.cicd.logstream import BuildLogFollower
        from opstui.runs.api import RunsError

        assert self.store is not None
        while True:
            # After a failure, go on from the last chunk shown: no gap, no duplicate.
            after = self.pane.last_seq or 0
            follower = BuildLogFollower(self.store.client, self.build_id, follow=True, after=after)
            try:
                async with contextlib.aclosing(follower.batches()) as batches:
                    async for batch in batches:
                        handled = asyncio.Event()
                        self.post_message(BuildLogArrived(batch, follower.run, handled))
                        await handled.wait()
                # The log is complete: the build ended; take its final row too.
                self.post_message(BuildLogArrived([], follower.run, asyncio.Event()))
                return
            except (RunsError, OSError, TimeoutError) as exc:
                if self.build is None:
                    self.post_message(BuildFollowFailed(str(exc)))  # gone, or not yours
                    return
                # The server is away: say so, and try again (the store reconnects too).
                self.post_message(BuildFollowFailed(f"log paused: {exc}; retrying"))
                await asyncio.sleep(RETRY_SECONDS)

    @on(BuildLogArrived)
    def _log_arrived(self, message: BuildLogArrived) -> None:
        try:
            if self.problem.startswith("log paused"):
                self.problem = ""  # it came back
                self.render_header()
            if message.build is not None and self._newer(message.build):
                self.build = message.build
                self.render_header()
                self.refresh_bindings()
            if message.chunks:
                self.pane.add_chunks(message.chunks)
        finally:
            message.handled.set()

    def _newer(self, row: dict[str, Any]) -> bool:
        if self.build is None:
            return True
        return str(row.get("updated_at") or "") >= str(self.build.get("updated_at") or "")

    @on(BuildFollowFailed)
    def _failed(self, message: BuildFollowFailed) -> None:
        self.problem = message.reason
        self.render_header()

    def tick(self) -> None:
        if self.build is not None and self.build.get("status") in ACTIVE:
            self.render_header()
        self.refresh_context()

    # -- painting ---------------------------------------------------------------------------

    def render_header(self) -> None:
        header = self.query_one("#build-header", Static)
        build = self.build
        if build is None:
            header.update(Text(self.problem or "loading the build…", style="red" if self.problem else "dim"))
            return
        now = self.app.clock()
        store = self.store
        provider = store.row("cicd_providers", build.get("provider_id") or "") if store else None
        first = Text.assemble(
            (build_label(build), "bold"),
            "  ",
            status_text(build.get("status")),
            "  on ",
            (provider_name(self.app, provider) if provider else str(build.get("provider_type") or ""), "cyan"),
            f"  by {person(store, build.get('requested_by'))}",
        )
        requested = parse_time(build.get("requested_at"))
        if requested is not None:
            first.append(f"  requested {human_span((now - requested).total_seconds())} ago")
        if parse_time(build.get("started_at")) is not None:
            first.append(f"  took {span_between(build.get('started_at'), build.get('finished_at'), now)}")
        url = build.get("url")
        second = Text.assemble(
            ("url ", "dim"),
            (url, "underline") if url else ("not known yet (the runner has not reached the provider)", "dim"),
        )
        if url:
            second.append("  o opens · c copies", style="dim")
        parts: list[Any] = [first, second]
        parameters = build.get("parameters") or {}
        if parameters:
            shown = ", ".join(f"{k}={v}" for k, v in list(parameters.items())[:8])
            parts.append(Text.assemble(("parameters ", "dim"), shown))
        progress = progress_line(build.get("progress"))
        if progress:
            parts.append(Text.assemble(("progress ", "dim"), progress))
        if build.get("runner_name"):
            parts.append(Text(f"runner {build['runner_name']}", style="dim"))
        if build.get("cancel_requested_at") and build.get("status") in ACTIVE:
            who = person(store, build.get("cancel_requested_by"))
            parts.append(Text(f"cancel requested by {who}; the runner is stopping it", "yellow"))
        if build.get("error"):
            parts.append(Text(f"error: {build['error']}", style="bold red"))
        if self.problem:
            parts.append(Text(self.problem, style="red"))
        header.update(Group(*parts))
        # A build's lines have no host: name them after where they come from.
        self.pane.set_sources({None: str(build.get("provider_type") or "build")})  # type: ignore[dict-item]
        self.pane.title = f"log of {build_label(build)}"
        self.pane.refresh_title()

    # -- keys -------------------------------------------------------------------------------

    def _decision(self, what: str) -> Decision:
        build, store = self.build, self.store
        if build is None or store is None:
            return Decision(False, "the build is still loading")
        if what in ("open", "copy"):
            if not build.get("url"):
                return Decision(False, "the build has no URL yet; the runner sets it once the provider answers")
            return Decision(True)
        status = build.get("status")
        if status not in ACTIVE:
            return Decision(False, f"build {build_label(build)} already ended ({status})")
        if build.get("cancel_requested_at"):
            return Decision(False, "a cancel was already requested; the runner is stopping it")
        return store.can("cicd_jobs", "execute", build)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        what = {"cancel_build": "cancel", "open_url": "open", "copy_url": "copy"}.get(action)
        if what is not None:
            return self._decision(what).allowed
        return True

    def action_denied(self, what: str) -> None:
        decision = self._decision(what)
        if not decision.allowed:
            title = {"cancel": "Cancel", "open": "Open URL", "copy": "Copy URL"}[what]
            self.notify(f"Not allowed: {decision.reason}.", title=title, severity="warning")

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_search(self) -> None:
        self.pane.action_search()

    def action_copy_url(self) -> None:
        url = (self.build or {}).get("url")
        if url:
            self.app.copy_to_clipboard(url)
            self.notify(f"Copied {url}", title="Copy URL")

    def action_open_url(self) -> None:
        url = (self.build or {}).get("url")
        if url:
            self.open_in_browser(url)

    @work(thread=True, group="browser", exit_on_error=False)
    def open_in_browser(self, url: str) -> None:
        # webbrowser may start a process and wait on it: never on the event loop.
        import webbrowser

        try:
            webbrowser.get()
            opened = webbrowser.open(url)
        except webbrowser.Error:
            opened = False
        if opened:
            self.app.call_from_thread(self.notify, f"Opened {url}", title="Open URL")
        else:
            self.app.call_from_thread(
                self.notify,
                "No browser here (a terminal over SSH?); c copies the URL instead.",
                title="Open URL",
                severity="warning",
            )

    def action_cancel_build(self) -> None:
        from opstui.ui.screens.confirm import ConfirmScreen

        build = self.build
        assert build is not None
        detail = (
            "No runner has taken it: it will not start."
            if build.get("status") == "queued" and not build.get("runner_id")
            else "The runner asks the provider to stop it within seconds."
        )

        def decided(yes: bool | None) -> None:
            if yes:
                self.cancel_build()

        self.app.push_screen(
            ConfirmScreen(
                f"Cancel build {build_label(build)}?",
                detail,
                yes_label="Cancel build (y)",
                no_label="Keep it (n)",
            ),
            decided,
        )

    @work(group="build-writes", exit_on_error=False)
    async def cancel_build(self) -> None:
        from opstui.cicd import api

        assert self.store is not None
        try:
            outcome = await api.cancel(self.store.client, self.build_id)
        except api.BuildsError as exc:
            self.post_message(WriteFailed(str(exc)))
            return
        if outcome == "cancelled":
            self.notify("Cancelled before a runner picked it up.", title="Cancel")
        elif outcome == "cancel_requested":
            self.notify("Cancel requested; the build stops within seconds.", title="Cancel")
        else:
            self.notify(f"Nothing to cancel: the build is already {outcome}.", title="Cancel")
