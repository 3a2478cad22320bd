"""PostgREST's URL grammar parsed into a small AST (no SQL, no I/O here).

Every name the caller sends is either matched against the catalog later (columns,
tables, foreign keys) or refused here; casts come from a fixed allow-list. Values
stay Python values: the builder passes them as query parameters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from opstui.backend.postgrest_query.model import QueryError

# Deeper than any real client goes, shallow enough that neither the parser's recursion
# nor Postgres's stack depth is ever the limit.
MAX_LOGIC_DEPTH = 32
MAX_EMBED_DEPTH = 8

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
    value: Any  # str, tuple[str, ...] for `in`, an IS_VALUES value for `is`
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
    cast: str | None = None  # a key of CASTS


@dataclass(frozen=True)
class Embed:
    """`alias:name!hint!inner(select…)`: rows of a related table, as JSON."""

    name: str  # the related table (or the foreign-key column that points at it)
    select: tuple[SelectItem | Embed, ...]  # () = used only to filter (`name!inner()`)
    alias: str | None = None
    hint: str | None = None  # foreign-key constraint name or column, to pick one relationship
    inner: bool = False
    spread: bool = False  # `...name(cols)`: the columns join the parent's (to-one only)

    @property
    def key(self) -> str:
        return self.alias or self.name


@dataclass(frozen=True)
class OrderTerm:
    field: Field
    desc: bool = False
    nulls: str | None = None  # "first" | "last"
    embed: str | None = None  # `order=repositories(name)`: a to-one embed's column


@dataclass
class Query:
    select: list[SelectItem | Embed] = field(default_factory=lambda: [SelectItem(None)])
    where: list[Node] = field(default_factory=list)
    order: list[OrderTerm] = field(default_factory=list)
    limit: int | None = None
    offset: int | None = None
    columns: list[str] | None = None
    on_conflict: list[str] | None = None
    args: dict[str, str] = field(default_factory=dict)  # GET rpc arguments
    # Filters, order and ranges of embedded resources, by embed path: ("repositories",).
    embedded: dict[tuple[str, ...], Query] = field(default_factory=dict)

    def embeds(self) -> list[Embed]:
        return [i for i in self.select if isinstance(i, Embed)]


# -- lexical helpers ---------------------------------------------------------------------------

RESERVED = frozenset({"select", "order", "limit", "offset", "columns", "on_conflict", "apikey"})
LOGIC_KEYS = frozenset({"or", "and", "not.or", "not.and"})

_IDENT_RE = re.compile(r"^[\w$ ]+(?:-[\w$ ]+)*$")
_INT_RE = re.compile(r"^-?[0-9]+$")

# `::cast` in select: the caller names one of these; the SQL text is ours, never theirs.
CASTS = {
    name: name
    for name in (
        "text",
        "varchar",
        "char",
        "name",
        "int2",
        "int4",
        "int8",
        "smallint",
        "integer",
        "bigint",
        "numeric",
        "decimal",
        "real",
        "float4",
        "float8",
        "bool",
        "boolean",
        "json",
        "jsonb",
        "uuid",
        "date",
        "time",
        "timetz",
        "timestamp",
        "timestamptz",
        "interval",
        "inet",
        "cidr",
        "macaddr",
        "bytea",
        "oid",
    )
} | {"int": "integer", "float": "float8"}
CASTS |= {f"{name}[]": f"{sql_text}[]" for name, sql_text in CASTS.items()}

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


def _quoted(text: str) -> bool:
    return len(text) >= 2 and text[0] == '"' and text[-1] == '"'


def split_top_level(text: str, what: str, sep: str = ",") -> list[str]:
    """Split on `sep` outside double quotes and parentheses; refuse unbalanced input."""
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
        elif ch == sep and depth == 0:
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
    if _quoted(text):
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
        key = key.strip()
        if key == "":
            raise QueryError(f"failed to parse {what}", details=f"empty JSON key in {text!r}")
        if _quoted(key):
            key = _unquote(key)
        # JSON keys travel as query parameters, so any text is safe here.
        key_value: str | int = int(key) if _INT_RE.match(key) else key
        path.append((arrow, key_value))
    return Field(column, tuple(path))


# -- select ------------------------------------------------------------------------------------


def parse_select(text: str, *, depth: int = 0) -> list[SelectItem | Embed]:
    what = f"select parameter ({text})"
    if not text.strip():
        return [SelectItem(None)]
    return [_select_item(raw.strip(), what, depth) for raw in split_top_level(text, what)]


def _select_item(item: str, what: str, depth: int) -> SelectItem | Embed:
    if not item:
        raise QueryError(f"failed to parse {what}", details="empty select item")
    spread = item.startswith("...")
    if spread:
        item = item[3:]
    paren = _first_unquoted(item, "(")
    if paren is not None:
        embed = _embed(item, paren, what, depth)
        if spread:
            if embed.alias:
                raise QueryError(f"failed to parse {what}", details="a spread takes no alias")
            embed = replace(embed, spread=True)
        return embed
    if spread:
        raise QueryError(f"failed to parse {what}", details="`...` spreads an embedded resource")
    cast = None
    if "::" in item:
        item, cast = item.rsplit("::", 1)
        cast = cast.strip().lower()
        if cast not in CASTS:
            raise QueryError(
                f"failed to parse {what}",
                details=f"unsupported cast {cast!r}",
                hint="Casts must be one plain type name such as text, integer, numeric, "
                "boolean, jsonb, uuid, date or timestamptz.",
            )
    alias = None
    if ":" in item and not item.startswith('"'):
        alias, item = item.split(":", 1)
        alias = _name(alias, what)
    if item.strip() == "*":
        if alias or cast:
            raise QueryError(f"failed to parse {what}", details="`*` cannot take an alias or cast")
        return SelectItem(None)
    if "!" in item:
        raise QueryError(f"failed to parse {what}", details=f"unexpected '!' in {item!r}")
    return SelectItem(parse_field(item, what), alias, cast)


def _first_unquoted(text: str, ch: str) -> int | None:
    quoted = False
    i = 0
    while i < len(text):
        c = text[i]
        if quoted:
            if c == "\\":
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c == ch:
            return i
        i += 1
    return None


def _embed(item: str, paren: int, what: str, depth: int) -> Embed:
    if not item.endswith(")"):
        raise QueryError(f"failed to parse {what}", details=f"bad embedded resource {item!r}")
    if depth >= MAX_EMBED_DEPTH:
        raise QueryError(
            f"failed to parse {what}",
            details=f"embedded resources nest more than {MAX_EMBED_DEPTH} deep",
        )
    head, inner = item[:paren], item[paren + 1 : -1]
    alias = None
    if ":" in head and not head.startswith('"'):
        alias, head = head.split(":", 1)
        alias = _name(alias, what)
    name_text, *mods = head.split("!")
    name = _name(name_text, what)
    if "->" in name_text:
        raise QueryError(f"failed to parse {what}", details=f"bad embedded resource {item!r}")
    hint, inner_join = None, False
    for mod in mods:
        mod = mod.strip()
        if mod == "inner":
            inner_join = True
        elif mod == "left":
            inner_join = False
        elif hint is None and mod:
            hint = _name(mod, what)
        else:
            raise QueryError(
                f"failed to parse {what}", details=f"bad embed modifier {mod!r} in {item!r}"
            )
    if name in ("count", "sum", "avg", "min", "max") and not inner.strip():
        raise QueryError(
            f"failed to parse {what}",
            details="aggregate functions are not supported by this gateway",
        )
    select = tuple(parse_select(inner, depth=depth + 1)) if inner.strip() else ()
    return Embed(name, select, alias, hint, inner_join)


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
        values.append(_unquote(p) if _quoted(p) else p)
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
    m = re.match(r"^([a-z]+)\(([A-Za-z0-9_]+)\)$", op)
    if m:
        op, modifier = m.group(1), m.group(2)
        if op in QUANTIFIABLE and modifier not in ("any", "all"):
            raise QueryError(f"failed to parse {what}", details=f"unknown modifier {modifier!r}")
        if op not in QUANTIFIABLE and op not in FTS_OPS:
            raise QueryError(f"failed to parse {what}", details=f"{op} takes no modifier")
    if op not in ALL_OPS:
        raise QueryError(f"failed to parse {what}", details=f"unknown operator {op!r}")
    if in_tree and op != "in" and _quoted(value):
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
    return _parse_tree(op, value, negated, f"logic tree ({value[:200]})", 1)


def _parse_tree(op: str, text: str, negated: bool, what: str, depth: int) -> Logic:
    if depth > MAX_LOGIC_DEPTH:
        raise QueryError(
            f"failed to parse {what}",
            details=f"and/or trees may nest at most {MAX_LOGIC_DEPTH} deep",
        )
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
            sub = item[len(m.group(0)) - 1 :]
            children.append(_parse_tree(m.group(2), sub, bool(m.group(1)), what, depth + 1))
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
        embed = None
        m = re.fullmatch(r"([^()]+)\(([^()]+)\)", field_text)
        if m:  # `repositories(name)`: order by a to-one embed's column
            embed, field_text = _name(m.group(1), what), m.group(2)
        elif "(" in field_text or ")" in field_text:
            raise QueryError(f"failed to parse {what}", details=f"bad order term {item!r}")
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
        terms.append(OrderTerm(fld, desc, nulls, embed))
    return terms


def parse_nonneg_int(name: str, text: str) -> int:
    if not re.match(r"^[0-9]{1,18}$", text.strip()):
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


def _key_path(key: str) -> tuple[tuple[str, ...], str]:
    """`repositories.teams.name` -> (("repositories", "teams"), "name"); quotes respected."""
    if _quoted(key) or "." not in key:
        return (), key
    parts = split_top_level(key, f"filter ({key})", sep=".")
    if len(parts) >= 2 and parts[-2] == "not" and parts[-1] in ("or", "and"):
        embed, last = parts[:-2], f"not.{parts[-1]}"
    else:
        embed, last = parts[:-1], parts[-1]
    names = tuple(_unquote(p) if _quoted(p) else p for p in embed)
    if any(not n for n in names) or not last:
        raise QueryError(f"failed to parse filter ({key})", details="empty name in path")
    return names, last


def _apply(q: Query, key: str, value: str, *, top: bool, arg_names: frozenset[str]) -> None:
    if key == "select" and top:
        q.select = parse_select(value)
    elif key == "order":
        q.order = parse_order(value)
    elif key == "limit":
        q.limit = parse_nonneg_int("limit", value)
    elif key == "offset":
        q.offset = parse_nonneg_int("offset", value)
    elif key == "columns" and top:
        q.columns = parse_column_list("columns", value)
    elif key == "on_conflict" and top:
        q.on_conflict = parse_column_list("on_conflict", value)
    elif key in LOGIC_KEYS:
        q.where.append(parse_logic(key, value))
    elif top and key in arg_names:
        q.args[key] = value
    elif not key:
        raise QueryError("failed to parse query string", details="empty parameter name")
    else:
        q.where.append(parse_filter(key, value))


def parse_query(
    params: Iterable[tuple[str, str]], *, arg_names: frozenset[str] = frozenset()
) -> Query:
    """Parse the (repeating) query parameters of one request."""
    q = Query()
    for key, value in params:
        if "\x00" in key or "\x00" in value:
            # Postgres text cannot hold NUL; say so instead of failing in the driver.
            raise QueryError(
                "failed to parse query string",
                details=f"parameter {key[:60]!r} contains a NUL byte",
            )
        if key == "apikey":
            continue
        if key in arg_names:
            q.args[key] = value
            continue
        path, last = _key_path(key)
        if not path:
            _apply(q, key, value, top=True, arg_names=arg_names)
            continue
        # `repositories.name=eq.x`, `repositories.order=name`, `repositories.or=(…)`…
        sub = q.embedded.setdefault(path, Query(select=[]))
        _apply(sub, last, value, top=False, arg_names=frozenset())
    return q
