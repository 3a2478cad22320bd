"""A secret changed by upsert through supabase-py (PostgREST's merge-duplicates) wins, and
never comes back in the row. The SQL-level cases, CI/CD included, are in test_rls_sql.py."""

from __future__ import annotations

import uuid

import psycopg

from tests.conftest import demo_user


def _team(db_url: str, name: str) -> str:
    with psycopg.connect(db_url) as conn:
        return str(conn.execute("select id from teams where name = %s", (name,)).fetchone()[0])


async def test_host_password_changed_by_upsert_wins(backend_info, sign_in):
    dev = await sign_in(demo_user(backend_info, "developer")["email"])
    host = str(uuid.uuid4())
    row = {
        "id": host,
        "name": f"upsert-{host[:6]}",
        "type": "ssh",
        "ip": "127.0.0.9",
        "team_id": _team(backend_info.db_url, "Platform"),
    }
    try:
        await dev.table("hosts").insert({**row, "password": "first"}).execute()
        upserted = await dev.table("hosts").upsert({**row, "password": "second"}).execute()
        assert upserted.data[0]["password"] is None
        secret = await dev.rpc("get_host_secret", {"p_host_id": host}).execute()
        assert secret.data == "second"
    finally:
        with psycopg.connect(backend_info.db_url, autocommit=True) as conn:
            conn.execute("delete from hosts where id = %s", (host,))


async def test_git_tokens_changed_by_upsert_win(backend_info, sign_in):
    admin = await sign_in(demo_user(backend_info, "admin")["email"])
    provider = str(uuid.uuid4())
    row = {"id": provider, "type": "github", "name": f"gh-{provider[:6]}"}
    try:
        await admin.table("git_providers").insert({**row, "access_token": "a1"}).execute()
        upserted = await (
            admin.table("git_providers").upsert({**row, "access_token": "a2"}).execute()
        )
        assert upserted.data[0]["access_token"] is None
        tokens = await admin.rpc("get_git_provider_tokens", {"p_provider_id": provider}).execute()
        assert tokens.data["access_token"] == "a2"
    finally:
        with psycopg.connect(backend_info.db_url, autocommit=True) as conn:
            conn.execute("delete from git_providers where id = %s", (provider,))
