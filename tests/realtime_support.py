"""Bare Phoenix clients over aiohttp, vsn 1.0.0 and 2.0.0, for what supabase-py cannot say.

`RawSocket.recv` returns every frame as a dict {topic, event, payload, ref, join_ref}
whatever the framing, plus `binary` (the raw bytes) for binary frames.
"""

from __future__ import annotations

import asyncio
import json
import struct
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import psycopg
from psycopg import sql

WAIT = 1.0  # a change must arrive within this (the requirement)
SLOW = 10.0  # reconnects, token expiry


def user_broadcast_push(
    topic: str, event: str, payload: Any, *, ref: str = "", join_ref: str = "", binary: bool = False
) -> bytes:
    """Kind 3, as supabase-js 2.x encodes every broadcast it sends on vsn 2.0.0."""
    body = payload if binary else json.dumps(payload).encode()
    fields = [join_ref.encode(), ref.encode(), topic.encode(), event.encode(), b""]
    head = struct.pack("!BBBBBBB", 3, *(len(f) for f in fields), 0 if binary else 1)
    return head + b"".join(fields) + body


def decode_user_broadcast(data: bytes) -> dict[str, Any]:
    """Kind 4, as supabase-js 2.x decodes it."""
    kind, topic_size, event_size, meta_size, encoding = data[:5]
    assert kind == 4, data
    offset = 5
    topic = data[offset : offset + topic_size].decode()
    offset += topic_size
    event = data[offset : offset + event_size].decode()
    offset += event_size + meta_size
    body = data[offset:]
    payload = json.loads(body) if encoding == 1 else body
    return {
        "topic": topic,
        "event": "broadcast",
        "ref": None,
        "join_ref": None,
        "payload": {"type": "broadcast", "event": event, "payload": payload},
        "binary": data,
    }


class RawSocket:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse, vsn: str = "1.0.0") -> None:
        self.ws = ws
        self.vsn = vsn
        self.ref = 0

    def next_ref(self) -> str:
        self.ref += 1
        return str(self.ref)

    async def send(
        self, topic: str, event: str, payload: Any = None, *, ref: bool = True
    ) -> str | None:
        r = self.next_ref() if ref else None
        payload = {} if payload is None else payload
        if self.vsn == "2.0.0":
            await self.ws.send_str(json.dumps([r, r, topic, event, payload]))
        else:
            await self.ws.send_str(json.dumps(
                {"topic": topic, "event": event, "payload": payload, "ref": r, "join_ref": r}
            ))  # fmt: skip
        return r

    async def recv(self, timeout: float = WAIT) -> dict:
        msg = await asyncio.wait_for(self.ws.receive(), timeout)
        if msg.type == aiohttp.WSMsgType.BINARY:
            assert self.vsn == "2.0.0", "binary frames are for vsn 2.0.0 only"
            return decode_user_broadcast(msg.data)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        frame = json.loads(msg.data)
        if self.vsn == "2.0.0":
            assert isinstance(frame, list) and len(frame) == 5, frame
            join_ref, ref, topic, event, payload = frame
            return {"topic": topic, "event": event, "payload": payload, "ref": ref,
                    "join_ref": join_ref}  # fmt: skip
        assert "ref" in frame  # the 1.0.0 client drops frames without it
        return frame

    async def recv_until(self, pred: Callable[[dict], bool], timeout: float = WAIT) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            frame = await self.recv(max(0.01, deadline - time.monotonic()))
            if pred(frame):
                return frame

    async def join(
        self,
        topic: str,
        token: str | None,
        bindings: list | None = None,
        **config: Any,
    ) -> dict:
        payload: dict[str, Any] = {"config": {"postgres_changes": bindings or [], **config}}
        if token is not None:
            payload["access_token"] = token
        return await self.join_raw(topic, payload)

    async def join_raw(self, topic: str, payload: Any) -> dict:
        ref = await self.send(topic, "phx_join", payload)
        return await self.recv_until(lambda f: f["event"] == "phx_reply" and f["ref"] == ref)

    async def heartbeat(self) -> dict:
        ref = await self.send("phoenix", "heartbeat")
        return await self.recv_until(lambda f: f["ref"] == ref)


@asynccontextmanager
async def raw_sockets(backend_info) -> AsyncIterator[Callable[..., Awaitable[RawSocket]]]:
    """A factory: `await open_socket()` (vsn 1.0.0) or `await open_socket(vsn="2.0.0")`;
    every socket is closed on exit. Test modules wrap it in their `raw` fixture."""
    sessions: list[aiohttp.ClientSession] = []

    async def _open(apikey: str | None = None, *, vsn: str = "1.0.0") -> RawSocket:
        session = aiohttp.ClientSession()
        sessions.append(session)
        key = backend_info.anon_key if apikey is None else apikey
        ws = await session.ws_connect(
            f"{backend_info.url}/realtime/v1/websocket?apikey={key}&vsn={vsn}"
        )
        return RawSocket(ws, vsn)

    try:
        yield _open
    finally:
        for session in sessions:
            await session.close()


@asynccontextmanager
async def host_writer(backend_info) -> AsyncIterator[psycopg.AsyncConnection]:
    """A superuser connection with `insert_host(team_id, **values)`; every host it
    creates is removed on exit. Addresses are loopback: nothing ever connects to them."""
    conn = await psycopg.AsyncConnection.connect(backend_info.db_url, autocommit=True)
    created: list[str] = []

    async def insert_host(team_id: str, **values: Any) -> str:
        host_id = values.pop("id", None) or f"rt-{uuid.uuid4()}"
        row = {"id": host_id, "name": "rt-host", "type": "linux", "ip": "127.0.9.9", **values}
        row["team_id"] = team_id
        query = sql.SQL("insert into public.hosts ({}) values ({})").format(
            sql.SQL(", ").join(map(sql.Identifier, row)),
            sql.SQL(", ").join(sql.Placeholder() * len(row)),
        )
        await conn.execute(query, list(row.values()))
        created.append(host_id)
        return host_id

    conn.insert_host = insert_host  # type: ignore[attr-defined]
    try:
        yield conn
    finally:
        if created:
            await conn.execute("delete from public.hosts where id = any(%s)", (created,))
        await conn.close()


async def user_token(sign_in, email: str) -> str:
    client = await sign_in(email)
    return (await client.auth.get_session()).access_token


async def wait_until(predicate: Callable[[], bool], timeout: float = SLOW) -> None:
    """Poll a condition we cannot await (server-side state), with a deadline."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)
