"""Shared fixtures: a real, throwaway PostgreSQL and (later) the gateway.

Every test runs with OPSTUI_CONFIG_DIR and OPSTUI_DATA_DIR pointed at a temp
dir, so nothing touches the developer's real config or data.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest

_SANDBOX = tempfile.mkdtemp(prefix="opstui-test-home-")
os.environ["OPSTUI_CONFIG_DIR"] = os.path.join(_SANDBOX, "config")
os.environ["OPSTUI_DATA_DIR"] = os.path.join(_SANDBOX, "data")


@pytest.fixture(scope="session")
def cluster() -> Iterator[PostgresCluster]:  # noqa: F821
    """One ephemeral PostgreSQL for the whole session (Unix socket only)."""
    from opstui.backend.postgres import PostgresCluster

    pg = PostgresCluster.temporary()
    pg.start()
    yield pg
    pg.stop()


# A fixed clock for demo data, so every run (and every snapshot) sees the same estate.
DEMO_NOW = __import__("datetime").datetime(2026, 11, 20, 12, 0, tzinfo=__import__("datetime").UTC)


@pytest.fixture(scope="session")
async def backend():
    """The whole embedded backend (Postgres + gateway + demo data), once per session."""
    from opstui.backend.embedded import EmbeddedBackend

    embedded = EmbeddedBackend(ephemeral=True, demo_now=DEMO_NOW)
    await embedded.start()
    yield embedded
    await embedded.stop()


@pytest.fixture(scope="session")
def backend_info(backend):
    return backend.info


def demo_password(info, email: str) -> str:
    """A demo account's password: made per backend, never a published one."""
    return next(u["password"] for u in info.users if u["email"] == email)


def demo_user(info, role: str) -> dict:
    """The first demo user with `role`."""
    return next(u for u in info.users if u["role"] == role)


@pytest.fixture
async def sign_in(backend_info):
    """Factory: a real supabase-py AsyncClient signed in as a demo user (by email)."""
    from supabase import AsyncClientOptions, acreate_client

    clients = []

    async def _sign_in(email: str | None = None, *, options: dict | None = None):
        client = await acreate_client(
            backend_info.url, backend_info.anon_key, options=AsyncClientOptions(**(options or {}))
        )
        clients.append(client)
        if email is not None:
            password = next(u["password"] for u in backend_info.users if u["email"] == email)
            await client.auth.sign_in_with_password({"email": email, "password": password})
        return client

    yield _sign_in
    for client in clients:
        try:
            await client.realtime.close()
        except Exception:  # noqa: BLE001 - best-effort teardown
            pass
