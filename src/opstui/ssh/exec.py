"""Run one command on many hosts: bounded concurrency, streamed per-host output.

    run = run_command(pool, targets, "uptime", concurrency=32)
    async for event in run:            # or: async for batch in run.batches()
        ...                            # HostStarted / Output / HostFinished / RunFinished
    run.cancel()                       # any time; running hosts finish as 'cancelled'

Events (frozen dataclasses; `host` is the target's name, unique within a run):

- `HostStarted(host, target)`
- `Output(host, stream, text)`: stream is 'stdout' or 'stderr'; `text` holds one
  or more complete lines (a final partial line comes at end of output), decoded
  as UTF-8 with replacement. Order is preserved per host and per stream.
- `HostFinished(host, status, exit_status, duration, error, error_kind, dropped_bytes)`:
  status is 'ok' (exit 0) | 'failed' (non-zero exit, signal, dropped mid-command)
  | 'unreachable' (never connected/authenticated) | 'cancelled'. `error` is one line.
- `RunFinished(summary)`: always the last event.

Back-pressure: events go through a bounded queue (`queue_size` events of at most
`chunk_size` characters), so a consumer that falls behind slows the readers, and
SSH flow control slows the remote. `batches()` hands over everything already
queued at once, with adjacent Output of the same host/stream merged, so a UI
renders once per batch. Each host's result keeps only the last `keep_bytes` of
each stream (`HostResult.stdout/stderr`), so memory stays bounded at any rate.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncssh

from opstui.ssh.errors import SshError, classify
from opstui.ssh.pool import ConnectionPool
from opstui.ssh.target import SshTarget


@dataclass(frozen=True)
class HostStarted:
    host: str
    target: SshTarget


@dataclass(frozen=True)
class Output:
    host: str
    stream: str  # 'stdout' | 'stderr'
    text: str


@dataclass(frozen=True)
class HostFinished:
    host: str
    status: str  # 'ok' | 'failed' | 'unreachable' | 'cancelled'
    exit_status: int | None
    duration: float  # seconds
    error: str | None = None
    error_kind: str | None = None
    dropped_bytes: int = 0  # output not kept in HostResult (beyond keep_bytes)


@dataclass(frozen=True)
class Summary:
    succeeded: tuple[str, ...]
    failed: tuple[str, ...]
    unreachable: tuple[str, ...]
    cancelled: tuple[str, ...]
    duration: float

    @property
    def ok(self) -> bool:
        return not (self.failed or self.unreachable or self.cancelled)

    def line(self) -> str:
        parts = [f"{len(self.succeeded)} succeeded", f"{len(self.failed)} failed",
                 f"{len(self.unreachable)} unreachable"]  # fmt: skip
        if self.cancelled:
            parts.append(f"{len(self.cancelled)} cancelled")
        return ", ".join(parts) + f" in {self.duration:.2f}s"


@dataclass(frozen=True)
class RunFinished:
    summary: Summary


Event = HostStarted | Output | HostFinished | RunFinished


@dataclass(frozen=True)
class AuditRecord:
    """What audit.py stores for each command or session."""

    target: SshTarget
    kind: str  # 'command' | 'session'
    command: str | None
    exit_code: int | None
    started_at: datetime
    duration_ms: int


AuditSink = Callable[[AuditRecord], Awaitable[None]]


class _Tail:
    """The last `limit` bytes of a stream."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.buf = bytearray()
        self.dropped = 0

    def add(self, data: bytes) -> None:
        self.buf += data
        excess = len(self.buf) - self.limit
        if excess > 0:
            del self.buf[:excess]
            self.dropped += excess


@dataclass
class HostResult:
    target: SshTarget
    status: str = "pending"
    exit_status: int | None = None
    duration: float = 0.0
    error: str | None = None
    error_kind: str | None = None
    stdout_tail: _Tail | None = field(default=None, repr=False)
    stderr_tail: _Tail | None = field(default=None, repr=False)

    @property
    def stdout(self) -> str:
        return bytes(self.stdout_tail.buf).decode("utf-8", "replace") if self.stdout_tail else ""

    @property
    def stderr(self) -> str:
        return bytes(self.stderr_tail.buf).decode("utf-8", "replace") if self.stderr_tail else ""


def unique_names(targets: Sequence[SshTarget]) -> list[str]:
    names: list[str] = []
    seen: dict[str, int] = {}
    for t in targets:
        base = t.name or t.host
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
    return names


class ExecRun:
    def __init__(
        self,
        pool: ConnectionPool,
        targets: Sequence[SshTarget],
        command: str,
        *,
        concurrency: int = 32,
        timeout: float | None = None,
        keep_bytes: int = 256 * 1024,
        chunk_size: int = 64 * 1024,
        queue_size: int = 256,
        audit: AuditSink | None = None,
    ) -> None:
        self.pool = pool
        self.command = command
        self.timeout = timeout
        self.keep_bytes = keep_bytes
        self.chunk_size = chunk_size
        self.audit = audit
        self.audit_errors: list[str] = []
        names = unique_names(targets)
        self.results: dict[str, HostResult] = {
            n: HostResult(t) for n, t in zip(names, targets, strict=True)
        }
        self._sem = asyncio.Semaphore(max(1, concurrency))
        self._queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=max(2, queue_size))
        self._tasks: dict[str, asyncio.Task] = {}
        self._main: asyncio.Task | None = None
        self._done = False
        self._started = 0.0
        self.summary: Summary | None = None

    def start(self) -> ExecRun:
        if self._main is None:
            self._started = time.monotonic()
            self._main = asyncio.create_task(self._run(), name="ssh-exec")
        return self

    def cancel(self) -> None:
        """Stop every host that has not finished; the run still ends with RunFinished."""
        for task in self._tasks.values():
            task.cancel()

    async def wait(self) -> Summary:
        """Drain the events (if nobody else does) and return the summary."""
        async for _ in self:
            pass
        assert self.summary is not None
        return self.summary

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._events()

    async def _events(self) -> AsyncIterator[Event]:
        self.start()
        while not self._done:
            event = await self._queue.get()
            if isinstance(event, RunFinished):
                self._done = True
            yield event

    async def batches(self, max_events: int = 1024) -> AsyncIterator[list[Event]]:
        """Everything queued so far (at least one event), adjacent output merged."""
        self.start()
        while not self._done:
            batch = [await self._queue.get()]
            while len(batch) < max_events and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            if isinstance(batch[-1], RunFinished):
                self._done = True
            yield _coalesce(batch)

    async def _run(self) -> None:
        for name, result in self.results.items():
            self._tasks[name] = asyncio.create_task(
                self._host(name, result.target), name=f"ssh-exec:{name}"
            )
        if self._tasks:
            await asyncio.wait(self._tasks.values())
        by_status: dict[str, list[str]] = {
            "ok": [],
            "failed": [],
            "unreachable": [],
            "cancelled": [],
        }
        for name, result in self.results.items():
            by_status.setdefault(result.status, []).append(name)
        self.summary = Summary(
            tuple(by_status["ok"]), tuple(by_status["failed"]), tuple(by_status["unreachable"]),
            tuple(by_status["cancelled"]), time.monotonic() - self._started,
        )  # fmt: skip
        await self._queue.put(RunFinished(self.summary))

    async def _host(self, name: str, target: SshTarget) -> None:
        result = self.results[name]
        started = time.monotonic()
        started_at = datetime.now(UTC)
        connected = False
        try:
            async with self._sem:
                await self._queue.put(HostStarted(name, target))
                started = time.monotonic()
                started_at = datetime.now(UTC)
                async with self.pool.connection(target) as conn:
                    connected = True
                    async with asyncio.timeout(self.timeout):
                        await self._execute(name, target, conn, result)
        except asyncio.CancelledError:
            result.status, result.error = "cancelled", f"{name}: cancelled"
        except TimeoutError:
            result.status, result.error_kind = "failed", "timeout"
            result.error = f"{name}: command timed out after {self.timeout:g}s"
        except Exception as exc:  # noqa: BLE001 - every failure becomes one line for this host
            error = classify(exc, target)
            if connected and error.kind in ("disconnected", "unreachable"):
                self.pool.discard(target)
            if connected and error.connection_failed and error.kind != "timeout":
                error.kind = "disconnected"
            result.status = (
                "unreachable" if (not connected and error.connection_failed) else "failed"
            )
            result.error, result.error_kind = str(error), error.kind
        result.duration = time.monotonic() - started
        dropped = sum(t.dropped for t in (result.stdout_tail, result.stderr_tail) if t)
        event = HostFinished(
            name,
            result.status,
            result.exit_status,
            result.duration,
            result.error,
            result.error_kind,
            dropped,
        )
        await _put_uncancellable(self._queue, event)
        if self.audit is not None and connected:
            record = AuditRecord(
                target,
                "command",
                self.command,
                result.exit_status,
                started_at,
                int(result.duration * 1000),
            )
            try:
                await asyncio.shield(self.audit(record))
            except Exception as exc:  # noqa: BLE001 - reported, never fatal for the command
                self.audit_errors.append(f"{name}: audit not recorded: {exc}")

    async def _execute(
        self, name: str, target: SshTarget, conn: asyncssh.SSHClientConnection, result: HostResult
    ) -> None:
        result.stdout_tail = _Tail(self.keep_bytes)
        result.stderr_tail = _Tail(self.keep_bytes)
        process = await conn.create_process(target.remote_command(self.command), encoding=None)
        try:
            process.stdin.write_eof()
            await asyncio.gather(
                self._pump(name, "stdout", process.stdout, result.stdout_tail),
                self._pump(name, "stderr", process.stderr, result.stderr_tail),
            )
            await process.wait_closed()
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                process.send_signal("TERM")
            process.close()
            raise
        result.exit_status = process.exit_status
        if process.exit_status is None:
            if process.exit_signal:
                signal_name = process.exit_signal[0]
                result.status, result.error_kind = "failed", "error"
                result.error = f"{name}: killed by signal {signal_name}"
                return
            raise asyncssh.ConnectionLost("the connection dropped mid-command")
        result.status = "ok" if process.exit_status == 0 else "failed"
        if result.status == "failed":
            result.error = f"{name}: exit status {process.exit_status}"
            result.error_kind = "exit_status"

    async def _pump(self, name: str, stream: str, reader: asyncssh.SSHReader, tail: _Tail) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        pending = ""
        while True:
            data = await reader.read(self.chunk_size)
            if not data:
                break
            tail.add(data)
            text = pending + decoder.decode(data)
            cut = text.rfind("\n") + 1
            if cut == 0 and len(text) < self.chunk_size:
                pending = text
                continue
            if cut == 0:
                cut = len(text)
            pending = text[cut:]
            await self._queue.put(Output(name, stream, text[:cut]))
        text = pending + decoder.decode(b"", final=True)
        if text:
            await self._queue.put(Output(name, stream, text))


async def _put_uncancellable(queue: asyncio.Queue, event: Event) -> None:
    try:
        queue.put_nowait(event)
    except asyncio.QueueFull:
        await asyncio.shield(queue.put(event))


def _coalesce(batch: list[Event]) -> list[Event]:
    merged: list[Event] = []
    parts: list[str] = []  # texts of the Output being merged (joined once: no quadratic copies)
    for event in batch:
        last = merged[-1] if merged else None
        if (
            isinstance(event, Output)
            and isinstance(last, Output)
            and (last.host, last.stream) == (event.host, event.stream)
        ):
            parts.append(event.text)
            continue
        if parts and isinstance(last, Output):
            merged[-1] = Output(last.host, last.stream, "".join(parts))
        parts = [event.text] if isinstance(event, Output) else []
        merged.append(event)
    if parts and isinstance(merged[-1], Output) and len(parts) > 1:
        last = merged[-1]
        merged[-1] = Output(last.host, last.stream, "".join(parts))
    return merged


def run_command(
    pool: ConnectionPool, targets: Sequence[SshTarget], command: str, **kwargs
) -> ExecRun:
    """Start `command` on every target; iterate the returned run for events."""
    return ExecRun(pool, targets, command, **kwargs).start()


__all__ = [
    "AuditRecord", "AuditSink", "Event", "ExecRun", "HostFinished", "HostResult", "HostStarted",
    "Output", "RunFinished", "SshError", "Summary", "run_command",
]  # fmt: skip
