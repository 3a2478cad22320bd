"""Which foreign key an embedded resource follows, decided as PostgREST decides it.

Many-to-one (the parent holds the key), one-to-many (the target holds it) and
many-to-many through a junction table whose primary key contains both keys'
columns (`teams` -> `team_members` -> `profiles`).
"""

from __future__ import annotations

from dataclasses import dataclass

from opstui.backend.postgrest_query.grammar import Embed
from opstui.backend.postgrest_query.model import Catalog, ForeignKey, QueryError, Table


@dataclass(frozen=True)
class Junction:
    table: Table
    parent_pairs: tuple[tuple[str, str], ...]  # (parent column, junction column)
    target_pairs: tuple[tuple[str, str], ...]  # (target column, junction column)


@dataclass(frozen=True)
class Relationship:
    target: Table
    pairs: tuple[tuple[str, str], ...]  # (parent column, target column), joined with `=`
    to_one: bool  # many-to-one: an object (or null); otherwise an array
    constraint: str  # the foreign key's name, or the junction table's for many-to-many
    junction: Junction | None = None

    def matches(self, hint: str) -> bool:
        """PostgREST's `!hint`: a constraint, a referencing column, or a junction table."""
        if self.junction is not None:
            return hint == self.junction.table.name or hint == self.constraint
        # the referencing column: the parent's for many-to-one, the target's otherwise
        return hint == self.constraint or hint in {
            p[0] if self.to_one else p[1] for p in self.pairs
        }


def _pairs(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    return tuple(zip(a, b, strict=True))


def _many_to_one(target: Table, fk: ForeignKey) -> Relationship:
    return Relationship(target, _pairs(fk.columns, fk.ref_columns), True, fk.name)


def _junctions(catalog: Catalog, parent: Table, target: Table) -> list[Relationship]:
    out = []
    for to_parent in catalog.foreign_keys:
        junction = catalog.tables.get(to_parent.table)
        if junction is None or to_parent.ref_table != parent.name:
            continue
        key = set(junction.primary_key)
        if not set(to_parent.columns) <= key or junction.name in (parent.name, target.name):
            continue
        for to_target in catalog.foreign_keys:
            if (
                to_target is to_parent
                or to_target.table != junction.name
                or to_target.ref_table != target.name
                or not set(to_target.columns) <= key
            ):
                continue
            via = Junction(
                junction,
                _pairs(to_parent.ref_columns, to_parent.columns),
                _pairs(to_target.ref_columns, to_target.columns),
            )
            out.append(Relationship(target, (), False, junction.name, via))
    return out


def _candidates(catalog: Catalog, parent: Table, embed: Embed) -> list[Relationship]:
    out: list[Relationship] = []
    target = catalog.tables.get(embed.name)
    for fk in catalog.foreign_keys:
        if target is not None:
            if fk.table == parent.name and fk.ref_table == target.name:
                out.append(_many_to_one(target, fk))
            if fk.ref_table == parent.name and fk.table == target.name:
                out.append(Relationship(target, _pairs(fk.ref_columns, fk.columns), False, fk.name))
        elif fk.table == parent.name and fk.columns == (embed.name,):
            # `select=repository_id(name)`: embedding through the foreign-key column.
            ref = catalog.tables.get(fk.ref_table)
            if ref is not None:
                out.append(_many_to_one(ref, fk))
    if target is not None:
        out += _junctions(catalog, parent, target)
    return out


def resolve(catalog: Catalog, parent: Table, embed: Embed) -> Relationship:
    found = _candidates(catalog, parent, embed)
    if embed.hint is not None:
        found = [r for r in found if r.matches(embed.hint)]
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
    using = f" using the hint '{embed.hint}'" if embed.hint else ""
    raise QueryError(
        f"Could not find a relationship between '{parent.name}' and '{embed.name}' "
        "in the schema cache",
        code="PGRST200",
        status=400,
        details=f"Searched for a foreign key relationship between '{parent.name}' and "
        f"'{embed.name}'{using} in the schema '{parent.schema}', but no matches were found.",
        hint=hint,
    )
