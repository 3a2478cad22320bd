"""The run's log writer: output is batched into `append_run_log` calls under a row budget.

Every row is one Realtime message to every viewer, and hosted Supabase caps
messages per project (Free 100/s, Pro 500/s), so a run writes about
`rows_per_second` rows whatever the number of hosts:

- output is buffered per (host, stream), in order;
- every `interval` (200 ms) the flusher sends, in ONE rpc call, one chunk for
  each of the longest-waiting buffers the budget allows (a token bucket of
  `rows_per_second`, one second of burst);
- so one chatty host is flushed every 200 ms, and at 50 streaming hosts each
  host waits about 5 s: latency is what the budget costs, never extra rows.

A writer whose buffer passes `max_pending` bytes waits (the SSH reader then
stops reading, and SSH flow control slows the remote), so memory stays bounded.
`close()` sends whatever is left. A failed write (e.g. the lease was lost) is
kept in `failure` and stops the sink; writers never see an exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

Writer = Callable[[list[dict]], Awaitable[object]]
Key = tuple[str | None, str]  # (host_id or None for the runner's lines, stream)


@dataclass
class _Buffer:
    parts: list[str] = field(default_factory=list)
    size: int = 0
    since: float = 0.0  # when its oldest unsent text arrived
    drained: asyncio.Event = field(default_factory=asyncio.Event)


class LogSink:
    def __init__(
        self,
        write: Writer,
        *,
        rows_per_second: float = 10.0,
        interval: float = 0.2,
        max_chunk: int = 256 * 1024,
        max_pending: int = 4 * 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._write = write
        self.rows_per_second = rows_per_second
        self.interval = interval
        self.max_chunk = max_chunk
        self.max_pending = max_pending
        self._clock = clock
        self._buffers: dict[Key, _Buffer] = {}
        self._tokens = max(1.0, rows_per_second * interval)
        self._last_refill = clock()
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()  # one append_run_log at a time: seq follows call order
        self._task: asyncio.Task | None = None
        self._closed = False
        self._last_flush = float("-inf")
        self.failure: BaseException | None = None
        self.rows = 0
        self.calls = 0
        self.bytes = 0

    # -- writing ----------------------------------------------------------------------------

    def start(self) -> LogSink:
        if self._task is None:
            self._task = asyncio.create_task(self._flush_forever(), name="run-log-sink")
        return self

    def add(self, host_id: str | None, stream: str, text: str) -> None:
        """Queue text (no waiting; see `write` for back-pressure)."""
        if not text or self.failure is not None:
            return
        buffer = self._buffers.get((host_id, stream))
        if buffer is None:
            buffer = self._buffers[(host_id, stream)] = _Buffer()
        if not buffer.size:
            buffer.since = self._clock()
        buffer.parts.append(text)
        buffer.size += len(text)
        buffer.drained.clear()
        self._wake.set()

    async def write(self, host_id: str | None, stream: str, text: str) -> None:
        """Queue text; waits while this host's stream has more than `max_pending` unsent."""
        self.add(host_id, stream, text)
        buffer = self._buffers.get((host_id, stream))
        while buffer is not None and buffer.size > self.max_pending and self.failure is None:
            await buffer.drained.wait()

    def system(self, text: str, host_id: str | None = None) -> None:
        """A line from the runner itself (stream `system`)."""
        self.add(host_id, "system", text if text.endswith("\n") else text + "\n")

    @property
    def pending_bytes(self) -> int:
        return sum(b.size for b in self._buffers.values())

    # -- flushing ---------------------------------------------------------------------------

    def _take(self, buffer: _Buffer, limit: int) -> str:
        text = "".join(buffer.parts)
        if len(text) > limit:
            cut = text.rfind("\n", 0, limit) + 1 or limit
            head, rest = text[:cut], text[cut:]
            buffer.parts, buffer.size = [rest], len(rest)
            buffer.since = self._clock()
        else:
            head = text
            buffer.parts, buffer.size = [], 0
        if buffer.size <= self.max_pending:
            buffer.drained.set()
        return head

    def _refill(self) -> None:
        now = self._clock()
        burst = max(1.0, self.rows_per_second)
        self._tokens = min(burst, self._tokens + (now - self._last_refill) * self.rows_per_second)
        self._last_refill = now

    async def _flush_forever(self) -> None:
        while not self._closed:
            if not self.pending_bytes:
                self._wake.clear()
                await self._wake.wait()
                continue
            # Leading edge: output after a quiet spell goes at once; then every interval.
            wait = self._last_flush + self.interval - self._clock()
            if wait > 0:
                await asyncio.sleep(wait)
            self._last_flush = self._clock()
            self._refill()
            rows = int(self._tokens)
            if rows >= 1:
                await asyncio.shield(self._flush(rows))  # a cancel never cuts a write in half
            else:
                await asyncio.sleep(self.interval)

    async def _flush(self, rows: int | None, limit_total: int | None = None) -> None:
        async with self._lock:
            if self.failure is not None:
                return
            waiting = sorted(
                ((key, b) for key, b in self._buffers.items() if b.size), key=lambda kb: kb[1].since
            )
            if rows is not None:
                waiting = waiting[:rows]
            chunks, total = [], 0
            for (host_id, stream), buffer in waiting:
                if limit_total is not None and total >= limit_total:
                    break
                text = self._take(buffer, self.max_chunk)
                total += len(text)
                chunks.append({"host_id": host_id, "stream": stream, "text": text})
            if not chunks:
                return
            try:
                await self._write(chunks)
            except Exception as exc:  # noqa: BLE001 - kept; the run decides what it means
                self.failure = exc
                log.warning("run log write failed: %s", exc)
                for buffer in self._buffers.values():
                    buffer.drained.set()
                return
            self._tokens -= len(chunks)
            self.calls += 1
            self.rows += len(chunks)
            self.bytes += total

    async def close(self) -> None:
        """Send everything still buffered, then stop."""
        self._closed = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while self.pending_bytes and self.failure is None:
            await self._flush(None, limit_total=2 * 1024 * 1024)


__all__ = ["LogSink"]
