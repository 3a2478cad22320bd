"""The store on its own (no UI): paging, token refresh reaching realtime, recovery."""

from __future__ import annotations

import asyncio
import time
import uuid

import jwt
import psycopg
import pytest

from opstui.session import Target, create_client, sign_in
from opstui.store import ConnectionChanged, ConnectionState, PageLoaded, RowChanged, Store
from tests.conftest import DEMO_NOW, demo_password

SHORT_TTL = 15  # seconds; supabase-py refreshes 10 s before expiry


@pytest.fixture(scope="module")
async def short_lived_backend():
    """A backend whose access tokens live 15 s, so refreshes happen during a test."""
    from opstui.backend.embedded import EmbeddedBackend

    backend = EmbeddedBackend(
        ephemeral=True, demo_now=DEMO_NOW, access_token_ttl=SHORT_TTL, ssh_demo_hosts=False
    )
    await backend.start()
    yield backend
    await backend.stop()


async def _store(info, email: str) -> Store:
    client = await create_client(Target("test", info.url, info.anon_key), persist=False)
    await sign_in(client, email, demo_password(info, email))
    return Store(client)


async def _until(predicate, timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out: {what}"
        await asyncio.sleep(0.05)


async def test_token_refresh_reaches_realtime(short_lived_backend):
    info = short_lived_backend.info
    store = await _store(info, "admin@acme.test")
    events = []
    store.listen(events.append)
    try:
        await store.open()
        await _until(lambda: store.status.state is ConnectionState.LIVE, what="live")
        session = await store.client.auth.get_session()
        first_expiry = jwt.decode(session.access_token, options={"verify_signature": False})["exp"]
        # Past the first token's expiry the server would close a channel whose token
        # was never refreshed (contract §3); refreshed tokens keep it open.
        await _until(lambda: time.time() > first_expiry + 3, timeout=SHORT_TTL + 10, what="expiry")
        refreshed = await store.client.auth.get_session()
        assert refreshed.access_token != session.access_token, "the client refreshed"
        states = [e.status.state for e in events if isinstance(e, ConnectionChanged)]
        assert ConnectionState.RECONNECTING not in states, f"the channel dropped: {states}"
        name = f"after-refresh-{uuid.uuid4().hex[:6]}"
        with psycopg.connect(info.db_url, autocommit=True) as conn:
            conn.execute(
                "insert into hosts (name, type, ip, team_id) values (%s, 'ssh', '127.0.2.5', %s)",
                (name, store.team_id),
            )
        await _until(
            lambda: any(
                isinstance(e, RowChanged) and e.row and e.row["name"] == name for e in events
            ),
            what="a change after the refresh",
        )
    finally:
        await store.close()
        await store.client.realtime.close()


async def test_first_page_paints_before_the_rest_arrives(short_lived_backend):
    info = short_lived_backend.info
    with psycopg.connect(info.db_url, autocommit=True) as conn:
        team = conn.execute("select id from teams where name = 'Core'").fetchone()[0]
        tenant = conn.execute("select tenant_id from teams where id = %s", (team,)).fetchone()[0]
        # Globex's tier caps deployments; lift it for this test's bulk rows.
        conn.execute(
            "update resource_limits set is_unlimited = true where resource_type = 'deployments'"
        )
        conn.execute(
            "insert into deployments (name, team_id, tenant_id, status)"
            " select 'bulk-' || g, %s, %s, 'success' from generate_series(1, 1500) g",
            (team, tenant),
        )
    store = await _store(info, "ops@globex.test")
    pages = []
    store.listen(
        lambda e: (
            pages.append(e) if isinstance(e, PageLoaded) and e.table == "deployments" else None
        )
    )
    try:
        await store.open()
        await _until(lambda: store.is_complete("deployments"), what="complete")
        first, last = pages[0], pages[-1]
        assert not first.complete and first.rows == 200, "the first page is shown on its own"
        assert last.complete and last.rows == len(store.rows("deployments"))
        with psycopg.connect(info.db_url) as conn:
            expected = conn.execute(
                "select count(*) from deployments where team_id = %s", (team,)
            ).fetchone()[0]
        assert last.rows == expected >= 1500
    finally:
        await store.close()
        await store.client.realtime.close()
        with psycopg.connect(info.db_url, autocommit=True) as conn:
            conn.execute("delete from deployments where name like 'bulk-%'")
