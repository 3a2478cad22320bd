"""One deployment run, live: its row, its host rows and its log, through supabase-py.

`RunWatch(client, run_id).updates()` yields `RunUpdate`s for a viewer (the
TUI's run view). The order of work is what keeps the log whole:

1. subscribe first (the run row, its host rows, its log inserts), and wait
   until the server confirms the subscription;
2. then read the snapshot: the run, its hosts, and the stored log in `seq`
   order (only its last `tail_bytes` if it is bigger: the viewer's scrollback
   is capped anyway, and a note says what was left out);
3. then hand out the live chunks that queued up meanwhile, through the same
   `SeqMerge` as `runs logs --follow` (opstui.runs.logstream): chunks the
   snapshot already had are dropped, and a live chunk that skips a `seq` (a
   message lost on the way, or a reconnect) is held back while the missing ones
   are read from the table. So the log has no gap and no duplicate (AWX #13059).

After a rejoin the run and hosts are re-read and the log is backfilled from
the last `seq` seen. No Textual here; the UI consumes the updates in a worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from opstui.runs.logstream import LogChunk, SeqMerge

log = logging.getLogger(__name__)

PAGE_ROWS = 200  # log chunks per REST page (a chunk is at most 256 KB, usually a few KB)
TAIL_BYTES = 8 * 1024 * 1024  # stored log read at open; older output is left to `runs logs`
TAIL_FIRST_ROWS = 8  # the first page of the tail, read newest first
LIVE_BATCH = 200  # live chunks handed out in one update at most
POLL_SECONDS = 5.0  # a running run silent this long is re-read (Realtime may have dropped)


class RunWatchError(Exception):
    """One line: the run cannot be read (gone, not visible, or the server is unreachable)."""


@dataclass(frozen=True)
class RunUpdate:
    """What changed. `hosts` holds every host row when `snapshot` is true."""

    run: dict[str, Any] | None = None
    hosts: tuple[dict[str, Any], ...] = ()
    chunks: tuple[LogChunk, ...] = ()
    snapshot: bool = False
    note: str = ""


_RESYNC = object()  # queued when the channel (re)joins


class RunWatch:
    _generations = itertools.count(1)

    def __init__(
        self,
        client: Any,
        run_id: str,
        *,
        page_rows: int | None = None,
        tail_bytes: int | None = None,
    ) -> None:
        self.client = client
        self.run_id = run_id
        self.page_rows = page_rows or PAGE_ROWS
        self.tail_bytes = tail_bytes or TAIL_BYTES
        self.merge = SeqMerge(after=0)  # seqs start at 1
        self.run: dict[str, Any] | None = None  # the latest run row seen
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._channel: Any = None
        self._joined = asyncio.Event()
        self._failed: str | None = None

    # -- the stream -------------------------------------------------------------------------

    async def updates(self) -> AsyncIterator[RunUpdate]:
        try:
            await self._subscribe()
            yield await self._snapshot()
            async for update in self._stored_log(first=True):
                yield update
            while True:
                try:
                    item = await asyncio.wait_for(self._queue.get(), self._quiet_timeout())
                except TimeoutError:
                    item = _RESYNC  # quiet while the run is going: re-read, to be sure
                try:
                    if item is _RESYNC:
                        if not self._subscribed():
                            # A channel the server closed is gone for good: a new one.
                            await self.close()
                            await self._subscribe()
                        yield await self._snapshot()
                        async for update in self._stored_log(first=False):
                            yield update
                    else:
                        async for update in self._live(item):
                            yield update
                except RunWatchError as exc:
                    # The server is away: what we miss is re-read once it is back.
                    log.debug("run %s: reading failed, retrying: %s", self.run_id, exc)
                    self._queue_retry()
        finally:
            await self.close()

    def _queue_retry(self) -> None:
        asyncio.get_running_loop().call_later(POLL_SECONDS, self._queue.put_nowait, _RESYNC)

    def _quiet_timeout(self) -> float | None:
        status = (self.run or {}).get("status")
        return POLL_SECONDS if status in ("queued", "running") else None

    def _subscribed(self) -> bool:
        channel = self._channel
        realtime = getattr(self.client, "realtime", None)
        if channel is None or realtime is None:
            return False
        return bool(realtime.is_connected) and realtime.channels.get(channel.topic) is channel

    async def close(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            with contextlib.suppress(Exception):
                await self.client.remove_channel(channel)

    # -- realtime ---------------------------------------------------------------------------

    async def _subscribe(self) -> None:
        topic = f"opstui-run:{self.run_id}:{next(self._generations)}:{uuid.uuid4().hex[:8]}"
        channel = self.client.channel(topic)
        for table, event, column in (
            ("deployment_runs", "*", "id"),
            ("deployment_run_hosts", "*", "run_id"),
            ("deployment_run_logs", "INSERT", "run_id"),
        ):
            channel.on_postgres_changes(
                event,
                schema="public",
                table=table,
                filter=f"{column}=eq.{self.run_id}",
                callback=self._on_change,
            )
        self._channel = channel
        self._joined = asyncio.Event()
        self._failed = None
        joined_once = False

        def on_state(state: Any, error: Exception | None) -> None:
            nonlocal joined_once
            name = str(getattr(state, "value", state))
            if name == "SUBSCRIBED":
                if joined_once:
                    self._queue.put_nowait(_RESYNC)  # changes while away were not sent
                joined_once = True
                self._joined.set()
            elif name in ("CHANNEL_ERROR", "TIMED_OUT") and not joined_once:
                self._failed = str(error or name.lower())
                self._joined.set()

        try:
            await channel.subscribe(on_state)
            await asyncio.wait_for(self._joined.wait(), timeout=15)
        except (TimeoutError, OSError) as exc:
            raise RunWatchError(f"cannot follow the run live: {exc or 'no answer'}") from None
        if self._failed:
            raise RunWatchError(f"cannot follow the run live: {self._failed}")

    def _on_change(self, payload: dict[str, Any]) -> None:
        data = payload.get("data", payload)
        self._queue.put_nowait(data)

    # -- snapshot ---------------------------------------------------------------------------

    async def _select(self, query: Any) -> list[dict[str, Any]]:
        import httpx
        from postgrest.exceptions import APIError

        try:
            return list((await query.execute()).data or [])
        except APIError as exc:
            raise RunWatchError(exc.message or "the server refused to read the run") from None
        except (OSError, httpx.HTTPError) as exc:
            raise RunWatchError(f"cannot reach the server: {exc or type(exc).__name__}") from None

    async def _snapshot(self) -> RunUpdate:
        table = self.client.table
        run_rows, hosts = await asyncio.gather(
            self._select(table("deployment_runs").select("*").eq("id", self.run_id).limit(1)),
            self._select(
                table("deployment_run_hosts")
                .select("*")
                .eq("run_id", self.run_id)
                .order("batch")
                .order("position")
            ),
        )
        if not run_rows:
            raise RunWatchError("this run is gone, or you may not see it")
        self.run = run_rows[0]
        return RunUpdate(run=run_rows[0], hosts=tuple(hosts), snapshot=True)

    def _log_query(self) -> Any:
        return self.client.table("deployment_run_logs").select(
            "seq, host_id, stream, text, created_at"
        ).eq("run_id", self.run_id)

    async def _stored_log(self, *, first: bool) -> AsyncIterator[RunUpdate]:
        """The stored log after the merge point (its tail only, on first open of a big log)."""
        if first:
            tail, skipped = await self._tail()
            if skipped and tail:
                start = tail[0].seq
                self.merge = SeqMerge(after=start - 1)
                yield RunUpdate(
                    note=f"… {start - 1} earlier log chunks not loaded "
                    f"(`opstui runs logs {self.run_id}` prints them all)"
                )
            for start in range(0, len(tail), self.page_rows):
                ready = self.merge.add(tail[start : start + self.page_rows])
                if ready:
                    yield RunUpdate(chunks=tuple(ready))
        async for update in self._backfill():
            yield update

    async def _page(self, after: int, until: int | None = None) -> list[LogChunk]:
        query = self._log_query().gt("seq", after)
        if until is not None:
            query = query.lte("seq", until)
        rows = await self._select(query.order("seq").limit(self.page_rows))
        return [LogChunk.from_row(row) for row in rows]

    async def _tail(self) -> tuple[list[LogChunk], bool]:
        """The newest chunks, up to `tail_bytes`, oldest first; and whether older ones exist."""
        chunks: list[LogChunk] = []
        size = 0
        before: int | None = None
        # Pages grow from a few rows: a chunk can be 256 KB, and a full page of those
        # would fetch far more than the tail to find where the tail starts.
        rows = min(TAIL_FIRST_ROWS, self.page_rows)
        while True:
            query = self._log_query().order("seq", desc=True).limit(rows)
            if before is not None:
                query = query.lt("seq", before)
            page = [LogChunk.from_row(row) for row in await self._select(query)]
            for chunk in page:
                if chunks and size + len(chunk.text) > self.tail_bytes:
                    chunks.reverse()
                    return chunks, True
                chunks.append(chunk)
                size += len(chunk.text)
            if len(page) < rows:
                chunks.reverse()
                return chunks, False
            before = page[-1].seq
            rows = min(rows * 2, self.page_rows)

    async def _backfill(self) -> AsyncIterator[RunUpdate]:
        """Every stored chunk after the merge point, page by page."""
        while True:
            page = await self._page(self.merge.last)
            ready = self.merge.add(page)
            if ready:
                yield RunUpdate(chunks=tuple(ready))
            if len(page) < self.page_rows:
                return

    # -- live -------------------------------------------------------------------------------

    async def _live(self, first: dict[str, Any]) -> AsyncIterator[RunUpdate]:
        """One change, plus whatever else is already queued, as few updates as possible."""
        items = [first]
        while not self._queue.empty() and len(items) < LIVE_BATCH:
            item = self._queue.get_nowait()
            if item is _RESYNC:
                self._queue.put_nowait(_RESYNC)  # handled after this batch, in order
                break
            items.append(item)
        run: dict[str, Any] | None = None
        hosts: dict[str, dict[str, Any]] = {}
        live: list[LogChunk] = []
        for data in items:
            table = data.get("table")
            record = data.get("record") or {}
            if not record:
                continue
            if table == "deployment_runs":
                run = self.run = record
            elif table == "deployment_run_hosts":
                hosts[record.get("host_id")] = record
            elif table == "deployment_run_logs" and record.get("seq") is not None:
                live.append(LogChunk.from_row(record))
        ready = self.merge.add(live)
        hole = self.merge.missing()
        if hole is not None:
            # A chunk skipped a seq: the table has every chunk; read the hole from it,
            # and whatever was held back behind the hole follows.
            ready += self.merge.add(await self._page(hole[0] - 1, hole[1]))
        if run is not None or hosts or ready:
            yield RunUpdate(run=run, hosts=tuple(hosts.values()), chunks=tuple(ready))
        if self.merge.missing() is not None:
            async for update in self._backfill():  # a hole wider than one page
                yield update
