"""Snapshot tests (pytest-textual-snapshot): each screen and key state, deterministic.

Data comes from a backend seeded at a fixed time, the app's clock is fixed to
that time, the terminal is 120x36, and cursors don't blink. pytest-textual-
snapshot runs the app in its own event loop, so this module's backend runs in
a thread with a loop of its own (the session backend lives in pytest's loop).
"""

from __future__ import annotations

import asyncio
import threading

import pytest
from textual.widgets import Input

from opstui.connect import Connector, EmbeddedConnector
from opstui.session import Target
from opstui.ui.app import OpsApp
from opstui.ui.widgets.resource_table import ResourceTable
from tests.conftest import DEMO_NOW
from tests.tui_support import store_ready, text_of

SIZE = (120, 36)


class _ThreadedBackend:
    def __init__(self) -> None:
        from opstui.backend.embedded import EmbeddedBackend

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        # No demo SSH hosts: they listen on ephemeral ports, which would show in the pictures.
        self.backend = EmbeddedBackend(ephemeral=True, demo_now=DEMO_NOW, ssh_demo_hosts=False)
        asyncio.run_coroutine_threadsafe(self.backend.start(), self.loop).result(120)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.backend.stop(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def snapshot_backend():
    threaded = _ThreadedBackend()
    yield threaded.backend
    threaded.close()


def _app(backend, email: str = "admin@acme.test") -> OpsApp:
    connector = EmbeddedConnector(
        target=Target("embedded", "", "", is_embedded=True),
        backend=backend,
        owns_backend=False,
        demo_email=email,
    )
    return OpsApp(connector, clock=lambda: DEMO_NOW, tick_seconds=0)


async def _until(pilot, predicate, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "snapshot precondition not met in time"
        await pilot.pause(0.05)


def _settled(app) -> bool:
    """The screen shows what the store holds: context says live, tables are full."""
    screen = app.screen
    context = screen.query("#context")
    if context and "live" not in text_of(context.first()):
        return False
    tables = screen.query(ResourceTable)
    if tables:
        table = tables.first()
        return len(table.view.rows) == len(app.store.tables[table.spec.table].rows)
    return True


def _steady(*keys: str, then=None):
    """run_before: wait for live data, press keys (each once its screen has settled),
    settle again, and stop cursors blinking."""

    async def run_before(pilot) -> None:
        await _until(pilot, lambda: store_ready(pilot.app) and _settled(pilot.app))
        for key in keys:
            await pilot.press(key)
            await pilot.pause()
            await _until(pilot, lambda: _settled(pilot.app))
        if then is not None:
            await then(pilot)
        for box in pilot.app.screen.query(Input):
            box.cursor_blink = False
        await pilot.pause()

    return run_before


@pytest.mark.parametrize(
    ("name", "keys"),
    [
        ("overview", ()),
        ("teams", ("1",)),
        ("hosts", ("2",)),
        ("repositories", ("3",)),
        ("deployments", ("4",)),
        ("cicd", ("5",)),
        ("deployment_detail", ("4", "down", "enter")),
        ("host_detail_yaml", ("2", "enter", "y")),
        ("help", ("2", "question_mark")),
        ("command_line", ("colon", "d", "e", "p")),
        ("filter", ("2", "slash", "k", "8", "s")),
        ("marked_and_sorted", ("2", "space", "space", "o", "O")),
        ("confirm_delete", ("2", "ctrl+d")),
    ],
)
def test_screens(snap_compare, snapshot_backend, name, keys):
    assert snap_compare(_app(snapshot_backend), terminal_size=SIZE, run_before=_steady(*keys))


def test_viewer_sees_no_write_actions(snap_compare, snapshot_backend):
    app = _app(snapshot_backend, "viewer@acme.test")
    assert snap_compare(app, terminal_size=SIZE, run_before=_steady("2"))


def test_form_shows_errors_at_the_fields(snap_compare, snapshot_backend):
    async def fill(pilot) -> None:
        await _until(pilot, lambda: type(pilot.app.screen).__name__ == "FormScreen")
        screen = pilot.app.screen
        screen.query_one("#field-name", Input).value = "web-09"
        screen.query_one("#field-ip", Input).value = "10.0.0.300"
        screen.query_one("#field-port", Input).value = "70000"
        await pilot.press("ctrl+s")
        await _until(pilot, lambda: "not an IP" in str(screen.query_one("#ip-error").content))

    assert snap_compare(
        _app(snapshot_backend), terminal_size=SIZE, run_before=_steady("2", "c", then=fill)
    )


def test_sign_in_screen_keeps_the_error_on_screen(snap_compare, snapshot_backend):
    info = snapshot_backend.info

    class StagingConnector(Connector):
        # The real label carries the backend's ephemeral port; pictures need a fixed one.
        label = "profile staging (https://staging.example.test)"

    connector = StagingConnector(target=Target("staging", info.url, info.anon_key), persist=False)
    app = OpsApp(connector, clock=lambda: DEMO_NOW, tick_seconds=0)

    async def run_before(pilot) -> None:
        await _until(pilot, lambda: type(pilot.app.screen).__name__ == "SignInScreen")
        screen = pilot.app.screen
        screen.query_one("#email", Input).value = "dev@acme.test"
        password = screen.query_one("#password", Input)
        password.value = "wrong"
        password.focus()
        await pilot.press("enter")
        await _until(
            pilot,
            lambda: "wrong email or password" in str(screen.query_one("#signin-error").content),
        )
        for box in screen.query(Input):
            box.cursor_blink = False
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
