"""Helpers for driving the real app against a real embedded backend."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from opstui.connect import EmbeddedConnector
from opstui.session import Target
from opstui.store import ConnectionState
from opstui.ui.app import OpsApp
from tests.conftest import DEMO_NOW

SIZE = (140, 40)


def make_app(backend, email: str = "admin@acme.test", *, team: str | None = None) -> OpsApp:
    connector = EmbeddedConnector(
        target=Target("embedded", "", "", is_embedded=True),
        backend=backend,
        owns_backend=False,
        demo_email=email,
    )
    return OpsApp(connector, team=team, clock=lambda: DEMO_NOW, tick_seconds=0)


async def wait_for(
    pilot, predicate: Callable[[], bool], timeout: float = 15.0, what: str = ""
) -> None:
    """Wait on a condition, pumping the app's message queue (never a blind sleep)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await pilot.pause(0.02)


def store_ready(app: OpsApp) -> bool:
    store = app.store
    return (
        store is not None
        and store.team_id is not None
        and store.status.state is ConnectionState.LIVE
        and all(state.complete for state in store.tables.values())
    )


async def ready(pilot) -> None:
    await wait_for(pilot, lambda: store_ready(pilot.app), what="store live and loaded")
    await pilot.pause()


def run_sync(coro):
    return asyncio.get_event_loop().run_until_complete(coro)


def text_of(widget) -> str:
    """The plain text a Static shows (strings, Rich Text, tables, groups...)."""
    from io import StringIO

    from rich.console import Console
    from rich.text import Text

    content = widget.content
    if isinstance(content, str):
        return content
    if isinstance(content, Text):
        return content.plain
    console = Console(file=StringIO(), width=200, color_system=None)
    console.print(content)
    return console.file.getvalue()
