"""Connections reused per host, with connect and idle timeouts.

`async with pool.connection(target) as conn:` borrows the host's connection
(opening it once, even when many tasks ask at the same time); a connection
unused for `idle_timeout` seconds is closed by a reaper task; a dead one is
replaced on the next borrow. `await pool.close()` closes everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncssh

from opstui.ssh.connection import SshSettings, connect
from opstui.ssh.target import SshTarget


@dataclass
class _Entry:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    conn: asyncssh.SSHClientConnection | None = None
    users: int = 0
    last_used: float = field(default_factory=time.monotonic)


class ConnectionPool:
    def __init__(
        self,
        settings: SshSettings | None = None,
        *,
        idle_timeout: float = 300.0,
        clock=time.monotonic,
    ) -> None:
        self.settings = settings or SshSettings()
        self.idle_timeout = idle_timeout
        self._clock = clock
        self._entries: dict[tuple, _Entry] = {}
        self._reaper: asyncio.Task | None = None
        self._closed = False

    def __len__(self) -> int:
        return sum(1 for e in self._entries.values() if _alive(e.conn))

    async def get(self, target: SshTarget) -> asyncssh.SSHClientConnection:
        """The open connection for `target` (connecting if needed). Raises SshError."""
        if self._closed:
            raise RuntimeError("the connection pool is closed")
        entry = self._entries.setdefault(target.key, _Entry())
        entry.last_used = self._clock()
        if _alive(entry.conn):
            return entry.conn  # type: ignore[return-value]
        async with entry.lock:
            if not _alive(entry.conn):
                entry.conn = await connect(target, self.settings)
            entry.last_used = self._clock()
            self._ensure_reaper()
            return entry.conn  # type: ignore[return-value]

    @contextlib.asynccontextmanager
    async def connection(self, target: SshTarget) -> AsyncIterator[asyncssh.SSHClientConnection]:
        entry = self._entries.setdefault(target.key, _Entry())
        entry.users += 1
        try:
            yield await self.get(target)
        finally:
            entry.users -= 1
            entry.last_used = self._clock()

    def discard(self, target: SshTarget) -> None:
        """Forget (and close) the target's connection, e.g. after it dropped."""
        entry = self._entries.get(target.key)
        if entry and entry.conn is not None:
            entry.conn.close()
            entry.conn = None

    def reap(self) -> int:
        """Close connections idle for longer than idle_timeout; returns how many."""
        now = self._clock()
        closed = 0
        for entry in self._entries.values():
            if entry.conn is None:
                continue
            if not _alive(entry.conn):
                entry.conn = None
            elif entry.users == 0 and now - entry.last_used >= self.idle_timeout:
                entry.conn.close()
                entry.conn = None
                closed += 1
        return closed

    def _ensure_reaper(self) -> None:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.create_task(self._reap_forever(), name="ssh-pool-reaper")

    async def _reap_forever(self) -> None:
        interval = max(0.05, min(self.idle_timeout / 2, 30.0))
        while True:
            await asyncio.sleep(interval)
            self.reap()
            if not any(e.conn is not None for e in self._entries.values()):
                self._reaper = None
                return

    async def close(self) -> None:
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None
        conns = [e.conn for e in self._entries.values() if e.conn is not None]
        self._entries.clear()
        for conn in conns:
            conn.close()
        for conn in conns:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.wait_closed(), 2)

    async def __aenter__(self) -> ConnectionPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _alive(conn: asyncssh.SSHClientConnection | None) -> bool:
    return conn is not None and not conn.is_closed()
