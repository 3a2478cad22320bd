"""Names, not ids: members, permissions, mappings and detail views show what people read."""

from __future__ import annotations

import re

from opstui.ui.screens.detail import DetailScreen
from opstui.ui.screens.resource import ResourceScreen
from tests.tui_support import SIZE, make_app, ready, text_of, wait_for

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


async def _command(pilot, text: str) -> None:
    await pilot.press("colon")
    await wait_for(pilot, lambda: type(pilot.app.screen).__name__ == "CommandPrompt")
    await pilot.press(*text, "enter")


def _painted(screen) -> str:
    table = screen.query_one("ResourceTable")
    return "\n".join(
        "".join(segment.text for segment in table._row_strip(i)) for i in range(len(table.view))
    )


async def test_members_and_permissions_show_emails_not_uuids(backend):
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        for view in ("members", "perms"):
            await _command(pilot, view)
            await wait_for(pilot, lambda: isinstance(app.screen, ResourceScreen))
            screen = app.screen
            await wait_for(pilot, lambda: len(screen.query_one("ResourceTable").view) > 0)
            painted = _painted(screen)
            assert "@acme.test" in painted, painted[:300]
            assert not UUID.search(painted), f"a raw id in {view}: {painted[:300]}"
            await pilot.press("escape")


async def test_a_deployments_detail_names_its_repository_and_team(backend):
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        store = app.store
        deployment = next(d for d in store.rows("deployments") if d.get("repository_id"))
        repository = store.row("repositories", deployment["repository_id"])
        await pilot.press("4")
        await wait_for(pilot, lambda: isinstance(app.screen, ResourceScreen))
        assert app.screen.query_one("ResourceTable").move_to(deployment["id"])
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen))
        body = text_of(app.screen.query_one("#detail-body"))
        assert f"{repository['name']}  ({repository['id']})" in body
