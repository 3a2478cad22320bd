"""Demo SSH hosts: asyncssh servers on 127.0.0.1 that run real commands.

Each demo host has its own generated ed25519 host key and its own password,
both persisted under `root/<name>/` so they survive restarts, and so does its
port (`root/<name>/port`; a new one only when another program took it), so a
key trusted and remembered for `[127.0.0.1]:port` stays trusted. Commands run as the
current user in `root/<name>/sandbox` (cwd and HOME), with a minimal
environment. Supported: exec (pipes, or a PTY when requested), an interactive
shell (`bash -i` or `sh -i` on a PTY), window-change, and SFTP chrooted to the
sandbox. A down host has a port that nobody listens on.

Loopback only, password authentication only: this is a sandbox for trying
opstui, not a security boundary (commands run with the user's own rights).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import getpass
import hmac
import logging
import os
import pty
import secrets
import shutil
import signal
import socket
import struct
import termios
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


@dataclass
class DemoSshHost:
    name: str
    root: Path
    down: bool = False
    username: str = field(default_factory=getpass.getuser)
    port: int = 0
    password: str = field(default="", repr=False)
    # Public keys accepted besides the password (test servers; the demo uses passwords only).
    authorized_keys: list = field(default_factory=list, repr=False)
    _acceptor: Any = field(default=None, repr=False)
    _connections: set = field(default_factory=set, repr=False)
    _children: set = field(default_factory=set, repr=False)

    @property
    def sandbox(self) -> Path:
        return self.root / "sandbox"

    @property
    def host_key_path(self) -> Path:
        return self.root / "ssh_host_ed25519_key"

    def host_key(self) -> asyncssh.SSHKey:
        return asyncssh.read_private_key(str(self.host_key_path))

    def _prepare(self) -> None:
        """Key, password and sandbox, created once (blocking; run in a thread)."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.sandbox.mkdir(exist_ok=True, mode=0o700)
        if not self.host_key_path.exists():
            key = asyncssh.generate_private_key("ssh-ed25519", comment=f"opstui-demo-{self.name}")
            _write_private(self.host_key_path, key.export_private_key())
        password_file = self.root / "password"
        if not password_file.exists():
            _write_private(password_file, ("demo-" + secrets.token_urlsafe(12)).encode())
        self.password = password_file.read_text().strip()
        readme = self.sandbox / "README.txt"
        if not readme.exists():
            readme.write_text(
                f"opstui demo host {self.name}: a sandbox directory on your machine.\n"
            )

    @property
    def port_file(self) -> Path:
        return self.root / "port"

    def _stored_port(self) -> int:
        try:
            port = int(self.port_file.read_text().strip())
        except (OSError, ValueError):
            return 0
        return port if 1024 <= port <= 65535 else 0

    def _store_port(self) -> None:
        with contextlib.suppress(OSError):
            _write_private(self.port_file, f"{self.port}\n".encode())

    async def start(self) -> None:
        await asyncio.to_thread(self._prepare)
        stored = self.port or self._stored_port()
        if self.down:
            # A port nobody listens on: the stored one while that stays true.
            self.port = stored if stored and _port_free(stored) else _unused_port()
            self._store_port()
            return
        try:
            await self._listen(stored)
        except OSError:
            if not stored:
                raise
            log.info("demo host %s: port %s is taken; using a new one", self.name, stored)
            await self._listen(0)
        self.port = self._acceptor.sockets[0].getsockname()[1]
        if self.port != stored:
            self._store_port()

    async def _listen(self, port: int) -> None:
        host = self
        self._acceptor = await asyncssh.listen(
            LOOPBACK,
            port,
            server_host_keys=[str(self.host_key_path)],
            server_factory=lambda: _DemoServer(host),
            process_factory=self._handle,
            sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=str(host.sandbox).encode()),
            encoding=None,
            allow_scp=False,
            reuse_address=True,
        )

    async def stop(self) -> None:
        self.drop_connections()
        for child in list(self._children):
            _kill_group(child)
        if self._acceptor is not None:
            self._acceptor.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._acceptor.wait_closed(), 2)
            self._acceptor = None

    def drop_connections(self) -> None:
        """Abort every open connection (simulates the host vanishing mid-command)."""
        for conn in list(self._connections):
            conn.abort()
        self._connections.clear()

    def _env(self, term: str | None) -> dict[str, str]:
        env = {
            "HOME": str(self.sandbox),
            "USER": self.username,
            "LOGNAME": self.username,
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "SHELL": _shell(),
            "LANG": "C.UTF-8",
            "OPSTUI_DEMO_HOST": self.name,
        }
        if term:
            env["TERM"] = term
        return env

    async def _handle(self, process: asyncssh.SSHServerProcess) -> None:
        term = process.get_terminal_type()
        try:
            if term:
                code = await self._run_pty(process, term)
            else:
                code = await self._run_pipes(process)
        except Exception as exc:  # noqa: BLE001 - report to the client, keep serving
            log.debug("demo host %s: %s", self.name, exc)
            code = 255
        with contextlib.suppress(Exception):
            process.exit(code)

    async def _run_pipes(self, process: asyncssh.SSHServerProcess) -> int:
        command = process.command
        argv = ["/bin/sh", "-c", command] if command else ["/bin/sh", "-i"]
        child = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=self.sandbox,
            env=self._env(None),
            start_new_session=True,
        )
        self._children.add(child)
        try:
            pumps = [
                asyncio.ensure_future(_pump(child.stdout, process.stdout)),
                asyncio.ensure_future(_pump(child.stderr, process.stderr)),
                asyncio.ensure_future(_feed(process, child)),
            ]
            waited = asyncio.ensure_future(asyncio.gather(child.wait(), pumps[0], pumps[1]))
            closed = asyncio.ensure_future(process.channel.wait_closed())
            await asyncio.wait({waited, closed}, return_when=asyncio.FIRST_COMPLETED)
            if not waited.done():  # the client went away: stop the command
                _kill_group(child)
            for task in (*pumps, closed):
                task.cancel()
            with contextlib.suppress(BaseException):
                await waited
            return (
                child.returncode if child.returncode is not None and child.returncode >= 0 else 255
            )
        finally:
            _kill_group(child)
            self._children.discard(child)

    async def _run_pty(self, process: asyncssh.SSHServerProcess, term: str) -> int:
        command = process.command
        argv = ["/bin/sh", "-c", command] if command else [_shell(), "-i"]
        master, slave = pty.openpty()
        cols, rows, _, _ = process.get_terminal_size()
        _set_winsize(master, cols or 80, rows or 24)
        try:
            child = await asyncio.create_subprocess_exec(
                *argv,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                cwd=self.sandbox,
                env=self._env(term),
                start_new_session=True,
                preexec_fn=_make_controlling_tty,  # noqa: PLW1509 - single call, no locks taken
            )
        finally:
            os.close(slave)
        self._children.add(child)
        os.set_blocking(master, False)
        loop = asyncio.get_running_loop()
        eof = asyncio.Event()

        def readable() -> None:
            try:
                data = os.read(master, 65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                loop.remove_reader(master)
                eof.set()
                return
            try:
                process.stdout.write(data)
            except Exception:  # noqa: BLE001 - channel gone
                loop.remove_reader(master)
                eof.set()

        loop.add_reader(master, readable)

        async def feed() -> None:
            while True:
                try:
                    data = await process.stdin.read(65536)
                except asyncssh.TerminalSizeChanged as change:
                    _set_winsize(master, change.width, change.height)
                    continue
                except asyncssh.SignalReceived as sig:
                    _signal_group(child, sig.signal)
                    continue
                except (asyncssh.BreakReceived, asyncssh.Error):
                    continue
                if not data:
                    return
                view = memoryview(data)
                while view:
                    try:
                        written = os.write(master, view)
                        view = view[written:]
                    except BlockingIOError:
                        await asyncio.sleep(0.005)
                    except OSError:
                        return

        feeder = asyncio.ensure_future(feed())
        closed = asyncio.ensure_future(process.channel.wait_closed())
        waited = asyncio.ensure_future(child.wait())
        try:
            await asyncio.wait({waited, closed}, return_when=asyncio.FIRST_COMPLETED)
            if not waited.done():
                _kill_group(child)
            await waited
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(eof.wait(), 1)  # let the last output through
        finally:
            loop.remove_reader(master)
            os.close(master)
            feeder.cancel()
            closed.cancel()
            _kill_group(child)
            self._children.discard(child)
        return child.returncode if child.returncode is not None and child.returncode >= 0 else 255


class _DemoServer(asyncssh.SSHServer):
    def __init__(self, host: DemoSshHost) -> None:
        self.host = host
        self.conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        self.host._connections.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        self.host._connections.discard(self.conn)

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return bool(self.host.authorized_keys)

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        allowed = {k.public_data for k in self.host.authorized_keys}
        return username == self.host.username and key.public_data in allowed

    def validate_password(self, username: str, password: str) -> bool:
        ok_user = hmac.compare_digest(username.encode(), self.host.username.encode())
        ok_password = hmac.compare_digest(password.encode(), self.host.password.encode())
        return ok_user and ok_password


async def _pump(source: asyncio.StreamReader, sink: Any) -> None:
    while True:
        data = await source.read(65536)
        if not data:
            return
        sink.write(data)
        await sink.drain()


async def _feed(process: asyncssh.SSHServerProcess, child: asyncio.subprocess.Process) -> None:
    assert child.stdin is not None
    while True:
        try:
            data = await process.stdin.read(65536)
        except asyncssh.SignalReceived as sig:
            _signal_group(child, sig.signal)
            continue
        except (asyncssh.TerminalSizeChanged, asyncssh.BreakReceived):
            continue
        if not data:
            break
        try:
            child.stdin.write(data)
            await child.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            return
    with contextlib.suppress(Exception):
        child.stdin.close()
    # Keep reading (signals arrive as exceptions on stdin) until the channel closes.
    with contextlib.suppress(Exception):
        await process.channel.wait_closed()


def _signal_group(child: asyncio.subprocess.Process, name: str) -> None:
    signum = getattr(signal, "SIG" + name.upper(), None)
    if signum is not None and child.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signum)


def _kill_group(child: asyncio.subprocess.Process) -> None:
    if child.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)


def _make_controlling_tty() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _set_winsize(fd: int, cols: int, rows: int) -> None:
    with contextlib.suppress(OSError):
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _shell() -> str:
    return shutil.which("bash") or "/bin/sh"


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _port_free(port: int) -> bool:
    """Nobody listens on 127.0.0.1:port (we may bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def _unused_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


# Demo rows: (team name, host name, down?, is an existing seeded row?)
DEMO_HOSTS = (
    ("Platform", "localhost-lab", False, True),
    ("Platform", "lab-web-01", False, False),
    ("Platform", "lab-db-01", False, False),
    ("Platform", "lab-down-01", True, False),
    ("Core", "core-lab", False, True),
)


LAB_DESCRIPTIONS = {False: "Demo SSH host on loopback", True: "Demo SSH host on loopback (down on purpose)"}


def demo_host_id(name: str) -> str:
    """The fixed id of a demo SSH host's row (the seed and `update_rows` agree on it)."""
    import uuid

    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"opstui-demo-ssh:{name}"))


class DemoSshFleet:
    """All demo hosts of an embedded backend: start, stop, and point the rows at them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.hosts = [
            DemoSshHost(name, root / name, down=down) for _team, name, down, _ in DEMO_HOSTS
        ]

    def by_name(self, name: str) -> DemoSshHost:
        return next(h for h in self.hosts if h.name == name)

    async def start(self) -> None:
        try:
            for host in self.hosts:
                await host.start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        for host in self.hosts:
            await host.stop()

    def update_rows(self, conn: Any) -> None:
        """Insert missing demo rows and point all of them at the servers (superuser; blocking).

        The password goes through the normal column: the secret-moving trigger stores
        it in private.host_secrets and the visible column stays NULL.
        """
        with conn.transaction():
            for (team, name, _down, existing), host in zip(DEMO_HOSTS, self.hosts, strict=True):
                row = conn.execute(
                    "select t.id from public.teams t where t.name = %s order by t.created_at limit 1",
                    (team,),
                ).fetchone()
                if row is None:
                    continue
                team_id = row[0]
                if not existing:
                    conn.execute(
                        """
                        insert into public.hosts (id, name, description, type, ip, port, "user", status,
                          team_id, creator_id)
                        select %s, %s, %s, 'ssh', %s, %s, %s, 'pending', %s,
                          (select tm.profile_id from public.team_members tm
                            where tm.team_id = %s and tm.role = 'admin' order by tm.profile_id limit 1)
                        where not exists (select 1 from public.hosts h where h.team_id = %s and h.name = %s)
                        """,
                        (
                            demo_host_id(name),
                            name,
                            LAB_DESCRIPTIONS[host.down],
                            LOOPBACK, host.port, host.username, team_id, team_id, team_id, name,
                        ),
                    )  # fmt: skip
                conn.execute(
                    'update public.hosts set ip = %s, port = %s, "user" = %s, password = %s, is_windows = false'
                    " where team_id = %s and name = %s",
                    (LOOPBACK, host.port, host.username, host.password, team_id, name),
                )
            # A short audit trail for the up demo hosts (once), in the past.
            conn.execute(
                """
                insert into public.ssh_audit (team_id, host_id, profile_id, kind, command, exit_code,
                  started_at, duration_ms, created_at)
                select h.team_id, h.id, h.creator_id, a.kind, a.command, a.exit_code,
                  now() - a.offset_, a.duration_ms, now() - a.offset_
                from public.hosts h
                cross join (values
                  ('command', 'uptime', 0, interval '1 day', 41),
                  ('command', 'df -h /', 0, interval '2 days', 57),
                  ('session', null, 0, interval '3 days', 421000)
                ) as a(kind, command, exit_code, offset_, duration_ms)
                where h.name = any(%s) and h.creator_id is not null
                  and not exists (select 1 from public.ssh_audit x where x.host_id = h.id)
                """,
                ([h.name for h in self.hosts if not h.down],),
            )
