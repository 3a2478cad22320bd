"""Pilot tests: the real app, the real store, supabase-py, the gateway, Postgres."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from opstui.store import ConnectionState
from opstui.ui.screens.detail import DetailScreen
from opstui.ui.screens.help import HelpScreen
from opstui.ui.screens.overview import OverviewScreen
from opstui.ui.screens.prompt import CommandPrompt
from opstui.ui.screens.resource import ResourceScreen
from opstui.ui.widgets.resource_table import ResourceTable
from tests.tui_support import SIZE, make_app, ready, text_of, wait_for


def _db(backend_info, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(backend_info.db_url, autocommit=True) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


def _team_id(backend_info, name: str) -> str:
    return str(_db(backend_info, "select id from teams where name = %s", (name,))[0][0])


def _table(app) -> ResourceTable:
    return app.screen.query_one(ResourceTable)


def _footer_actions(app) -> set[str]:
    return {
        binding.action
        for (_, binding, enabled, _) in app.screen.active_bindings.values()
        if enabled
    }


async def test_start_shows_the_overview_with_the_demo_context(backend):
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        assert isinstance(app.screen, OverviewScreen)
        context = text_of(app.screen.query_one("#context"))
        assert "demo backend" in context
        assert "team Platform" in context and "tenant Acme Corp" in context
        assert "live" in context
        counts = text_of(app.screen.query_one("#deploy-counts"))
        assert "in_progress" in counts


async def test_number_keys_and_command_line_switch_views(backend, backend_info):
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("2")
        await wait_for(pilot, lambda: isinstance(app.screen, ResourceScreen))
        assert app.screen.spec.name == "hosts"
        team = _team_id(backend_info, "Platform")
        expected = _db(backend_info, "select count(*) from hosts where team_id = %s", (team,))[0][0]
        await wait_for(pilot, lambda: len(_table(app).view) == expected, what="all hosts")

        for key, name in (
            ("3", "repositories"),
            ("4", "deployments"),
            ("5", "cicd"),
            ("1", "teams"),
        ):
            await pilot.press(key)
            await wait_for(
                pilot,
                lambda n=name: getattr(app.screen, "spec", None) and app.screen.spec.name == n,
            )
        await pilot.press("0")
        await wait_for(pilot, lambda: isinstance(app.screen, OverviewScreen))

        # `:` with an alias, as in k9s.
        await pilot.press("colon")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPrompt))
        await pilot.press(*"deploy", "enter")
        await wait_for(
            pilot,
            lambda: getattr(app.screen, "spec", None) and app.screen.spec.name == "deployments",
        )
        await pilot.press("colon", *"jobs", "enter")  # the CI/CD view: jobs and last builds
        await wait_for(
            pilot, lambda: getattr(app.screen, "spec", None) and app.screen.spec.name == "cicd"
        )
        await pilot.press("colon", *"nonsense", "enter")
        await wait_for(
            pilot, lambda: any("unknown command" in n.message for n in app._notifications)
        )


async def test_filter_sort_detail_raw_and_back(backend, backend_info):
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("2")
        await wait_for(
            pilot, lambda: isinstance(app.screen, ResourceScreen) and len(_table(app).view) > 3
        )
        table = _table(app)
        total = len(table.view)

        await pilot.press("slash", *"k8s")
        await wait_for(pilot, lambda: 0 < len(table.view) < total, what="filter narrows")
        names = [table.view.rows[table.view.key_at(i)]["name"] for i in range(len(table.view))]
        assert all("k" in n and "8" in n for n in names)
        assert "</k8s>" in table.border_title
        await pilot.press("enter", "escape")
        await wait_for(pilot, lambda: len(table.view) == total, what="filter cleared")

        await pilot.press("slash", *"!k8s", "enter")
        await wait_for(pilot, lambda: len(table.view) < total)
        inverted = {table.view.rows[table.view.key_at(i)]["name"] for i in range(len(table.view))}
        assert not any(name.startswith("k8s") for name in inverted)
        await pilot.press("escape")

        before = table.view.sort_column
        await pilot.press("o")
        assert table.view.sort_column != before
        column = table.view.sort_column
        values = [table.view.rows[table.view.key_at(i)].get(column) for i in range(len(table.view))]
        present = [v for v in values if v is not None]
        assert present == sorted(present, key=lambda v: str(v).lower() if isinstance(v, str) else v)
        await pilot.press("O")
        assert table.view.sort_reverse is True
        assert table.view.key_at(0) != table.view.key_at(len(table.view) - 1)

        await pilot.press("home", "space", "space")
        assert len(table.marked) == 2
        await pilot.press("ctrl+a")
        assert table.marked == set(table.view.rows)
        await pilot.press("ctrl+a")
        assert table.marked == set()

        await pilot.press("home", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen))
        body = text_of(app.screen.query_one("#detail-body"))
        assert "ip" in body and "Deployments targeting this host" in body
        await pilot.press("y")
        raw = text_of(app.screen.query_one("#detail-body"))
        assert "team_id:" in raw  # YAML
        await pilot.press("J")
        assert '"team_id"' in text_of(app.screen.query_one("#detail-body"))
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ResourceScreen))


async def test_help_lists_the_keys_of_the_current_screen(backend):
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("4")
        await wait_for(pilot, lambda: isinstance(app.screen, ResourceScreen))
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        text = text_of(app.screen.query_one("#help-body Static"))
        for description in ("Filter", "Order by", "Detail", "Command", "YAML", "Mark all shown"):
            assert description in text
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ResourceScreen))


async def test_teams_view_shows_members_and_switches_team(backend, backend_info):
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("1")
        await wait_for(
            pilot, lambda: isinstance(app.screen, ResourceScreen) and len(_table(app).view) >= 2
        )
        table = _table(app)
        payments = _team_id(backend_info, "Payments")
        assert table.move_to(payments)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen))
        # Payments is not the active team: its members are fetched on demand.
        await wait_for(
            pilot, lambda: "tester@acme.test" in text_of(app.screen.query_one("#detail-body"))
        )
        assert "Permissions" in text_of(app.screen.query_one("#detail-body"))
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ResourceScreen))
        assert table.move_to(payments)
        await pilot.pause()
        await pilot.press("u")
        await wait_for(pilot, lambda: app.store.team_id == payments, what="team switched with u")


async def test_palette_switches_team(backend, backend_info):
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("ctrl+p")
        await pilot.press(*"switch to team payments")
        from textual.command import CommandList

        await wait_for(
            pilot,
            lambda: (
                bool(app.screen.query(CommandList))
                and app.screen.query_one(CommandList).option_count > 0
            ),
            what="palette matches",
        )
        await pilot.press("enter")
        payments = _team_id(backend_info, "Payments")
        await wait_for(pilot, lambda: app.store.team_id == payments, what="team switched")


async def test_team_switch_swaps_rows_and_subscriptions(backend, backend_info):
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("2")
        await wait_for(pilot, lambda: isinstance(app.screen, ResourceScreen))
        payments = _team_id(backend_info, "Payments")
        await pilot.press("colon", *"team Payments", "enter")
        await wait_for(pilot, lambda: app.store.team_id == payments)
        await ready(pilot)
        expected = {
            r[0]
            for r in _db(backend_info, "select name from hosts where team_id = %s", (payments,))
        }
        await wait_for(
            pilot, lambda: {r["name"] for r in _table(app).view.rows.values()} == expected
        )
        assert "(Payments)" in _table(app).border_title

        # Only the new team's changes arrive now.
        platform = _team_id(backend_info, "Platform")
        name = f"old-team-{uuid.uuid4().hex[:6]}"
        mine = f"new-team-{uuid.uuid4().hex[:6]}"
        _db(
            backend_info,
            "insert into hosts (name, type, ip, team_id) values (%s, 'ssh', '127.0.2.99', %s)",
            (name, platform),
        )
        _db(
            backend_info,
            "insert into hosts (name, type, ip, team_id) values (%s, 'ssh', '127.0.2.98', %s)",
            (mine, payments),
        )
        try:
            await wait_for(
                pilot, lambda: mine in {r["name"] for r in _table(app).view.rows.values()}
            )
            assert name not in {r["name"] for r in _table(app).view.rows.values()}
        finally:
            _db(backend_info, "delete from hosts where name in (%s, %s)", (name, mine))


async def test_a_row_written_elsewhere_appears_changes_and_goes(backend, backend_info):
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("2")
        await wait_for(pilot, lambda: isinstance(app.screen, ResourceScreen))
        table = _table(app)
        team = _team_id(backend_info, "Platform")
        name = f"live-{uuid.uuid4().hex[:6]}"
        (host_id,) = _db(
            backend_info,
            "insert into hosts (name, type, ip, status, team_id) values (%s, 'ssh', '127.0.2.77', 'pending', %s) returning id",
            (name, team),
        )[0]
        try:
            await wait_for(
                pilot,
                lambda: name in {r["name"] for r in table.view.rows.values()},
                what="insert shown",
            )
            _db(backend_info, "update hosts set status = 'online' where id = %s", (host_id,))
            await wait_for(
                pilot,
                lambda: table.view.rows.get(host_id, {}).get("status") == "online",
                what="update shown",
            )
        finally:
            _db(backend_info, "delete from hosts where id = %s", (host_id,))
        await wait_for(pilot, lambda: host_id not in table.view.rows, what="delete shown")


@pytest.mark.parametrize(
    ("email", "can_create"),
    [("admin@acme.test", True), ("viewer@acme.test", False)],
)
async def test_actions_follow_the_users_permissions(backend, email, can_create):
    app = make_app(backend, email)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("2")
        await wait_for(
            pilot, lambda: isinstance(app.screen, ResourceScreen) and len(_table(app).view) > 0
        )
        await pilot.pause()
        actions = _footer_actions(app)
        assert ("create" in actions) is can_create
        assert ("edit" in actions) is can_create
        assert ("delete" in actions) is can_create
        assert "pin" not in actions  # only repositories can be pinned
        if not can_create:
            await pilot.press("c")
            await wait_for(
                pilot,
                lambda: any("needs insert on hosts" in n.message for n in app._notifications),
                what="explanation of the missing permission",
            )
            assert not any(type(s).__name__ == "FormScreen" for s in app.screen_stack)
        else:
            await pilot.press("c")
            await wait_for(pilot, lambda: type(app.screen).__name__ == "FormScreen")


async def test_own_rows_only_for_a_contributor(backend, backend_info):
    """The contributor may edit rows they created (update_own) and nobody else's."""
    app = make_app(backend, "contrib@acme.test")
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        store = app.store
        me = store.identity.user_id
        hosts = store.rows("hosts")
        mine = [h for h in hosts if h.get("creator_id") == me]
        others = [h for h in hosts if h.get("creator_id") != me]
        assert others, "demo data has hosts created by others"
        assert not store.can("hosts", "update", others[0]).allowed
        assert "only update rows you created" in store.can("hosts", "update", others[0]).reason
        if mine:
            assert store.can("hosts", "update", mine[0]).allowed


async def test_recovers_after_the_backend_restarts_and_resyncs(backend, backend_info):
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("2")
        await wait_for(pilot, lambda: isinstance(app.screen, ResourceScreen))
        table = _table(app)
        team = _team_id(backend_info, "Platform")
        await backend.stop_gateway()
        try:
            await wait_for(
                pilot,
                lambda: app.store.status.state is not ConnectionState.LIVE,
                what="the outage is visible",
            )
            assert "reconnecting" in text_of(app.screen.query_one("#context")) or "offline" in str(
                app.screen.query_one("#context").render()
            )
            # A change made while we are disconnected is never pushed to us...
            name = f"during-outage-{uuid.uuid4().hex[:6]}"
            _db(
                backend_info,
                "insert into hosts (name, type, ip, team_id) values (%s, 'ssh', '127.0.2.55', %s)",
                (name, team),
            )
        finally:
            await backend.start_gateway()
        try:
            # ...so it must arrive through the resync after the rejoin.
            await wait_for(
                pilot,
                lambda: app.store.status.state is ConnectionState.LIVE,
                timeout=30,
                what="live again",
            )
            await wait_for(
                pilot, lambda: name in {r["name"] for r in table.view.rows.values()}, timeout=30
            )
        finally:
            _db(backend_info, "delete from hosts where name = %s", (name,))


async def test_create_through_the_form_arrives_live_and_delete_asks_first(backend, backend_info):
    from textual.widgets import Input

    app = make_app(backend)
    name = f"form-{uuid.uuid4().hex[:6]}"
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("2")
        await wait_for(pilot, lambda: isinstance(app.screen, ResourceScreen))
        table = _table(app)
        await pilot.press("c")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "FormScreen")
        form = app.screen
        form.query_one("#field-name", Input).value = name
        form.query_one("#field-ip", Input).value = "127.0.2.250"
        form.query_one("#field-port", Input).value = "2222"
        form.query_one("#field-password", Input).value = "s3cret-from-form"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, ResourceScreen), what="form closed")
        # The new row comes back through realtime, like anyone else's change.
        await wait_for(pilot, lambda: name in {r["name"] for r in table.view.rows.values()})
        row = next(r for r in table.view.rows.values() if r["name"] == name)
        assert row["port"] == 2222 and row["password"] is None  # the secret was moved away
        assert (
            _db(
                backend_info,
                "select count(*) from private.host_secrets where host_id = %s",
                (row["id"],),
            )[0][0]
            == 1
        )

        assert table.move_to(row["id"])
        await pilot.pause()
        await pilot.press("ctrl+d")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen")
        assert name in text_of(app.screen.query_one("#question"))
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, ResourceScreen))
        assert _db(backend_info, "select 1 from hosts where id = %s", (row["id"],)), "kept on no"
        await pilot.press("ctrl+d")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen")
        await pilot.press("y")
        await wait_for(pilot, lambda: row["id"] not in table.view.rows, what="deleted row gone")
        assert not _db(backend_info, "select 1 from hosts where id = %s", (row["id"],))


async def test_a_server_refusal_is_shown_in_the_form_and_keeps_the_input(backend, backend_info):
    from textual.widgets import Input

    core = _team_id(backend_info, "Core")
    used = _db(
        backend_info,
        "select count(*) from hosts h join teams t on t.id = h.team_id where t.tenant_id ="
        " (select tenant_id from teams where id = %s)",
        (core,),
    )[0][0]
    (limit,) = _db(
        backend_info,
        "select rl.max_count from resource_limits rl join tenants t on t.subscription_tier_id = rl.tier_id"
        " join teams tm on tm.tenant_id = t.id where tm.id = %s and rl.resource_type = 'hosts'",
        (core,),
    )[0]
    filler = f"fill-{uuid.uuid4().hex[:6]}"
    for i in range(limit - used):  # bring Globex to its host limit
        _db(
            backend_info,
            "insert into hosts (name, type, ip, team_id) values (%s, 'ssh', '127.0.2.1', %s)",
            (f"{filler}-{i}", core),
        )
    app = make_app(backend, "ops@globex.test")
    try:
        async with app.run_test(size=SIZE) as pilot:
            await ready(pilot)
            await pilot.press("2")
            await wait_for(pilot, lambda: isinstance(app.screen, ResourceScreen))
            await pilot.press("c")
            await wait_for(pilot, lambda: type(app.screen).__name__ == "FormScreen")
            form = app.screen
            form.query_one("#field-name", Input).value = "one-too-many"
            form.query_one("#field-ip", Input).value = "127.0.2.251"
            await pilot.press("ctrl+s")
            await wait_for(
                pilot, lambda: "resource limit reached" in text_of(form.query_one("#form-error"))
            )
            assert app.screen is form, "the form stays open"
            assert form.query_one("#field-name", Input).value == "one-too-many"
            assert form.query_one("#field-ip", Input).value == "127.0.2.251"
    finally:
        _db(backend_info, "delete from hosts where name like %s", (f"{filler}-%",))


async def test_pinning_moves_a_repository_first(backend, backend_info):
    app = make_app(backend, "dev@acme.test")
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("3")
        await wait_for(
            pilot, lambda: isinstance(app.screen, ResourceScreen) and len(_table(app).view) > 2
        )
        table = _table(app)
        await pilot.press("end")
        last = table.current_key
        assert last not in table.view.pinned
        assert "pin" in _footer_actions(app)
        await pilot.press("p")
        await wait_for(
            pilot, lambda: last in table.view.pinned, what="pin arrives through realtime"
        )
        assert table.view.index_of(last) < len(table.view.pinned)
        assert table.move_to(last)
        await pilot.pause()
        await pilot.press("p")
        await wait_for(pilot, lambda: last not in table.view.pinned, what="unpinned")


async def test_periodic_health_checks_write_status_without_prompting(
    backend, backend_info, tmp_path
):
    """Background checks never ask about host keys: an unknown key becomes the host's status."""
    from opstui.ssh.known_hosts import KnownHosts
    from opstui.ui import ssh_bridge

    app = make_app(backend)
    app.health_interval = 0.5
    # Empty known_hosts files of its own: other tests may have trusted the demo keys.
    known = KnownHosts(user_path=tmp_path / "user_known_hosts", own_path=tmp_path / "known_hosts")
    ssh_bridge._BRIDGES[app] = ssh_bridge.SshBridge(app, known_hosts=known)
    team = _team_id(backend_info, "Platform")
    # The checks rewrite every team host's status; put them back afterwards.
    before = _db(
        backend_info,
        "select id, status, last_checked_at, health from hosts where team_id = %s",
        (team,),
    )
    # Earlier SSH tests may have checked these hosts (and trusted their keys elsewhere):
    # start from "never checked", so only this app's periodic check can satisfy the wait.
    _db(
        backend_info,
        "update hosts set status = 'pending', last_checked_at = null where team_id = %s",
        (team,),
    )
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        lab = [r for r in app.store.rows("hosts") if r["name"] == "lab-web-01"]
        assert lab, "the demo SSH host is in the team"
        try:
            await wait_for(
                pilot,
                lambda: (
                    (app.store.row("hosts", lab[0]["id"]) or {}).get("last_checked_at") is not None
                ),
                timeout=30,
                what="a periodic check written and pushed back through realtime",
            )
            checked = app.store.row("hosts", lab[0]["id"])
            assert checked["status"] == "host_key_unknown"
            assert not any(type(s).__name__ == "HostKeyScreen" for s in app.screen_stack)
        finally:
            await app.store.close()  # stop the periodic checks before restoring
            from opstui.ui.ssh_bridge import close_ssh

            await close_ssh(app)
            for host_id, status, checked_at, health in before:
                _db(
                    backend_info,
                    "update hosts set status = %s, last_checked_at = %s, health = %s where id = %s",
                    (
                        status,
                        checked_at,
                        psycopg.types.json.Jsonb(health) if health is not None else None,
                        host_id,
                    ),
                )
