"""RLS, triggers and secrets at the SQL level, acting as users the way
PostgREST does (`set local role authenticated` + request.jwt.claims).

Writes are checked WITHOUT `RETURNING` (PostgREST's return=minimal), so a
missing WITH CHECK cannot hide behind the SELECT policy. Every test runs in a
rolled-back transaction on a module-private database seeded with the demo.
"""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest
from psycopg import errors

from opstui.backend import demo
from tests.sql_fixtures import FIXED_NOW, TEST_PASSWORDS, acting_as, prepared_database, savepoint


@pytest.fixture(scope="module")
def db(cluster):
    with prepared_database(cluster, "rls", demo=True) as conn:
        yield conn


@pytest.fixture(scope="module")
def users(db) -> dict[str, demo.DemoUser]:
    return {u.email: u for u in demo.demo_users(db)}


@pytest.fixture(scope="module")
def teams(db) -> dict[str, str]:
    return {name: str(tid) for tid, name in db.execute("select id, name from teams").fetchall()}


def as_user(db, user: demo.DemoUser):
    return acting_as(db, user.user_id, email=user.email)


def one(db, sql, params=None):
    return db.execute(sql, params).fetchone()[0]


def new_host_sql(team_id: str, creator_id: str, name: str = "probe", password: str | None = None):
    return (
        "insert into hosts (id, name, type, ip, port, team_id, creator_id, password)"
        " values (%s, %s, 'ssh', '127.0.2.200', 22, %s, %s, %s)",
        (str(uuid.uuid4()), name, team_id, creator_id, password),
    )


# -- tenant isolation and reads ------------------------------------------------------------------


def test_profiles_are_readable_within_the_tenant_without_recursion(db, users):
    with as_user(db, users["dev@acme.test"]):
        emails = {r[0] for r in db.execute("select email from profiles").fetchall()}
    assert emails == {e for e in demo.DEMO_EMAILS if e.endswith("@acme.test")}
    with as_user(db, users["ops@globex.test"]):
        assert one(db, "select count(*) from profiles") == 2
        assert one(db, "select count(*) from tenants") == 1
        assert one(db, "select count(*) from teams") == 1


def test_anon_is_refused_every_table(db):
    # No grants at all (as on Supabase since 2026-10-30, where nothing is granted by default).
    tables = [
        r[0] for r in db.execute("select tablename from pg_tables where schemaname = 'public'")
    ]
    assert "hosts" in tables and "subscription_tiers" in tables
    with acting_as(db, None, role="anon"):
        for table in tables:
            with pytest.raises(errors.InsufficientPrivilege), savepoint(db):
                db.execute(f"select count(*) from public.{table}")  # noqa: S608


def test_team_resources_are_visible_to_members_only(db, users, teams):
    expected = {
        table: dict(
            db.execute(f"select team_id::text, count(*) from {table} group by 1").fetchall()  # noqa: S608
        )
        for table in ("hosts", "repositories", "deployments", "cicd_providers", "cicd_jobs")
    }
    platform = teams["Platform"]
    with as_user(db, users["viewer@acme.test"]):  # member of Platform only
        for table, counts in expected.items():
            rows = db.execute(f"select team_id::text, count(*) from {table} group by 1").fetchall()  # noqa: S608
            assert dict(rows) == {platform: counts[platform]}, table
        mapped = one(
            db,
            "select count(*) from deployment_cicd_mappings m"
            " where not exists (select 1 from deployments d where d.id = m.deployment_id and d.team_id = %s)",
            (platform,),
        )
        assert mapped == 0
        assert one(db, "select count(*) from deployment_cicd_mappings") > 0
        assert one(db, "select count(*) from team_members where team_id <> %s", (platform,)) == 0
        assert (
            one(db, "select count(*) from permission_matrix where team_id <> %s", (platform,)) == 0
        )
    with as_user(db, users["dev@acme.test"]):  # in two teams
        assert one(db, "select count(distinct team_id) from hosts") == 2


def test_catalog_tables_are_read_only_for_users(db, users):
    with as_user(db, users["admin@acme.test"]):
        assert one(db, "select count(*) from subscription_tiers") >= 2
        assert one(db, "select count(*) from role_templates") == 5
        with pytest.raises(errors.InsufficientPrivilege), savepoint(db):
            db.execute("update resource_limits set is_unlimited = true")
        with pytest.raises(errors.InsufficientPrivilege), savepoint(db):
            db.execute("update tenants set subscription_tier_id = 'enterprise'")


# -- writes: WITH CHECK without RETURNING -----------------------------------------------------------


def test_insert_into_another_team_is_refused_without_returning(db, users, teams):
    dev = users["dev@acme.test"]
    with as_user(db, dev):
        db.execute(*new_host_sql(teams["Platform"], dev.user_id, "allowed"))  # own team: fine
        # Another tenant's team.
        with pytest.raises(errors.InsufficientPrivilege), savepoint(db):
            db.execute(*new_host_sql(teams["Core"], dev.user_id, "planted"))
        # Own team, but pretending someone else created it.
        with pytest.raises(errors.InsufficientPrivilege), savepoint(db):
            db.execute(*new_host_sql(teams["Platform"], users["admin@acme.test"].user_id))
    viewer = users["viewer@acme.test"]
    with as_user(db, viewer):
        # Same tenant, team without membership; and own team without insert permission.
        for team in (teams["Payments"], teams["Platform"]):
            with pytest.raises(errors.InsufficientPrivilege), savepoint(db):
                db.execute(*new_host_sql(team, viewer.user_id))
        with pytest.raises(errors.InsufficientPrivilege), savepoint(db):
            db.execute(
                "insert into deployments (name, team_id, creator_id, user_id) values ('x', %s, %s, %s)",
                (teams["Platform"], viewer.user_id, viewer.user_id),
            )
    assert one(db, "select count(*) from hosts where name in ('planted', 'allowed')") == 0


def test_update_cannot_move_a_row_into_another_team(db, users, teams):
    dev = users["dev@acme.test"]
    with as_user(db, dev):
        # dev may update repositories in Platform, but not move one to Globex...
        with pytest.raises(errors.InsufficientPrivilege), savepoint(db):
            db.execute(
                "update repositories set team_id = %s where team_id = %s",
                (teams["Core"], teams["Platform"]),
            )
        # ...nor a deployment (its hosts belong to Platform: the integrity trigger objects first).
        with pytest.raises((errors.InsufficientPrivilege, errors.CheckViolation)), savepoint(db):
            db.execute(
                "update deployments set team_id = %s, tenant_id = null where team_id = %s",
                (teams["Core"], teams["Platform"]),
            )
        with pytest.raises(errors.InsufficientPrivilege), savepoint(db):
            db.execute(
                "update deployments set team_id = %s, tenant_id = null, host_ids = '{}' where team_id = %s",
                (teams["Core"], teams["Platform"]),
            )


def test_update_own_and_delete_own(db, users, teams):
    contrib = users["contrib@acme.test"]  # update_own / delete_own only
    admin_host = one(
        db,
        "select id from hosts where team_id = %s and creator_id = %s limit 1",
        (teams["Platform"], users["admin@acme.test"].user_id),
    )
    with as_user(db, contrib):
        sql, params = new_host_sql(teams["Platform"], contrib.user_id, "mine")
        db.execute(sql, params)
        mine = params[0]
        cur = db.execute("update hosts set description = 'changed' where id = %s", (mine,))
        assert cur.rowcount == 1
        cur = db.execute("update hosts set description = 'changed' where id = %s", (admin_host,))
        assert cur.rowcount == 0
        cur = db.execute("delete from hosts where id = %s", (admin_host,))
        assert cur.rowcount == 0
        cur = db.execute("delete from hosts where id = %s", (mine,))
        assert cur.rowcount == 1
        # creator_id cannot be reassigned to gain or shed ownership.
        db.execute(sql, params)
        with pytest.raises(errors.InsufficientPrivilege), savepoint(db):
            db.execute(
                "update hosts set creator_id = %s where id = %s",
                (users["admin@acme.test"].user_id, mine),
            )
    with as_user(db, users["dev@acme.test"]):  # update permission on repositories
        assert (
            db.execute(
                "update repositories set description = 'x' where team_id = %s", (teams["Platform"],)
            ).rowcount
            == 5
        )


def test_execute_permission_changes_no_column_and_run_state_follows_runs(db, users, teams):
    tester = users["tester@acme.test"]  # deployments: select + execute in Payments
    dep = one(
        db,
        "select id from deployments where team_id = %s order by name limit 1",
        (teams["Payments"],),
    )
    other = one(db, "select id from deployments where team_id = %s limit 1", (teams["Platform"],))
    with as_user(db, tester):
        # Status and times follow the runs (20261201000100): nobody sets them by hand.
        with (
            pytest.raises(errors.InsufficientPrivilege, match="follow the deployment's runs"),
            savepoint(db),
        ):
            db.execute(
                "update deployments set status = 'in_progress', started_at = now(),"
                " completed_at = null where id = %s",
                (dep,),
            )
        with (
            pytest.raises(
                errors.InsufficientPrivilege, match="execute permission on deployments"
            ) as err,
            savepoint(db),
        ):
            db.execute("update deployments set name = 'renamed' where id = %s", (dep,))
        assert "name" in str(err.value)
        with pytest.raises(errors.InsufficientPrivilege), savepoint(db):
            db.execute("update deployments set scripts_path = '{rm.sh}' where id = %s", (dep,))
        assert (
            db.execute("update deployments set status = 'failed' where id = %s", (other,)).rowcount
            == 0
        )
    with as_user(db, users["dev@acme.test"]):  # update permission: any column
        assert (
            db.execute("update deployments set name = 'renamed' where id = %s", (dep,)).rowcount
            == 1
        )


# -- admin rules -----------------------------------------------------------------------------------


def test_only_team_or_tenant_admins_manage_membership(db, users, teams):
    viewer = users["viewer@acme.test"]
    with as_user(db, users["dev@acme.test"]):
        with pytest.raises(errors.InsufficientPrivilege), savepoint(db):
            db.execute(
                "insert into team_members (team_id, profile_id, role) values (%s, %s, 'viewer')",
                (teams["Payments"], viewer.user_id),
            )
        with pytest.raises(errors.InsufficientPrivilege), savepoint(db):
            db.execute(
                "insert into permission_matrix (team_id, profile_id, resource_type, can_insert)"
                " values (%s, %s, 'hosts', true)",
                (teams["Platform"], viewer.user_id),
            )
        assert db.execute("update permission_matrix set can_delete = true").rowcount == 0
        with pytest.raises(errors.InsufficientPrivilege), savepoint(db):
            db.execute(
                "update profiles set role = 'admin' where id = %s",
                (users["dev@acme.test"].user_id,),
            )
    with as_user(db, users["ops@globex.test"]):  # admin, but of another tenant
        with pytest.raises(errors.InsufficientPrivilege), savepoint(db):
            db.execute(
                "insert into team_members (team_id, profile_id, role) values (%s, %s, 'viewer')",
                (teams["Payments"], viewer.user_id),
            )
    with as_user(db, users["admin@acme.test"]):
        db.execute(
            "insert into team_members (team_id, profile_id, role) values (%s, %s, 'viewer')",
            (teams["Payments"], viewer.user_id),
        )
        db.execute("update profiles set role = 'developer' where id = %s", (viewer.user_id,))
        # a member from another tenant is rejected by the integrity trigger
        with pytest.raises(errors.CheckViolation), savepoint(db):
            db.execute(
                "insert into team_members (team_id, profile_id, role) values (%s, %s, 'viewer')",
                (teams["Platform"], users["ops@globex.test"].user_id),
            )


def test_rpcs_do_not_leak_across_tenants(db, users, teams):
    dev = users["dev@acme.test"]
    call = "select check_permission(%s, %s, 'hosts', %s, %s)"
    with as_user(db, dev):
        assert one(db, call, (dev.user_id, teams["Platform"], "insert", False)) is True
        assert one(db, call, (dev.user_id, teams["Platform"], "update", False)) is False
        assert one(db, call, (dev.user_id, teams["Platform"], "update", True)) is True
        assert one(db, "select count(*) from get_user_teams(%s)", (dev.user_id,)) == 2
    ops = users["ops@globex.test"]
    with as_user(db, ops):
        assert one(db, call, (dev.user_id, teams["Platform"], "insert", False)) is False
        assert one(db, "select count(*) from get_user_teams(%s)", (dev.user_id,)) == 0
    # ...while the superuser sees the truth.
    assert one(db, call, (dev.user_id, teams["Platform"], "insert", False)) is True


def test_git_providers_and_pins(db, users, teams):
    with as_user(db, users["ops@globex.test"]):
        assert [r[0] for r in db.execute("select name from git_providers").fetchall()] == [
            "globex-github"
        ]
    with as_user(db, users["tester@acme.test"]):  # Payments uses both Acme providers
        assert one(db, "select count(*) from git_providers") == 2
    dev = users["dev@acme.test"]
    core_repo = one(db, "select id from repositories where team_id = %s limit 1", (teams["Core"],))
    admin_pins = one(
        db,
        "select count(*) from profile_repository_pins where profile_id = %s",
        (users["admin@acme.test"].user_id,),
    )
    assert admin_pins == 2
    with as_user(db, dev):
        assert one(db, "select count(*) from profile_repository_pins") == 2  # only dev's own
        with pytest.raises(errors.InsufficientPrivilege), savepoint(db):
            db.execute(
                "insert into profile_repository_pins (profile_id, repository_id) values (%s, %s)",
                (dev.user_id, core_repo),
            )
        # a repository may not be attached to someone else's provider the team doesn't use
        globex_provider = one(db, "select count(*) from git_providers where name = 'globex-github'")
        assert globex_provider == 0
    globex_provider = one(db, "select id from git_providers where name = 'globex-github'")
    with as_user(db, dev):
        with pytest.raises(errors.InsufficientPrivilege), savepoint(db):
            db.execute(
                "insert into repositories (provider_id, provider_type, name, team_id, creator_id)"
                " values (%s, 'github', 'stolen', %s, %s)",
                (globex_provider, teams["Platform"], dev.user_id),
            )


# -- resource limits -------------------------------------------------------------------------------


def test_resource_limit_is_enforced_with_a_clear_message(db, users, teams):
    gdev = users["dev@globex.test"]
    with db.transaction(force_rollback=True):
        count = one(db, "select count(*) from hosts where team_id = %s", (teams["Core"],))
        db.execute(
            "update resource_limits set max_count = %s where tier_id = 'starter' and resource_type = 'hosts'",
            (count + 1,),
        )
        db.execute("set local role authenticated")
        db.execute(
            "select set_config('request.jwt.claims', %s, true)",
            (json.dumps({"sub": gdev.user_id, "role": "authenticated"}),),
        )
        db.execute(*new_host_sql(teams["Core"], gdev.user_id, "last-one"))
        with pytest.raises(errors.RaiseException) as err, savepoint(db):
            db.execute(*new_host_sql(teams["Core"], gdev.user_id, "one-too-many"))
        assert err.value.sqlstate == "P0001"
        assert str(err.value.diag.message_primary) == (
            f"resource limit reached: the 'starter' tier allows {count + 1} hosts per tenant; "
            "delete a host or upgrade the subscription"
        )
    # Unlimited tier (Acme is enterprise): no limit.
    with as_user(db, users["dev@acme.test"]):
        for i in range(3):
            db.execute(
                *new_host_sql(teams["Platform"], users["dev@acme.test"].user_id, f"bulk-{i}")
            )


def test_team_limit_applies_to_superuser_inserts_too(db, teams):
    tenant = one(db, "select tenant_id from teams where id = %s", (teams["Core"],))
    with db.transaction(force_rollback=True):
        db.execute(
            "insert into teams (name, tenant_id) values ('Two', %s), ('Three', %s)",
            (tenant, tenant),
        )
        with pytest.raises(errors.RaiseException, match="allows 3 teams per tenant"), savepoint(db):
            db.execute("insert into teams (name, tenant_id) values ('Four', %s)", (tenant,))


# -- secrets ---------------------------------------------------------------------------------------


def test_host_passwords_are_write_only(db, users, teams):
    assert (
        one(db, "select count(*) from hosts where password is not null") == 0
    )  # even as superuser
    host, secret = db.execute(
        "select h.id, s.password from hosts h join private.host_secrets s on s.host_id = h.id"
        " where h.team_id = %s order by h.name limit 1",
        (teams["Platform"],),
    ).fetchone()
    dev, viewer = users["dev@acme.test"], users["viewer@acme.test"]
    with as_user(db, dev):  # execute on hosts in Platform
        assert one(db, "select count(*) from hosts where password is not null") == 0
        with pytest.raises(errors.InsufficientPrivilege), savepoint(db):
            db.execute("select * from private.host_secrets")
        assert one(db, "select get_host_secret(%s)", (host,)) == secret
        # Writing a password through the table stores it in the secret table.
        sql, params = new_host_sql(teams["Platform"], dev.user_id, "with-pw", password="s3cret")
        db.execute(sql, params)
        assert one(db, "select password from hosts where id = %s", (params[0],)) is None
        assert one(db, "select get_host_secret(%s)", (params[0],)) == "s3cret"
        db.execute("update hosts set password = '' where id = %s", (params[0],))  # '' clears
        assert one(db, "select get_host_secret(%s)", (params[0],)) is None
    with as_user(db, viewer):  # no execute
        with (
            pytest.raises(errors.InsufficientPrivilege, match="can_execute on hosts"),
            savepoint(db),
        ):
            db.execute("select get_host_secret(%s)", (host,))
    with as_user(db, users["ops@globex.test"]):  # another tenant, and an unknown id: same refusal
        for target in (host, "no-such-host"):
            with pytest.raises(errors.InsufficientPrivilege), savepoint(db):
                db.execute("select get_host_secret(%s)", (target,))


def test_upsert_cannot_overwrite_another_hosts_secret(db, users, teams):
    victim, before = db.execute(
        "select h.id, s.password from hosts h join private.host_secrets s on s.host_id = h.id"
        " where h.team_id = %s limit 1",
        (teams["Core"],),
    ).fetchone()
    gdev = users["dev@acme.test"]
    with as_user(db, gdev):
        db.execute(
            "insert into hosts (id, name, type, ip, team_id, creator_id, password)"
            " values (%s, 'x', 'ssh', '127.0.2.1', %s, %s, 'overwritten') on conflict (id) do nothing",
            (victim, teams["Platform"], gdev.user_id),
        )
        assert one(db, "select current_user") == "authenticated"
    assert (
        one(db, "select password from private.host_secrets where host_id = %s", (victim,)) == before
    )


def _upsert(db, table: str, row: dict) -> None:
    """An upsert as PostgREST sends it (Prefer: resolution=merge-duplicates), no RETURNING."""
    cols = list(row)
    db.execute(
        f"insert into {table} ({', '.join(cols)}) values ({', '.join(['%s'] * len(cols))})"  # noqa: S608
        f" on conflict (id) do update set {', '.join(f'{c} = excluded.{c}' for c in cols)}",
        [json.dumps(v) if isinstance(v, dict) else v for v in row.values()],
    )


def test_host_password_insert_update_and_upsert_all_keep_the_new_password(db, users, teams):
    dev = users["dev@acme.test"]
    with as_user(db, dev):
        sql, params = new_host_sql(teams["Platform"], dev.user_id, "pw-cycle", password="first")
        host = params[0]
        db.execute(sql, params)
        assert one(db, "select get_host_secret(%s)", (host,)) == "first"
        db.execute("update hosts set password = 'second' where id = %s", (host,))
        assert one(db, "select get_host_secret(%s)", (host,)) == "second"
        row = {"id": host, "name": "pw-cycle", "type": "ssh", "ip": "127.0.2.200"}
        row["team_id"] = teams["Platform"]
        _upsert(db, "hosts", {**row, "password": "third"})
        assert one(db, "select get_host_secret(%s)", (host,)) == "third"
        _upsert(db, "hosts", {**row, "description": "no password sent"})
        assert one(db, "select get_host_secret(%s)", (host,)) == "third"
        assert one(db, "select count(*) from hosts where password is not null") == 0


def test_a_failed_insert_onto_an_existing_host_does_not_echo_the_password(db, users, teams):
    """On that path the trigger leaves the password in NEW for the upsert's UPDATE branch;
    an error about the row must still not carry it (RLS hides 'Failing row contains')."""
    dev = users["dev@acme.test"]
    with as_user(db, dev):
        sql, params = new_host_sql(teams["Platform"], dev.user_id, "echo", password="first")
        db.execute(sql, params)
        for conflict in ("", " on conflict (id) do update set password = excluded.password"):
            with pytest.raises(psycopg.Error) as failed, savepoint(db):
                insert = (
                    "insert into hosts (id, name, type, ip, port, team_id, password)"
                    " values (%s, 'echo', 'ssh', '127.0.2.9', 70000, %s, 'hunter2-secret')"
                )
                db.execute(insert + conflict, (params[0], teams["Platform"]))
            diag = failed.value.diag
            text = " ".join(
                str(x) for x in (failed.value, diag.message_detail, diag.message_hint) if x
            )
            assert "hunter2-secret" not in text
        assert one(db, "select get_host_secret(%s)", (params[0],)) == "first"


def test_git_tokens_insert_update_and_upsert_all_keep_the_new_tokens(db, users):
    admin = users["admin@acme.test"]
    provider = str(uuid.uuid4())
    with as_user(db, admin):
        base = {"id": provider, "type": "github", "name": f"gh-{provider[:6]}"}
        db.execute(
            "insert into git_providers (id, type, name, access_token, refresh_token)"
            " values (%s, 'github', %s, 'a1', 'r1')",
            (provider, base["name"]),
        )
        tokens = lambda: one(db, "select get_git_provider_tokens(%s)", (provider,))  # noqa: E731
        assert (tokens()["access_token"], tokens()["refresh_token"]) == ("a1", "r1")
        db.execute("update git_providers set access_token = 'a2' where id = %s", (provider,))
        assert (tokens()["access_token"], tokens()["refresh_token"]) == ("a2", "r1")
        _upsert(db, "git_providers", {**base, "access_token": "a3", "refresh_token": "r3"})
        assert (tokens()["access_token"], tokens()["refresh_token"]) == ("a3", "r3")
        _upsert(db, "git_providers", {**base, "refresh_token": "r4"})
        assert (tokens()["access_token"], tokens()["refresh_token"]) == ("a3", "r4")
        assert (
            one(
                db,
                "select count(*) from git_providers"
                " where access_token is not null or refresh_token is not null",
            )
            == 0
        )


def test_cicd_secrets_insert_update_and_upsert_all_keep_the_new_secret(db, users, teams):
    admin = users["admin@acme.test"]
    provider = str(uuid.uuid4())
    with as_user(db, admin):
        base = {"id": provider, "type": "jenkins", "name": "ci-cycle", "url": "http://127.0.0.1:9"}
        row = {**base, "team_id": teams["Platform"], "creator_id": admin.user_id}
        db.execute(
            "insert into cicd_providers (id, type, name, url, team_id, creator_id, config)"
            " values (%s, %s, %s, %s, %s, %s, %s)",
            (*row.values(), json.dumps({"api_token": "t1", "user": "ci"})),
        )
        secrets = lambda: one(db, "select get_cicd_provider_secrets(%s)", (provider,))  # noqa: E731
        assert secrets()["api_token"] == "t1"
        db.execute(
            'update cicd_providers set config = config || \'{"api_token": "t2"}\' where id = %s',
            (provider,),
        )
        assert secrets()["api_token"] == "t2"
        _upsert(db, "cicd_providers", {**row, "config": {"api_token": "t3", "user": "ci"}})
        assert secrets()["api_token"] == "t3"
        config = one(db, "select config from cicd_providers where id = %s", (provider,))
        assert config == {"user": "ci", "secret_keys": ["api_token"]}


def test_git_and_cicd_secrets(db, users, teams):
    assert (
        one(
            db,
            "select count(*) from git_providers where access_token is not null or refresh_token is not null",
        )
        == 0
    )
    gh = one(db, "select id from git_providers where name = 'acme-github'")
    jenkins = one(db, "select id from cicd_providers where team_id = %s", (teams["Platform"],))
    config = one(db, "select config from cicd_providers where id = %s", (jenkins,))
    assert config["secret_keys"] == ["api_token"] and "api_token" not in config
    with as_user(db, users["admin@acme.test"]):  # owner of acme-github
        tokens = one(db, "select get_git_provider_tokens(%s)", (gh,))
        assert tokens["access_token"].startswith("ghp_demo_") and tokens["refresh_token"]
    with as_user(db, users["dev@acme.test"]):  # execute on repositories and cicd_providers
        assert one(db, "select get_git_provider_tokens(%s)", (gh,))["access_token"]
        secrets = one(db, "select get_cicd_provider_secrets(%s)", (jenkins,))
        assert secrets["api_token"].startswith("jenkins-demo-")
    with as_user(db, users["admin@acme.test"]):  # update permission on cicd_providers
        db.execute(
            'update cicd_providers set config = config || \'{"api_token": "", "password": "p"}\' where id = %s',
            (jenkins,),
        )
        assert one(
            db, "select config->'secret_keys' from cicd_providers where id = %s", (jenkins,)
        ) == ["password"]
        assert one(db, "select get_cicd_provider_secrets(%s)", (jenkins,)) == {"password": "p"}
    for email in ("viewer@acme.test", "ops@globex.test"):
        with as_user(db, users[email]):
            with (
                pytest.raises(errors.InsufficientPrivilege, match="can_execute on cicd_providers"),
                savepoint(db),
            ):
                db.execute("select get_cicd_provider_secrets(%s)", (jenkins,))
            with pytest.raises(errors.InsufficientPrivilege), savepoint(db):
                db.execute("select get_git_provider_tokens(%s)", (gh,))
            with pytest.raises(errors.InsufficientPrivilege), savepoint(db):
                db.execute("select * from private.git_provider_secrets")


# -- profile trigger -------------------------------------------------------------------------------


def test_sign_up_cannot_claim_a_tenant_or_a_role(db, users):
    """A sign-up as GoTrue stores it: what the person sent (`options.data`) lands in
    raw_user_meta_data, and raw_app_meta_data holds only the provider. Claiming a
    tenant and admin there must give neither."""
    tenant = users["ops@globex.test"].tenant_id
    with db.transaction(force_rollback=True):
        uid = uuid.uuid4()
        db.execute(
            "insert into auth.users (id, email, raw_app_meta_data, raw_user_meta_data)"
            " values (%s, 'mallory@example.test', %s, %s)",
            (
                uid,
                json.dumps({"provider": "email", "providers": ["email"]}),
                json.dumps({"tenant_id": tenant, "role": "admin", "full_name": "Mallory"}),
            ),
        )
        row = db.execute(
            "select tenant_id, role, full_name from profiles where id = %s", (uid,)
        ).fetchone()
        assert row == (None, "viewer", "Mallory")
        with acting_as(db, str(uid), email="mallory@example.test"):
            assert one(db, "select count(*) from tenants") == 0
            assert one(db, "select count(*) from teams") == 0


def test_new_auth_user_gets_tenant_and_role_from_app_metadata(db, users):
    tenant = users["ops@globex.test"].tenant_id
    with db.transaction(force_rollback=True):
        uid, uid2 = uuid.uuid4(), uuid.uuid4()
        db.execute(  # set server-side (service role / admin API): trusted
            "insert into auth.users (id, email, raw_app_meta_data, raw_user_meta_data)"
            " values (%s, 'new@globex.test', %s, %s)",
            (
                uid,
                json.dumps({"provider": "email", "tenant_id": tenant, "role": "tester"}),
                json.dumps({"full_name": "New Person"}),
            ),
        )
        db.execute(
            "insert into auth.users (id, email, raw_app_meta_data) values (%s, 'odd@globex.test', %s)",
            (uid2, json.dumps({"tenant_id": "nope", "role": "overlord"})),
        )
        rows = db.execute(
            "select id, tenant_id, role, full_name, email from profiles where id in (%s, %s) order by email",
            (uid, uid2),
        ).fetchall()
    assert rows == [
        (uid, tenant, "tester", "New Person", "new@globex.test"),
        (uid2, None, "viewer", None, "odd@globex.test"),
    ]


# -- demo data -------------------------------------------------------------------------------------


def test_demo_data_is_complete_and_idempotent(db, users):
    counts = {
        t: one(db, f"select count(*) from {t}")  # noqa: S608
        for t in ("tenants", "teams", "profiles", "hosts", "repositories", "git_providers",
                  "cicd_providers", "cicd_jobs", "deployments", "deployment_cicd_mappings")
    }  # fmt: skip
    assert counts["tenants"] >= 2 and counts["teams"] >= 3 and counts["profiles"] >= 5
    assert counts["hosts"] >= 20 and counts["repositories"] >= 10 and counts["git_providers"] >= 2
    assert (
        counts["cicd_providers"] >= 2 and counts["cicd_jobs"] >= 2 and counts["deployments"] >= 40
    )
    assert counts["deployment_cicd_mappings"] > 0
    statuses = {r[0] for r in db.execute("select distinct status from deployments").fetchall()}
    # (no seeded deployment is in_progress: each seeded run has finished; issue 8 §3)
    assert statuses == {"pending", "scheduled", "success", "failed", "cancelled"}
    assert one(db, "select count(distinct subscription_tier_id) from tenants") >= 2
    assert one(db, "select count(distinct role) from profiles") >= 5
    assert one(db, "select bool_and(is_windows) from hosts where port in (5985, 5986)") is True
    assert one(db, "select count(*) from hosts where is_windows") >= 2
    assert one(db, "select count(*) from private.host_secrets") >= 5
    assert (
        one(
            db,
            "select count(*) from hosts where not ip like '127.%%'",  # loopback only (issue 9 §6)
        )
        == 0
    )
    assert one(db, "select count(*) from deployments where completed_at <= started_at") == 0
    assert one(
        db,
        "select bool_and(scheduled_time > %s) from deployments where status = 'scheduled'",
        (FIXED_NOW,),
    )
    assert any(len(u.team_ids) == 2 for u in users.values())
    assert len({u.role for u in users.values()}) >= 5
    # idempotent: a second seed inserts nothing and returns the same users
    before = one(db, "select count(*) from deployments")
    assert demo.seed_demo(db, now=FIXED_NOW) == list(users.values())
    assert one(db, "select count(*) from deployments") == before
    import bcrypt

    hashed = one(db, "select encrypted_password from auth.users where email = 'dev@acme.test'")
    assert hashed.startswith("$2b$10$") and bcrypt.checkpw(
        TEST_PASSWORDS["dev@acme.test"].encode(), hashed.encode()
    )


_DUMP_TABLES = (
    "auth.users", "public.tenants", "public.subscription_tiers", "public.resource_limits",
    "public.role_templates", "public.profiles", "public.teams", "public.team_members",
    "public.permission_matrix", "public.hosts", "public.git_providers", "public.repositories",
    "public.profile_repository_pins", "public.cicd_providers", "public.cicd_jobs",
    "public.deployments", "public.deployment_cicd_mappings", "private.host_secrets",
    "private.git_provider_secrets", "private.cicd_provider_secrets",
)  # fmt: skip
_VOLATILE = {
    "private.host_secrets",
    "private.git_provider_secrets",
    "private.cicd_provider_secrets",
}


def _dump(conn: psycopg.Connection) -> dict[str, list[str]]:
    out = {}
    for table in _DUMP_TABLES:
        drop = " - 'updated_at'" if table in _VOLATILE else ""
        out[table] = [
            r[0]
            for r in conn.execute(
                f"select (to_jsonb(t){drop})::text from {table} t order by 1"  # noqa: S608
            ).fetchall()
        ]
    return out


def test_demo_seed_is_deterministic(cluster):
    dumps = []
    for _ in range(2):
        with prepared_database(cluster, "det", demo=True) as conn:
            dumps.append(_dump(conn))
    assert dumps[0] == dumps[1]
    assert len(dumps[0]["public.deployments"]) >= 40
