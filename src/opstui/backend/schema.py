"""Database bootstrap and migrations for the embedded backend.

`bootstrap.sql` recreates the Supabase-owned objects (roles, auth schema,
publication, CLI bookkeeping) and is applied only by the embedded backend.
The files in `opstui/migrations/` are the app schema: they are applied in
filename order, recorded in `supabase_migrations.schema_migrations` like the
Supabase CLI does (plus a sha256 checksum), and can be exported to a
`supabase/migrations/` directory to push to a real Supabase project.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import psycopg
import psycopg.conninfo
from psycopg import pq

BACKEND_DIR = Path(__file__).resolve().parent
BOOTSTRAP_SQL_PATH = BACKEND_DIR / "bootstrap.sql"
MIGRATIONS_DIR = BACKEND_DIR.parent / "migrations"

_MIGRATION_NAME = re.compile(r"^(\d{14})_([A-Za-z0-9_\-]+)\.sql$")
# Arbitrary but fixed: "opstui-migrations" as a bigint-sized key.
_ADVISORY_LOCK_KEY = 0x6F7073_7475_6D69


class MigrationError(RuntimeError):
    """A one-line, user-facing explanation of why the schema could not be prepared."""


def migration_files() -> list[Path]:
    """The app's migration files, sorted by filename (= by version)."""
    files = [p for p in MIGRATIONS_DIR.glob("*.sql") if _MIGRATION_NAME.match(p.name)]
    return sorted(files, key=lambda p: p.name)


def _version_and_name(path: Path) -> tuple[str, str]:
    match = _MIGRATION_NAME.match(path.name)
    if not match:
        raise MigrationError(f"migration file name {path.name!r} is not <14 digits>_<name>.sql")
    return match.group(1), match.group(2)


def checksum(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class _Autocommit:
    """Run with autocommit on (restoring the previous mode), so each migration can
    have its own transaction."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self.previous = conn.autocommit

    def __enter__(self) -> psycopg.Connection:
        if not self.conn.autocommit:
            if self.conn.info.transaction_status != pq.TransactionStatus.IDLE:
                raise MigrationError(
                    "cannot prepare the database inside an open transaction; commit or roll back first"
                )
            self.conn.autocommit = True
        return self.conn

    def __exit__(self, *exc: object) -> None:
        if self.conn.autocommit != self.previous:
            self.conn.autocommit = self.previous


def apply_bootstrap(conn: psycopg.Connection) -> None:
    """Create the Supabase-owned objects (idempotent). Needs a superuser connection."""
    sql = BOOTSTRAP_SQL_PATH.read_text(encoding="utf-8")
    with _Autocommit(conn) as c:
        with c.transaction():
            # Roles are cluster-wide: serialise concurrent bootstraps of several databases.
            c.execute("select pg_advisory_xact_lock(%s)", (_ADVISORY_LOCK_KEY - 1,))
            c.execute(sql)


def applied_migrations(conn: psycopg.Connection) -> dict[str, str | None]:
    """version -> checksum of the migrations already applied."""
    rows = conn.execute(
        "select version, checksum from supabase_migrations.schema_migrations order by version"
    ).fetchall()
    return {version: digest for version, digest in rows}


def apply_migrations(conn: psycopg.Connection) -> list[str]:
    """Apply pending migrations in order, each in its own transaction.

    Returns the versions applied by this call. Raises MigrationError if a
    migration that was already applied has changed since.
    """
    applied_now: list[str] = []
    with _Autocommit(conn) as c:
        c.execute("select pg_advisory_lock(%s)", (_ADVISORY_LOCK_KEY,))
        try:
            done = applied_migrations(c)
            for path in migration_files():
                version, name = _version_and_name(path)
                digest = checksum(path)
                if version in done:
                    if done[version] is not None and done[version] != digest:
                        raise MigrationError(
                            f"migration {path.name} was changed after it was applied "
                            f"(checksum {done[version][:12]}… in the database, {digest[:12]}… on disk); "
                            "add a new migration instead of editing an applied one"
                        )
                    continue
                sql = path.read_text(encoding="utf-8")
                try:
                    with c.transaction():
                        c.execute(sql)
                        c.execute(
                            "insert into supabase_migrations.schema_migrations"
                            " (version, name, statements, checksum) values (%s, %s, %s, %s)",
                            (version, name, [sql], digest),
                        )
                except psycopg.Error as exc:
                    first = (
                        str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    )
                    raise MigrationError(f"migration {path.name} failed: {first}") from exc
                applied_now.append(version)
        finally:
            c.execute("select pg_advisory_unlock(%s)", (_ADVISORY_LOCK_KEY,))
    return applied_now


MIGRATOR = "postgres"


def migrator_conninfo(conn: psycopg.Connection) -> str:
    """The same database as `conn`, as the role that applies migrations on Supabase
    (`postgres`, no superuser)."""
    params = conn.info.get_parameters()
    params["user"] = MIGRATOR
    params.pop("password", None)
    return psycopg.conninfo.make_conninfo(**params)


def prepare_database(conn: psycopg.Connection) -> list[str]:
    """Bootstrap the Supabase-owned objects on `conn` (a superuser connection), then
    apply pending migrations as `postgres`, which is not a superuser, as on Supabase."""
    apply_bootstrap(conn)
    with psycopg.connect(migrator_conninfo(conn), autocommit=True) as migrator:
        return apply_migrations(migrator)


def export_migrations(dest: Path) -> list[Path]:
    """Write the migrations as `dest/supabase/migrations/<version>_<name>.sql`
    (the Supabase CLI layout). Identical existing files are left alone; a
    different existing file is an error."""
    target_dir = Path(dest) / "supabase" / "migrations"
    sources = migration_files()
    for src in sources:
        target = target_dir / src.name
        if target.exists() and target.read_bytes() != src.read_bytes():
            raise MigrationError(
                f"{target} already exists with different contents; "
                "move it away or export to another directory"
            )
    target_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for src in sources:
        target = target_dir / src.name
        if not target.exists():
            target.write_bytes(src.read_bytes())
        written.append(target)
    return written
