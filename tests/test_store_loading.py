"""The store's snapshot of a big table: parallel key ranges, exact under concurrent changes."""

from __future__ import annotations

import asyncio
import time

import psycopg
import pytest

from opstui import store as store_module
from opstui.session import Target, create_client, sign_in
from opstui.store import PageLoaded, Store
from tests.conftest import DEMO_NOW

BULK = 12_000


@pytest.fixture(scope="module")
async def big_team():
    """A backend of its own whose first team (and its admin) has BULK extra deployments."""
    from opstui.backend.embedded import EmbeddedBackend

    backend = EmbeddedBackend(ephemeral=True, demo_now=DEMO_NOW, ssh_demo_hosts=False)
    info = await backend.start()
    with psycopg.connect(info.db_url, autocommit=True) as conn:
        emails = [user["email"] for user in info.users]
        team, tenant, email = conn.execute(
            "select t.id, t.tenant_id, p.email from teams t"
            " join team_members m on m.team_id = t.id and m.role = 'admin'"
            " join profiles p on p.id = m.profile_id"
            " where p.email = any(%s) order by t.name, p.email limit 1",
            (emails,),
        ).fetchone()
        # The demo tiers cap deployments; lift the cap for this backend's bulk rows.
        conn.execute(
            "update resource_limits set is_unlimited = true where resource_type = 'deployments'"
        )
        with conn.transaction():
            # A bulk load: no resource-limit or change-capture triggers (superuser only).
            conn.execute("set local session_replication_role = replica")
            conn.execute(
                "insert into deployments (name, team_id, tenant_id, status, schedule_type)"
                " select 'bulk-' || g, %s, %s, 'success', 'now' from generate_series(1, %s) g",
                (team, tenant, BULK),
            )
    password = next(u["password"] for u in info.users if u["email"] == email)
    yield info, str(team), email, password
    await backend.stop()


async def _store(info, email: str, password: str) -> Store:
    client = await create_client(Target("test", info.url, info.anon_key), persist=False)
    await sign_in(client, email, password)
    return Store(client)


def _watch_pages(store: Store) -> dict:
    """Count the deployments pages on the client's own HTTP session: sizes and concurrency."""
    seen = {"in_flight": 0, "most_in_flight": 0, "limits": []}
    session = store.client.postgrest.session

    async def sent(request) -> None:
        if request.url.path.endswith("/deployments") and "limit" in request.url.params:
            seen["in_flight"] += 1
            seen["most_in_flight"] = max(seen["most_in_flight"], seen["in_flight"])
            seen["limits"].append(int(request.url.params["limit"]))
            request.extensions["counted"] = True

    async def answered(response) -> None:
        if response.request.extensions.get("counted"):
            await response.aread()
            seen["in_flight"] -= 1

    session.event_hooks["request"].append(sent)
    session.event_hooks["response"].append(answered)
    return seen


def _db_keys(info, team: str) -> set[str]:
    with psycopg.connect(info.db_url) as conn:
        rows = conn.execute("select id from deployments where team_id = %s", (team,))
        return {str(row[0]) for row in rows}


async def _until(predicate, timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out: {what}"
        await asyncio.sleep(0.02)


async def test_a_big_table_loads_in_big_pages_several_at_once(big_team):
    info, team, email, password = big_team
    store = await _store(info, email, password)
    pages = _watch_pages(store)
    events = []
    store.listen(
        lambda e: events.append(e) if isinstance(e, PageLoaded) and e.table == "deployments" else 0
    )
    try:
        await store.open(team)
        await _until(lambda: store.is_complete("deployments"), what="complete")
        # The first page is small and painted on its own; the rest come in big pages,
        # several in flight at once, rather than one 1,000-row page after another.
        assert pages["limits"][0] == store_module.FIRST_PAGE_SIZE
        assert not events[0].complete and events[0].rows == store_module.FIRST_PAGE_SIZE
        assert min(pages["limits"][1:]) > 1000
        assert pages["most_in_flight"] >= 2
        assert len(pages["limits"]) < BULK / 1000
        assert set(store.tables["deployments"].rows) == _db_keys(info, team)
    finally:
        await store.close()
        await store.client.realtime.close()


async def test_rows_changed_during_a_parallel_load_end_up_as_in_the_database(big_team):
    info, team, email, password = big_team
    store = await _store(info, email, password)
    pages = _watch_pages(store)
    with psycopg.connect(info.db_url, autocommit=True) as conn:
        tenant = conn.execute("select tenant_id from teams where id = %s", (team,)).fetchone()[0]
        victims = [
            str(row[0])
            for row in conn.execute(
                "select id from deployments where team_id = %s and name like 'bulk-%%'"
                " order by id desc limit 40",
                (team,),
            )
        ]
    try:
        opening = asyncio.create_task(store.open(team))
        await _until(lambda: len(pages["limits"]) >= 2, what="the parallel pages")
        # While the ranges load: new rows, deleted rows and changed rows, committed one by
        # one through the normal path, so realtime reports each.
        with psycopg.connect(info.db_url, autocommit=True) as conn:
            for number, victim in enumerate(victims):
                if number % 2:
                    conn.execute("delete from deployments where id = %s", (victim,))
                else:
                    conn.execute(
                        "update deployments set status = 'failed' where id = %s", (victim,)
                    )
                conn.execute(
                    "insert into deployments (name, team_id, tenant_id, status, schedule_type)"
                    " values (%s, %s, %s, 'pending', 'now')",
                    (f"during-load-{number}", team, tenant),
                )
        await opening
        await _until(lambda: store.is_complete("deployments"), what="complete")
        expected = _db_keys(info, team)
        await _until(
            lambda: set(store.tables["deployments"].rows) == expected, what="converged rows"
        )
        failed = {k for k, r in store.tables["deployments"].rows.items() if r["status"] == "failed"}
        assert set(victims[::2]) <= failed
    finally:
        await store.close()
        await store.client.realtime.close()


async def test_a_server_that_caps_replies_below_the_page_size_loses_no_row(big_team, monkeypatch):
    """Supabase cuts every reply at `max_rows` (1000 by default) and says nothing.

    The cap is simulated on the client: each reply past the first is cut to its first
    700 rows, as a server with max_rows = 700 would send them (ordered by id).
    """
    info, team, email, password = big_team
    store = await _store(info, email, password)
    fetch = store._fetch

    async def capped(query):
        return (await fetch(query))[:700]

    store._fetch = capped
    try:
        await store.open(team)
        await _until(lambda: store.is_complete("deployments"), what="complete")
        assert set(store.tables["deployments"].rows) == _db_keys(info, team)
    finally:
        await store.close()
        await store.client.realtime.close()
