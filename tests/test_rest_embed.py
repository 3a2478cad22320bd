"""Embedded resources (`select=*,repositories(name)`) through the real supabase-py client.

The module adds two repositories (one in Acme's Platform team, one in Globex's Core
team) and four deployments (three in Platform, one in Core), so the viewer of
Platform sees exactly what RLS lets them: another tenant's repository embeds as
null, another tenant's deployment is absent from an embedded list.
"""

from __future__ import annotations

import json
import uuid

import httpx
import psycopg
import psycopg.sql
import pytest
from postgrest.exceptions import APIError

PREFIX = f"embed-{uuid.uuid4().hex[:8]}"


def _db(info, query: str, params=()) -> list[tuple]:
    with psycopg.connect(info.db_url) as conn:
        return conn.execute(query, params).fetchall()


@pytest.fixture(scope="module")
def rows(backend_info):
    """repo/deployment names -> ids, created as superuser and removed afterwards."""
    teams = dict(_db(backend_info, "select name, id from public.teams"))
    provider = _db(backend_info, "select id from public.git_providers limit 1")[0][0]
    ids: dict[str, str] = {}
    with psycopg.connect(backend_info.db_url) as conn:
        for key, team in (("mine", "Platform"), ("theirs", "Core")):
            ids[f"repo-{key}"] = conn.execute(
                "insert into public.repositories (provider_id, provider_type, name, team_id)"
                " values (%s, 'github', %s, %s) returning id::text",
                (provider, f"{PREFIX}-repo-{key}", teams[team]),
            ).fetchone()[0]
        for key, team, repo in (
            ("a", "Platform", "repo-mine"),
            ("b", "Platform", "repo-theirs"),
            ("c", "Core", "repo-mine"),
            ("d", "Platform", "repo-mine"),
        ):
            ids[f"dep-{key}"] = conn.execute(
                "insert into public.deployments (name, repository_id, team_id, tenant_id)"
                " select %s, %s, t.id, t.tenant_id from public.teams t where t.id = %s"
                " returning id::text",
                (f"{PREFIX}-dep-{key}", ids[repo], teams[team]),
            ).fetchone()[0]
    yield ids
    with psycopg.connect(backend_info.db_url) as conn:
        conn.execute("delete from public.deployments where name like %s", (PREFIX + "%",))
        conn.execute("delete from public.repositories where name like %s", (PREFIX + "%",))


@pytest.fixture
async def viewer(sign_in):
    return await sign_in("viewer@acme.test")


@pytest.fixture
async def admin(sign_in):
    return await sign_in("admin@acme.test")


def _by_name(data) -> dict[str, dict]:
    return {r["name"].removeprefix(PREFIX + "-"): r for r in data}


async def test_many_to_one_embeds_an_object_and_rls_hides_another_tenants_row(rows, viewer):
    result = (
        await viewer.table("deployments")
        .select("id,name,repositories(name)")
        .like("name", f"{PREFIX}-*")
        .execute()
    )
    assert _by_name(result.data) == {
        "dep-a": {"id": rows["dep-a"], "name": f"{PREFIX}-dep-a",
                  "repositories": {"name": f"{PREFIX}-repo-mine"}},
        # the row exists, but the viewer may not read Globex's repository
        "dep-b": {"id": rows["dep-b"], "name": f"{PREFIX}-dep-b", "repositories": None},
        "dep-d": {"id": rows["dep-d"], "name": f"{PREFIX}-dep-d",
                  "repositories": {"name": f"{PREFIX}-repo-mine"}},
    }  # fmt: skip


async def test_inner_embed_drops_parents_without_a_visible_match(rows, viewer):
    result = (
        await viewer.table("deployments")
        .select("name,repositories!inner(name)")
        .like("name", f"{PREFIX}-*")
        .execute()
    )
    assert set(_by_name(result.data)) == {"dep-a", "dep-d"}


async def test_one_to_many_embeds_only_the_rows_rls_lets_through(rows, viewer, admin):
    mine = f"{PREFIX}-repo-mine"
    expected = [{"name": mine, "deployments": [{"name": f"{PREFIX}-dep-{k}"} for k in "ad"]}]
    for client in (viewer, admin):  # dep-c is Globex's: nobody at Acme sees it
        seen = await (
            client.table("repositories")
            .select("name,deployments(name)")
            .eq("name", mine)
            .order("name", foreign_table="deployments")
            .execute()
        )
        assert seen.data == expected


async def test_alias_filters_order_and_limit_on_embedded_resources(rows, admin):
    result = (
        await admin.table("deployments")
        .select("name,repo:repositories(name,id)")
        .like("name", f"{PREFIX}-*")
        .eq("repo.name", f"{PREFIX}-repo-mine")
        .order("name")
        .execute()
    )
    mine = {"name": f"{PREFIX}-repo-mine", "id": rows["repo-mine"]}
    assert [(r["name"][-5:], r["repo"]) for r in result.data] == [
        ("dep-a", mine),
        ("dep-b", None),  # the embed filter nulls the embed, it does not drop the parent
        ("dep-d", mine),
    ]
    result = (
        await admin.table("repositories")
        .select("name,deployments(name)")
        .like("name", f"{PREFIX}-*")
        .order("name", desc=True, foreign_table="deployments")
        .limit(1, foreign_table="deployments")
        .execute()
    )
    # Globex's repository is not visible to Acme's admin at all
    assert result.data == [
        {"name": f"{PREFIX}-repo-mine", "deployments": [{"name": f"{PREFIX}-dep-d"}]}
    ]


async def test_inner_with_an_embedded_filter_filters_the_parent(rows, admin):
    result = (
        await admin.table("deployments")
        .select("name,repositories!inner(name)")
        .like("name", f"{PREFIX}-*")
        .eq("repositories.name", f"{PREFIX}-repo-mine")
        .execute()
    )
    assert set(_by_name(result.data)) == {"dep-a", "dep-d"}
    # `repositories=not.is.null` is the same filter without `!inner`
    result = (
        await admin.table("deployments")
        .select("name,repositories(name)")
        .like("name", f"{PREFIX}-*")
        .not_.is_("repositories", "null")
        .execute()
    )
    assert set(_by_name(result.data)) == {"dep-a", "dep-d"}


async def test_nested_embeds_and_empty_embed_used_only_to_filter(rows, admin):
    result = (
        await admin.table("deployments")
        .select("name,repositories(name,teams(name)),teams!inner()")
        .eq("id", rows["dep-a"])
        .execute()
    )
    assert result.data == [
        {"name": f"{PREFIX}-dep-a",
         "repositories": {"name": f"{PREFIX}-repo-mine", "teams": {"name": "Platform"}}}
    ]  # fmt: skip


async def test_ambiguous_embeds_need_a_hint(rows, admin):
    with pytest.raises(APIError) as caught:
        await admin.table("deployments").select("name,profiles(full_name)").execute()
    assert caught.value.code == "PGRST201" and "profiles!" in caught.value.hint
    result = (
        await admin.table("deployments")
        .select("name,owner:profiles!user_id(id),by:profiles!deployments_creator_id_fkey(id)")
        .eq("id", rows["dep-a"])
        .execute()
    )
    assert set(result.data[0]) == {"name", "owner", "by"}


@pytest.mark.parametrize(
    "select",
    [
        "name,pg_roles(*)",
        "name,repositories(name::text as x from pg_roles)",
        'name,repositories("name) from pg_roles --")',
        "name,repositories!inner;select(name)",
        "name,repositories!pg_roles(name)",
        "name,repositories(name),repositories.name",
    ],
)
async def test_hostile_names_in_embeds_are_refused(rows, admin, select):
    with pytest.raises(APIError) as caught:
        await admin.table("deployments").select(select).execute()
    assert caught.value.code in ("PGRST100", "PGRST200", "42703")


async def test_writes_return_embeds_with_representation(rows, backend_info):
    async with httpx.AsyncClient() as http:
        resp = await http.patch(
            f"{backend_info.url}/rest/v1/deployments",
            params={"id": f"eq.{rows['dep-a']}", "select": "description,repositories(name)"},
            content=json.dumps({"description": "patched"}),
            headers={
                "apikey": backend_info.anon_key,
                "Authorization": f"Bearer {backend_info.service_role_key}",
                "Content-Type": "application/json",
                "Prefer": "return=representation",
            },
        )
    assert resp.status_code == 200, resp.text
    assert resp.json() == [
        {"description": "patched", "repositories": {"name": f"{PREFIX}-repo-mine"}}
    ]


async def test_many_to_many_through_a_junction_table(admin, backend_info):
    members = {
        email
        for (email,) in _db(
            backend_info,
            "select p.email from public.team_members m join public.profiles p on p.id = m.profile_id"
            " join public.teams t on t.id = m.team_id where t.name = 'Platform'",
        )
    }
    # teams.created_by also points at profiles, so the junction must be named
    with pytest.raises(APIError) as caught:
        await admin.table("teams").select("name,profiles(email)").execute()
    assert caught.value.code == "PGRST201" and "profiles!team_members" in caught.value.hint
    result = (
        await admin.table("teams")
        .select("name,profiles!team_members(email),creator:profiles!created_by(email)")
        .eq("name", "Platform")
        .order("email", foreign_table="profiles")
        .execute()
    )
    assert result.data == [
        {
            "name": "Platform",
            "profiles": [{"email": e} for e in sorted(members)],
            "creator": {"email": "admin@acme.test"},
        }
    ]
    with pytest.raises(APIError) as caught:  # not a junction: its key is its own id
        await admin.table("teams").select("profiles!permission_matrix(email)").execute()
    assert caught.value.code == "PGRST200"


async def test_spread_and_order_by_a_related_column(rows, viewer):
    result = (
        await viewer.table("deployments")
        .select("name,...repositories(repo:name)")
        .like("name", f"{PREFIX}-*")
        .order("repositories(name)", desc=True, nullsfirst=True)
        .order("name")
        .execute()
    )
    # dep-b's repository is Globex's: invisible, so null (and first, as asked)
    assert [(r["name"][-5:], r["repo"]) for r in result.data] == [
        ("dep-b", None),
        ("dep-a", f"{PREFIX}-repo-mine"),
        ("dep-d", f"{PREFIX}-repo-mine"),
    ]
    with pytest.raises(APIError) as caught:  # a spread needs a to-one relationship
        await viewer.table("repositories").select("name,...deployments(name)").execute()
    assert caught.value.code == "PGRST119"


async def test_a_set_returning_function_s_rows_take_embeds(rows, viewer, backend_info):
    fn = f"embed_fn_{uuid.uuid4().hex[:8]}"
    ident = psycopg.sql.Identifier("public", fn)
    with psycopg.connect(backend_info.db_url) as conn:
        conn.execute(
            psycopg.sql.SQL(
                "create function {}() returns setof public.deployments stable"
                " language sql as $$ select * from public.deployments $$"
            ).format(ident)
        )
        conn.execute(
            psycopg.sql.SQL("grant execute on function {}() to authenticated").format(ident)
        )
    try:
        result = (
            await viewer.rpc(fn)
            .select("name,repositories(name)")
            .like("name", f"{PREFIX}-*")
            .order("name")
            .execute()
        )
        mine = {"name": f"{PREFIX}-repo-mine"}
        assert [(r["name"][-5:], r["repositories"]) for r in result.data] == [
            ("dep-a", mine),
            ("dep-b", None),
            ("dep-d", mine),
        ]
    finally:
        with psycopg.connect(backend_info.db_url) as conn:
            conn.execute(psycopg.sql.SQL("drop function {}()").format(ident))
