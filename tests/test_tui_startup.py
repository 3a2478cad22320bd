"""Start-up as a newcomer meets it: a wrong URL is named before a password is typed,
and a failed connection never leaves the header saying "connecting" forever."""

from __future__ import annotations

import socket

from opstui.connect import Connector
from opstui.session import Target
from opstui.ui.app import OpsApp
from tests.conftest import DEMO_NOW
from tests.tui_support import SIZE, wait_for


def _dead_loopback_port() -> int:
    """A loopback port where nothing listens (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_an_unreachable_url_is_reported_when_the_sign_in_screen_opens(backend_info):
    url = f"http://127.0.0.1:{_dead_loopback_port()}"
    connector = Connector(target=Target("nowhere", url, backend_info.anon_key), persist=False)
    app = OpsApp(connector, clock=lambda: DEMO_NOW, tick_seconds=0)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: type(app.screen).__name__ == "SignInScreen")
        error = app.screen.query_one("#signin-error")
        await wait_for(pilot, lambda: "cannot reach" in str(error.content), what="probe error")
        assert url in str(error.content)
        # The whole message is on screen: it wraps instead of being cut mid-word.
        assert error.size.height >= 1 and error.size.width >= 40


async def test_a_reachable_url_leaves_the_sign_in_screen_quiet(backend_info):
    connector = Connector(
        target=Target("here", backend_info.url, backend_info.anon_key), persist=False
    )
    app = OpsApp(connector, clock=lambda: DEMO_NOW, tick_seconds=0)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: type(app.screen).__name__ == "SignInScreen")
        screen = app.screen
        await wait_for(pilot, lambda: screen.probed, what="the reachability check")
        assert str(screen.query_one("#signin-error").content) == ""


async def test_a_failed_start_says_not_connected_in_the_header(backend_info):
    from opstui.store import StoreError

    class LockedConnector(Connector):
        async def start(self) -> None:
            raise StoreError("another opstui backend (pid 1) is using /x; quit that opstui first")

    connector = LockedConnector(
        target=Target("locked", backend_info.url, backend_info.anon_key), persist=False
    )
    app = OpsApp(connector, clock=lambda: DEMO_NOW, tick_seconds=0)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.connection_error is not None, what="the failure")
        context = app.screen.query_one("#context")
        await wait_for(pilot, lambda: "not connected" in str(context.content), what="header")
        assert "connecting" not in str(context.content).replace("not connected", "")
