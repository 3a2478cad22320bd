"""The UI's handle on the SSH layer: one connection pool per app, host-key prompts, audit.

`ssh_for(app)` returns the app's `SshBridge` (created on first use):

- `pool`: an `opstui.ssh.ConnectionPool` whose `decide` callback is the host-key
  modal (`HostKeyScreen`): the SSH I/O runs in workers; `decide` pushes the
  modal and awaits a Future that the modal's dismiss callback resolves. Prompts
  are asked one at a time (a run over many new hosts asks in turn).
- `audit`: `SupabaseAudit` over the store's client (sessions and commands).
- `password_source`: the permission-checked `get_host_secret` rpc, evaluated
  at connect time against the current store.

Tests replace `known_hosts` / `client_keys` / `agent_path` through
`SshBridge.settings` before the first connection.
"""

from __future__ import annotations

import asyncio
import dataclasses
import weakref
from typing import TYPE_CHECKING, Any

from opstui.ssh.audit import SupabaseAudit
from opstui.ssh.connection import Decision, SshSettings, rpc_password_source
from opstui.ssh.errors import HostKeyUnknown
from opstui.ssh.health import HealthChecker, PeriodicHealth, rpc_health_writer
from opstui.ssh.known_hosts import KnownHosts
from opstui.ssh.pool import ConnectionPool
from opstui.ssh.target import SshTarget

if TYPE_CHECKING:
    from opstui.ui.app import OpsApp

_BRIDGES: weakref.WeakKeyDictionary[Any, SshBridge] = weakref.WeakKeyDictionary()


class SshBridge:
    def __init__(self, app: OpsApp, *, known_hosts: KnownHosts | None = None) -> None:
        self.app = app
        self.known_hosts = known_hosts or KnownHosts()
        self.settings = SshSettings(
            known_hosts=self.known_hosts,
            decide=self.decide,
            password_source=self._password,
        )
        self.pool = ConnectionPool(self.settings)
        self._asking = asyncio.Lock()
        self._periodic: PeriodicHealth | None = None
        self._periodic_pool: ConnectionPool | None = None

    # -- host keys --------------------------------------------------------------------------

    async def decide(self, target: SshTarget, unknown: HostKeyUnknown) -> Decision:
        """Ask the user about an unknown host key (the modal), one prompt at a time."""
        from opstui.ui.screens.hostkey import HostKeyScreen

        async with self._asking:
            future: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()

            def answered(decision: Decision | None) -> None:
                if not future.done():
                    future.set_result(decision or "refuse")

            self.app.push_screen(HostKeyScreen(target, unknown), answered)
            try:
                return await future
            except asyncio.CancelledError:
                screen = self.app.screen
                if isinstance(screen, HostKeyScreen) and screen.target == target:
                    screen.dismiss("refuse")
                raise

    # -- credentials, audit, health ---------------------------------------------------------

    async def _password(self, host_id: str) -> str | None:
        store = self.app.store
        if store is None:
            return None
        return await rpc_password_source(store.client)(host_id)

    @property
    def audit(self) -> SupabaseAudit | None:
        store = self.app.store
        return SupabaseAudit(store.client) if store is not None else None

    def health_checker(self) -> HealthChecker:
        store = self.app.store
        writer = rpc_health_writer(store.client) if store is not None else None
        return HealthChecker(self.pool, writer=writer)

    def start_periodic_health(self, interval: float) -> PeriodicHealth | None:
        """Re-check the active team's hosts every `interval` seconds while the app runs.

        Background checks never prompt: an unknown host key is recorded as the
        host's status (host_key_unknown) instead, on a pool of their own.
        """
        store = self.app.store
        if interval <= 0 or store is None or self._periodic is not None:
            return None
        quiet = dataclasses.replace(self.settings, decide=None, accept_new=False)
        self._periodic_pool = ConnectionPool(quiet)
        checker = HealthChecker(self._periodic_pool, writer=rpc_health_writer(store.client))

        def targets() -> list[SshTarget]:
            found = []
            for row in store.rows("hosts"):
                try:
                    found.append(SshTarget.from_host(row))
                except ValueError:
                    continue  # not an SSH host, or no address: nothing to check
            return found

        self._periodic = PeriodicHealth(checker, targets, interval=interval)
        self._periodic.start()
        return self._periodic

    async def close(self) -> None:
        if self._periodic is not None:
            await self._periodic.stop()
            self._periodic = None
        if self._periodic_pool is not None:
            await self._periodic_pool.close()
        await self.pool.close()


def ssh_for(app: OpsApp) -> SshBridge:
    bridge = _BRIDGES.get(app)
    if bridge is None:
        bridge = _BRIDGES[app] = SshBridge(app)
    return bridge


async def close_ssh(app: OpsApp) -> None:
    """Close the app's SSH connections (at exit)."""
    bridge = _BRIDGES.pop(app, None)
    if bridge is not None:
        await bridge.close()


def target_of(row: dict[str, Any]) -> SshTarget:
    return SshTarget.from_host(row)
