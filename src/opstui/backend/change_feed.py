"""Change capture for the Realtime subset: triggers + NOTIFY, the listener, filters, catalog.

pgserver has no wal2json and runs with `wal_level=replica`, so instead of a
logical replication slot every table in publication `supabase_realtime` gets
one generic AFTER ROW trigger. It sends the change as JSON with `pg_notify`;
payloads too large for NOTIFY (8000 bytes) go through a queue table and only
their id is notified. Notifications reach listeners in commit order. The
triggers follow the publication while the gateway runs (`sync_capture`): a
table added to it later is captured as soon as a join asks for it.

This module knows nothing about WebSockets: `realtime.py` decides who sees what.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

SCHEMA = "opstui_realtime"
CHANNEL = "opstui_realtime"
TRIGGER = "opstui_realtime_capture"
PUBLICATION = "supabase_realtime"
# NOTIFY payloads must be shorter than 8000 bytes; keep a margin.
NOTIFY_LIMIT = 7900

# Names spelled out: SCHEMA, CHANNEL and NOTIFY_LIMIT above.
_CAPTURE_SQL = """
create schema if not exists opstui_realtime;
revoke all on schema opstui_realtime from public;

create sequence if not exists opstui_realtime.change_seq;
create table if not exists opstui_realtime.queue (
    id bigint generated always as identity primary key,
    payload jsonb not null,
    created_at timestamptz not null default now()
);
revoke all on all tables in schema opstui_realtime from public;
revoke all on all sequences in schema opstui_realtime from public;

-- Runs as its owner (the superuser) so writers need no rights on the queue.
create or replace function opstui_realtime.capture() returns trigger
language plpgsql security definer set search_path = '' as $fn$
declare
    payload jsonb;
    body text;
    queued bigint;
begin
    payload := jsonb_build_object(
        'seq', nextval('opstui_realtime.change_seq'),
        'schema', TG_TABLE_SCHEMA,
        'table', TG_TABLE_NAME,
        'type', TG_OP,
        'commit_timestamp',
            to_char(now() at time zone 'utc', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
        'pk', to_jsonb(TG_ARGV),
        'record', case when TG_OP <> 'DELETE' then to_jsonb(NEW) end,
        'old_record', case when TG_OP <> 'INSERT' then to_jsonb(OLD) end
    );
    body := payload::text;
    if octet_length(body) <= 7900 then
        perform pg_notify('opstui_realtime', body);
    else
        insert into opstui_realtime.queue (payload) values (payload) returning id into queued;
        perform pg_notify('opstui_realtime', jsonb_build_object('queued', queued)::text);
    end if;
    return null;
end
$fn$;
revoke all on function opstui_realtime.capture() from public;
"""


# Published tables (ordinary tables only), with their primary-key columns in key order.
_PUBLISHED_SQL = """
select pt.schemaname, pt.tablename,
       coalesce((select array_agg(a.attname order by k.ord)
                   from pg_index i
                   cross join lateral unnest(i.indkey) with ordinality as k(attnum, ord)
                   join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
                  where i.indrelid = c.oid and i.indisprimary), '{}')
  from pg_publication_tables pt
  join pg_namespace n on n.nspname = pt.schemaname
  join pg_class c on c.relnamespace = n.oid and c.relname = pt.tablename
 where pt.pubname = %s and pt.schemaname <> %s and c.relkind = 'r'
"""
# Tables that carry the capture trigger now.
_CAPTURED_SQL = """
select n.nspname, c.relname
  from pg_trigger t
  join pg_class c on c.oid = t.tgrelid
  join pg_namespace n on n.oid = c.relnamespace
 where t.tgname = %s and not t.tgisinternal
"""


def _drop_trigger(schema: str, table: str) -> sql.Composed:
    return sql.SQL("drop trigger if exists {} on {}.{}").format(
        sql.Identifier(TRIGGER), sql.Identifier(schema), sql.Identifier(table)
    )


def _create_trigger(schema: str, table: str, pk: list[str]) -> sql.Composed:
    # Primary-key columns are trigger arguments: the change carries them.
    return sql.SQL(
        "create trigger {} after insert or update or delete on {}.{}"
        " for each row execute function {}.capture({})"
    ).format(
        sql.Identifier(TRIGGER),
        sql.Identifier(schema),
        sql.Identifier(table),
        sql.Identifier(SCHEMA),
        sql.SQL(", ").join(sql.Literal(col) for col in pk),
    )


def _warn_without_pk(schema: str, table: str, pk: list[str]) -> None:
    if not pk:
        log.warning("realtime: %s.%s has no primary key; only service_role sees it", schema, table)


def install_change_capture(conn: psycopg.Connection) -> None:
    """Idempotently (re)attach the capture trigger to every table in the publication.

    `conn` is a sync, autocommit, superuser connection. Tables that left the
    publication lose the trigger; primary-key columns are passed as trigger
    arguments, so re-running this after a migration picks up key changes.
    While the gateway runs, `sync_capture` keeps up with the publication.
    """
    with conn.transaction():
        conn.execute(_CAPTURE_SQL)
        published = conn.execute(_PUBLISHED_SQL, (PUBLICATION, SCHEMA)).fetchall()
        wanted = {(schema, table) for schema, table, _ in published}
        for schema, table in conn.execute(_CAPTURED_SQL, (TRIGGER,)).fetchall():
            if (schema, table) not in wanted:
                conn.execute(_drop_trigger(schema, table))
        for schema, table, pk in published:
            conn.execute(_drop_trigger(schema, table))
            conn.execute(_create_trigger(schema, table, pk))
            _warn_without_pk(schema, table, pk)
        # Queue rows whose notification was lost (listener down) are useless now.
        conn.execute(
            sql.SQL("delete from {}.queue where created_at < now() - interval '1 hour'").format(
                sql.Identifier(SCHEMA)
            )
        )


async def sync_capture(conn: psycopg.AsyncConnection) -> frozenset[tuple[str, str]]:
    """Make the capture triggers match the publication now; return the published tables.

    A table added to `supabase_realtime` while the gateway runs gets its trigger
    here, one that left loses it. Only the differences are DDL'd, under a short
    lock timeout: a table busy in a long transaction is retried on the next call.
    """
    async with conn.transaction():
        published = await (await conn.execute(_PUBLISHED_SQL, (PUBLICATION, SCHEMA))).fetchall()
        captured = {
            tuple(r) for r in await (await conn.execute(_CAPTURED_SQL, (TRIGGER,))).fetchall()
        }
    wanted = {(schema, table): pk for schema, table, pk in published}
    ready = set(wanted) & captured
    for schema, table in captured - set(wanted):
        if await _ddl(conn, _drop_trigger(schema, table)):
            log.info("realtime: %s.%s left the publication; no longer captured", schema, table)
    for schema, table in set(wanted) - captured:
        pk = wanted[(schema, table)]
        if await _ddl(conn, _drop_trigger(schema, table), _create_trigger(schema, table, pk)):
            ready.add((schema, table))
            log.info("realtime: %s.%s joined the publication; capturing its changes", schema, table)
            _warn_without_pk(schema, table, pk)
    return frozenset(ready)


async def _ddl(conn: psycopg.AsyncConnection, *statements: sql.Composed) -> bool:
    try:
        async with conn.transaction():
            await conn.execute("select set_config('lock_timeout', '2s', true)")
            for statement in statements:
                await conn.execute(statement)
    except psycopg.Error as exc:
        log.warning("realtime: could not update change capture (%s); will retry", exc)
        return False
    return True


# -- changes -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One row change, as the trigger captured it (full rows, superuser view)."""

    seq: int
    schema: str
    table: str
    type: str  # INSERT | UPDATE | DELETE
    commit_timestamp: str
    pk: tuple[str, ...]
    record: dict[str, Any] | None
    old_record: dict[str, Any] | None
    received_at: float = field(default_factory=time.monotonic, compare=False)

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> Change:
        return cls(
            seq=int(data.get("seq") or 0),
            schema=data["schema"],
            table=data["table"],
            type=data["type"],
            commit_timestamp=data["commit_timestamp"],
            pk=tuple(data.get("pk") or ()),
            record=data.get("record"),
            old_record=data.get("old_record"),
        )

    @property
    def row(self) -> dict[str, Any]:
        """The row filters are evaluated against: the new row, or the old one for DELETE."""
        return (self.old_record if self.type == "DELETE" else self.record) or {}


class ChangeListener:
    """A dedicated superuser connection LISTENing for changes; reconnects with backoff.

    Changes are handed to `deliver` one at a time, in commit order. `on_gap` is
    called when the connection was lost (changes may have been missed).
    """

    def __init__(
        self,
        conninfo: str,
        fetch_queued: Callable[[int], Awaitable[dict[str, Any] | None]],
        deliver: Callable[[Change], Awaitable[None]],
        on_gap: Callable[[], None],
    ) -> None:
        self._conninfo = conninfo
        self._fetch_queued = fetch_queued
        self._deliver = deliver
        self._on_gap = on_gap
        self.ready = asyncio.Event()
        self.backend_pid: int | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="opstui-realtime-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - shutting down
                pass
            self._task = None

    async def _run(self) -> None:
        delay = 0.1
        connected_once = False
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
            except (psycopg.OperationalError, OSError) as exc:
                log.warning(
                    "realtime: cannot connect the change listener (%s); retry in %.1fs", exc, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            try:
                async with conn:
                    await conn.execute(sql.SQL("listen {}").format(sql.Identifier(CHANNEL)))
                    self.backend_pid = conn.info.backend_pid
                    if connected_once:
                        log.warning("realtime: change listener reconnected")
                    connected_once = True
                    delay = 0.1
                    self.ready.set()
                    async for notify in conn.notifies():
                        await self._handle(notify.payload)
            except psycopg.OperationalError as exc:
                log.warning("realtime: change listener lost its connection: %s", exc)
            finally:
                self.ready.clear()
                self.backend_pid = None
            # Whatever was committed while we were away is lost for live subscribers.
            self._on_gap()
            await asyncio.sleep(delay)

    async def _handle(self, payload: str) -> None:
        try:
            data = json.loads(payload)
            if "queued" in data:
                data = await self._fetch_queued(int(data["queued"]))
                if data is None:
                    log.warning("realtime: queued change vanished")
                    return
            change = Change.from_payload(data)
        except Exception:  # noqa: BLE001 - one bad payload must not stop the feed
            log.exception("realtime: unreadable change notification")
            return
        await self._deliver(change)


# -- filters -----------------------------------------------------------------------------------

OPERATORS = frozenset({"eq", "neq", "lt", "lte", "gt", "gte", "in"})
_NUMERIC_TYPES = frozenset({"int2", "int4", "int8", "numeric", "float4", "float8", "oid"})


class FilterError(ValueError):
    pass


@dataclass(frozen=True)
class Filter:
    """`column=op.value` as Supabase Realtime accepts it (eq, neq, lt, lte, gt, gte, in)."""

    column: str
    op: str
    value: str | tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Filter:
        column, sep, rest = text.partition("=")
        op, dot, value = rest.partition(".")
        if not sep or not dot or not column.strip():
            raise FilterError(f"malformed filter {text!r}; expected column=op.value")
        if op not in OPERATORS:
            raise FilterError(f"unsupported filter operator {op!r}")
        if op == "in":
            return cls(column.strip(), op, _parse_in_list(value))
        return cls(column.strip(), op, value)

    def matches(self, row: dict[str, Any], udt: str | None) -> bool:
        if self.column not in row:
            return False
        actual = row[self.column]
        if actual is None:
            return False
        if self.op == "in":
            return any(_compare(actual, v, udt) == 0 for v in self.value)
        cmp = _compare(actual, self.value, udt)  # type: ignore[arg-type]
        if cmp is None:
            return False
        return {
            "eq": cmp == 0,
            "neq": cmp != 0,
            "lt": cmp < 0,
            "lte": cmp <= 0,
            "gt": cmp > 0,
            "gte": cmp >= 0,
        }[self.op]


def _parse_in_list(value: str) -> tuple[str, ...]:
    if not (value.startswith("(") and value.endswith(")")):
        raise FilterError("in filter needs a parenthesised list: col=in.(a,b)")
    items: list[str] = []
    buf: list[str] = []
    quoted = False
    i, body = 0, value[1:-1]
    while i < len(body):
        ch = body[i]
        if quoted:
            if ch == "\\" and i + 1 < len(body):
                buf.append(body[i + 1])
                i += 1
            elif ch == '"':
                quoted = False
            else:
                buf.append(ch)
        elif ch == '"':
            quoted = True
        elif ch == ",":
            items.append("".join(buf).strip())
            buf = []
        else:
            buf.append(ch)
        i += 1
    if quoted:
        raise FilterError("unterminated quote in in filter")
    items.append("".join(buf).strip())
    return tuple(items)


def _compare(actual: Any, wanted: str, udt: str | None) -> int | None:
    """-1/0/1 comparing a JSON value with a filter literal; None if incomparable."""
    if isinstance(actual, bool):
        actual = "true" if actual else "false"
        wanted = wanted.lower()
    elif isinstance(actual, int | float) or udt in _NUMERIC_TYPES:
        try:
            a, w = Decimal(str(actual)), Decimal(wanted)
        except InvalidOperation:
            return None
        return (a > w) - (a < w)
    elif isinstance(actual, dict | list):
        actual = json.dumps(actual, separators=(",", ":"))
    a = str(actual)
    if udt == "uuid":
        a, wanted = a.lower(), wanted.lower()
    return (a > wanted) - (a < wanted)


# -- catalog -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableInfo:
    schema: str
    table: str
    columns: dict[str, str]  # name -> udt name (int8, uuid, _text, ...)
    sql_types: dict[str, str]  # name -> format_type, for casts
    pk: tuple[str, ...]
    rls: bool
    replica_full: bool = False


_MIN_REFRESH = 0.2  # seconds between two reads of the publication


class Catalog:
    """Cached catalog facts, read through the superuser pool. Entries expire after `ttl`."""

    def __init__(self, admin_pool: Any, ttl: float = 30.0, publication_ttl: float = 5.0) -> None:
        self._pool = admin_pool
        self._ttl = ttl
        self._publication_ttl = publication_ttl
        self._publication_lock = asyncio.Lock()
        self._tables: dict[tuple[str, str], tuple[float, TableInfo | None]] = {}
        self._columns: dict[tuple[str, str, str], tuple[float, frozenset[str]]] = {}
        self._policies: dict[tuple[str, str, str], tuple[float, str | None]] = {}
        self._published: tuple[float, frozenset[tuple[str, str]]] | None = None

    def invalidate(self) -> None:
        self._tables.clear()
        self._columns.clear()
        self._policies.clear()
        self._published = None

    def _fresh(self, stamp: float) -> bool:
        return time.monotonic() - stamp < self._ttl

    async def published(self, *, refresh: bool = False) -> frozenset[tuple[str, str]]:
        """Published tables whose changes are captured. Re-read (and the capture brought
        in line) every few seconds, or at once with `refresh`, e.g. for an unknown table."""
        if not refresh and self._published and self._publication_fresh(self._published[0]):
            return self._published[1]
        asked = time.monotonic()
        async with self._publication_lock:
            if self._published and self._published[0] >= asked:
                return self._published[1]  # read by another caller after we asked
            if (
                self._published
                and (wait := self._published[0] + _MIN_REFRESH - time.monotonic()) > 0
            ):
                await asyncio.sleep(wait)  # joins for unknown tables cannot hammer the catalog
            started = time.monotonic()
            async with self._pool.connection() as conn:
                value = await sync_capture(conn)
            self._published = (started, value)
        return value

    def _publication_fresh(self, stamp: float) -> bool:
        return time.monotonic() - stamp < self._publication_ttl

    async def table(self, schema: str, table: str) -> TableInfo | None:
        key = (schema, table)
        hit = self._tables.get(key)
        if hit and self._fresh(hit[0]):
            return hit[1]
        async with self._pool.connection() as conn:
            rows = await (
                await conn.execute(
                    """
                    select a.attname, t.typname, format_type(a.atttypid, a.atttypmod),
                           coalesce(a.attnum = any(i.indkey), false), c.relrowsecurity,
                           array_position(i.indkey::int2[], a.attnum), c.relreplident = 'f'
                      from pg_class c
                      join pg_namespace n on n.oid = c.relnamespace
                      join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
                      join pg_type t on t.oid = a.atttypid
                      left join pg_index i on i.indrelid = c.oid and i.indisprimary
                     where n.nspname = %s and c.relname = %s
                     order by a.attnum
                    """,
                    key,
                )
            ).fetchall()
        info = None
        if rows:
            pk = tuple(r[0] for r in sorted((r for r in rows if r[3]), key=lambda r: r[5]))
            info = TableInfo(
                schema=schema,
                table=table,
                columns={r[0]: r[1] for r in rows},
                sql_types={r[0]: r[2] for r in rows},
                pk=pk,
                rls=bool(rows[0][4]),
                replica_full=bool(rows[0][6]),
            )
        self._tables[key] = (time.monotonic(), info)
        return info

    async def selectable_columns(self, role: str, schema: str, table: str) -> frozenset[str]:
        """Columns `role` may SELECT (has_column_privilege), cached per role and table."""
        key = (role, schema, table)
        hit = self._columns.get(key)
        if hit and self._fresh(hit[0]):
            return hit[1]
        async with self._pool.connection() as conn:
            rows = await (
                await conn.execute(
                    """
                    select a.attname
                      from pg_attribute a
                     where a.attrelid = (quote_ident(%s) || '.' || quote_ident(%s))::regclass
                       and a.attnum > 0 and not a.attisdropped
                       and exists (select 1 from pg_roles where rolname = %s)
                       and has_column_privilege(%s, a.attrelid, a.attnum, 'SELECT')
                    """,
                    (schema, table, role, role),
                )
            ).fetchall()
        value = frozenset(r[0] for r in rows)
        self._columns[key] = (time.monotonic(), value)
        return value

    async def select_policy(self, role: str, schema: str, table: str) -> str | None:
        """The SELECT row-security predicate Postgres would apply for `role`, as SQL text.

        Permissive policies are OR-ed, restrictive ones AND-ed, as Postgres does;
        "false" when RLS is on and no permissive policy applies; None when RLS
        does not restrict this role (RLS off, or a BYPASSRLS role).
        """
        key = (role, schema, table)
        hit = self._policies.get(key)
        if hit and self._fresh(hit[0]):
            return hit[1]
        async with self._pool.connection() as conn:
            head = await (
                await conn.execute(
                    """
                    select c.relrowsecurity, coalesce(r.rolbypassrls or r.rolsuper, false)
                      from pg_class c join pg_namespace n on n.oid = c.relnamespace
                      left join pg_roles r on r.rolname = %s
                     where n.nspname = %s and c.relname = %s
                    """,
                    (role, schema, table),
                )
            ).fetchone()
            rows = await (
                await conn.execute(
                    """
                    select p.polpermissive, pg_get_expr(p.polqual, p.polrelid)
                      from pg_policy p
                      join pg_class c on c.oid = p.polrelid
                      join pg_namespace n on n.oid = c.relnamespace
                     where n.nspname = %s and c.relname = %s and p.polcmd in ('r', '*')
                       and (0 = any(p.polroles)
                            or exists (select 1 from unnest(p.polroles) as pr(oid)
                                        where pg_has_role(%s, pr.oid, 'MEMBER')))
                    """,
                    (schema, table, role),
                )
            ).fetchall()
        if head is None or not head[0] or head[1]:
            value = None
        else:
            permissive = [f"({q or 'true'})" for perm, q in rows if perm]
            restrictive = [f"({q or 'true'})" for perm, q in rows if not perm]
            value = "(" + (" or ".join(permissive) or "false") + ")"
            if restrictive:
                value += " and " + " and ".join(restrictive)
        self._policies[key] = (time.monotonic(), value)
        return value
