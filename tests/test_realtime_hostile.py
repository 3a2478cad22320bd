"""/realtime/v1 against hostile clients: malformed joins get an error reply, one broken
subscriber never costs anyone else a change, channels per socket are capped, and a
socket that never joins is closed."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import aiohttp
import pytest

from opstui.backend import gateway
from opstui.backend.realtime import REALTIME, TOO_MANY_CHANNELS
from tests.conftest import demo_user
from tests.realtime_support import SLOW, WAIT, host_writer, raw_sockets, user_token

HOSTS = {"event": "*", "schema": "public", "table": "hosts"}


@pytest.fixture
async def raw(backend_info):
    async with raw_sockets(backend_info) as open_socket:
        yield open_socket


@pytest.fixture
async def db(backend_info):
    async with host_writer(backend_info) as conn:
        yield conn


@pytest.fixture
def server(backend):
    return backend._runner.app[REALTIME]


def _config(**config):
    return {"config": {"postgres_changes": [], **config}}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (_config(postgres_changes=[{**HOSTS, "table": 5}]), "postgres_changes[0].table"),
        (_config(postgres_changes=[{**HOSTS, "event": ["*"]}]), "postgres_changes[0].event"),
        (_config(postgres_changes=[{**HOSTS, "filter": {"id": 1}}]), "postgres_changes[0].filter"),
        (_config(postgres_changes=[{**HOSTS, "schema": 1}]), "postgres_changes[0].schema"),
        (_config(postgres_changes=[{**HOSTS, "select": "name"}]), "postgres_changes[0].select"),
        (_config(postgres_changes=[{**HOSTS, "select": [{}]}]), "postgres_changes[0].select"),
        (_config(postgres_changes=[HOSTS, "hosts"]), "postgres_changes[1]"),
        (_config(postgres_changes={"event": "*"}), "config.postgres_changes"),
        ({"config": "everything"}, "config"),
        (_config(broadcast=[True]), "config.broadcast"),
        (_config(broadcast={"self": "sometimes"}), "config.broadcast.self"),
        (_config(presence={"key": 5}), "config.presence.key"),
        (_config(private="maybe"), "config.private"),
        ({**_config(), "access_token": 42}, "access_token"),
    ],
)
async def test_malformed_join_gets_an_error_reply_naming_the_field(raw, payload, field):
    sock = await raw()
    reply = await sock.join_raw("realtime:rt-hostile", payload)
    assert reply["payload"]["status"] == "error"
    reason = reply["payload"]["response"]["reason"]
    assert reason.startswith("InvalidJoinPayload:") and field in reason, reason
    assert (await sock.heartbeat())["payload"]["status"] == "ok"  # the socket lives on


async def test_a_bad_join_does_not_cost_other_subscribers_a_change(raw, sign_in, backend_info, db):
    admin = demo_user(backend_info, "admin")
    team = admin["team_ids"][0]
    token = await user_token(sign_in, admin["email"])
    good = await raw()
    assert (await good.join("realtime:rt-good", token, [HOSTS]))["payload"]["status"] == "ok"
    bad = await raw()
    refused = await bad.join("realtime:rt-bad", token, [{**HOSTS, "select": [{}, ["x"]]}])
    assert refused["payload"]["status"] == "error"

    host_id = await db.insert_host(team)
    change = await good.recv_until(lambda f: f["event"] == "postgres_changes")
    assert change["payload"]["data"]["record"]["id"] == host_id


async def test_a_subscriber_whose_check_breaks_misses_the_change_alone(
    raw, sign_in, backend_info, db, server
):
    """Whatever goes wrong for one subscriber (its filter, its claims) stays with it."""
    admin = demo_user(backend_info, "admin")
    team = admin["team_ids"][0]
    token = await user_token(sign_in, admin["email"])
    sockets = []
    for topic in ("rt-iso-filter", "rt-iso-claims", "rt-iso-fine"):
        sock = await raw()
        assert (await sock.join(f"realtime:{topic}", token, [HOSTS]))["payload"]["status"] == "ok"
        sockets.append(sock)

    class Exploding:
        column = "team_id"

        def matches(self, row, udt):
            raise RuntimeError("a filter that breaks")

    def channel(topic):
        return next(s.channels[topic] for s in server.sessions if topic in s.channels)

    broken_filter = channel("realtime:rt-iso-filter")
    broken_filter.bindings = [dataclasses.replace(broken_filter.bindings[0], filter=Exploding())]
    # Claims that cannot even be serialised for the RLS check.
    channel("realtime:rt-iso-claims").set_claims({**channel("realtime:rt-iso-claims").claims,
                                                  "odd": {1, 2}})  # fmt: skip

    host_id = await db.insert_host(team)
    change = await sockets[2].recv_until(lambda f: f["event"] == "postgres_changes")
    assert change["payload"]["data"]["record"]["id"] == host_id
    for sock in sockets[:2]:  # nothing for them, and their sockets still answer
        reply = await sock.heartbeat()
        assert reply["event"] == "phx_reply"


async def test_non_string_role_in_a_signed_token_is_refused(raw, backend):
    now = int(time.time())
    for role in (["authenticated"], {"r": "service_role"}, 5):
        token = backend._ctx.signer.sign({"role": role, "iat": now, "exp": now + 60})
        sock = await raw()
        reply = await sock.join("realtime:rt-role", token, [HOSTS])
        assert reply["payload"]["status"] == "error", role
        assert reply["payload"]["response"]["reason"]


async def test_channels_per_socket_are_capped(raw, server, monkeypatch):
    monkeypatch.setattr(server, "max_channels", 3)
    sock = await raw()
    for i in range(3):
        assert (await sock.join(f"realtime:rt-cap-{i}", None))["payload"]["status"] == "ok"
    over = await sock.join("realtime:rt-cap-3", None)
    assert over["payload"] == {"status": "error", "response": {"reason": TOO_MANY_CHANNELS}}
    # A rejoin replaces its channel, and a leave makes room.
    assert (await sock.join("realtime:rt-cap-0", None))["payload"]["status"] == "ok"
    ref = await sock.send("realtime:rt-cap-1", "phx_leave")
    await sock.recv_until(lambda f: f["ref"] == ref)
    assert (await sock.join("realtime:rt-cap-3", None))["payload"]["status"] == "ok"
    # Another socket has its own allowance.
    other = await raw()
    assert (await other.join("realtime:rt-cap-0", None))["payload"]["status"] == "ok"


async def test_a_socket_that_never_joins_is_closed(raw, server, monkeypatch):
    monkeypatch.setattr(server, "join_timeout", 1.0)
    joined = await raw()
    assert (await joined.join("realtime:rt-deadline", None))["payload"]["status"] == "ok"
    idle = await raw()
    await idle.send("phoenix", "heartbeat")  # heartbeats alone do not keep a socket
    while (msg := await asyncio.wait_for(idle.ws.receive(), SLOW)).type == aiohttp.WSMsgType.TEXT:
        pass
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert idle.ws.close_code == 1008
    # The joined socket opened earlier, so its deadline has passed too: still served.
    assert (await joined.heartbeat())["payload"]["status"] == "ok"


async def test_frames_for_unknown_vsn_binary_junk_and_huge_nesting_are_ignored(raw):
    sock = await raw(vsn="2.0.0")
    for junk in (b"\x03\xff\xff", b"\x00", b"\x03\x00\x00\x05\x01\x00\x01ab", b""):
        await sock.ws.send_bytes(junk)
    await sock.ws.send_str("[" * 100_000 + "]" * 100_000)
    await sock.ws.send_str('{"topic": "phoenix", "event": "heartbeat"}')  # a 1.0.0 frame
    await sock.ws.send_str('[null, "7", 5, "heartbeat", {}]')
    incomplete = await sock.recv(WAIT)
    assert incomplete["ref"] == "7" and incomplete["payload"]["status"] == "error"
    assert (await sock.heartbeat())["payload"]["status"] == "ok"


async def test_a_connection_that_never_finishes_its_upgrade_is_closed(backend, monkeypatch):
    monkeypatch.setattr(gateway, "FIRST_REQUEST_TIMEOUT", 0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", backend.port)
    try:
        writer.write(b"GET /realtime/v1/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Upgrade: websocket\r\n")  # fmt: skip
        await writer.drain()  # ... and the rest of the headers never come
        assert await asyncio.wait_for(reader.read(), SLOW) == b""
    finally:
        writer.close()
