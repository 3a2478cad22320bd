"""Signing in and staying signed in, for the TUI and the headless commands alike.

supabase-py persists its session through a storage object; ours is a 0600
JSON file per profile under the user data dir, rewritten on every token
refresh (refresh tokens rotate, so a stale copy would be useless). The next
start resumes from it without asking; `opstui logout` removes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from supabase_auth._async.storage import AsyncSupportedStorage

from opstui import locations

if TYPE_CHECKING:
    from supabase import AsyncClient

    from opstui.config import Profile

# supabase-py gives up on realtime after 5 reconnect attempts (contract §3);
# we keep retrying and run our own watchdog on top.
REALTIME_MAX_RETRIES = 10**6
HTTP_TIMEOUT_SECONDS = 30.0  # the longest wait for any one read or write, as httpx counts it


class SignInError(Exception):
    """A one-line reason sign-in failed (bad password, unreachable URL, ...)."""


def session_file(profile_name: str) -> Path:
    return locations.data_dir() / "sessions" / f"{profile_name}.json"


class FileSessionStorage(AsyncSupportedStorage):
    """supabase-py session storage in one private JSON file (a dict of keys)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = asyncio.Lock()

    def _read(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, data: dict[str, str]) -> None:
        if not data:
            self.path.unlink(missing_ok=True)
            return
        locations.ensure_private_dir(self.path.parent)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
        os.replace(tmp, self.path)

    async def get_item(self, key: str) -> str | None:
        async with self._lock:
            return (await asyncio.to_thread(self._read)).get(key)

    async def set_item(self, key: str, value: str) -> None:
        async with self._lock:
            data = await asyncio.to_thread(self._read)
            data[key] = value
            await asyncio.to_thread(self._write, data)

    async def remove_item(self, key: str) -> None:
        async with self._lock:
            data = await asyncio.to_thread(self._read)
            data.pop(key, None)
            await asyncio.to_thread(self._write, data)


@dataclass(frozen=True)
class Target:
    """Where to connect: a URL and anon key, and the name sessions are filed under."""

    name: str
    url: str
    anon_key: str
    is_embedded: bool = False

    @classmethod
    def from_profile(cls, profile: Profile) -> Target:
        return cls(name=profile.name, url=profile.url, anon_key=profile.anon_key)


async def create_client(target: Target, *, persist: bool = True) -> AsyncClient:
    """A supabase AsyncClient whose session lives in the target's session file."""
    import httpx
    from supabase import AsyncClientOptions, acreate_client

    options = AsyncClientOptions(
        auto_refresh_token=True,
        persist_session=persist,
        storage=FileSessionStorage(session_file(target.name)) if persist else None,
        realtime={"max_retries": REALTIME_MAX_RETRIES},
        # One HTTP client for auth and REST: one TLS context and one pool of kept-alive
        # connections. Without it each sub-client builds its own, and supabase-py builds a
        # new REST client (and TLS context) on every sign-in and token refresh.
        httpx_client=httpx.AsyncClient(
            timeout=httpx.Timeout(HTTP_TIMEOUT_SECONDS, connect=10.0),
            follow_redirects=True,
            http2=True,
            verify=_tls_for(target.url),
        ),
    )
    return await acreate_client(target.url, target.anon_key, options=options)


def _tls_for(url: str) -> bool | ssl.SSLContext:
    """Normal verification, except for a plain-http loopback URL (the embedded gateway).

    That one gets a context that trusts no CA at all, so nothing over TLS could pass it,
    and start-up skips loading the CA bundle (30-80 ms here).
    """
    parsed = urlsplit(url)
    if parsed.scheme == "http" and parsed.hostname in ("127.0.0.1", "localhost", "::1"):
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    return True


async def close_client(client: AsyncClient) -> None:
    """Close realtime's socket and the shared HTTP client. Closing a dead socket is fine."""
    with contextlib.suppress(Exception):
        await client.realtime.close()
    http = client.options.httpx_client
    if http is not None:
        with contextlib.suppress(Exception):
            await http.aclose()


async def sign_in(client: AsyncClient, email: str, password: str) -> None:
    """Password sign-in with one-line errors for every way it can fail."""
    from supabase_auth.errors import AuthApiError, AuthRetryableError

    try:
        await client.auth.sign_in_with_password({"email": email, "password": password})
    except AuthApiError as exc:
        if exc.code == "invalid_credentials":
            raise SignInError("wrong email or password") from None
        if exc.code == "over_request_rate_limit":
            raise SignInError("too many failed sign-ins; wait a few minutes, then try again") from None
        raise SignInError(f"sign-in refused: {exc.message}") from None
    except AuthRetryableError as exc:
        raise SignInError(
            f"cannot reach the server: {exc.message}; check the URL and network"
        ) from None
    except OSError as exc:
        raise SignInError(f"cannot reach the server: {exc}; check the URL and network") from None
    if await client.auth.get_session() is None:
        raise SignInError("the server answered but gave no session; is this a Supabase URL?")


async def check_reachable(client: AsyncClient) -> str | None:
    """None if the project's auth answers at all; else one line saying what is wrong.

    Asked when the sign-in screen opens, so a wrong URL is reported before anyone
    types a password. It goes through the client's own HTTP session.
    """
    http = client.options.httpx_client
    base = str(client.supabase_url).rstrip("/")
    if http is None:
        return None
    try:
        response = await http.get(
            f"{base}/auth/v1/health", headers={"apikey": client.supabase_key}, timeout=5.0
        )
    except Exception as exc:  # noqa: BLE001 - every transport failure is the same answer
        reason = str(exc) or type(exc).__name__
        return f"cannot reach {base}: {reason}; check the URL and network"
    if response.status_code >= 500:
        return f"{base} answered {response.status_code}; the server is failing"
    return None


async def resume(client: AsyncClient) -> bool:
    """True if a stored session could be resumed (refreshing it if needed)."""
    from supabase_auth.errors import AuthError

    try:
        stored = await client.auth.get_session()
    except (AuthError, OSError):
        return False
    if stored is None:
        return False
    # A session recovered from storage fires no auth event, so supabase-py never
    # hands its token to realtime: without this, channels would join as anon and
    # RLS would (rightly) deliver nothing.
    await client.realtime.set_auth(stored.access_token)
    return True


async def sign_out(target: Target) -> bool:
    """End the stored session server-side (best effort) and remove the file."""
    path = session_file(target.name)
    if not path.exists():
        return False
    client = await create_client(target)
    try:
        if await resume(client):
            await client.auth.sign_out()
    except Exception:  # noqa: BLE001 - the server may be gone; the local file goes regardless
        pass
    finally:
        await close_client(client)
    path.unlink(missing_ok=True)
    return True
