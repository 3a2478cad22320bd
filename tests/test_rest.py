"""/rest/v1 through the real supabase-py client, against the real gateway and Postgres.

Reads use rows this module creates (hosts named `rest-<random>-…` in the
Platform team, written with the service role) so expectations are exact; RLS
tests use the demo data. Every row written here is deleted again.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import httpx
import jwt
import psycopg
import pytest
from postgrest.exceptions import APIError
from psycopg import sql
from supabase import acreate_client

from tests.conftest import demo_user

PREFIX = f"rest-{uuid.uuid4().hex[:8]}"

# name suffix -> (port, description)
ROWS = {
    "a": (22, "plain"),
    "b": (80, "web, front"),
    "c,d": (443, 'quoted "name"'),
    "e": (8080, None),
    "f": (None, "no port"),
    "G": (2222, "Upper"),
}


def names(data) -> set[str]:
    return {r["name"].removeprefix(PREFIX + "-") for r in data}


def db_rows(info, query: str, params=()) -> list[tuple]:
    with psycopg.connect(info.db_url) as conn:
        return conn.execute(query, params).fetchall()


@pytest.fixture(scope="module")
def team_ids(backend_info) -> dict[str, str]:
    return dict(db_rows(backend_info, "select name, id::text from public.teams"))


@pytest.fixture(scope="module")
async def service(backend_info):
    return await acreate_client(backend_info.url, backend_info.service_role_key)


@pytest.fixture(scope="module")
async def hosts(service, team_ids, backend_info):
    """Six hosts with known ports/descriptions in Platform, removed afterwards."""
    rows = [
        {
            "name": f"{PREFIX}-{suffix}",
            "type": "ssh",
            "ip": f"10.9.0.{i}",
            "port": port,
            "description": desc,
            "team_id": team_ids["Platform"],
        }
        for i, (suffix, (port, desc)) in enumerate(ROWS.items())
    ]
    created = await service.table("hosts").insert(rows).execute()
    assert len(created.data) == len(ROWS)
    yield {r["name"].removeprefix(PREFIX + "-"): r for r in created.data}
    with psycopg.connect(backend_info.db_url) as conn:
        conn.execute("delete from public.hosts where name like %s", (PREFIX + "%",))


@pytest.fixture
async def admin(sign_in, backend_info):
    return await sign_in(demo_user(backend_info, "admin")["email"])


def mine(client):
    """A fresh builder over this module's hosts only."""
    return client.table("hosts").select("*").like("name", f"{PREFIX}-*")


# -- filters -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "apply,expected",
    [
        (lambda q: q.eq("port", 80), {"b"}),
        (lambda q: q.neq("port", 80), {"a", "c,d", "e", "G"}),  # NULL is neither = nor <>
        (lambda q: q.gt("port", 443), {"e", "G"}),
        (lambda q: q.gte("port", 443), {"c,d", "e", "G"}),
        (lambda q: q.lt("port", 443), {"a", "b"}),
        (lambda q: q.lte("port", 443), {"a", "b", "c,d"}),
        (lambda q: q.in_("port", [22, 8080, 9999]), {"a", "e"}),
        (lambda q: q.in_("name", [f"{PREFIX}-c,d", f"{PREFIX}-b"]), {"c,d", "b"}),
        (lambda q: q.in_("description", ['quoted "name"', "web, front"]), {"c,d", "b"}),
        (lambda q: q.is_("port", None), {"f"}),
        (lambda q: q.not_.is_("port", None), {"a", "b", "c,d", "e", "G"}),
        (lambda q: q.is_("description", "null"), {"e"}),
        (lambda q: q.like("description", "*o*"), {"b", "c,d", "f"}),
        (lambda q: q.like("name", "*-g"), set()),
        (lambda q: q.ilike("name", "*-g"), {"G"}),
        (lambda q: q.not_.eq("port", 22), {"b", "c,d", "e", "G"}),
        (lambda q: q.not_.in_("port", [22, 80]), {"c,d", "e", "G"}),
        (lambda q: q.or_("port.eq.22,port.is.null"), {"a", "f"}),
        (lambda q: q.or_("port.eq.22,and(port.gt.100,port.lt.3000)"), {"a", "c,d", "G"}),
        (lambda q: q.or_('description.eq."web, front",port.eq.8080'), {"b", "e"}),
        (
            lambda q: q.or_("port.in.(22,80),not.and(port.gt.0,description.neq.Upper)"),
            {"a", "b", "G"},
        ),
        (lambda q: q.not_.or_("port.lt.1000,port.is.null"), {"e", "G"}),
    ],
    ids=lambda v: "" if callable(v) else ",".join(sorted(v)) or "none",
)
async def test_filters_select_exactly_the_matching_rows(hosts, admin, apply, expected):
    result = await apply(mine(admin)).execute()
    assert names(result.data) == expected


async def test_select_list_alias_and_cast(hosts, admin):
    result = (
        await admin.table("hosts")
        .select("name,p:port,port_text:port::text")
        .eq("name", f"{PREFIX}-a")
        .execute()
    )
    assert result.data == [{"name": f"{PREFIX}-a", "p": 22, "port_text": "22"}]


async def test_order_limit_offset_and_range(hosts, admin):
    ordered = await mine(admin).order("port", desc=True, nullsfirst=True).execute()
    assert [r["port"] for r in ordered.data] == [None, 8080, 2222, 443, 80, 22]
    page = await mine(admin).order("port").limit(2).offset(1).execute()
    assert [r["port"] for r in page.data] == [80, 443]
    ranged = await mine(admin).order("port").order("name").range(3, 4).execute()
    assert [r["port"] for r in ranged.data] == [2222, 8080]


async def test_count_exact_with_range(hosts, admin):
    result = await (
        admin.table("hosts")
        .select("name", count="exact")
        .like("name", f"{PREFIX}-*")
        .order("name")
        .range(0, 1)
        .execute()
    )
    assert result.count == len(ROWS)
    assert len(result.data) == 2
    empty = (
        await admin.table("hosts").select("*", count="exact").eq("name", "no-such-host").execute()
    )
    assert (empty.count, empty.data) == (0, [])


async def test_content_range_and_head(hosts, backend_info, admin):
    session = await admin.auth.get_session()
    headers = _headers(backend_info, session.access_token) | {"Prefer": "count=exact"}
    url = f"{backend_info.url}/rest/v1/hosts?name=like.{PREFIX}-*&order=name&offset=2&limit=3"
    async with httpx.AsyncClient() as http:
        got = await http.get(url, headers=headers)
        head = await http.head(url, headers=headers)
    assert got.status_code == 200
    assert got.headers["Content-Range"] == f"2-4/{len(ROWS)}"
    assert got.headers["Content-Type"].startswith("application/json")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["Content-Range"] == f"2-4/{len(ROWS)}"


async def test_single_and_maybe_single(hosts, admin):
    one = await mine(admin).eq("port", 443).single().execute()
    assert one.data["name"] == f"{PREFIX}-c,d" and one.data["description"] == 'quoted "name"'
    with pytest.raises(APIError) as none:
        await mine(admin).eq("port", 1).single().execute()
    assert none.value.code == "PGRST116"
    assert none.value.details == "The result contains 0 rows"
    with pytest.raises(APIError) as many:
        await mine(admin).single().execute()
    assert many.value.code == "PGRST116" and "6 rows" in many.value.details
    assert await mine(admin).eq("port", 1).maybe_single().execute() is None


# -- RLS ---------------------------------------------------------------------------------------


async def test_rls_scopes_reads_to_the_callers_teams(hosts, sign_in, backend_info, team_ids):
    expected = {
        r[0]
        for r in db_rows(
            backend_info,
            "select name from public.hosts where team_id = %s",
            (team_ids["Platform"],),
        )
    }
    viewer = await sign_in(demo_user(backend_info, "viewer")["email"])  # Platform only
    seen = await viewer.table("hosts").select("name,team_id").execute()
    assert {r["name"] for r in seen.data} == expected
    globex = next(u for u in backend_info.users if u["email"].endswith("@globex.test"))
    other = await sign_in(globex["email"])
    theirs = await other.table("hosts").select("name").like("name", f"{PREFIX}-*").execute()
    assert theirs.data == []
    anon = await sign_in()
    with pytest.raises(APIError) as refused:  # anon has no grant on any table, as on Supabase
        await anon.table("hosts").select("*").execute()
    assert refused.value.code == "42501"


# -- writes ------------------------------------------------------------------------------------


def _host(team_id: str, suffix: str, **extra) -> dict:
    return {
        "name": f"{PREFIX}-w-{suffix}",
        "type": "ssh",
        "ip": "127.9.1.1",
        "team_id": team_id,
        **extra,
    }


async def test_insert_update_delete_as_a_permitted_user(hosts, admin, team_ids, backend_info):
    platform = team_ids["Platform"]
    created = await admin.table("hosts").insert(_host(platform, "crud", port=2200)).execute()
    assert len(created.data) == 1
    row = created.data[0]
    assert row["port"] == 2200 and row["status"] == "pending"  # column default applied
    user = await admin.auth.get_user()
    assert row["creator_id"] == user.user.id  # default auth.uid() saw the caller's claims

    updated = (
        await admin.table("hosts")
        .update({"port": 2201, "description": "moved"})
        .eq("id", row["id"])
        .execute()
    )
    assert [(r["id"], r["port"], r["description"]) for r in updated.data] == [
        (row["id"], 2201, "moved")
    ]
    assert db_rows(backend_info, "select port from public.hosts where id = %s", (row["id"],)) == [
        (2201,)
    ]

    deleted = await admin.table("hosts").delete().eq("id", row["id"]).execute()
    assert [r["id"] for r in deleted.data] == [row["id"]]
    assert db_rows(backend_info, "select 1 from public.hosts where id = %s", (row["id"],)) == []


async def test_insert_returning_minimal_and_bulk(hosts, admin, team_ids, backend_info):
    platform = team_ids["Platform"]
    minimal = (
        await admin.table("hosts").insert(_host(platform, "min"), returning="minimal").execute()
    )
    assert minimal.data == []
    assert db_rows(
        backend_info, "select count(*) from public.hosts where name = %s", (f"{PREFIX}-w-min",)
    ) == [(1,)]

    bulk = (
        await admin.table("hosts")
        .insert(
            [_host(platform, "bulk1", port=1), _host(platform, "bulk2", description="only here")]
        )
        .execute()
    )
    assert sorted((r["name"][-5:], r["port"], r["description"]) for r in bulk.data) == [
        ("bulk1", 1, None),
        ("bulk2", None, "only here"),  # missing key -> NULL
    ]
    # missing=default: the absent `status` takes the column default instead of NULL
    with_default = (
        await admin.table("hosts")
        .insert(
            [_host(platform, "def1", status="online"), _host(platform, "def2")],
            default_to_null=False,
        )
        .execute()
    )
    assert sorted((r["name"][-4:], r["status"]) for r in with_default.data) == [
        ("def1", "online"),
        ("def2", "pending"),
    ]
    await admin.table("hosts").delete().like("name", f"{PREFIX}-w-*").execute()
    assert db_rows(
        backend_info, "select count(*) from public.hosts where name like %s", (f"{PREFIX}-w-%",)
    ) == [(0,)]


async def test_upsert_merge_and_ignore(hosts, admin, team_ids, backend_info):
    platform = team_ids["Platform"]
    row = (await admin.table("hosts").insert(_host(platform, "ups", port=10)).execute()).data[0]
    try:
        merged = (
            await admin.table("hosts")
            .upsert({**_host(platform, "ups", port=11), "id": row["id"]})
            .execute()
        )
        assert [(r["id"], r["port"]) for r in merged.data] == [(row["id"], 11)]
        ignored = (
            await admin.table("hosts")
            .upsert({**_host(platform, "ups", port=12), "id": row["id"]}, ignore_duplicates=True)
            .execute()
        )
        assert ignored.data == []  # do nothing: no row returned
        assert db_rows(
            backend_info, "select port from public.hosts where id = %s", (row["id"],)
        ) == [(11,)]
        fresh_id = str(uuid.uuid4())
        new = (
            await admin.table("hosts")
            .upsert({**_host(platform, "ups2"), "id": fresh_id}, on_conflict="id")
            .execute()
        )
        assert [r["id"] for r in new.data] == [fresh_id]
    finally:
        await admin.table("hosts").delete().like("name", f"{PREFIX}-w-ups*").execute()


async def test_count_on_writes_and_single_write_rolls_back(hosts, admin, team_ids, backend_info):
    platform = team_ids["Platform"]
    res = (
        await admin.table("hosts")
        .insert(
            [_host(platform, "cnt1"), _host(platform, "cnt2")], count="exact", returning="minimal"
        )
        .execute()
    )
    assert res.count == 2
    token = (await admin.auth.get_session()).access_token
    headers = _headers(backend_info, token) | {
        "Accept": "application/vnd.pgrst.object+json",
        "Prefer": "return=representation",
    }
    try:
        # PATCH matching 2 rows with a single-object Accept: 406, and the update is rolled back
        async with httpx.AsyncClient() as http:
            resp = await http.patch(
                f"{backend_info.url}/rest/v1/hosts?name=like.{PREFIX}-w-cnt*",
                json={"port": 5},
                headers=headers,
            )
        assert resp.status_code == 406
        assert resp.json()["code"] == "PGRST116"
        assert resp.json()["details"] == "The result contains 2 rows"
    finally:
        ports = db_rows(
            backend_info, "select port from public.hosts where name like %s", (f"{PREFIX}-w-cnt%",)
        )
        await admin.table("hosts").delete().like("name", f"{PREFIX}-w-cnt*").execute()
    assert ports == [(None,), (None,)]


# -- rpc ---------------------------------------------------------------------------------------


async def test_rpc_check_permission(admin, sign_in, backend_info, team_ids):
    me = (await admin.auth.get_user()).user.id
    args = {"p_profile_id": me, "p_team_id": team_ids["Platform"], "p_resource_type": "hosts"}
    assert (
        await admin.rpc("check_permission", {**args, "p_operation": "insert"}).execute()
    ).data is True
    assert (
        await admin.rpc("check_permission", {**args, "p_operation": "nonsense"}).execute()
    ).data is False

    viewer = await sign_in(demo_user(backend_info, "viewer")["email"])
    vid = (await viewer.auth.get_user()).user.id
    vargs = {"p_profile_id": vid, "p_team_id": team_ids["Platform"], "p_resource_type": "hosts"}
    assert (
        await viewer.rpc("check_permission", {**vargs, "p_operation": "select"}).execute()
    ).data is True
    assert (
        await viewer.rpc("check_permission", {**vargs, "p_operation": "delete"}).execute()
    ).data is False
    # optional argument, and GET with query-string arguments
    own = await viewer.rpc(
        "check_permission", {**vargs, "p_operation": "update", "p_is_own_resource": True}, get=True
    ).execute()
    assert own.data is False


async def test_rpc_set_returning_with_select_and_order(admin):
    me = (await admin.auth.get_user()).user.id
    teams = (
        await admin.rpc("get_user_teams", {"p_profile_id": me})
        .select("name")
        .order("name", desc=True)
        .execute()
    )
    assert teams.data == [{"name": "Platform"}, {"name": "Payments"}]


async def test_rpc_unknown_function_or_argument_is_pgrst202(admin):
    with pytest.raises(APIError) as missing:
        await admin.rpc("no_such_function", {}).execute()
    assert missing.value.code == "PGRST202"
    assert (
        missing.value.message
        == "Could not find the function public.no_such_function() in the schema cache"
    )
    with pytest.raises(APIError) as bad_arg:
        await admin.rpc("check_permission", {"p_bogus": 1}).execute()
    assert bad_arg.value.code == "PGRST202"


# -- errors ------------------------------------------------------------------------------------


async def test_unique_violation_is_409(hosts, service):
    existing = hosts["a"]
    with pytest.raises(APIError) as caught:
        await (
            service.table("hosts")
            .insert({**_host(existing["team_id"], "dup"), "id": existing["id"]})
            .execute()
        )
    assert caught.value.code == "23505"
    assert "duplicate key" in caught.value.message


async def test_unknown_column_and_table(admin):
    with pytest.raises(APIError) as col:
        await admin.table("hosts").select("nope").execute()
    assert (col.value.code, col.value.message) == ("42703", "column hosts.nope does not exist")
    with pytest.raises(APIError) as filt:
        await admin.table("hosts").select("*").eq("nope", 1).execute()
    assert filt.value.code == "42703"
    with pytest.raises(APIError) as table:
        await admin.table("no_such_table").select("*").execute()
    assert table.value.code == "PGRST205"
    assert (
        table.value.message == "Could not find the table 'public.no_such_table' in the schema cache"
    )
    with pytest.raises(APIError) as body:
        await admin.table("hosts").insert({"name": "x", "nope": 1}).execute()
    assert body.value.code == "PGRST204"


async def test_rls_with_check_is_403_even_with_return_minimal(
    hosts, sign_in, backend_info, team_ids
):
    viewer = await sign_in(demo_user(backend_info, "viewer")["email"])
    for returning in ("minimal", "representation"):
        with pytest.raises(APIError) as caught:
            await (
                viewer.table("hosts")
                .insert(_host(team_ids["Platform"], "denied"), returning=returning)
                .execute()
            )
        assert caught.value.code == "42501"
        assert "row-level security" in caught.value.message
    assert (
        db_rows(backend_info, "select 1 from public.hosts where name = %s", (f"{PREFIX}-w-denied",))
        == []
    )


async def test_return_minimal_does_not_apply_select_policies(admin, backend_info):
    """INSERT … RETURNING checks SELECT policies too; return=minimal must not, like PostgREST."""
    table = f"rest_scratch_{uuid.uuid4().hex[:8]}"
    ident = sql.Identifier("public", table)
    ddl = sql.SQL(
        "create table {t} (id serial primary key, note text);"
        " alter table {t} enable row level security;"
        " create policy write_only on {t} for insert to authenticated with check (true);"
        " grant select, insert on {t} to authenticated;"
        " grant usage on sequence {seq} to authenticated"
    ).format(t=ident, seq=sql.Identifier("public", f"{table}_id_seq"))
    with psycopg.connect(backend_info.db_url, autocommit=True) as conn:
        conn.execute(ddl)
    try:
        minimal = await admin.table(table).insert({"note": "blind"}, returning="minimal").execute()
        assert minimal.data == []
        with pytest.raises(APIError) as caught:
            await admin.table(table).insert({"note": "seen"}).execute()
        assert caught.value.code == "42501"
        assert db_rows(backend_info, sql.SQL("select note from {}").format(ident)) == [("blind",)]
    finally:
        with psycopg.connect(backend_info.db_url, autocommit=True) as conn:
            conn.execute(sql.SQL("drop table {}").format(ident))


async def test_rls_hides_rows_from_update_and_delete(hosts, sign_in, backend_info):
    viewer = await sign_in(demo_user(backend_info, "viewer")["email"])
    target = hosts["a"]["id"]
    assert (await viewer.table("hosts").update({"port": 1}).eq("id", target).execute()).data == []
    assert (await viewer.table("hosts").delete().eq("id", target).execute()).data == []
    assert db_rows(backend_info, "select port from public.hosts where id = %s", (target,)) == [
        (22,)
    ]


# -- tokens and malformed requests ----------------------------------------------------------------


def _headers(info, bearer: str | None = None) -> dict[str, str]:
    return {"apikey": info.anon_key, "Authorization": f"Bearer {bearer or info.anon_key}"}


def _secret(backend) -> str:
    return (Path(backend._cluster.data_dir) / "jwt_secret").read_text().strip()


def _claims(**extra) -> dict:
    now = int(time.time())
    return {
        "sub": str(uuid.uuid4()),
        "role": "authenticated",
        "iat": now,
        "exp": now + 600,
        **extra,
    }


@pytest.mark.parametrize(
    "make,code",
    [
        (
            lambda s: jwt.encode(
                _claims(), "a-different-secret-of-enough-length!!", algorithm="HS256"
            ),
            "PGRST301",
        ),
        (
            lambda s: jwt.encode(_claims(exp=int(time.time()) - 3600), s, algorithm="HS256"),
            "PGRST303",
        ),
        (lambda s: jwt.encode(_claims(), None, algorithm="none"), "PGRST301"),
        (lambda s: jwt.encode(_claims(role="postgres"), s, algorithm="HS256"), "PGRST301"),
        (lambda s: "not.a.jwt", "PGRST301"),
    ],
    ids=["forged", "expired", "alg-none", "wrong-role", "garbage"],
)
async def test_bad_tokens_are_refused(backend, backend_info, make, code):
    token = make(_secret(backend))
    async with httpx.AsyncClient() as http:
        resp = await http.get(
            f"{backend_info.url}/rest/v1/hosts?select=*", headers=_headers(backend_info, token)
        )
    assert resp.status_code == 401
    body = resp.json()
    assert body["code"] == code and set(body) == {"code", "message", "details", "hint"}


async def test_a_valid_hand_made_token_for_a_real_user_works(backend, backend_info, hosts):
    admin = demo_user(backend_info, "admin")
    uid = db_rows(
        backend_info, "select id::text from auth.users where email = %s", (admin["email"],)
    )[0][0]
    token = jwt.encode(_claims(sub=uid), _secret(backend), algorithm="HS256")
    async with httpx.AsyncClient() as http:
        resp = await http.get(
            f"{backend_info.url}/rest/v1/hosts?select=name&name=eq.{PREFIX}-a",
            headers=_headers(backend_info, token),
        )
    assert resp.status_code == 200 and resp.json() == [{"name": f"{PREFIX}-a"}]


@pytest.mark.parametrize(
    "query",
    [
        "id=eq",
        "order=;drop",
        "or=(a.eq.1",
        "or=(port.eq.1))",
        "select=id,...name",
        "port=in.1,2",
        "limit=abc",
        "port=is.maybe",
        "port=wat.1",
        "teams.name=eq",
    ],
)
async def test_malformed_queries_are_400_json(backend_info, query):
    async with httpx.AsyncClient() as http:
        resp = await http.get(
            f"{backend_info.url}/rest/v1/hosts?{query}", headers=_headers(backend_info)
        )
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert body["code"] == "PGRST100" and body["message"].startswith("failed to parse")


@pytest.mark.parametrize("body", [b"{not json", b"42", b'["a", 1]', b"\xff\xfe"])
async def test_bad_bodies_are_400_json(backend_info, body):
    async with httpx.AsyncClient() as http:
        resp = await http.post(
            f"{backend_info.url}/rest/v1/hosts",
            content=body,
            headers=_headers(backend_info, backend_info.service_role_key)
            | {"Content-Type": "application/json"},
        )
        assert resp.status_code == 400, resp.text
        assert resp.json()["code"] == "PGRST102"
        # and the gateway keeps serving
        ok = await http.get(
            f"{backend_info.url}/rest/v1/hosts?limit=1",
            headers=_headers(backend_info, backend_info.service_role_key),
        )
        assert ok.status_code == 200


async def test_type_errors_in_values_are_400_not_500(admin):
    with pytest.raises(APIError) as caught:
        await admin.table("hosts").select("*").eq("team_id", "not-a-uuid").execute()
    assert caught.value.code == "22P02"


async def test_raw_insert_defaults_to_minimal_201(backend_info, team_ids):
    headers = _headers(backend_info, backend_info.service_role_key) | {
        "Content-Type": "application/json"
    }
    payload = json.dumps(_host(team_ids["Platform"], "raw"))
    async with httpx.AsyncClient() as http:
        resp = await http.post(
            f"{backend_info.url}/rest/v1/hosts", content=payload, headers=headers
        )
        assert (resp.status_code, resp.content) == (201, b"")
        gone = await http.delete(
            f"{backend_info.url}/rest/v1/hosts?name=eq.{PREFIX}-w-raw",
            headers=headers | {"Prefer": "return=minimal"},
        )
        assert gone.status_code == 204
    assert (
        db_rows(backend_info, "select 1 from public.hosts where name = %s", (f"{PREFIX}-w-raw",))
        == []
    )
