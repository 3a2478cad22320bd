"""The Supabase-compatible gateway: one aiohttp app on 127.0.0.1.

It serves `/auth/v1` (auth_api), `/rest/v1` (rest_api) and
`/realtime/v1/websocket` (realtime). This module holds what they share: the
request context, the PostgREST-shaped errors, bearer-token checks, and the
per-request transaction that sets `role` and `request.jwt.claims` exactly as
PostgREST does, so Postgres itself enforces RLS.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from opstui.backend.tokens import TokenError, TokenSigner

log = logging.getLogger(__name__)


@dataclass
class GatewayContext:
    """Everything a request handler needs; stored on the app as `app[CONTEXT]`."""

    pool: AsyncConnectionPool
    signer: TokenSigner
    anon_key: str
    service_role_key: str
    admin_conninfo: str
    extras: dict[str, Any] = field(default_factory=dict)


CONTEXT: web.AppKey[GatewayContext] = web.AppKey("opstui_gateway_context", GatewayContext)


def context(request: web.Request) -> GatewayContext:
    return request.app[CONTEXT]


# -- errors ------------------------------------------------------------------------------------


class ApiError(Exception):
    """An error response. PostgREST shape by default: {code, message, details, hint}."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: str | None = None,
        hint: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.hint = hint
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "details": self.details,
            "hint": self.hint,
        }

    def response(self) -> web.Response:
        return web.json_response(self.body(), status=self.status, headers=self.headers)


class AuthApiError(ApiError):
    """GoTrue's error shape for API version 2024-01-01: {code, message}."""

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}

    def response(self) -> web.Response:
        headers = {"X-Supabase-Api-Version": "2024-01-01", **self.headers}
        return web.json_response(self.body(), status=self.status, headers=headers)


def bad_request(message: str, *, details: str | None = None, hint: str | None = None) -> ApiError:
    """PostgREST's PGRST100: the request itself could not be parsed."""
    return ApiError(400, "PGRST100", message, details=details, hint=hint)


# SQLSTATE -> HTTP status, as PostgREST's mapSQLtoHTTP does it.
_SQLSTATE_STATUS = {
    "23505": 409,
    "23503": 409,
    "42P01": 404,
    "42883": 404,
    "40001": 409,
    "40P01": 409,
    "53300": 503,
    "57014": 504,
}


def pg_error(exc: psycopg.Error, role: str) -> ApiError:
    """Translate a Postgres error into the PostgREST error the client parses."""
    diag = getattr(exc, "diag", None)
    sqlstate = getattr(exc, "sqlstate", None) or ""
    message = (diag.message_primary if diag else None) or str(exc).strip().splitlines()[0]
    details = diag.message_detail if diag else None
    hint = diag.message_hint if diag else None
    if sqlstate == "42501":
        status = 401 if role == "anon" else 403
    elif sqlstate.startswith("08") or not sqlstate:
        status = 503
    else:
        status = _SQLSTATE_STATUS.get(sqlstate, 400)
    return ApiError(status, sqlstate or "PGRST000", message, details=details, hint=hint)


@web.middleware
async def error_middleware(request: web.Request, handler):
    """No request may crash the gateway or leak a traceback: everything becomes JSON."""
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except web.HTTPException as exc:
        if exc.status >= 400 and exc.content_type != "application/json":
            return ApiError(exc.status, f"HTTP{exc.status}", exc.reason).response()
        raise
    except psycopg.Error as exc:
        claims = request.get("claims") or {}
        return pg_error(exc, claims.get("role", "anon")).response()
    except Exception:  # noqa: BLE001 - the last line of defence, logged without request bodies
        log.exception("unhandled error on %s %s", request.method, request.path)
        return ApiError(500, "PGRST000", "internal gateway error; see the gateway log").response()


# -- authentication ----------------------------------------------------------------------------


def _api_key(request: web.Request) -> str | None:
    return request.headers.get("apikey") or request.query.get("apikey")


def check_api_key(request: web.Request) -> dict[str, Any]:
    """Every request carries an anon or service_role key, as Kong enforces on Supabase."""
    key = _api_key(request)
    if not key:
        raise ApiError(
            401,
            "PGRST301",
            "No API key found in request",
            hint="No `apikey` request header or url param was found.",
        )
    try:
        claims = context(request).signer.verify(key)
    except TokenError as exc:
        raise ApiError(401, "PGRST301", "Invalid API key", details=str(exc)) from None
    if claims.get("role") not in ("anon", "service_role"):
        raise ApiError(
            401, "PGRST301", "Invalid API key", details="not an anon or service_role key"
        )
    return claims


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def request_claims(request: web.Request) -> dict[str, Any]:
    """The JWT claims PostgREST would use: the bearer's, or anon with no bearer."""
    check_api_key(request)
    token = bearer_token(request)
    if token is None:
        claims: dict[str, Any] = {"role": "anon"}
    else:
        try:
            claims = context(request).signer.verify(token)
        except TokenError as exc:
            code = "PGRST303" if exc.expired else "PGRST301"
            raise ApiError(
                401,
                code,
                str(exc),
                headers={
                    "WWW-Authenticate": f'Bearer error="invalid_token", error_description="{exc}"'
                },
            ) from None
    request["claims"] = claims
    return claims


# -- the per-request transaction ---------------------------------------------------------------


@asynccontextmanager
async def transaction_as(
    ctx: GatewayContext,
    claims: dict[str, Any],
    *,
    method: str = "GET",
    path: str = "/",
) -> AsyncIterator[psycopg.AsyncConnection]:
    """One transaction running as the JWT's role with its claims, like PostgREST's txVarQuery."""
    async with ctx.pool.connection() as conn:
        async with conn.transaction():
            await conn.execute(
                "select set_config('search_path', 'public, extensions', true),"
                " set_config('role', %s, true),"
                " set_config('request.jwt.claims', %s, true),"
                " set_config('request.method', %s, true),"
                " set_config('request.path', %s, true)",
                (claims.get("role", "anon"), json.dumps(claims), method, path),
            )
            yield conn


def build_app(ctx: GatewayContext) -> web.Application:
    """Compose the gateway. Each API module adds its own routes and lifecycle hooks."""
    from opstui.backend import auth_api, realtime, rest_api

    app = web.Application(middlewares=[error_middleware], client_max_size=8 * 1024 * 1024)
    app[CONTEXT] = ctx
    auth_api.setup(app, ctx)
    rest_api.setup(app, ctx)
    realtime.setup(app, ctx)
    return app
