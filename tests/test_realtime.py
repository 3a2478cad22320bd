"""/realtime/v1 through the real supabase-py client (and raw WebSockets where the client
cannot say what we need): delivery, RLS isolation, tokens, reconnects, hostile input."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import aiohttp
import pytest
from psycopg import sql

from opstui.backend.change_feed import Filter, FilterError
from opstui.backend.realtime import REALTIME
from opstui.backend.realtime_postgres import binding_id
from tests.conftest import demo_user
from tests.realtime_support import (
    SLOW,
    WAIT,
    host_writer,
    raw_sockets,
    user_broadcast_push,
    wait_until,
)
from tests.realtime_support import user_token as _user_token


def user(info, email: str) -> dict:
    return next(u for u in info.users if u["email"] == email)


def team_of(info, email: str, index: int = 0) -> str:
    return user(info, email)["team_ids"][index]


@pytest.fixture
async def db(backend_info):
    async with host_writer(backend_info) as conn:
        yield conn


async def subscribe(client, topic: str, **binding: Any):
    """A channel with one postgres_changes binding on hosts; returns (channel, queue, states)."""
    queue: asyncio.Queue = asyncio.Queue()
    states: asyncio.Queue = asyncio.Queue()
    binding.setdefault("table", "hosts")
    binding.setdefault("schema", "public")
    event = binding.pop("event", "*")
    channel = client.channel(topic).on_postgres_changes(event, queue.put_nowait, **binding)
    await channel.subscribe(lambda state, err: states.put_nowait((state.value, err)))
    state, err = states.get_nowait()
    assert state == "SUBSCRIBED", err
    return channel, queue, states


def data(payload) -> dict:
    return payload["data"]


# -- delivery ------------------------------------------------------------------------------


async def test_team_member_gets_insert_update_delete_without_secrets(sign_in, backend_info, db):
    viewer = demo_user(backend_info, "viewer")
    team = viewer["team_ids"][0]
    client = await sign_in(viewer["email"])
    _, changes, _ = await subscribe(client, "rt-crud", filter=f"team_id=eq.{team}")

    host_id = await db.insert_host(team, name="rt-crud", password="s3cret-password", port=2222)
    ins = data(await asyncio.wait_for(changes.get(), WAIT))
    assert ins["type"] == "INSERT" and ins["table"] == "hosts" and ins["schema"] == "public"
    assert ins["record"]["id"] == host_id and ins["record"]["name"] == "rt-crud"
    assert ins["record"]["port"] == 2222 and ins["record"]["team_id"] == team
    assert {"name": "port", "type": "int4"} in ins["columns"]
    assert {"name": "team_id", "type": "uuid"} in ins["columns"]
    assert ins["errors"] is None and ins["commit_timestamp"].endswith("Z")

    await db.execute(
        "update public.hosts set status = 'online', password = 'n3w-secret' where id = %s",
        (host_id,),
    )
    upd = data(await asyncio.wait_for(changes.get(), WAIT))
    assert upd["type"] == "UPDATE" and upd["record"]["status"] == "online"
    assert upd["old_record"]["id"] == host_id

    await db.execute("delete from public.hosts where id = %s", (host_id,))
    dele = data(await asyncio.wait_for(changes.get(), WAIT))
    assert dele["type"] == "DELETE" and "record" not in dele
    assert dele["old_record"] == {"id": host_id, "team_id": team}

    for change in (ins, upd, dele):
        text = json.dumps(change)
        assert "s3cret-password" not in text and "n3w-secret" not in text
        for rec in (change.get("record"), change.get("old_record")):
            assert not (rec or {}).get("password")


async def test_event_specific_bindings_get_only_their_events(sign_in, backend_info, db):
    dev = demo_user(backend_info, "developer")
    team = dev["team_ids"][0]
    client = await sign_in(dev["email"])
    inserts: asyncio.Queue = asyncio.Queue()
    deletes: asyncio.Queue = asyncio.Queue()
    states: list = []
    channel = (
        client.channel("rt-events")
        .on_postgres_changes(
            "INSERT", inserts.put_nowait, table="hosts", filter=f"team_id=eq.{team}"
        )
        .on_postgres_changes(
            "DELETE", deletes.put_nowait, table="hosts", filter=f"team_id=eq.{team}"
        )
    )
    await channel.subscribe(lambda s, e: states.append(s.value))
    assert states == ["SUBSCRIBED"]
    host_id = await db.insert_host(team)
    got = data(await asyncio.wait_for(inserts.get(), WAIT))
    assert got["type"] == "INSERT"
    await db.execute("delete from public.hosts where id = %s", (host_id,))
    assert data(await asyncio.wait_for(deletes.get(), WAIT))["type"] == "DELETE"
    assert inserts.empty() and deletes.empty()


async def test_payload_larger_than_notify_limit_goes_through_the_queue(sign_in, backend_info, db):
    admin = demo_user(backend_info, "admin")
    team = admin["team_ids"][0]
    client = await sign_in(admin["email"])
    _, changes, _ = await subscribe(client, "rt-large", event="INSERT", filter=f"team_id=eq.{team}")
    description = "x" * 20_000
    host_id = await db.insert_host(team, description=description)
    got = data(await asyncio.wait_for(changes.get(), WAIT))
    assert got["record"]["id"] == host_id and got["record"]["description"] == description
    left = await (await db.execute("select count(*) from opstui_realtime.queue")).fetchone()
    assert left[0] == 0


# -- isolation ------------------------------------------------------------------------------


async def test_foreign_team_and_tenant_changes_never_arrive(sign_in, backend_info, db):
    viewer = demo_user(backend_info, "viewer")  # member of one acme team only
    own_team = viewer["team_ids"][0]
    other_team = next(
        t for t in user(backend_info, "tester@acme.test")["team_ids"] if t != own_team
    )
    other_tenant_team = team_of(backend_info, "ops@globex.test")
    client = await sign_in(viewer["email"])
    _, same_tenant, _ = await subscribe(
        client, "rt-foreign-team", filter=f"team_id=eq.{other_team}"
    )
    _, other_tenant, _ = await subscribe(
        client, "rt-foreign-tenant", filter=f"team_id=in.({other_tenant_team},{other_team})"
    )
    _, unfiltered, _ = await subscribe(client, "rt-unfiltered")

    for team in (other_team, other_tenant_team):
        host_id = await db.insert_host(team, name="foreign")
        await db.execute("update public.hosts set name = 'foreign-2' where id = %s", (host_id,))
        await db.execute("delete from public.hosts where id = %s", (host_id,))
    control = await db.insert_host(own_team, name="control")

    # Deliveries on one socket follow commit order: once the control change is here,
    # anything about the foreign rows would already have arrived.
    got = data(await asyncio.wait_for(unfiltered.get(), WAIT))
    assert got["record"]["id"] == control
    assert unfiltered.empty() and same_tenant.empty() and other_tenant.empty()


async def test_anon_sees_nothing(sign_in, backend_info, db):
    anon = await sign_in()  # no user: the anon key is the access token
    admin = await sign_in(demo_user(backend_info, "admin")["email"])
    team = demo_user(backend_info, "admin")["team_ids"][0]
    _, anon_changes, _ = await subscribe(anon, "rt-anon")
    _, admin_changes, _ = await subscribe(admin, "rt-anon-control", filter=f"team_id=eq.{team}")
    await db.insert_host(team)
    await asyncio.wait_for(admin_changes.get(), WAIT)
    # Same server pipeline, same commit order: give the anon socket its chance too.
    await db.insert_host(team)
    await asyncio.wait_for(admin_changes.get(), WAIT)
    assert anon_changes.empty()


async def test_unpublished_table_gets_a_system_error(sign_in, backend_info):
    client = await sign_in(demo_user(backend_info, "admin")["email"])
    states: asyncio.Queue = asyncio.Queue()
    channel = client.channel("rt-unpublished").on_postgres_changes(
        "*", lambda p: None, table="resource_limits", schema="public"
    )
    await channel.subscribe(lambda s, e: states.put_nowait((s.value, e)))
    assert states.get_nowait()[0] == "SUBSCRIBED"  # the join itself is ok, as on Supabase
    state, err = await asyncio.wait_for(states.get(), WAIT)
    assert state == "CHANNEL_ERROR"
    assert "Unable to subscribe to changes with given parameters" in str(err)
    assert "table: resource_limits" in str(err)
    await client.realtime.remove_channel(channel)


# -- tokens ---------------------------------------------------------------------------------


async def test_refreshed_token_keeps_the_subscription(sign_in, backend, backend_info, db):
    dev = demo_user(backend_info, "developer")
    team = dev["team_ids"][0]
    client = await sign_in(dev["email"])
    _, changes, states = await subscribe(client, "rt-refresh", filter=f"team_id=eq.{team}")
    refreshed = await client.auth.refresh_session()
    new_token = refreshed.session.access_token
    server = backend._runner.app[REALTIME]

    def swapped() -> bool:
        channels = [s.channels.get("realtime:rt-refresh") for s in server.sessions]
        return any(
            c is not None and c.claims.get("jti") == _claims(new_token)["jti"] for c in channels
        )

    await wait_until(swapped)
    host_id = await db.insert_host(team)
    assert data(await asyncio.wait_for(changes.get(), WAIT))["record"]["id"] == host_id
    assert states.empty()  # no error, no close


def _claims(token: str) -> dict:
    import jwt

    return jwt.decode(token, options={"verify_signature": False})


@pytest.fixture
async def raw(backend_info):
    async with raw_sockets(backend_info) as open_socket:
        yield open_socket


def _forged(token: str) -> str:
    head, body, sig = token.split(".")
    return f"{head}.{body}.{sig[:-4]}AAAA"


def _alg_none(claims: dict) -> str:
    import base64

    def b64(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."


def _expired(backend, claims: dict) -> str:
    now = int(time.time())
    return backend._ctx.signer.sign({**claims, "iat": now - 7200, "exp": now - 3600})


async def test_bad_access_token_update_closes_the_channel(sign_in, backend, backend_info, raw):
    email = demo_user(backend_info, "viewer")["email"]
    token = await _user_token(sign_in, email)
    for bad, message in (
        (_forged(token), "Invalid token"),
        (_expired(backend, _claims(token)), "Token has expired"),
    ):
        sock = await raw()
        joined = await sock.join(
            "realtime:rt-token", token, [{"event": "*", "schema": "public", "table": "hosts"}]
        )
        assert joined["payload"]["status"] == "ok"
        await sock.send("realtime:rt-token", "access_token", {"access_token": bad})
        system = await sock.recv_until(
            lambda f: f["event"] == "system" and f["payload"]["extension"] == "system"
        )
        assert system["payload"]["status"] == "error" and system["ref"] is None
        assert system["payload"]["message"].startswith(message)
        assert system["payload"]["channel"] == "rt-token"
        close = await sock.recv()
        assert close["event"] == "phx_close" and close["topic"] == "realtime:rt-token"
        # The channel is gone: a push to it is now an unmatched topic.
        ref = await sock.send("realtime:rt-token", "broadcast", {"event": "x", "payload": {}})
        reply = await sock.recv()
        assert reply["ref"] == ref and reply["payload"]["status"] == "error"


async def test_channel_closes_when_its_token_expires(backend, backend_info, raw, sign_in):
    token = await _user_token(sign_in, demo_user(backend_info, "viewer")["email"])
    short = backend._ctx.signer.sign({**_claims(token), "exp": int(time.time()) + 2})
    sock = await raw()
    joined = await sock.join(
        "realtime:rt-expiring", short, [{"event": "*", "schema": "public", "table": "hosts"}]
    )
    assert joined["payload"]["status"] == "ok"
    system = await sock.recv_until(
        lambda f: f["event"] == "system" and f["payload"]["extension"] == "system", SLOW
    )
    assert system["payload"]["message"].startswith("Token has expired")
    assert (await sock.recv())["event"] == "phx_close"


@pytest.mark.parametrize("kind", ["forged", "expired", "alg-none", "garbage"])
async def test_bad_tokens_are_refused_at_join_and_as_apikey(
    kind, sign_in, backend, backend_info, raw
):
    good = await _user_token(sign_in, demo_user(backend_info, "viewer")["email"])
    bad = {
        "forged": lambda: _forged(good),
        "expired": lambda: _expired(backend, _claims(good)),
        "alg-none": lambda: _alg_none({**_claims(good), "role": "service_role"}),
        "garbage": lambda: "not-a-jwt",
    }[kind]()
    sock = await raw()
    reply = await sock.join(
        "realtime:rt-bad", bad, [{"event": "*", "schema": "public", "table": "hosts"}]
    )
    assert reply["payload"]["status"] == "error" and reply["payload"]["response"]["reason"]
    async with aiohttp.ClientSession() as session:
        for key in (bad, ""):
            url = f"{backend_info.url}/realtime/v1/websocket?apikey={key}&vsn=1.0.0"
            with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
                await session.ws_connect(url)
            assert caught.value.status in (401, 403)
        async with session.get(f"{backend_info.url}/realtime/v1/websocket?apikey={bad}") as resp:
            assert resp.status in (401, 403)
            assert (await resp.json())["message"]


async def test_user_token_as_apikey_is_refused(sign_in, backend_info):
    token = await _user_token(sign_in, demo_user(backend_info, "viewer")["email"])
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
            await session.ws_connect(
                f"{backend_info.url}/realtime/v1/websocket?apikey={token}&vsn=1.0.0"
            )
        assert caught.value.status == 401


# -- protocol -------------------------------------------------------------------------------


async def test_malformed_frames_do_not_kill_the_socket(raw, backend_info):
    sock = await raw()
    for junk in ("{not json", "[1,2,3]", "42", '"str"', "{}", '{"topic": 5, "event": []}'):
        await sock.ws.send_str(junk)
    await sock.ws.send_bytes(b"\x00\x01binary")
    await sock.ws.send_str(json.dumps({"event": "phx_join", "ref": "77", "payload": {}}))
    missing = await sock.recv()
    assert missing["ref"] == "77" and missing["payload"]["status"] == "error"
    ref = await sock.send("realtime:nobody-joined", "whatever")
    unmatched = await sock.recv()
    assert (
        unmatched["ref"] == ref and unmatched["payload"]["response"]["reason"] == "unmatched topic"
    )
    joined = await sock.join("realtime:rt-junk", None, [{"event": "BOGUS", "table": "hosts"}])
    assert joined["payload"]["status"] == "error"
    joined = await sock.join("realtime:rt-junk", None)
    assert joined["payload"] == {"status": "ok", "response": {"postgres_changes": []}}
    ref = await sock.send("realtime:rt-junk", "no_such_event", {"x": 1})
    assert (await sock.recv())["payload"]["status"] == "error"
    ref = await sock.send("phoenix", "heartbeat")
    assert await sock.recv() == {
        "topic": "phoenix", "event": "phx_reply", "ref": ref, "join_ref": None,
        "payload": {"status": "ok", "response": {}},
    }  # fmt: skip


async def test_join_reply_echoes_bindings_in_order_with_ids_and_leave_closes(
    raw, backend_info, sign_in
):
    token = await _user_token(sign_in, demo_user(backend_info, "admin")["email"])
    team = demo_user(backend_info, "admin")["team_ids"][0]
    bindings = [
        {"event": "UPDATE", "schema": "public", "table": "hosts", "filter": f"team_id=eq.{team}"},
        {"event": "*", "schema": "public", "table": "deployments"},
        {"event": "INSERT", "schema": "public", "table": "hosts", "filter": 'port=in.(22,"2222")'},
    ]
    sock = await raw()
    reply = await sock.join("realtime:rt-echo", token, bindings)
    echoed = reply["payload"]["response"]["postgres_changes"]
    assert [{k: v for k, v in b.items() if k != "id"} for b in echoed] == bindings
    assert all(isinstance(b["id"], int) and b["id"] > 0 for b in echoed)
    assert echoed[0]["id"] == binding_id(bindings[0])
    system = await sock.recv()
    assert system["event"] == "system" and system["payload"]["status"] == "ok"
    assert system["payload"]["message"] == "Subscribed to PostgreSQL"
    ref = await sock.send("realtime:rt-echo", "phx_leave")
    assert (await sock.recv())["ref"] == ref
    close = await sock.recv()
    assert close["event"] == "phx_close" and close["topic"] == "realtime:rt-echo"


async def test_one_frame_per_topic_lists_exactly_the_matching_ids(raw, backend_info, sign_in, db):
    admin = demo_user(backend_info, "admin")
    team = admin["team_ids"][0]
    token = await _user_token(sign_in, admin["email"])
    bindings = [
        {"event": "INSERT", "schema": "public", "table": "hosts", "filter": f"team_id=eq.{team}"},
        {"event": "*", "schema": "public", "table": "hosts"},
        {"event": "DELETE", "schema": "public", "table": "hosts"},
        {"event": "INSERT", "schema": "public", "table": "hosts", "filter": "port=gt.1000"},
    ]
    sock = await raw()
    reply = await sock.join("realtime:rt-ids", token, bindings)
    ids = [b["id"] for b in reply["payload"]["response"]["postgres_changes"]]
    await db.insert_host(team, port=22)
    frame = await sock.recv_until(lambda f: f["event"] == "postgres_changes")
    assert sorted(frame["payload"]["ids"]) == sorted([ids[0], ids[1]])
    assert frame["ref"] is None and frame["topic"] == "realtime:rt-ids"


async def test_broadcast_and_presence_between_two_clients(sign_in, backend_info):
    alice = await sign_in(demo_user(backend_info, "admin")["email"])
    bob = await sign_in(demo_user(backend_info, "developer")["email"])
    got: asyncio.Queue = asyncio.Queue()
    synced: asyncio.Queue = asyncio.Queue()
    b_chan = bob.channel("rt-room").on_broadcast("ping", got.put_nowait)
    b_chan.on_presence_sync(lambda: synced.put_nowait(dict(b_chan.presence_state())))
    await b_chan.subscribe()
    a_chan = alice.channel("rt-room")
    await a_chan.subscribe()
    await a_chan.send_broadcast("ping", {"n": 1})
    message = await asyncio.wait_for(got.get(), WAIT)
    assert message["event"] == "ping" and message["payload"] == {"n": 1}
    await a_chan.track({"who": "alice"})
    while True:
        state = await asyncio.wait_for(synced.get(), WAIT)
        metas = [m for presences in state.values() for m in presences]
        if any(m.get("who") == "alice" for m in metas):
            break


# -- reconnects -----------------------------------------------------------------------------


async def test_client_recovers_after_gateway_restart(sign_in, backend, backend_info, db):
    dev = demo_user(backend_info, "developer")
    team = dev["team_ids"][0]
    client = await sign_in(dev["email"], options={"realtime": {"max_retries": 30}})
    _, changes, states = await subscribe(client, "rt-restart", filter=f"team_id=eq.{team}")
    await backend.restart_gateway()
    seen = []
    while "SUBSCRIBED" not in seen:
        state, _ = await asyncio.wait_for(states.get(), SLOW)
        seen.append(state)
    assert seen[0] == "CHANNEL_ERROR"
    host_id = await db.insert_host(team)
    assert data(await asyncio.wait_for(changes.get(), WAIT))["record"]["id"] == host_id


async def test_listener_loss_errors_channels_which_rejoin(sign_in, backend, backend_info, db):
    dev = demo_user(backend_info, "developer")
    team = dev["team_ids"][0]
    client = await sign_in(dev["email"])
    _, changes, states = await subscribe(client, "rt-listener", filter=f"team_id=eq.{team}")
    server = backend._runner.app[REALTIME]
    await db.execute("select pg_terminate_backend(%s)", (server.listener.backend_pid,))
    state, _ = await asyncio.wait_for(states.get(), SLOW)
    assert state == "CHANNEL_ERROR"  # the app's cue to resync
    state, _ = await asyncio.wait_for(states.get(), SLOW)
    assert state == "SUBSCRIBED"
    host_id = await db.insert_host(team)
    assert data(await asyncio.wait_for(changes.get(), WAIT))["record"]["id"] == host_id


# -- filters (unit) -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "row", "udt", "expected"),
    [
        ("team_id=eq.ABC", {"team_id": "abc"}, "uuid", True),
        ("name=eq.abc", {"name": "ABC"}, "text", False),
        ("port=eq.22", {"port": 22}, "int4", True),
        ("port=neq.22", {"port": 22}, "int4", False),
        ("port=gt.100", {"port": 1000}, "int4", True),
        ("port=gt.100", {"port": 99}, "int4", False),
        ("port=lte.22.0", {"port": 22}, "int4", True),
        ("port=lt.x", {"port": 22}, "int4", False),
        ('status=in.(online,"a,b")', {"status": "a,b"}, "text", True),
        ("status=in.(online,testing)", {"status": "failed"}, "text", False),
        ("is_windows=eq.true", {"is_windows": True}, "bool", True),
        ("status=eq.online", {"status": None}, "text", False),
        ("missing=eq.1", {"status": "x"}, "text", False),
        (
            "created_at=gte.2026-01-01",
            {"created_at": "2026-11-20T12:00:00+00:00"},
            "timestamptz",
            True,
        ),
    ],
)
def test_filter_matching(text, row, udt, expected):
    flt = Filter.parse(text)
    assert flt.matches(row, udt) is expected


@pytest.mark.parametrize(
    "text", ["team_id", "team_id=eq", "=eq.1", "a=like.x%", "a=in.1,2", 'a=in.("x)']
)
def test_filter_parse_errors(text):
    with pytest.raises(FilterError):
        Filter.parse(text)


# -- protocol 2.0.0 (supabase-js's default) -------------------------------------------------


async def test_vsn_2_joins_and_receives_changes_in_array_frames(raw, sign_in, backend_info, db):
    admin = demo_user(backend_info, "admin")
    team = admin["team_ids"][0]
    token = await _user_token(sign_in, admin["email"])
    sock = await raw(vsn="2.0.0")
    binding = {"event": "INSERT", "schema": "public", "table": "hosts",
               "filter": f"team_id=eq.{team}"}  # fmt: skip
    ref = await sock.send("realtime:rt-v2", "phx_join",
                          {"config": {"postgres_changes": [binding]}, "access_token": token})  # fmt: skip
    first = await sock.ws.receive(timeout=WAIT)
    join_ref, reply_ref, topic, event, payload = json.loads(first.data)
    assert (join_ref, reply_ref, topic, event) == (ref, ref, "realtime:rt-v2", "phx_reply")
    assert payload["status"] == "ok"
    assert payload["response"]["postgres_changes"][0]["id"] == binding_id(binding)
    system = await sock.recv()
    assert system["event"] == "system" and system["payload"]["status"] == "ok"

    host_id = await db.insert_host(team)
    frame = json.loads((await sock.ws.receive(timeout=WAIT)).data)
    assert frame[:4] == [None, None, "realtime:rt-v2", "postgres_changes"]
    assert frame[4]["data"]["record"]["id"] == host_id
    hb_ref = await sock.send("phoenix", "heartbeat")
    assert json.loads((await sock.ws.receive(timeout=WAIT)).data) == [
        None, hb_ref, "phoenix", "phx_reply", {"status": "ok", "response": {}}]  # fmt: skip


async def test_vsn_2_binary_broadcasts_reach_both_protocols(raw):
    """supabase-js 2.x sends every broadcast as a binary user-broadcast push (kind 3)."""
    sender = await raw(vsn="2.0.0")
    v2 = await raw(vsn="2.0.0")
    v1 = await raw()
    for sock in (sender, v2, v1):
        reply = await sock.join("realtime:rt-bin", None, broadcast={"ack": True})
        assert reply["payload"]["status"] == "ok"
    await sender.ws.send_bytes(
        user_broadcast_push("realtime:rt-bin", "ping", {"n": 1, "é": "ü"}, ref="9", join_ref="1")
    )
    ack = await sender.recv()
    assert ack["ref"] == "9" and ack["payload"]["status"] == "ok"
    got = await v2.recv()
    assert got["binary"][0] == 4  # a binary user broadcast, as Realtime sends it
    assert got["payload"] == {"type": "broadcast", "event": "ping", "payload": {"n": 1, "é": "ü"}}
    assert (await v1.recv())["payload"] == got["payload"]

    # A raw binary payload travels as bytes to 2.0.0 sockets; 1.0.0 cannot carry it.
    await sender.ws.send_bytes(user_broadcast_push("realtime:rt-bin", "blob", b"\x00\xff",
                                                   ref="10", binary=True))  # fmt: skip
    assert (await sender.recv())["ref"] == "10"
    assert (await v2.recv())["payload"]["payload"] == b"\x00\xff"
    # A text broadcast (what supabase-py sends) reaches 2.0.0 sockets as a text frame.
    ref = await v1.send("realtime:rt-bin", "broadcast",
                        {"type": "broadcast", "event": "pong", "payload": {"n": 2}})  # fmt: skip
    text = await v2.ws.receive(timeout=WAIT)
    assert text.type == aiohttp.WSMsgType.TEXT
    assert json.loads(text.data) == [None, None, "realtime:rt-bin", "broadcast",
                                     {"type": "broadcast", "event": "pong", "payload": {"n": 2}}]  # fmt: skip
    assert (await sender.recv())["payload"]["event"] == "pong"
    # The 1.0.0 socket's next frame is its own ack: the blob never reached it.
    after = await v1.recv()
    assert after["event"] == "phx_reply" and after["ref"] == ref


async def test_unknown_vsn_is_refused_at_the_upgrade(backend_info):
    async with aiohttp.ClientSession() as session:
        url = f"{backend_info.url}/realtime/v1/websocket?apikey={backend_info.anon_key}&vsn=3.0.0"
        with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
            await session.ws_connect(url)
        assert caught.value.status == 400


# -- the publication changes while we run ----------------------------------------------------


async def test_a_table_published_while_running_can_be_joined_and_delivers(
    sign_in, backend, backend_info, db
):
    dev = demo_user(backend_info, "developer")
    client = await sign_in(dev["email"])
    await subscribe(client, "rt-before")  # the publication is read and cached now
    table = f"rt_late_{uuid.uuid4().hex[:8]}"
    ident = sql.Identifier(table)
    await db.execute(sql.SQL("create table public.{} (id uuid primary key"
                             " default gen_random_uuid(), note text)").format(ident))  # fmt: skip
    try:
        await db.execute(sql.SQL("grant select on public.{} to authenticated").format(ident))
        await db.execute(
            sql.SQL("alter publication supabase_realtime add table public.{}").format(ident)
        )
        _, changes, states = await subscribe(client, "rt-late", table=table)
        await db.execute(sql.SQL("insert into public.{} (note) values ('hello')").format(ident))
        got = data(await asyncio.wait_for(changes.get(), WAIT))
        assert got["table"] == table and got["record"]["note"] == "hello"
        assert states.empty()  # no "Unable to subscribe" system error

        # Leaving the publication takes the capture away on the next read of it.
        await db.execute(
            sql.SQL("alter publication supabase_realtime drop table public.{}").format(ident)
        )
        server = backend._runner.app[REALTIME]
        assert ("public", table) not in await server.catalog.published(refresh=True)
        triggers = await (await db.execute(
            "select count(*) from pg_trigger where tgrelid = %s::regclass"
            " and tgname = 'opstui_realtime_capture'", (f"public.{table}",))).fetchone()  # fmt: skip
        assert triggers[0] == 0
    finally:
        await db.execute(sql.SQL("drop table if exists public.{}").format(ident))
