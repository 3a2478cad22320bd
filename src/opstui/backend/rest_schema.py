"""The schema cache of `/rest/v1`: tables, columns, foreign keys and functions of `public`.

Loaded from pg_catalog once and refreshed on a miss (an unknown table, column,
relationship or function), so migrations applied while the gateway runs are seen.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from opstui.backend import postgrest_query as pq
from opstui.backend.gateway import ApiError, GatewayContext, context

SCHEMA = "public"
CACHE_KEY = "rest_schema_cache"

_TABLES_SQL = """
select c.relname, a.attname, format_type(a.atttypid, a.atttypmod), t.typcategory, a.atthasdef,
       coalesce((select array_agg(pa.attname::text order by k.ord)
                   from pg_index i
                   cross join unnest(i.indkey) with ordinality as k(attnum, ord)
                   join pg_attribute pa on pa.attrelid = i.indrelid and pa.attnum = k.attnum
                  where i.indrelid = c.oid and i.indisprimary), '{}')
  from pg_class c
  join pg_namespace n on n.oid = c.relnamespace
  join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
  join pg_type t on t.oid = a.atttypid
 where n.nspname = %s and c.relkind in ('r', 'v', 'm', 'f', 'p')
 order by c.relname, a.attnum
"""

_FUNCTIONS_SQL = """
select p.proname, p.proretset, format_type(p.prorettype, null), rt.typtype, p.provolatile,
       p.pronargs, p.pronargdefaults, coalesce(p.proargnames, '{}'), coalesce(p.proargmodes::text[], '{}'),
       array(select format_type(x, null)
               from unnest(coalesce(p.proallargtypes, p.proargtypes::oid[])) with ordinality as u(x, o)
              order by o),
       case when rt.typrelid <> 0 then rt.typrelid::regclass::text end
  from pg_proc p
  join pg_namespace n on n.oid = p.pronamespace
  join pg_type rt on rt.oid = p.prorettype
 where n.nspname = %s and p.prokind = 'f'
"""


_FOREIGN_KEYS_SQL = """
select c.conname, cl.relname,
       array(select a.attname::text
               from unnest(c.conkey) with ordinality as k(attnum, ord)
               join pg_attribute a on a.attrelid = c.conrelid and a.attnum = k.attnum
              order by k.ord),
       fcl.relname,
       array(select a.attname::text
               from unnest(c.confkey) with ordinality as k(attnum, ord)
               join pg_attribute a on a.attrelid = c.confrelid and a.attnum = k.attnum
              order by k.ord)
  from pg_constraint c
  join pg_class cl on cl.oid = c.conrelid
  join pg_namespace n on n.oid = cl.relnamespace
  join pg_class fcl on fcl.oid = c.confrelid
  join pg_namespace fn on fn.oid = fcl.relnamespace
 where c.contype = 'f' and n.nspname = %s and fn.nspname = %s
 order by c.conname
"""


@dataclass(frozen=True)
class Function:
    name: str
    args: tuple[tuple[str, str], ...]  # input (name, type); unnamed inputs have name ""
    required: frozenset[str]
    returns_set: bool
    return_type: str
    return_kind: (
        str  # pg_type.typtype: b base, c composite, p pseudo (void/record), d domain, e enum
    )
    volatile: str  # i / s / v
    out_columns: tuple[tuple[str, str], ...]  # OUT/TABLE columns
    return_relation: str | None  # table whose row type it returns

    @property
    def arg_names(self) -> frozenset[str]:
        return frozenset(n for n, _ in self.args if n)

    def signature(self) -> str:
        return ", ".join(n for n, _ in self.args)


class SchemaCache:
    """Tables and functions of `public`, introspected once; a miss triggers one refresh."""

    def __init__(self, ctx: GatewayContext) -> None:
        self.ctx = ctx
        self.tables: dict[str, pq.Table] = {}
        self.functions: dict[str, list[Function]] = {}
        self.foreign_keys: tuple[pq.ForeignKey, ...] = ()
        self.loaded_at = 0.0
        self._lock = asyncio.Lock()

    async def refresh(self, *, seen_at: float | None = None) -> None:
        """Reload; `seen_at` (the caller's `loaded_at`) skips it if another task just did."""
        async with self._lock:
            if seen_at is not None and self.loaded_at > seen_at:
                return
            started = time.monotonic()
            async with self.ctx.pool.connection() as conn:
                async with conn.transaction():
                    # Fully qualified type names, whatever the request's search_path will be.
                    await conn.execute("set local search_path to pg_catalog")
                    cur = await conn.execute(_TABLES_SQL, (SCHEMA,))
                    table_rows = await cur.fetchall()
                    cur = await conn.execute(_FUNCTIONS_SQL, (SCHEMA,))
                    fn_rows = await cur.fetchall()
                    cur = await conn.execute(_FOREIGN_KEYS_SQL, (SCHEMA, SCHEMA))
                    fk_rows = await cur.fetchall()
            tables: dict[str, dict[str, pq.Column]] = {}
            pks: dict[str, tuple[str, ...]] = {}
            for relname, attname, typ, cat, hasdef, pk in table_rows:
                tables.setdefault(relname, {})[attname] = pq.Column(attname, typ, cat, hasdef)
                pks[relname] = tuple(pk)
            self.tables = {
                name: pq.Table(SCHEMA, name, cols, pks.get(name, ()))
                for name, cols in tables.items()
            }
            functions: dict[str, list[Function]] = {}
            for row in fn_rows:
                fn = _function_from_row(row)
                if fn is not None:
                    functions.setdefault(fn.name, []).append(fn)
            self.functions = functions
            self.foreign_keys = tuple(
                pq.ForeignKey(name, table, tuple(cols), ref, tuple(ref_cols))
                for name, table, cols, ref, ref_cols in fk_rows
            )
            self.loaded_at = started

    def invalidate(self) -> None:
        self.loaded_at = 0.0

    @property
    def catalog(self) -> pq.Catalog:
        """What embedded resources resolve against (one consistent snapshot)."""
        return pq.Catalog(self.tables, self.foreign_keys)

    async def table(self, name: str) -> pq.Table:
        seen = self.loaded_at
        table = self.tables.get(name) if seen else None
        if table is None:
            await self.refresh(seen_at=seen)
            table = self.tables.get(name)
        if table is None:
            raise ApiError(
                404,
                "PGRST205",
                f"Could not find the table '{SCHEMA}.{name}' in the schema cache",
                hint=_suggest(name, self.tables),
            )
        return table

    async def table_with_columns(self, name: str, q: pq.Query, body_cols: set[str]) -> pq.Table:
        """The table, refreshed once if the request names a column we have not seen."""
        table = await self.table(name)
        unknown_embeds = _embed_names(q.select) - self.tables.keys() - table.columns.keys()
        if _mentioned_columns(q, body_cols) - table.columns.keys() or unknown_embeds:
            await self.refresh(seen_at=self.loaded_at)
            table = await self.table(name)
        return table

    async def functions_named(self, name: str) -> list[Function]:
        seen = self.loaded_at
        fns = self.functions.get(name) if seen else None
        if not fns:
            await self.refresh(seen_at=seen)
            fns = self.functions.get(name)
        return fns or []


def _suggest(name: str, names: dict[str, Any]) -> str | None:
    import difflib

    close = difflib.get_close_matches(name, list(names), n=1)
    return f"Perhaps you meant the table '{SCHEMA}.{close[0]}'" if close else None


def _function_from_row(row: tuple) -> Function | None:
    (name, retset, rettype, typtype, volatile, nargs, ndefaults, argnames, modes, types, rel) = row
    modes = list(modes) or ["i"] * len(types)
    names = list(argnames) + [""] * (len(types) - len(argnames))
    inputs = [(n, t) for n, t, m in zip(names, types, modes, strict=False) if m in ("i", "b", "v")]
    outs = [(n, t) for n, t, m in zip(names, types, modes, strict=False) if m in ("o", "b", "t")]
    if len(inputs) != nargs:
        return None
    required = frozenset(n for n, _ in inputs[: nargs - ndefaults])
    return Function(
        name=name,
        args=tuple(inputs),
        required=required,
        returns_set=retset,
        return_type=rettype,
        return_kind=typtype,
        volatile=volatile,
        out_columns=tuple(outs),
        return_relation=rel,
    )


def _fields(nodes: list[pq.Node]) -> set[str]:
    out: set[str] = set()
    for n in nodes:
        if isinstance(n, pq.Logic):
            out |= _fields(list(n.children))
        else:
            out.add(n.field.column)
    return out


def _embed_names(items: list[pq.SelectItem | pq.Embed] | tuple) -> set[str]:
    out: set[str] = set()
    for item in items:
        if isinstance(item, pq.Embed):
            out.add(item.name)
            out |= _embed_names(item.select)
    return out


def _mentioned_columns(q: pq.Query, body_cols: set[str]) -> set[str]:
    cols = {i.field.column for i in q.select if isinstance(i, pq.SelectItem) and i.field}
    cols |= {t.field.column for t in q.order}
    cols |= _fields(q.where) - {e.key for e in q.embeds()}
    cols |= set(q.columns or ()) | set(q.on_conflict or ()) | body_cols
    return cols


def cache_of(request: web.Request) -> SchemaCache:
    ctx = context(request)
    cache = ctx.extras.get(CACHE_KEY)
    if cache is None:
        cache = ctx.extras[CACHE_KEY] = SchemaCache(ctx)
    return cache
