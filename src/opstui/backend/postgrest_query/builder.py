"""The AST turned into `psycopg.sql` compositions for one table (no I/O here).

Identifiers are `sql.Identifier`s of columns and tables that exist in the catalog;
operators, casts and keywords come from this package's own constants; every value,
JSON key and list is a query parameter cast to the column's catalog type. Embedded
resources are correlated subqueries in the same statement, so they run as the
caller's role and RLS applies to the embedded rows too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from psycopg import sql

from opstui.backend.postgrest_query.grammar import (
    CASTS,
    FTS_OPS,
    IS_VALUES,
    SIMPLE_OPS,
    Embed,
    Field,
    Filter,
    Logic,
    Node,
    OrderTerm,
    Query,
    SelectItem,
)
from opstui.backend.postgrest_query.model import Catalog, Column, QueryError, Table
from opstui.backend.postgrest_query.relations import Relationship, resolve

_TEXTUAL = frozenset({"text", "character varying", "character", "name", "citext"})
_NO_OPTIONS = Query(select=[])
_IS_KEYWORDS = frozenset(IS_VALUES.values())


def _is_textual(typ: str) -> bool:
    base = typ.split("(")[0]
    return base in _TEXTUAL or base.endswith(".citext")


class _Aliases:
    """`pgrst_1`, `pgrst_2`… for the subqueries of one statement."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> str:
        self.n += 1
        return f"pgrst_{self.n}"


class Builder:
    """SQL for one level of a request (the table, or one embedded resource).

    Parameters are collected in textual order, shared with the nested levels.
    """

    def __init__(
        self,
        table: Table,
        *,
        qualifier: str | None = None,
        catalog: Catalog | None = None,
        select: Sequence[SelectItem | Embed] = (),
        embedded: dict[tuple[str, ...], Query] | None = None,
        path: tuple[str, ...] = (),
        params: list[Any] | None = None,
        aliases: _Aliases | None = None,
    ) -> None:
        self.table = table
        self.qualifier = qualifier
        self.catalog = catalog or Catalog()
        self.select = list(select)
        self.embedded = embedded or {}
        self.path = path
        self.params: list[Any] = [] if params is None else params
        self.aliases = aliases or _Aliases()
        self._embeds = {e.key: e for e in self.select if isinstance(e, Embed)}

    def _child(self, rel: Relationship, embed: Embed) -> Builder:
        return Builder(
            rel.target,
            qualifier=self.aliases(),
            catalog=self.catalog,
            select=embed.select,
            embedded=self.embedded,
            path=self.path + (embed.key,),
            params=self.params,
            aliases=self.aliases,
        )

    def param(self, value: Any, cast: str | None = None) -> sql.Composable:
        """A placeholder; `cast` is always a catalog type name or one of our constants."""
        self.params.append(value)
        return sql.SQL("%s::" + cast) if cast else sql.SQL("%s")

    def _column(self, name: str) -> sql.Identifier:
        return sql.Identifier(self.qualifier, name) if self.qualifier else sql.Identifier(name)

    # fields

    def field(self, fld: Field) -> tuple[sql.Composable, str, Column]:
        """SQL for a field, the SQL type of its value, and the base column."""
        col = self.table.column(fld.column)
        expr: sql.Composable = self._column(fld.column)
        typ = col.type
        for arrow, key in fld.path:
            # JSON keys are arbitrary text: parameters, never SQL text.
            key_sql = self.param(key, "integer" if isinstance(key, int) else "text")
            expr = sql.SQL("{} {} {}").format(
                expr, sql.SQL("->>" if arrow == "->>" else "->"), key_sql
            )
            typ = "text" if arrow == "->>" else "jsonb"
        if fld.path and col.type == "json":
            # `json` has no equality operator; compare JSON paths as jsonb, like PostgREST.
            typ = "text" if fld.path[-1][0] == "->>" else "jsonb"
            if typ == "jsonb":
                expr = sql.SQL("({})::jsonb").format(expr)
        return expr, typ, col

    # select list

    def select_list(self) -> sql.Composable:
        out = []
        for item in self.select:
            if isinstance(item, Embed) and item.spread:
                out += self._spread(item)
                continue
            if isinstance(item, Embed) and not item.select:
                continue  # `name()` only filters: no column in the output
            if isinstance(item, SelectItem) and item.field is None:
                out.append(sql.SQL("*"))
                continue
            value, name = self._single_value(item)
            out.append(sql.SQL("{} as {}").format(value, name))
        return sql.SQL(", ").join(out)

    # embedded resources

    def _join(self, rel: Relationship, child: Builder) -> sql.Composable:
        if not self.qualifier:
            raise QueryError("embedded resources are not available on this request")
        if rel.junction is None:
            return sql.SQL(" and ").join(
                sql.SQL("{} = {}").format(child._column(t), self._column(p)) for p, t in rel.pairs
            )
        # many-to-many: a visible junction row links this parent row and the target row
        via = rel.junction
        alias = self.aliases()
        links = [
            sql.SQL("{} = {}").format(sql.Identifier(alias, j), self._column(p))
            for p, j in via.parent_pairs
        ] + [
            sql.SQL("{} = {}").format(sql.Identifier(alias, j), child._column(t))
            for t, j in via.target_pairs
        ]
        return sql.SQL("exists (select 1 from {} as {} where {})").format(
            via.table.ident, sql.Identifier(alias), sql.SQL(" and ").join(links)
        )

    def _options(self, child: Builder) -> Query:
        return self.embedded.get(child.path, _NO_OPTIONS)

    def _embed_value(self, embed: Embed) -> sql.Composable:
        """The embedded rows as one JSON value: an object (or null), or an array."""
        rel = resolve(self.catalog, self.table, embed)
        child = self._child(rel, embed)
        opts = self._options(child)
        row = sql.Identifier(self.aliases())
        cols = child.select_list()
        rows = sql.SQL("select {} from {} as {}").format(
            cols, rel.target.ident, sql.Identifier(child.qualifier)
        )
        rows += child.where(opts.where, join=self._join(rel, child))
        if rel.to_one:
            return sql.SQL("(select row_to_json({}) from ({}) as {})").format(row, rows, row)
        rows += child.order_by(opts.order) + child.limit_offset(opts.limit, opts.offset)
        return sql.SQL("(select coalesce(json_agg({}), '[]'::json) from ({}) as {})").format(
            row, rows, row
        )

    def _to_one(self, embed: Embed, what: str) -> tuple[Relationship, Builder, sql.Composable]:
        """A to-one embed's builder and `from <target> as <alias> where <join and filters>`."""
        rel = resolve(self.catalog, self.table, embed)
        if not rel.to_one:
            raise QueryError(
                f"A {what} on '{embed.name}' is not possible",
                code="PGRST118" if what == "related order" else "PGRST119",
                details=f"'{self.table.name}' and '{embed.name}' do not form a many-to-one relationship",
            )
        child = self._child(rel, embed)
        rows = sql.SQL(" from {} as {}").format(rel.target.ident, sql.Identifier(child.qualifier))
        return rel, child, rows

    def _spread(self, embed: Embed) -> list[sql.Composable]:
        """`...repositories(name)`: each column a scalar subquery on the one related row."""
        out: list[sql.Composable] = []
        items: list[SelectItem | Embed] = []
        for item in embed.select:
            if isinstance(item, SelectItem) and item.field is None:
                target = resolve(self.catalog, self.table, embed).target
                items += [SelectItem(Field(c)) for c in target.columns]
            elif isinstance(item, Embed) and item.spread:
                raise QueryError(
                    "failed to parse select parameter", details="a spread inside a spread"
                )
            else:
                items.append(item)
        for item in items:
            rel, child, rows = self._to_one(embed, "spread operation")
            value, name = child._single_value(item)
            where = child.where(self._options(child).where, join=self._join(rel, child))
            out.append(sql.SQL("(select {}{}{}) as {}").format(value, rows, where, name))
        return out

    def _single_value(self, item: SelectItem | Embed) -> tuple[sql.Composable, sql.Identifier]:
        if isinstance(item, Embed):
            return self._embed_value(item), sql.Identifier(item.key)
        assert item.field is not None
        expr, _, _ = self.field(item.field)
        if item.cast:
            expr = sql.SQL("({})::{}").format(expr, sql.SQL(CASTS[item.cast]))
        name = item.alias or item.field.default_name
        if "%" in name:
            raise QueryError(
                "failed to parse select parameter",
                details=f"output name {name!r} contains '%'",
                hint="Give the column an alias: alias:col->>key",
            )
        return expr, sql.Identifier(name)

    def _exists(self, embed: Embed) -> sql.Composable:
        """`exists(…)`: the parent has at least one visible embedded row passing its filters."""
        rel = resolve(self.catalog, self.table, embed)
        child = self._child(rel, embed)
        opts = self._options(child)
        query = sql.SQL("select 1 from {} as {}").format(
            rel.target.ident, sql.Identifier(child.qualifier)
        )
        query += child.where(opts.where, join=self._join(rel, child))
        return sql.SQL("exists ({})").format(query)

    # where

    def condition(self, node: Node) -> sql.Composable:
        if isinstance(node, Logic):
            if not node.children:
                inner: sql.Composable = sql.SQL("true" if node.op == "and" else "false")
            else:
                joiner = sql.SQL(" and " if node.op == "and" else " or ")
                inner = sql.SQL("({})").format(
                    joiner.join(self.condition(c) for c in node.children)
                )
            return sql.SQL("not {}").format(inner) if node.negated else inner
        cond = self._filter(node)
        return sql.SQL("not ({})").format(cond) if node.negated else cond

    def _filter(self, f: Filter) -> sql.Composable:
        embed = self._embeds.get(f.field.column)
        if embed is not None and f.field.column not in self.table.columns and not f.field.path:
            # `repositories=not.is.null`: filter the parent on its embedded rows.
            if f.op != "is" or f.value not in ("null", "not null"):
                raise QueryError(
                    f"failed to parse filter ({f.field.column})",
                    details="an embedded resource can only be filtered with is.null or not.is.null",
                )
            exists = self._exists(embed)
            return exists if f.value == "not null" else sql.SQL("not {}").format(exists)
        expr, typ, _ = self.field(f.field)
        if f.op == "is":
            if f.value not in _IS_KEYWORDS:
                raise QueryError("failed to parse filter", details=f"bad is value {f.value!r}")
            return sql.SQL("{} is {}").format(expr, sql.SQL(f.value))
        if f.op == "in":
            return sql.SQL("{} = any({})").format(expr, self.param(list(f.value), f"{typ}[]"))
        if f.op in FTS_OPS:
            fn = sql.SQL(FTS_OPS[f.op])
            if f.modifier:
                query = sql.SQL("{}({}, {})").format(
                    fn, self.param(f.modifier, "regconfig"), self.param(f.value, "text")
                )
            else:
                query = sql.SQL("{}({})").format(fn, self.param(f.value, "text"))
            return sql.SQL("{} @@ {}").format(expr, query)
        op = SIMPLE_OPS[f.op]
        value: Any = f.value
        if f.op in ("like", "ilike", "match", "imatch"):
            if f.op in ("like", "ilike"):
                value = value.replace("*", "%")
            if not _is_textual(typ):
                # PostgREST would fail with 42883 here; comparing the text form is friendlier.
                expr = sql.SQL("({})::text").format(expr)
            typ = "text"
        if f.modifier in ("any", "all"):
            quantifier = sql.SQL("any" if f.modifier == "any" else "all")
            rhs = sql.SQL("{}({})").format(quantifier, self.param(value, f"{typ}[]"))
            return sql.SQL("{} {} {}").format(expr, sql.SQL(op), rhs)
        return sql.SQL("{} {} {}").format(expr, sql.SQL(op), self.param(value, typ))

    def where(self, nodes: Sequence[Node], *, join: sql.Composable | None = None) -> sql.Composable:
        """` where …`: the join (for an embed), the filters, then `!inner` embeds' exists()."""
        conds: list[sql.Composable] = [join] if join is not None else []
        conds += [self.condition(n) for n in nodes]
        conds += [self._exists(e) for e in self._embeds.values() if e.inner]
        if not conds:
            return sql.SQL("")
        return sql.SQL(" where ") + sql.SQL(" and ").join(conds)

    def order_by(self, terms: Sequence[OrderTerm]) -> sql.Composable:
        if not terms:
            return sql.SQL("")
        parts = []
        for t in terms:
            if t.embed is not None:
                expr = self._related_order(t)
            else:
                expr, _, _ = self.field(t.field)
            s = sql.SQL("{} {}").format(expr, sql.SQL("desc" if t.desc else "asc"))
            if t.nulls:
                s = sql.SQL("{} nulls {}").format(
                    s, sql.SQL("first" if t.nulls == "first" else "last")
                )
            parts.append(s)
        return sql.SQL(" order by ") + sql.SQL(", ").join(parts)

    def _related_order(self, term: OrderTerm) -> sql.Composable:
        """`order=repositories(name)`: the column of the one related row (embed filters apply)."""
        embed = self._embeds.get(term.embed or "")
        if embed is None:
            raise QueryError(
                f"'{term.embed}' is not an embedded resource in this request",
                code="PGRST108",
                hint=f"Verify that '{term.embed}' is included in the 'select' query parameter.",
            )
        rel, child, rows = self._to_one(embed, "related order")
        expr, _, _ = child.field(term.field)
        where = child.where(self._options(child).where, join=self._join(rel, child))
        return sql.SQL("(select {}{}{})").format(expr, rows, where)

    def limit_offset(self, limit: int | None, offset: int | None) -> sql.Composable:
        out = sql.SQL("")
        if limit is not None:
            out += sql.SQL(" limit ") + self.param(limit, "bigint")
        if offset:
            out += sql.SQL(" offset ") + self.param(offset, "bigint")
        return out


def check_embedded_paths(q: Query) -> None:
    """Every `x.col=…`, `x.order=…` must name an embed of the select list (PGRST108)."""
    for path in q.embedded:
        items: Sequence[SelectItem | Embed] = q.select
        for depth, key in enumerate(path):
            embed = next((e for e in items if isinstance(e, Embed) and e.key == key), None)
            if embed is None:
                name = ".".join(path[: depth + 1])
                raise QueryError(
                    f"'{name}' is not an embedded resource in this request",
                    code="PGRST108",
                    hint=f"Verify that '{name}' is included in the 'select' query parameter.",
                )
            items = embed.select


def body_sql(*, single: bool, strip_nulls: bool, alias: str = "pgrst_t") -> sql.Composable:
    """`<json body as text>, <row count>` aggregated over `alias`."""
    row: sql.Composable = sql.Identifier(alias)
    if strip_nulls:
        row = sql.SQL("json_strip_nulls(row_to_json({}))").format(row)
    if single:
        body = sql.SQL("case when count(*) = 1 then (json_agg({}) -> 0)::text end").format(row)
    else:
        body = sql.SQL("coalesce(json_agg({}), '[]')::text").format(row)
    return body + sql.SQL(", count(*)")


def read_sql(
    table: Table,
    q: Query,
    *,
    catalog: Catalog | None = None,
    single: bool = False,
    strip_nulls: bool = False,
    with_count: bool = False,
    source: sql.Composable | None = None,
    source_params: Sequence[Any] = (),
) -> tuple[sql.Composed, list[Any]]:
    """One statement returning (body_text, page_rows[, total])."""
    check_embedded_paths(q)
    src = source if source is not None else table.ident

    def level() -> Builder:
        b = Builder(
            table, qualifier="pgrst_src", catalog=catalog, select=q.select, embedded=q.embedded
        )
        b.params.extend(source_params)
        return b

    b = level()
    inner = sql.SQL("select {} from {} as pgrst_src").format(b.select_list(), src)
    inner += b.where(q.where) + b.order_by(q.order) + b.limit_offset(q.limit, q.offset)
    query = sql.SQL("select {}").format(body_sql(single=single, strip_nulls=strip_nulls))
    if with_count:
        c = level()
        count = sql.SQL("(select count(*) from {} as pgrst_src{})").format(src, c.where(q.where))
        query += sql.SQL(", ") + count
        query += sql.SQL(" from ({}) as pgrst_t").format(inner)
        return query, c.params + b.params  # the count subquery comes first in the text
    query += sql.SQL(" from ({}) as pgrst_t").format(inner)
    return query, b.params


# -- writes ------------------------------------------------------------------------------------


def _recordset_columns(table: Table, cols: Sequence[str]) -> sql.Composable:
    return sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(table.columns[c].type)) for c in cols
    )


def check_payload_columns(table: Table, cols: Iterable[str]) -> None:
    for c in cols:
        if c not in table.columns:
            raise QueryError(
                f"Could not find the '{c}' column of '{table.name}' in the schema cache",
                code="PGRST204",
                status=400,
            )


def insert_statements(
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    columns: Sequence[str] | None,
    missing_default: bool,
    resolution: str | None,
    on_conflict: Sequence[str] | None,
    returning: bool,
) -> list[tuple[sql.Composed, str]]:
    """INSERT statements (one per distinct key set with `missing=default`) and their JSON param.

    Values travel as one JSON document per statement and are converted with
    `json_to_recordset(…) as (col type, …)`, so Postgres applies its own input
    functions for every column type (arrays, jsonb, enums, timestamps…).
    """
    if columns is None:
        seen: dict[str, None] = {}
        for row in rows:
            for k in row:
                seen.setdefault(k, None)
        all_cols = list(seen)
    else:
        all_cols = list(dict.fromkeys(columns))
    check_payload_columns(table, all_cols)

    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    if missing_default:
        for row in rows:
            key = tuple(c for c in all_cols if c in row)
            groups.setdefault(key, []).append(row)
    else:
        groups[tuple(all_cols)] = list(rows)

    target = list(on_conflict) if on_conflict else list(table.primary_key)
    conflict = sql.SQL("")
    if resolution is not None:
        for c in target:
            table.column(c)
        target_sql = (
            sql.SQL(" ({})").format(sql.SQL(", ").join(map(sql.Identifier, target)))
            if target
            else sql.SQL("")
        )
        if resolution == "ignore":
            conflict = sql.SQL(" on conflict{} do nothing").format(target_sql)
        else:
            if not target:
                raise QueryError(
                    "merge-duplicates needs a conflict target",
                    hint="Pass on_conflict=col or give the table a primary key.",
                )
            # The per-group update list is built below (it depends on the group's columns).
            conflict = target_sql
    statements = []
    for cols, group_rows in groups.items():
        payload = json.dumps([{c: r.get(c) for c in cols} for r in group_rows])
        if cols:
            col_ids = sql.SQL(", ").join(map(sql.Identifier, cols))
            stmt = sql.SQL(
                "insert into {} ({}) select {} from json_to_recordset(%s::json) as pgrst_body({})"
            ).format(table.ident, col_ids, col_ids, _recordset_columns(table, cols))
        else:
            stmt = sql.SQL(
                "insert into {} select from json_to_recordset(%s::json) as pgrst_body(pgrst_unused int)"
            ).format(table.ident)
        if resolution == "merge":
            update_cols = [c for c in cols if c not in target] or target
            sets = sql.SQL(", ").join(
                sql.SQL("{} = excluded.{}").format(sql.Identifier(c), sql.Identifier(c))
                for c in update_cols
            )
            stmt += sql.SQL(" on conflict{} do update set {}").format(conflict, sets)
        elif resolution == "ignore":
            stmt += conflict
        if returning:
            stmt += sql.SQL(" returning *")
        statements.append((stmt, payload))
    return statements


def update_statement(
    table: Table, body: dict[str, Any], q: Query, *, returning: bool
) -> tuple[sql.Composed, list[Any]] | None:
    cols = list(body)
    check_payload_columns(table, cols)
    if not cols:
        return None
    b = Builder(table)
    col_ids = sql.SQL(", ").join(map(sql.Identifier, cols))
    b.params.append(json.dumps(body))
    stmt = sql.SQL(
        "update {} set ({}) = (select {} from json_to_record(%s::json) as pgrst_body({}))"
    ).format(table.ident, col_ids, col_ids, _recordset_columns(table, cols))
    stmt += b.where(q.where)
    if returning:
        stmt += sql.SQL(" returning *")
    return stmt, b.params


def delete_statement(table: Table, q: Query, *, returning: bool) -> tuple[sql.Composed, list[Any]]:
    b = Builder(table)
    stmt = sql.SQL("delete from {}").format(table.ident) + b.where(q.where)
    if returning:
        stmt += sql.SQL(" returning *")
    return stmt, b.params


def wrap_returning(
    table: Table,
    statements: Sequence[sql.Composable],
    select: Sequence[SelectItem | Embed],
    *,
    catalog: Catalog | None = None,
    embedded: dict[tuple[str, ...], Query] | None = None,
    single: bool,
    strip_nulls: bool,
) -> tuple[sql.Composed, list[Any]]:
    """`with w1 as (… returning *), … select <body>, count(*) from (select <select> from w) t`.

    The statements' own parameters come before the returned (select list) ones.
    """
    ctes = [
        sql.SQL("{} as ({})").format(sql.Identifier(f"pgrst_w{i}"), s)
        for i, s in enumerate(statements)
    ]
    union = sql.SQL(" union all ").join(
        sql.SQL("select * from {}").format(sql.Identifier(f"pgrst_w{i}"))
        for i in range(len(statements))
    )
    b = Builder(table, qualifier="pgrst_w", catalog=catalog, select=select, embedded=embedded)
    query = sql.SQL(
        "with {}, pgrst_w as ({}) select {} from (select {} from pgrst_w) as pgrst_t"
    ).format(
        sql.SQL(", ").join(ctes),
        union,
        body_sql(single=single, strip_nulls=strip_nulls),
        b.select_list(),
    )
    return query, b.params
