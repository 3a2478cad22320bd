"""Phoenix framing for `/realtime/v1/websocket`: vsn 1.0.0 (JSON objects) and 2.0.0.

2.0.0 is Phoenix's V2 serializer as Supabase Realtime extends it: text frames are
`[join_ref, ref, topic, event, payload]` arrays; binary frames carry broadcasts
(kind 3, "user broadcast push", from the client; kind 4, "user broadcast", to it),
which is how supabase-js sends every broadcast. The other binary kinds (0 push,
1 reply, 2 broadcast with a binary payload) are not used by the clients and are
ignored here.

This module knows nothing about channels: it turns bytes into `Frame`s and back.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

VSN_1 = "1.0.0"
VSN_2 = "2.0.0"

_USER_BROADCAST_PUSH = 3
_USER_BROADCAST = 4
_JSON_ENCODING = 1


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), default=str)


class ProtocolError(ValueError):
    """A frame this serializer cannot read; the frame is dropped, the socket lives."""


@dataclass(frozen=True)
class UserBroadcast:
    """A broadcast as the client sent it: JSON (`payload`) or raw bytes (`binary`)."""

    event: str
    payload: Any = None
    binary: bytes | None = None
    from_binary_frame: bool = False  # 2.0.0 receivers get the framing the sender used

    def as_json_payload(self) -> dict[str, Any] | None:
        """The JSON object a text frame carries; None for a binary payload."""
        if self.binary is not None:
            return None
        return {"type": "broadcast", "event": self.event, "payload": self.payload}


@dataclass(frozen=True)
class Frame:
    topic: str
    event: str
    payload: Any  # a dict for JSON frames, a UserBroadcast for binary broadcasts
    ref: str | int | None = None
    join_ref: str | int | None = None


def reply(topic: str, ref: Any, join_ref: Any, status: str, response: dict) -> Frame:
    return Frame(topic, "phx_reply", {"status": status, "response": response}, ref, join_ref)


def push(topic: str, event: str, payload: dict[str, Any], join_ref: Any = None) -> Frame:
    return Frame(topic, event, payload, None, join_ref)


class Serializer:
    vsn: str

    def decode(self, data: str | bytes) -> Frame:
        raise NotImplementedError

    def encode(self, frame: Frame) -> str | bytes | None:
        """The frame on the wire, or None if this protocol cannot carry it."""
        if isinstance(frame.payload, UserBroadcast):
            return self.encode_broadcast(frame.topic, frame.payload)
        return self.encode_raw(frame.topic, frame.event, dumps(frame.payload),
                               frame.ref, frame.join_ref, reply=frame.event == "phx_reply")  # fmt: skip

    def encode_raw(
        self,
        topic: str,
        event: str,
        payload_json: str,
        ref: Any = None,
        join_ref: Any = None,
        *,
        reply: bool = False,
    ) -> str:
        """A text frame around an already serialised payload (the change fan-out's fast path)."""
        raise NotImplementedError

    def encode_broadcast(self, topic: str, message: UserBroadcast) -> str | bytes | None:
        payload = message.as_json_payload()
        if payload is None:
            return None
        return self.encode_raw(topic, "broadcast", dumps(payload))


class V1Serializer(Serializer):
    vsn = VSN_1

    def decode(self, data: str | bytes) -> Frame:
        if isinstance(data, bytes):
            raise ProtocolError("binary frames need vsn 2.0.0")
        obj = _loads(data)
        if not isinstance(obj, dict):
            raise ProtocolError("a 1.0.0 frame is a JSON object")
        return _frame(obj.get("topic"), obj.get("event"), obj.get("payload"),
                      obj.get("ref"), obj.get("join_ref"))  # fmt: skip

    def encode_raw(self, topic, event, payload_json, ref=None, join_ref=None, *, reply=False):
        # Replies always name their join_ref (null included); pushes only when they have one.
        tail = f',"join_ref":{dumps(join_ref)}' if reply or join_ref is not None else ""
        return (
            f'{{"topic":{dumps(topic)},"event":{dumps(event)},"ref":{dumps(ref)}{tail},'
            f'"payload":{payload_json}}}'
        )


class V2Serializer(Serializer):
    vsn = VSN_2

    def decode(self, data: str | bytes) -> Frame:
        if isinstance(data, bytes):
            return _decode_binary(data)
        obj = _loads(data)
        if not isinstance(obj, list) or len(obj) < 5:
            raise ProtocolError("a 2.0.0 frame is [join_ref, ref, topic, event, payload]")
        join_ref, ref, topic, event, payload = obj[:5]
        return _frame(topic, event, payload, ref, join_ref)

    def encode_raw(self, topic, event, payload_json, ref=None, join_ref=None, *, reply=False):
        return f"[{dumps(join_ref)},{dumps(ref)},{dumps(topic)},{dumps(event)},{payload_json}]"

    def encode_broadcast(self, topic: str, message: UserBroadcast) -> str | bytes | None:
        if not message.from_binary_frame:
            return super().encode_broadcast(topic, message)
        body = message.binary
        encoding = 0
        if body is None:
            body, encoding = dumps(message.payload).encode(), _JSON_ENCODING
        head = [topic.encode(), message.event.encode()]
        if any(len(part) > 255 for part in head):
            return super().encode_broadcast(topic, message)  # too long for the binary header
        return (
            struct.pack("!BBBBB", _USER_BROADCAST, len(head[0]), len(head[1]), 0, encoding)
            + head[0]
            + head[1]
            + body
        )


SERIALIZERS: dict[str, Serializer] = {VSN_1: V1Serializer(), VSN_2: V2Serializer()}


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise ProtocolError("not JSON") from None


def _frame(topic: Any, event: Any, payload: Any, ref: Any, join_ref: Any) -> Frame:
    """A frame whose fields have the types the channel code relies on."""
    ref, join_ref = _ref(ref), _ref(join_ref)
    if not isinstance(topic, str) or not isinstance(event, str):
        raise IncompleteFrame(ref, join_ref, topic if isinstance(topic, str) else "phoenix")
    return Frame(topic, event, payload if isinstance(payload, dict) else {}, ref, join_ref)


def _ref(value: Any) -> str | int | None:
    return value if isinstance(value, str | int) and not isinstance(value, bool) else None


class IncompleteFrame(ProtocolError):
    """A readable frame without a topic or event: worth an error reply if it has a ref."""

    def __init__(self, ref: Any, join_ref: Any, topic: str) -> None:
        super().__init__("a frame needs a topic and an event")
        self.ref, self.join_ref, self.topic = ref, join_ref, topic


def _decode_binary(data: bytes) -> Frame:
    """Kind 3, user broadcast push: sizes of join_ref, ref, topic, event, metadata, then
    the payload encoding (0 binary, 1 JSON), the fields, and the payload."""
    if len(data) < 7 or data[0] != _USER_BROADCAST_PUSH:
        raise ProtocolError("unsupported binary frame")
    sizes = data[1:6]
    encoding = data[6]
    offset, fields = 7, []
    for size in sizes:
        if offset + size > len(data):
            raise ProtocolError("truncated binary frame")
        fields.append(data[offset : offset + size])
        offset += size
    body = data[offset:]
    try:
        join_ref, ref, topic, event = (f.decode() for f in fields[:4])
    except UnicodeDecodeError:
        raise ProtocolError("binary frame header is not UTF-8") from None
    if encoding == _JSON_ENCODING:
        try:
            message = UserBroadcast(event, payload=json.loads(body), from_binary_frame=True)
        except (ValueError, RecursionError):
            raise ProtocolError("broadcast payload is not JSON") from None
    else:
        message = UserBroadcast(event, binary=bytes(body), from_binary_frame=True)
    return Frame(topic, "broadcast", message, ref or None, join_ref or None)
