"""An interactive PTY shell on a target: the interface the terminal widget builds on.

    session = await PtySession.open(pool, target, cols=120, rows=40)
    async for chunk in session:        # raw bytes from the remote terminal (stdout+stderr)
        emulator.feed(chunk)
    session.write(b"ls\\r")            # keystrokes, as bytes
    session.resize(132, 43)            # window-change request
    await session.close()              # or the remote shell exits
    session.exit_status                # int | None (None: still open, killed or dropped)
    session.closed                     # bool

Stable contract:
- `open(pool, target, *, cols=80, rows=24, term_type="xterm-256color", audit=None)`
  raises `SshError` (one line) if the host cannot be reached/authenticated.
- Iterating yields `bytes` chunks until the channel closes; it ends cleanly on
  remote exit, `close()` or a dropped connection (`disconnected` then says why).
- `write(data: bytes)` never blocks (asyncssh buffers; back-pressure is the
  remote's business); writes after close are ignored.
- `resize(cols, rows)` is cheap; call it on every widget resize.
- With `audit`, one 'session' row is recorded at close (start time, duration,
  exit status).
Windows targets get the same interface (OpenSSH for Windows allocates a ConPTY).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncssh

from opstui.ssh.errors import SshError, classify
from opstui.ssh.exec import AuditRecord, AuditSink
from opstui.ssh.pool import ConnectionPool
from opstui.ssh.target import SshTarget


class PtySession:
    def __init__(
        self, target: SshTarget, process: asyncssh.SSHClientProcess, audit: AuditSink | None
    ) -> None:
        self.target = target
        self._process = process
        self._audit = audit
        self._started = time.monotonic()
        self._started_at = datetime.now(UTC)
        self._closed = False
        self._recorded = False
        self.disconnected: str | None = None

    @classmethod
    async def open(
        cls,
        pool: ConnectionPool,
        target: SshTarget,
        *,
        cols: int = 80,
        rows: int = 24,
        term_type: str = "xterm-256color",
        audit: AuditSink | None = None,
    ) -> PtySession:
        conn = await pool.get(target)
        try:
            process = await conn.create_process(
                term_type=term_type, term_size=(cols, rows), encoding=None, request_pty="force"
            )
        except SshError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise classify(exc, target) from None
        return cls(target, process, audit)

    @property
    def exit_status(self) -> int | None:
        return self._process.exit_status

    @property
    def closed(self) -> bool:
        return self._closed

    def write(self, data: bytes) -> None:
        if self._closed or self._process.stdin.is_closing():
            return
        with contextlib.suppress(Exception):
            self._process.stdin.write(data)

    def resize(self, cols: int, rows: int) -> None:
        if not self._closed:
            with contextlib.suppress(Exception):
                self._process.change_terminal_size(max(1, cols), max(1, rows))

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._read()

    async def _read(self) -> AsyncIterator[bytes]:
        try:
            while True:
                try:
                    data = await self._process.stdout.read(65536)
                except asyncssh.Error as exc:
                    self.disconnected = str(classify(exc, self.target))
                    break
                if not data:
                    break
                yield data
        finally:
            await self._finish()

    async def close(self) -> None:
        if not self._closed:
            self._process.close()
        await self._finish()

    async def _finish(self) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._process.wait_closed(), 2)
        if self._audit is not None and not self._recorded:
            self._recorded = True
            record = AuditRecord(
                self.target, "session", None, self.exit_status, self._started_at,
                int((time.monotonic() - self._started) * 1000),
            )  # fmt: skip
            with contextlib.suppress(Exception):
                await asyncio.shield(self._audit(record))
