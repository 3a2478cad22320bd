"""`/realtime/v1/websocket`: the Supabase Realtime subset supabase-py 2.34 needs.

Phoenix v1 JSON-object framing; `postgres_changes` with per-subscriber RLS
(the current row is checked with `exists(pk)` under the subscriber's role and
claims, exactly like Realtime's `apply_rls`), column privileges, eq/neq/lt/lte/
gt/gte/in filters, token updates and expiry; simple broadcast and presence.
Changes come from `change_feed` (triggers + NOTIFY).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
import uuid
import zlib
from dataclasses import dataclass, field
from typing import Any

import psycopg
from aiohttp import WSMsgType, web
from psycopg import sql

from opstui.backend.change_feed import (
    Catalog,
    Change,
    ChangeListener,
    Filter,
    FilterError,
    TableInfo,
    install_change_capture,
)
from opstui.backend.gateway import GatewayContext, check_api_key, transaction_as
from opstui.backend.tokens import TokenError

__all__ = ["setup", "install_change_capture"]

log = logging.getLogger(__name__)

MAX_MSG_SIZE = 1024 * 1024
MAX_OUTBOX = 10_000  # frames queued for one socket before it is dropped as too slow
EVENTS = frozenset({"*", "INSERT", "UPDATE", "DELETE"})
# Claims that identify a token or session rather than the principal: ignored when
# grouping subscribers, so each distinct user costs one RLS check per change.
_VOLATILE_CLAIMS = frozenset({"iat", "exp", "nbf", "jti", "session_id", "amr"})


def _j(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), default=str)


@dataclass(frozen=True)
class Binding:
    id: int
    event: str
    schema: str
    table: str | None  # None or "*": every published table of the schema
    filter_text: str | None
    filter: Filter | None
    select: tuple[str, ...] | None

    def echo(self) -> dict[str, Any]:
        out: dict[str, Any] = {"event": self.event, "schema": self.schema}
        if self.table is not None:
            out["table"] = self.table
        if self.filter_text is not None:
            out["filter"] = self.filter_text
        if self.select is not None:
            out["select"] = list(self.select)
        out["id"] = self.id
        return out

    def covers(self, change: Change) -> bool:
        return (
            self.schema == change.schema
            and self.table in (None, "*", change.table)
            and self.event in ("*", change.type)
        )


def binding_id(params: dict[str, Any]) -> int:
    """A stable, positive, non-zero 31-bit id for a binding (Realtime uses phash2)."""
    key = _j({k: params.get(k) for k in ("event", "schema", "table", "filter", "select")})
    return (zlib.crc32(key.encode()) & 0x7FFFFFFF) or 1


@dataclass(eq=False)
class Channel:
    session: Session
    topic: str
    join_ref: str | None
    claims: dict[str, Any]
    bindings: list[Binding] = field(default_factory=list)
    broadcast_self: bool = False
    broadcast_ack: bool = False
    presence_key: str = ""
    expiry: asyncio.TimerHandle | None = None
    _group_key: str | None = None

    @property
    def subtopic(self) -> str:
        return self.topic.removeprefix("realtime:")

    @property
    def role(self) -> str:
        return str(self.claims.get("role", "anon"))

    @property
    def group_key(self) -> str:
        if self._group_key is None:
            self._group_key = _j(
                sorted((k, v) for k, v in self.claims.items() if k not in _VOLATILE_CLAIMS)
            )
        return self._group_key

    def set_claims(self, claims: dict[str, Any]) -> None:
        self.claims = claims
        self._group_key = None


class Session:
    """One WebSocket: its channels and an ordered outbox drained by a writer task."""

    def __init__(self, ws: web.WebSocketResponse, api_token: str) -> None:
        self.ws = ws
        self.api_token = api_token
        self.channels: dict[str, Channel] = {}
        self._outbox: asyncio.Queue[str | None] = asyncio.Queue()
        self._writer = asyncio.create_task(self._write())

    def send(self, frame: dict[str, Any] | str) -> None:
        if self._outbox.qsize() >= MAX_OUTBOX:
            log.warning("realtime: dropping a socket that reads too slowly")
            self._outbox = asyncio.Queue()
            asyncio.ensure_future(self.ws.close(code=1008, message=b"too slow"))
            return
        self._outbox.put_nowait(frame if isinstance(frame, str) else _j(frame))

    async def _write(self) -> None:
        try:
            while (text := await self._outbox.get()) is not None:
                await self.ws.send_str(text)
        except (ConnectionError, RuntimeError) as exc:
            log.debug("realtime: socket write failed: %s", exc)

    async def close(self) -> None:
        self._outbox.put_nowait(None)
        try:
            await asyncio.wait_for(self._writer, 1.0)
        except (TimeoutError, asyncio.CancelledError):
            self._writer.cancel()


def reply(topic: str, ref: Any, join_ref: Any, status: str, response: dict) -> dict[str, Any]:
    return {
        "topic": topic,
        "event": "phx_reply",
        "ref": ref,
        "join_ref": join_ref,
        "payload": {"status": status, "response": response},
    }


def push(topic: str, event: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"topic": topic, "event": event, "ref": None, "payload": payload}


class RealtimeServer:
    def __init__(self, ctx: GatewayContext) -> None:
        self.ctx = ctx
        self.catalog = Catalog(ctx.extras["admin_pool"])
        self.sessions: set[Session] = set()
        # (schema, table-or-"*") -> channels with postgres_changes bindings there
        self.index: dict[tuple[str, str], set[Channel]] = {}
        self.presence: dict[str, dict[Channel, dict[str, Any]]] = {}
        self.listener = ChangeListener(
            ctx.admin_conninfo, self._fetch_queued, self._enqueue, self._on_gap
        )
        self._pending: asyncio.Queue[asyncio.Task] = asyncio.Queue(maxsize=256)
        self._emitter: asyncio.Task | None = None
        size = getattr(ctx.pool, "max_size", 10)
        self._db_slots = asyncio.Semaphore(max(1, min(8, size - 2)))

    # -- lifecycle --------------------------------------------------------------------------

    async def startup(self, app: web.Application) -> None:
        self._emitter = asyncio.create_task(self._emit_loop(), name="opstui-realtime-emitter")
        self.listener.start()
        try:
            await asyncio.wait_for(self.listener.ready.wait(), 10)
        except TimeoutError:
            log.warning("realtime: change listener not ready yet; joins will be refused meanwhile")

    async def shutdown(self, app: web.Application) -> None:
        for session in list(self.sessions):
            await session.ws.close(code=1001, message=b"server shutting down")

    async def cleanup(self, app: web.Application) -> None:
        await self.listener.stop()
        if self._emitter is not None:
            self._emitter.cancel()
            try:
                await self._emitter
            except asyncio.CancelledError:
                pass
        while not self._pending.empty():
            self._pending.get_nowait().cancel()

    # -- the socket -------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        check_api_key(request)  # raises ApiError: the upgrade is refused with JSON
        vsn = request.query.get("vsn", "1.0.0")
        if vsn != "1.0.0":
            raise web.HTTPBadRequest(
                text=_j({"message": f"unsupported vsn {vsn}; only 1.0.0"}),
                content_type="application/json",
            )
        # No permessage-deflate (Phoenix's default too): it costs CPU on both ends.
        ws = web.WebSocketResponse(
            max_msg_size=MAX_MSG_SIZE, heartbeat=30.0, autoping=True, compress=False
        )
        await ws.prepare(request)
        api_token = request.headers.get("apikey") or request.query.get("apikey") or ""
        session = Session(ws, api_token)
        self.sessions.add(session)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    try:
                        await self._on_text(session, msg.data)
                    except Exception:  # noqa: BLE001 - a frame must never kill the socket
                        log.exception("realtime: error handling a frame")
                elif msg.type == WSMsgType.ERROR:
                    log.debug("realtime: socket error %s", ws.exception())
                    break
        finally:
            self.sessions.discard(session)
            for channel in list(session.channels.values()):
                self._drop(channel)
            await session.close()
        return ws

    async def _on_text(self, session: Session, text: str) -> None:
        try:
            frame = json.loads(text)
        except ValueError:
            log.debug("realtime: ignoring a frame that is not JSON")
            return
        if not isinstance(frame, dict):
            log.debug("realtime: ignoring a frame that is not an object")
            return
        topic, event, ref = frame.get("topic"), frame.get("event"), frame.get("ref")
        join_ref = frame.get("join_ref")
        payload = frame.get("payload")
        if ref is not None and not isinstance(ref, str | int):
            ref = None
        if not isinstance(topic, str) or not isinstance(event, str):
            if ref is not None:
                session.send(
                    reply(topic if isinstance(topic, str) else "phoenix", ref, join_ref, "error",
                          {"reason": "a frame needs a topic and an event"})
                )  # fmt: skip
            return
        if not isinstance(payload, dict):
            payload = {}
        if topic == "phoenix":
            if event == "heartbeat":
                session.send(reply("phoenix", ref, None, "ok", {}))
            elif ref is not None:
                session.send(reply(topic, ref, join_ref, "error", {"reason": "unknown event"}))
            return
        if event == "phx_join":
            await self._join(session, topic, ref, join_ref, payload)
            return
        channel = session.channels.get(topic)
        if channel is None:
            if ref is not None and event != "access_token":
                session.send(reply(topic, ref, join_ref, "error", {"reason": "unmatched topic"}))
            return
        if event == "phx_leave":
            self._drop(channel)
            session.send(reply(topic, ref, join_ref, "ok", {}))
            session.send({**push(topic, "phx_close", {}), "ref": channel.join_ref,
                          "join_ref": channel.join_ref})  # fmt: skip
        elif event == "access_token":
            self._update_token(channel, payload.get("access_token"))
        elif event == "broadcast":
            self._broadcast(channel, ref, join_ref, payload)
        elif event == "presence":
            self._presence(channel, ref, join_ref, payload)
        elif ref is not None:
            session.send(reply(topic, ref, join_ref, "error", {"reason": "unknown event"}))

    # -- join, leave, tokens ----------------------------------------------------------------

    def _verify(self, token: Any) -> dict[str, Any]:
        """Verify a token; exp is checked strictly here (a joined channel closes at exp)."""
        if not isinstance(token, str) or not token:
            raise TokenError("Invalid token")
        try:
            claims = self.ctx.signer.verify(token)
        except TokenError as exc:
            if exc.expired:
                raise
            raise TokenError("Invalid token") from None
        exp = claims.get("exp")
        if isinstance(exp, int | float) and exp <= time.time():
            raise TokenError(
                f"Token has expired {int(time.time() - exp)} seconds ago", expired=True
            )
        return claims

    @staticmethod
    def _token_message(exc: TokenError) -> str:
        msg = str(exc)
        return "Token has expired 0 seconds ago" if msg == "JWT expired" else msg

    async def _join(
        self, session: Session, topic: str, ref: Any, join_ref: Any, payload: dict[str, Any]
    ) -> None:
        if not topic.startswith("realtime:") or topic == "realtime:":
            session.send(reply(topic, ref, join_ref, "error", {"reason": "unmatched topic"}))
            return
        config = payload.get("config") if isinstance(payload.get("config"), dict) else {}
        raw_bindings = config.get("postgres_changes") or []
        if not isinstance(raw_bindings, list) or not all(
            isinstance(b, dict) and b.get("event") in EVENTS for b in raw_bindings
        ):
            session.send(reply(topic, ref, join_ref, "error",
                               {"reason": "malformed postgres_changes bindings"}))  # fmt: skip
            return
        try:
            claims = self._verify(payload.get("access_token") or session.api_token)
        except TokenError as exc:
            session.send(reply(topic, ref, join_ref, "error", {"reason": self._token_message(exc)}))
            return
        if raw_bindings and not self.listener.ready.is_set():
            session.send(reply(topic, ref, join_ref, "error",
                               {"reason": "Realtime is reconnecting to the database"}))  # fmt: skip
            return
        broadcast = config.get("broadcast") if isinstance(config.get("broadcast"), dict) else {}
        presence = config.get("presence") if isinstance(config.get("presence"), dict) else {}
        channel = Channel(
            session=session,
            topic=topic,
            join_ref=join_ref if join_ref is not None else ref,
            claims=claims,
            broadcast_self=bool(broadcast.get("self")),
            broadcast_ack=bool(broadcast.get("ack")),
            presence_key=str(presence.get("key") or "") or str(uuid.uuid4()),
        )
        bindings: list[Binding] = []
        for raw in raw_bindings:
            select = raw.get("select")
            bindings.append(
                Binding(
                    id=binding_id(raw),
                    event=raw["event"],
                    schema=str(raw.get("schema") or "public"),
                    table=raw.get("table"),
                    filter_text=raw.get("filter"),
                    filter=None,
                    select=tuple(select) if isinstance(select, list) else None,
                )
            )
        # Validate and register before replying: once the client sees SUBSCRIBED,
        # changes committed from then on are delivered.
        problem = await self._validate(bindings) if bindings else None
        if problem is None:
            channel.bindings = [
                dataclasses.replace(b, filter=Filter.parse(b.filter_text)) if b.filter_text else b
                for b in bindings
            ]
        if session.ws.closed:
            return
        if old := session.channels.get(topic):  # a rejoin replaces the previous join
            self._drop(old)
        session.channels[topic] = channel
        for b in channel.bindings:
            self.index.setdefault((b.schema, b.table or "*"), set()).add(channel)
        self._arm_expiry(channel)
        session.send(reply(topic, ref, join_ref, "ok",
                           {"postgres_changes": [b.echo() for b in bindings]}))  # fmt: skip
        if problem is not None:
            log.info("realtime: %s refused: %s", topic, problem[1])
            session.send(push(topic, "system", {
                "channel": channel.subtopic, "extension": "postgres_changes",
                "status": "error", "message": problem[0]}))  # fmt: skip
        elif bindings:
            session.send(push(topic, "system", {
                "channel": channel.subtopic, "extension": "postgres_changes",
                "status": "ok", "message": "Subscribed to PostgreSQL"}))  # fmt: skip
        if presence.get("enabled"):
            session.send(push(topic, "presence_state", self._presence_state(topic)))

    async def _validate(self, bindings: list[Binding]) -> tuple[str, str] | None:
        """None if every binding can be served, else (client message, log detail)."""
        published = await self.catalog.published()
        for b in bindings:
            message = (
                "Unable to subscribe to changes with given parameters. Please check Realtime is"
                " enabled for the given connect parameters: [schema: {}, table: {}, filters: {}]"
            ).format(b.schema, b.table or "*", f"[{b.filter_text}]" if b.filter_text else "[]")
            if b.table in (None, "*"):
                if not any(s == b.schema for s, _ in published):
                    return message, f"no published table in schema {b.schema}"
                if b.filter_text:
                    return message, "filters need a table"
                continue
            if (b.schema, b.table) not in published:
                return message, f"{b.schema}.{b.table} is not in the publication"
            if b.filter_text:
                try:
                    flt = Filter.parse(b.filter_text)
                except FilterError as exc:
                    return message, str(exc)
                info = await self.catalog.table(b.schema, b.table)
                if info is None or flt.column not in info.columns:
                    return message, f"unknown filter column {flt.column!r}"
        return None

    def _arm_expiry(self, channel: Channel) -> None:
        if channel.expiry is not None:
            channel.expiry.cancel()
            channel.expiry = None
        exp = channel.claims.get("exp")
        if isinstance(exp, int | float):
            delay = max(0.0, exp - time.time())
            channel.expiry = asyncio.get_running_loop().call_later(
                delay, self._close_for_token, channel, "Token has expired 0 seconds ago"
            )

    def _update_token(self, channel: Channel, token: Any) -> None:
        try:
            channel.set_claims(self._verify(token))
        except TokenError as exc:
            self._close_for_token(channel, self._token_message(exc))
            return
        self._arm_expiry(channel)

    def _close_for_token(self, channel: Channel, message: str) -> None:
        session = channel.session
        if session.channels.get(channel.topic) is not channel:
            return
        self._drop(channel)
        session.send(push(channel.topic, "system", {
            "channel": channel.subtopic, "extension": "system",
            "status": "error", "message": message}))  # fmt: skip
        session.send({**push(channel.topic, "phx_close", {}), "ref": channel.join_ref,
                      "join_ref": channel.join_ref})  # fmt: skip

    def _drop(self, channel: Channel) -> None:
        """Forget a channel: no more deliveries, presence leave, timers off."""
        session = channel.session
        if session.channels.get(channel.topic) is channel:
            del session.channels[channel.topic]
        if channel.expiry is not None:
            channel.expiry.cancel()
            channel.expiry = None
        for b in channel.bindings:
            subs = self.index.get((b.schema, b.table or "*"))
            if subs is not None:
                subs.discard(channel)
                if not subs:
                    del self.index[(b.schema, b.table or "*")]
        metas = self.presence.get(channel.topic, {})
        if channel in metas:
            self._presence_diff(
                channel, joins={}, leaves={channel.presence_key: metas.pop(channel)}
            )
            if not metas:
                self.presence.pop(channel.topic, None)

    def _on_gap(self) -> None:
        """The change listener lost its connection: changes may be missed. Make clients
        notice (CHANNEL_ERROR, then an automatic rejoin) so they can resync."""
        for session in list(self.sessions):
            for channel in list(session.channels.values()):
                if channel.bindings:
                    self._drop(channel)
                    session.send({**push(channel.topic, "phx_error", {}),
                                  "ref": channel.join_ref, "join_ref": channel.join_ref})  # fmt: skip

    # -- broadcast and presence -------------------------------------------------------------

    def _topic_channels(self, topic: str) -> list[Channel]:
        return [s.channels[topic] for s in self.sessions if topic in s.channels]

    def _broadcast(self, channel: Channel, ref: Any, join_ref: Any, payload: dict) -> None:
        if not isinstance(payload.get("event"), str) or not isinstance(
            payload.get("payload"), dict
        ):
            channel.session.send(reply(channel.topic, ref, join_ref, "error",
                                       {"reason": "broadcast needs an event and an object payload"}))  # fmt: skip
            return
        frame = _j(push(channel.topic, "broadcast", {
            "type": "broadcast", "event": payload["event"], "payload": payload["payload"]}))  # fmt: skip
        for other in self._topic_channels(channel.topic):
            if other is not channel or channel.broadcast_self:
                other.session.send(frame)
        if channel.broadcast_ack and ref is not None:
            channel.session.send(reply(channel.topic, ref, join_ref, "ok", {}))

    def _presence_state(self, topic: str) -> dict[str, Any]:
        state: dict[str, Any] = {}
        for ch, meta in self.presence.get(topic, {}).items():
            state.setdefault(ch.presence_key, {"metas": []})["metas"].append(meta)
        return state

    def _presence_diff(self, channel: Channel, *, joins: dict, leaves: dict) -> None:
        def wrap(d: dict) -> dict:
            return {k: {"metas": [v]} for k, v in d.items()}

        frame = _j(
            push(channel.topic, "presence_diff", {"joins": wrap(joins), "leaves": wrap(leaves)})
        )
        for other in self._topic_channels(channel.topic):
            other.session.send(frame)

    def _presence(self, channel: Channel, ref: Any, join_ref: Any, payload: dict) -> None:
        kind, data = payload.get("event"), payload.get("payload")
        metas = self.presence.setdefault(channel.topic, {})
        previous = metas.pop(channel, None)
        leaves = {channel.presence_key: previous} if previous else {}
        if kind == "track" and isinstance(data, dict):
            meta = {**data, "phx_ref": uuid.uuid4().hex[:20]}
            if previous:
                meta["phx_ref_prev"] = previous["phx_ref"]
            metas[channel] = meta
            self._presence_diff(channel, joins={channel.presence_key: meta}, leaves=leaves)
        elif kind == "untrack":
            if previous:
                self._presence_diff(channel, joins={}, leaves=leaves)
        else:
            if previous:
                metas[channel] = previous
            channel.session.send(reply(channel.topic, ref, join_ref, "error",
                                       {"reason": "presence needs track or untrack"}))  # fmt: skip
            return
        if not metas:
            self.presence.pop(channel.topic, None)
        channel.session.send(reply(channel.topic, ref, join_ref, "ok", {}))

    # -- changes ----------------------------------------------------------------------------

    async def _fetch_queued(self, queued: int) -> dict[str, Any] | None:
        async with self.ctx.extras["admin_pool"].connection() as conn:
            row = await (
                await conn.execute(
                    "delete from opstui_realtime.queue where id = %s returning payload", (queued,)
                )
            ).fetchone()
        return row[0] if row else None

    async def _enqueue(self, change: Change) -> None:
        """Prepare changes concurrently, but emit them strictly in commit order."""
        await self._pending.put(asyncio.create_task(self._prepare(change)))

    async def _emit_loop(self) -> None:
        while True:
            task = await self._pending.get()
            try:
                frames = await task
            except Exception:  # noqa: BLE001 - one bad change must not stop the feed
                log.exception("realtime: failed to fan out a change")
                continue
            for session, text in frames:
                session.send(text)

    async def _prepare(self, change: Change) -> list[tuple[Session, str]]:
        channels = self.index.get((change.schema, change.table), set()) | self.index.get(
            (change.schema, "*"), set()
        )
        if not channels:
            return []
        info = await self.catalog.table(change.schema, change.table)
        if info is None:
            return []
        if set(change.row) - set(info.columns):  # the table changed under our cache
            self.catalog.invalidate()
            info = await self.catalog.table(change.schema, change.table)
            if info is None:
                return []
        matches: list[tuple[Channel, list[Binding]]] = []
        for ch in channels:
            hits = [
                b
                for b in ch.bindings
                if b.covers(change)
                and (
                    b.filter is None
                    or b.filter.matches(change.row, info.columns.get(b.filter.column))
                )
            ]
            if hits:
                matches.append((ch, hits))
        if not matches:
            return []
        groups: dict[str, list[tuple[Channel, list[Binding]]]] = {}
        for ch, hits in matches:
            groups.setdefault(ch.group_key, []).append((ch, hits))
        keys = list(groups)
        verdicts = await asyncio.gather(
            *(self._visible(change, info, groups[k][0][0].claims) for k in keys)
        )
        frames: list[tuple[Session, str]] = []
        cache: dict[Any, str] = {}
        for key, visible in zip(keys, verdicts, strict=True):
            if not visible:
                continue
            for ch, hits in groups[key]:
                if ch.session.channels.get(ch.topic) is not ch:
                    continue  # left while we were checking
                data = await self._data_json(change, info, ch.role, hits, cache)
                if data is None:
                    continue
                ids = sorted({b.id for b in hits})
                frames.append((ch.session,
                               f'{{"topic":{_j(ch.topic)},"event":"postgres_changes","ref":null,'
                               f'"payload":{{"ids":{_j(ids)},"data":{data}}}}}'))  # fmt: skip
        return frames

    async def _visible(self, change: Change, info: TableInfo, claims: dict[str, Any]) -> bool:
        """May this subscriber see the change? Postgres RLS decides, as in apply_rls."""
        role = str(claims.get("role", "anon"))
        if not await self.catalog.selectable_columns(role, info.schema, info.table):
            return False
        target = sql.SQL("{}.{}").format(sql.Identifier(info.schema), sql.Identifier(info.table))
        if change.type == "DELETE":
            # The row is gone: evaluate the table's SELECT policies against the old row.
            predicate = await self.catalog.select_policy(role, info.schema, info.table)
            if predicate is None:
                return True
            query = sql.SQL(
                "select exists(select 1 from jsonb_populate_record(null::{}, %s::jsonb) as {} where {})"
            ).format(target, sql.Identifier(info.table), sql.SQL(predicate))  # type: ignore[arg-type]
            params: tuple[Any, ...] = (_j(change.old_record or {}),)
        else:
            if role == "service_role":
                return True
            if not info.pk:
                return False
            row = change.record or {}
            cond = sql.SQL(" and ").join(
                sql.SQL("{} = %s::{}").format(sql.Identifier(col), sql.SQL(info.sql_types[col]))  # type: ignore[arg-type]
                for col in info.pk
            )
            query = sql.SQL("select exists(select 1 from {} where {})").format(target, cond)
            params = tuple(_text(row.get(col)) for col in info.pk)
        async with self._db_slots:
            try:
                async with transaction_as(self.ctx, claims, path="/realtime/v1") as conn:
                    found = await (await conn.execute(query, params)).fetchone()
            except psycopg.Error as exc:
                log.debug("realtime: visibility check failed for role %s: %s", role, exc)
                return False
        return bool(found and found[0])

    async def _data_json(
        self, change: Change, info: TableInfo, role: str, hits: list[Binding], cache: dict
    ) -> str | None:
        allowed = await self.catalog.selectable_columns(role, info.schema, info.table)
        select = None
        if all(b.select is not None for b in hits):
            select = frozenset(c for b in hits for c in (b.select or ()))
        extra = (
            frozenset(b.filter.column for b in hits if b.filter)
            if change.type == "DELETE"
            else None
        )
        key = (allowed, select, extra)
        if key in cache:
            return cache[key]
        cols = [c for c in info.columns if c in allowed and (select is None or c in select)]
        data: dict[str, Any] = {
            "schema": change.schema,
            "table": change.table,
            "commit_timestamp": change.commit_timestamp,
            "type": change.type,
            "columns": [{"name": c, "type": info.columns[c]} for c in cols],
            "errors": None,
        }
        if change.type != "DELETE":
            record = change.record or {}
            data["record"] = {c: record.get(c) for c in cols}
        if change.type != "INSERT":
            old = change.old_record or {}
            # Like Realtime: the primary key (plus, for DELETE, the filter column) unless
            # the table has REPLICA IDENTITY FULL, when UPDATE carries the whole old row.
            keep = set(info.pk) | set(extra or ())
            if change.type == "UPDATE" and info.replica_full:
                keep = set(cols)
            data["old_record"] = {c: old.get(c) for c in info.columns if c in keep and c in allowed}
        text = _j(data)
        cache[key] = text
        return text


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return _j(value)
    return str(value)


REALTIME: web.AppKey[RealtimeServer] = web.AppKey("opstui_realtime", RealtimeServer)


def setup(app: web.Application, ctx: GatewayContext) -> None:
    server = RealtimeServer(ctx)
    app[REALTIME] = server
    app.router.add_get("/realtime/v1/websocket", server.handle)
    app.on_startup.append(server.startup)
    app.on_shutdown.append(server.shutdown)
    app.on_cleanup.append(server.cleanup)
