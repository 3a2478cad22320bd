"""One Realtime WebSocket (`Session`) and the channels joined on it (`Channel`)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from opstui.backend.realtime_authorization import ChannelPolicies
from opstui.backend.realtime_postgres import Binding
from opstui.backend.realtime_protocol import Frame, Serializer, dumps

log = logging.getLogger(__name__)

MAX_OUTBOX = 10_000  # frames queued for one socket before it is dropped as too slow
# Claims that identify a token or session rather than the principal: ignored when
# grouping subscribers, so each distinct user costs one RLS check per change.
_VOLATILE_CLAIMS = frozenset({"iat", "exp", "nbf", "jti", "session_id", "amr"})


@dataclass(eq=False)
class Channel:
    session: Session
    topic: str
    join_ref: str | int | None
    claims: dict[str, Any]
    access_token: str | None = None
    private: bool = False
    # Private channels only: what the policies on realtime.messages allow.
    policies: ChannelPolicies | None = None
    bindings: list[Binding] = field(default_factory=list)
    broadcast_self: bool = False
    broadcast_ack: bool = False
    presence_enabled: bool = False
    presence_key: str = ""
    expiry: asyncio.TimerHandle | None = None
    _group_key: str | None = None

    @property
    def subtopic(self) -> str:
        return self.topic.removeprefix("realtime:")

    @property
    def room(self) -> tuple[bool, str]:
        """Where broadcast and presence meet: a private and a public channel of the same
        name are different rooms, as on Supabase."""
        return (self.private, self.topic)

    @property
    def role(self) -> str:
        return str(self.claims.get("role", "anon"))

    @property
    def group_key(self) -> str:
        if self._group_key is None:
            self._group_key = dumps(
                sorted((k, v) for k, v in self.claims.items() if k not in _VOLATILE_CLAIMS)
            )
        return self._group_key

    def set_claims(self, claims: dict[str, Any]) -> None:
        self.claims = claims
        self._group_key = None

    def can_read(self, extension: str) -> bool:
        return self.policies is None or self.policies.can_read(extension)


class Session:
    """One WebSocket: its serializer, channels and an ordered outbox drained by a writer."""

    def __init__(self, ws: web.WebSocketResponse, api_token: str, serializer: Serializer) -> None:
        self.ws = ws
        self.api_token = api_token
        self.serializer = serializer
        self.channels: dict[str, Channel] = {}
        self._outbox: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self._writer = asyncio.create_task(self._write())

    def send(self, frame: Frame) -> None:
        data = self.serializer.encode(frame)
        if data is not None:
            self.send_encoded(data)

    def send_encoded(self, data: str | bytes) -> None:
        if self._outbox.qsize() >= MAX_OUTBOX:
            log.warning("realtime: dropping a socket that reads too slowly")
            self._outbox = asyncio.Queue()
            asyncio.ensure_future(self.ws.close(code=1008, message=b"too slow"))
            return
        self._outbox.put_nowait(data)

    async def _write(self) -> None:
        try:
            while (data := await self._outbox.get()) is not None:
                if isinstance(data, bytes):
                    await self.ws.send_bytes(data)
                else:
                    await self.ws.send_str(data)
        except (ConnectionError, RuntimeError) as exc:
            log.debug("realtime: socket write failed: %s", exc)

    async def close(self) -> None:
        self._outbox.put_nowait(None)
        try:
            await asyncio.wait_for(self._writer, 1.0)
        except (TimeoutError, asyncio.CancelledError):
            self._writer.cancel()
