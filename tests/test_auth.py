"""/auth/v1 through the real supabase-py client: sign-in, refresh rotation, user, sign-out."""

from __future__ import annotations

import asyncio
import stat
import time
from pathlib import Path

import httpx
import jwt
import psycopg
import pytest
from supabase_auth import AsyncMemoryStorage
from supabase_auth.errors import AuthApiError

from tests.auth_support import API_VERSION, gateway_settings
from tests.conftest import demo_user


def _secret_path(backend) -> Path:
    return backend._cluster.data_dir / "jwt_secret"


async def test_sign_in_returns_a_session_for_the_user(sign_in, backend_info):
    admin = demo_user(backend_info, "admin")
    client = await sign_in(admin["email"])
    session = await client.auth.get_session()
    assert session is not None
    assert session.user.email == admin["email"]
    claims = jwt.decode(session.access_token, options={"verify_signature": False})
    assert claims["role"] == "authenticated"
    assert claims["sub"] == session.user.id
    assert claims["exp"] > time.time()


@pytest.mark.parametrize("password", ["wrong-password", ""])
async def test_wrong_password_is_refused(sign_in, backend_info, password):
    client = await sign_in()
    admin = demo_user(backend_info, "admin")
    with pytest.raises(Exception) as caught:
        await client.auth.sign_in_with_password({"email": admin["email"], "password": password})
    if password:
        assert isinstance(caught.value, AuthApiError)
        assert caught.value.code == "invalid_credentials"
        assert caught.value.status == 400
    assert await client.auth.get_session() is None


async def test_unknown_email_gets_the_same_answer_as_a_wrong_password(sign_in):
    client = await sign_in()
    with pytest.raises(AuthApiError) as caught:
        await client.auth.sign_in_with_password({"email": "nobody@nowhere.test", "password": "x"})
    assert caught.value.code == "invalid_credentials"


async def test_refresh_rotates_the_refresh_token(sign_in, backend_info):
    client = await sign_in(demo_user(backend_info, "developer")["email"])
    first = await client.auth.get_session()
    refreshed = await client.auth.refresh_session()
    assert refreshed.session is not None
    second = refreshed.session
    assert second.refresh_token != first.refresh_token
    assert second.access_token != first.access_token


async def test_two_clients_sharing_a_session_refresh_at_once_and_both_stay_signed_in(
    sign_in, backend_info
):
    """GoTrue's reuse interval: the TUI and `opstui watch` share one stored session."""
    email = demo_user(backend_info, "admin")["email"]
    shared = AsyncMemoryStorage()  # two processes reading one session file, in miniature
    tui = await sign_in(email, options={"storage": shared})
    watch = await sign_in(options={"storage": shared})
    assert (await watch.auth.get_session()).user.email == email

    for _round in range(2):
        # Both present the same refresh token at the same moment: one rotates it,
        # the other is answered with the session's new token instead of a theft alarm.
        a, b = await asyncio.gather(tui.auth.refresh_session(), watch.auth.refresh_session())
        assert a.session.refresh_token == b.session.refresh_token
        for client in (tui, watch):
            assert (await client.auth.get_user()).user.email == email
            rows = (await client.table("tenants").select("id").execute()).data
            assert rows, "a signed-in member sees their tenant"


async def test_reuse_of_an_old_refresh_token_after_the_interval_revokes_the_session(
    sign_in, backend, backend_info
):
    with gateway_settings(backend, refresh_token_reuse_interval=0):
        await _reuse_past_the_interval(sign_in, backend_info)


async def _reuse_past_the_interval(sign_in, backend_info):
    client = await sign_in(demo_user(backend_info, "developer")["email"])
    first = await client.auth.get_session()
    second = (await client.auth.refresh_session()).session
    other = await sign_in()
    # GoTrue still answers the token whose child is the live one (the client may
    # have lost the reply), with that child rather than a new token...
    again = await other.auth.refresh_session(first.refresh_token)
    assert again.session.refresh_token == second.refresh_token
    third = (await client.auth.refresh_session()).session

    # ...but a token two rotations old, past the interval, means someone else holds
    # the session: the whole session is revoked, so even its newest token is dead.
    with pytest.raises(AuthApiError) as reused:
        await other.auth.refresh_session(first.refresh_token)
    assert reused.value.code == "refresh_token_already_used"
    with pytest.raises(AuthApiError) as revoked:
        await other.auth.refresh_session(third.refresh_token)
    assert revoked.value.code == "refresh_token_not_found"
    with pytest.raises(AuthApiError) as gone:
        await other.auth.get_user(third.access_token)
    assert gone.value.code == "session_not_found"


async def test_unknown_refresh_token_is_refused(sign_in):
    client = await sign_in()
    with pytest.raises(AuthApiError) as caught:
        await client.auth.refresh_session("not-a-token-we-issued")
    assert caught.value.code == "refresh_token_not_found"


async def test_get_user_and_sign_out(sign_in, backend_info):
    viewer = demo_user(backend_info, "viewer")
    client = await sign_in(viewer["email"])
    session = await client.auth.get_session()
    response = await client.auth.get_user()
    assert response.user.email == viewer["email"]
    assert response.user.id == session.user.id

    await client.auth.sign_out()
    assert await client.auth.get_session() is None
    # The signed-out session is gone server-side: its access token no longer
    # identifies a live session, and its refresh token is dead.
    probe = await sign_in()
    with pytest.raises(AuthApiError) as gone:
        await probe.auth.get_user(session.access_token)
    assert gone.value.code == "session_not_found"
    with pytest.raises(AuthApiError):
        await probe.auth.refresh_session(session.refresh_token)


async def test_bad_tokens_are_refused_by_auth(backend, backend_info):
    secret = _secret_path(backend).read_text().strip()
    now = int(time.time())
    base = {"sub": "00000000-0000-0000-0000-000000000001", "role": "authenticated"}
    forged = jwt.encode({**base, "exp": now + 600}, "another-secret-entirely-000000000000", "HS256")
    expired = jwt.encode({**base, "exp": now - 3600}, secret, "HS256")
    unsigned = jwt.encode({**base, "exp": now + 600}, None, algorithm="none")
    async with httpx.AsyncClient(base_url=backend_info.url, headers=API_VERSION) as http:
        for token in (forged, expired, unsigned):
            reply = await http.get(
                "/auth/v1/user",
                headers={"apikey": backend_info.anon_key, "Authorization": f"Bearer {token}"},
            )
            assert reply.status_code == 403, reply.text
            assert reply.json()["code"] == "bad_jwt"
        no_bearer = await http.get("/auth/v1/user", headers={"apikey": backend_info.anon_key})
        assert no_bearer.status_code == 401
        assert no_bearer.json()["code"] == "no_authorization"
        no_key = await http.post("/auth/v1/token?grant_type=password", json={})
        assert no_key.status_code == 401


async def test_malformed_auth_bodies_get_json_errors(backend_info):
    headers = {"apikey": backend_info.anon_key, "Content-Type": "application/json", **API_VERSION}
    async with httpx.AsyncClient(base_url=backend_info.url, headers=headers) as http:
        garbage = await http.post("/auth/v1/token?grant_type=password", content=b"{not json")
        assert garbage.status_code == 400
        assert garbage.json()["code"] == "bad_json"
        listed = await http.post("/auth/v1/token?grant_type=password", json=[1, 2])
        assert listed.status_code == 400
        grant = await http.post("/auth/v1/token?grant_type=magic", json={})
        assert grant.status_code == 400
        assert grant.json()["code"] == "unsupported_grant_type"
        # ...and the gateway is still serving.
        alive = await http.get("/auth/v1/health")
        assert alive.status_code == 200


def test_secret_file_is_private_and_passwords_are_hashed(backend, backend_info):
    mode = stat.S_IMODE(_secret_path(backend).stat().st_mode)
    assert mode == 0o600
    with psycopg.connect(backend_info.db_url) as conn:
        rows = conn.execute("select email, encrypted_password from auth.users").fetchall()
    demo_passwords = {u["password"] for u in backend_info.users}
    assert rows
    for _email, hashed in rows:
        assert hashed.startswith("$2"), "passwords must be stored as bcrypt hashes"
        assert hashed not in demo_passwords
