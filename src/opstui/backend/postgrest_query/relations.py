"""Which foreign key an embedded resource follows, decided as PostgREST decides it."""

from __future__ import annotations

from dataclasses import dataclass

from opstui.backend.postgrest_query.grammar import Embed
from opstui.backend.postgrest_query.model import Catalog, ForeignKey, QueryError, Table


@dataclass(frozen=True)
class Relationship:
    target: Table
    pairs: tuple[tuple[str, str], ...]  # (parent column, target column), joined with `=`
    to_one: bool  # many-to-one: an object (or null); one-to-many: an array
    constraint: str


def _candidates(catalog: Catalog, parent: Table, embed: Embed) -> list[Relationship]:
    out: list[Relationship] = []
    target = catalog.tables.get(embed.name)
    for fk in catalog.foreign_keys:
        if target is not None:
            if fk.table == parent.name and fk.ref_table == target.name:
                out.append(_many_to_one(target, fk))
            if fk.ref_table == parent.name and fk.table == target.name:
                pairs = tuple(zip(fk.ref_columns, fk.columns, strict=True))
                out.append(Relationship(target, pairs, False, fk.name))
        elif fk.table == parent.name and fk.columns == (embed.name,):
            # `select=repository_id(name)`: embedding through the foreign-key column.
            ref = catalog.tables.get(fk.ref_table)
            if ref is not None:
                out.append(_many_to_one(ref, fk))
    return out


def _many_to_one(target: Table, fk: ForeignKey) -> Relationship:
    return Relationship(target, tuple(zip(fk.columns, fk.ref_columns, strict=True)), True, fk.name)


def resolve(catalog: Catalog, parent: Table, embed: Embed) -> Relationship:
    found = _candidates(catalog, parent, embed)
    if embed.hint is not None:
        found = [
            r
            for r in found
            if embed.hint == r.constraint
            # or the referencing column: the parent's for many-to-one, the target's otherwise
            or embed.hint in {p[0] if r.to_one else p[1] for p in r.pairs}
        ]
    if not found:
        return _not_found(catalog, parent, embed)
    if len(found) > 1:
        options = ", ".join(f"'{embed.name}!{r.constraint}'" for r in found)
        raise QueryError(
            f"Could not embed because more than one relationship was found for "
            f"'{parent.name}' and '{embed.name}'",
            code="PGRST201",
            status=300,
            details=", ".join(r.constraint for r in found),
            hint=f"Try changing '{embed.name}' to one of the following: {options}. "
            "Find the desired relationship in the 'details' key.",
        )
    return found[0]


def _not_found(catalog: Catalog, parent: Table, embed: Embed) -> Relationship:
    hint = None
    if embed.name not in catalog.tables:
        import difflib

        close = difflib.get_close_matches(embed.name, list(catalog.tables), n=1)
        if close:
            hint = f"Perhaps you meant '{close[0]}' instead of '{embed.name}'."
    raise QueryError(
        f"Could not find a relationship between '{parent.name}' and '{embed.name}' "
        "in the schema cache",
        code="PGRST200",
        status=400,
        details=f"Searched for a foreign key relationship between '{parent.name}' and "
        f"'{embed.name}'"
        + (f" using the hint '{embed.hint}'" if embed.hint else "")
        + f" in the schema '{parent.schema}', but no matches were found.",
        hint=hint,
    )
