"""How the app gets a signed-in client: a configured profile, or the embedded demo.

The TUI and the headless commands share these connectors; tests inject one
that points at their own backend. No Textual here.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opstui import session
from opstui.config import Profile, select_profile
from opstui.session import SignInError, Target

if TYPE_CHECKING:
    from supabase import AsyncClient

    from opstui.backend.background import BackgroundBackend
    from opstui.backend.embedded import EmbeddedBackend


@dataclass
class Connector:
    """Resume a stored session, or sign in with a password; `close()` at exit."""

    target: Target
    persist: bool = True
    email_hint: str | None = None
    client: AsyncClient | None = None

    @property
    def label(self) -> str:
        return f"profile {self.target.name} ({self.target.url})"

    async def start(self) -> None:
        """Anything to do before the first request (the embedded backend starts here)."""

    async def resume(self) -> AsyncClient | None:
        """A signed-in client from the stored session, or None if sign-in is needed."""
        client = await self._client()
        return client if await session.resume(client) else None

    async def sign_in(self, email: str, password: str) -> AsyncClient:
        client = await self._client()
        await session.sign_in(client, email, password)
        return client

    async def check_reachable(self) -> str | None:
        """None if the backend answers; else what is wrong, in one line."""
        return await session.check_reachable(await self._client())

    def busy_summary(self) -> str | None:
        """Work this process does that quitting would cut short (none for a profile)."""
        return None

    def first_data_shown(self) -> None:
        """The first snapshot is in: start whatever start-up should not wait for."""

    async def close(self) -> None:
        if self.client is not None:
            client, self.client = self.client, None
            await session.close_client(client)

    async def _client(self) -> AsyncClient:
        if self.client is None:
            self.client = await session.create_client(self.target, persist=self.persist)
        return self.client


@dataclass
class EmbeddedConnector(Connector):
    """Starts the embedded backend in-process and signs in as the demo admin."""

    backend: EmbeddedBackend | None = None
    demo_role: str = "admin"
    demo_email: str | None = None  # sign in as this demo user instead of the first with demo_role
    options: dict[str, Any] = field(default_factory=dict)
    owns_backend: bool = True  # False when a test hands us a backend it will stop itself
    background: BackgroundBackend | None = None  # started early, on its own thread

    @property
    def label(self) -> str:
        return "demo backend (embedded)"

    async def start(self) -> None:
        from opstui.backend.postgres import PostgresError

        try:
            if self.background is not None:
                await self.background.wait()
                self.backend = self.background.backend
            else:
                if self.backend is None:
                    from opstui.backend.embedded import EmbeddedBackend

                    self.backend = EmbeddedBackend(**self.options)
                if self.backend.info is None:
                    await self.backend.start()
        except PostgresError as exc:
            raise SignInError(str(exc)) from None
        except OSError as exc:
            raise SignInError(f"cannot start the embedded backend: {exc}") from None
        info = self.backend.info
        assert info is not None
        self.target = Target(
            name="embedded", url=info.url, anon_key=info.anon_key, is_embedded=True
        )

    async def resume(self) -> AsyncClient | None:
        assert self.backend is not None and self.backend.info is not None
        users = self.backend.info.users
        if self.demo_email:
            demo = next((u for u in users if u["email"] == self.demo_email), None)
        else:
            demo = next((u for u in users if u["role"] == self.demo_role), None)
        if demo is None:
            return None
        # The demo session is not persisted: the demo admin is signed in afresh each start.
        self.persist = False
        return await self.sign_in(demo["email"], demo["password"])

    def busy_summary(self) -> str | None:
        """Runs the demo's in-process runners hold: quitting would stop them mid-run."""
        backend = self.backend or (self.background.backend if self.background else None)
        runners = getattr(getattr(backend, "demo_runners", None), "runners", None) or []
        held = sum(len(getattr(runner, "held", {})) for runner in list(runners))
        if not held:
            return None
        return f"{held} deployment run(s) on this opstui's demo runner"

    def first_data_shown(self) -> None:
        # The demo SSH hosts (key generation, asyncssh) would compete with sign-in and
        # the first load for the CPU; they start once the data is on screen, and then the
        # demo's own runners, which run its deployments for real (`opstui` alone shows it
        # all working; a test's injected backend gets no runner).
        if self.background is not None:
            self.background.start_deferred_ssh_demo()
            self.background.start_demo_runners()

    async def close(self) -> None:
        await super().close()
        if self.background is not None:
            await asyncio.to_thread(self.background.stop)
        elif self.backend is not None and self.owns_backend:
            await self.backend.stop()


def connector_for(profile_name: str | None) -> Connector:
    """The connector for `--profile NAME` (None: config default, else the embedded demo)."""
    profile: Profile | None = select_profile(profile_name)
    if profile is None:
        return EmbeddedConnector(target=Target("embedded", "", "", is_embedded=True))
    return Connector(target=Target.from_profile(profile), email_hint=profile.email)
