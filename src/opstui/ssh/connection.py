"""Opening one SSH connection: host-key policy and authentication order.

Authentication order: the user's ssh-agent, then the user's keys (SSH config
IdentityFile, else ~/.ssh/id_*), then the host's stored password. The password
is fetched through the injected `password_source(host_id)` (in the app:
`rpc('get_host_secret')`, see `rpc_password_source`) only when the server
asks for a password after key authentication failed; it is handed to asyncssh
for that one attempt and not kept, logged or cached.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import asyncssh

from opstui.ssh.errors import HostKeyChanged, HostKeyUnknown, SshError, classify
from opstui.ssh.known_hosts import KnownHosts, fingerprint
from opstui.ssh.target import SshTarget

log = logging.getLogger(__name__)

# AES-GCM first: about 2x chacha20's throughput in asyncssh (AES-NI), which is what lets a
# 50 MB/s stream keep up (benchmarks/bench_ssh_output.py); the rest are fallbacks.
ENCRYPTION_ALGS = [
    "aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com",
    "aes128-ctr", "aes192-ctr", "aes256-ctr",
]  # fmt: skip

Decision = Literal["once", "remember", "refuse"]
Decide = Callable[[SshTarget, HostKeyUnknown], Awaitable[Decision]]
PasswordSource = Callable[[str], Awaitable[str | None]]


def rpc_password_source(client: Any) -> PasswordSource:
    """The stored password of a host via the permission-checked `get_host_secret` rpc.

    A refusal (no can_execute) yields None: the connection then fails as
    "authentication failed" with a note that the password was not readable.
    """

    async def fetch(host_id: str) -> str | None:
        response = await client.rpc("get_host_secret", {"p_host_id": host_id}).execute()
        data = response.data
        return data if isinstance(data, str) and data else None

    return fetch


@dataclass
class SshSettings:
    """How to connect. Defaults are the user's real setup; tests pass their own."""

    known_hosts: KnownHosts = field(default_factory=KnownHosts)
    decide: Decide | None = None  # None: unknown keys are refused (or accepted, see accept_new)
    accept_new: bool = False  # headless --accept-new: remember unknown keys (never changed ones)
    password_source: PasswordSource | None = None
    agent_path: Any = ()  # (): $SSH_AUTH_SOCK; None: no agent
    client_keys: Any = ()  # (): config IdentityFile / ~/.ssh/id_*; None: no keys
    connect_timeout: float = 10.0
    keepalive_interval: float = 15.0
    options: dict[str, Any] = field(default_factory=dict)  # extra asyncssh.connect options


class _Attempt:
    """Per-attempt state: which key the server showed, which were recorded."""

    def __init__(self, known: KnownHosts, trust_once: set[bytes]) -> None:
        self.known = known
        self.trust_once = trust_once
        self.recorded: list[asyncssh.SSHKey] = []
        self.presented: asyncssh.SSHKey | None = None
        self.host = ""
        self.port: int | None = None
        self.password_note = ""

    def known_hosts(self, host: str, addr: str, port: int | None) -> tuple[list, list, list]:
        self.host, self.port = host, port
        trusted, _revoked = self.known.lookup(host, addr, port)
        self.recorded = trusted
        return (trusted, [], [])

    def validate(self, key: asyncssh.SSHKey) -> bool:
        self.presented = key
        return key.public_data in self.trust_once


class _Client(asyncssh.SSHClient):
    def __init__(self, attempt: _Attempt) -> None:
        self._attempt = attempt

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        return self._attempt.validate(key)


def _password_callable(target: SshTarget, settings: SshSettings, attempt: _Attempt):
    source = settings.password_source
    host_id = target.host_id
    if source is None or host_id is None:
        return None

    async def password() -> str | None:
        try:
            secret = await source(host_id)
        except Exception as exc:  # noqa: BLE001 - a refusal means: no password to try
            message = getattr(exc, "message", None) or str(exc)
            attempt.password_note = f"stored password not readable: {message.splitlines()[0][:160]}"
            return None
        if not secret:
            attempt.password_note = "no stored password"
        return secret

    return password


async def connect(target: SshTarget, settings: SshSettings) -> asyncssh.SSHClientConnection:
    """An authenticated connection to `target`, or an `SshError` (one line)."""
    trust_once: set[bytes] = set()
    for _ in range(3):
        attempt = _Attempt(settings.known_hosts, trust_once)
        kwargs = target.connect_kwargs()
        kwargs.update(
            known_hosts=attempt.known_hosts,
            client_factory=lambda attempt=attempt: _Client(attempt),
            agent_path=settings.agent_path,
            client_keys=settings.client_keys,
            password=_password_callable(target, settings, attempt),
            connect_timeout=settings.connect_timeout,
            keepalive_interval=settings.keepalive_interval,
            gss_host=None,
            encryption_algs=ENCRYPTION_ALGS,
        )
        kwargs.update(settings.options)
        try:
            async with asyncio.timeout(settings.connect_timeout + 1):
                return await asyncssh.connect(**kwargs)
        except asyncssh.HostKeyNotVerifiable as exc:
            key = attempt.presented
            if key is None:
                raise classify(exc, target) from None
            decision = await _decide(target, settings, attempt, key)
            trust_once.add(key.public_data)
            if decision == "remember":
                await asyncio.to_thread(
                    settings.known_hosts.remember, attempt.host, attempt.port, key
                )
        except asyncssh.PermissionDenied:
            note = f" ({attempt.password_note})" if attempt.password_note else ""
            raise SshError(
                f"{target.label}: authentication failed{note}; agent, keys and stored password "
                "were refused: check the user name and credentials",
                host=target.label,
                kind="auth_failed",
            ) from None
        except SshError:
            raise
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            error = classify(exc, target)
            if error.kind == "disconnected":
                error = SshError(
                    f"{target.label}: the server closed the connection during the handshake",
                    host=target.label,
                    kind="unreachable",
                )
            raise error from None
    raise SshError(
        f"{target.label}: host key could not be verified",
        host=target.label,
        kind="host_key_unknown",
    )


async def _decide(
    target: SshTarget, settings: SshSettings, attempt: _Attempt, key: asyncssh.SSHKey
) -> Decision:
    new_fp = fingerprint(key)
    if attempt.recorded:
        same_type = [k for k in attempt.recorded if k.get_algorithm() == key.get_algorithm()]
        old = (same_type or attempt.recorded)[0]
        raise HostKeyChanged(target.label, fingerprint(old), new_fp, key.get_algorithm())
    unknown = HostKeyUnknown(target.label, new_fp, key.get_algorithm(), key=key)
    if settings.decide is not None:
        decision = await settings.decide(target, unknown)
    elif settings.accept_new:
        decision = "remember"
    else:
        decision = "refuse"
    if decision not in ("once", "remember"):
        raise unknown
    log.info("host key %s for %s trusted (%s)", new_fp, target.label, decision)
    return decision
