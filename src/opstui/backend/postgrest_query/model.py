"""What the query layer knows about the schema, and the one error it raises."""

from __future__ import annotations

from dataclasses import dataclass, field

from psycopg import sql


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


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # format_type() output read from the catalog, schema-qualified: safe to splice
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


@dataclass(frozen=True)
class ForeignKey:
    """`table(columns) references ref_table(ref_columns)`, both in the exposed schema."""

    name: str
    table: str
    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]


@dataclass(frozen=True)
class Catalog:
    """The tables and foreign keys embedding resolves against (rest_api's schema cache)."""

    tables: dict[str, Table] = field(default_factory=dict)
    foreign_keys: tuple[ForeignKey, ...] = ()
