"""/rest/v1 against hostile requests: injection attempts, runaway and malformed input.

Every case goes through the real gateway and Postgres. A refusal must be a 4xx
with PostgREST's `{code, details, hint, message}` body, must not leak catalog
rows, and must leave the gateway serving.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid

import httpx
import jwt
import psycopg
import pytest
from postgrest.exceptions import APIError
from psycopg import sql

from tests.conftest import demo_user

POSTGREST_KEYS = {"code", "details", "hint", "message"}
# Text that appears in pg_settings / pg_roles rows and never in our own data.
CATALOG_MARKERS = ("synchronous_commit", "checkpoint_completion_target", "pg_read_all", "rolsuper")


def _headers(info, token: str | None = None) -> dict[str, str]:
    return {"apikey": info.anon_key, "Authorization": f"Bearer {token or info.service_role_key}"}


async def _get(info, path: str, *, token: str | None = None, **headers) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.get(f"{info.url}/rest/v1/{path}", headers=_headers(info, token) | headers)


def _assert_refused(resp: httpx.Response, status: int | tuple[int, ...] = 400) -> dict:
    statuses = status if isinstance(status, tuple) else (status,)
    assert resp.status_code in statuses, resp.text
    body = resp.json()
    assert set(body) == POSTGREST_KEYS, body
    assert not any(marker in resp.text for marker in CATALOG_MARKERS), resp.text
    return body


# -- SQL injection -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "select",
    [
        "name::text as a from pg_settings union select name",  # the reported exploit
        "tenants::text as a from pg_roles as tenants union select rolname",  # whole-row variant
        "id::text,(select rolname from pg_roles limit 1)::text",
        "name::text)::text from pg_settings--",
        "name::int4 from pg_settings where true or ",
        "name::pg_catalog.text",
        'name::"text" from pg_roles',
        "x:name::text as y",
    ],
)
async def test_select_casts_cannot_inject_sql(backend_info, select):
    body = _assert_refused(await _get(backend_info, f"tenants?select={select}"))
    assert body["code"] in ("PGRST100", "42703")


async def test_allowed_casts_still_work(backend_info):
    resp = await _get(backend_info, "tenants?select=id::text,n:name::varchar&limit=1")
    assert resp.status_code == 200 and set(resp.json()[0]) == {"id", "n"}


HOSTILE = "x' or 1=1) union select rolname from pg_roles --"
Q = httpx.QueryParams


@pytest.mark.parametrize(
    "params",
    [
        {"select": f'"{HOSTILE}"'},  # column list
        {"select": f'a:"{HOSTILE}"'},  # alias of a missing column
        {"select": f"data->>{HOSTILE}"},  # JSON path key on a missing column
        {"select": f"name->{HOSTILE}"},
        {"order": f'"{HOSTILE}".desc'},
        {"order": "name.desc;select 1"},
        {"order": "name.desc.nullsfirst.x"},
        {f'"{HOSTILE}"': "eq.1"},
        {"name": f"wat.{HOSTILE}"},
        {"name": "eq(any' or 1=1).x"},
        {"name": f"fts({HOSTILE}).x"},
        {"name": f"is.{HOSTILE}"},
        {"name": f"in.({HOSTILE}"},
        {"or": f"(name.eq.1,{HOSTILE})"},
        {"and": f"(name.eq.1,or({HOSTILE}))"},
        {"not.or": f"({HOSTILE}.eq.1)"},
        {"limit": "1; select 1"},
        {"offset": "1 union select 1"},
        {f"{HOSTILE}.name": "eq.1"},  # filter on an embed that is not selected
        {"select": f'name,"{HOSTILE}"(*)'},  # embed of a table that does not exist
        {"select": "name,pg_roles(*)"},
        {"select": f"name,teams!{HOSTILE}(*)"},
    ],
    ids=lambda p: next(iter(p))[:20],
)
async def test_hostile_names_and_operators_are_refused(backend_info, params):
    resp = await _get(backend_info, f"tenants?{Q(params)}")
    _assert_refused(resp, (400, 404))


@pytest.mark.parametrize(
    "params",
    [
        {"name": f"eq.{HOSTILE}"},
        {"name": f"like.*{HOSTILE}*"},
        {"name": f"ilike.{HOSTILE}"},
        {"name": f"match.{HOSTILE}"},
        {"name": f'in.("{HOSTILE}",b)'},
        {"name": "is.null", "id": f"eq.{HOSTILE}"},
        {"name": f"fts.{HOSTILE.replace(' ', '&').replace(chr(39), '')}"},
        {"name": f"plfts(english).{HOSTILE}"},
        {"name": f"wfts.{HOSTILE}"},
        {"name": f"eq(any).{{{HOSTILE}}}"},
        {"or": f'(name.eq."{HOSTILE}",and(id.eq.x,name.neq."{HOSTILE}"))'},
        {"settings->>k": f"eq.{HOSTILE}"},
        {"settings->k": f'cs.{{"a": "{HOSTILE}"}}'},
        {"settings": f'cd.{{"a": "{HOSTILE}"}}'},
    ],
    ids=lambda p: "-".join(p.values())[:24],
)
async def test_hostile_values_are_only_ever_values(backend_info, params):
    resp = await _get(backend_info, f"tenants?select=id&{Q(params)}")
    assert resp.status_code in (200, 400), resp.text
    if resp.status_code == 200:
        assert resp.json() == []  # no tenant has these values; nothing else came back
    else:
        _assert_refused(resp)


async def test_hostile_write_targets_are_refused(backend_info):
    headers = _headers(backend_info) | {"Content-Type": "application/json"}
    row = json.dumps({"id": f"t-{uuid.uuid4().hex[:6]}", "name": "x"})
    async with httpx.AsyncClient() as http:
        for params in (
            {"on_conflict": f'"{HOSTILE}"'},
            {"on_conflict": "id) do update set name = 'pwned' --"},
            {"columns": f'"{HOSTILE}"'},
            {"columns": "id,name) select 1 --"},
        ):
            resp = await http.post(
                f"{backend_info.url}/rest/v1/tenants?{Q(params)}",
                content=row,
                headers=headers | {"Prefer": "resolution=merge-duplicates"},
            )
            _assert_refused(resp)
        resp = await http.post(
            f"{backend_info.url}/rest/v1/tenants",
            content=json.dumps({HOSTILE: 1}),
            headers=headers,
        )
        assert _assert_refused(resp)["code"] == "PGRST204"
        # Prefer values are matched against a fixed list: junk is simply not applied.
        resp = await http.get(
            f"{backend_info.url}/rest/v1/tenants?select=id&limit=1",
            headers=_headers(backend_info) | {"Prefer": f"count={HOSTILE}, return=x;drop"},
        )
        assert resp.status_code == 200 and "Preference-Applied" not in resp.headers


@pytest.mark.parametrize(
    "path,body",
    [
        (f"rpc/{HOSTILE}", {}),
        ("rpc/pg_sleep", {"seconds": 1}),  # not in the exposed schema
        ("rpc/check_permission", {HOSTILE: 1}),
        ("rpc/check_permission", {"p_team_id); select 1 --": 1}),
    ],
)
async def test_rpc_names_and_argument_names_are_looked_up_not_spliced(backend_info, path, body):
    async with httpx.AsyncClient() as http:
        resp = await http.post(
            f"{backend_info.url}/rest/v1/{path}",
            content=json.dumps(body),
            headers=_headers(backend_info) | {"Content-Type": "application/json"},
        )
    assert _assert_refused(resp, 404)["code"] == "PGRST202"


# -- malformed and runaway requests ------------------------------------------------------------


async def test_or_nested_1000_deep_is_400(backend_info):
    deep = "(" + "or(" * 1000 + "id.eq.1" + ")" * 1000 + ")"
    body = _assert_refused(await _get(backend_info, f"tenants?{Q({'or': deep})}"))
    assert body["code"] == "PGRST100"


@pytest.mark.parametrize(
    "method,path", [("POST", "tenants"), ("PATCH", "tenants"), ("POST", "rpc/check_permission")]
)
async def test_json_bodies_nested_10000_deep_are_400(backend_info, method, path):
    deep = '{"a":' * 10_000 + "1" + "}" * 10_000
    async with httpx.AsyncClient() as http:
        resp = await http.request(
            method,
            f"{backend_info.url}/rest/v1/{path}?id=eq.nope",
            content=deep,
            headers=_headers(backend_info) | {"Content-Type": "application/json"},
        )
    assert _assert_refused(resp)["code"] == "PGRST102"


@pytest.mark.parametrize(
    "params", [{"name": "eq.a\x00b"}, {"or": "(name.eq.a\x00)"}, {"select": "name\x00"}]
)
async def test_nul_bytes_in_filters_are_400(backend_info, params):
    body = _assert_refused(await _get(backend_info, f"tenants?{Q(params)}"))
    assert "NUL" in body["details"]


@pytest.mark.parametrize("value", [b"\xb2-\xb3", "\u0661-\u0663".encode(), b"5-2", b"x-y"])
async def test_a_range_header_that_is_not_ascii_digits_is_416(backend_info, value):
    resp = await _get(backend_info, "tenants?select=id", Range=value)
    assert _assert_refused(resp, 416)["code"] == "PGRST103"
    ok = await _get(backend_info, "tenants?select=id", Range=b"0-0")
    assert ok.status_code == 200 and len(ok.json()) == 1


@pytest.mark.parametrize("role", [["service_role"], {"role": "service_role"}, 1, None])
async def test_a_signed_token_whose_role_is_not_a_string_is_401(backend, backend_info, role):
    secret = backend._ctx.signer.secret
    token = jwt.encode({"role": role, "exp": int(time.time()) + 60}, secret, algorithm="HS256")
    body = _assert_refused(await _get(backend_info, "tenants?select=id", token=token), 401)
    assert body["code"] == "PGRST301"


# -- safeupdate --------------------------------------------------------------------------------


@pytest.mark.parametrize("verb", ["update", "delete"])
async def test_update_or_delete_without_a_filter_is_refused(backend_info, sign_in, verb):
    admin = await sign_in(demo_user(backend_info, "admin")["email"])
    with psycopg.connect(backend_info.db_url) as conn:
        before = conn.execute("select count(*), max(name) from public.hosts").fetchone()
    query = admin.table("hosts")
    query = query.update({"description": "all of them"}) if verb == "update" else query.delete()
    with pytest.raises(APIError) as refused:
        await query.execute()
    assert refused.value.code == "21000"
    assert refused.value.message == f"{verb.upper()} requires a WHERE clause"
    with psycopg.connect(backend_info.db_url) as conn:
        after = conn.execute("select count(*), max(name) from public.hosts").fetchone()
        changed = conn.execute(
            "select count(*) from public.hosts where description = 'all of them'"
        ).fetchone()
    assert after == before and changed == (0,)


# -- disconnects -------------------------------------------------------------------------------

SLEEP_FN = f"rest_test_sleep_{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def sleep_function(backend_info):
    """A slow function in `public`, callable by the service role (dropped afterwards)."""
    async with await psycopg.AsyncConnection.connect(backend_info.db_url, autocommit=True) as c:
        fn = sql.Identifier("public", SLEEP_FN)
        await c.execute(
            sql.SQL(
                "create function {}(seconds float8) returns int"
                " language sql as $$ select 1 from pg_sleep(seconds) $$"
            ).format(fn)
        )
        await c.execute(sql.SQL("grant execute on function {}(float8) to service_role").format(fn))
    yield SLEEP_FN
    async with await psycopg.AsyncConnection.connect(backend_info.db_url, autocommit=True) as c:
        await c.execute(
            sql.SQL("drop function if exists {}(float8)").format(sql.Identifier("public", SLEEP_FN))
        )


async def _sleeping(info) -> int:
    async with await psycopg.AsyncConnection.connect(info.db_url, autocommit=True) as conn:
        cur = await conn.execute(
            "select count(*) from pg_stat_activity"
            " where state = 'active' and query like '%%' || %s || '%%' and pid <> pg_backend_pid()",
            (SLEEP_FN,),
        )
        return (await cur.fetchone())[0]


async def _until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await condition():
            return True
        await asyncio.sleep(0.05)
    return False


async def test_ten_disconnected_slow_requests_are_cancelled_and_free_the_pool(
    backend, backend_info, sleep_function, caplog
):
    caplog.set_level(logging.INFO, logger="opstui.backend")
    port = int(backend_info.url.rsplit(":", 1)[1])
    body = json.dumps({"seconds": 60}).encode()
    request = (
        f"POST /rest/v1/rpc/{sleep_function} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"apikey: {backend_info.anon_key}\r\nAuthorization: Bearer {backend_info.service_role_key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    writers = []
    for _ in range(10):  # the gateway's pool holds 10 connections
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        await writer.drain()
        writers.append(writer)

    async def all_sleeping() -> bool:
        return await _sleeping(backend_info) == 10

    assert await _until(all_sleeping, 20), "the ten slow calls never all started"
    for writer in writers:
        writer.transport.abort()  # the client vanishes mid-query

    async def none_sleeping() -> bool:
        return await _sleeping(backend_info) == 0

    started = time.monotonic()
    assert await _until(none_sleeping, 5), "the statements kept running after the clients left"
    resp = await _get(backend_info, "tenants?select=id&limit=1")
    elapsed = time.monotonic() - started
    assert resp.status_code == 200 and elapsed < 5, (resp.status_code, elapsed)
    gone = [r for r in caplog.records if "client disconnected" in r.getMessage()]
    assert len(gone) == 10 and all(r.exc_info is None for r in gone)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
