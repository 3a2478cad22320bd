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
        ("rel.col", "eq"),  # embedded filter without a value
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
    "value",
    ["...name", "x:...teams(name)", "count()", "id::te;xt", "a,,b", "teams!a!b(name)", "t(x"],
)
def test_select_refuses_spreads_aggregates_and_junk(value):
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
    assert '"pgrst_src"."team_id" = %s::uuid' in text
    assert '("pgrst_src"."port" > %s::integer or "pgrst_src"."name" ilike %s::text)' in text
    assert 'order by "pgrst_src"."name" desc limit %s::bigint' in text
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
    assert '"pgrst_src"."data" ->> %s::text as "x\'y"' in text
    assert '"pgrst_src"."port" = any(%s::integer[])' in text and ["1", "2"] in params
    assert '"pgrst_src"."tags" @> %s::text[]' in text


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


# -- hostile input: nothing the caller sends becomes SQL text ------------------------------------


@pytest.mark.parametrize(
    "select",
    [
        "name::text as a from pg_settings union select name",  # the reported exploit
        "name::text) from pg_roles --",
        "name::int4; drop table hosts",
        "name::regclass",
        "name::pg_catalog.text",
        'name::"text"',
        "name::text[] []",
        "name::character varying",  # two words: never a cast here
    ],
)
def test_casts_outside_the_allow_list_are_refused(select):
    with pytest.raises(QueryError) as exc:
        pq.parse_select(select)
    assert exc.value.code == "PGRST100"


def test_allowed_casts_come_from_our_own_text():
    q = pq.parse_query([("select", "port::TEXT,tags::text[],n:port::int")])
    text = sql_of(pq.read_sql(HOSTS, q)[0])
    assert '("pgrst_src"."port")::text as "port"' in text
    assert '("pgrst_src"."tags")::text[] as "tags"' in text
    assert '("pgrst_src"."port")::integer as "n"' in text


HOSTILE = "x' or 1=1; select rolname from pg_roles --"


@pytest.mark.parametrize(
    "params",
    [
        [("select", f'"{HOSTILE}"')],  # a quoted column name that does not exist
        [("select", f'a:"{HOSTILE}"')],
        [("order", f'"{HOSTILE}".desc')],
        [(f'"{HOSTILE}"', "eq.1")],
        [("or", f'("{HOSTILE}".eq.1)')],
        [("columns", f'"{HOSTILE}"')],
    ],
)
def test_hostile_identifiers_only_ever_become_quoted_names_of_real_columns(params):
    q = pq.parse_query(params)
    with pytest.raises(QueryError) as exc:
        pq.read_sql(HOSTS, q)
        pq.check_payload_columns(HOSTS, q.columns or ())
    assert exc.value.code in ("42703", "PGRST204")


@pytest.mark.parametrize(
    "key,value",
    [
        ("name", f"eq.{HOSTILE}"),
        ("name", f"like.*{HOSTILE}*"),
        ("name", f"in.({HOSTILE},b)"),
        ("name", f"fts(english).{HOSTILE}"),
        ("data->>k", f"eq.{HOSTILE}"),
        (f"data->{HOSTILE}", "eq.1"),
        ("tags", f"cs.{{{HOSTILE}}}"),
        ("name", f"eq(any).{{{HOSTILE}}}"),
        ("or", f'(name.eq."{HOSTILE}",and(port.gt.1,name.neq.{HOSTILE}))'),
    ],
)
def test_hostile_values_travel_only_as_parameters(key, value):
    query, params = pq.read_sql(HOSTS, pq.parse_query([(key, value)]))
    text = sql_of(query)
    assert "pg_roles" not in text and "1=1" not in text
    assert any(HOSTILE in str(p) for p in params)


@pytest.mark.parametrize("op", ["fts(english'--)", "eq(any' or 1=1)", "is", "like(any)x"])
def test_hostile_operator_modifiers_are_refused(op):
    with pytest.raises(QueryError):
        pq.parse_filter("name", f"{op}.x")


def test_or_nested_past_the_limit_is_a_parse_error_not_a_recursion_error():
    deep = "(" + "or(" * 1000 + "id.eq.1" + ")" * 1000 + ")"
    with pytest.raises(QueryError) as exc:
        pq.parse_query([("or", deep)])
    assert exc.value.code == "PGRST100" and "nest" in exc.value.details
    ok = "(" + "or(" * (pq.MAX_LOGIC_DEPTH - 1) + "id.eq.1" + ")" * (pq.MAX_LOGIC_DEPTH - 1) + ")"
    pq.read_sql(HOSTS, pq.parse_query([("or", ok)]))


def test_nul_bytes_are_refused_before_the_driver():
    for params in ([("name", "eq.a\x00b")], [("na\x00me", "eq.a")], [("select", "a\x00")]):
        with pytest.raises(QueryError) as exc:
            pq.parse_query(params)
        assert "NUL" in exc.value.details


# -- embedded resources --------------------------------------------------------------------------

REPOS = pq.Table(
    "public",
    "repositories",
    {c: pq.Column(c, t) for c, t in [("id", "uuid"), ("name", "text"), ("team_id", "uuid")]},
    ("id",),
)
DEPLOYS = pq.Table(
    "public",
    "deployments",
    {
        c: pq.Column(c, t)
        for c, t in [
            ("id", "uuid"),
            ("name", "text"),
            ("repository_id", "uuid"),
            ("user_id", "uuid"),
            ("creator_id", "uuid"),
        ]
    },
    ("id",),
)
PROFILES = pq.Table(
    "public", "profiles", {c: pq.Column(c, "uuid") for c in ("id", "email")}, ("id",)
)
CATALOG = pq.Catalog(
    {t.name: t for t in (REPOS, DEPLOYS, PROFILES, HOSTS)},
    (
        pq.ForeignKey(
            "deployments_repository_id_fkey",
            "deployments",
            ("repository_id",),
            "repositories",
            ("id",),
        ),
        pq.ForeignKey("deployments_user_id_fkey", "deployments", ("user_id",), "profiles", ("id",)),
        pq.ForeignKey(
            "deployments_creator_id_fkey", "deployments", ("creator_id",), "profiles", ("id",)
        ),
    ),
)


def test_embed_grammar():
    items = pq.parse_select("id,repo:repositories!inner(name,deployments(id)),profiles!user_id(*)")
    assert items[1] == pq.Embed(
        "repositories",
        (pq.SelectItem(Field("name")), pq.Embed("deployments", (pq.SelectItem(Field("id")),))),
        alias="repo",
        inner=True,
    )
    assert items[2] == pq.Embed("profiles", (pq.SelectItem(None),), hint="user_id")
    assert pq.parse_select("repositories()") == [pq.Embed("repositories", ())]
    q = pq.parse_query(
        [
            ("repo.name", "eq.x"),
            ("repo.order", "name.desc"),
            ("repo.limit", "2"),
            ("repo.not.or", "(name.eq.a)"),
        ]
    )
    sub = q.embedded[("repo",)]
    assert (sub.limit, len(sub.where), sub.order[0].desc, sub.where[1].negated) == (
        2,
        2,
        True,
        True,
    )


def test_many_to_one_and_one_to_many_are_correlated_subqueries():
    q = pq.parse_query([("select", "name,repositories(name)"), ("repositories.name", "eq.api")])
    text, params = pq.read_sql(DEPLOYS, q, catalog=CATALOG)
    text = sql_of(text)
    assert "(select row_to_json(" in text
    assert '"pgrst_1"."id" = "pgrst_src"."repository_id"' in text
    assert params == ["api"]
    q = pq.parse_query(
        [
            ("select", "name,deployments(name)"),
            ("deployments.order", "name.desc"),
            ("deployments.limit", "3"),
        ]
    )
    text = sql_of(pq.read_sql(REPOS, q, catalog=CATALOG)[0])
    assert "coalesce(json_agg(" in text
    assert '"pgrst_1"."repository_id" = "pgrst_src"."id"' in text
    assert 'order by "pgrst_1"."name" desc limit %s::bigint' in text


def test_inner_embed_filters_the_parent_with_exists():
    q = pq.parse_query(
        [("select", "name,repositories!inner(name)"), ("repositories.name", "eq.api")]
    )
    query, params = pq.read_sql(DEPLOYS, q, catalog=CATALOG, with_count=True)
    text = sql_of(query)
    assert text.count("exists (select 1 from") == 2  # the page and the count
    assert params == ["api"] * 3


def test_ambiguous_and_unknown_relationships():
    with pytest.raises(QueryError) as exc:
        pq.read_sql(DEPLOYS, pq.parse_query([("select", "profiles(*)")]), catalog=CATALOG)
    assert (exc.value.code, exc.value.status) == ("PGRST201", 300)
    pq.read_sql(DEPLOYS, pq.parse_query([("select", "profiles!creator_id(*)")]), catalog=CATALOG)
    pq.read_sql(
        DEPLOYS,
        pq.parse_query([("select", "profiles!deployments_user_id_fkey(*)")]),
        catalog=CATALOG,
    )
    for select in ("hosts(*)", f'"{HOSTILE}"(*)', "pg_roles(*)", "repositories!nope(*)"):
        with pytest.raises(QueryError) as exc:
            pq.read_sql(DEPLOYS, pq.parse_query([("select", select)]), catalog=CATALOG)
        assert exc.value.code == "PGRST200", select


def test_filters_on_embeds_not_in_select_are_pgrst108():
    with pytest.raises(QueryError) as exc:
        pq.read_sql(DEPLOYS, pq.parse_query([("repositories.name", "eq.x")]), catalog=CATALOG)
    assert exc.value.code == "PGRST108"


def test_spread_and_related_order_use_the_one_related_row():
    q = pq.parse_query(
        [
            ("select", "name,...repositories(repo:name,team_id)"),
            ("order", "repositories(name).desc.nullslast,name"),
            ("repositories.name", "neq.x"),
        ]
    )
    query, params = pq.read_sql(DEPLOYS, q, catalog=CATALOG)
    text = sql_of(query)
    assert text.count('from "public"."repositories" as') == 3
    assert ' as "repo", (select "pgrst_' in text and ' as "team_id" from' in text
    assert "nulls last" in text and params == ["x", "x", "x"]
    for bad in ("...deployments(name)",):  # to-many: no spread
        with pytest.raises(QueryError) as exc:
            pq.read_sql(REPOS, pq.parse_query([("select", bad)]), catalog=CATALOG)
        assert exc.value.code == "PGRST119"
    with pytest.raises(QueryError) as exc:
        pq.read_sql(
            REPOS,
            pq.parse_query([("select", "name,deployments(name)"), ("order", "deployments(name)")]),
            catalog=CATALOG,
        )
    assert exc.value.code == "PGRST118"
    with pytest.raises(QueryError) as exc:
        pq.read_sql(DEPLOYS, pq.parse_query([("order", "repositories(name)")]), catalog=CATALOG)
    assert exc.value.code == "PGRST108"


def test_embeds_nest_only_so_deep():
    deep = "repositories(" * 50 + "name" + ")" * 50
    with pytest.raises(QueryError) as exc:
        pq.parse_select(deep)
    assert "nest" in exc.value.details


def test_many_to_many_joins_through_the_junction_in_an_exists():
    teams = pq.Table("public", "teams", {"id": pq.Column("id", "uuid")}, ("id",))
    members = pq.Table(
        "public",
        "team_members",
        {c: pq.Column(c, "uuid") for c in ("team_id", "profile_id")},
        ("team_id", "profile_id"),
    )
    catalog = pq.Catalog(
        {t.name: t for t in (teams, members, PROFILES)},
        (
            pq.ForeignKey("tm_team", "team_members", ("team_id",), "teams", ("id",)),
            pq.ForeignKey("tm_profile", "team_members", ("profile_id",), "profiles", ("id",)),
        ),
    )
    q = pq.parse_query([("select", "profiles(email)")])
    text = sql_of(pq.read_sql(teams, q, catalog=catalog)[0])
    assert (
        'exists (select 1 from "public"."team_members" as "pgrst_3" where '
        '"pgrst_3"."team_id" = "pgrst_src"."id" and "pgrst_3"."profile_id" = "pgrst_1"."id")'
    ) in text
