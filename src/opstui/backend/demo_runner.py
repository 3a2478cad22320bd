"""The embedded demo's own runners, so `opstui` alone shows deployments really running.

One `Runner` (runs/runner.py) per demo tenant admin (a runner only claims runs of the
teams where its user may execute deployments), each with its own supabase-py client
signed in through the gateway, like any `opstui runner`. They trust exactly the demo
SSH servers' host keys (this process made those keys), and nothing else: any other
host key is refused as a runner always does. `opstui serve` starts none; run
`opstui runner` against it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

log = logging.getLogger(__name__)

# (email, runner name): the tenants' admins.
DEMO_RUNNERS = (
    ("admin@acme.test", "demo-runner"),
    ("ops@globex.test", "demo-runner-globex"),
)


def fleet_decide(fleet: Any):
    """A host-key `decide` that trusts, once, the key of a demo SSH server at its port."""
    known: dict[int, bytes] = {}

    async def decide(target: Any, unknown: Any) -> str:
        if fleet is None or target.host not in ("127.0.0.1", "localhost"):
            return "refuse"
        for host in fleet.hosts:
            if host.down or host.port != target.port:
                continue
            if host.port not in known:
                key = await asyncio.to_thread(host.host_key)
                known[host.port] = key.public_data
            key = getattr(unknown, "key", None)
            if key is not None and key.public_data == known[host.port]:
                return "once"
        return "refuse"

    return decide


class DemoRunners:
    """Start with `await start(info, fleet)`, stop with `await stop()`."""

    def __init__(self) -> None:
        self.runners: list[Any] = []
        self._clients: list[Any] = []
        self._tasks: list[asyncio.Task] = []
        self.stopped = False  # stop() came (perhaps while start() was still signing in)
        self.ci_servers: Any = None

    async def start(self, info: Any, fleet: Any, **overrides: Any) -> None:
        """Sign in and start the runners; `overrides` replace RunnerSettings fields."""
        from opstui.runs.runner import Runner, RunnerSettings
        from opstui.session import Target, create_client, sign_in
        from opstui.ssh import ConnectionPool, SshSettings, rpc_password_source

        passwords = {u["email"]: u["password"] for u in info.users}
        try:  # the demo's CI/CD providers point at FAKE CI servers (backend/demo_cicd.py)
            from opstui.backend.demo_cicd import DemoCiServers

            self.ci_servers = DemoCiServers()
            await self.ci_servers.start(info.db_url)
        except Exception as exc:  # noqa: BLE001 - the demo goes on without CI servers
            log.warning("demo CI servers did not start: %s", exc)
        target = Target("embedded-runner", info.url, info.anon_key, is_embedded=True)
        for email, name in DEMO_RUNNERS:
            if email not in passwords:
                continue
            client = await create_client(target, persist=False)
            self._clients.append(client)
            try:
                await sign_in(client, email, passwords[email])
            except Exception as exc:  # noqa: BLE001 - the demo goes on without this runner
                log.warning("demo runner %s could not sign in: %s", name, exc)
                continue
            if self.stopped:  # stop() has run (and stopped what existed then)
                if self.ci_servers is not None:
                    await self.ci_servers.stop()
                    self.ci_servers = None
                return
            ssh = SshSettings(
                password_source=rpc_password_source(client),
                decide=fleet_decide(fleet),
                agent_path=None,  # the demo servers take their passwords only
                client_keys=None,
                connect_timeout=5.0,
            )
            runner = Runner(
                client,
                RunnerSettings(**{"name": name, "concurrency": 2, "drain_seconds": 3.0, **overrides}),
                pool=ConnectionPool(ssh),
            )
            self.runners.append(runner)
            self._tasks.append(asyncio.create_task(runner.run(), name=f"opstui-{name}"))
        log.info("demo runners started: %s", ", ".join(r.settings.name for r in self.runners))

    async def stop(self) -> None:
        self.stopped = True
        for runner in self.runners:
            runner.stop()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for runner in self.runners:
            with contextlib.suppress(Exception):
                await runner.pool.close()
        from opstui.session import close_client

        for client in self._clients:
            await close_client(client)
        self.runners, self._clients, self._tasks = [], [], []
        if self.ci_servers is not None:
            await self.ci_servers.stop()
            self.ci_servers = None
