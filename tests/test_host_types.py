"""Only SSH hosts are reached over SSH; other types say plainly they are not supported yet."""

from __future__ import annotations

import pytest

from opstui.ssh.target import SshTarget, UnsupportedHost
from opstui.ui.screens.hosts import HostsScreen
from tests.tui_support import SIZE, make_app, ready, wait_for


@pytest.mark.parametrize("kind", ["winrm", "docker", "portainer"])
def test_a_non_ssh_host_is_refused_with_a_plain_reason(kind):
    with pytest.raises(UnsupportedHost) as refused:
        SshTarget.from_host(
            {"name": "win-build-01", "type": kind, "ip": "127.0.0.210", "port": 5986}
        )
    assert f"win-build-01 is a {kind} host" in str(refused.value)
    assert "not supported yet" in str(refused.value)


def test_an_ssh_host_still_becomes_a_target():
    target = SshTarget.from_host(
        {"name": "lab-web-01", "type": "ssh", "ip": "127.0.0.1", "port": 2222}
    )
    assert (target.host, target.port) == ("127.0.0.1", 2222)


async def test_a_shell_on_a_winrm_host_says_why_not(backend):
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("2")
        await wait_for(pilot, lambda: isinstance(app.screen, HostsScreen))
        hosts = app.screen
        row = next(r for r in hosts.table.view.rows.values() if r.get("type") == "winrm")
        assert hosts.table.move_to(row["id"])
        await pilot.pause()
        await pilot.press("s")
        await wait_for(
            pilot, lambda: any("not supported yet" in n.message for n in app._notifications)
        )
        assert app.screen is hosts, "no session tab was opened"
