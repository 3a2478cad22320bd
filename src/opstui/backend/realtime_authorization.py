"""Realtime Authorization for private channels, as Supabase Realtime does it.

A channel joined with `config.private: true` is authorized by the RLS policies on
`realtime.messages`, evaluated as the caller's role with their claims and with
`realtime.topic()` returning the channel's topic (Realtime's `set_config`s):

- read (at join, and again on a token update): probe rows for each extension are
  inserted with the gateway's own rights, then selected as the caller; the rows
  the caller can see are the extensions it may read. Everything is rolled back.
- write (on the first broadcast or presence track): the caller inserts a row for
  the extension itself; an RLS refusal means no write. Rolled back too.

Public channels are not checked (Supabase allows them unless a project is
private-only).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import errors

log = logging.getLogger(__name__)

BROADCAST = "broadcast"
PRESENCE = "presence"
# A policy is the project's SQL: bound how long one check may run.
_STATEMENT_TIMEOUT = "5s"


def read_refused(subtopic: str) -> str:
    return f"You do not have permissions to read from this Channel topic: {subtopic}"


def read_revoked(subtopic: str) -> str:
    return f"You no longer have permission to read from this Channel topic: {subtopic}"


@dataclass
class ChannelPolicies:
    """What the caller may do on one private channel; None means not checked yet."""

    read: dict[str, bool] = field(default_factory=dict)
    write: dict[str, bool] = field(default_factory=dict)

    def can_read(self, extension: str) -> bool:
        return bool(self.read.get(extension))


class ChannelAuthorizer:
    """Runs the checks on the gateway's privileged pool (it must insert the probes)."""

    def __init__(self, admin_pool: Any, *, concurrency: int = 2) -> None:
        self._pool = admin_pool
        self._slots = asyncio.Semaphore(concurrency)

    async def read(
        self, claims: dict[str, Any], subtopic: str, extensions: tuple[str, ...]
    ) -> dict[str, bool]:
        """extension -> may read; every extension False if a policy fails."""
        probes = {ext: uuid.uuid4() for ext in extensions}
        try:
            async with self._slots, self._pool.connection() as conn:
                async with conn.transaction(force_rollback=True):
                    await conn.execute(
                        "select set_config('statement_timeout', %s, true)", (_STATEMENT_TIMEOUT,)
                    )
                    for ext, probe in probes.items():
                        await conn.execute(
                            "insert into realtime.messages (id, topic, extension)"
                            " values (%s, %s, %s)",
                            (probe, subtopic, ext),
                        )
                    await _act_as(conn, claims, subtopic)
                    rows = await (
                        await conn.execute(
                            "select id from realtime.messages where id = any(%s)",
                            (list(probes.values()),),
                        )
                    ).fetchall()
        except (psycopg.Error, RoleRefused) as exc:
            log.info("realtime: read policy check failed for %s: %s", subtopic, _first_line(exc))
            return dict.fromkeys(extensions, False)
        seen = {row[0] for row in rows}
        return {ext: probe in seen for ext, probe in probes.items()}

    async def write(self, claims: dict[str, Any], subtopic: str, extension: str) -> bool:
        try:
            async with self._slots, self._pool.connection() as conn:
                async with conn.transaction(force_rollback=True):
                    await conn.execute(
                        "select set_config('statement_timeout', %s, true)", (_STATEMENT_TIMEOUT,)
                    )
                    await _act_as(conn, claims, subtopic)
                    try:
                        async with conn.transaction():  # a savepoint: the refusal is expected
                            await conn.execute(
                                "insert into realtime.messages (topic, extension) values (%s, %s)",
                                (subtopic, extension),
                            )
                    except errors.InsufficientPrivilege:
                        return False
        except (psycopg.Error, RoleRefused) as exc:
            log.info("realtime: write policy check failed for %s: %s", subtopic, _first_line(exc))
            return False
        return True


class RoleRefused(Exception):
    pass


async def _act_as(conn: psycopg.AsyncConnection, claims: dict[str, Any], subtopic: str) -> None:
    """Become the caller for the rest of the transaction, exactly as Realtime does.

    This connection may become any role, so the token's role must be one the API may
    act as (one granted to authenticator), as Realtime's own role is limited to them.
    """
    role = claims.get("role")
    sub = claims.get("sub")
    row = await (
        await conn.execute(
            "select r.rolname is not null and pg_has_role('authenticator', r.oid, 'MEMBER')"
            " from (select 1) as one left join pg_roles r on r.rolname = %s",
            (role,),
        )
    ).fetchone()
    if not (row and row[0]):
        raise RoleRefused(f"role {role!r} is not an API role")
    await conn.execute(
        "select set_config('role', %s, true), set_config('realtime.topic', %s, true),"
        " set_config('request.jwt.claims', %s, true),"
        " set_config('request.jwt.claim.sub', %s, true),"
        " set_config('request.jwt.claim.role', %s, true),"
        " set_config('request.headers', '{}', true)",
        (role, subtopic, json.dumps(claims), sub if isinstance(sub, str) else "", role),
    )


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
