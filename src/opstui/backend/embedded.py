"""The embedded backend as a library: PostgreSQL + schema + demo data + gateway.

`opstui serve` and (later) the TUI both use `EmbeddedBackend`; tests start one
per session. It is a library first and a command second.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opstui import locations
from opstui.backend.postgres import PostgresCluster

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
PORT_FILE = "gateway-port"  # `opstui serve`'s port, kept per data directory


class PortInUse(OSError):
    """The gateway's port is taken (one line, says what to do)."""


@dataclass(frozen=True)
class BackendInfo:
    """What a client needs to talk to the backend (the `serve --json` line)."""

    url: str
    anon_key: str
    service_role_key: str
    db_url: str
    users: list[dict[str, Any]] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)

    def public_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("notices")
        return data


@dataclass
class EmbeddedBackend:
    """Start with `await backend.start()`, stop with `await backend.stop()` (or `async with`)."""

    data_dir: Path | None = None
    ephemeral: bool = False
    port: int = 0
    seed_demo: bool = True
    demo_now: datetime | None = None
    access_token_ttl: int = 3600
    # Keep the gateway's port in the data directory (`opstui serve`), so a saved profile
    # keeps working; an explicit `port` overrides it for that run.
    keep_port: bool = False
    # Seed queued runs of two lab deployments, for a runner to pick up (TUI, serve).
    demo_live_runs: bool = False
    ssh_demo_hosts: bool = True  # start the demo SSH hosts (backend/demo_ssh.py) with the demo data
    # Hold the demo SSH hosts back until `start_deferred_ssh_demo()` (their rows update
    # live), so the TUI's start-up does not share the CPU with them. Tests keep the default.
    defer_ssh_demo: bool = False
    _deferred_ssh_demo: tuple[Path, str] | None = None
    _ssh_demo_task: asyncio.Task | None = None
    ssh_demo: Any = None  # the DemoSshFleet while running
    info: BackendInfo | None = None
    _cluster: PostgresCluster | None = None
    _runner: web.AppRunner | None = None  # aiohttp is imported when the gateway starts
    _ctx: Any = None
    _pools: list[Any] = field(default_factory=list)
    demo_runners: Any = None  # DemoRunners while running (the TUI's demo only)
    _root: Path | None = None

    async def __aenter__(self) -> EmbeddedBackend:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> BackendInfo:
        try:
            return await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> BackendInfo:
        if self.ephemeral:
            root = Path(tempfile.mkdtemp(prefix="opstui-embedded-"))
            self._cluster = PostgresCluster(root, ephemeral=True)
        else:
            root = self.data_dir or locations.embedded_dir()
            self._cluster = PostgresCluster(root)
        self._root = root
        # PostgreSQL boots in processes of its own: set it going first, and import the
        # gateway and the schema code (0.6 s of Python) while it comes up.
        booting = asyncio.ensure_future(asyncio.to_thread(self._cluster.start))
        await asyncio.sleep(0)  # let the thread pool pick it up
        try:
            from psycopg_pool import AsyncConnectionPool

            from opstui.backend import demo, realtime, schema  # noqa: F401 - for _prepare_database
            from opstui.backend.gateway import GatewayContext, GatewayRunner, build_app
            from opstui.backend.tokens import TokenSigner, load_or_create_secret
        finally:
            await booting  # never stop Postgres under a start that is still running
        cluster = self._cluster

        # Independent start-up work runs side by side: schema/seed in a thread, the demo
        # SSH hosts on the loop (their rows are pointed at them once both are done).
        preparing = asyncio.create_task(
            asyncio.to_thread(self._prepare_database, cluster.conninfo(), root)
        )
        try:
            if self.seed_demo and self.ssh_demo_hosts and not self.defer_ssh_demo:
                await self._start_ssh_demo(root, cluster.conninfo(), after=preparing)
        finally:
            # Never stop Postgres under a schema thread that is still running.
            users, repos = await preparing
        # The demo's git repositories (a few git processes; once per data directory).
        from opstui.backend.demo_repos import ensure_repos

        making_repos = asyncio.create_task(ensure_repos(root / "repos", repos))
        try:
            # The secret lives beside the data it protects; ephemeral backends get a fresh one.
            secret = load_or_create_secret(root / "jwt_secret")
            signer = TokenSigner(secret)
            anon_key = signer.api_key("anon")
            service_role_key = signer.api_key("service_role")

            # Requests run as `authenticator` (no privileges of its own) and switch role per
            # transaction; auth and change capture use a small superuser pool.
            pool = AsyncConnectionPool(
                cluster.conninfo(user="authenticator"), min_size=2, max_size=10, open=False
            )
            admin_pool = AsyncConnectionPool(cluster.conninfo(), min_size=1, max_size=4, open=False)
            self._pools = [pool, admin_pool]
            await asyncio.gather(
                pool.open(wait=True, timeout=30), admin_pool.open(wait=True, timeout=30)
            )

            ctx = GatewayContext(
                pool=pool,
                signer=signer,
                anon_key=anon_key,
                service_role_key=service_role_key,
                admin_conninfo=cluster.conninfo(),
                extras={"admin_pool": admin_pool, "access_token_ttl": self.access_token_ttl},
            )
            self._ctx = ctx
            app = build_app(ctx)
            from aiohttp import web

            self._runner = GatewayRunner(app)
            await self._runner.setup()
            sock = self._bind_gateway(root)
            site = web.SockSite(self._runner, sock)
            await site.start()
            port = sock.getsockname()[1]
            self.port = port
            self.info = BackendInfo(
                url=f"http://{HOST}:{port}",
                anon_key=anon_key,
                service_role_key=service_role_key,
                db_url=cluster.url(),
                users=users,
                notices=list(cluster.notices) + await making_repos,
            )
            if self.seed_demo and self.ssh_demo_hosts and self.defer_ssh_demo:
                self._deferred_ssh_demo = (root, cluster.conninfo())
            return self.info
        except BaseException:
            # A failed start removes an ephemeral directory: let git finish first, so a
            # busy port stays a one-line error instead of git's complaints on stderr.
            await asyncio.gather(making_repos, return_exceptions=True)
            raise

    def _bind_gateway(self, root: Path) -> socket.socket:
        """The gateway's socket: `port`, else (keep_port) this data directory's port."""
        port_file = root / PORT_FILE
        stored = 0
        if self.keep_port and not self.port and not self.ephemeral:
            with contextlib.suppress(OSError, ValueError):
                stored = int(port_file.read_text().strip())
            stored = stored if 1024 <= stored <= 65535 else 0
        port = self.port or stored
        try:
            sock = _bind(port)
        except OSError as exc:
            if exc.errno not in (errno.EADDRINUSE, errno.EACCES) or not port:
                raise
            where = f" (this data directory's port, kept in {port_file})" if stored else ""
            raise PortInUse(
                exc.errno,
                f"port {port} on {HOST}{where} is already in use; stop what uses it "
                "(another `opstui serve`?) or pick another with --port",
            ) from None
        if self.keep_port and not self.port and not self.ephemeral:
            chosen = sock.getsockname()[1]
            if chosen != stored:
                with contextlib.suppress(OSError):
                    port_file.write_text(f"{chosen}\n")
        return sock

    async def start_demo_runners(self) -> None:
        """Start the demo's in-process runners (backend/demo_runner.py), once the demo SSH
        hosts are up. Call it on the backend's loop; `stop()` stops them."""
        if self.demo_runners is not None or self.info is None or not self.seed_demo:
            return
        from opstui.backend.demo_runner import DemoRunners

        runners = self.demo_runners = DemoRunners()
        if self._ssh_demo_task is not None:
            await asyncio.gather(self._ssh_demo_task, return_exceptions=True)
        if not runners.stopped:
            await runners.start(self.info, self.ssh_demo)

    def start_deferred_ssh_demo(self) -> None:
        """Start the demo SSH hosts that `defer_ssh_demo` held back. Call it on the backend's loop."""
        if self._deferred_ssh_demo is None or self._ssh_demo_task is not None:
            return
        root, conninfo = self._deferred_ssh_demo  # the demo rows exist: start() saw to it
        self._ssh_demo_task = asyncio.create_task(
            self._start_ssh_demo(root, conninfo), name="opstui-demo-ssh"
        )
        self._ssh_demo_task.add_done_callback(_log_failure)

    async def _start_ssh_demo(
        self, root: Path, conninfo: str, *, after: asyncio.Future | None = None
    ) -> None:
        import psycopg

        from opstui.backend.demo_ssh import DemoSshFleet

        self.ssh_demo = DemoSshFleet(root / "ssh-demo")
        await self.ssh_demo.start()
        if after is not None:
            await after  # the demo rows must exist before they are pointed at the hosts

        def update() -> None:
            with psycopg.connect(conninfo, autocommit=True) as conn:
                self.ssh_demo.update_rows(conn)

        await asyncio.to_thread(update)

    def _prepare_database(
        self, conninfo: str, root: Path
    ) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
        """Bootstrap, migrate, capture changes, seed. Blocking: runs in a thread.

        Returns the demo users (with this data directory's passwords) and the demo
        repositories to make."""
        import psycopg

        from opstui.backend import demo, realtime, schema

        with psycopg.connect(conninfo, autocommit=True) as conn:
            schema.prepare_database(conn)
            realtime.install_change_capture(conn)
            if not self.seed_demo:
                return [], []
            passwords, new = demo.load_or_create_accounts(root)
            if new and demo.demo_users(conn):
                # Seeded before passwords were per install (the published one): replace them.
                demo.set_passwords(conn, passwords)
            demo_users = demo.seed_demo(
                conn, now=self.demo_now, passwords=passwords, repos_dir=root / "repos",
                live_runs=self.demo_live_runs,
            )  # fmt: skip
            demo.repair_old_demo(conn, root / "repos")  # a data dir seeded by an older opstui
            demo.point_repositories(conn, root / "repos")
            repos = demo.demo_repositories(conn)
        return [
            {
                "email": u.email,
                "password": u.password,
                "tenant_id": u.tenant_id,
                "team_ids": list(u.team_ids),
                "role": u.role,
            }
            for u in demo_users
        ], repos

    async def stop_gateway(self) -> None:
        """Stop serving HTTP and WebSockets (Postgres keeps running): an outage, for tests."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def start_gateway(self) -> None:
        """Serve again on the same port."""
        from opstui.backend.gateway import GatewayRunner, build_app

        if self._runner is not None:
            return
        from aiohttp import web

        self._runner = GatewayRunner(build_app(self._ctx))
        await self._runner.setup()
        site = web.SockSite(self._runner, _bind(self.port))
        await site.start()

    async def restart_gateway(self) -> None:
        """Stop and start the gateway on the same port (clients must reconnect)."""
        await self.stop_gateway()
        await self.start_gateway()

    async def stop(self) -> None:
        if self.demo_runners is not None:
            runners, self.demo_runners = self.demo_runners, None
            try:
                await runners.stop()
            except Exception as exc:  # noqa: BLE001 - stopping goes on
                log.warning("the demo runners did not stop cleanly: %s", exc)
        if self._ssh_demo_task is not None:
            task, self._ssh_demo_task = self._ssh_demo_task, None
            if not task.done():
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self.ssh_demo is not None:
            fleet, self.ssh_demo = self.ssh_demo, None
            await fleet.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for pool in self._pools:
            await pool.close()
        self._pools = []
        if self._cluster is not None:
            cluster, self._cluster = self._cluster, None
            await asyncio.to_thread(cluster.stop)


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("the demo SSH hosts did not start: %s", task.exception())


def _bind(port: int) -> socket.socket:
    """Bind 127.0.0.1 only; SO_REUSEADDR so a restart can take the same port at once."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock
