"""`/rest/v1`: the PostgREST 12 subset that supabase-py 2.34 uses.

Tables: GET/HEAD (select, filters, or/and trees, order, limit/offset, counts,
single), POST (insert, bulk insert, upsert), PATCH (update), DELETE. Functions:
POST/GET `/rest/v1/rpc/{fn}` with named arguments.

Every request runs in one transaction as the JWT's role with its claims
(`gateway.transaction_as`), so Postgres applies RLS; rows are never filtered
here. The URL grammar and SQL building live in `postgrest_query`, the schema
cache in `rest_schema`; this module is the HTTP layer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from dataclasses import dataclass
from typing import Any

import psycopg
from aiohttp import web
from psycopg import sql
from psycopg_pool import PoolTimeout

from opstui.backend import postgrest_query as pq
from opstui.backend.gateway import ApiError, GatewayContext, context, request_claims, transaction_as
from opstui.backend.rest_schema import CACHE_KEY, SCHEMA, Function, SchemaCache, cache_of

log = logging.getLogger(__name__)

JSON_TYPE = "application/json; charset=utf-8"
OBJECT_TYPE = "application/vnd.pgrst.object+json; charset=utf-8"
# -- request helpers ---------------------------------------------------------------------------


@dataclass
class Negotiated:
    single: bool
    strip_nulls: bool


def _accept(request: web.Request) -> Negotiated:
    header = request.headers.get("Accept", "").strip()
    if not header:
        return Negotiated(False, False)
    for part in header.split(","):
        media, *params = [p.strip().lower() for p in part.split(";")]
        strip = "nulls=stripped" in params
        if media == "application/vnd.pgrst.object+json" or media == "application/vnd.pgrst.object":
            return Negotiated(True, strip)
        if media in (
            "application/json",
            "application/vnd.pgrst.array+json",
            "*/*",
            "application/*",
        ):
            return Negotiated(False, strip)
    raise ApiError(
        406,
        "PGRST107",
        f"None of these media types are available: {header}",
    )


def _check_profile(request: web.Request) -> None:
    for header in ("Accept-Profile", "Content-Profile"):
        value = request.headers.get(header)
        if value is not None and value != SCHEMA:
            raise ApiError(
                406,
                "PGRST106",
                f"The schema must be one of the following: {SCHEMA}",
                details=f"{header}: {value}",
            )


def _parse(request: web.Request, *, arg_names: frozenset[str] = frozenset()) -> pq.Query:
    try:
        q = pq.parse_query(request.query.items(), arg_names=arg_names)
    except pq.QueryError as exc:
        raise _api_error(exc) from None
    range_header = request.headers.get("Range")
    if range_header and q.limit is None and q.offset is None:
        # ASCII digits only: str.isdigit() accepts '²', which int() then refuses.
        m = _RANGE_RE.fullmatch(range_header.strip())
        if m is None or (m.group(2) and int(m.group(2)) < int(m.group(1))):
            raise ApiError(
                416,
                "PGRST103",
                "Requested range not satisfiable",
                details=f"Range must be <first>-[<last>] in ASCII digits, not {range_header!r}",
            )
        q.offset = int(m.group(1))
        if m.group(2):
            q.limit = int(m.group(2)) - q.offset + 1
    return q


_RANGE_RE = re.compile(r"(?:items=)?([0-9]{1,18})-([0-9]{0,18})", re.ASCII)


def _api_error(exc: pq.QueryError) -> ApiError:
    return ApiError(exc.status, exc.code, exc.message, details=exc.details, hint=exc.hint)


async def _json_body(request: web.Request) -> Any:
    try:
        raw = await request.read()
    except ConnectionError:
        raise _client_gone(request, "while sending the body") from None
    if not raw.strip():
        return None
    try:
        body = json.loads(raw)
        # Everything below re-serialises the body: it must be shallow enough for that too.
        json.dumps(body)
        return body
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "PGRST102", "Empty or invalid json", details=str(exc)) from None
    except RecursionError:
        raise ApiError(
            400, "PGRST102", "Empty or invalid json", details="the JSON is nested too deeply"
        ) from None


def _content_range(offset: int, n: int, total: int | None) -> str:
    total_s = "*" if total is None else str(total)
    if n == 0:
        return f"*/{total_s}"
    return f"{offset}-{offset + n - 1}/{total_s}"


def _respond(
    request: web.Request,
    status: int,
    body: str | None,
    *,
    single: bool = False,
    headers: dict[str, str] | None = None,
) -> web.Response:
    hdrs = dict(headers or {})
    if body is None or request.method == "HEAD":
        if body is not None:
            hdrs["Content-Type"] = OBJECT_TYPE if single else JSON_TYPE
        return web.Response(status=status, headers=hdrs)
    hdrs["Content-Type"] = OBJECT_TYPE if single else JSON_TYPE
    return web.Response(status=status, body=body.encode(), headers=hdrs)


def _single_error(n: int) -> ApiError:
    return ApiError(
        406,
        "PGRST116",
        "Cannot coerce the result to a single JSON object",
        details=f"The result contains {n} rows",
    )


def _check_max_affected(prefer: pq.Prefer, n: int) -> None:
    if prefer.strict and prefer.max_affected is not None and n > prefer.max_affected:
        raise ApiError(
            400,
            "PGRST124",
            "Query result exceeds max-affected preference constraint",
            details=f"The query affects {n} rows",
        )


def _build(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except pq.QueryError as exc:
        raise _api_error(exc) from None


# How often a running statement checks that its client is still connected.
_DISCONNECT_POLL = 0.25


class _ClientGone(ApiError):
    """The client disconnected; the response is never delivered (aiohttp drops it quietly)."""


def _client_gone(request: web.Request, when: str) -> _ClientGone:
    log.info("client disconnected %s: %s %s cancelled", when, request.method, request.path)
    return _ClientGone(499, "PGRST000", "client closed the request")


def _disconnected(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def _in_transaction(request: web.Request, claims: dict[str, Any], work):
    try:
        async with transaction_as(
            context(request), claims, method=request.method, path=request.path
        ) as conn:
            return await work(conn)
    except (
        psycopg.errors.UndefinedColumn,
        psycopg.errors.UndefinedTable,
        psycopg.errors.UndefinedFunction,
    ):
        cache_of(request).invalidate()
        raise
    except PoolTimeout:
        raise ApiError(
            504, "PGRST003", "Timed out acquiring connection from connection pool."
        ) from None


async def _run(request: web.Request, claims: dict[str, Any], work):
    """Run `work(conn)` in the request's transaction, cancelled if the client goes away.

    Cancelling the task makes psycopg send a cancel request for the running
    statement and wait for it; the transaction then rolls back and the connection
    goes back to the pool, so abandoned requests cannot pile up on the database.
    """
    task = asyncio.ensure_future(_in_transaction(request, claims, work))
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=_DISCONNECT_POLL)
            if done:
                return task.result()
            if _disconnected(request):
                break
    except asyncio.CancelledError:  # the handler itself was cancelled (disconnect, shutdown)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        log.info("request cancelled: %s %s", request.method, request.path)
        raise
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    raise _client_gone(request, "during the query")


# -- tables ------------------------------------------------------------------------------------


async def table_handler(request: web.Request) -> web.StreamResponse:
    claims = request_claims(request)
    _check_profile(request)
    method = request.method
    if method not in ("GET", "HEAD", "POST", "PATCH", "DELETE"):
        raise ApiError(405, "PGRST117", f"Unsupported HTTP method: {method}")
    name = request.match_info["table"]
    neg = _accept(request)
    prefer = pq.parse_prefer(request.headers.getall("Prefer", []))
    q = _parse(request)
    body: Any = None
    if method in ("POST", "PATCH"):
        body = await _json_body(request)
        if method == "PATCH" and not isinstance(body, dict):
            raise ApiError(
                400, "PGRST102", "Empty or invalid json", details="PATCH expects a JSON object"
            )
        if method == "POST":
            if isinstance(body, dict):
                body = [body]
            if not isinstance(body, list) or not all(isinstance(r, dict) for r in body):
                raise ApiError(
                    400,
                    "PGRST102",
                    "Empty or invalid json",
                    details="expected an object or an array of objects",
                )
    body_cols: set[str] = set()
    if method == "PATCH":
        body_cols = set(body)
    elif method == "POST" and q.columns is None:
        body_cols = {k for row in body for k in row}
    table = await cache_of(request).table_with_columns(name, q, body_cols)
    if method in ("GET", "HEAD"):
        return await _read(request, claims, table, q, neg, prefer)
    if method in ("PATCH", "DELETE") and (q.limit is not None or q.offset is not None):
        raise ApiError(
            400, "PGRST100", "limit and offset are not supported on PATCH or DELETE here"
        )
    if method in ("PATCH", "DELETE") and not q.where:
        # Supabase loads pg-safeupdate for the API: a write without a filter is refused.
        verb = "UPDATE" if method == "PATCH" else "DELETE"
        raise ApiError(
            400,
            "21000",
            f"{verb} requires a WHERE clause",
            hint="Add a filter such as id=eq.<id>; to touch every row, filter on a column "
            "that all rows match.",
        )
    _build(pq.check_embedded_paths, q)
    return await _write(request, claims, table, q, neg, prefer, body)


async def _build_fresh(request: web.Request, table: pq.Table, build):
    """`build(table, catalog)`, retried once on a fresh schema cache if a relationship is missing.

    A foreign key added since the cache was loaded is found; a name that never existed
    costs one reload, as with unknown tables.
    """
    cache = cache_of(request)
    seen = cache.loaded_at
    try:
        return build(table, cache.catalog)
    except pq.QueryError as exc:
        if exc.code != "PGRST200":
            raise _api_error(exc) from None
    await cache.refresh(seen_at=seen)
    return _build(build, cache.tables.get(table.name, table), cache.catalog)


async def _read(request, claims, table, q, neg, prefer) -> web.Response:
    with_count = prefer.count is not None
    query, params = await _build_fresh(
        request,
        table,
        lambda t, catalog: pq.read_sql(
            t,
            q,
            catalog=catalog,
            single=neg.single,
            strip_nulls=neg.strip_nulls,
            with_count=with_count,
        ),
    )

    async def work(conn):
        cur = await conn.execute(query, params)
        return await cur.fetchone()

    row = await _run(request, claims, work)
    body, n = row[0], row[1]
    total = row[2] if with_count else None
    if neg.single and n != 1:
        raise _single_error(n)
    headers = {"Content-Range": _content_range(q.offset or 0, n, total)}
    if with_count:
        headers["Preference-Applied"] = f"count={prefer.count}"
    return _respond(request, 200, body, single=neg.single, headers=headers)


async def _write(request, claims, table, q, neg, prefer, body) -> web.Response:
    method = request.method
    representation = prefer.returning == "representation"
    applied: list[str] = []
    if prefer.returning:
        applied.append(f"return={prefer.returning}")
    if prefer.count:
        applied.append(f"count={prefer.count}")

    statements: list[tuple[sql.Composable, list[Any]]] = []
    if method == "POST":
        if prefer.resolution:
            applied.append(f"resolution={prefer.resolution}-duplicates")
        if prefer.missing_default:
            applied.append("missing=default")
        inserts = _build(
            pq.insert_statements,
            table,
            body,
            columns=q.columns,
            missing_default=prefer.missing_default,
            resolution=prefer.resolution,
            on_conflict=q.on_conflict,
            returning=representation,
        )
        statements = [(stmt, [payload]) for stmt, payload in inserts] if body else []
    elif method == "PATCH":
        built = _build(pq.update_statement, table, body, q, returning=representation)
        statements = [built] if built else []
    else:
        statements = [_build(pq.delete_statement, table, q, returning=representation)]

    if representation:
        query: sql.Composable | None = None
        params: list[Any] = [p for _, ps in statements for p in ps]
        if statements:
            query, select_params = _build(
                pq.wrap_returning,
                table,
                [s for s, _ in statements],
                q.select,
                catalog=cache_of(request).catalog,
                embedded=q.embedded,
                single=neg.single,
                strip_nulls=neg.strip_nulls,
            )
            params += select_params

        async def work(conn):
            if query is None:  # nothing to write (`[]` or `{}` body)
                if neg.single:
                    raise _single_error(0)
                return "[]", 0
            cur = await conn.execute(query, params)
            body_text, n = await cur.fetchone()
            if neg.single and n != 1:
                raise _single_error(n)  # raised inside the transaction: the write is rolled back
            _check_max_affected(prefer, n)
            return body_text, n

        body_text, n = await _run(request, claims, work)
    else:

        async def work(conn):
            total = 0
            for stmt, params in statements:
                cur = await conn.execute(stmt, params)
                total += max(cur.rowcount, 0)
            if neg.single and total != 1:
                raise _single_error(total)
            _check_max_affected(prefer, total)
            return None, total

        body_text, n = await _run(request, claims, work)

    headers = {"Content-Range": _content_range(0, n, n if prefer.count else None)}
    if applied:
        headers["Preference-Applied"] = ", ".join(applied)
    if method == "POST":
        return _respond(
            request, 201, body_text if representation else None, single=neg.single, headers=headers
        )
    if representation:
        return _respond(request, 200, body_text, single=neg.single, headers=headers)
    return _respond(request, 204, None, headers=headers)


# -- rpc ---------------------------------------------------------------------------------------


def _not_found_function(name: str, keys: list[str]) -> ApiError:
    args = ", ".join(sorted(keys))
    return ApiError(
        404,
        "PGRST202",
        f"Could not find the function {SCHEMA}.{name}({args}) in the schema cache",
        details=f"Searched for the function {SCHEMA}.{name} with parameters {args or '(none)'}"
        " or with a single unnamed json/jsonb parameter, but no matches were found in the schema cache.",
    )


def _choose(fns: list[Function], keys: set[str]) -> Function | None:
    matches = [f for f in fns if f.required <= keys <= f.arg_names and all(n for n, _ in f.args)]
    if not matches:
        return None
    matches.sort(key=lambda f: len(f.args))
    if len(matches) > 1 and len(matches[0].args) == len(matches[1].args):
        raise ApiError(
            300,
            "PGRST203",
            f"Could not choose the best candidate function between several {SCHEMA}.{fns[0].name} overloads",
        )
    return matches[0]


def _result_table(cache: SchemaCache, fn: Function) -> pq.Table | None:
    """The columns of a set-returning function's rows, so filters/order can apply to them."""
    if fn.out_columns and fn.return_kind == "p":
        cols = {n: pq.Column(n, t) for n, t in fn.out_columns if n}
        return pq.Table(SCHEMA, fn.name, cols)
    if fn.return_relation and fn.return_relation.startswith(f"{SCHEMA}."):
        return cache.tables.get(fn.return_relation.removeprefix(f"{SCHEMA}.").strip('"'))
    return None


async def rpc_handler(request: web.Request) -> web.StreamResponse:
    claims = request_claims(request)
    _check_profile(request)
    method = request.method
    if method not in ("GET", "HEAD", "POST"):
        raise ApiError(405, "PGRST117", f"Unsupported HTTP method: {method}")
    name = request.match_info["fn"]
    neg = _accept(request)
    prefer = pq.parse_prefer(request.headers.getall("Prefer", []))
    cache = cache_of(request)
    fns = await cache.functions_named(name)
    read_only = method in ("GET", "HEAD")

    unnamed_json: Function | None = next(
        (
            f
            for f in fns
            if len(f.args) == 1 and not f.args[0][0] and f.args[0][1] in ("json", "jsonb")
        ),
        None,
    )
    if read_only:
        all_names = frozenset().union(*(f.arg_names for f in fns)) if fns else frozenset()
        q = _parse(request, arg_names=all_names)
        args: dict[str, Any] = dict(q.args)
    else:
        q = _parse(request)
        raw_body = await _json_body(request)
        if raw_body is None:
            raw_body = {}
        if not isinstance(raw_body, dict) and unnamed_json is None:
            raise ApiError(
                400,
                "PGRST102",
                "Empty or invalid json",
                details="rpc expects a JSON object of arguments",
            )
        args = raw_body if isinstance(raw_body, dict) else {}

    fn = _choose(fns, set(args))
    params: list[Any]
    if fn is not None:
        arg_types = dict(fn.args)
        target = sql.Identifier(SCHEMA, fn.name)
        if args:
            decl = sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(k), sql.SQL(arg_types[k])) for k in args
            )
            call_args = sql.SQL(", ").join(
                sql.SQL("{} => pgrst_args.{}").format(sql.Identifier(k), sql.Identifier(k))
                for k in args
            )
            # json_to_record converts every argument with Postgres's own input rules.
            from_clause = sql.SQL(
                "json_to_record(%s::json) as pgrst_args({}) cross join lateral {}({}) as pgrst_f"
            ).format(decl, target, call_args)
            params = [json.dumps(args)]
        else:
            from_clause = sql.SQL("{}() as pgrst_f").format(target)
            params = []
    elif unnamed_json is not None and not read_only:
        fn = unnamed_json
        from_clause = sql.SQL("{}(%s::{}) as pgrst_f").format(
            sql.Identifier(SCHEMA, fn.name), sql.SQL(fn.args[0][1])
        )
        params = [json.dumps(raw_body)]
    else:
        raise _not_found_function(name, list(args))

    void = fn.return_type == "void"
    table = _result_table(cache, fn) if fn.returns_set else None
    if fn.returns_set and table is not None:
        source = sql.SQL("(select pgrst_f.* from {})").format(from_clause)
        query, all_params = _build(
            pq.read_sql,
            table,
            q,
            catalog=cache.catalog,
            single=neg.single,
            strip_nulls=neg.strip_nulls,
            with_count=prefer.count is not None,
            source=source,
            source_params=params,
        )
    else:
        if q.where or q.order or q.embedded or q.select != [pq.SelectItem(None)]:
            raise ApiError(
                400,
                "PGRST100",
                f"filters, order and select are not supported on the result of {SCHEMA}.{name}()",
            )
        if fn.returns_set:
            b = pq.Builder(pq.Table(SCHEMA, name, {}))
            b.params.extend(params)
            query = sql.SQL(
                "select coalesce(json_agg(pgrst_r.pgrst_f), '[]')::text, count(*)"
                " from (select pgrst_f from {}{}) as pgrst_r"
            ).format(from_clause, b.limit_offset(q.limit, q.offset))
            all_params = b.params
        else:
            query = sql.SQL("select to_json(pgrst_f)::text, 1 from {}").format(from_clause)
            all_params = params

    async def work(conn):
        if read_only:
            await conn.execute("set transaction read only")
        cur = await conn.execute(query, all_params)
        row = await cur.fetchone()
        if fn.returns_set and neg.single and row[1] != 1:
            raise _single_error(row[1])
        return row

    row = await _run(request, claims, work)
    if void:
        return _respond(request, 204, None)
    body_text, n = row[0], row[1]
    headers: dict[str, str] = {}
    if fn.returns_set:
        total = row[2] if len(row) > 2 else None
        headers["Content-Range"] = _content_range(q.offset or 0, n, total)
    if body_text is None:
        body_text = "null"
    return _respond(request, 200, body_text, single=neg.single and fn.returns_set, headers=headers)


# -- root --------------------------------------------------------------------------------------


async def root_handler(request: web.Request) -> web.Response:
    request_claims(request)
    cache = cache_of(request)
    if not cache.loaded_at:
        await cache.refresh()
    doc = {
        "swagger": "2.0",
        "info": {"title": "opstui embedded PostgREST subset", "version": "12"},
        "paths": {f"/{name}": {} for name in sorted(cache.tables)}
        | {f"/rpc/{name}": {} for name in sorted(cache.functions)},
    }
    return web.json_response(doc)


async def not_found(request: web.Request) -> web.Response:
    raise ApiError(404, "PGRST125", f"Invalid path specified in request URL: {request.path}")


def setup(app: web.Application, ctx: GatewayContext) -> None:
    ctx.extras.setdefault(CACHE_KEY, SchemaCache(ctx))
    router = app.router
    router.add_route("GET", "/rest/v1/", root_handler)
    router.add_route("GET", "/rest/v1", root_handler)
    router.add_route("*", "/rest/v1/rpc/{fn}", rpc_handler)
    router.add_route("*", "/rest/v1/{table}", table_handler)
    router.add_route("*", "/rest/v1/{tail:.+}", not_found)
