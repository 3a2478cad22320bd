"""The Supabase-compatible gateway: one aiohttp app on 127.0.0.1.

It serves `/auth/v1` (auth_api), `/rest/v1` (rest_api) and
`/realtime/v1/websocket` (realtime). This module holds what they share: the
request context, the PostgREST-shaped errors, bearer-token checks, and the
per-request transaction that sets `role` and `request.jwt.claims` exactly as
PostgREST does, so Postgres itself enforces RLS.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import psycopg
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.web_protocol import RequestHandler
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
# The request's JWT claims once verified, for the error middleware's 401-vs-403 choice.
CLAIMS: web.RequestKey[dict[str, Any]] = web.RequestKey("opstui_claims", dict)


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

    def response(self, request: web.BaseRequest | None = None) -> web.Response:
        return web.json_response(self.body(), status=self.status, headers=self.headers)


AUTH_PREFIX = "/auth/v1"
API_VERSION_HEADER = "X-Supabase-Api-Version"
API_VERSION_2024_01_01 = "2024-01-01"


def gotrue_api_version(request: web.BaseRequest | None) -> str | None:
    """GoTrue's DetermineClosestAPIVersion: 2024-01-01 for that date or later, else none."""
    raw = request.headers.get(API_VERSION_HEADER, "").strip() if request is not None else ""
    try:
        asked = date.fromisoformat(raw) if len(raw) == 10 else None
    except ValueError:
        asked = None  # GoTrue, too, falls back to the initial version on a bad header
    if asked is not None and asked >= date(2024, 1, 1):
        return API_VERSION_2024_01_01
    return None


def is_auth_path(path: str) -> bool:
    return path == AUTH_PREFIX or path.startswith(AUTH_PREFIX + "/")


class AuthApiError(ApiError):
    """A GoTrue error, in the shape GoTrue picks from the request's API version header.

    With `X-Supabase-Api-Version: 2024-01-01` (every supabase-py call sends it) the body
    is `{code, message}` and the header is echoed; without it, GoTrue's original
    `{code: <status>, error_code, msg}` (internal/api/errors.go, HandleResponseError).
    """

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}

    def response(self, request: web.BaseRequest | None = None) -> web.Response:
        headers = dict(self.headers)
        if request is None or gotrue_api_version(request):
            headers[API_VERSION_HEADER] = API_VERSION_2024_01_01
            body = self.body()
        else:
            body = {"code": self.status, "error_code": self.code, "msg": self.message}
        return web.json_response(body, status=self.status, headers=headers)


# GoTrue error codes for gateway-level failures on /auth/v1 (apierrors/errorcode.go);
# "unknown" is what GoTrue itself sends for an error that carries no code.
_GOTRUE_CODE_BY_STATUS = {
    400: "validation_failed",
    401: "no_authorization",
    403: "bad_jwt",
    413: "request_entity_too_large",
    422: "validation_failed",
    429: "over_request_rate_limit",
    500: "unexpected_failure",
    504: "request_timeout",
}


def as_auth_error(exc: ApiError) -> AuthApiError:
    """The same failure in GoTrue's shape, for anything raised under /auth/v1."""
    if isinstance(exc, AuthApiError):
        return exc
    code = _GOTRUE_CODE_BY_STATUS.get(exc.status, "unknown")
    return AuthApiError(exc.status, code, exc.message, headers=exc.headers)


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
    elif sqlstate.startswith("08") or (not sqlstate and isinstance(exc, psycopg.OperationalError)):
        # Only a lost or unavailable database is retryable. An error psycopg raised
        # itself (a NUL byte in a text value, say) has no SQLSTATE and is the
        # caller's fault: a 503 would make supabase-py retry it forever.
        status = 503
    else:
        status = _SQLSTATE_STATUS.get(sqlstate, 400)
    return ApiError(status, sqlstate or "PGRST000", message, details=details, hint=hint)


def error_response(request: web.BaseRequest, exc: ApiError) -> web.Response:
    """An error in the shape of the API the path belongs to: GoTrue's under /auth/v1."""
    if is_auth_path(request.path):
        return as_auth_error(exc).response(request)
    return exc.response(request)


@web.middleware
async def error_middleware(request: web.Request, handler):
    """No request may crash the gateway or leak a traceback: everything becomes JSON."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(request, exc)
    except web.HTTPException as exc:
        if exc.status >= 400 and exc.content_type != "application/json":
            return error_response(request, ApiError(exc.status, f"HTTP{exc.status}", exc.reason))
        raise
    except psycopg.Error as exc:
        claims = request.get(CLAIMS) or {}
        return error_response(request, pg_error(exc, claims.get("role", "anon")))
    except ConnectionError:
        # The client hung up mid-request: worth one line, not a traceback. Nobody
        # reads the reply; aiohttp drops it quietly on the closed transport.
        log.info("client %s went away during %s %s", request.remote, request.method, request.path)
        return web.Response(status=400)
    except RecursionError:
        # Whatever decoder met it, only hostile nesting gets this deep.
        return error_response(request, bad_request("The request is nested too deeply"))
    except Exception:  # noqa: BLE001 - the last line of defence, logged without request bodies
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(
            request, ApiError(500, "PGRST000", "internal gateway error; see the gateway log")
        )


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
    request[CLAIMS] = claims
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
    role = claims.get("role", "anon")
    async with ctx.pool.connection() as conn:
        async with conn.transaction():
            timeouts = await _role_timeouts(ctx, conn, role)
            await conn.execute(
                "select set_config('search_path', 'public, extensions', true),"
                " set_config('role', %s, true),"
                " set_config('request.jwt.claims', %s, true),"
                " set_config('request.method', %s, true),"
                " set_config('request.path', %s, true),"
                " set_config('statement_timeout', %s, true),"
                " set_config('lock_timeout', %s, true)",
                (role, json.dumps(claims), method, path, *timeouts),
            )
            yield conn


# Settings PostgREST applies for the impersonated role (its "role settings"): SET ROLE
# alone would leave every request with authenticator's, so anon's 3 s would be 8 s.
ROLE_SETTINGS = ("statement_timeout", "lock_timeout")


async def _role_timeouts(
    ctx: GatewayContext, conn: psycopg.AsyncConnection, role: str
) -> tuple[str, str]:
    cache: dict[str, tuple[str, str]] = ctx.extras.setdefault("role_timeouts", {})
    found = cache.get(role)
    if found is None:
        rows = await (
            await conn.execute(
                "select split_part(setting, '=', 1), split_part(setting, '=', 2)"
                " from pg_db_role_setting s join pg_roles r on r.oid = s.setrole,"
                " unnest(s.setconfig) as setting"
                " where r.rolname = %s"
                " and s.setdatabase in (0, (select oid from pg_database"
                "                           where datname = current_database()))",
                (role,),
            )
        ).fetchall()
        settings = dict(rows)
        current = await (
            await conn.execute(
                "select current_setting('statement_timeout'), current_setting('lock_timeout')"
            )
        ).fetchone()
        statement, lock = (settings.get(n, d) for n, d in zip(ROLE_SETTINGS, current, strict=True))
        found = cache[role] = (statement, lock)
    return found


# -- the HTTP front: requests that never reach a handler --------------------------------------

# aiohttp's defaults, stated: a longer request line gets 414, a longer header 431.
MAX_LINE_SIZE = 8190
MAX_FIELD_SIZE = 8190
FIRST_REQUEST_TIMEOUT = 10.0  # seconds from connecting to a whole request line and headers


class _GatewayRequestHandler(RequestHandler):
    """aiohttp's connection handler, answering unparsable requests in our JSON shapes.

    aiohttp answers them itself, before any middleware, with a text/plain 400 and a
    logged traceback; here they get a JSON 4xx and one log line that never quotes
    the request (its headers may carry tokens).
    """

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if not isinstance(exc, BadHttpMessage):
            return super().handle_error(request, status, exc, message)
        line = exc.args[0] if isinstance(exc, LineTooLong) and exc.args else None
        if isinstance(line, bytearray):
            # The C parser reports an overlong request target from its URL buffer (a
            # bytearray); overlong header names and values as bytes.
            error_status, what = 414, f"request line longer than {MAX_LINE_SIZE} bytes"
            is_auth = is_auth_path(bytes(line).decode("latin-1"))
        elif isinstance(exc, LineTooLong):
            error_status, what = 431, f"request header longer than {MAX_FIELD_SIZE} bytes"
            is_auth = False
        else:
            error_status, what = 400, "malformed HTTP request"
            is_auth = False
        self.logger.warning(
            "refused a request from %s: %s (%s)", request.remote, what, type(exc).__name__
        )
        message = f"Refused a {what}"
        if is_auth:
            body: dict[str, Any] = {"code": "validation_failed", "message": message}
        else:
            # Both clients parse this: PostgREST's {code, message, details, hint} holds
            # GoTrue's {code, message}, and the path is unknown before the line is read.
            body = {"code": "PGRST100", "message": message, "details": None, "hint": None}
        response = web.json_response(
            body,
            status=error_status,
            headers={API_VERSION_HEADER: API_VERSION_2024_01_01},
        )
        response.force_close()
        return response

    # A connection that sends no whole request in time is closed: slow-loris clients,
    # WebSocket upgrades that never finish. aiohttp alone waits its keep-alive timeout.
    _first_request_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._first_request_deadline = asyncio.get_running_loop().call_later(
            FIRST_REQUEST_TIMEOUT, self._first_request_overdue
        )

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._request_count and self._first_request_deadline is not None:
            self._first_request_deadline.cancel()
            self._first_request_deadline = None

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._first_request_deadline is not None:
            self._first_request_deadline.cancel()
            self._first_request_deadline = None
        super().connection_lost(exc)

    def _first_request_overdue(self) -> None:
        self._first_request_deadline = None
        if not self._request_count:
            self.logger.info("closed a connection that sent no whole request in time")
            self.force_close()


class _GatewayServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _GatewayRequestHandler(self, loop=self._loop, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """The runner to serve `build_app()` with: unparsable requests get JSON errors."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        kwargs = {"handle_signals": False, "access_log": None, "shutdown_timeout": 1.0, **kwargs}
        super().__init__(app, **kwargs)

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # aiohttp has no hook for its connection handler class; the subclass adds
        # no state, so the built server simply takes it on.
        server.__class__ = _GatewayServer
        return server


def build_app(ctx: GatewayContext) -> web.Application:
    """Compose the gateway. Each API module adds its own routes and lifecycle hooks."""
    from opstui.backend import auth_api, realtime, rest_api

    app = web.Application(
        middlewares=[error_middleware],
        client_max_size=8 * 1024 * 1024,
        handler_args={"max_line_size": MAX_LINE_SIZE, "max_field_size": MAX_FIELD_SIZE},
    )
    app[CONTEXT] = ctx
    auth_api.setup(app, ctx)
    rest_api.setup(app, ctx)
    realtime.setup(app, ctx)
    return app
