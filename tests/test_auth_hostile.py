"""Hostile requests against /auth/v1 and the gateway's HTTP front.

Each gets a 4xx in GoTrue's shape (PostgREST's on /rest/v1), never a 500, a 503
(which supabase-py retries) or a traceback in the log; guessing passwords is
throttled without locking the real user out for good.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections import Counter

import aiohttp
import httpx
import psycopg
import pytest
from supabase_auth.errors import AuthApiError

from opstui.backend import sign_in_throttle
from opstui.backend.gateway import pg_error
from opstui.backend.sign_in_throttle import SignInThrottle
from tests.auth_support import API_VERSION, gateway_settings
from tests.conftest import demo_user

TOKEN = "/auth/v1/token?grant_type=password"
REFRESH = "/auth/v1/token?grant_type=refresh_token"


@pytest.fixture(autouse=True)
def fresh_throttle(backend):
    """Each test's failed sign-ins count in a throttle of its own, not the session's."""
    with gateway_settings(backend, sign_in_throttle=SignInThrottle()) as extras:
        yield extras


@pytest.fixture
async def http(backend_info):
    headers = {"apikey": backend_info.anon_key, **API_VERSION}
    async with httpx.AsyncClient(base_url=backend_info.url, headers=headers) as client:
        yield client


def _signed(backend, **claims) -> str:
    """A token signed with the install's real secret: only its claims are hostile."""
    return backend._ctx.signer.sign({"exp": int(time.time()) + 600, **claims})


def _deep(depth: int) -> str:
    return '{"email": ' + "[" * depth + "]" * depth + ', "password": "x"}'


async def _realtime_join_reply(backend_info, access_token: str) -> dict:
    url = backend_info.url.replace("http", "ws", 1)
    url += f"/realtime/v1/websocket?apikey={backend_info.anon_key}&vsn=1.0.0"
    join = {
        "topic": "realtime:hostile",
        "event": "phx_join",
        "payload": {"config": {}, "access_token": access_token},
        "ref": "1",
        "join_ref": "1",
    }
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        await ws.send_json(join)
        async with asyncio.timeout(10):
            while True:
                frame = json.loads((await ws.receive()).data)
                if frame.get("ref") == "1":
                    return frame


@pytest.mark.parametrize(
    "role", [["authenticated"], {"role": "service_role"}], ids=["list", "object"]
)
async def test_a_signed_token_whose_role_is_not_a_string_is_refused_everywhere(
    backend, backend_info, http, role
):
    token = _signed(backend, sub="00000000-0000-0000-0000-000000000001", role=role)
    bearer = {"Authorization": f"Bearer {token}"}

    user = await http.get("/auth/v1/user", headers=bearer)
    assert user.status_code == 403, user.text
    assert user.json()["code"] == "bad_jwt"
    assert "role claim must be a string" in user.json()["message"]

    rest = await http.get("/rest/v1/tenants?select=id", headers=bearer)
    assert rest.status_code == 401, rest.text
    assert rest.json()["code"] == "PGRST301"

    as_key = await http.get("/rest/v1/tenants?select=id", headers={"apikey": token})
    assert as_key.status_code == 401, as_key.text
    assert as_key.json()["code"] == "PGRST301"

    joined = await _realtime_join_reply(backend_info, token)
    assert joined["event"] == "phx_reply"
    assert joined["payload"]["status"] == "error"


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": ["00000000-0000-0000-0000-000000000001"]},
        {"sub": "not-a-uuid"},
        {"sub": "00000000-0000-0000-0000-000000000001", "session_id": {"id": 1}},
        {"sub": "00000000-0000-0000-0000-000000000001", "session_id": "x'; --"},
    ],
    ids=["sub-list", "sub-not-uuid", "session-object", "session-not-uuid"],
)
async def test_junk_in_a_signed_tokens_ids_is_a_bad_jwt(backend, http, claims):
    token = _signed(backend, role="authenticated", **claims)
    for method, path in (("GET", "/auth/v1/user"), ("POST", "/auth/v1/logout")):
        reply = await http.request(method, path, headers={"Authorization": f"Bearer {token}"})
        assert reply.status_code == 403, reply.text
        assert reply.json()["code"] == "bad_jwt"


@pytest.mark.parametrize("path", [TOKEN, REFRESH])
async def test_json_nested_ten_thousand_deep_is_bad_json(http, path):
    for body in (_deep(10_000), "[" * 10_000 + "]" * 10_000, '{"a":' * 10_000 + "1" + "}" * 10_000):
        reply = await http.post(path, content=body, headers={"Content-Type": "application/json"})
        assert reply.status_code == 400, reply.text
        assert reply.json()["code"] == "bad_json"


async def test_passwords_over_72_bytes_are_refused_as_gotrue_does(sign_in, backend_info):
    client = await sign_in()
    email = demo_user(backend_info, "admin")["email"]
    # 72 bytes is still a password to check...
    with pytest.raises(AuthApiError) as checked:
        await client.auth.sign_in_with_password({"email": email, "password": "p" * 72})
    assert checked.value.code == "invalid_credentials"
    # ...73 bytes (37 characters, most of them two bytes) is not: bcrypt ignores the rest.
    with pytest.raises(AuthApiError) as refused:
        await client.auth.sign_in_with_password({"email": email, "password": "é" * 36 + "x"})
    assert refused.value.status == 400
    assert refused.value.code == "validation_failed"
    assert str(refused.value) == "Password cannot be longer than 72 characters"


async def test_nul_bytes_in_emails_and_refresh_tokens_are_validation_errors(sign_in):
    # Through supabase-py: a 503 here would be an AuthRetryableError, retried for ever.
    client = await sign_in()
    with pytest.raises(AuthApiError) as email:
        await client.auth.sign_in_with_password({"email": "a\x00@acme.test", "password": "x"})
    assert (email.value.status, email.value.code) == (400, "validation_failed")
    with pytest.raises(AuthApiError) as refresh:
        await client.auth.refresh_session("abcdef\x00ghijkl")
    assert (refresh.value.status, refresh.value.code) == (400, "validation_failed")


async def test_auth_errors_take_the_shape_of_the_api_version_asked_for(backend_info):
    body = {"email": "nobody@nowhere.test", "password": "wrong"}
    async with httpx.AsyncClient(base_url=backend_info.url) as http:
        key = {"apikey": backend_info.anon_key}
        legacy = await http.post(TOKEN, json=body, headers=key)
        assert legacy.status_code == 400
        assert legacy.json() == {
            "code": 400,
            "error_code": "invalid_credentials",
            "msg": "Invalid login credentials",
        }
        assert "X-Supabase-Api-Version" not in legacy.headers
        current = await http.post(TOKEN, json=body, headers={**key, **API_VERSION})
        assert current.json() == {
            "code": "invalid_credentials",
            "message": "Invalid login credentials",
        }
        assert current.headers["X-Supabase-Api-Version"] == "2024-01-01"

        # Failures raised outside the auth handlers are GoTrue-shaped under /auth/v1 too.
        no_key = await http.post(TOKEN, json=body, headers=API_VERSION)
        assert no_key.status_code == 401
        assert no_key.json()["code"] == "no_authorization"
        missing = await http.get("/auth/v1/no-such-endpoint", headers={**key, **API_VERSION})
        assert missing.status_code == 404
        assert set(missing.json()) == {"code", "message"}
        wrong_method = await http.get("/auth/v1/token", headers={**key, **API_VERSION})
        assert wrong_method.status_code == 405
        assert set(wrong_method.json()) == {"code", "message"}


async def test_oversized_request_lines_and_headers_get_json_4xx_and_one_log_line(http, caplog):
    caplog.set_level(logging.INFO)
    long_line = await http.get("/auth/v1/user", params={"q": "a" * 9000})
    assert long_line.status_code == 414
    assert long_line.json()["code"] == "validation_failed"
    long_header = await http.get("/rest/v1/tenants", headers={"X-Note": "secret-" + "b" * 9000})
    assert long_header.status_code == 431
    assert long_header.json()["code"] == "PGRST100"
    assert (await http.get("/auth/v1/health")).status_code == 200

    refused = [r for r in caplog.records if "refused a request" in r.getMessage()]
    assert len(refused) == 2
    assert all(r.exc_info is None for r in caplog.records)
    assert "secret-" not in caplog.text, "the log must never quote the request"


async def test_a_client_that_hangs_up_mid_request_is_one_log_line(backend_info, caplog):
    caplog.set_level(logging.INFO)
    host, port = backend_info.url.removeprefix("http://").split(":")
    head = (
        f"POST {TOKEN} HTTP/1.1\r\nHost: {host}\r\napikey: {backend_info.anon_key}\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
        '{"email": "half'
    )
    with socket.create_connection((host, int(port))) as raw:
        raw.sendall(head.encode())
    async with asyncio.timeout(10):
        while not any("went away" in r.getMessage() for r in caplog.records):
            await asyncio.sleep(0.05)
    gone = [r for r in caplog.records if "went away" in r.getMessage()]
    assert len(gone) == 1
    assert gone[0].getMessage().endswith("POST /auth/v1/token")
    assert all(r.exc_info is None for r in caplog.records)


async def test_fifty_wrong_passwords_at_once_are_throttled_and_the_user_gets_back_in(
    backend, backend_info, http, sign_in
):
    now = [1_000.0]
    throttle = SignInThrottle(per_email=5, per_address=100, window_seconds=60, clock=lambda: now[0])
    admin = demo_user(backend_info, "admin")
    with gateway_settings(backend, sign_in_throttle=throttle):
        guesses = [{"email": admin["email"], "password": f"guess-{i}"} for i in range(50)]
        replies = await asyncio.gather(*(http.post(TOKEN, json=g) for g in guesses))
        assert Counter(r.status_code for r in replies) == {400: 5, 429: 45}
        throttled = next(r for r in replies if r.status_code == 429)
        assert throttled.json() == {
            "code": "over_request_rate_limit",
            "message": "Request rate limit reached",
        }
        assert 1 <= int(throttled.headers["Retry-After"]) <= 60

        # The right password is refused too while throttled, so a guesser learns nothing.
        client = await sign_in()
        credentials = {"email": admin["email"], "password": admin["password"]}
        with pytest.raises(AuthApiError) as caught:
            await client.auth.sign_in_with_password(credentials)
        assert (caught.value.status, caught.value.code) == (429, "over_request_rate_limit")

        # A sliding window, not a lockout: once the failures age out, the user is back.
        now[0] += 61
        signed_in = await client.auth.sign_in_with_password(credentials)
        assert signed_in.session is not None


async def test_guesses_spread_over_many_emails_are_throttled_per_address(backend, http):
    throttle = SignInThrottle(per_email=100, per_address=4, window_seconds=60)
    with gateway_settings(backend, sign_in_throttle=throttle):
        statuses = []
        for i in range(6):
            body = {"email": f"nobody-{i}@nowhere.test", "password": "guess"}
            statuses.append((await http.post(TOKEN, json=body)).status_code)
    assert statuses == [400, 400, 400, 400, 429, 429]


async def test_successful_sign_ins_are_never_throttled(backend, backend_info, sign_in):
    throttle = SignInThrottle(per_email=2, per_address=2, window_seconds=60)
    viewer = demo_user(backend_info, "viewer")
    with gateway_settings(backend, sign_in_throttle=throttle):
        client = await sign_in()
        for _ in range(6):
            await client.auth.sign_in_with_password(
                {"email": viewer["email"], "password": viewer["password"]}
            )
        for _ in range(2):
            with pytest.raises(AuthApiError) as wrong:
                await client.auth.sign_in_with_password(
                    {"email": viewer["email"], "password": "no"}
                )
            assert wrong.value.code == "invalid_credentials"
        with pytest.raises(AuthApiError) as throttled:
            await client.auth.sign_in_with_password({"email": viewer["email"], "password": "no"})
        assert throttled.value.code == "over_request_rate_limit"


def test_a_flood_of_made_up_emails_cannot_grow_the_throttle_without_bound(monkeypatch):
    monkeypatch.setattr(sign_in_throttle, "MAX_KEYS", 50)
    now = [0.0]
    throttle = SignInThrottle(
        per_email=3, per_address=10**9, window_seconds=60, clock=lambda: now[0]
    )
    for i in range(500):
        assert throttle.begin(f"made-up-{i}@nowhere.test", "127.0.0.1") is not None
        now[0] += 0.01
    assert len(throttle._emails.failures) <= 50
    # The newest emails are still counted.
    for _ in range(2):
        throttle.begin("made-up-499@nowhere.test", "127.0.0.1")
    assert throttle.begin("made-up-499@nowhere.test", "127.0.0.1") is None


def test_errors_without_a_sqlstate_are_400_unless_the_database_is_gone(backend_info, tmp_path):
    # supabase-py retries a 503 as "retryable": only a lost database may get one.
    with psycopg.connect(backend_info.db_url) as conn, pytest.raises(psycopg.Error) as nul:
        conn.execute("select %s::text", ("a\x00b",))
    assert nul.value.sqlstate is None
    assert pg_error(nul.value, "authenticated").status == 400
    with pytest.raises(psycopg.OperationalError) as gone:
        psycopg.connect(f"host={tmp_path} dbname=nothing connect_timeout=2")
    assert gone.value.sqlstate is None
    assert pg_error(gone.value, "anon").status == 503
