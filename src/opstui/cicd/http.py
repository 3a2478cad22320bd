"""One httpx client per provider: timeouts, rate-limit back-off, one-line errors.

Rate limits: a 429 (or a 403/503 that says so) waits for `Retry-After`, or until
`X-RateLimit-Reset` / `RateLimit-Reset`, then retries a few times; a response whose
`X-RateLimit-Remaining` / `RateLimit-Remaining` is 0 makes the *next* request wait for the
reset. Errors never carry a header or body that could hold a secret: only the status, the
provider's name and what to do.
"""

from __future__ import annotations

import asyncio
import email.utils
import socket
import ssl
import time
from typing import Any

import httpx

from opstui.cicd.base import ProviderError

_MAX_WAIT = 60.0
_SSL: dict[bool, ssl.SSLContext] = {}


def tls_context(verify: bool = True) -> ssl.SSLContext:
    """One SSL context per mode for every client: building one costs ~80 ms of CPU (loading
    the CA bundle), which 50 builds starting at once would spend blocking the event loop."""
    if verify not in _SSL:
        _SSL[verify] = httpx.create_ssl_context(verify=verify)
    return _SSL[verify]


# never sleep longer than this for one rate-limit hint
_RETRIES = 3


def _retry_after(headers: httpx.Headers, now: float) -> float | None:
    """Seconds to wait, from Retry-After or a reset header (None: no hint)."""
    value = headers.get("retry-after")
    if value:
        if value.strip().isdigit():
            return float(value)
        parsed = email.utils.parsedate_to_datetime(value)
        if parsed is not None:
            return max(0.0, parsed.timestamp() - now)
    for name in ("x-ratelimit-reset", "ratelimit-reset"):
        value = headers.get(name)
        if value and value.strip().isdigit():
            n = float(value)
            # GitHub/GitLab send an epoch; the IETF draft sends seconds from now.
            return max(0.0, n - now) if n > 1_000_000_000 else n
    return None


def _exhausted(headers: httpx.Headers) -> bool:
    for name in ("x-ratelimit-remaining", "ratelimit-remaining"):
        value = headers.get(name)
        if value is not None and value.strip() == "0":
            return True
    return False


class ProviderHTTP:
    """httpx.AsyncClient with the provider's base URL and auth, and polite retries."""

    def __init__(
        self,
        provider: str,
        base_url: str,
        *,
        headers: dict[str, str] | None = None,
        auth: httpx.Auth | tuple[str, str] | None = None,
        timeout: float = 15.0,
        verify: bool = True,
    ) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            auth=auth,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            follow_redirects=False,
            verify=tls_context(verify),
        )
        self._verify = verify
        self._not_before = 0.0  # monotonic time before which we must not call (rate limit)
        self.rate_limit_waits = 0
        self.fake_label: str | None = None  # set when the server says it is one of opstui's fakes

    async def aclose(self) -> None:
        await self._client.aclose()

    async def request(
        self,
        method: str,
        url: str,
        *,
        ok: tuple[int, ...] = (200,),
        what: str = "",
        **kwargs: Any,
    ) -> httpx.Response:
        """Send, honouring rate limits; raise ProviderError for anything not in `ok`."""
        for attempt in range(_RETRIES + 1):
            delay = self._not_before - time.monotonic()
            if delay > 0:
                self.rate_limit_waits += 1
                await asyncio.sleep(min(delay, _MAX_WAIT))
            try:
                response = await self._client.request(method, url, **kwargs)
            except httpx.TimeoutException as exc:
                raise ProviderError(
                    "timeout",
                    f"{self.provider} at {self.base_url} did not answer in time ({type(exc).__name__}); "
                    "check that it is up and reachable from the runner",
                ) from None
            except httpx.TransportError as exc:
                raise ProviderError(
                    "unreachable",
                    f"{self.provider} at {self.base_url} is unreachable ({_transport_reason(exc)}); "
                    "check the URL and port and that it is up",
                ) from None
            if "x-fake-ci" in response.headers:
                self.fake_label = response.headers["x-fake-ci"]
            if _exhausted(response.headers):
                wait = _retry_after(response.headers, time.time())
                if wait:
                    self._not_before = time.monotonic() + min(wait, _MAX_WAIT)
            if response.status_code in ok:
                return response
            if self._rate_limited(response) and attempt < _RETRIES:
                wait = _retry_after(response.headers, time.time())
                wait = min(_MAX_WAIT, wait if wait is not None else 2.0**attempt)
                self._not_before = time.monotonic() + wait
                continue
            if response.status_code in (502, 503, 504) and attempt < _RETRIES - 1:
                await asyncio.sleep(0.5 * (attempt + 1))
                continue
            raise self.error_for(response, what)
        raise self.error_for(response, what)  # pragma: no cover - loop always returns/raises

    @staticmethod
    def _rate_limited(response: httpx.Response) -> bool:
        if response.status_code == 429:
            return True
        if response.status_code in (403, 503) and (
            "retry-after" in response.headers or _exhausted(response.headers)
        ):
            return True
        return False

    def error_for(self, response: httpx.Response, what: str = "") -> ProviderError:
        code = response.status_code
        target = f" ({what})" if what else ""
        if code == 401:
            return ProviderError(
                "unauthorized",
                f"{self.provider} refused the credentials (401){target}; check the user and token",
            )
        if code == 403:
            return ProviderError(
                "forbidden",
                f"{self.provider} forbids this (403){target}; the token lacks the permission needed",
            )
        if code == 404:
            return ProviderError(
                "not_found",
                f"{self.provider} says not found (404){target}; check the URL, project or job name",
            )
        if code == 429:
            return ProviderError(
                "rate_limited",
                f"{self.provider} rate limit exceeded (429){target}; try again later",
            )
        if code in (400, 409, 422):
            return ProviderError(
                "bad_request",
                f"{self.provider} rejected the request ({code}){target}: {_short_body(response)}",
            )
        if code >= 500:
            return ProviderError(
                "server",
                f"{self.provider} failed with {code}{target}; it may be overloaded or down",
            )
        return ProviderError(
            "protocol", f"{self.provider} answered {code}{target}, which opstui did not expect"
        )

    async def get_json(self, url: str, *, what: str = "", **kwargs: Any) -> Any:
        response = await self.request("GET", url, what=what, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise ProviderError(
                "protocol", f"{self.provider} sent something that is not JSON for {what or url}"
            ) from None

    async def fetch_redirected(self, url: str, *, what: str = "") -> httpx.Response:
        """GET a URL that answers 302 to a short-lived download; follow it without our auth."""
        first = await self.request("GET", url, ok=(200, 302, 307), what=what)
        if first.status_code == 200:
            return first
        location = first.headers.get("location", "")
        target = httpx.URL(self.base_url + "/").join(location)
        async with httpx.AsyncClient(
            timeout=self._client.timeout, verify=tls_context(self._verify)
        ) as plain:
            try:
                response = await plain.get(target)
            except httpx.TransportError as exc:
                raise ProviderError(
                    "unreachable", f"{self.provider} log download failed ({_transport_reason(exc)})"
                ) from None
        if response.status_code != 200:
            raise self.error_for(response, what)
        return response


def _transport_reason(exc: BaseException) -> str:
    cause: BaseException | None = exc
    seen = 0
    while cause is not None and seen < 8:  # httpx wraps the OS error; find it
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return "host name not found"
        if isinstance(cause, (ConnectionResetError, BrokenPipeError)):
            return "the connection was dropped"
        cause = cause.__cause__ or cause.__context__
        seen += 1
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if (
        isinstance(exc, httpx.RemoteProtocolError)
        or "disconnect" in text.lower()
        or "reset" in text.lower()
    ):
        return "the connection was dropped"
    if "refused" in text.lower() or "all connection attempts failed" in text.lower():
        return "connection refused"
    return text[:120] or type(exc).__name__


def _short_body(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        text = response.text.strip().splitlines()[0] if response.text.strip() else ""
        return text[:160] or "no details"
    if isinstance(data, dict):
        for key in ("message", "error", "detail"):
            if isinstance(data.get(key), str):
                return data[key][:160]
        if isinstance(data.get("message"), (dict, list)):
            return str(data["message"])[:160]
    return str(data)[:160]
