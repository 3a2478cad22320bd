"""The store: the active team's rows, loaded page by page and kept live.

Pure asyncio over supabase-py's AsyncClient (REST + Realtime); no Textual.
The UI subscribes with `store.listen(callback)` and gets small, past-tense
events; it reads rows from the store when it repaints.

Consistency rules (see docs/realtime-reconnects.md):
- subscribe first, then snapshot, then replay the changes that arrived while
  the snapshot loaded; changes arrive in commit order, so this converges;
- after any rejoin (the socket dropped and came back) resync every table,
  because changes made while disconnected are not replayed by the server;
- a watchdog reconnects when the client has given up, and recreates a
  channel the server closed (an expired token makes the server send
  `phx_close`, after which the client drops the channel for good);
- token refreshes reach realtime through supabase-py's own auth listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from opstui.resources import ResourceSpec, by_table

if TYPE_CHECKING:
    from supabase import AsyncClient

log = logging.getLogger(__name__)

FIRST_PAGE_SIZE = 200  # small, so the first paint comes quickly
# After the first page, the rest of the id space is cut into key ranges ("chunks") expected
# to hold CHUNK_ROWS rows each, loaded PAGES_IN_FLIGHT at a time in pages of up to PAGE_SIZE.
CHUNK_ROWS = 4000
PAGE_SIZE = 5000
PAGES_IN_FLIGHT = 4
MAX_CHUNKS = 64  # beyond ~250k rows the chunks grow instead
PARSE_IN_THREAD_BYTES = 1 << 20  # bodies above this are parsed on a worker thread
WATCHDOG_INTERVAL = 1.0
OFFLINE_AFTER = 10.0  # seconds of "reconnecting" before we call it offline
BIG_SNAPSHOT_ROWS = 10_000


def keep_snapshot_out_of_gc(row_count: int) -> None:
    """Move a big, long-lived snapshot out of the cyclic GC's way.

    With 100k deployments loaded, every full collection walked every row: pauses of
    130-225 ms every second or two while the UI was busy (benchmarks/bench_table.py).
    Frozen objects are still freed by reference counting, and rows hold no cycles, so a
    later snapshot that replaces them frees them as usual.
    """
    if row_count >= BIG_SNAPSHOT_ROWS:
        gc.collect(1)  # don't freeze young garbage along with the rows
        gc.freeze()


def _uuid_bounds(after: str, rows_below: int) -> list[str]:
    """Ids cutting the UUID space above `after` into ranges of ~CHUNK_ROWS rows each.

    `rows_below` rows have ids up to `after`; with random UUIDs the density above is the
    same. Not a UUID: no cuts (one range).
    """
    try:
        start = uuid.UUID(after).int
    except ValueError:
        return []
    top = 1 << 128
    below = max(start, 1) / top
    expected = rows_below * (1 - below) / below
    count = max(1, min(MAX_CHUNKS, round(expected / CHUNK_ROWS)))
    step = (top - start) // count
    return [str(uuid.UUID(int=start + step * i)) for i in range(1, count)]


Operation = Literal["insert", "update", "delete", "execute"]


class StoreError(Exception):
    """A one-line, user-facing failure (a refused write, an unreachable server)."""


# -- events (past-tense facts) -----------------------------------------------------------------


@dataclass(frozen=True)
class StoreEvent:
    pass


@dataclass(frozen=True)
class IdentityLoaded(StoreEvent):
    identity: Identity


@dataclass(frozen=True)
class TeamSwitched(StoreEvent):
    team_id: str


@dataclass(frozen=True)
class PageLoaded(StoreEvent):
    table: str
    rows: int
    complete: bool


@dataclass(frozen=True)
class RowChanged(StoreEvent):
    table: str
    kind: Literal["INSERT", "UPDATE", "DELETE"]
    key: str
    row: dict[str, Any] | None


@dataclass(frozen=True)
class ConnectionChanged(StoreEvent):
    status: ConnectionStatus


# -- state ------------------------------------------------------------------------------------


class ConnectionState(StrEnum):
    CONNECTING = "connecting"
    LIVE = "live"
    RECONNECTING = "reconnecting"
    OFFLINE = "offline"


@dataclass(frozen=True)
class ConnectionStatus:
    state: ConnectionState
    since: datetime
    detail: str = ""


@dataclass(frozen=True)
class Identity:
    user_id: str
    email: str
    profile: dict[str, Any]
    tenant: dict[str, Any] | None
    tier: dict[str, Any] | None
    limits: tuple[dict[str, Any], ...]
    teams: tuple[dict[str, Any], ...]
    memberships: dict[str, str]  # team id -> role in that team

    @property
    def my_teams(self) -> list[dict[str, Any]]:
        return [team for team in self.teams if team["id"] in self.memberships]


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.allowed


@dataclass
class TableState:
    spec: ResourceSpec
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    complete: bool = False
    loading: bool = False
    pending: list[dict[str, Any]] = field(default_factory=list)


# -- the store --------------------------------------------------------------------------------


class Store:
    """Rows of the active team, live. Create, `await open()`, `await close()`."""

    LIVE_TABLES = (
        "hosts",
        "repositories",
        "deployments",
        "cicd_providers",
        "cicd_jobs",
        "team_members",
        "permission_matrix",
        "teams",
        "profiles",
        "deployment_cicd_mappings",
        "profile_repository_pins",
        "git_providers",
        "deployment_runs",  # the team's run history; hosts and logs are followed per run
        "cicd_builds",  # the team's builds (the CI/CD view's last build); logs per build
    )

    def __init__(self, client: AsyncClient, *, clock: Callable[[], datetime] | None = None) -> None:
        self.client = client
        self.clock = clock or (lambda: datetime.now(UTC))
        self.identity: Identity | None = None
        self.team_id: str | None = None
        self.tables: dict[str, TableState] = {
            table: TableState(by_table(table)) for table in self.LIVE_TABLES
        }
        self.status = ConnectionStatus(ConnectionState.CONNECTING, self.clock())
        self._listeners: list[Callable[[StoreEvent], None]] = []
        self._channel: Any = None
        self._channel_generation = 0
        self._joined_once = False
        self._watchdog: asyncio.Task | None = None
        self._loads: set[asyncio.Task] = set()
        self._reconnecting = False
        self._closed = False

    # -- listening --------------------------------------------------------------------------

    def listen(self, callback: Callable[[StoreEvent], None]) -> Callable[[], None]:
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback)

    def _emit(self, event: StoreEvent) -> None:
        for callback in list(self._listeners):
            try:
                callback(event)
            except Exception:  # noqa: BLE001 - one bad listener must not break the store
                log.exception("store listener failed on %s", type(event).__name__)

    def _set_status(self, state: ConnectionState, detail: str = "") -> None:
        if self.status.state is state and self.status.detail == detail:
            return
        since = self.status.since if self.status.state is state else self.clock()
        if state is ConnectionState.OFFLINE and self.status.state is ConnectionState.RECONNECTING:
            since = self.status.since  # offline since the connection was first lost
        self.status = ConnectionStatus(state, since, detail)
        self._emit(ConnectionChanged(self.status))

    # -- reading ----------------------------------------------------------------------------

    def rows(self, table: str) -> list[dict[str, Any]]:
        return list(self.tables[table].rows.values())

    def row(self, table: str, key: str) -> dict[str, Any] | None:
        return self.tables[table].rows.get(key)

    def label(self, ref: tuple[str, str], key: Any) -> str | None:
        """What people read for a foreign key (`("profiles", "email")`, an id), if held."""
        table, column = ref
        state = self.tables.get(table)
        row = state.rows.get(str(key)) if state is not None else None
        value = row.get(column) if row is not None else None
        return str(value) if value not in (None, "") else None

    def is_complete(self, table: str) -> bool:
        return self.tables[table].complete

    # -- lifecycle --------------------------------------------------------------------------

    async def open(self, team: str | None = None) -> Identity:
        """Load who we are, pick a team (by id or name, else the default) and go live."""
        identity = await self.load_identity()
        chosen = self._choose_team(identity, team)
        self._watchdog = asyncio.create_task(self._watch(), name="opstui-store-watchdog")
        if chosen:
            await self.switch_team(chosen)
        return identity

    async def close(self) -> None:
        self._closed = True
        if self._watchdog:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        for task in list(self._loads):
            task.cancel()
        await self._drop_channel()

    async def load_identity(self) -> Identity:
        user = await self._user()
        # Independent reads go out together: start-up latency is round trips.
        profile, teams, members = await asyncio.gather(
            self._select_one("profiles", "id", user["id"]),
            self._select_all(self.client.table("teams").select("*").order("name")),
            self._select_all(
                self.client.table("team_members")
                .select("team_id, role")
                .eq("profile_id", user["id"])
            ),
        )
        if profile is None:
            raise StoreError("signed in, but there is no profile for this user; ask an admin")
        tenant = await self._select_one("tenants", "id", profile.get("tenant_id"))
        tier = None
        limits: list[dict[str, Any]] = []
        tier_id = (tenant or {}).get("subscription_tier_id")
        if tier_id:
            tier, limits = await asyncio.gather(
                self._select_one("subscription_tiers", "id", tier_id),
                self._select_all(
                    self.client.table("resource_limits").select("*").eq("tier_id", tier_id)
                ),
            )
        self.identity = Identity(
            user_id=user["id"],
            email=user.get("email") or "",
            profile=profile,
            tenant=tenant,
            tier=tier,
            limits=tuple(limits),
            teams=tuple(teams),
            memberships={m["team_id"]: m["role"] for m in members},
        )
        self._emit(IdentityLoaded(self.identity))
        return self.identity

    def _choose_team(self, identity: Identity, wanted: str | None) -> str | None:
        mine = identity.my_teams
        if wanted:
            for team in mine:
                if wanted in (team["id"], team["name"]) or wanted.lower() == team["name"].lower():
                    return team["id"]
            names = ", ".join(t["name"] for t in mine) or "none"
            raise StoreError(f"no team {wanted!r} among your teams ({names})")
        default = next((t for t in mine if t.get("is_default")), None)
        return (default or (mine[0] if mine else {})).get("id")

    def find_team(self, wanted: str) -> str:
        assert self.identity is not None
        team = self._choose_team(self.identity, wanted)
        assert team is not None
        return team

    async def switch_team(self, team_id: str) -> None:
        """Swap subscriptions and snapshots to another team, cleanly."""
        await self._drop_channel()
        self.team_id = team_id
        gc.unfreeze()  # the old snapshot goes; let the GC see what was frozen with it
        for state in self.tables.values():
            state.rows.clear()
            state.complete = False
            state.pending.clear()
        self._emit(TeamSwitched(team_id))
        await self._subscribe()
        await self.resync()

    async def resync(self) -> None:
        """Reload every table's snapshot (first pages first, then the rest)."""
        tasks = [self._spawn_load(table) for table in self.LIVE_TABLES]
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn_load(self, table: str) -> asyncio.Task:
        task = asyncio.create_task(self._load_table(table), name=f"opstui-load-{table}")
        self._loads.add(task)
        task.add_done_callback(self._loads.discard)
        return task

    # -- snapshots --------------------------------------------------------------------------

    def _scoped(self, spec: ResourceSpec, query: Any) -> Any:
        assert self.identity is not None
        if spec.scope == "team":
            return query.eq("team_id", self.team_id)
        if spec.scope == "tenant":
            return query.eq("tenant_id", self.identity.profile.get("tenant_id"))
        if spec.scope == "profile":
            return query.eq("profile_id", self.identity.user_id)
        return query

    async def _load_table(self, table: str) -> None:
        state = self.tables[table]
        spec = state.spec
        team_at_start = self.team_id
        state.loading = True
        fresh: dict[str, dict[str, Any]] = {}

        def stale() -> bool:
            return self.team_id != team_at_start or self._closed

        try:
            if spec.primary_key != ("id",):
                # Small per-team tables keyed by two columns: one request.
                query = self._scoped(spec, self.client.table(table).select("*"))
                self._keep(spec, fresh, await self._fetch(query))
            else:
                first = await self._fetch(self._page_query(spec, None, None, FIRST_PAGE_SIZE))
                if stale():
                    return  # a team switch started a new load; this one is stale
                self._keep(spec, fresh, first)
                if len(first) == FIRST_PAGE_SIZE:
                    if not state.complete:
                        # Paint the first page at once. A resync (state.complete) keeps
                        # showing the old rows until the new snapshot is whole.
                        state.rows = dict(fresh)
                        self._emit(PageLoaded(table, len(state.rows), complete=False))
                    await self._load_rest(spec, first[-1]["id"], fresh, stale)
            if stale():
                return
            state.rows = fresh
            self._replay_pending(state)
            keep_snapshot_out_of_gc(len(fresh))
            state.complete = True
            self._emit(PageLoaded(table, len(state.rows), complete=True))
        except Exception as exc:  # noqa: BLE001 - reported as state, retried on next resync
            if isinstance(exc, BaseExceptionGroup):
                exc = exc.exceptions[0]
            log.warning("loading %s failed: %s", table, exc)
            self._set_status(ConnectionState.RECONNECTING, f"loading {table} failed: {exc}")
        finally:
            state.loading = False

    async def _load_rest(
        self,
        spec: ResourceSpec,
        after: str,
        fresh: dict[str, dict[str, Any]],
        stale: Callable[[], bool],
    ) -> None:
        """Every row with an id above `after`, in parallel key ranges.

        Keyset pages alone are sequential (each starts where the last ended), and offset
        pages skip or repeat rows when rows come or go meanwhile. Ranges of the key do
        neither: every row that exists throughout the load lies in exactly one range and is
        read once; a row that changes meanwhile may be read in either version, and its
        change is replayed afterwards (`_replay_pending`). Ids are random UUIDs, so equal
        slices of the UUID space hold about equal numbers of rows, and the first page's
        last id tells how many there are: 200 rows below it. Ids of another shape make one
        range, walked page by page. Correct either way; only the balance depends on it.

        A server may cap a response below PAGE_SIZE (Supabase's `max_rows`, 1000 by
        default) without saying so. A page shorter than asked ends its range only if some
        page of this load was longer (the cap is above it); otherwise the walk goes on.
        """
        in_flight = asyncio.Semaphore(PAGES_IN_FLIGHT)
        longest = 0  # the most rows any page of this load returned

        async def load_range(lower: str, upper: str | None) -> None:
            nonlocal longest
            async with in_flight:
                while not stale():
                    rows = await self._fetch(self._page_query(spec, lower, upper, PAGE_SIZE))
                    self._keep(spec, fresh, rows)
                    cut_short = len(rows) == PAGE_SIZE or (rows and len(rows) >= longest)
                    longest = max(longest, len(rows))
                    if not cut_short:
                        return
                    lower = rows[-1]["id"]

        bounds = _uuid_bounds(after, FIRST_PAGE_SIZE)
        async with asyncio.TaskGroup() as ranges:
            for lower, upper in zip([after, *bounds], [*bounds, None], strict=True):
                ranges.create_task(load_range(lower, upper))

    def _page_query(
        self,
        spec: ResourceSpec,
        after: str | None,
        upper: str | None,
        limit: int,
        *,
        columns: str = "*",
    ) -> Any:
        """Rows with `after` < id <= `upper` (each bound optional), by id, at most `limit`."""
        query = self._scoped(spec, self.client.table(spec.table).select(columns))
        if after is not None:
            query = query.gt("id", after)
        if upper is not None:
            query = query.lte("id", upper)
        return query.order("id").limit(limit)

    @staticmethod
    def _keep(spec: ResourceSpec, fresh: dict[str, dict[str, Any]], rows: list) -> None:
        if spec.primary_key == ("id",):
            fresh.update((str(row["id"]), row) for row in rows)  # key_of, 4x faster
        else:
            fresh.update((spec.key_of(row), row) for row in rows)

    async def _fetch(self, query: Any) -> list[dict[str, Any]]:
        """`query.execute().data`, through the client's own session and its retries.

        postgrest parses the body on the event loop; a page of 5,000 rows is ~4 MB of
        JSON, so the body is parsed here instead, where the choice of where is ours.
        """
        from postgrest._async.request_builder import send_with_retry
        from postgrest.exceptions import APIError, APIErrorFromJSON, generate_default_error_message
        from pydantic import ValidationError

        response = await send_with_retry(query.request)
        if not response.is_success:
            try:
                raise APIError(dict(APIErrorFromJSON.model_validate_json(response.content)))
            except ValidationError:
                raise APIError(generate_default_error_message(response)) from None
        body = response.content
        if len(body) > PARSE_IN_THREAD_BYTES:
            rows = await asyncio.to_thread(json.loads, body)
        else:
            rows = json.loads(body)
        return rows if isinstance(rows, list) else []

    def _replay_pending(self, state: TableState) -> None:
        pending, state.pending = state.pending, []
        for data in pending:
            self._apply(state, data, emit=False)

    # -- realtime ---------------------------------------------------------------------------

    async def _subscribe(self) -> None:
        assert self.identity is not None
        self._channel_generation += 1
        generation = self._channel_generation
        self._joined_once = False
        channel = self.client.channel(f"opstui:{self.team_id}:{generation}")
        for table in self.LIVE_TABLES:
            spec = by_table(table)
            value = {
                "team": self.team_id,
                "tenant": self.identity.profile.get("tenant_id"),
                "profile": self.identity.user_id,
            }.get(spec.scope)
            column = spec.scope_column
            channel.on_postgres_changes(
                "*",
                schema="public",
                table=table,
                filter=f"{column}=eq.{value}" if column and value else None,
                callback=self._on_change,
            )
        self._channel = channel

        def on_state(state: Any, error: Exception | None) -> None:
            if generation != self._channel_generation:
                return
            self._on_channel_state(str(getattr(state, "value", state)), error)

        try:
            await channel.subscribe(on_state)
        except Exception as exc:  # noqa: BLE001 - the watchdog retries
            self._set_status(ConnectionState.RECONNECTING, f"realtime: {exc}")

    def _on_channel_state(self, state: str, error: Exception | None) -> None:
        if state == "SUBSCRIBED":
            rejoined = self._joined_once
            self._joined_once = True
            self._set_status(ConnectionState.LIVE)
            if rejoined:
                # Whatever changed while we were away was not sent to us: reload.
                for table in self.LIVE_TABLES:
                    self._spawn_load(table)
        elif state in ("CHANNEL_ERROR", "TIMED_OUT"):
            self._set_status(ConnectionState.RECONNECTING, str(error or state.lower()))
        elif state == "CLOSED" and not self._closed:
            # The server closed the channel (e.g. the token expired): the watchdog
            # notices the channel is gone and recreates it.
            self._set_status(ConnectionState.RECONNECTING, "channel closed by the server")

    async def _drop_channel(self) -> None:
        channel, self._channel = self._channel, None
        self._channel_generation += 1
        if channel is not None:
            with contextlib.suppress(Exception):
                await self.client.remove_channel(channel)

    def _on_change(self, payload: dict[str, Any]) -> None:
        data = payload.get("data", payload)
        table = data.get("table")
        state = self.tables.get(table)
        if state is None:
            return
        if state.loading:
            state.pending.append(data)
            return
        self._apply(state, data, emit=True)

    def _apply(self, state: TableState, data: dict[str, Any], *, emit: bool) -> None:
        kind = data.get("type")
        spec = state.spec
        if kind == "DELETE":
            old = data.get("old_record") or {}
            key = spec.key_of(old)
            if state.rows.pop(key, None) is not None and emit:
                self._emit(RowChanged(spec.table, "DELETE", key, None))
            return
        record = data.get("record") or {}
        if not record:
            return
        if spec.scope == "team" and record.get("team_id") != self.team_id:
            # A row moved to another team: for us it is gone.
            key = spec.key_of(record)
            if state.rows.pop(key, None) is not None and emit:
                self._emit(RowChanged(spec.table, "DELETE", key, None))
            return
        key = spec.key_of(record)
        existed = key in state.rows
        state.rows[key] = record
        if emit:
            self._emit(RowChanged(spec.table, "UPDATE" if existed else "INSERT", key, record))

    async def _watch(self) -> None:
        """Bring realtime back whatever the client did, and keep the status honest."""
        while not self._closed:
            await asyncio.sleep(WATCHDOG_INTERVAL)
            try:
                await self._check_realtime()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                log.debug("watchdog: %s", exc)

    async def _check_realtime(self) -> None:
        realtime = self.client.realtime
        if self.team_id is None:
            return
        if not realtime.is_connected:
            if self.status.state is ConnectionState.LIVE:
                self._set_status(ConnectionState.RECONNECTING, "connection lost")
            elif (
                self.status.state is ConnectionState.RECONNECTING
                and (self.clock() - self.status.since).total_seconds() > OFFLINE_AFTER
            ):
                self._set_status(ConnectionState.OFFLINE, self.status.detail)
            if not self._reconnecting:
                self._reconnecting = True
                try:
                    await asyncio.wait_for(realtime.connect(), timeout=10)
                except Exception as exc:  # noqa: BLE001 - try again next tick
                    log.debug("watchdog reconnect failed: %s", exc)
                finally:
                    self._reconnecting = False
            return
        channel = self._channel
        if channel is None or realtime.channels.get(channel.topic) is not channel:
            # The server closed our channel and the client dropped it: recreate.
            await self._drop_channel()
            await self._subscribe()
            await self.resync()

    # -- permissions ------------------------------------------------------------------------

    def my_permissions(self, resource_type: str) -> dict[str, Any] | None:
        if self.identity is None:
            return None
        for row in self.tables["permission_matrix"].rows.values():
            if (
                row.get("profile_id") == self.identity.user_id
                and row.get("team_id") == self.team_id
                and row.get("resource_type") == resource_type
            ):
                return row
        return None

    def can(
        self, resource_type: str, operation: Operation, row: dict[str, Any] | None = None
    ) -> Decision:
        """May I do `operation` on `row` (or create one) of `resource_type` in the active team?"""
        perms = self.my_permissions(resource_type)
        if perms is None:
            return Decision(False, f"you have no permissions on {resource_type} in this team")
        mine = (
            row is not None
            and self.identity is not None
            and row.get("creator_id") == self.identity.user_id
        )
        if operation == "insert":
            return Decision(bool(perms.get("can_insert")), f"needs insert on {resource_type}")
        if operation == "execute":
            return Decision(bool(perms.get("can_execute")), f"needs execute on {resource_type}")
        if perms.get(f"can_{operation}"):
            return Decision(True)
        if mine and perms.get(f"can_{operation}_own"):
            return Decision(True)
        if perms.get(f"can_{operation}_own"):
            return Decision(
                False,
                f"needs {operation} on {resource_type} (you may only {operation} rows you created)",
            )
        return Decision(False, f"needs {operation} on {resource_type}")

    # -- writes -----------------------------------------------------------------------------

    async def insert(self, table: str, values: dict[str, Any]) -> dict[str, Any]:
        assert self.identity is not None
        spec = by_table(table)
        row = dict(values)
        if spec.scope == "team":
            row.setdefault("team_id", self.team_id)
            row.setdefault("creator_id", self.identity.user_id)
        result = await self._write(self.client.table(table).insert(row))
        return result[0] if result else row

    async def update(
        self, table: str, row: dict[str, Any], changes: dict[str, Any]
    ) -> dict[str, Any]:
        result = await self._write_row(table, row, "update", changes)
        return result[0]

    async def delete(self, table: str, row: dict[str, Any]) -> None:
        await self._write_row(table, row, "delete")

    async def _write_row(
        self, table: str, row: dict[str, Any], verb: str, changes: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Update or delete one row by primary key; zero rows affected is an error.

        RLS hides rows silently, so "nothing changed" is the only sign of a refusal
        (or of a row someone else already deleted).
        """
        spec = by_table(table)
        builder = self.client.table(table)
        query = builder.update(changes) if verb == "update" else builder.delete()
        for column in spec.primary_key:
            query = query.eq(column, row[column])
        result = await self._write(query)
        if not result:
            raise StoreError(
                f"{spec.title.lower()} {row.get(spec.label_key)!r} was not {verb}d: "
                f"it is gone or you may not {'change' if verb == 'update' else verb} it"
            )
        return result

    async def _write(self, query: Any) -> list[dict[str, Any]]:
        from postgrest.exceptions import APIError

        try:
            return (await query.execute()).data or []
        except APIError as exc:
            message = exc.message or "the server refused the change"
            raise StoreError(message + (f" ({exc.hint})" if exc.hint else "")) from None
        except OSError as exc:
            raise StoreError(f"cannot reach the server: {exc}") from None

    # -- helpers ----------------------------------------------------------------------------

    async def _user(self) -> dict[str, Any]:
        session = await self.client.auth.get_session()
        if session is None:
            raise StoreError("not signed in")
        return {"id": session.user.id, "email": session.user.email}

    async def _select_one(self, table: str, column: str, value: Any) -> dict[str, Any] | None:
        if value is None:
            return None
        rows = await self._select_all(
            self.client.table(table).select("*").eq(column, value).limit(1)
        )
        return rows[0] if rows else None

    async def _select_all(self, query: Any) -> list[dict[str, Any]]:
        from postgrest.exceptions import APIError

        try:
            return (await query.execute()).data or []
        except APIError as exc:
            raise StoreError(exc.message or "the server refused the query") from None
