"""Shared parts of the FAKE CI/CD servers (protocol fakes for tests and the demo).

These are not Jenkins, GitHub or GitLab: they are small aiohttp servers on 127.0.0.1 that
answer the handful of endpoints opstui uses, with the real services' quirks, and can be told
to misbehave (`Faults`). A build is a script of log lines on a clock: queued for
`queue_seconds`, then one line every `line_seconds`, then a result.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

LOOPBACK = "127.0.0.1"


@dataclass
class Faults:
    """What a fake does wrong, settable per test while it runs."""

    delay: float = 0.0  # slow: seconds added to every request
    status: int | None = None  # answer every request with this status (401, 403, 404, 500, 429)
    drop: bool = False  # close the connection without answering
    fail_builds: bool = False  # builds end in failure
    never_end: bool = False  # builds run (and log) forever
    never_start: bool = False  # builds stay queued forever (Jenkins: no `executable`)
    retry_after: float | None = None  # with status 429: the Retry-After header
    times: int | None = None  # apply `status`/`drop` this many times only (None: always)

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]


@dataclass
class FakeBuild:
    """One build on a fake's clock."""

    id: int
    job: str
    lines: list[str]
    parameters: dict[str, Any]
    queue_seconds: float
    line_seconds: float
    fail: bool
    never_end: bool
    never_start: bool
    created: float = field(default_factory=time.monotonic)
    created_wall: float = field(default_factory=time.time)
    cancelled_at: float | None = None

    @property
    def start(self) -> float:
        return self.created + self.queue_seconds

    def _end(self) -> float:
        return self.start + max(1, len(self.lines)) * self.line_seconds

    def phase(self, now: float | None = None) -> str:
        """queued | running | succeeded | failed | cancelled"""
        now = time.monotonic() if now is None else now
        if self.cancelled_at is not None and self.cancelled_at <= now:
            return "cancelled"
        if self.never_start or now < self.start:
            return "queued"
        if self.never_end or now < self._end():
            return "running"
        return "failed" if self.fail else "succeeded"

    def started(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        if self.never_start:
            return False
        if self.cancelled_at is not None and self.cancelled_at < self.start:
            return False
        return now >= self.start

    def log_lines(self, now: float | None = None) -> list[str]:
        """The lines printed so far (each ends with a newline)."""
        now = time.monotonic() if now is None else now
        if not self.started(now):
            return []
        until = now if self.cancelled_at is None else min(now, self.cancelled_at)
        count = int((until - self.start) / self.line_seconds) + 1
        if self.never_end:
            out = list(self.lines)
            out += [f"still working ({i})" for i in range(max(0, count - len(self.lines)))]
            out = out[:count]
        else:
            out = self.lines[: min(count, len(self.lines))]
        phase = self.phase(now)
        if phase == "cancelled":
            out = out + ["Aborted by user"]
        elif phase == "failed":
            out = out + ["ERROR: step exited with code 1"]
        return [line + "\n" for line in out]

    def log_text(self, now: float | None = None) -> str:
        return "".join(self.log_lines(now))

    def cancel(self) -> None:
        if self.cancelled_at is None and self.phase() in ("queued", "running"):
            self.cancelled_at = time.monotonic()


class FakeServer:
    """An aiohttp app on 127.0.0.1 with the shared fault middleware."""

    label = "FAKE CI server"

    def __init__(self, *, queue_seconds: float = 0.3, line_seconds: float = 0.05) -> None:
        self.faults = Faults()
        self.queue_seconds = queue_seconds
        self.line_seconds = line_seconds
        self.builds: dict[int, FakeBuild] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) seen, for tests
        self._next_id = 1
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.app = web.Application(middlewares=[self._middleware])
        self.routes(self.app.router)

    def routes(self, router: web.UrlDispatcher) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    async def start(self, port: int = 0) -> FakeServer:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, LOOPBACK, port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def new_build(self, job: str, lines: list[str], parameters: dict[str, Any]) -> FakeBuild:
        build = FakeBuild(
            id=self._next_id,
            job=job,
            lines=lines,
            parameters=parameters,
            queue_seconds=self.queue_seconds,
            line_seconds=self.line_seconds,
            fail=self.faults.fail_builds or str(parameters.get("FAIL", "")).lower() == "true",
            never_end=self.faults.never_end,
            never_start=self.faults.never_start,
        )
        self._next_id += 1
        self.builds[build.id] = build
        return build

    def _take_fault(self) -> bool:
        if self.faults.times is None:
            return True
        if self.faults.times <= 0:
            return False
        self.faults.times -= 1
        return True

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        if self.faults.delay:
            await asyncio.sleep(self.faults.delay)
        if self.faults.drop and self._take_fault():
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError  # aiohttp drops the request quietly
        if self.faults.status and self._take_fault():
            headers = {}
            if self.faults.retry_after is not None:
                headers["Retry-After"] = str(int(self.faults.retry_after))
            return web.json_response(
                {"message": f"fault injected: {self.faults.status}"},
                status=self.faults.status,
                headers=headers,
            )
        response = await handler(request)
        response.headers["X-Fake-CI"] = self.label  # every answer says it comes from a fake
        return response


def token() -> str:
    return secrets.token_hex(8)


DEFAULT_SCRIPT = [
    "Checking out revision 3f9c2e1 (main)",
    "Resolving dependencies",
    "Compiling 214 files",
    "Running unit tests: 1,284 passed",
    "Packaging artifact app-3f9c2e1.tar.gz",
    "Uploading artifact (12.4 MB)",
]
