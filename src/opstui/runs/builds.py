"""CI/CD builds on the runner: one build start to finish, the claim loop, and a run's CI/CD steps.

    worker = BuildWorker(client, name="ci-box-1")      # standalone builds + provider tasks
    task = asyncio.create_task(worker.run()); ...; worker.stop(); await task

    status, error = await run_cicd_steps(client, run, sink, ...)   # a deployment run's steps

A build (`BuildExecution`): read the provider and its secrets (`get_cicd_provider_secrets`,
permission-checked), trigger, resolve the provider's build (Jenkins queue item → number) and
record it (`update_cicd_build`: number, URL; a run's mapping row follows), then poll status
and read the log incrementally into `append_build_log` (batched by a `LogSink`), heartbeat
the lease, pass a cancel on to the provider, and finish with the provider's result and a
one-line error. A lapsed lease ends it as `lost` and writes nothing more.

Secrets stay in this process: every line written (log, error) is scrubbed of every secret
value first, in case a provider echoes one back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from opstui.cicd import api
from opstui.cicd.base import BuildRef, ProviderError
from opstui.cicd.clients import client_for
from opstui.runs.logsink import LogSink

log = logging.getLogger(__name__)

# Polling: GitHub's REST budget (5,000 requests/hour) allows about one request a second.
POLL_SECONDS = {"jenkins": 1.0, "gitlab": 1.0, "github": 3.0}


@dataclass
class BuildSettings:
    lease_seconds: int = 30
    queue_timeout: float = 300.0  # a Jenkins queue item that gets no build within this fails
    cancel_timeout: float = 60.0  # after asking the provider to cancel, wait this long
    poll_seconds: dict[str, float] = field(default_factory=lambda: dict(POLL_SECONDS))
    first_poll: float = 0.2  # the first polls are quick, so the first log line shows fast
    sink_options: dict = field(default_factory=dict)
    http_timeout: float = 15.0


def _secret_values(*docs: Any) -> list[str]:
    out: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif value is not None and len(str(value)) >= 4:
            out.append(str(value))

    for doc in docs:
        walk(doc)
    return sorted(set(out), key=len, reverse=True)


class LookupCache:
    """Provider rows, their secrets and job rows, shared by a worker's builds for `ttl` seconds,
    so 50 builds of one job cost one read of each, not fifty (concurrent misses wait for one
    fetch). Secrets stay in this process's memory only, as for a single build."""

    def __init__(self, client: Any, ttl: float = 30.0) -> None:
        self.client = client
        self.ttl = ttl
        self._values: dict[tuple[str, str], tuple[float, Any]] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def _get(self, kind: str, key: str, fetch: Callable[[], Any]) -> Any:
        slot = (kind, key)
        hit = self._values.get(slot)
        if hit and time.monotonic() - hit[0] < self.ttl:
            return hit[1]
        async with self._locks.setdefault(slot, asyncio.Lock()):
            hit = self._values.get(slot)
            if hit and time.monotonic() - hit[0] < self.ttl:
                return hit[1]
            value = await fetch()
            self._values[slot] = (time.monotonic(), value)
            return value

    async def provider(self, provider_id: str) -> dict:
        return await self._get(
            "provider", provider_id, lambda: api.provider(self.client, provider_id)
        )

    async def secrets(self, provider_id: str) -> dict:
        return await self._get(
            "secrets", provider_id, lambda: api.provider_secrets(self.client, provider_id)
        )

    async def job(self, job_id: str) -> dict:
        return await self._get("job", job_id, lambda: api.job(self.client, job_id))


class BuildExecution:
    def __init__(
        self,
        client: Any,
        build: dict,
        *,
        settings: BuildSettings | None = None,
        client_factory: Callable[..., Any] = client_for,
        lookups: LookupCache | None = None,
    ) -> None:
        self.client = client
        self.build = build
        self.build_id = str(build["id"])
        self.settings = settings or BuildSettings()
        self.lookups = lookups or LookupCache(client, ttl=0)
        self._client_factory = client_factory
        self.sink = LogSink(
            lambda chunks: api.append_log(client, self.build_id, self._scrub_chunks(chunks)),
            **self.settings.sink_options,
        )
        self.cancel_requested = asyncio.Event()
        self.lease_lost: str | None = None
        self.status: str | None = None
        self.ref = BuildRef()
        self._secrets: list[str] = []
        self._hidden_parameters: dict = {}
        self._provider: dict = {}

    # -- control ------------------------------------------------------------------------------

    def request_cancel(self) -> None:
        self.cancel_requested.set()

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _scrub_chunks(self, chunks: list[dict]) -> list[dict]:
        return [{**c, "text": self.scrub(c["text"])} for c in chunks]

    async def _heartbeat_forever(self) -> None:
        interval = max(1.0, self.settings.lease_seconds / 3)
        while True:
            await asyncio.sleep(interval)
            try:
                if await api.heartbeat(self.client, self.build_id, self.settings.lease_seconds):
                    self.request_cancel()
            except api.BuildsError as exc:
                if exc.code == "42501":
                    self.lease_lost = str(exc)
                    self.cancel_requested.set()
                    return
                log.warning("build %s: heartbeat failed: %s", self.build_id, exc)
            except Exception as exc:  # noqa: BLE001 - a blip: the next beat retries
                log.warning("build %s: heartbeat failed: %s", self.build_id, exc)

    # -- the build ----------------------------------------------------------------------------

    async def execute(self) -> str:
        self.sink.start()
        beat = asyncio.create_task(
            self._heartbeat_forever(), name=f"build-heartbeat:{self.build_id}"
        )
        status, error = "failed", None
        provider_client = None
        try:
            provider_client = await self._connect()
            status, error = await self._follow(provider_client)
        except ProviderError as exc:
            status, error = (
                ("cancelled" if exc.kind == "cancelled" else "failed"),
                self.scrub(str(exc)),
            )
        except api.BuildsError as exc:
            if exc.code == "42501":
                self.lease_lost = str(exc)
            status, error = "failed", self.scrub(str(exc))
        except Exception as exc:  # noqa: BLE001 - the build fails with one line, the runner lives on
            log.exception("build %s failed", self.build_id)
            status, error = (
                "failed",
                self.scrub(f"runner error: {str(exc).splitlines()[0] if str(exc) else exc!r}"),
            )
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
            if provider_client is not None:
                with contextlib.suppress(Exception):
                    await provider_client.aclose()
        if self.lease_lost is None:
            self.sink.system(f"build {status}" + (f": {error}" if error else ""))
        await self.sink.close()
        if self.lease_lost is not None:
            self.status = "lost"
            return "lost"
        try:
            await api.finish(self.client, self.build_id, status, error)
        except api.BuildsError as exc:
            if exc.code == "42501":
                self.lease_lost = str(exc)
                self.status = "lost"
                return "lost"
            raise
        self.status = status
        return status

    async def _connect(self) -> Any:
        provider = await self.lookups.provider(str(self.build["provider_id"]))
        secrets = await self.lookups.secrets(str(self.build["provider_id"]))
        hidden = (
            await api.secret_parameters(self.client, self.build_id)
            if self.build.get("secret_parameters")
            else {}
        )
        self._secrets = _secret_values(secrets, hidden)
        self._hidden_parameters = hidden
        self._provider = provider
        provider_client = self._client_factory(
            provider, secrets, timeout=self.settings.http_timeout
        )
        if hasattr(provider_client, "find_timeout"):  # GitHub's search for a run after a 204
            provider_client.find_timeout = min(60.0, self.settings.queue_timeout)
        return provider_client

    async def _follow(self, provider_client: Any) -> tuple[str, str | None]:
        job = await self.lookups.job(str(self.build["job_id"]))
        parameters = {**(self.build.get("parameters") or {}), **self._hidden_parameters}
        kind = provider_client.kind
        self.sink.system(f"triggering {job['name']} on {self._provider.get('name')} ({kind})")
        if self.cancel_requested.is_set():
            return "cancelled", "cancelled before it was triggered"
        self.ref = await provider_client.trigger(str(job["external_id"]), parameters, self.build_id)
        if self.ref.queue_id and not self.ref.external_id:
            await api.update(self.client, self.build_id, self.ref.fields())
            self.sink.system(f"queued on {kind}: {self.ref.queue_id}")
            await self._resolve(provider_client)
        await api.update(self.client, self.build_id, self.ref.fields())
        self.sink.system(f"build #{self.ref.number}: {self.ref.url}")
        return await self._poll(provider_client, kind)

    async def _resolve(self, provider_client: Any) -> None:
        resolving = asyncio.create_task(
            provider_client.resolve(self.ref, self.settings.queue_timeout)
        )
        cancel = asyncio.create_task(self.cancel_requested.wait())
        try:
            done, _ = await asyncio.wait({resolving, cancel}, return_when=asyncio.FIRST_COMPLETED)
            if resolving in done:
                self.ref = resolving.result()
                return
            resolving.cancel()
            with contextlib.suppress(asyncio.CancelledError, ProviderError):
                await resolving
            if self.ref.external_id is None:
                await provider_client.cancel(self.ref)
                raise ProviderError("cancelled", "cancelled while queued on the provider")
        finally:
            cancel.cancel()

    async def _poll(self, provider_client: Any, kind: str) -> tuple[str, str | None]:
        interval = self.settings.first_poll
        steady = self.settings.poll_seconds.get(kind, 1.0)
        cancel_sent_at: float | None = None
        last_status, last_progress = None, None
        queued_since = time.monotonic()
        while True:
            if self.lease_lost is not None:
                return "failed", self.lease_lost
            if self.cancel_requested.is_set() and cancel_sent_at is None:
                cancel_sent_at = time.monotonic()
                self.sink.system(
                    f"cancel requested: asking {kind} to stop build #{self.ref.number}"
                )
                await provider_client.cancel(self.ref)
            state = await provider_client.state(self.ref)
            text, more = await provider_client.read_log(self.ref)
            if text:
                self.sink.add(None, "stdout", text)
            started = state.status == "running" and last_status != "running"
            if started or state.progress != last_progress:
                fields: dict[str, Any] = {**self.ref.fields(), "progress": state.progress}
                if started:
                    fields["status"] = "running"
                await api.update(self.client, self.build_id, fields)
                last_progress = state.progress
            last_status = state.status
            if (
                state.status == "queued" and cancel_sent_at is None
                and time.monotonic() - queued_since > self.settings.queue_timeout
            ):  # fmt: skip
                # Nothing hangs: a build the provider never starts is withdrawn and fails.
                with contextlib.suppress(ProviderError):
                    await provider_client.cancel(self.ref)
                return "failed", (
                    f"{kind} build #{self.ref.number} never started within "
                    f"{self.settings.queue_timeout:.0f} s ({state.detail or 'queued'}); it was cancelled there"
                )
            if state.finished and not more:
                if state.status == "succeeded":
                    return "succeeded", None
                if state.status == "cancelled":
                    return "cancelled", f"the build was cancelled on {kind}" + (
                        "" if cancel_sent_at else " (not by opstui)"
                    )
                return (
                    "failed",
                    f"{kind} build #{self.ref.number} finished {state.detail or 'failed'}",
                )
            if (
                cancel_sent_at is not None
                and time.monotonic() - cancel_sent_at > self.settings.cancel_timeout
            ):
                return (
                    "cancelled",
                    f"asked {kind} to cancel; it had not stopped after {self.settings.cancel_timeout:.0f} s",
                )
            await asyncio.sleep(interval)
            interval = min(steady, interval * 1.5)


# -- a deployment run's CI/CD steps ------------------------------------------------------------


async def run_cicd_steps(
    client: Any,
    run: dict,
    sink: LogSink,
    *,
    runner_name: str,
    cancel_requested: asyncio.Event,
    settings: BuildSettings | None = None,
) -> tuple[str, str | None]:
    """Run the run's mapped jobs in order; ('succeeded', None) or the first failure."""
    steps = list((run.get("spec") or {}).get("cicd_steps") or [])
    settings = settings or BuildSettings()
    run_id = str(run["id"])
    for index, step in enumerate(steps, 1):
        if cancel_requested.is_set():
            return "cancelled", None
        name = step.get("job_name") or step.get("job_id")
        sink.system(f"CI/CD step {index} of {len(steps)}: {name}")
        try:
            build = await api.start_run_build(
                client,
                run_id,
                str(step["mapping_id"]),
                runner_name,
                settings.lease_seconds,
                step.get("parameters"),
            )
        except api.BuildsError as exc:
            return "failed", f"CI/CD step {name}: {exc}"
        execution = BuildExecution(client, build, settings=settings)
        relay = asyncio.create_task(_relay_cancel(cancel_requested, execution))
        try:
            status = await execution.execute()
        finally:
            relay.cancel()
        number = execution.ref.number
        link = f" {execution.ref.url}" if execution.ref.url else ""
        sink.system(
            f"CI/CD step {name}: build {('#' + number) if number else ''} {status}{link}".replace(
                "  ", " "
            )
        )
        if status == "cancelled" and cancel_requested.is_set():
            return "cancelled", None
        if status != "succeeded":
            row = await api.get_build(client, execution.build_id)
            reason = (row or {}).get("error") or status
            return "failed", f"CI/CD step {name} {status}: {reason}; the hosts were skipped"
    return "succeeded", None


async def _relay_cancel(event: asyncio.Event, execution: BuildExecution) -> None:
    await event.wait()
    execution.request_cancel()


# -- provider tasks: test connection, refresh jobs ---------------------------------------------


async def run_provider_task(
    client: Any,
    task: dict,
    *,
    timeout: float = 15.0,
    client_factory: Callable[..., Any] = client_for,
) -> str:
    task_id = str(task["id"])
    secrets: dict = {}
    provider_client = None
    try:
        provider = await api.provider(client, str(task["provider_id"]))
        secrets = await api.provider_secrets(client, str(task["provider_id"]))
        provider_client = client_factory(provider, secrets, timeout=timeout)
        if task["kind"] == "test":
            result = await provider_client.test_connection()
        else:
            jobs = await provider_client.list_jobs()
            summary = await api.sync_jobs(client, task_id, [j.row() for j in jobs])
            result = (
                f"ok: {len(jobs)} jobs; {summary.get('added', 0)} added, {summary.get('updated', 0)} updated, "
                f"{summary.get('vanished', 0)} vanished"
            )
        status = "succeeded"
    except (ProviderError, api.BuildsError) as exc:
        status, result = "failed", str(exc)
    except Exception as exc:  # noqa: BLE001 - one line, the runner lives on
        log.exception("provider task %s failed", task_id)
        status, result = (
            "failed",
            f"runner error: {str(exc).splitlines()[0] if str(exc) else exc!r}",
        )
    finally:
        if provider_client is not None:
            with contextlib.suppress(Exception):
                await provider_client.aclose()
    for secret in _secret_values(secrets):
        result = result.replace(secret, "***")
    await api.finish_task(client, task_id, status, result)
    return status


# -- the claim loop ----------------------------------------------------------------------------


class BuildWorker:
    """Claims standalone builds and provider tasks, like the Runner claims runs."""

    def __init__(
        self,
        client: Any,
        *,
        name: str | None = None,
        concurrency: int = 8,
        poll_interval: float = 5.0,
        expire_interval: float = 10.0,
        drain_seconds: float = 10.0,
        settings: BuildSettings | None = None,
    ) -> None:
        self.drain_seconds = drain_seconds
        self.client = client
        self.name = name or socket.gethostname()
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.expire_interval = expire_interval
        self.settings = settings or BuildSettings()
        self.held: dict[str, BuildExecution] = {}
        self._tasks: dict[str, asyncio.Task] = {}
        self.finished: dict[str, str] = {}
        self.problems: list[str] = []
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._channel: Any = None
        self.lookups = LookupCache(client)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        await self._subscribe()
        loop = asyncio.get_running_loop()
        next_expire = loop.time()
        try:
            while not self._stop.is_set():
                if loop.time() >= next_expire:
                    next_expire = loop.time() + self.expire_interval
                    with contextlib.suppress(Exception):
                        await api.expire_leases(self.client)
                # Clear first: a wake-up that arrives while claiming must not be lost.
                self._wake.clear()
                await self._claim_while_free()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._wake.wait(), min(self.poll_interval, self.expire_interval)
                    )
        finally:
            # Held builds may finish for drain_seconds; then they are cancelled on the provider.
            if self._tasks:
                await asyncio.wait(list(self._tasks.values()), timeout=self.drain_seconds)
            for execution in list(self.held.values()):
                execution.request_cancel()
            if self._tasks:
                await asyncio.wait(list(self._tasks.values()))
            await self._unsubscribe()

    async def _claim_while_free(self) -> None:
        while not self._stop.is_set():
            try:
                task = await api.claim_task(self.client, self.name)
            except Exception as exc:  # noqa: BLE001
                self._problem(f"provider task claim failed: {exc}")
                task = None
            if task is None:
                break
            self._spawn(
                "task:" + str(task["id"]),
                run_provider_task(self.client, task, timeout=self.settings.http_timeout),
            )
        while not self._stop.is_set() and len(self.held) < self.concurrency:
            want = self.concurrency - len(self.held)
            try:
                claimed = await api.claim_many(
                    self.client, self.name, self.settings.lease_seconds, want
                )
            except Exception as exc:  # noqa: BLE001 - the next wake-up or poll retries
                self._problem(f"build claim failed: {exc}")
                return
            for build in claimed:
                execution = BuildExecution(
                    self.client, build, settings=self.settings, lookups=self.lookups
                )
                self.held[execution.build_id] = execution
                self._spawn(execution.build_id, execution.execute())
            if len(claimed) < want:  # the queue is empty
                return

    def _spawn(self, key: str, coro: Any) -> None:
        async def wrapped() -> None:
            status = "failed"
            try:
                status = await coro
            except Exception as exc:  # noqa: BLE001
                self._problem(f"{key}: {exc}")
            finally:
                self.held.pop(key, None)
                self._tasks.pop(key, None)
                self.finished[key] = status
                self._wake.set()

        self._tasks[key] = asyncio.create_task(wrapped(), name=f"build:{key}")

    def _problem(self, text: str) -> None:
        self.problems.append(text)
        log.warning("%s", text)

    async def _subscribe(self) -> None:
        try:
            channel = self.client.channel(f"opstui-builds:{self.name}:{uuid.uuid4().hex[:8]}")
            # New builds wake the claim loop; updates only of this runner's builds (a cancel
            # request), not every heartbeat of every runner: each one is a Realtime message.
            channel.on_postgres_changes(
                "INSERT", schema="public", table="cicd_builds", callback=self._on_change
            )
            channel.on_postgres_changes(
                "UPDATE", schema="public", table="cicd_builds", filter=f"runner_name=eq.{self.name}",
                callback=self._on_change,
            )  # fmt: skip
            channel.on_postgres_changes(
                "INSERT",
                schema="public",
                table="cicd_provider_tasks",
                callback=lambda _payload: self._wake.set(),
            )
            await channel.subscribe()
            self._channel = channel
        except Exception as exc:  # noqa: BLE001 - polling still works
            self._problem(
                f"realtime unavailable for builds, polling every {self.poll_interval:g}s: {exc}"
            )

    async def _unsubscribe(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            with contextlib.suppress(Exception):
                await self.client.remove_channel(channel)

    def _on_change(self, payload: dict) -> None:
        data = payload.get("data", payload)
        record = data.get("record") or {}
        if record.get("status") == "queued" and not record.get("runner_id"):
            self._wake.set()
        execution = self.held.get(str(record.get("id") or ""))
        if execution is not None and record.get("cancel_requested_at"):
            execution.request_cancel()


__all__ = ["BuildExecution", "BuildSettings", "BuildWorker", "run_cicd_steps", "run_provider_task"]
