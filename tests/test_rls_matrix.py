"""The RLS matrix through the real client: for every demo user and every table, what
supabase-py returns equals what the policies should allow, computed here from the
raw data (read as superuser) with rules written independently of the SQL."""

from __future__ import annotations

import uuid
from collections import defaultdict

import psycopg
import pytest
from postgrest.exceptions import APIError
from psycopg.rows import dict_row

from tests.conftest import demo_user

GLOBAL_TABLES = {"subscription_tiers", "resource_limits", "role_templates"}
TEAM_TABLES = {
    "team_members",
    "permission_matrix",
    "hosts",
    "repositories",
    "cicd_providers",
    "cicd_jobs",
    "deployments",
    "ssh_audit",
    "cicd_builds",
    "cicd_build_logs",
    "cicd_provider_tasks",
    "deployment_runs",
    "deployment_run_hosts",
    "deployment_run_logs",
}


def _rows(db_url: str, sql: str, params: tuple = ()) -> list[dict]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        cur = conn.cursor(row_factory=dict_row).execute(sql, params)
        return cur.fetchall() if cur.description else []


def _public_tables(db_url: str) -> list[str]:
    return [
        r["table_name"]
        for r in _rows(
            db_url,
            "select table_name from information_schema.tables"
            " where table_schema = 'public' and table_type = 'BASE TABLE' order by 1",
        )
    ]


def _key(table: str, row: dict) -> str:
    if table == "team_members":
        return f"{row['team_id']}|{row['profile_id']}"
    if table == "profile_repository_pins":
        return f"{row['profile_id']}|{row['repository_id']}"
    if table == "deployment_run_hosts":
        return f"{row['run_id']}|{row['host_id']}"
    return str(row["id"])


@pytest.fixture(scope="module", autouse=True)
def run_history(backend_info):
    """One finished run (with its hosts and a log line) per team, unless the demo seeds runs.
    Each mirrors its deployment's last start and end, so the deployment does not change."""
    db = backend_info.db_url
    if _rows(db, "select 1 from deployment_runs limit 1"):
        yield
        return
    seeded = _rows(
        db,
        """
        with pick as (
          select distinct on (d.team_id) d.* from deployments d
          where d.status = 'success' and d.started_at is not null and cardinality(d.host_ids) > 0
          order by d.team_id, d.created_at
        ), run as (
          insert into deployment_runs (deployment_id, team_id, tenant_id, number, trigger, status,
            started_at, finished_at, spec)
          select p.id, p.team_id, p.tenant_id, 1, 'manual', 'succeeded', p.started_at,
                 p.completed_at, jsonb_build_object('host_ids', to_jsonb(p.host_ids::text[]))
          from pick p
          returning id, team_id, spec
        ), host as (
          insert into deployment_run_hosts (run_id, host_id, status, exit_code, team_id)
          select r.id, h.id, 'succeeded', 0, r.team_id
          from run r cross join lateral jsonb_array_elements_text(r.spec -> 'host_ids') as h(id)
        ), log as (
          insert into deployment_run_logs (run_id, seq, stream, text, team_id)
          select r.id, 1, 'system', 'done', r.team_id from run r
        )
        select id from run
        """,
    )
    assert seeded
    yield
    _rows(db, "delete from deployment_runs where id = any(%s)", ([r["id"] for r in seeded],))


def expected_visible(db_url: str, user_id: str | None) -> dict[str, set[str]]:
    """What each table should show this user, from the seed's intent."""
    data = {t: _rows(db_url, f"select * from public.{t}") for t in _public_tables(db_url)}  # noqa: S608
    if user_id is None:  # anon
        return {t: set() for t in data}
    me = next(p for p in data["profiles"] if str(p["id"]) == user_id)
    tenant = me["tenant_id"]
    my_teams = {str(m["team_id"]) for m in data["team_members"] if str(m["profile_id"]) == user_id}
    deployment_team = {str(d["id"]): str(d["team_id"]) for d in data["deployments"]}
    repo_providers = {
        str(r["provider_id"]) for r in data["repositories"] if str(r["team_id"]) in my_teams
    }
    visible_repos = {str(r["id"]) for r in data["repositories"] if str(r["team_id"]) in my_teams}

    rules = {
        "tenants": lambda r: r["id"] == tenant,
        "profiles": lambda r: r["tenant_id"] == tenant,
        "teams": lambda r: r["tenant_id"] == tenant,
        "deployment_cicd_mappings": lambda r: (
            deployment_team.get(str(r["deployment_id"])) in my_teams
        ),
        "profile_repository_pins": lambda r: (
            str(r["profile_id"]) == user_id and str(r["repository_id"]) in visible_repos
        ),
        "git_providers": lambda r: (
            str(r["profile_id"]) == user_id or str(r["id"]) in repo_providers
        ),
    }
    for table in TEAM_TABLES:
        rules[table] = lambda r: str(r["team_id"]) in my_teams
    for table in GLOBAL_TABLES:
        rules[table] = lambda r: True
    missing = set(data) - set(rules)
    assert not missing, f"no visibility rule written for {missing}: add one to this test"
    return {t: {_key(t, r) for r in rows if rules[t](r)} for t, rows in data.items()}


async def _visible_through_client(client, tables: list[str]) -> dict[str, set[str]]:
    seen: dict[str, set[str]] = defaultdict(set)
    for table in tables:
        response = await client.table(table).select("*").execute()
        seen[table] = {_key(table, r) for r in response.data}
    return seen


async def test_every_user_sees_exactly_what_the_policies_allow(backend_info, sign_in):
    db = backend_info.db_url
    tables = _public_tables(db)
    assert {"hosts", "deployments", "profiles", "git_providers"} <= set(tables)
    nonempty_somewhere = set()
    for user in backend_info.users:
        client = await sign_in(user["email"])
        session = await client.auth.get_session()
        expected = expected_visible(db, session.user.id)
        seen = await _visible_through_client(client, tables)
        for table in tables:
            assert seen[table] == expected[table], f"{user['email']} on {table}"
            if expected[table]:
                nonempty_somewhere.add(table)
        # Isolation is not vacuous: this user sees something, and not everything.
        total = sum(len(r) for r in expected.values())
        everything = sum(len(_rows(db, f"select 1 from public.{t}")) for t in tables)  # noqa: S608
        assert 0 < total < everything
    # Every table is exercised with real rows for at least one user.
    assert nonempty_somewhere == set(tables)


async def test_anon_is_refused_every_table(backend_info, sign_in):
    # anon holds no grant on any table (Supabase grants nothing by default), so every
    # read is refused outright rather than filtered to nothing.
    client = await sign_in()
    tables = _public_tables(backend_info.db_url)
    for table in tables:
        with pytest.raises(APIError) as refused:
            await client.table(table).select("*").execute()
        assert refused.value.code == "42501", table


def _team(db: str, name: str) -> str:
    return str(_rows(db, "select id from teams where name = %s", (name,))[0]["id"])


@pytest.mark.parametrize("returning", ["minimal", "representation"])
async def test_cross_tenant_and_cross_team_inserts_are_refused(backend_info, sign_in, returning):
    db = backend_info.db_url
    # dev@acme may insert hosts in Platform and Payments, but not in Globex's Core.
    developer = await sign_in(demo_user(backend_info, "developer")["email"])
    name = f"planted-{uuid.uuid4().hex[:8]}"
    with pytest.raises(APIError) as refused:
        await (
            developer.table("hosts")
            .insert(
                {"name": name, "type": "ssh", "ip": "127.0.2.200", "team_id": _team(db, "Core")},
                returning=returning,
            )
            .execute()
        )
    assert refused.value.code == "42501"
    assert not _rows(db, "select 1 from hosts where name = %s", (name,)), "nothing was planted"

    # A viewer in Platform cannot insert into their own team either (no can_insert).
    reader = await sign_in(demo_user(backend_info, "viewer")["email"])
    with pytest.raises(APIError):
        await (
            reader.table("hosts")
            .insert(
                {
                    "name": name,
                    "type": "ssh",
                    "ip": "127.0.2.201",
                    "team_id": _team(db, "Platform"),
                },
                returning=returning,
            )
            .execute()
        )
    assert not _rows(db, "select 1 from hosts where name = %s", (name,))


async def test_cross_tenant_updates_and_deletes_affect_nothing(backend_info, sign_in):
    db = backend_info.db_url
    foreign = _rows(
        db, "select id, name from hosts where team_id = %s limit 1", (_team(db, "Core"),)
    )[0]
    admin = await sign_in("admin@acme.test")
    updated = (
        await admin.table("hosts").update({"name": "hijacked"}).eq("id", foreign["id"]).execute()
    )
    assert updated.data == []
    deleted = await admin.table("hosts").delete().eq("id", foreign["id"]).execute()
    assert deleted.data == []
    still = _rows(db, "select name from hosts where id = %s", (foreign["id"],))
    assert still == [{"name": foreign["name"]}]


async def test_update_own_and_delete_own_through_the_client(backend_info, sign_in):
    db = backend_info.db_url
    contrib = await sign_in("contrib@acme.test")
    me = (await contrib.auth.get_session()).user.id
    platform = _team(db, "Platform")
    created = (
        await contrib.table("hosts")
        .insert(
            {
                "name": f"mine-{uuid.uuid4().hex[:6]}",
                "type": "ssh",
                "ip": "127.0.2.210",
                "team_id": platform,
            }
        )
        .execute()
    )
    mine = created.data[0]
    assert mine["creator_id"] == me
    try:
        others = _rows(
            db,
            "select id, name from hosts where team_id = %s and creator_id <> %s limit 1",
            (platform, me),
        )[0]
        renamed = (
            await contrib.table("hosts")
            .update({"description": "edited"})
            .eq("id", mine["id"])
            .execute()
        )
        assert renamed.data and renamed.data[0]["description"] == "edited"
        refused = (
            await contrib.table("hosts")
            .update({"description": "x"})
            .eq("id", others["id"])
            .execute()
        )
        assert refused.data == []
        not_deleted = await contrib.table("hosts").delete().eq("id", others["id"]).execute()
        assert not_deleted.data == []
        assert _rows(db, "select 1 from hosts where id = %s", (others["id"],))
        gone = await contrib.table("hosts").delete().eq("id", mine["id"]).execute()
        assert [r["id"] for r in gone.data] == [mine["id"]]
    finally:
        _rows(db, "delete from hosts where id = %s", (mine["id"],))


async def test_resource_limit_through_the_client(backend_info, sign_in):
    db = backend_info.db_url
    core = _team(db, "Core")
    limit = _rows(
        db,
        "select rl.max_count from resource_limits rl join tenants t on t.subscription_tier_id = rl.tier_id"
        " join teams tm on tm.tenant_id = t.id where tm.id = %s and rl.resource_type = 'hosts'",
        (core,),
    )[0]["max_count"]
    used = _rows(
        db,
        "select count(*) as n from hosts h join teams t on t.id = h.team_id"
        " where t.tenant_id = (select tenant_id from teams where id = %s)",
        (core,),
    )[0]["n"]
    ops = await sign_in("ops@globex.test")
    prefix = f"limit-{uuid.uuid4().hex[:6]}"
    try:
        for i in range(limit - used):
            await (
                ops.table("hosts")
                .insert(
                    {"name": f"{prefix}-{i}", "type": "ssh", "ip": "127.0.2.220", "team_id": core},
                    returning="minimal",
                )
                .execute()
            )
        with pytest.raises(APIError) as over:
            await (
                ops.table("hosts")
                .insert(
                    {"name": f"{prefix}-over", "type": "ssh", "ip": "127.0.2.221", "team_id": core},
                    returning="minimal",
                )
                .execute()
            )
        assert over.value.code == "P0001"
        assert (
            "resource limit reached" in over.value.message
            and f"{limit} hosts" in over.value.message
        )
    finally:
        _rows(db, "delete from hosts where name like %s", (f"{prefix}-%",))
