"""Bootstrap + migrations against a real PostgreSQL: idempotence, bookkeeping,
export layout, and schema-wide invariants (RLS everywhere, FK indexes,
security_invoker views, fixed search_path on SECURITY DEFINER functions)."""

from __future__ import annotations

import hashlib
import re

import psycopg
import pytest

from opstui.backend import schema
from tests.sql_fixtures import fresh_database, prepared_database

PUBLIC_TABLES = {
    "tenants", "subscription_tiers", "resource_limits", "role_templates", "profiles", "teams",
    "team_members", "permission_matrix", "hosts", "git_providers", "repositories",
    "profile_repository_pins", "cicd_providers", "cicd_jobs", "deployments",
    "deployment_cicd_mappings",
}  # fmt: skip


@pytest.fixture(scope="module")
def db(cluster):
    with prepared_database(cluster, "mig") as conn:
        yield conn


def test_fresh_database_applies_everything_then_nothing(cluster):
    files = schema.migration_files()
    assert len(files) >= 4
    assert [f.name for f in files] == sorted(f.name for f in files)
    with fresh_database(cluster, "fresh") as conninfo, psycopg.connect(conninfo) as conn:
        applied = schema.prepare_database(conn)
        assert applied == [f.name[:14] for f in files]
        assert schema.prepare_database(conn) == []
        schema.apply_bootstrap(conn)  # bootstrap is re-runnable on an existing DB
        rows = conn.execute(
            "select version, name, checksum, applied_at is not null"
            " from supabase_migrations.schema_migrations order by version"
        ).fetchall()
        assert rows == [
            (f.name[:14], f.name[15:-4], hashlib.sha256(f.read_bytes()).hexdigest(), True)
            for f in files
        ]
        assert (
            set(
                r[0]
                for r in conn.execute(
                    "select tablename from pg_tables where schemaname = 'public'"
                ).fetchall()
            )
            >= PUBLIC_TABLES
        )


def test_changed_checksum_is_reported_with_the_file_name(db):
    first = schema.migration_files()[0]
    with db.transaction(force_rollback=True):
        db.execute(
            "update supabase_migrations.schema_migrations set checksum = 'deadbeef' where version = %s",
            (first.name[:14],),
        )
        with pytest.raises(schema.MigrationError) as err:
            schema.apply_migrations(db)
    message = str(err.value)
    assert first.name in message and "\n" not in message


def test_export_uses_supabase_cli_layout_and_refuses_to_overwrite(tmp_path):
    written = schema.export_migrations(tmp_path)
    names = [f.name for f in schema.migration_files()]
    assert [p.name for p in written] == names
    for path in written:
        assert path.parent == tmp_path / "supabase" / "migrations"
        assert re.fullmatch(r"\d{14}_[a-z0-9_]+\.sql", path.name)
        assert path.read_bytes() == (schema.MIGRATIONS_DIR / path.name).read_bytes()
    assert schema.export_migrations(tmp_path) == written  # identical files: fine
    written[0].write_text("-- edited\n")
    with pytest.raises(schema.MigrationError, match=written[0].name):
        schema.export_migrations(tmp_path)


def test_rls_is_enabled_on_every_public_table(db):
    rows = db.execute(
        "select c.relname, c.relrowsecurity from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = 'public' and c.relkind in ('r', 'p')"
    ).fetchall()
    assert {r[0] for r in rows} >= PUBLIC_TABLES
    assert [name for name, rls in rows if not rls] == []


def _unindexed_foreign_keys(conn) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            """
            select format('%s(%s)', c.conrelid::regclass, array_to_string(
                     array(select attname from pg_attribute
                           where attrelid = c.conrelid and attnum = any(c.conkey)), ','))
            from pg_constraint c join pg_namespace n on n.oid = c.connamespace
            where c.contype = 'f' and n.nspname in ('public', 'private')
              and not exists (
                select 1 from pg_index i
                where i.indrelid = c.conrelid
                  and (i.indkey::int2[])[0:cardinality(c.conkey) - 1] @> c.conkey
                  and (i.indkey::int2[])[0:cardinality(c.conkey) - 1] <@ c.conkey
              )
            """
        ).fetchall()
    ]


def test_every_foreign_key_column_has_an_index(db):
    assert _unindexed_foreign_keys(db) == []
    # The check itself works: an FK without an index is reported.
    with db.transaction(force_rollback=True):
        db.execute("create table public.fk_probe (team_id uuid references public.teams(id))")
        assert _unindexed_foreign_keys(db) == ["fk_probe(team_id)"]


def test_policy_columns_are_indexed(db):
    indexed = {
        tuple(r)
        for r in db.execute(
            """
            select c.relname, a.attname from pg_index i
            join pg_class c on c.oid = i.indrelid
            join pg_attribute a on a.attrelid = i.indrelid and a.attnum = i.indkey[0]
            join pg_namespace n on n.oid = c.relnamespace where n.nspname = 'public'
            """
        ).fetchall()
    }
    for table in ("hosts", "repositories", "cicd_providers", "cicd_jobs", "deployments"):
        assert (table, "team_id") in indexed and (table, "creator_id") in indexed
    assert ("team_members", "profile_id") in indexed
    assert ("permission_matrix", "profile_id") in indexed
    assert ("git_providers", "profile_id") in indexed
    assert ("profiles", "tenant_id") in indexed
    unique_pm = db.execute(
        "select pg_get_indexdef(indexrelid) from pg_index where indrelid = 'public.permission_matrix'::regclass"
        " and indisunique and not indisprimary"
    ).fetchall()
    assert any("(profile_id, team_id, resource_type)" in r[0] for r in unique_pm)


def _views_without_security_invoker(conn) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            """
            select c.oid::regclass::text from pg_class c join pg_namespace n on n.oid = c.relnamespace
            where c.relkind in ('v', 'm') and n.nspname in ('public', 'private')
              and not coalesce(c.reloptions @> array['security_invoker=true'], false)
            """
        ).fetchall()
    ]


def test_no_view_lacks_security_invoker(db):
    assert _views_without_security_invoker(db) == []
    with db.transaction(force_rollback=True):
        db.execute("create view public.probe_view as select id from public.hosts")
        assert _views_without_security_invoker(db) == ["probe_view"]


def test_security_definer_functions_have_a_fixed_empty_search_path(db):
    rows = db.execute(
        """
        select n.nspname || '.' || p.proname, coalesce(p.proconfig, '{}')
        from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where p.prosecdef and n.nspname in ('public', 'private')
        """
    ).fetchall()
    names = {r[0] for r in rows}
    assert {
        "private.my_team_ids", "private.team_ids_where", "private.my_tenant_id",
        "public.get_host_secret", "public.handle_new_user", "private.enforce_resource_limit",
    } <= names  # fmt: skip
    assert [name for name, config in rows if 'search_path=""' not in config] == []


def test_secret_readers_are_not_executable_by_anon(db):
    for fn in (
        "public.get_host_secret(text)",
        "public.get_git_provider_tokens(uuid)",
        "public.get_cicd_provider_secrets(uuid)",
    ):
        assert db.execute(
            "select has_function_privilege('anon', %s, 'execute')", (fn,)
        ).fetchone() == (False,)
        assert db.execute(
            "select has_function_privilege('authenticated', %s, 'execute')", (fn,)
        ).fetchone() == (True,)


def test_auth_and_secret_tables_are_not_readable_by_api_roles(db):
    for role in ("anon", "authenticated"):
        for table in (
            "auth.users",
            "auth.sessions",
            "auth.refresh_tokens",
            "private.host_secrets",
            "private.git_provider_secrets",
            "private.cicd_provider_secrets",
        ):
            assert db.execute(
                "select has_table_privilege(%s, %s, 'select')", (role, table)
            ).fetchone() == (False,), (role, table)
    # ...while public tables are granted broadly, as on Supabase (RLS decides).
    assert db.execute(
        "select has_table_privilege('authenticated', 'public.hosts', 'select')"
    ).fetchone() == (True,)
    assert db.execute(
        "select has_table_privilege('authenticated', 'public.hosts', 'truncate')"
    ).fetchone() == (False,)


def test_realtime_publication_and_replica_identity(db):
    published = {
        r[0]
        for r in db.execute(
            "select tablename from pg_publication_tables where pubname = 'supabase_realtime'"
        ).fetchall()
    }
    assert published >= {
        "teams", "team_members", "permission_matrix", "hosts", "repositories",
        "profile_repository_pins", "git_providers", "cicd_providers", "cicd_jobs", "deployments",
        "deployment_cicd_mappings", "profiles", "tenants",
    }  # fmt: skip
    full = {
        r[0]
        for r in db.execute(
            "select relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
            " where n.nspname = 'public' and c.relreplident = 'f'"
        ).fetchall()
    }
    assert full >= {"hosts", "deployments", "team_members", "repositories", "cicd_jobs"}


_FORBIDDEN_IN_MIGRATIONS = [
    r"create\s+schema\s+(if\s+not\s+exists\s+)?auth\b",
    r"create\s+(or\s+replace\s+)?function\s+auth\.",
    r"create\s+table\s+(if\s+not\s+exists\s+)?auth\.",
    r"create\s+(role|user)\b",
    r"create\s+publication\b",
    r"drop\s+publication\b",
    r"create\s+schema\s+(if\s+not\s+exists\s+)?supabase_migrations\b",
    r"\bcreate\s+extension\b",
]


def test_migrations_never_create_supabase_owned_objects():
    for path in schema.migration_files():
        sql = re.sub(r"--[^\n]*", "", path.read_text()).lower()
        for pattern in _FORBIDDEN_IN_MIGRATIONS:
            assert not re.search(pattern, sql), f"{path.name} matches {pattern}"
        # The publication is only ever extended, guarded.
        if "alter publication" in sql:
            assert "pg_publication_tables" in sql
    # ...and all of it is in the bootstrap instead.
    boot = schema.BOOTSTRAP_SQL_PATH.read_text().lower()
    for needle in (
        "create role anon",
        "create role authenticator",
        "create publication supabase_realtime",
    ):
        assert needle in boot


def test_migration_lock_allows_concurrent_prepare(cluster):
    """Two connections preparing the same database: one applies, the other finds nothing to do."""
    import threading

    with fresh_database(cluster, "race") as conninfo:
        results: list[list[str]] = []
        errors: list[BaseException] = []

        def run() -> None:
            try:
                with psycopg.connect(conninfo, autocommit=True) as c:
                    results.append(schema.prepare_database(c))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert sorted(len(r) for r in results) == [0, len(schema.migration_files())]
