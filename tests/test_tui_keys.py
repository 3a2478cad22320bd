"""Keys a k9s user relies on: number keys land on their view, `:` replaces a `:` view,
esc goes back one step, and a form keeps every printable key it is typed."""

from __future__ import annotations

import logging

from textual.widgets import Select

from opstui.ui.log_notices import logs_to_file
from opstui.ui.screens.resource import ResourceScreen
from tests.tui_support import SIZE, make_app, ready, wait_for


def _view(app) -> str | None:
    spec = getattr(app.screen, "spec", None)
    return spec.name if spec is not None else type(app.screen).__name__


async def _command(pilot, text: str) -> None:
    await pilot.press("colon")
    await wait_for(pilot, lambda: type(pilot.app.screen).__name__ == "CommandPrompt")
    await pilot.press(*text, "enter")


async def test_number_keys_land_on_their_view_after_a_colon_view(backend):
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("2")
        await wait_for(pilot, lambda: _view(app) == "hosts")
        await _command(pilot, "people")
        await wait_for(pilot, lambda: _view(app) == "profiles", what="people view")
        # `:` over a `:` view replaces it: one esc gets back to hosts.
        await _command(pilot, "members")
        await wait_for(pilot, lambda: _view(app) == "members", what="members view")
        await pilot.press("0")
        await wait_for(pilot, lambda: _view(app) == "OverviewScreen")
        await pilot.press("2")
        await wait_for(pilot, lambda: _view(app) == "hosts", what="hosts, not profiles")
        assert len(app.screen_stack) == 1
        await _command(pilot, "people")
        await wait_for(pilot, lambda: _view(app) == "profiles")
        await _command(pilot, "hosts")
        await wait_for(pilot, lambda: _view(app) == "hosts", what=":hosts shows hosts")
        await _command(pilot, "people")
        await wait_for(pilot, lambda: _view(app) == "profiles")
        await pilot.press("escape")
        await wait_for(pilot, lambda: _view(app) == "hosts", what="esc goes back one step")


async def test_digits_typed_on_a_form_select_stay_in_the_form(backend):
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("2")
        await wait_for(pilot, lambda: isinstance(app.screen, ResourceScreen))
        await pilot.press("c")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "FormScreen")
        form = app.screen
        form.query_one("#field-type", Select).focus()
        await pilot.pause()
        await pilot.press(*"999.1.1.1", "question_mark", "colon")
        assert app.screen is form, f"the form stays on top, not {type(app.screen).__name__}"
        assert len(app.screen_stack) == 2


async def test_while_the_tui_runs_logs_go_to_a_file_and_problems_to_a_notification(
    backend, tmp_path, monkeypatch
):
    monkeypatch.setenv("OPSTUI_LOG_DIR", str(tmp_path / "logs"))
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        root = logging.getLogger()
        with logs_to_file(app) as path:
            assert not any(
                isinstance(h, logging.StreamHandler)
                and not isinstance(h, logging.FileHandler)
                and getattr(h, "stream", None) is not None
                and getattr(h.stream, "name", "") == "<stderr>"
                for h in root.handlers
            ), "nothing writes to the terminal's stderr"
            logging.getLogger("opstui.backend.gateway").error(
                "unhandled error on POST /rest/v1/rpc/x\nTraceback (most recent call last): ..."
            )
            await wait_for(
                pilot,
                lambda: any("unhandled error" in n.message for n in app._notifications),
                what="a notification",
            )
            note = next(n for n in app._notifications if "unhandled error" in n.message)
            assert "Traceback" not in note.message and str(path) in note.message
        assert "Traceback (most recent call last)" in path.read_text(), "the file has it all"


async def test_the_command_line_suggests_and_tab_completes_resources_and_teams(backend):
    from textual.widgets import Input

    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("colon")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "CommandPrompt")
        prompt = app.screen
        field = prompt.query_one(Input)
        await pilot.press(*"hos")
        await wait_for(pilot, lambda: "hosts" in str(prompt.query_one("#prompt-matches").content))
        await pilot.press("tab")
        assert field.value == "hosts"
        field.value = ""
        team = next(t["name"] for t in app.store.identity.teams)
        await pilot.press(*f"team {team[:2].lower()}")
        await wait_for(pilot, lambda: team in str(prompt.query_one("#prompt-matches").content))
        await pilot.press("tab")
        assert field.value == f"team {team}", field.value
        await pilot.press("enter")
        await wait_for(pilot, lambda: type(app.screen).__name__ != "CommandPrompt")


async def test_footer_shows_only_working_keys_and_keeps_help_at_any_width(backend):
    from opstui.ui.widgets.footer import OpsFooter

    for size in ((80, 24), (140, 40)):
        app = make_app(backend)
        async with app.run_test(size=size) as pilot:
            await ready(pilot)
            await pilot.press("2")
            await wait_for(pilot, lambda: isinstance(app.screen, ResourceScreen))
            await pilot.pause()
            footer = app.screen.query_one(OpsFooter)
            await wait_for(pilot, lambda: "help" in footer.visible_actions(), what="? in footer")
            shown = footer.visible_actions()
            assert "pin" not in shown and "use_team" not in shown, shown
            assert shown[0] == "help"
            context = str(app.screen.query_one("#context").content)
            assert "live" in context and "admin@acme.test" in context, (size, context)


async def test_a_picked_theme_is_remembered_in_the_config(backend, tmp_path, monkeypatch):
    from opstui.config import load_config

    monkeypatch.setenv("OPSTUI_CONFIG_DIR", str(tmp_path / "config"))
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.toml").write_text("health_interval_seconds = 0\n")
    app = make_app(backend)
    app.remember_theme = True
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        app.theme = "nord"
        await wait_for(pilot, lambda: load_config().theme == "nord", what="theme saved")
    assert load_config().health_interval_seconds == 0, "the rest of the file is kept"
    again = make_app(backend)
    assert type(again)(again.connector, theme=load_config().theme).theme == "nord"


def test_a_config_with_only_a_theme_still_starts_the_embedded_demo_early(tmp_path, monkeypatch):
    from opstui.cli.tui import _plainly_embedded

    monkeypatch.setenv("OPSTUI_CONFIG_DIR", str(tmp_path))
    (tmp_path / "config.toml").write_text('theme = "nord"\n')
    assert _plainly_embedded(None)
    (tmp_path / "config.toml").write_text('theme = "nord"\n[profiles.prod]\nurl = "x"\n')
    assert not _plainly_embedded(None)


async def test_a_refused_key_names_its_action_in_words(backend):
    app = make_app(backend, "viewer@acme.test")
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("2")
        await wait_for(pilot, lambda: isinstance(app.screen, ResourceScreen))
        await pilot.press("n")  # native ssh: a viewer may not
        await wait_for(pilot, lambda: any("Not allowed" in n.message for n in app._notifications))
        note = next(n for n in app._notifications if "Not allowed" in n.message)
        assert note.title == "Native ssh", note.title


async def test_quitting_while_the_demo_runner_holds_a_run_asks_first(backend):
    """ctrl+q used to stop the in-process runner mid-run (the run ended `cancelled`)."""
    from types import SimpleNamespace

    saved = backend.demo_runners
    backend.demo_runners = SimpleNamespace(runners=[SimpleNamespace(held={"a-run": object()})])
    try:
        app = make_app(backend)
        async with app.run_test(size=SIZE) as pilot:
            await ready(pilot)
            await pilot.press("ctrl+q")
            await wait_for(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen")
            assert "deployment run" in str(app.screen.query_one("#detail").content)
            await pilot.press("n")
            await wait_for(pilot, lambda: type(app.screen).__name__ != "ConfirmScreen")
            assert app.is_running
    finally:
        backend.demo_runners = saved
