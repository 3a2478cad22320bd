"""PostgREST's URL grammar, parsed and turned into SQL (no I/O here).

`grammar.parse_query` reads the multi-map of query parameters that supabase-py
sends (`select` with embedded resources, filters such as `team_id=eq.1`,
`or=(…)`, `order`, `limit`, `offset`, `columns`, `on_conflict`, and the same
keys prefixed by an embed's name) into a small AST. `builder` turns that AST
into `psycopg.sql` compositions, checking every identifier against the
catalog and passing every value as a query parameter cast to the column's
catalog type; `relations` picks the foreign key an embed follows. User input
never reaches the SQL text except as a quoted `sql.Identifier` of an existing
table or column.
"""

from opstui.backend.postgrest_query.builder import (
    Builder,
    body_sql,
    check_embedded_paths,
    check_payload_columns,
    delete_statement,
    insert_statements,
    read_sql,
    update_statement,
    wrap_returning,
)
from opstui.backend.postgrest_query.grammar import (
    ALL_OPS,
    CASTS,
    FTS_OPS,
    IS_VALUES,
    LOGIC_KEYS,
    MAX_EMBED_DEPTH,
    MAX_LOGIC_DEPTH,
    QUANTIFIABLE,
    RESERVED,
    SIMPLE_OPS,
    Embed,
    Field,
    Filter,
    Logic,
    Node,
    OrderTerm,
    Query,
    SelectItem,
    parse_column_list,
    parse_field,
    parse_filter,
    parse_in_list,
    parse_logic,
    parse_nonneg_int,
    parse_operation,
    parse_order,
    parse_query,
    parse_select,
    split_top_level,
)
from opstui.backend.postgrest_query.model import Catalog, Column, ForeignKey, QueryError, Table
from opstui.backend.postgrest_query.prefer import Prefer, parse_prefer
from opstui.backend.postgrest_query.relations import Relationship, resolve

__all__ = [
    "ALL_OPS",
    "CASTS",
    "FTS_OPS",
    "IS_VALUES",
    "LOGIC_KEYS",
    "MAX_EMBED_DEPTH",
    "MAX_LOGIC_DEPTH",
    "QUANTIFIABLE",
    "RESERVED",
    "SIMPLE_OPS",
    "Builder",
    "Catalog",
    "Column",
    "Embed",
    "Field",
    "Filter",
    "ForeignKey",
    "Logic",
    "Node",
    "OrderTerm",
    "Prefer",
    "Query",
    "QueryError",
    "Relationship",
    "SelectItem",
    "Table",
    "body_sql",
    "check_embedded_paths",
    "check_payload_columns",
    "delete_statement",
    "insert_statements",
    "parse_column_list",
    "parse_field",
    "parse_filter",
    "parse_in_list",
    "parse_logic",
    "parse_nonneg_int",
    "parse_operation",
    "parse_order",
    "parse_prefer",
    "parse_query",
    "parse_select",
    "read_sql",
    "resolve",
    "split_top_level",
    "update_statement",
    "wrap_returning",
]
