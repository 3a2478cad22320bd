"""SSH failures, each one clear line: what went wrong on which host, and what to do.

`classify(exc, target)` turns anything asyncssh or the OS raises into an
`SshError` with a `kind` from `ERROR_KINDS`. Messages never contain secrets.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from typing import TYPE_CHECKING

import asyncssh

if TYPE_CHECKING:
    from opstui.ssh.target import SshTarget

# kind -> the hosts.status it maps to when a health check fails that way.
ERROR_KINDS = {
    "unreachable": "offline",
    "refused": "offline",
    "timeout": "timeout",
    "auth_failed": "auth_failed",
    "host_key_unknown": "host_key_unknown",
    "host_key_changed": "host_key_changed",
    "disconnected": "error",
    "error": "error",
}


class SshError(Exception):
    """A one-line, user-facing SSH failure. `kind` is one of ERROR_KINDS."""

    kind = "error"

    def __init__(self, message: str, *, host: str = "", kind: str | None = None) -> None:
        super().__init__(message)
        self.host = host
        if kind is not None:
            self.kind = kind

    @property
    def status(self) -> str:
        """The hosts.status value for this failure."""
        return ERROR_KINDS.get(self.kind, "error")

    @property
    def connection_failed(self) -> bool:
        """True when the host was never reached/authenticated (counts as unreachable)."""
        return self.kind not in ("disconnected", "error")


class HostKeyUnknown(SshError):
    """The host's key is in no known_hosts file: ask the user (trust once / remember / refuse)."""

    kind = "host_key_unknown"

    def __init__(self, host: str, fingerprint: str, key_type: str, *, key: object = None) -> None:
        super().__init__(
            f"{host}: host key unknown ({key_type} {fingerprint}); verify the fingerprint, then "
            "trust it (or pass --accept-new headless)",
            host=host,
        )
        self.fingerprint = fingerprint
        self.key_type = key_type
        self.key = key


class HostKeyChanged(SshError):
    """The host presented a different key than the one recorded: refused."""

    kind = "host_key_changed"

    def __init__(
        self, host: str, old_fingerprint: str, new_fingerprint: str, key_type: str
    ) -> None:
        super().__init__(
            f"{host}: HOST KEY CHANGED (was {old_fingerprint}, now {new_fingerprint} {key_type}); "
            "refusing to connect; if the change is expected, forget the old key explicitly",
            host=host,
        )
        self.old_fingerprint = old_fingerprint
        self.new_fingerprint = new_fingerprint
        self.key_type = key_type


class Cancelled(SshError):
    kind = "error"


def classify(exc: BaseException, target: SshTarget | str) -> SshError:
    """One SshError for any failure while connecting to or talking to `target`."""
    label = target if isinstance(target, str) else target.label
    if isinstance(exc, SshError):
        if not exc.host:
            exc.host = label
        return exc
    if isinstance(exc, asyncssh.PermissionDenied):
        return SshError(
            f"{label}: authentication failed (agent, keys and stored password were refused); "
            "check the user name and credentials",
            host=label,
            kind="auth_failed",
        )
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return SshError(
            f"{label}: host key not verifiable; check known_hosts",
            host=label,
            kind="host_key_unknown",
        )
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return SshError(
            f"{label}: timed out; the host may be down or firewalled", host=label, kind="timeout"
        )
    if isinstance(exc, ConnectionRefusedError) or (
        isinstance(exc, OSError) and exc.errno == errno.ECONNREFUSED
    ):
        return SshError(
            f"{label}: connection refused; is sshd running on that port?",
            host=label,
            kind="refused",
        )
    if isinstance(
        exc,
        asyncssh.ConnectionLost | asyncssh.DisconnectError | BrokenPipeError | ConnectionResetError,
    ):
        reason = str(exc).strip() or "connection lost"
        return SshError(
            f"{label}: disconnected ({reason}); retry when the host is back",
            host=label,
            kind="disconnected",
        )
    if isinstance(exc, socket.gaierror):
        return SshError(
            f"{label}: unreachable (cannot resolve the address); check the host's ip",
            host=label,
            kind="unreachable",
        )
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc) or type(exc).__name__
        return SshError(
            f"{label}: unreachable ({reason}); check the address and the network",
            host=label,
            kind="unreachable",
        )
    if isinstance(exc, asyncssh.Error):
        return SshError(f"{label}: ssh error: {exc.reason}", host=label, kind="error")
    return SshError(f"{label}: {type(exc).__name__}: {exc}", host=label, kind="error")
