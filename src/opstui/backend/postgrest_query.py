"""PostgREST's URL grammar, parsed and turned into SQL (no I/O here).

`parse_query` reads the multi-map of query parameters that supabase-py sends
(`select`, filters such as `team_id=eq.1`, `or=(…)`, `order`, `limit`,
`offset`, `columns`, `on_conflict`) into a small AST. The `*_sql` builders
turn that AST into `psycopg.sql` compositions for one table, checking every
identifier against the table's real columns and passing every value as a
query parameter cast to the column's catalog type. User input never reaches
the SQL text except as a quoted `sql.Identifier` of an existing column or a
`sql.Literal` JSON key.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from psycopg import sql

# -- errors ------------------------------------------------------------------------------------


class QueryError(Exception):
    """A request PostgREST would refuse; `rest_api` turns it into an ApiError."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "PGRST100",
        status: int = 400,
        details: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.details = details
        self.hint = hint


# -- schema description (filled by rest_api's schema cache) -------------------------------------


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # format_type() output, schema-qualified where needed: safe to splice as SQL
    category: str = "S"  # pg_type.typcategory: S string, A array, N numeric, B bool, U user...
    has_default: bool = False


@dataclass(frozen=True)
class Table:
    schema: str
    name: str
    columns: dict[str, Column]
    primary_key: tuple[str, ...] = ()

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    def column(self, name: str) -> Column:
        col = self.columns.get(name)
        if col is None:
            raise QueryError(f"column {self.name}.{name} does not exist", code="42703", status=400)
        return col


# -- AST -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """A column, optionally followed by a JSON path: `data->a->>b`."""

    column: str
    path: tuple[tuple[str, str | int], ...] = ()  # (arrow, key)

    @property
    def default_name(self) -> str:
        return str(self.path[-1][1]) if self.path else self.column


@dataclass(frozen=True)
class Filter:
    field: Field
    op: str
    value: Any  # str, tuple[str, ...] for `in`, None for `is`-less ops
    negated: bool = False
    modifier: str | None = None  # `any`/`all` for `eq(any)`, language for `fts(english)`


@dataclass(frozen=True)
class Logic:
    op: str  # "and" | "or"
    children: tuple[Filter | Logic, ...]
    negated: bool = False


Node = Filter | Logic


@dataclass(frozen=True)
class SelectItem:
    field: Field | None  # None means `*`
    alias: str | None = None
    cast: str | None = None


@dataclass(frozen=True)
class OrderTerm:
    field: Field
    desc: bool = False
    nulls: str | None = None  # "first" | "last"


@dataclass
class Query:
    select: list[SelectItem] = field(default_factory=lambda: [SelectItem(None)])
    where: list[Node] = field(default_factory=list)
    order: list[OrderTerm] = field(default_factory=list)
    limit: int | None = None
    offset: int | None = None
    columns: list[str] | None = None
    on_conflict: list[str] | None = None
    args: dict[str, str] = field(default_factory=dict)  # GET rpc arguments


# -- lexical helpers ---------------------------------------------------------------------------

RESERVED = frozenset({"select", "order", "limit", "offset", "columns", "on_conflict", "apikey"})
LOGIC_KEYS = frozenset({"or", "and", "not.or", "not.and"})

_IDENT_RE = re.compile(r"^[\w$ ]+(?:-[\w$ ]+)*$")
_CAST_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_ ]*(?:\[\])?$")
_INT_RE = re.compile(r"^-?\d+$")

SIMPLE_OPS = {
    "eq": "=",
    "neq": "<>",
    "gt": ">",
    "gte": ">=",
    "lt": "<",
    "lte": "<=",
    "like": "like",
    "ilike": "ilike",
    "match": "~",
    "imatch": "~*",
    "cs": "@>",
    "cd": "<@",
    "ov": "&&",
    "sl": "<<",
    "sr": ">>",
    "nxr": "&<",
    "nxl": "&>",
    "adj": "-|-",
    "isdistinct": "is distinct from",
}
QUANTIFIABLE = frozenset(
    {"eq", "neq", "gt", "gte", "lt", "lte", "like", "ilike", "match", "imatch"}
)
FTS_OPS = {
    "fts": "to_tsquery",
    "plfts": "plainto_tsquery",
    "phfts": "phraseto_tsquery",
    "wfts": "websearch_to_tsquery",
}
ALL_OPS = frozenset(SIMPLE_OPS) | frozenset(FTS_OPS) | {"in", "is"}
IS_VALUES = {
    "null": "null",
    "true": "true",
    "false": "false",
    "unknown": "unknown",
    "not_null": "not null",
}


def _unquote(text: str) -> str:
    """`"a\\"b"` -> `a"b` (PostgREST's double-quoted values, backslash escapes)."""
    out = []
    i = 1
    while i < len(text) - 1:
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) - 1:
            i += 1
            ch = text[i]
        out.append(ch)
        i += 1
    return "".join(out)


def split_top_level(text: str, what: str) -> list[str]:
    """Split on commas outside double quotes and parentheses; refuse unbalanced input."""
    parts: list[str] = []
    depth = 0
    quoted = False
    start = 0
    i = 0
    while i < len(text):
        ch = text[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise QueryError(
                    f"failed to parse {what}", details=f"unexpected ')' at position {i + 1}"
                )
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    if quoted:
        raise QueryError(f"failed to parse {what}", details="unterminated double quote")
    if depth:
        raise QueryError(f"failed to parse {what}", details="unbalanced parentheses: missing ')'")
    parts.append(text[start:])
    return parts


def _name(text: str, what: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        name = _unquote(text)
        # `%` would be read as a placeholder by psycopg once composed into the query text.
        if name and "%" not in name and "\x00" not in name:
            return name
    elif _IDENT_RE.match(text):
        return text
    raise QueryError(f"failed to parse {what}", details=f"invalid identifier {text!r}")


def parse_field(text: str, what: str = "field") -> Field:
    """`col`, `"odd col"`, `data->key`, `data->0->>name`."""
    pieces = re.split(r"(->>|->)", text)
    column = _name(pieces[0], what)
    path: list[tuple[str, str | int]] = []
    for i in range(1, len(pieces), 2):
        arrow, key = pieces[i], pieces[i + 1]
        if key == "":
            raise QueryError(f"failed to parse {what}", details=f"empty JSON key in {text!r}")
        key = key.strip()
        if len(key) >= 2 and key[0] == '"' and key[-1] == '"':
            key = _unquote(key)
        # JSON keys travel as query parameters, so any text is safe here.
        key_value: str | int = int(key) if _INT_RE.match(key) else key
        path.append((arrow, key_value))
    return Field(column, tuple(path))


# -- select ------------------------------------------------------------------------------------


def parse_select(text: str) -> list[SelectItem]:
    what = f"select parameter ({text})"
    if not text.strip():
        return [SelectItem(None)]
    items = []
    for raw in split_top_level(text, what):
        item = raw.strip()
        if not item:
            raise QueryError(f"failed to parse {what}", details="empty select item")
        if "(" in item or item.startswith("...") or "!" in item:
            raise QueryError(
                f"failed to parse {what}",
                details="embedded resources, spreads and aggregates are not supported by this gateway",
                hint="Select plain columns and query related tables separately.",
            )
        cast = None
        if "::" in item:
            item, cast = item.rsplit("::", 1)
            if not _CAST_RE.match(cast):
                raise QueryError(f"failed to parse {what}", details=f"invalid cast {cast!r}")
        alias = None
        if ":" in item and not item.startswith('"'):
            alias, item = item.split(":", 1)
            alias = _name(alias, what)
        if item.strip() == "*":
            if alias or cast:
                raise QueryError(
                    f"failed to parse {what}", details="`*` cannot take an alias or cast"
                )
            items.append(SelectItem(None))
            continue
        items.append(SelectItem(parse_field(item, what), alias, cast))
    return items


# -- filters -----------------------------------------------------------------------------------


def parse_in_list(text: str, what: str) -> tuple[str, ...]:
    if len(text) < 2 or text[0] != "(" or text[-1] != ")":
        raise QueryError(f"failed to parse {what}", details='`in` expects a list like (a,b,"c,d")')
    inner = text[1:-1]
    if inner == "":
        return ()
    values = []
    for part in split_top_level(inner, what):
        p = part.strip()
        values.append(_unquote(p) if len(p) >= 2 and p[0] == '"' and p[-1] == '"' else p)
    return tuple(values)


def parse_operation(fld: Field, text: str, *, in_tree: bool = False) -> Filter:
    """`[not.]op[(modifier)].value` applied to `fld`."""
    what = f"filter ({text})"
    negated = False
    rest = text
    if rest.startswith("not."):
        negated, rest = True, rest[4:]
    op, dot, value = rest.partition(".")
    if not dot:
        raise QueryError(f"failed to parse {what}", details="expected operator.value, e.g. eq.1")
    modifier = None
    m = re.match(r"^(\w+)\((\w+)\)$", op)
    if m:
        op, modifier = m.group(1), m.group(2)
        if op in QUANTIFIABLE and modifier not in ("any", "all"):
            raise QueryError(f"failed to parse {what}", details=f"unknown modifier {modifier!r}")
        if op not in QUANTIFIABLE and op not in FTS_OPS:
            raise QueryError(f"failed to parse {what}", details=f"{op} takes no modifier")
    if op not in ALL_OPS:
        raise QueryError(f"failed to parse {what}", details=f"unknown operator {op!r}")
    if in_tree and op != "in" and len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        value = _unquote(value)
    parsed: Any = value
    if op == "in":
        parsed = parse_in_list(value, what)
    elif op == "is":
        key = value.lower()
        if key not in IS_VALUES:
            raise QueryError(
                f"failed to parse {what}",
                details="`is` accepts null, not_null, true, false or unknown",
            )
        parsed = IS_VALUES[key]
    elif modifier in ("any", "all"):
        if not (value.startswith("{") and value.endswith("}")):
            raise QueryError(f"failed to parse {what}", details="op(any|all) expects {a,b}")
    return Filter(fld, op, parsed, negated, modifier)


def parse_filter(key: str, value: str) -> Filter:
    return parse_operation(parse_field(key, f"filter ({key})"), value)


def parse_logic(key: str, value: str) -> Logic:
    negated = key.startswith("not.")
    op = key[4:] if negated else key
    return _parse_tree(op, value, negated, f"logic tree ({value})")


def _parse_tree(op: str, text: str, negated: bool, what: str) -> Logic:
    text = text.strip()
    if len(text) < 2 or text[0] != "(" or text[-1] != ")":
        raise QueryError(
            f"failed to parse {what}", details="expected a parenthesised list, e.g. (a.eq.1,b.gt.2)"
        )
    # Balance check over the whole text first, so `(a.eq.1` and `(a.eq.1))` are refused.
    split_top_level(text, what)
    children: list[Node] = []
    for raw in split_top_level(text[1:-1], what):
        item = raw.strip()
        if not item:
            raise QueryError(f"failed to parse {what}", details="empty condition")
        m = re.match(r"^(not\.)?(and|or)\(", item)
        if m:
            children.append(
                _parse_tree(m.group(2), item[len(m.group(0)) - 1 :], bool(m.group(1)), what)
            )
            continue
        if item.startswith('"'):
            end = _closing_quote(item)
            field_text, rest = item[: end + 1], item[end + 1 :]
            if not rest.startswith("."):
                raise QueryError(f"failed to parse {what}", details=f"bad condition {item!r}")
            rest = rest[1:]
        else:
            field_text, dot, rest = item.partition(".")
            if not dot:
                raise QueryError(f"failed to parse {what}", details=f"bad condition {item!r}")
        fld = parse_field(field_text, what)
        try:
            children.append(parse_operation(fld, rest, in_tree=True))
        except QueryError as exc:
            raise QueryError(f"failed to parse {what}", details=exc.details) from None
    return Logic(op, tuple(children), negated)


def _closing_quote(text: str) -> int:
    i = 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == '"':
            return i
        i += 1
    raise QueryError("failed to parse filter", details="unterminated double quote")


# -- order, ranges, column lists ---------------------------------------------------------------


def parse_order(text: str) -> list[OrderTerm]:
    what = f"order ({text})"
    terms = []
    for raw in split_top_level(text, what):
        item = raw.strip()
        if item.startswith('"'):
            end = _closing_quote(item)
            field_text, rest = item[: end + 1], item[end + 1 :].lstrip(".")
        else:
            field_text, _, rest = item.partition(".")
        fld = parse_field(field_text, what)
        desc, nulls = False, None
        mods = rest.split(".") if rest else []
        if len(mods) > 2:
            raise QueryError(f"failed to parse {what}", details=f"bad order term {item!r}")
        for mod in mods:
            if mod in ("asc", "desc") and nulls is None:
                desc = mod == "desc"
            elif mod in ("nullsfirst", "nullslast") and nulls is None:
                nulls = mod[5:]
            else:
                raise QueryError(
                    f"failed to parse {what}", details=f"unknown order modifier {mod!r}"
                )
        terms.append(OrderTerm(fld, desc, nulls))
    return terms


def parse_nonneg_int(name: str, text: str) -> int:
    if not re.match(r"^\d{1,18}$", text.strip()):
        raise QueryError(
            f"failed to parse {name} parameter ({text})", details="expected a non-negative integer"
        )
    return int(text)


def parse_column_list(name: str, text: str) -> list[str]:
    what = f"{name} parameter ({text})"
    cols = [_name(part, what) for part in split_top_level(text, what)]
    if not cols:
        raise QueryError(f"failed to parse {what}")
    return cols


def parse_query(
    params: Iterable[tuple[str, str]], *, arg_names: frozenset[str] = frozenset()
) -> Query:
    """Parse the (repeating) query parameters of one request."""
    q = Query()
    for key, value in params:
        if key == "select":
            q.select = parse_select(value)
        elif key == "order":
            q.order = parse_order(value)
        elif key == "limit":
            q.limit = parse_nonneg_int("limit", value)
        elif key == "offset":
            q.offset = parse_nonneg_int("offset", value)
        elif key == "columns":
            q.columns = parse_column_list("columns", value)
        elif key == "on_conflict":
            q.on_conflict = parse_column_list("on_conflict", value)
        elif key == "apikey":
            continue
        elif key in LOGIC_KEYS:
            q.where.append(parse_logic(key, value))
        elif key in arg_names:
            q.args[key] = value
        elif not key:
            raise QueryError("failed to parse query string", details="empty parameter name")
        elif "." in key and not (key.startswith('"') and key.endswith('"')):
            raise QueryError(
                f"failed to parse filter ({key})",
                details="filters and modifiers on embedded resources are not supported by this gateway",
            )
        else:
            q.where.append(parse_filter(key, value))
    return q


# -- SQL building -----------------------------------------------------------------------------


_TEXTUAL = frozenset({"text", "character varying", "character", "name", "citext"})


def _is_textual(typ: str) -> bool:
    base = typ.split("(")[0]
    return base in _TEXTUAL or base.endswith(".citext")


class Builder:
    """Collects SQL fragments' parameters in textual order."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.params: list[Any] = []

    def param(self, value: Any, cast: str | None = None) -> sql.Composable:
        self.params.append(value)
        return sql.SQL("%s::" + cast) if cast else sql.SQL("%s")

    # fields

    def field(self, fld: Field) -> tuple[sql.Composable, str, Column]:
        """SQL for a field, the SQL type of its value, and the base column."""
        col = self.table.column(fld.column)
        expr: sql.Composable = sql.Identifier(fld.column)
        typ = col.type
        for arrow, key in fld.path:
            # JSON keys are arbitrary text: parameters, never SQL text.
            key_sql = self.param(key, "integer" if isinstance(key, int) else "text")
            expr = sql.SQL("{} {} {}").format(expr, sql.SQL(arrow), key_sql)
            typ = "text" if arrow == "->>" else "jsonb"
        if fld.path and col.type == "json":
            # `json` has no equality operator; compare JSON paths as jsonb, like PostgREST.
            typ = "text" if fld.path[-1][0] == "->>" else "jsonb"
            if typ == "jsonb":
                expr = sql.SQL("({})::jsonb").format(expr)
        return expr, typ, col

    # select list

    def select_list(self, items: Sequence[SelectItem]) -> sql.Composable:
        out = []
        for item in items:
            if item.field is None:
                out.append(sql.SQL("*"))
                continue
            expr, _, _ = self.field(item.field)
            if item.cast:
                expr = sql.SQL("({})::{}").format(expr, sql.SQL(item.cast))
            name = item.alias or item.field.default_name
            if "%" in name:
                raise QueryError(
                    "failed to parse select parameter",
                    details=f"output name {name!r} contains '%'",
                    hint="Give the column an alias: alias:col->>key",
                )
            out.append(sql.SQL("{} as {}").format(expr, sql.Identifier(name)))
        return sql.SQL(", ").join(out)

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
        expr, typ, _ = self.field(f.field)
        if f.op == "is":
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
            rhs = sql.SQL("{}({})").format(sql.SQL(f.modifier), self.param(value, f"{typ}[]"))
            return sql.SQL("{} {} {}").format(expr, sql.SQL(op), rhs)
        return sql.SQL("{} {} {}").format(expr, sql.SQL(op), self.param(value, typ))

    def where(self, nodes: Sequence[Node]) -> sql.Composable:
        if not nodes:
            return sql.SQL("")
        return sql.SQL(" where ") + sql.SQL(" and ").join(self.condition(n) for n in nodes)

    def order_by(self, terms: Sequence[OrderTerm]) -> sql.Composable:
        if not terms:
            return sql.SQL("")
        parts = []
        for t in terms:
            expr, _, _ = self.field(t.field)
            s = sql.SQL("{} {}").format(expr, sql.SQL("desc" if t.desc else "asc"))
            if t.nulls:
                s = sql.SQL("{} nulls {}").format(s, sql.SQL(t.nulls))
            parts.append(s)
        return sql.SQL(" order by ") + sql.SQL(", ").join(parts)

    def limit_offset(self, limit: int | None, offset: int | None) -> sql.Composable:
        out = sql.SQL("")
        if limit is not None:
            out += sql.SQL(" limit ") + self.param(limit, "bigint")
        if offset:
            out += sql.SQL(" offset ") + self.param(offset, "bigint")
        return out


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
    single: bool = False,
    strip_nulls: bool = False,
    with_count: bool = False,
    source: sql.Composable | None = None,
    source_params: Sequence[Any] = (),
) -> tuple[sql.Composed, list[Any]]:
    """One statement returning (body_text, page_rows[, total])."""
    src = source if source is not None else table.ident
    b = Builder(table)
    b.params.extend(source_params)
    inner = sql.SQL("select {} from {} as pgrst_src").format(b.select_list(q.select), src)
    inner += b.where(q.where) + b.order_by(q.order) + b.limit_offset(q.limit, q.offset)
    query = sql.SQL("select {}").format(body_sql(single=single, strip_nulls=strip_nulls))
    if with_count:
        c = Builder(table)
        c.params.extend(source_params)
        count = sql.SQL("(select count(*) from {} as pgrst_src{})").format(src, c.where(q.where))
        query += sql.SQL(", ") + count
        query += sql.SQL(" from ({}) as pgrst_t").format(inner)
        return query, c.params + b.params  # the count subquery comes first in the text
    query += sql.SQL(" from ({}) as pgrst_t").format(inner)
    return query, b.params


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
    import json

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

    conflict = sql.SQL("")
    if resolution is not None:
        target = list(on_conflict) if on_conflict else list(table.primary_key)
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
            target = list(on_conflict) if on_conflict else list(table.primary_key)
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
    import json

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
    select: Sequence[SelectItem],
    *,
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
    b = Builder(table)
    query = sql.SQL(
        "with {}, pgrst_w as ({}) select {} from (select {} from pgrst_w) as pgrst_t"
    ).format(
        sql.SQL(", ").join(ctes),
        union,
        body_sql(single=single, strip_nulls=strip_nulls),
        b.select_list(select),
    )
    return query, b.params


# -- Prefer / Accept --------------------------------------------------------------------------


@dataclass
class Prefer:
    returning: str | None = None  # representation | minimal | headers-only
    count: str | None = None  # exact | planned | estimated
    resolution: str | None = None  # merge | ignore
    missing_default: bool = False
    strict: bool = False
    max_affected: int | None = None
    applied: list[str] = field(default_factory=list)


def parse_prefer(headers: Iterable[str]) -> Prefer:
    p = Prefer()
    for header in headers:
        for token in header.split(","):
            token = token.strip()
            key, _, value = token.partition("=")
            key, value = key.strip().lower(), value.strip().lower()
            if key == "return" and value in ("representation", "minimal", "headers-only"):
                p.returning = value
            elif key == "count" and value in ("exact", "planned", "estimated"):
                p.count = value
            elif key == "resolution" and value in ("merge-duplicates", "ignore-duplicates"):
                p.resolution = value.split("-")[0]
            elif key == "missing" and value == "default":
                p.missing_default = True
            elif key == "handling" and value in ("strict", "lenient"):
                p.strict = value == "strict"
            elif key == "max-affected" and value.isdigit():
                p.max_affected = int(value)
    return p
