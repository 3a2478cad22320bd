"""Reading a run's log: stored chunks first, then live ones, in seq order, no gap, no duplicate.

Two layers, so the TUI's log pane and the headless `runs logs --follow` agree:

`SeqMerge` is the pure merge (no I/O). Feed it chunks from anywhere, in any
order, duplicated or not; it hands back exactly the next contiguous chunks:

    merge = SeqMerge(after=0)            # seq of the last chunk already shown (0: none)
    ready = merge.add(chunks)            # -> list[LogChunk], seq = after+1, after+2, ...
    merge.missing()                      # (from_seq, to_seq) of a hole it waits on, or None

`RunLogFollower` does the I/O with supabase-py: it subscribes to inserts on
`deployment_run_logs` for the run FIRST, then pages the stored chunks by seq,
so a chunk written while it loads arrives either way and is merged once. A hole
(a live chunk that skipped ahead, Realtime that dropped a message) is filled
from REST. With `follow=True` it ends once the run is finished and every chunk
is read; a quiet 2 s poll covers a Realtime outage.

    follower = RunLogFollower(client, run_id, follow=True)
    async for batch in follower.batches():   # list[LogChunk], in seq order
        ...
    follower.run                              # the run row, kept fresh (status, progress)
    await follower.close()                    # also on break / cancel (batches() closes it)
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from opstui.runs import api

PAGE = 1000


@dataclass(frozen=True)
class LogChunk:
    seq: int
    host_id: str | None
    stream: str  # stdout | stderr | system
    text: str
    created_at: str | None = None

    @classmethod
    def from_row(cls, row: dict) -> LogChunk:
        host = row.get("host_id")
        return cls(int(row["seq"]), None if host is None else str(host), str(row.get("stream") or "stdout"),
                   str(row.get("text") or ""), row.get("created_at"))  # fmt: skip


class SeqMerge:
    """Chunks in, the next contiguous ones out; duplicates and already-shown ones dropped."""

    def __init__(self, after: int = 0) -> None:
        self.last = after  # the seq of the last chunk handed out
        self._early: dict[int, LogChunk] = {}

    def add(self, chunks) -> list[LogChunk]:
        for chunk in chunks:
            if chunk.seq > self.last:
                self._early.setdefault(chunk.seq, chunk)
        ready = []
        while self.last + 1 in self._early:
            self.last += 1
            ready.append(self._early.pop(self.last))
        return ready

    def missing(self) -> tuple[int, int] | None:
        """The hole before the earliest chunk held back, as (first, last) seq."""
        if not self._early:
            return None
        return self.last + 1, min(self._early) - 1

    @property
    def waiting(self) -> int:
        return len(self._early)


class RunLogFollower:
    # What is followed; BuildLogFollower (opstui.cicd.logstream) follows a build's log instead.
    log_table = "deployment_run_logs"
    key_column = "run_id"
    parent_table = "deployment_runs"
    what = "run"

    def __init__(self, client: Any, run_id: str, *, follow: bool = True, after: int = 0,
                 poll_interval: float = 2.0) -> None:  # fmt: skip
        self.client = client
        self.run_id = run_id
        self.follow = follow
        self.poll_interval = poll_interval
        self.merge = SeqMerge(after)
        self.run: dict | None = None
        self._live: asyncio.Queue[LogChunk | None] = asyncio.Queue()
        self._channel: Any = None
        self._finished = asyncio.Event()

    async def _subscribe(self) -> None:
        channel = self.client.channel(f"opstui-{self.what}log:{self.run_id}:{uuid.uuid4().hex[:8]}")
        channel.on_postgres_changes(
            "INSERT", schema="public", table=self.log_table,
            filter=f"{self.key_column}=eq.{self.run_id}", callback=self._on_log,
        )  # fmt: skip
        channel.on_postgres_changes(
            "UPDATE", schema="public", table=self.parent_table,
            filter=f"id=eq.{self.run_id}", callback=self._on_run,
        )  # fmt: skip
        joined = asyncio.Event()

        def on_state(state: Any, error: Exception | None) -> None:
            if str(getattr(state, "value", state)) in ("SUBSCRIBED", "CHANNEL_ERROR", "TIMED_OUT"):
                joined.set()

        await channel.subscribe(on_state)
        self._channel = channel
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(joined.wait(), 5)

    _columns = "seq,host_id,stream,text,created_at"

    async def _parent(self) -> dict | None:
        return await api.get_run(self.client, self.run_id)

    def _on_log(self, payload: dict) -> None:
        record = payload.get("data", payload).get("record") or {}
        if record.get("seq") is not None:
            self._live.put_nowait(LogChunk.from_row(record))

    def _on_run(self, payload: dict) -> None:
        record = payload.get("data", payload).get("record") or {}
        if record:
            self.run = {**(self.run or {}), **record}
            if record.get("status") in api.TERMINAL:
                self._finished.set()
                self._live.put_nowait(None)  # wake the reader

    async def _page(self, after: int, until: int | None = None) -> list[LogChunk]:
        query = (
            self.client.table(self.log_table)
            .select(self._columns)
            .eq(self.key_column, self.run_id)
            .gt("seq", after)
        )
        if until is not None:
            query = query.lte("seq", until)
        rows = await api._select(query.order("seq").limit(PAGE), f"read the {self.what}'s log")
        return [LogChunk.from_row(r) for r in rows]

    async def _stored(self) -> AsyncIterator[list[LogChunk]]:
        """Everything stored after the merge point, page by page, merged."""
        while True:
            page = await self._page(self.merge.last)
            ready = self.merge.add(page)
            if ready:
                yield ready
            if len(page) < PAGE:
                return

    async def batches(self) -> AsyncIterator[list[LogChunk]]:
        try:
            if self.follow:
                await self._subscribe()
            self.run = await self._parent()
            if self.run is None:
                raise api.RunsError(f"no {self.what} {self.run_id} (or it is not in your teams)")
            async for ready in self._stored():
                yield ready
            if not self.follow:
                return
            if self.run.get("status") in api.TERMINAL:
                self._finished.set()
            while True:
                if self._finished.is_set():
                    # The run is over: whatever is stored now is the whole log.
                    async for ready in self._stored():
                        yield ready
                    return
                try:
                    first = await asyncio.wait_for(self._live.get(), self.poll_interval)
                except TimeoutError:
                    first = None
                    fresh = await self._parent()
                    if fresh:
                        self.run = fresh
                        if fresh.get("status") in api.TERMINAL:
                            self._finished.set()
                    async for ready in self._stored():  # Realtime quiet: poll
                        yield ready
                    continue
                live = [first] if first is not None else []
                while not self._live.empty():
                    item = self._live.get_nowait()
                    if item is not None:
                        live.append(item)
                ready = self.merge.add(live)
                hole = self.merge.missing()
                if hole is not None:  # fill it from the table, then everything held back follows
                    ready += self.merge.add(await self._page(hole[0] - 1, hole[1]))
                if ready:
                    yield ready
        finally:
            await self.close()

    async def __aiter__(self) -> AsyncIterator[LogChunk]:
        async for batch in self.batches():
            for chunk in batch:
                yield chunk

    async def close(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            with contextlib.suppress(Exception):
                await self.client.remove_channel(channel)


__all__ = ["LogChunk", "RunLogFollower", "SeqMerge"]
