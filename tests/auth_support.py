"""Shared by the auth tests: the API version header and a way to retune the gateway."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# What supabase-py sends on every auth call; GoTrue picks its error shape by it.
API_VERSION = {"X-Supabase-Api-Version": "2024-01-01"}


@contextmanager
def gateway_settings(backend, **settings: Any) -> Iterator[dict[str, Any]]:
    """Change the running gateway's settings (reuse interval, sign-in throttle) for a while."""
    extras = backend._ctx.extras
    saved = dict(extras)
    extras.update(settings)
    try:
        yield extras
    finally:
        extras.clear()
        extras.update(saved)
