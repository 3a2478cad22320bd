"""`postgres_changes` for the Realtime subset: bindings, join-time checks and the fan-out.

A change (from `change_feed`) goes to every channel with a matching binding whose
subscriber may see the row: the current row is checked with `exists(pk)` under
the subscriber's role and claims, exactly like Realtime's `apply_rls` (the old
row against the SELECT policies for DELETE), and only columns the role may SELECT
are sent. Each subscriber is handled on its own: one whose binding or claims
break its check misses that change alone, never anyone else's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from opstui.backend.change_feed import Catalog, Change, Filter, FilterError, TableInfo
from opstui.backend.gateway import GatewayContext, transaction_as
from opstui.backend.realtime_protocol import dumps

if TYPE_CHECKING:
    from opstui.backend.realtime_session import Channel, Session

log = logging.getLogger(__name__)

EVENTS = frozenset({"*", "INSERT", "UPDATE", "DELETE"})


class JoinPayloadError(ValueError):
    """A join whose config cannot be read: the join gets an error reply naming the field."""

    def __init__(self, path: str, expected: str) -> None:
        super().__init__(f"InvalidJoinPayload: {path}: unable to parse, expected {expected}")


@dataclass(frozen=True)
class Binding:
    id: int
    event: str
    schema: str
    table: str | None  # None or "*": every published table of the schema
    filter_text: str | None
    filter: Filter | None
    select: tuple[str, ...] | None

    def echo(self) -> dict[str, Any]:
        out: dict[str, Any] = {"event": self.event, "schema": self.schema}
        if self.table is not None:
            out["table"] = self.table
        if self.filter_text is not None:
            out["filter"] = self.filter_text
        if self.select is not None:
            out["select"] = list(self.select)
        out["id"] = self.id
        return out

    def covers(self, change: Change) -> bool:
        return (
            self.schema == change.schema
            and self.table in (None, "*", change.table)
            and self.event in ("*", change.type)
        )

    @property
    def index_key(self) -> tuple[str, str]:
        return (self.schema, self.table or "*")


def binding_id(params: dict[str, Any]) -> int:
    """A stable, positive, non-zero 31-bit id for a binding (Realtime uses phash2)."""
    key = dumps({k: params.get(k) for k in ("event", "schema", "table", "filter", "select")})
    return (zlib.crc32(key.encode()) & 0x7FFFFFFF) or 1


def parse_bindings(raw_bindings: Any) -> list[Binding]:
    """The join's `postgres_changes`, every field type-checked; raises JoinPayloadError."""
    if raw_bindings is None:
        return []
    if not isinstance(raw_bindings, list):
        raise JoinPayloadError("config.postgres_changes", "an array of maps")
    bindings = []
    for i, raw in enumerate(b for b in raw_bindings if b is not None):
        where = f"config.postgres_changes[{i}]"
        if not isinstance(raw, dict):
            raise JoinPayloadError(where, "a map")
        event = raw.get("event")
        if not isinstance(event, str) or event not in EVENTS:
            raise JoinPayloadError(f"{where}.event", "one of *, INSERT, UPDATE, DELETE")
        for key in ("schema", "table", "filter"):
            if raw.get(key) is not None and not isinstance(raw[key], str):
                raise JoinPayloadError(f"{where}.{key}", "string")
        select = raw.get("select")
        if select is not None and not (
            isinstance(select, list) and all(isinstance(c, str) for c in select)
        ):
            raise JoinPayloadError(f"{where}.select", "an array of column names")
        bindings.append(
            Binding(
                id=binding_id(raw),
                event=event,
                schema=raw.get("schema") or "public",
                table=raw.get("table"),
                filter_text=raw.get("filter"),
                filter=None,
                select=tuple(select) if select is not None else None,
            )
        )
    return bindings


def subscribe_error(b: Binding) -> str:
    return (
        "Unable to subscribe to changes with given parameters. Please check Realtime is"
        " enabled for the given connect parameters: [schema: {}, table: {}, filters: {}]"
    ).format(b.schema, b.table or "*", f"[{b.filter_text}]" if b.filter_text else "[]")


class PostgresChanges:
    """Who listens to which table, and the per-change fan-out to them."""

    def __init__(self, ctx: GatewayContext, catalog: Catalog) -> None:
        self.ctx = ctx
        self.catalog = catalog
        # (schema, table-or-"*") -> channels with postgres_changes bindings there
        self.index: dict[tuple[str, str], set[Channel]] = {}
        size = getattr(ctx.pool, "max_size", 10)
        self._db_slots = asyncio.Semaphore(max(1, min(8, size - 2)))

    # -- joins ------------------------------------------------------------------------------

    async def check(self, bindings: list[Binding]) -> tuple[list[Binding], tuple[str, str] | None]:
        """The bindings with parsed filters, or the (client message, log detail) refusing them.

        A table that is not in the publication yet makes the publication be re-read at
        once (and its changes captured), so tables published while we run work at once.
        """
        published = await self.catalog.published()
        wanted = {b.index_key for b in bindings if b.table not in (None, "*")}
        if not wanted <= published or any(
            b.table in (None, "*") and not any(s == b.schema for s, _ in published)
            for b in bindings
        ):
            published = await self.catalog.published(refresh=True)
        checked = []
        for b in bindings:
            if b.table in (None, "*"):
                if not any(s == b.schema for s, _ in published):
                    return [], (subscribe_error(b), f"no published table in schema {b.schema}")
                if b.filter_text:
                    return [], (subscribe_error(b), "filters need a table")
                checked.append(b)
                continue
            if (b.schema, b.table) not in published:
                return [], (subscribe_error(b), f"{b.schema}.{b.table} is not in the publication")
            if b.filter_text:
                try:
                    flt = Filter.parse(b.filter_text)
                except FilterError as exc:
                    return [], (subscribe_error(b), str(exc))
                info = await self.catalog.table(b.schema, b.table)
                if info is None or flt.column not in info.columns:
                    return [], (subscribe_error(b), f"unknown filter column {flt.column!r}")
                b = dataclasses.replace(b, filter=flt)
            checked.append(b)
        return checked, None

    def add(self, channel: Channel) -> None:
        for b in channel.bindings:
            self.index.setdefault(b.index_key, set()).add(channel)

    def remove(self, channel: Channel) -> None:
        for b in channel.bindings:
            subs = self.index.get(b.index_key)
            if subs is not None:
                subs.discard(channel)
                if not subs:
                    del self.index[b.index_key]

    # -- changes ----------------------------------------------------------------------------

    async def prepare(self, change: Change) -> list[tuple[Session, str]]:
        """The frames this change becomes, per socket, in no particular order."""
        channels = self.index.get((change.schema, change.table), set()) | self.index.get(
            (change.schema, "*"), set()
        )
        if not channels:
            return []
        info = await self.catalog.table(change.schema, change.table)
        if info is None:
            return []
        if set(change.row) - set(info.columns):  # the table changed under our cache
            self.catalog.invalidate()
            info = await self.catalog.table(change.schema, change.table)
            if info is None:
                return []
        groups: dict[str, list[tuple[Channel, list[Binding]]]] = {}
        for ch in channels:
            try:
                hits = [b for b in ch.bindings if _matches(b, change, info)]
            except Exception:  # noqa: BLE001 - this subscriber misses the change, no one else
                log.exception("realtime: could not match a change for %s", ch.topic)
                continue
            if hits:
                groups.setdefault(ch.group_key, []).append((ch, hits))
        if not groups:
            return []
        keys = list(groups)
        verdicts = await asyncio.gather(
            *(self._visible(change, info, groups[k][0][0].claims) for k in keys),
            return_exceptions=True,
        )
        frames: list[tuple[Session, str]] = []
        cache: dict[Any, str] = {}
        for key, visible in zip(keys, verdicts, strict=True):
            if isinstance(visible, BaseException):
                log.error("realtime: visibility check crashed: %r", visible)
                continue
            if not visible:
                continue
            for ch, hits in groups[key]:
                if ch.session.channels.get(ch.topic) is not ch:
                    continue  # left while we were checking
                try:
                    data = await self._data_json(change, info, ch.role, hits, cache)
                    if data is None:
                        continue
                    ids = dumps(sorted({b.id for b in hits}))
                    frames.append((ch.session, ch.session.serializer.encode_raw(
                        ch.topic, "postgres_changes", f'{{"ids":{ids},"data":{data}}}')))  # fmt: skip
                except Exception:  # noqa: BLE001 - this subscriber misses the change, no one else
                    log.exception("realtime: could not shape a change for %s", ch.topic)
        return frames

    async def _visible(self, change: Change, info: TableInfo, claims: dict[str, Any]) -> bool:
        """May this subscriber see the change? Postgres RLS decides, as in apply_rls."""
        role = str(claims.get("role", "anon"))
        if not await self.catalog.selectable_columns(role, info.schema, info.table):
            return False
        target = sql.SQL("{}.{}").format(sql.Identifier(info.schema), sql.Identifier(info.table))
        if change.type == "DELETE":
            # The row is gone: evaluate the table's SELECT policies against the old row.
            predicate = await self.catalog.select_policy(role, info.schema, info.table)
            if predicate is None:
                return True
            query = sql.SQL(
                "select exists(select 1 from jsonb_populate_record(null::{}, %s::jsonb) as {} where {})"
            ).format(target, sql.Identifier(info.table), sql.SQL(predicate))  # type: ignore[arg-type]
            params: tuple[Any, ...] = (dumps(change.old_record or {}),)
        else:
            if role == "service_role":
                return True
            if not info.pk:
                return False
            row = change.record or {}
            cond = sql.SQL(" and ").join(
                sql.SQL("{} = %s::{}").format(sql.Identifier(col), sql.SQL(info.sql_types[col]))  # type: ignore[arg-type]
                for col in info.pk
            )
            query = sql.SQL("select exists(select 1 from {} where {})").format(target, cond)
            params = tuple(_text(row.get(col)) for col in info.pk)
        async with self._db_slots:
            try:
                async with transaction_as(self.ctx, claims, path="/realtime/v1") as conn:
                    found = await (await conn.execute(query, params)).fetchone()
            except psycopg.Error as exc:
                log.debug("realtime: visibility check failed for role %s: %s", role, exc)
                return False
        return bool(found and found[0])

    async def _data_json(
        self, change: Change, info: TableInfo, role: str, hits: list[Binding], cache: dict
    ) -> str | None:
        allowed = await self.catalog.selectable_columns(role, info.schema, info.table)
        select = None
        if all(b.select is not None for b in hits):
            select = frozenset(c for b in hits for c in (b.select or ()))
        extra = (
            frozenset(b.filter.column for b in hits if b.filter)
            if change.type == "DELETE"
            else None
        )
        key = (allowed, select, extra)
        if key in cache:
            return cache[key]
        cols = [c for c in info.columns if c in allowed and (select is None or c in select)]
        data: dict[str, Any] = {
            "schema": change.schema,
            "table": change.table,
            "commit_timestamp": change.commit_timestamp,
            "type": change.type,
            "columns": [{"name": c, "type": info.columns[c]} for c in cols],
            "errors": None,
        }
        if change.type != "DELETE":
            record = change.record or {}
            data["record"] = {c: record.get(c) for c in cols}
        if change.type != "INSERT":
            old = change.old_record or {}
            # Like Realtime: the primary key (plus, for DELETE, the filter column) unless
            # the table has REPLICA IDENTITY FULL, when UPDATE carries the whole old row.
            keep = set(info.pk) | set(extra or ())
            if change.type == "UPDATE" and info.replica_full:
                keep = set(cols)
            data["old_record"] = {c: old.get(c) for c in info.columns if c in keep and c in allowed}
        text = dumps(data)
        cache[key] = text
        return text


def _matches(b: Binding, change: Change, info: TableInfo) -> bool:
    return b.covers(change) and (
        b.filter is None or b.filter.matches(change.row, info.columns.get(b.filter.column))
    )


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return dumps(value)
    return str(value)
