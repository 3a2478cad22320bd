"""The embedded backend fails where Supabase would: no default grants to the API
roles, `postgres` applies the migrations without superuser rights, Supabase's role
attributes and timeouts. The RLS matrix (test_rls_matrix.py) runs on this same
backend, so it proves the migrations' own grants are enough through the gateway."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from postgrest.exceptions import APIError

from tests.conftest import demo_user

API_ROLES = ("anon", "authenticated", "service_role")


def _one(conninfo: str, sql: str, params: tuple = ()):
    with psycopg.connect(conninfo, autocommit=True) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


@pytest.fixture(scope="module")
def admin(backend):
    return backend._cluster.conninfo()


def test_postgres_is_not_a_superuser_and_supabase_admin_is(admin):
    rows = dict(
        (name, rest)
        for name, *rest in _one(
            admin,
            "select rolname, rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls"
            " from pg_roles where rolname in ('postgres', 'supabase_admin')",
        )
    )
    assert rows["postgres"] == [False, True, True, True, True]
    assert rows["supabase_admin"][0] is True


def test_api_roles_have_supabase_attributes_and_timeouts(admin):
    attrs = {
        name: (inherit, bypass, login)
        for name, inherit, bypass, login in _one(
            admin,
            "select rolname, rolinherit, rolbypassrls, rolcanlogin from pg_roles"
            " where rolname in ('anon', 'authenticated', 'service_role', 'authenticator')",
        )
    }
    assert attrs == {
        "anon": (True, False, False),
        "authenticated": (True, False, False),
        "service_role": (True, True, False),
        "authenticator": (False, False, True),
    }
    settings = {
        name: sorted(config)
        for name, config in _one(
            admin,
            "select r.rolname, s.setconfig from pg_db_role_setting s"
            " join pg_roles r on r.oid = s.setrole where s.setdatabase = 0",
        )
    }
    assert settings["anon"] == ["statement_timeout=3s"]
    assert settings["authenticated"] == ["statement_timeout=8s"]
    assert settings["authenticator"] == ["lock_timeout=8s", "statement_timeout=8s"]


def test_the_gateways_connections_carry_the_authenticator_timeouts(backend):
    """The gateway logs in as authenticator, so every API request runs under 8 s limits."""
    with psycopg.connect(backend._cluster.conninfo(user="authenticator")) as conn:
        assert conn.execute("show statement_timeout").fetchone() == ("8s",)
        assert conn.execute("show lock_timeout").fetchone() == ("8s",)


def test_no_default_privileges_exist_for_the_api_roles(admin):
    rows = _one(
        admin,
        "select defaclrole::regrole::text, defaclnamespace::regnamespace::text, defaclacl::text"
        " from pg_default_acl",
    )
    leaking = [r for r in rows if any(f"{role}=" in r[2] for role in API_ROLES)]
    assert leaking == []


def test_migrations_ran_as_postgres(admin):
    owners = {
        owner
        for (owner,) in _one(
            admin,
            "select distinct tableowner from pg_tables where schemaname in ('public', 'private')",
        )
    }
    assert owners == {"postgres"}
    applied = _one(admin, "select count(*) from supabase_migrations.schema_migrations")[0][0]
    assert applied >= 6


def test_anon_holds_no_table_privilege_and_secrets_are_ungranted(admin):
    granted = _one(
        admin,
        """
        select grantee, table_schema || '.' || table_name, privilege_type
          from information_schema.role_table_grants
         where grantee in ('anon', 'authenticated', 'service_role', 'PUBLIC')
           and table_schema in ('public', 'private')
        """,
    )
    assert [g for g in granted if g[0] in ("anon", "PUBLIC")] == []
    assert [g for g in granted if g[1].startswith("private.")] == []
    assert [g for g in granted if g[2] in ("TRUNCATE", "REFERENCES", "TRIGGER")] == []
    # ...and the grants the app needs are there (RLS then decides the rows).
    assert ("authenticated", "public.hosts", "UPDATE") in granted
    assert ("authenticated", "public.subscription_tiers", "UPDATE") not in granted
    assert ("authenticated", "public.ssh_audit", "DELETE") not in granted


def test_anon_can_execute_no_app_function(admin):
    callable_by_anon = _one(
        admin,
        """
        select p.oid::regprocedure::text from pg_proc p
          join pg_namespace n on n.oid = p.pronamespace
         where n.nspname in ('public', 'private')
           and has_function_privilege('anon', p.oid, 'execute')
        """,
    )
    assert callable_by_anon == []


async def test_a_table_without_grants_is_refused_through_the_gateway(backend, sign_in):
    """What Supabase does to a table a migration forgot to grant: 42501, even for
    service_role (BYPASSRLS skips policies, not privileges)."""
    table = f"ungranted_{uuid.uuid4().hex[:8]}"
    migrator = backend._cluster.conninfo(user="postgres")
    _one(migrator, f"create table public.{table} (id int primary key)")  # noqa: S608
    _one(migrator, f"insert into public.{table} values (1)")  # noqa: S608
    try:
        info = backend.info
        user = await sign_in(demo_user(info, "admin")["email"])
        anon = await sign_in()
        service = await sign_in()
        service.postgrest.auth(info.service_role_key)
        for client in (user, anon, service):
            with pytest.raises(APIError) as refused:
                await client.table(table).select("*").execute()
            assert refused.value.code == "42501"
        # The same table once granted is readable: the refusal above was the grant.
        _one(migrator, f"grant select on public.{table} to service_role")  # noqa: S608
        rows = await service.table(table).select("*").execute()
        assert rows.data == [{"id": 1}]
    finally:
        _one(migrator, f"drop table public.{table}")  # noqa: S608


def test_a_data_dir_from_before_the_supabase_roles_gets_a_clear_message(tmp_path, monkeypatch):
    """Its superuser is postgres, which cannot be demoted: say what to do, not a traceback."""
    from opstui.backend import postgres

    old = postgres.PostgresCluster(tmp_path / "old")
    monkeypatch.setattr(postgres, "SUPERUSER", "postgres")  # how earlier versions ran initdb
    old.start()
    old.stop()
    monkeypatch.undo()
    with pytest.raises(postgres.PostgresError) as refused:
        postgres.PostgresCluster(tmp_path / "old").start()
    message = str(refused.value)
    assert "older opstui" in message and str(tmp_path / "old") in message
    assert "\n" not in message
    assert not (tmp_path / "old" / "pgdata" / "postmaster.pid").exists()  # stopped again


def test_with_supabase_function_defaults_anon_still_executes_no_app_function(cluster):
    """Supabase's change covers tables and sequences; its default privileges may still grant
    EXECUTE on new public functions to the API roles. Revoking only from PUBLIC would then
    leave anon able to call a function: apply the migrations under those defaults."""
    from opstui.backend import schema
    from tests.sql_fixtures import fresh_database

    with fresh_database(cluster, "fndefaults") as conninfo, psycopg.connect(conninfo) as conn:
        conn.autocommit = True
        schema.apply_bootstrap(conn)
        migrator = schema.migrator_conninfo(conn)
        _one(
            migrator,
            "alter default privileges for role postgres in schema public"
            " grant execute on functions to anon, authenticated, service_role",
        )
        with psycopg.connect(migrator, autocommit=True) as c:
            schema.apply_migrations(c)
        callable_by_anon = _one(
            conninfo,
            """
            select p.oid::regprocedure::text from pg_proc p
              join pg_namespace n on n.oid = p.pronamespace
             where n.nspname in ('public', 'private')
               and has_function_privilege('anon', p.oid, 'execute')
            """,
        )
    assert callable_by_anon == []


async def test_each_request_runs_under_its_own_roles_statement_timeout(backend, sign_in):
    """PostgREST applies the impersonated role's settings: anon's 3 s, not authenticator's 8 s."""
    name = f"slow_{uuid.uuid4().hex[:8]}"
    migrator = backend._cluster.conninfo(user="postgres")
    _one(
        migrator,
        f"create function public.{name}() returns text language sql as"  # noqa: S608
        " $$ select current_setting('statement_timeout') $$",
    )
    _one(migrator, f"grant execute on function public.{name}() to anon, authenticated")  # noqa: S608
    try:
        anon = await sign_in()
        user = await sign_in(demo_user(backend.info, "admin")["email"])
        assert (await anon.rpc(name).execute()).data == "3s"
        assert (await user.rpc(name).execute()).data == "8s"
    finally:
        _one(migrator, f"drop function public.{name}()")  # noqa: S608
