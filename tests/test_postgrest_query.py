"""PostgREST URL grammar and SQL building, without a database."""

from __future__ import annotations

import pytest

from opstui.backend import postgrest_query as pq
from opstui.backend.postgrest_query import Field, Filter, Logic, QueryError

HOSTS = pq.Table(
    "public",
    "hosts",
    {
        c: pq.Column(c, t)
        for c, t in [
            ("id", "text"),
            ("name", "text"),
            ("port", "integer"),
            ("team_id", "uuid"),
            ("tags", "text[]"),
            ("data", "jsonb"),
            ("created_at", "timestamp with time zone"),
        ]
    },
    ("id",),
)


def sql_of(composed) -> str:
    return composed.as_string(None)


# -- filters -----------------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["eq", "neq", "gt", "gte", "lt", "lte", "like", "ilike"])
def test_simple_operators(op):
    assert pq.parse_filter("port", f"{op}.5") == Filter(Field("port"), op, "5")
    assert pq.parse_filter("port", f"not.{op}.5") == Filter(Field("port"), op, "5", negated=True)


def test_value_keeps_dots_and_is_not_unquoted_at_top_level():
    assert pq.parse_filter("name", "eq.a.b.c").value == "a.b.c"
    assert pq.parse_filter("name", 'eq."x"').value == '"x"'


def test_in_list_with_postgrest_quoting():
    f = pq.parse_filter("name", r'in.(a,"b,c","d\"e","f\\g",(x))')
    # `(x)` unquoted is kept verbatim as one value (parentheses are balanced)
    assert f.value == ("a", "b,c", 'd"e', "f\\g", "(x)")
    assert pq.parse_filter("name", "in.()").value == ()


@pytest.mark.parametrize(
    "value,expected",
    [
        ("null", "null"),
        ("NULL", "null"),
        ("true", "true"),
        ("false", "false"),
        ("unknown", "unknown"),
    ],
)
def test_is_values(value, expected):
    assert pq.parse_filter("port", f"is.{value}").value == expected


@pytest.mark.parametrize(
    "key,value",
    [
        ("id", "eq"),  # no value
        ("id", "foo.1"),  # unknown operator
        ("id", "is.maybe"),
        ("id", "in.1,2"),  # in without parentheses
        ("id", 'in.("a)'),  # unterminated quote
        (";drop", "eq.1"),  # not an identifier
        ("rel.col", "eq.1"),  # embedded filter
        ("id", "eq(some).{1}"),
    ],
)
def test_bad_filters_are_pgrst100(key, value):
    with pytest.raises(QueryError) as exc:
        pq.parse_query([(key, value)])
    assert exc.value.code == "PGRST100" and exc.value.status == 400


def test_logic_tree_nesting_negation_and_quoted_values():
    tree = pq.parse_logic(
        "or", '(a.eq.1,and(b.gt.2,not.or(c.lt.3,d.is.null)),name.eq."x,y",id.in.(1,"2,3"))'
    )
    assert tree == Logic(
        "or",
        (
            Filter(Field("a"), "eq", "1"),
            Logic(
                "and",
                (
                    Filter(Field("b"), "gt", "2"),
                    Logic(
                        "or",
                        (Filter(Field("c"), "lt", "3"), Filter(Field("d"), "is", "null")),
                        negated=True,
                    ),
                ),
            ),
            Filter(Field("name"), "eq", "x,y"),
            Filter(Field("id"), "in", ("1", "2,3")),
        ),
    )
    assert pq.parse_logic("not.and", "(a.eq.1)").negated is True


@pytest.mark.parametrize(
    "value", ["(a.eq.1", "a.eq.1", "(a.eq.1))", "(a.eq.1,)", "(a)", "(and(a.eq.1)", '(a.eq."x)']
)
def test_bad_logic_trees(value):
    with pytest.raises(QueryError) as exc:
        pq.parse_logic("or", value)
    assert exc.value.code == "PGRST100"


def test_json_path_fields():
    assert pq.parse_field("data->a->>b") == Field("data", (("->", "a"), ("->>", "b")))
    assert pq.parse_field("data->0") == Field("data", (("->", 0),))


# -- select / order / ranges -------------------------------------------------------------------


def test_select_items():
    items = pq.parse_select("id,label:name,port::text,data->>k,*")
    assert items == [
        pq.SelectItem(Field("id")),
        pq.SelectItem(Field("name"), alias="label"),
        pq.SelectItem(Field("port"), cast="text"),
        pq.SelectItem(Field("data", (("->>", "k"),))),
        pq.SelectItem(None),
    ]
    assert pq.parse_select("") == [pq.SelectItem(None)]


@pytest.mark.parametrize(
    "value", ["teams(*)", "id,teams!inner(name)", "...teams(name)", "count()", "id::te;xt", "a,,b"]
)
def test_select_refuses_embedding_and_junk(value):
    with pytest.raises(QueryError):
        pq.parse_select(value)


def test_order():
    assert pq.parse_order("name.desc.nullslast,port,id.asc") == [
        pq.OrderTerm(Field("name"), desc=True, nulls="last"),
        pq.OrderTerm(Field("port")),
        pq.OrderTerm(Field("id")),
    ]
    for bad in [";drop", "name.sideways", "name.asc.desc.nullsfirst", "name.nullsfirst.asc"]:
        with pytest.raises(QueryError):
            pq.parse_order(bad)


def test_limit_offset_columns_and_reserved_keys():
    q = pq.parse_query(
        [
            ("limit", "10"),
            ("offset", "5"),
            ("columns", '"name","port"'),
            ("on_conflict", "id"),
            ("apikey", "x"),
        ]
    )
    assert (q.limit, q.offset, q.columns, q.on_conflict, q.where) == (
        10,
        5,
        ["name", "port"],
        ["id"],
        [],
    )
    for bad in [("limit", "-1"), ("offset", "x"), ("limit", "1;")]:
        with pytest.raises(QueryError):
            pq.parse_query([bad])


def test_percent_in_identifiers_is_refused():
    # psycopg would read `%s` inside a quoted identifier as a placeholder
    with pytest.raises(QueryError):
        pq.parse_select('"a%s":name')
    with pytest.raises(QueryError):
        pq.read_sql(HOSTS, pq.parse_query([("select", "data->>a%s")]))


def test_prefer():
    p = pq.parse_prefer(
        ["return=minimal, count=exact", "resolution=merge-duplicates,missing=default"]
    )
    assert (p.returning, p.count, p.resolution, p.missing_default) == (
        "minimal",
        "exact",
        "merge",
        True,
    )
    assert pq.parse_prefer([]).returning is None


# -- SQL -----------------------------------------------------------------------------------------


def test_read_sql_casts_values_to_column_types_and_counts_under_same_filters():
    q = pq.parse_query(
        [
            ("select", "id,label:name"),
            ("team_id", "eq.8a7f0e6e-0000-0000-0000-000000000000"),
            ("or", "(port.gt.22,name.ilike.*web*)"),
            ("order", "name.desc"),
            ("limit", "50"),
        ]
    )
    query, params = pq.read_sql(HOSTS, q, with_count=True)
    text = sql_of(query)
    assert '"team_id" = %s::uuid' in text
    assert '("port" > %s::integer or "name" ilike %s::text)' in text
    assert 'order by "name" desc limit %s::bigint' in text
    assert text.count("%s") == len(params) == 7
    assert params == ["8a7f0e6e-0000-0000-0000-000000000000", "22", "%web%"] * 2 + [50]


def test_unknown_column_is_42703():
    with pytest.raises(QueryError) as exc:
        pq.read_sql(HOSTS, pq.parse_query([("nope", "eq.1")]))
    assert (exc.value.code, exc.value.message) == ("42703", "column hosts.nope does not exist")


def test_json_keys_and_in_lists_are_parameters():
    q = pq.parse_query(
        [("select", "data->>x'y"), ("data->>k", "eq.v"), ("tags", "cs.{a,b}"), ("port", "in.(1,2)")]
    )
    query, params = pq.read_sql(HOSTS, q)
    text = sql_of(query)
    assert params[0] == "x'y"
    assert '"data" ->> %s::text as "x\'y"' in text
    assert '"port" = any(%s::integer[])' in text and ["1", "2"] in params
    assert '"tags" @> %s::text[]' in text


def test_insert_upsert_and_minimal_statements():
    stmts = pq.insert_statements(
        HOSTS,
        [{"name": "a", "port": 1}, {"name": "b"}],
        columns=None,
        missing_default=False,
        resolution="merge",
        on_conflict=None,
        returning=False,
    )
    assert len(stmts) == 1
    text, payload = sql_of(stmts[0][0]), stmts[0][1]
    assert "json_to_recordset(%s::json)" in text and "returning" not in text
    assert (
        'on conflict ("id") do update set "name" = excluded."name", "port" = excluded."port"'
        in text
    )
    assert payload == '[{"name": "a", "port": 1}, {"name": "b", "port": null}]'

    grouped = pq.insert_statements(
        HOSTS,
        [{"name": "a", "port": 1}, {"name": "b"}],
        columns=["name", "port"],
        missing_default=True,
        resolution="ignore",
        on_conflict=["name"],
        returning=True,
    )
    assert len(grouped) == 2
    assert all('on conflict ("name") do nothing returning *' in sql_of(s) for s, _ in grouped)

    with pytest.raises(QueryError) as exc:
        pq.insert_statements(
            HOSTS,
            [{"nope": 1}],
            columns=None,
            missing_default=False,
            resolution=None,
            on_conflict=None,
            returning=False,
        )
    assert exc.value.code == "PGRST204"
