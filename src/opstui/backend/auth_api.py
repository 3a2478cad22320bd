"""`/auth/v1`: the slice of GoTrue that supabase-py's auth client uses.

Password grant (with failed attempts throttled), refresh grant with rotation,
GoTrue's reuse interval and reuse detection, get user and logout. Users live in
`auth.users` with bcrypt hashes, exactly where Supabase keeps them; sessions and
refresh tokens in `auth.sessions` and `auth.refresh_tokens`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

import bcrypt
from aiohttp import web
from psycopg.rows import dict_row

from opstui.backend.gateway import (
    API_VERSION_2024_01_01,
    API_VERSION_HEADER,
    AuthApiError,
    GatewayContext,
    bearer_token,
    check_api_key,
    context,
)
from opstui.backend.sign_in_throttle import SignInThrottle
from opstui.backend.tokens import TokenError

log = logging.getLogger(__name__)

# A hash of a random password, checked when the email is unknown so that a
# missing account and a wrong password take the same time.
_DUMMY_HASH = bcrypt.hashpw(b"not-a-real-password", bcrypt.gensalt(rounds=10))

# bcrypt reads only the first 72 bytes; GoTrue refuses longer passwords (password.go).
MAX_PASSWORD_BYTES = 72
# GOTRUE_SECURITY_REFRESH_TOKEN_REUSE_INTERVAL's default, in seconds; the gateway reads
# `ctx.extras["refresh_token_reuse_interval"]` first.
REFRESH_TOKEN_REUSE_INTERVAL = 10
# auth.refresh_tokens.token is varchar(255): nothing longer was ever issued.
_MAX_REFRESH_TOKEN_LENGTH = 255

_USER_COLUMNS = (
    "id, aud, role, email, email_confirmed_at, phone, confirmed_at, last_sign_in_at,"
    " raw_app_meta_data, raw_user_meta_data, created_at, updated_at, is_anonymous,"
    " banned_until, deleted_at"
)


def setup(app: web.Application, ctx: GatewayContext) -> None:
    ctx.extras.setdefault("sign_in_throttle", SignInThrottle())
    app.router.add_post("/auth/v1/token", token)
    app.router.add_get("/auth/v1/user", get_user)
    app.router.add_post("/auth/v1/logout", logout)
    app.router.add_get("/auth/v1/health", health)


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def _app_metadata(row: dict[str, Any]) -> dict[str, Any]:
    return {"provider": "email", "providers": ["email"], **(row["raw_app_meta_data"] or {})}


def user_json(row: dict[str, Any]) -> dict[str, Any]:
    """GoTrue's User shape (the fields supabase-py's model needs, and the usual extras)."""
    return {
        "id": str(row["id"]),
        "aud": row["aud"] or "authenticated",
        "role": row["role"] or "authenticated",
        "email": row["email"],
        "email_confirmed_at": _iso(row["email_confirmed_at"]),
        "phone": row["phone"] or "",
        "confirmed_at": _iso(row["confirmed_at"] or row["email_confirmed_at"]),
        "last_sign_in_at": _iso(row["last_sign_in_at"]),
        "app_metadata": _app_metadata(row),
        "user_metadata": row["raw_user_meta_data"] or {},
        "identities": [],
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
        "is_anonymous": bool(row["is_anonymous"]),
    }


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json(loads=json.loads)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise AuthApiError(400, "bad_json", "Could not parse request body as JSON") from None
    except RecursionError:
        raise AuthApiError(
            400, "bad_json", "Could not parse request body as JSON: nested too deeply"
        ) from None
    if not isinstance(body, dict):
        raise AuthApiError(400, "bad_json", "Request body must be a JSON object")
    return body


async def health(request: web.Request) -> web.Response:
    return web.json_response({"name": "opstui-embedded-auth", "description": "GoTrue subset"})


async def token(request: web.Request) -> web.Response:
    check_api_key(request)
    grant_type = request.query.get("grant_type")
    body = await _json_body(request)
    # Authorization is ignored here on purpose: after a failed login supabase-py
    # still sends the previous user's JWT (contract note §1).
    if grant_type == "password":
        return await _password_grant(context(request), body, address=request.remote or "")
    if grant_type == "refresh_token":
        return await _refresh_grant(context(request), body)
    raise AuthApiError(
        400,
        "unsupported_grant_type",
        f"unsupported grant_type {grant_type!r}; use password or refresh_token",
    )


async def _password_grant(
    ctx: GatewayContext, body: dict[str, Any], *, address: str
) -> web.Response:
    email = body.get("email")
    password = body.get("password")
    if not isinstance(email, str) or not isinstance(password, str) or not email or not password:
        raise AuthApiError(400, "validation_failed", "email and password are required")
    if "\x00" in email:
        raise AuthApiError(
            400, "validation_failed", "Email address must not contain NUL characters"
        )
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        raise AuthApiError(
            400,
            "validation_failed",
            f"Password cannot be longer than {MAX_PASSWORD_BYTES} characters",
        )
    throttle: SignInThrottle = ctx.extras["sign_in_throttle"]
    ticket = throttle.begin(email, address)
    if ticket is None:
        # Refused before the password is looked at: a guesser learns nothing more.
        wait = throttle.retry_after(email, address)
        raise AuthApiError(
            429,
            "over_request_rate_limit",
            "Request rate limit reached",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
    session = await _check_password(ctx, email, password)
    throttle.succeeded(email, address, ticket)
    return session


async def _check_password(ctx: GatewayContext, email: str, password: str) -> web.Response:
    pool = ctx.extras["admin_pool"]
    async with pool.connection() as conn:
        cur = await conn.cursor(row_factory=dict_row).execute(
            f"select {_USER_COLUMNS}, encrypted_password from auth.users"  # noqa: S608 - constant
            " where lower(email) = lower(%s) and deleted_at is null",
            (email,),
        )
        row = await cur.fetchone()
    stored = (row or {}).get("encrypted_password") or ""
    hashed = stored.encode() if stored.startswith("$2") else _DUMMY_HASH
    # bcrypt is deliberately slow (~50 ms): keep it off the event loop.
    matches = await asyncio.to_thread(bcrypt.checkpw, password.encode(), hashed)
    if row is None or not matches or not stored:
        raise AuthApiError(400, "invalid_credentials", "Invalid login credentials")
    _refuse_banned(row)
    return await _issue_session(ctx, row)


def _refuse_banned(row: dict[str, Any]) -> None:
    banned_until = row.get("banned_until")
    if banned_until and banned_until > datetime.now(UTC):
        raise AuthApiError(400, "user_banned", "User is banned")


async def _refresh_grant(ctx: GatewayContext, body: dict[str, Any]) -> web.Response:
    presented = body.get("refresh_token")
    if not isinstance(presented, str) or not presented:
        raise AuthApiError(400, "validation_failed", "refresh_token is required")
    if "\x00" in presented or len(presented) > _MAX_REFRESH_TOKEN_LENGTH:
        raise AuthApiError(400, "validation_failed", "Refresh token is not valid")
    interval = float(ctx.extras.get("refresh_token_reuse_interval", REFRESH_TOKEN_REUSE_INTERVAL))
    pool = ctx.extras["admin_pool"]
    stolen = False
    async with pool.connection() as conn:
        # One transaction, the presented token's row locked: two clients refreshing
        # the same token at once are served one after the other, and the second sees
        # the first's new token (as GoTrue's tokens/service.go RefreshTokenGrant does).
        async with conn.transaction():
            cur = await conn.cursor(row_factory=dict_row).execute(
                "select user_id, revoked, session_id,"
                " now() > coalesce(updated_at, '-infinity') + make_interval(secs => %s)"
                " as past_reuse_interval"
                " from auth.refresh_tokens where token = %s for update",
                (interval, presented),
            )
            token_row = await cur.fetchone()
            if token_row is None or token_row["session_id"] is None:
                raise AuthApiError(
                    400, "refresh_token_not_found", "Invalid Refresh Token: Refresh Token Not Found"
                )
            session_id = str(token_row["session_id"])
            issued = None
            if token_row["revoked"]:
                cur = await conn.execute(
                    "select token, parent from auth.refresh_tokens"
                    " where session_id = %s and not revoked order by id desc limit 1",
                    (session_id,),
                )
                active = await cur.fetchone()
                if active is not None and active[1] == presented:
                    # Its child is the session's live token: the client never stored the
                    # answer, or a sibling process sharing the session refreshed first.
                    # Answer with that token rather than a new one.
                    issued = active[0]
                elif token_row["past_reuse_interval"]:
                    # Reuse of a rotated token: someone else may hold this session.
                    # Kill the whole session (its tokens cascade); raise after the commit.
                    await conn.execute("delete from auth.sessions where id = %s", (session_id,))
                    stolen = True
            if not stolen:
                user = await _refreshing_user(conn, token_row["user_id"])
                if issued is None:
                    issued = await _rotate(conn, presented, user, session_id, token_row["revoked"])
                await conn.execute(
                    "update auth.sessions set updated_at = now() where id = %s", (session_id,)
                )
    if stolen:
        log.warning("refresh token reuse detected; session revoked")
        raise AuthApiError(400, "refresh_token_already_used", "Invalid Refresh Token: Already Used")
    return _session_response(ctx, user, refresh_token=issued, session_id=session_id)


async def _refreshing_user(conn: Any, user_id: str) -> dict[str, Any]:
    cur = await conn.cursor(row_factory=dict_row).execute(
        f"select {_USER_COLUMNS} from auth.users where id = %s::uuid and deleted_at is null",  # noqa: S608
        (user_id,),
    )
    user = await cur.fetchone()
    if user is None:
        raise AuthApiError(400, "user_not_found", "User from refresh token no longer exists")
    _refuse_banned(user)
    return user


async def _rotate(
    conn: Any, presented: str, user: dict[str, Any], session_id: str, revoked: bool
) -> str:
    """Revoke the presented token (if it is not already) and issue its child."""
    if not revoked:
        # updated_at marks the rotation: the reuse interval runs from here.
        await conn.execute(
            "update auth.refresh_tokens set revoked = true, updated_at = now() where token = %s",
            (presented,),
        )
    return await _insert_refresh_token(conn, user, parent=presented, session_id=session_id)


async def _insert_refresh_token(
    conn: Any, user: dict[str, Any], *, parent: str | None, session_id: str
) -> str:
    refresh_token = secrets.token_urlsafe(24)
    await conn.execute(
        "insert into auth.refresh_tokens (token, user_id, revoked, created_at, updated_at, parent, session_id)"
        " values (%s, %s, false, now(), now(), %s, %s)",
        (refresh_token, str(user["id"]), parent, session_id),
    )
    return refresh_token


async def _issue_session(ctx: GatewayContext, user: dict[str, Any]) -> web.Response:
    """A new session and its first refresh token, for a password sign-in."""
    pool = ctx.extras["admin_pool"]
    async with pool.connection() as conn:
        async with conn.transaction():
            cur = await conn.execute(
                "insert into auth.sessions (id, user_id, created_at, updated_at)"
                " values (gen_random_uuid(), %s, now(), now()) returning id",
                (user["id"],),
            )
            session_id = str((await cur.fetchone())[0])
            await conn.execute(
                "update auth.users set last_sign_in_at = now() where id = %s", (user["id"],)
            )
            refresh_token = await _insert_refresh_token(
                conn, user, parent=None, session_id=session_id
            )
    return _session_response(ctx, user, refresh_token=refresh_token, session_id=session_id)


def _session_response(
    ctx: GatewayContext, user: dict[str, Any], *, refresh_token: str, session_id: str
) -> web.Response:
    ttl = int(ctx.extras.get("access_token_ttl", 3600))
    access_token, expires_at = ctx.signer.access_token(
        user_id=str(user["id"]),
        email=user["email"],
        session_id=session_id,
        app_metadata=_app_metadata(user),
        user_metadata=user["raw_user_meta_data"] or {},
        ttl=ttl,
    )
    return web.json_response(
        {
            "access_token": access_token,
            "token_type": "bearer",
            "expires_in": ttl,
            "expires_at": expires_at,
            "refresh_token": refresh_token,
            "user": user_json(user),
        },
        headers={API_VERSION_HEADER: API_VERSION_2024_01_01},
    )


def _user_claims(request: web.Request) -> dict[str, Any]:
    check_api_key(request)
    raw = bearer_token(request)
    if raw is None:
        raise AuthApiError(401, "no_authorization", "This endpoint requires a Bearer token")
    try:
        claims = context(request).signer.verify(raw)
    except TokenError as exc:
        reason = str(exc).removeprefix("Invalid JWT: ")
        raise AuthApiError(
            403, "bad_jwt", f"invalid JWT: unable to parse or verify signature, {reason}"
        ) from None
    if claims.get("role") != "authenticated" or not claims.get("sub"):
        raise AuthApiError(403, "bad_jwt", "invalid claim: missing sub claim")
    # GoTrue decodes these into typed fields; a signed token with junk in them is as
    # bad as a forged one, and must not reach SQL's ::uuid casts.
    if not _is_uuid(claims["sub"]):
        raise AuthApiError(403, "bad_jwt", "invalid claim: sub claim must be a UUID")
    if claims.get("session_id") is not None and not _is_uuid(claims["session_id"]):
        raise AuthApiError(403, "bad_jwt", "invalid claim: session_id claim must be a UUID")
    return claims


def _is_uuid(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


async def get_user(request: web.Request) -> web.Response:
    claims = _user_claims(request)
    pool = context(request).extras["admin_pool"]
    async with pool.connection() as conn:
        cur = await conn.cursor(row_factory=dict_row).execute(
            f"select {_USER_COLUMNS}, exists(select 1 from auth.sessions s where s.id = %s::uuid) as live"  # noqa: S608
            " from auth.users where id = %s::uuid and deleted_at is null",
            (claims.get("session_id"), claims["sub"]),
        )
        row = await cur.fetchone()
    if row is None:
        raise AuthApiError(403, "user_not_found", "User from sub claim in JWT does not exist")
    if not row["live"]:
        raise AuthApiError(
            403, "session_not_found", "Session from session_id claim in JWT does not exist"
        )
    return web.json_response(user_json(row), headers={API_VERSION_HEADER: API_VERSION_2024_01_01})


async def logout(request: web.Request) -> web.Response:
    claims = _user_claims(request)
    scope = request.query.get("scope", "global")
    pool = context(request).extras["admin_pool"]
    async with pool.connection() as conn:
        if scope == "local":
            await conn.execute(
                "delete from auth.sessions where id = %s::uuid", (claims.get("session_id"),)
            )
        elif scope == "others":
            await conn.execute(
                "delete from auth.sessions where user_id = %s::uuid and id <> %s::uuid",
                (claims["sub"], claims.get("session_id")),
            )
        elif scope == "global":
            await conn.execute(
                "delete from auth.sessions where user_id = %s::uuid", (claims["sub"],)
            )
        else:
            raise AuthApiError(
                400, "validation_failed", "scope must be one of global, local, others"
            )
    return web.Response(status=204)
