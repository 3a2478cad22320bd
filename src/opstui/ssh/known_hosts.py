"""Host keys are never trusted silently.

Keys are looked up in the user's `~/.ssh/known_hosts` (read-only for opstui)
and in opstui's own file, `locations.data_dir()/known_hosts` (OpenSSH format).
Outcomes of a connection attempt:

- key recorded for the host            -> connect;
- no key recorded                      -> `HostKeyUnknown(fingerprint, key_type)`: the
  caller's `decide(target, unknown)` answers 'once' | 'remember' | 'refuse'
  (headless: refused unless --accept-new, which means 'remember');
- a different key recorded             -> `HostKeyChanged(old, new)`: refused, always.
  Only an explicit `forget(host, port)` (or `replace`) changes that: it drops
  opstui's entries and marks the user's entries for that host `@revoked` in
  opstui's file, so the next attempt is "unknown" and asks again.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

from opstui import locations

DEFAULT_SSH_PORT = 22


def fingerprint(key: asyncssh.SSHKey) -> str:
    return key.get_fingerprint("sha256")


def host_pattern(host: str, port: int | None) -> str:
    """The known_hosts host field: `host`, or `[host]:port` for a non-default port."""
    return host if port in (None, DEFAULT_SSH_PORT) else f"[{host}]:{port}"


def _match(parsed: asyncssh.SSHKnownHosts, host: str, addr: str, port: int | None) -> tuple:
    """Entries for exactly host/addr and port, as OpenSSH matches them.

    (`SSHKnownHosts.match` falls back to the port-less entries when a port has
    none, and then drops the port's @revoked entries; opstui wants neither.)
    """
    exact = getattr(parsed, "_match", None)
    return exact(host, addr, port) if exact is not None else parsed.match(host, addr, port)


def _unique(keys) -> list[asyncssh.SSHKey]:
    seen: dict[bytes, asyncssh.SSHKey] = {}
    for key in keys:
        seen.setdefault(key.public_data, key)
    return list(seen.values())


@dataclass
class _Parsed:
    stamp: tuple[int, int]
    hosts: asyncssh.SSHKnownHosts | None


@dataclass
class KnownHosts:
    """Both known_hosts files. Paths default to ~/.ssh/known_hosts (via $HOME, at use)
    and opstui's data dir."""

    user_path: Path | None = None
    own_path: Path | None = None
    _cache: dict[Path, _Parsed] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def user_file(self) -> Path:
        return self.user_path or Path("~", ".ssh", "known_hosts").expanduser()

    def own_file(self) -> Path:
        return self.own_path or locations.data_dir() / "known_hosts"

    def _read(self, path: Path) -> asyncssh.SSHKnownHosts | None:
        try:
            st = path.stat()
        except OSError:
            return None
        stamp = (st.st_mtime_ns, st.st_size)
        cached = self._cache.get(path)
        if cached and cached.stamp == stamp:
            return cached.hosts
        try:
            parsed: asyncssh.SSHKnownHosts | None = asyncssh.read_known_hosts(str(path))
        except (OSError, ValueError, asyncssh.KeyImportError):
            parsed = None
        self._cache[path] = _Parsed(stamp, parsed)
        return parsed

    def lookup(
        self, host: str, addr: str, port: int | None
    ) -> tuple[list[asyncssh.SSHKey], list[asyncssh.SSHKey]]:
        """(trusted keys, revoked keys) for host/addr/port across both files."""
        port = None if port == DEFAULT_SSH_PORT else port
        trusted: list[asyncssh.SSHKey] = []
        revoked: list[asyncssh.SSHKey] = []
        for path in (self.user_file(), self.own_file()):
            parsed = self._read(path)
            if parsed is None:
                continue
            match = _match(parsed, host, addr, port)
            trusted.extend(match[0])
            revoked.extend(match[2])
        revoked_data = {k.public_data for k in revoked}
        return _unique(k for k in trusted if k.public_data not in revoked_data), _unique(revoked)

    def remember(self, host: str, port: int | None, key: asyncssh.SSHKey) -> None:
        """Append `key` for host:port to opstui's known_hosts (blocking; small)."""
        self._append(
            [f"{host_pattern(host, port)} {key.export_public_key('openssh').decode().strip()}"]
        )

    def forget(self, host: str, port: int | None = None) -> int:
        """Explicitly stop trusting every recorded key of host:port; returns how many.

        opstui's own entries are removed; entries in the user's file (which opstui
        never edits) are marked `@revoked` in opstui's file.
        """
        pattern = host_pattern(host, port)
        removed = 0
        own = self.own_file()
        with self._lock:
            try:
                lines = own.read_text(encoding="utf-8").splitlines()
            except FileNotFoundError:
                lines = []
            kept = []
            for line in lines:
                fields = line.split()
                if fields and fields[0] == "@revoked":
                    fields = fields[1:]
                if fields and pattern in fields[0].split(",") and not line.startswith("@revoked"):
                    removed += 1
                    continue
                kept.append(line)
            if removed:
                self._write(own, kept)
        user = self._read(self.user_file())
        revoke = []
        if user is not None:
            for key in _unique(
                _match(user, host, host, None if port == DEFAULT_SSH_PORT else port)[0]
            ):
                revoke.append(
                    f"@revoked {pattern} {key.export_public_key('openssh').decode().strip()}"
                )
        if revoke:
            self._append(revoke)
        return removed + len(revoke)

    def replace(self, host: str, port: int | None, key: asyncssh.SSHKey) -> None:
        """Explicit replacement of a changed key: forget the old ones, remember `key`."""
        self.forget(host, port)
        self.remember(host, port, key)

    def _append(self, lines: list[str]) -> None:
        own = self.own_file()
        with self._lock:
            locations.ensure_private_dir(own.parent) if not own.parent.exists() else None
            fd = os.open(own, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as f:
                f.write("".join(line + "\n" for line in lines))
            self._cache.pop(own, None)

    def _write(self, path: Path, lines: list[str]) -> None:
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))
        os.replace(tmp, path)
        self._cache.pop(path, None)
