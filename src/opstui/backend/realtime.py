"""`/realtime/v1/websocket`: the Supabase Realtime subset supabase-py and supabase-js need.

- framing: Phoenix vsn 1.0.0 (JSON objects) and 2.0.0 (arrays, binary broadcasts),
  in `realtime_protocol`;
- `postgres_changes` with per-subscriber RLS, column privileges and filters, in
  `realtime_postgres` (changes come from `change_feed`: triggers + NOTIFY);
- broadcast and presence, public or private; private channels are authorized by
  the RLS policies on `realtime.messages` (`realtime_authorization`);
- token updates and expiry, a cap on channels per socket, and a deadline for a
  socket's first join.

This module is the socket loop and the channel life cycle that ties them together.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from aiohttp import WSMsgType, web

from opstui.backend.change_feed import Catalog, Change, ChangeListener, install_change_capture
from opstui.backend.gateway import GatewayContext, check_api_key
from opstui.backend.realtime_authorization import (
    BROADCAST,
    PRESENCE,
    ChannelAuthorizer,
    ChannelPolicies,
    read_refused,
    read_revoked,
)
from opstui.backend.realtime_postgres import (
    JoinPayloadError,
    PostgresChanges,
    binding_id,
    parse_bindings,
)
from opstui.backend.realtime_protocol import (
    SERIALIZERS,
    Frame,
    IncompleteFrame,
    ProtocolError,
    UserBroadcast,
    dumps,
    push,
    reply,
)
from opstui.backend.realtime_session import Channel, Session
from opstui.backend.tokens import TokenError

__all__ = ["REALTIME", "binding_id", "install_change_capture", "setup"]

log = logging.getLogger(__name__)

MAX_MSG_SIZE = 1024 * 1024
MAX_CHANNELS_PER_SOCKET = 100  # Supabase's default max_channels_per_client
JOIN_TIMEOUT = 10.0  # seconds a socket may stay open without joining a channel
TOO_MANY_CHANNELS = "ChannelRateLimitReached: Too many channels"


class RealtimeServer:
    def __init__(self, ctx: GatewayContext) -> None:
        self.ctx = ctx
        admin_pool = ctx.extras["admin_pool"]
        self.catalog = Catalog(admin_pool)
        self.changes = PostgresChanges(ctx, self.catalog)
        self.authorizer = ChannelAuthorizer(admin_pool)
        self.sessions: set[Session] = set()
        # (private, topic) -> the channels that broadcast and presence reach
        self.rooms: dict[tuple[bool, str], set[Channel]] = {}
        self.presence: dict[tuple[bool, str], dict[Channel, dict[str, Any]]] = {}
        self.max_channels = int(ctx.extras.get("realtime_max_channels", MAX_CHANNELS_PER_SOCKET))
        self.join_timeout = float(ctx.extras.get("realtime_join_timeout", JOIN_TIMEOUT))
        self.listener = ChangeListener(
            ctx.admin_conninfo, self._fetch_queued, self._enqueue, self._on_gap
        )
        self._pending: asyncio.Queue[asyncio.Task] = asyncio.Queue(maxsize=256)
        self._emitter: asyncio.Task | None = None

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
        serializer = SERIALIZERS.get(vsn)
        if serializer is None:
            raise web.HTTPBadRequest(
                text=dumps({"message": f"unsupported vsn {vsn!r}; use 1.0.0 or 2.0.0"}),
                content_type="application/json",
            )
        # No permessage-deflate (Phoenix's default too): it costs CPU on both ends.
        ws = web.WebSocketResponse(
            max_msg_size=MAX_MSG_SIZE, heartbeat=30.0, autoping=True, compress=False
        )
        await ws.prepare(request)
        api_token = request.headers.get("apikey") or request.query.get("apikey") or ""
        session = Session(ws, api_token, serializer)
        self.sessions.add(session)
        deadline = asyncio.get_running_loop().call_later(
            self.join_timeout, self._join_deadline_passed, session
        )
        try:
            async for msg in ws:
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    try:
                        await self._on_data(session, msg.data)
                    except Exception:  # noqa: BLE001 - a frame must never kill the socket
                        log.exception("realtime: error handling a frame")
                    if session.channels and not deadline.cancelled():
                        deadline.cancel()
                elif msg.type == WSMsgType.ERROR:
                    log.debug("realtime: socket error %s", ws.exception())
                    break
        finally:
            deadline.cancel()
            self.sessions.discard(session)
            for channel in list(session.channels.values()):
                self._drop(channel)
            await session.close()
        return ws

    def _join_deadline_passed(self, session: Session) -> None:
        if not session.channels and not session.ws.closed:
            log.info(
                "realtime: closing a socket that joined no channel in %.0fs", self.join_timeout
            )
            asyncio.ensure_future(session.ws.close(code=1008, message=b"no channel joined in time"))

    async def _on_data(self, session: Session, data: str | bytes) -> None:
        try:
            frame = session.serializer.decode(data)
        except IncompleteFrame as exc:
            if exc.ref is not None:
                session.send(reply(exc.topic, exc.ref, exc.join_ref, "error", {"reason": str(exc)}))
            return
        except ProtocolError as exc:
            log.debug("realtime: ignoring a frame: %s", exc)
            return
        topic, event, ref, join_ref, payload = (
            frame.topic, frame.event, frame.ref, frame.join_ref, frame.payload)  # fmt: skip
        if topic == "phoenix":
            if event == "heartbeat":
                session.send(reply("phoenix", ref, None, "ok", {}))
            elif ref is not None:
                session.send(reply(topic, ref, join_ref, "error", {"reason": "unknown event"}))
            return
        if event == "phx_join":
            await self._join(session, frame)
            return
        channel = session.channels.get(topic)
        if channel is None:
            if ref is not None and event != "access_token":
                session.send(reply(topic, ref, join_ref, "error", {"reason": "unmatched topic"}))
            return
        if event == "phx_leave":
            self._drop(channel)
            session.send(reply(topic, ref, join_ref, "ok", {}))
            session.send(Frame(topic, "phx_close", {}, channel.join_ref, channel.join_ref))
        elif event == "access_token":
            await self._update_token(channel, payload.get("access_token"))
        elif event == "broadcast":
            await self._broadcast(channel, frame)
        elif event == "presence":
            await self._presence(channel, ref, join_ref, payload)
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
        if not isinstance(claims.get("role", "anon"), str):
            raise TokenError("Fields `role` and `exp` are required in JWT")
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

    async def _join(self, session: Session, frame: Frame) -> None:
        topic, ref, payload = frame.topic, frame.ref, frame.payload
        join_ref = frame.join_ref if frame.join_ref is not None else ref

        def refuse(reason: str) -> None:
            session.send(reply(topic, ref, frame.join_ref, "error", {"reason": reason}))

        if not topic.startswith("realtime:") or topic == "realtime:":
            return refuse("unmatched topic")
        if topic not in session.channels and len(session.channels) >= self.max_channels:
            return refuse(TOO_MANY_CHANNELS)
        try:
            options = _join_options(payload)
            bindings = parse_bindings(options["config"].get("postgres_changes"))
        except JoinPayloadError as exc:
            return refuse(str(exc))
        token = payload.get("access_token") or session.api_token
        try:
            claims = self._verify(token)
        except TokenError as exc:
            return refuse(self._token_message(exc))
        if bindings and not self.listener.ready.is_set():
            return refuse("Realtime is reconnecting to the database")
        channel = Channel(
            session=session,
            topic=topic,
            join_ref=join_ref,
            claims=claims,
            access_token=token,
            private=options["private"],
            broadcast_self=options["broadcast_self"],
            broadcast_ack=options["broadcast_ack"],
            presence_enabled=options["presence_enabled"],
            presence_key=options["presence_key"] or str(uuid.uuid4()),
        )
        if channel.private:
            extensions = (BROADCAST, PRESENCE) if channel.presence_enabled else (BROADCAST,)
            read = await self.authorizer.read(claims, channel.subtopic, extensions)
            if not any(read.values()):
                log.info("realtime: %s refused: no read policy matched", topic)
                return refuse(f"Unauthorized: {read_refused(channel.subtopic)}")
            channel.policies = ChannelPolicies(read=read)
        # Check and register before replying: once the client sees SUBSCRIBED,
        # changes committed from then on are delivered.
        problem = None
        if bindings:
            checked, problem = await self.changes.check(bindings)
            if problem is None:
                channel.bindings = checked
        if session.ws.closed:
            return None
        if old := session.channels.get(topic):  # a rejoin replaces the previous join
            self._drop(old)
        session.channels[topic] = channel
        self.changes.add(channel)
        self.rooms.setdefault(channel.room, set()).add(channel)
        self._arm_expiry(channel)
        session.send(reply(topic, ref, frame.join_ref, "ok",
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
        if channel.presence_enabled and channel.can_read(PRESENCE):
            session.send(push(topic, "presence_state", self._presence_state(channel.room)))
        return None

    def _arm_expiry(self, channel: Channel) -> None:
        if channel.expiry is not None:
            channel.expiry.cancel()
            channel.expiry = None
        exp = channel.claims.get("exp")
        if isinstance(exp, int | float):
            delay = max(0.0, exp - time.time())
            channel.expiry = asyncio.get_running_loop().call_later(
                delay, self._shut_down, channel, "Token has expired 0 seconds ago"
            )

    async def _update_token(self, channel: Channel, token: Any) -> None:
        if token is None or token == channel.access_token:
            return  # as Realtime: nothing to update (and no policy check to repeat)
        try:
            claims = self._verify(token)
        except TokenError as exc:
            self._shut_down(channel, self._token_message(exc))
            return
        if channel.policies is not None:
            # A private channel is authorized again under the new token.
            previous = channel.policies.read
            read = await self.authorizer.read(claims, channel.subtopic, tuple(previous))
            if not any(read.values()):
                self._shut_down(channel, read_refused(channel.subtopic))
                return
            if any(previous[ext] and not read[ext] for ext in previous):
                self._shut_down(channel, read_revoked(channel.subtopic))
                return
            channel.policies = ChannelPolicies(read=read)
        channel.access_token = token
        channel.set_claims(claims)
        self._arm_expiry(channel)

    def _shut_down(self, channel: Channel, message: str) -> None:
        """Close a channel from the server side: a system error, then phx_close."""
        session = channel.session
        if session.channels.get(channel.topic) is not channel:
            return
        self._drop(channel)
        session.send(push(channel.topic, "system", {
            "channel": channel.subtopic, "extension": "system",
            "status": "error", "message": message}))  # fmt: skip
        session.send(Frame(channel.topic, "phx_close", {}, channel.join_ref, channel.join_ref))

    def _drop(self, channel: Channel) -> None:
        """Forget a channel: no more deliveries, presence leave, timers off."""
        session = channel.session
        if session.channels.get(channel.topic) is channel:
            del session.channels[channel.topic]
        if channel.expiry is not None:
            channel.expiry.cancel()
            channel.expiry = None
        self.changes.remove(channel)
        room = self.rooms.get(channel.room)
        if room is not None:
            room.discard(channel)
            if not room:
                del self.rooms[channel.room]
        metas = self.presence.get(channel.room, {})
        if channel in metas:
            self._presence_diff(
                channel, joins={}, leaves={channel.presence_key: metas.pop(channel)}
            )
            if not metas:
                self.presence.pop(channel.room, None)

    def _on_gap(self) -> None:
        """The change listener lost its connection: changes may be missed. Make clients
        notice (CHANNEL_ERROR, then an automatic rejoin) so they can resync."""
        for session in list(self.sessions):
            for channel in list(session.channels.values()):
                if channel.bindings:
                    self._drop(channel)
                    session.send(Frame(channel.topic, "phx_error", {},
                                       channel.join_ref, channel.join_ref))  # fmt: skip

    # -- broadcast and presence -------------------------------------------------------------

    async def _may_write(self, channel: Channel, extension: str) -> bool:
        """Public channels: yes. Private ones: the insert policy decides, once per token."""
        policies = channel.policies
        if policies is None:
            return True
        if extension not in policies.write:
            policies.write[extension] = await self.authorizer.write(
                channel.claims, channel.subtopic, extension
            )
        return policies.write[extension]

    async def _broadcast(self, channel: Channel, frame: Frame) -> None:
        payload = frame.payload
        if isinstance(payload, UserBroadcast):
            message = payload
        elif isinstance(payload.get("event"), str) and isinstance(payload.get("payload"), dict):
            message = UserBroadcast(payload["event"], payload=payload["payload"])
        else:
            channel.session.send(reply(channel.topic, frame.ref, frame.join_ref, "error",
                                       {"reason": "broadcast needs an event and an object payload"}))  # fmt: skip
            return
        if not await self._may_write(channel, BROADCAST):
            log.info("realtime: broadcast on %s ignored: no write policy", channel.topic)
            return  # as Realtime: dropped without a reply
        if channel.session.channels.get(channel.topic) is not channel:
            return  # left while the policy was checked
        encoded: dict[str, str | bytes | None] = {}
        for other in self.rooms.get(channel.room, ()):
            if (other is channel and not channel.broadcast_self) or not other.can_read(BROADCAST):
                continue
            serializer = other.session.serializer
            if serializer.vsn not in encoded:
                encoded[serializer.vsn] = serializer.encode_broadcast(channel.topic, message)
            if (data := encoded[serializer.vsn]) is not None:
                other.session.send_encoded(data)
        if channel.broadcast_ack and frame.ref is not None:
            channel.session.send(reply(channel.topic, frame.ref, frame.join_ref, "ok", {}))

    def _presence_state(self, room: tuple[bool, str]) -> dict[str, Any]:
        state: dict[str, Any] = {}
        for ch, meta in self.presence.get(room, {}).items():
            state.setdefault(ch.presence_key, {"metas": []})["metas"].append(meta)
        return state

    def _presence_diff(self, channel: Channel, *, joins: dict, leaves: dict) -> None:
        def wrap(d: dict) -> dict:
            return {k: {"metas": [v]} for k, v in d.items()}

        frame = push(channel.topic, "presence_diff", {"joins": wrap(joins), "leaves": wrap(leaves)})
        for other in self.rooms.get(channel.room, ()):
            if other.can_read(PRESENCE):
                other.session.send(frame)

    async def _presence(self, channel: Channel, ref: Any, join_ref: Any, payload: dict) -> None:
        kind, data = payload.get("event"), payload.get("payload")
        if kind == "track" and channel.policies is not None:
            if PRESENCE not in channel.policies.read:  # presence was off at join
                channel.policies.read.update(
                    await self.authorizer.read(channel.claims, channel.subtopic, (PRESENCE,))
                )
            if not await self._may_write(channel, PRESENCE):
                channel.session.send(reply(channel.topic, ref, join_ref, "error", {}))
                return
            if channel.session.channels.get(channel.topic) is not channel:
                return
        metas = self.presence.setdefault(channel.room, {})
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
            self.presence.pop(channel.room, None)
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
        await self._pending.put(asyncio.create_task(self.changes.prepare(change)))

    async def _emit_loop(self) -> None:
        while True:
            task = await self._pending.get()
            try:
                frames = await task
            except Exception:  # noqa: BLE001 - one bad change must not stop the feed
                log.exception("realtime: failed to fan out a change")
                continue
            for session, text in frames:
                session.send_encoded(text)


def _join_options(payload: dict[str, Any]) -> dict[str, Any]:
    """The join's config, every field type-checked (Realtime's Join/Config payloads)."""
    config = payload.get("config")
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise JoinPayloadError("config", "a map")
    broadcast = _map(config, "broadcast")
    presence = _map(config, "presence")
    key = presence.get("key")
    if key is not None and not isinstance(key, str):
        raise JoinPayloadError("config.presence.key", "string")
    token = payload.get("access_token")
    if token is not None and not isinstance(token, str):
        raise JoinPayloadError("access_token", "string")
    return {
        "config": config,
        "private": _flag(config, "private", "config.private"),
        "broadcast_self": _flag(broadcast, "self", "config.broadcast.self"),
        "broadcast_ack": _flag(broadcast, "ack", "config.broadcast.ack"),
        "presence_enabled": _flag(presence, "enabled", "config.presence.enabled"),
        "presence_key": key or "",
    }


def _map(config: dict[str, Any], key: str) -> dict[str, Any]:
    value = config.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise JoinPayloadError(f"config.{key}", "a map")
    return value


def _flag(obj: dict[str, Any], key: str, path: str) -> bool:
    """A boolean, or "true"/"false" as Realtime's FlexibleBoolean accepts."""
    value = obj.get(key)
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise JoinPayloadError(path, "boolean")


REALTIME: web.AppKey[RealtimeServer] = web.AppKey("opstui_realtime", RealtimeServer)


def setup(app: web.Application, ctx: GatewayContext) -> None:
    server = RealtimeServer(ctx)
    app[REALTIME] = server
    app.router.add_get("/realtime/v1/websocket", server.handle)
    app.on_startup.append(server.startup)
    app.on_shutdown.append(server.shutdown)
    app.on_cleanup.append(server.cleanup)
