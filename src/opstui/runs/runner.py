"""The runner: claims queued deployment runs and executes them, until stopped.

    runner = Runner(client, RunnerSettings(name="ci-box-1", concurrency=4))
    task = asyncio.create_task(runner.run())
    ...
    runner.stop()            # SIGTERM does this in `opstui runner`
    await task               # held runs finish (or are cancelled after drain_seconds)

Everything goes through supabase-py: the claim (`claim_deployment_run`, FOR
UPDATE SKIP LOCKED inside), heartbeats, results and logs are RPCs; reads are
REST under RLS. It wakes on Realtime (INSERT/UPDATE on deployment_runs) with a
slow poll as the fallback, sweeps lapsed leases (`expire_deployment_run_leases`)
and queues due schedules (`queue_scheduled_run`, once per tick whatever the
number of runners). The TUI's embedded demo starts one in its own process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from opstui.runs import api
from opstui.runs.execute import RunExecution
from opstui.runs.schedule import due_tick, parse_time
from opstui.ssh import ConnectionPool, SshSettings, rpc_password_source

log = logging.getLogger(__name__)


@dataclass
class RunnerSettings:
    name: str = field(default_factory=lambda: f"{socket.gethostname()}")
    concurrency: int = 4  # runs at once
    lease_seconds: int = 30
    poll_interval: float = 5.0  # the fallback when Realtime is quiet or down
    expire_interval: float = 10.0  # how often lapsed leases are swept
    schedule_interval: float = 5.0  # how often due schedules are queued
    drain_seconds: float = 10.0  # on stop: held runs may finish this long, then are cancelled
    schedules: bool = True
    host_concurrency: int = 64  # hosts of one batch at once
    workdir: Path | None = None  # where repositories are fetched (default: the temp dir)
    sink_options: dict = field(default_factory=dict)  # LogSink tuning (tests, benchmarks)
    builds: bool = True  # also claim standalone CI/CD builds and provider tasks (runs/builds.py)
    build_settings: Any = None  # runs.builds.BuildSettings (polling, leases) for builds and CI/CD steps


@dataclass(frozen=True)
class RunnerEvent:
    """What the runner did, for an in-process listener (the TUI demo): past tense."""

    kind: str  # 'claimed' | 'finished' | 'scheduled' | 'stopped'
    run_id: str | None = None
    status: str | None = None
    detail: str | None = None


class Runner:
    def __init__(
        self,
        client: Any,
        settings: RunnerSettings | None = None,
        *,
        pool: ConnectionPool | None = None,
        ssh_settings: SshSettings | None = None,
        on_event: Callable[[RunnerEvent], None] | None = None,
    ) -> None:
        self.client = client
        self.settings = settings or RunnerSettings()
        self._own_pool = pool is None
        # (not `pool or ...`: an empty pool is falsy, it has a __len__)
        self.pool = (
            pool
            if pool is not None
            else ConnectionPool(
                ssh_settings or SshSettings(password_source=rpc_password_source(client))
            )
        )
        self.on_event = on_event
        self.held: dict[str, RunExecution] = {}
        self._tasks: dict[str, asyncio.Task] = {}
        self.claimed: list[str] = []  # every run id this runner claimed, in order
        self.finished: dict[str, str] = {}  # run id -> final status
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._channel: Any = None
        self._last_tick: dict[str, datetime | None] = {}
        self._schedule_refusals: set[str] = set()
        self.problems: list[str] = []
        self.builds = None
        if self.settings.builds:
            from opstui.runs.builds import BuildWorker

            self.builds = BuildWorker(client, name=self.settings.name,
                                      poll_interval=self.settings.poll_interval,
                                      drain_seconds=self.settings.drain_seconds,
                                      settings=self.settings.build_settings)  # fmt: skip

    # -- control ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming; held runs finish (or are cancelled after drain_seconds)."""
        self._stop.set()
        self._wake.set()
        if self.builds is not None:
            self.builds.stop()

    def start(self) -> asyncio.Task:
        """Run in the background of the current event loop (the TUI's embedded demo)."""
        if getattr(self, "_task", None) is None:
            self._task = asyncio.create_task(self.run(), name=f"runner:{self.settings.name}")
        return self._task

    async def aclose(self) -> None:
        """Stop and wait: held runs finish, or are cancelled after drain_seconds."""
        self.stop()
        task = getattr(self, "_task", None)
        if task is not None:
            await task

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _emit(self, event: RunnerEvent) -> None:
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:  # noqa: BLE001 - a listener never stops the runner
                log.exception("runner event listener failed")

    # -- main loop --------------------------------------------------------------------------

    async def run(self) -> None:
        housekeeping = asyncio.create_task(self._housekeeping(), name="runner-housekeeping")
        builds = asyncio.create_task(self.builds.run(), name="runner-builds") if self.builds else None
        try:
            await self._subscribe()
            while not self.stopping:
                # Clear first: a launch heard while claiming must wake the next wait, not be lost.
                self._wake.clear()
                await self._claim_while_free()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval)
        finally:
            housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await housekeeping
            await self._drain()
            if builds is not None:
                await builds
            await self._unsubscribe()
            if self._own_pool:
                await self.pool.close()
            self._emit(RunnerEvent("stopped"))

    async def _claim_while_free(self) -> None:
        while not self.stopping and len(self._tasks) < self.settings.concurrency:
            try:
                run = await api.claim(self.client, self.settings.name, self.settings.lease_seconds)
            except Exception as exc:  # noqa: BLE001 - the next wake-up or poll retries
                self._problem(f"claim failed: {exc}")
                return
            if run is None or self.stopping:
                if run is not None:  # claimed just as we stopped: give it back as cancelled
                    await self._start(run)
                return
            await self._start(run)

    async def _start(self, run: dict) -> None:
        run_id = str(run["id"])
        execution = RunExecution(
            self.client, run, pool=self.pool, workdir=self.settings.workdir,
            lease_seconds=self.settings.lease_seconds,
            host_concurrency=self.settings.host_concurrency,
            sink_options=self.settings.sink_options,
        )  # fmt: skip
        execution.build_settings = self.settings.build_settings
        if self.stopping:
            execution.request_cancel(
                f"runner {self.settings.name} was stopping when it claimed the run"
            )
        self.held[run_id] = execution
        self.claimed.append(run_id)
        log.info("claimed run %s (#%s)", run_id, run.get("number"))
        self._emit(RunnerEvent("claimed", run_id, "running"))
        task = asyncio.create_task(self._execute(run_id, execution), name=f"run:{run_id}")
        self._tasks[run_id] = task

    async def _execute(self, run_id: str, execution: RunExecution) -> None:
        status = "failed"
        try:
            status = await execution.execute()
        except Exception as exc:  # noqa: BLE001
            self._problem(f"run {run_id}: {exc}")
        finally:
            self.held.pop(run_id, None)
            self._tasks.pop(run_id, None)
            self.finished[run_id] = status
            log.info("run %s %s", run_id, status)
            self._emit(RunnerEvent("finished", run_id, status))
            self._wake.set()  # a slot is free

    async def _drain(self) -> None:
        if not self._tasks:
            return
        tasks = list(self._tasks.values())
        _, pending = await asyncio.wait(tasks, timeout=self.settings.drain_seconds)
        if pending:
            for execution in list(self.held.values()):
                execution.request_cancel(f"runner {self.settings.name} was stopped")
            await asyncio.wait(pending)

    def _problem(self, text: str) -> None:
        self.problems.append(text)
        log.warning("%s", text)

    # -- realtime ---------------------------------------------------------------------------

    async def _subscribe(self) -> None:
        try:
            channel = self.client.channel(
                f"opstui-runner:{self.settings.name}:{uuid.uuid4().hex[:8]}"
            )
            channel.on_postgres_changes(
                "*", schema="public", table="deployment_runs", callback=self._on_change
            )
            await channel.subscribe()
            self._channel = channel
        except Exception as exc:  # noqa: BLE001 - polling still works
            self._problem(
                f"realtime unavailable, polling every {self.settings.poll_interval:g}s: {exc}"
            )

    async def _unsubscribe(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            with contextlib.suppress(Exception):
                await self.client.remove_channel(channel)

    def _on_change(self, payload: dict) -> None:
        data = payload.get("data", payload)
        record = data.get("record") or {}
        run_id = str(record.get("id") or "")
        if record.get("status") == "queued":
            self._wake.set()
        execution = self.held.get(run_id)
        if execution is not None and record.get("cancel_requested_at"):
            execution.request_cancel()

    # -- housekeeping -----------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        loop = asyncio.get_running_loop()
        next_expire = next_schedule = loop.time()
        while True:
            now = loop.time()
            if now >= next_expire:
                next_expire = now + self.settings.expire_interval
                try:
                    if await api.expire_leases(self.client):
                        self._wake.set()
                except Exception as exc:  # noqa: BLE001
                    self._problem(f"lease sweep failed: {exc}")
            if self.settings.schedules and now >= next_schedule:
                next_schedule = now + self.settings.schedule_interval
                try:
                    await self.fire_schedules()
                except Exception as exc:  # noqa: BLE001
                    self._problem(f"schedules: {exc}")
            await asyncio.sleep(max(0.05, min(next_expire, next_schedule) - loop.time()))

    async def fire_schedules(
        self, now: datetime | None = None, *, only: list[str] | None = None
    ) -> list[str]:
        """Queue the run of every schedule that is due (of `only` these deployments, if
        given); returns the ids this runner queued."""
        now = now or datetime.now(UTC)
        query = (
            self.client.table("deployments")
            .select("id,name,team_id,schedule_type,scheduled_time,cron_expression,repeat_count,created_at")
            .in_("schedule_type", ["later", "cron"])
        )  # fmt: skip
        if only is not None:
            query = query.in_("id", only)
        rows = await api._select(query, "read scheduled deployments")
        queued = []
        for row in rows:
            deployment_id = str(row["id"])
            if deployment_id not in self._last_tick:
                self._last_tick[deployment_id] = await self._last_fired(deployment_id)
            due = due_tick(row, now, self._last_tick[deployment_id])
            if due is None:
                continue
            self._last_tick[deployment_id] = due.tick
            try:
                run_id = await api.queue_scheduled(
                    self.client, deployment_id, due.tick.isoformat(), due.skipped
                )
            except api.RunsError as exc:
                if deployment_id not in self._schedule_refusals:
                    self._schedule_refusals.add(deployment_id)
                    self._problem(f"schedule of {row.get('name')}: {exc}")
                continue
            if run_id:
                queued.append(run_id)
                note = f"; skipped {due.skipped} missed ticks" if due.skipped else ""
                log.info("queued %s for its %s tick%s", row.get("name"), due.tick.isoformat(), note)
                self._emit(
                    RunnerEvent(
                        "scheduled",
                        run_id,
                        "queued",
                        f"{row.get('name')} {due.tick.isoformat()}{note}",
                    )
                )
                self._wake.set()
        return queued

    async def _last_fired(self, deployment_id: str) -> datetime | None:
        rows = await api._select(
            self.client.table("deployment_runs")
            .select("scheduled_for")
            .eq("deployment_id", deployment_id)
            .eq("trigger", "schedule")
            .order("scheduled_for", desc=True)
            .limit(1),
            "read the last scheduled run",
        )
        return parse_time(rows[0].get("scheduled_for")) if rows else None


__all__ = ["Runner", "RunnerEvent", "RunnerSettings"]
