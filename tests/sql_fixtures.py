"""Helpers for SQL-level tests: fresh databases on the session cluster, and
acting as a Supabase user the way PostgREST does (role + request.jwt.claims,
transaction-local)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import psycopg

FIXED_NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
# Fixed passwords for the SQL-level demo seed, so two seeds are identical (a real install
# gets random ones, demo.load_or_create_accounts).
TEST_PASSWORDS = {
    email: f"sql-test-{n}" for n, email in enumerate(
        ("admin@acme.test", "dev@acme.test", "viewer@acme.test", "tester@acme.test",
         "contrib@acme.test", "ops@globex.test", "dev@globex.test"))
}  # fmt: skip


@contextmanager
def fresh_database(cluster, prefix: str = "t") -> Iterator[str]:
    """Create an empty database on the cluster; yield its superuser conninfo; drop it."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(cluster.conninfo(), autocommit=True) as admin:
        admin.execute(f'create database "{name}"')
    try:
        yield cluster.conninfo(dbname=name)
    finally:
        with psycopg.connect(cluster.conninfo(), autocommit=True) as admin:
            admin.execute(f'drop database if exists "{name}" with (force)')


@contextmanager
def prepared_database(
    cluster, prefix: str = "t", *, demo: bool = False
) -> Iterator[psycopg.Connection]:
    """A fresh database with bootstrap + migrations (and optionally the demo data);
    yields an autocommit superuser connection."""
    from opstui.backend.demo import seed_demo
    from opstui.backend.schema import prepare_database

    with fresh_database(cluster, prefix) as conninfo:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            prepare_database(conn)
            if demo:
                seed_demo(conn, now=FIXED_NOW, passwords=TEST_PASSWORDS)
            yield conn


@contextmanager
def acting_as(
    conn: psycopg.Connection, user_id: str | None, *, role: str = "authenticated", email: str = ""
) -> Iterator[psycopg.Connection]:
    """One rolled-back transaction in which the connection acts as a user."""
    claims = {"role": role, "aud": "authenticated"}
    if user_id:
        claims.update({"sub": str(user_id), "email": email})
    with conn.transaction(force_rollback=True):
        conn.execute(f"set local role {role}")
        conn.execute("select set_config('request.jwt.claims', %s, true)", (json.dumps(claims),))
        yield conn


@contextmanager
def savepoint(conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
    """A nested transaction, so an expected error does not abort the outer one."""
    with conn.transaction():
        yield conn
