"""Realtime Authorization: private channels are authorized by the RLS policies on
realtime.messages, as on Supabase; the app's migration lets only a team's members use
`team:<team id>` and `team:<team id>:<anything>`."""

from __future__ import annotations

import asyncio
import uuid

import jwt
import psycopg
import pytest

from opstui.backend.realtime import REALTIME
from opstui.backend.realtime_authorization import BROADCAST
from tests.conftest import demo_user
from tests.realtime_support import WAIT, raw_sockets, user_token

TEAM = "f3e0"  # the demo team of viewer@acme.test (admin, dev, viewer, contrib are members)


@pytest.fixture
async def raw(backend_info):
    async with raw_sockets(backend_info) as open_socket:
        yield open_socket


def team_topic(backend_info, suffix: str = "") -> str:
    team = demo_user(backend_info, "viewer")["team_ids"][0]
    assert team.startswith(TEAM)
    return f"team:{team}{suffix}"


def refusal(topic: str) -> str:
    return f"Unauthorized: You do not have permissions to read from this Channel topic: {topic}"


async def test_team_members_hear_each_other_on_a_private_team_topic(sign_in, backend_info):
    topic = team_topic(backend_info)
    viewer = await sign_in("viewer@acme.test")
    dev = await sign_in("dev@acme.test")
    heard: asyncio.Queue = asyncio.Queue()
    private = {"config": {"private": True, "broadcast": {"self": False, "ack": False}}}
    listening = viewer.channel(topic, private).on_broadcast("ping", heard.put_nowait)
    states: list = []
    await listening.subscribe(lambda s, e: states.append((s.value, e)))
    speaking = dev.channel(topic, private)
    await speaking.subscribe(lambda s, e: states.append((s.value, e)))
    assert [s for s, _ in states] == ["SUBSCRIBED", "SUBSCRIBED"], states
    await speaking.send_broadcast("ping", {"deploy": "started"})
    message = await asyncio.wait_for(heard.get(), WAIT)
    assert message["payload"] == {"deploy": "started"}


@pytest.mark.parametrize("who", ["tester@acme.test", "ops@globex.test", None])
async def test_non_members_and_anon_are_refused_a_private_team_topic(
    who, raw, sign_in, backend_info
):
    token = await user_token(sign_in, who) if who else None  # None: the anon key
    for topic in (team_topic(backend_info), team_topic(backend_info, ":deployments")):
        sock = await raw()
        reply = await sock.join(f"realtime:{topic}", token, private=True)
        assert reply["payload"] == {"status": "error", "response": {"reason": refusal(topic)}}


async def test_members_may_use_subtopics_but_not_lookalike_topics(raw, sign_in, backend_info):
    token = await user_token(sign_in, "viewer@acme.test")
    team = team_topic(backend_info)
    for topic, allowed in (
        (f"{team}:deployments", True),
        (f"{team}:", True),
        (f"{team}x", False),
        (f"teams:{team.removeprefix('team:')}", False),
        (f"team:{team.removeprefix('team:').upper()}", False),
        ("team:not-a-uuid", False),
        (f"team:{demo_user(backend_info, 'tester')['team_ids'][0]}", False),
    ):
        sock = await raw()
        reply = await sock.join(f"realtime:{topic}", token, private=True)
        assert (reply["payload"]["status"] == "ok") is allowed, (topic, reply)


async def test_a_public_channel_of_the_same_name_hears_nothing_private(raw, sign_in, backend_info):
    topic = f"realtime:{team_topic(backend_info)}"
    member_a = await raw()
    member_b = await raw()
    eavesdropper = await raw()  # anon, on the public channel of the same name
    public_peer = await raw()
    for sock, email in ((member_a, "viewer@acme.test"), (member_b, "dev@acme.test")):
        token = await user_token(sign_in, email)
        assert (await sock.join(topic, token, private=True))["payload"]["status"] == "ok"
    for sock in (eavesdropper, public_peer):
        assert (await sock.join(topic, None))["payload"]["status"] == "ok"

    await member_b.send(topic, "broadcast", {"type": "broadcast", "event": "secret",
                                             "payload": {"n": 1}})  # fmt: skip
    assert (await member_a.recv())["payload"]["event"] == "secret"
    await public_peer.send(topic, "broadcast", {"type": "broadcast", "event": "open",
                                                "payload": {"n": 2}})  # fmt: skip
    # The eavesdropper's first broadcast is the public one: the secret never reached it.
    assert (await eavesdropper.recv())["payload"]["event"] == "open"


@pytest.fixture
async def read_only_topic(backend_info):
    """A topic authenticated users may read but not write (a policy of the test's own)."""
    topic = f"rt-read-only-{uuid.uuid4().hex[:8]}"
    name = f"test read only {topic}"
    async with await psycopg.AsyncConnection.connect(backend_info.db_url, autocommit=True) as db:
        await db.execute(
            psycopg.sql.SQL(
                "create policy {} on realtime.messages for select to authenticated"
                " using ((select realtime.topic()) = {})"
            ).format(psycopg.sql.Identifier(name), psycopg.sql.Literal(topic))
        )
        try:
            yield topic
        finally:
            await db.execute(
                psycopg.sql.SQL("drop policy {} on realtime.messages").format(
                    psycopg.sql.Identifier(name)
                )
            )


async def test_sending_needs_an_insert_policy(raw, sign_in, read_only_topic):
    private, control = f"realtime:{read_only_topic}", f"realtime:{read_only_topic}-control"
    speaker, listener = await raw(), await raw()
    for sock, email in ((speaker, "dev@acme.test"), (listener, "viewer@acme.test")):
        token = await user_token(sign_in, email)
        joined = await sock.join(private, token, private=True, presence={"enabled": True})
        assert joined["payload"]["status"] == "ok"
        await sock.recv_until(lambda f: f["event"] == "presence_state")  # reads are allowed
        assert (await sock.join(control, token))["payload"]["status"] == "ok"

    await speaker.send(private, "broadcast", {"type": "broadcast", "event": "dropped",
                                              "payload": {}})  # fmt: skip
    await speaker.send(control, "broadcast", {"type": "broadcast", "event": "delivered",
                                              "payload": {}})  # fmt: skip
    first = await listener.recv_until(lambda f: f["event"] == "broadcast")
    assert first["topic"] == control and first["payload"]["event"] == "delivered"

    ref = await speaker.send(private, "presence", {"type": "presence", "event": "track",
                                                   "payload": {"who": "dev"}})  # fmt: skip
    refused = await speaker.recv_until(lambda f: f["ref"] == ref)
    assert refused["payload"]["status"] == "error"


async def test_presence_between_members_of_a_private_team_topic(raw, sign_in, backend_info):
    topic = f"realtime:{team_topic(backend_info, ':presence')}"
    watcher, tracker = await raw(), await raw()
    for sock, email in ((watcher, "viewer@acme.test"), (tracker, "dev@acme.test")):
        token = await user_token(sign_in, email)
        joined = await sock.join(topic, token, private=True, presence={"enabled": True,
                                                                       "key": email})  # fmt: skip
        assert joined["payload"]["status"] == "ok"
        await sock.recv_until(lambda f: f["event"] == "presence_state")
    ref = await tracker.send(topic, "presence", {"type": "presence", "event": "track",
                                                 "payload": {"screen": "hosts"}})  # fmt: skip
    assert (await tracker.recv_until(lambda f: f["ref"] == ref))["payload"]["status"] == "ok"
    diff = await watcher.recv_until(lambda f: f["event"] == "presence_diff")
    metas = diff["payload"]["joins"]["dev@acme.test"]["metas"]
    assert metas[0]["screen"] == "hosts"


async def test_a_token_update_to_a_non_member_closes_the_private_channel(
    raw, sign_in, backend_info
):
    team = team_topic(backend_info)
    topic = f"realtime:{team}"
    sock = await raw()
    member = await user_token(sign_in, "viewer@acme.test")
    assert (await sock.join(topic, member, private=True))["payload"]["status"] == "ok"
    outsider = await user_token(sign_in, "tester@acme.test")
    await sock.send(topic, "access_token", {"access_token": outsider}, ref=False)
    system = await sock.recv_until(lambda f: f["event"] == "system")
    assert system["payload"]["status"] == "error"
    assert system["payload"]["message"] == refusal(team).removeprefix("Unauthorized: ")
    assert (await sock.recv())["event"] == "phx_close"


async def test_policy_checks_only_ever_act_as_an_api_role(backend, backend_info, sign_in):
    """The checks run on the gateway's privileged pool: a role it may not act as (a
    superuser's, say) must never be taken on, whatever the claims say."""
    server = backend._runner.app[REALTIME]
    topic = team_topic(backend_info)
    token = await user_token(sign_in, "viewer@acme.test")
    member = jwt.decode(token, options={"verify_signature": False})
    assert await server.authorizer.read(member, topic, (BROADCAST,)) == {BROADCAST: True}
    assert await server.authorizer.write(member, topic, BROADCAST) is True
    for role in ("supabase_admin", "postgres", "supabase_realtime_admin", "no_such_role"):
        claims = {**member, "role": role}
        assert await server.authorizer.read(claims, topic, (BROADCAST,)) == {BROADCAST: False}
        assert await server.authorizer.write(claims, topic, BROADCAST) is False
