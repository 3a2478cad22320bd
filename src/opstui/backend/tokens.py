"""JWTs for the embedded backend: HS256 with a per-install secret.

The anon and service_role keys are JWTs too (as on Supabase), so one code path
verifies every bearer token. Only HS256 is accepted: `alg: none` and every
other algorithm are refused before the signature is even looked at.
"""

from __future__ import annotations

import os
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

ALGORITHM = "HS256"
ISSUER = "opstui-embedded"
ACCESS_TOKEN_TTL = 3600
# PostgREST allows 30 s of clock skew on exp/nbf/iat.
LEEWAY_SECONDS = 30
KNOWN_ROLES = frozenset({"anon", "authenticated", "service_role"})
_KEY_LIFETIME = 10 * 365 * 24 * 3600


class TokenError(Exception):
    """A bearer token was refused. `expired` distinguishes PGRST303 from PGRST301."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


def load_or_create_secret(path: Path) -> str:
    """Read the install's signing secret, creating it (mode 0600) on first use."""
    try:
        secret = path.read_text().strip()
        if len(secret) >= 32:
            return secret
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    secret = secrets.token_urlsafe(48)
    # O_EXCL-free but atomic: write a 0600 temp file, then rename over.
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret)
    os.replace(tmp, path)
    return secret


@dataclass(frozen=True)
class TokenSigner:
    secret: str

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.secret, algorithm=ALGORITHM)

    def api_key(self, role: str) -> str:
        """The long-lived anon / service_role keys, shaped like Supabase's."""
        now = int(time.time())
        return self.sign({"iss": ISSUER, "role": role, "iat": now, "exp": now + _KEY_LIFETIME})

    def access_token(
        self,
        *,
        user_id: str,
        email: str | None,
        session_id: str,
        app_metadata: dict[str, Any],
        user_metadata: dict[str, Any],
        ttl: int = ACCESS_TOKEN_TTL,
    ) -> tuple[str, int]:
        """A GoTrue-shaped user access token; returns (token, expires_at)."""
        now = int(time.time())
        expires_at = now + ttl
        claims = {
            "iss": ISSUER,
            "aud": "authenticated",
            "sub": user_id,
            "exp": expires_at,
            "iat": now,
            "email": email,
            "phone": "",
            "app_metadata": app_metadata,
            "user_metadata": user_metadata,
            "role": "authenticated",
            "aal": "aal1",
            "amr": [{"method": "password", "timestamp": now}],
            "session_id": session_id,
            "is_anonymous": False,
            "jti": str(uuid.uuid4()),
        }
        return self.sign(claims), expires_at

    def verify(self, token: str) -> dict[str, Any]:
        """Return the claims of a valid token, or raise TokenError."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenError(f"Invalid JWT: {exc}") from None
        if header.get("alg") != ALGORITHM:
            raise TokenError(f"Invalid JWT: algorithm {header.get('alg')!r} is not allowed")
        try:
            claims = jwt.decode(
                token,
                self.secret,
                algorithms=[ALGORITHM],
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "role"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("JWT expired", expired=True) from None
        except jwt.PyJWTError as exc:
            raise TokenError(f"Invalid JWT: {exc}") from None
        role = claims.get("role")
        # A signed token can still carry any JSON: a list or object role is refused
        # here, once, for every caller (auth, REST, realtime), not left to crash them.
        if not isinstance(role, str):
            raise TokenError(f"Invalid JWT: role claim must be a string, not {_json_type(role)}")
        if role not in KNOWN_ROLES:
            raise TokenError(f"Invalid JWT: role {role[:64]!r} is not allowed")
        return claims


def _json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for error messages."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "null" if value is None else type(value).__name__
