"""CI/CD in the TUI: the jobs view with last builds, the trigger form, the build view live,
cancel, refusals, `:builds`, `:providers` (test connection as a runner task), a run's steps.

The real app, store, supabase-py, gateway and Postgres. A second supabase-py client plays
the runner through the build RPCs (claim, update, append, finish), so these tests drive a
build step by step without depending on the runner's timing. No provider is called: the
provider row points at 127.0.0.1 and nothing listens there for these tests.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import psycopg
import pytest
from textual.widgets import Checkbox, Input, Select

from opstui.cicd import api
from opstui.ui.screens.build import BuildScreen
from opstui.ui.screens.cicd import (
    BuildsScreen,
    CicdScreen,
    ProvidersScreen,
    TriggerScreen,
    is_demo_provider,
)
from opstui.ui.screens.confirm import ConfirmScreen
from opstui.ui.screens.help import HelpScreen
from opstui.ui.screens.run import RunScreen
from opstui.ui.widgets.log_pane import LogPane
from opstui.ui.widgets.resource_table import ResourceTable
from opstui.views import format_cell
from tests.tui_support import SIZE, make_app, ready, text_of, wait_for

USER = "admin@acme.test"  # admin of Platform
RUNNER = "dev@acme.test"  # developer: execute on cicd_jobs and cicd_providers in Platform
VIEWER = "viewer@acme.test"
DEFINITIONS = [
    {"name": "ENVIRONMENT", "type": "choice", "choices": ["staging", "production"],
     "default": "staging"},
    {"name": "DRY_RUN", "type": "boolean", "default": True},
    {"name": "VERSION", "type": "string", "required": True, "description": "the release tag"},
    {"name": "RETRIES", "type": "number", "default": 2},
]  # fmt: skip


def _db(backend_info, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(backend_info.db_url, autocommit=True) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


@pytest.fixture
def job(backend_info):
    """A provider on 127.0.0.1 and one job in Platform; nothing else of Platform is queued."""
    team, tenant = _db(backend_info, "select id::text, tenant_id from teams where name = 'Platform'")[0]
    # What an earlier test left queued must not be handed to this test's "runner".
    _db(
        backend_info,
        "update cicd_builds set status = 'cancelled', finished_at = now() "
        "where team_id = %s and status in ('queued', 'running')",
        (team,),
    )
    _db(
        backend_info,
        "update cicd_provider_tasks set status = 'failed', finished_at = now() "
        "where team_id = %s and status in ('queued', 'running')",
        (team,),
    )
    suffix = uuid.uuid4().hex[:6]
    provider = str(
        _db(
            backend_info,
            "insert into cicd_providers (type, name, url, config, team_id) "
            "values ('jenkins', %s, 'http://127.0.0.1:9', %s, %s) returning id",
            (f"tui-jenkins-{suffix}", json.dumps({"username": "ci"}), team),
        )[0][0]
    )
    job_id = str(
        _db(
            backend_info,
            "insert into cicd_jobs (provider_id, external_id, name, team_id, parameter_definitions)"
            " values (%s, %s, %s, %s, %s) returning id",
            (provider, f"deploy-{suffix}", f"deploy-{suffix}", team, json.dumps(DEFINITIONS)),
        )[0][0]
    )
    yield {"team": team, "tenant": tenant, "provider": provider, "job": job_id,
           "name": f"deploy-{suffix}", "provider_name": f"tui-jenkins-{suffix}"}  # fmt: skip
    _db(backend_info, "delete from cicd_providers where id = %s", (provider,))


async def _claim(client, build_id: str) -> dict:
    for _ in range(100):
        claimed = await api.claim(client, "test-runner", 30)
        if claimed is not None:
            assert claimed["id"] == build_id, "a build queued elsewhere in Platform was handed out"
            return claimed
        await asyncio.sleep(0.05)
    raise AssertionError("the build was never handed out")


async def _open_cicd(pilot, job_id: str) -> ResourceTable:
    app = pilot.app
    await pilot.press("5")
    await wait_for(pilot, lambda: isinstance(app.screen, CicdScreen))
    table = app.screen.query_one(ResourceTable)
    await wait_for(pilot, lambda: table.move_to(job_id), what="the test job")
    await pilot.pause()
    return table


def _cell(app, table: ResourceTable, key: str, label: str) -> str:
    column = next(c for c in table.spec.columns if c.label == label)
    return format_cell(column, table.view.rows[key], app.clock(), app.screen._label_of)


def _header(app) -> str:
    found = app.screen.query("#build-header")
    return text_of(found.first()) if found else ""


def _notes(app) -> str:
    return " | ".join(n.message for n in app._notifications)


async def test_trigger_through_the_prefilled_checked_form(backend, backend_info, job):
    app = make_app(backend, USER)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        table = await _open_cicd(pilot, job["job"])
        assert _cell(app, table, job["job"], "LAST BUILD") == ""
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, TriggerScreen), what="trigger form")
        form = app.screen
        # Pre-filled from the definitions: the default choice, the default box, the number.
        assert form.query_one("#param-0", Select).value == "staging"
        assert form.query_one("#param-1", Checkbox).value is True
        assert form.query_one("#param-2", Input).value == ""
        assert form.query_one("#param-3", Input).value == "2"
        assert any("the release tag" in str(hint.render()) for hint in form.query(".field-hint"))

        # A missing required value and a bad number are refused under their fields.
        form.query_one("#param-3", Input).value = "two"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "VERSION is required" in str(form.query_one("#param-2-error").render())
        assert "not a number" in str(form.query_one("#param-3-error").render())
        assert _db(backend_info, "select 1 from cicd_builds where job_id = %s", (job["job"],)) == []

        form.query_one("#param-2", Input).value = "1.4.2"
        form.query_one("#param-3", Input).value = "3"
        form.query_one("#param-0", Select).value = "production"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, BuildScreen), what="the build view")
        rows = _db(
            backend_info,
            "select id::text, status, parameters, requested_by is not null from cicd_builds "
            "where job_id = %s",
            (job["job"],),
        )
        assert len(rows) == 1
        build_id, status, parameters, by_someone = rows[0]
        assert status == "queued" and by_someone
        assert parameters == {"ENVIRONMENT": "production", "DRY_RUN": True, "VERSION": "1.4.2",
                              "RETRIES": 3}  # fmt: skip
        assert app.screen.build_id == build_id
        await wait_for(pilot, lambda: "queued" in _header(app), what="queued in the header")

        # Back on the jobs view, the job's row shows its last build.
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, CicdScreen))
        await wait_for(
            pilot, lambda: _cell(app, table, job["job"], "LAST BUILD") == "queued", what="row"
        )
        # l opens the latest build.
        await pilot.press("l")
        await wait_for(pilot, lambda: isinstance(app.screen, BuildScreen))
        assert app.screen.build_id == build_id


async def test_the_build_view_follows_status_and_log_live(
    backend, backend_info, job, sign_in, monkeypatch
):
    runner = await sign_in(RUNNER)
    user = await sign_in(USER)
    build_id = await api.trigger(user, job["job"], {"VERSION": "9"})
    opened: list[str] = []
    import webbrowser

    monkeypatch.setattr(webbrowser, "get", lambda *a, **k: object())
    monkeypatch.setattr(webbrowser, "open", lambda url, *a, **k: opened.append(url) or True)

    app = make_app(backend, USER)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        table = await _open_cicd(pilot, job["job"])
        await pilot.press("l")
        await wait_for(pilot, lambda: isinstance(app.screen, BuildScreen), what="build view")
        screen = app.screen
        await wait_for(pilot, lambda: "queued" in _header(app))
        assert "not known yet" in _header(app)
        await pilot.press("o")  # no URL yet: refused with the reason
        await wait_for(pilot, lambda: "has no URL yet" in _notes(app))

        await _claim(runner, build_id)
        url = f"http://127.0.0.1:9/job/{job['name']}/42/"
        await api.update(runner, build_id, {"number": "42", "url": url, "status": "running"})
        await api.append_log(runner, build_id, [{"text": "Started by opstui\n"},
                                                {"stream": "stderr", "text": "warning: cold cache\n"}])  # fmt: skip
        await wait_for(pilot, lambda: "#42" in _header(app) and "running" in _header(app),
                       what="number and status live")  # fmt: skip
        assert url in _header(app)
        pane = screen.query_one(LogPane)
        await wait_for(pilot, lambda: pane.last_seq == 2, what="the first chunks")
        await api.append_log(runner, build_id, [{"text": "Finished: SUCCESS\n"}])
        await api.finish(runner, build_id, "succeeded")
        await wait_for(pilot, lambda: "succeeded" in _header(app), what="succeeded")
        await wait_for(pilot, lambda: pane.last_seq == 3)
        text = "\n".join(pane.view.plain_lines)
        assert text.index("Started by opstui") < text.index("cold cache") < text.index("Finished")

        # The URL: c copies it, o opens it in the browser (a thread; the loop never waits).
        await pilot.press("c")
        await wait_for(pilot, lambda: app.clipboard == url, what="copied")
        await pilot.press("o")
        await wait_for(pilot, lambda: opened == [url], what="opened")
        # It ended: nothing to cancel, and the key says why.
        await pilot.press("ctrl+k")
        await wait_for(pilot, lambda: "already ended (succeeded)" in _notes(app))

        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        await pilot.press("escape")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, CicdScreen))
        assert _cell(app, table, job["job"], "LAST BUILD") == "succeeded"
        assert _cell(app, table, job["job"], "#") == "42"


async def test_cancel_asks_then_cancels_a_queued_build_and_requests_a_running_one(
    backend, backend_info, job, sign_in
):
    runner = await sign_in(RUNNER)
    user = await sign_in(USER)
    queued = await api.trigger(user, job["job"], {"VERSION": "1"})
    app = make_app(backend, USER)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        app.open_build(queued)
        await wait_for(pilot, lambda: isinstance(app.screen, BuildScreen))
        await wait_for(pilot, lambda: "queued" in _header(app))
        await pilot.press("ctrl+k")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "will not start" in str(app.screen.query_one("#detail").render())
        await pilot.press("n")  # keep it
        await pilot.pause()
        assert _db(backend_info, "select status from cicd_builds where id = %s", (queued,)) == [
            ("queued",)
        ]
        await pilot.press("ctrl+k")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(pilot, lambda: "cancelled" in _header(app), what="cancelled live")
        assert "cancelled before a runner picked it up" in _header(app)

        running = await api.trigger(user, job["job"], {"VERSION": "2"})
        await _claim(runner, running)
        await api.update(runner, running, {"status": "running"})
        await pilot.press("escape")
        app.open_build(running)
        await wait_for(pilot, lambda: isinstance(app.screen, BuildScreen) and "running" in _header(app))
        await pilot.press("ctrl+k")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(pilot, lambda: "cancel requested by" in _header(app), what="requested")
        assert await api.heartbeat(runner, running, 30) is True
        await api.finish(runner, running, "cancelled", "cancelled on the provider")
        await wait_for(pilot, lambda: "error: cancelled on the provider" in _header(app))


async def test_a_viewer_is_refused_with_the_reason(backend, backend_info, job, sign_in):
    user = await sign_in(USER)
    build_id = await api.trigger(user, job["job"], {"VERSION": "1"})
    app = make_app(backend, VIEWER)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await _open_cicd(pilot, job["job"])
        await pilot.press("x")
        await wait_for(pilot, lambda: "needs execute on cicd_jobs" in _notes(app), what="refusal")
        assert not isinstance(app.screen, TriggerScreen)
        app.open_build(build_id)
        await wait_for(pilot, lambda: isinstance(app.screen, BuildScreen) and "queued" in _header(app))
        await pilot.press("ctrl+k")
        await wait_for(pilot, lambda: _notes(app).count("needs execute on cicd_jobs") == 2)
        assert not isinstance(app.screen, ConfirmScreen)
        await pilot.press("escape")
        await pilot.press("colon", *"providers", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ProvidersScreen))
        table = app.screen.query_one(ResourceTable)
        await wait_for(pilot, lambda: table.move_to(job["provider"]))
        await pilot.press("t")
        await wait_for(pilot, lambda: "needs execute on cicd_providers" in _notes(app))
        await pilot.press("r")
        await wait_for(pilot, lambda: "needs update on cicd_jobs" in _notes(app))
    assert _db(backend_info, "select status from cicd_builds where id = %s", (build_id,)) == [
        ("queued",)
    ]


async def test_builds_list_providers_test_connection_and_a_failed_build(
    backend, backend_info, job, sign_in
):
    runner = await sign_in(RUNNER)
    user = await sign_in(USER)
    build_id = await api.trigger(user, job["job"], {"VERSION": "3"})
    await _claim(runner, build_id)
    await api.finish(runner, build_id, "failed", "404: job deploy not found on the provider")
    app = make_app(backend, USER)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        table = await _open_cicd(pilot, job["job"])
        assert _cell(app, table, job["job"], "LAST BUILD") == "failed"
        assert "404: job deploy not found" in _cell(app, table, job["job"], "ERROR")
        assert "a demo CI server" in str(table.border_subtitle)
        assert _cell(app, table, job["job"], "PROVIDER") == f"{job['provider_name']} (demo)"
        await pilot.press("e")  # jobs come from the provider: no form, and the key says so
        await wait_for(pilot, lambda: "jobs come from their provider" in _notes(app))

        await pilot.press("colon", *"builds", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, BuildsScreen))
        builds = app.screen.query_one(ResourceTable)
        await wait_for(pilot, lambda: builds.move_to(build_id), what="the build in :builds")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, BuildScreen))
        await wait_for(pilot, lambda: "error: 404: job deploy not found" in _header(app))
        assert "(demo CI server)" in _header(app)

        await pilot.press("escape")
        await pilot.press("colon", *"providers", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ProvidersScreen))
        providers = app.screen.query_one(ResourceTable)
        await wait_for(pilot, lambda: providers.move_to(job["provider"]))
        # Other tests' providers may be listed first: the row itself must count as a demo one.
        assert "demo CI servers" in str(providers.border_subtitle)
        assert is_demo_provider(app, providers.view.rows[job["provider"]])
        await pilot.press("t")

        async def answer() -> None:  # the runner's side: only it reads the token
            for _ in range(100):
                task = await api.claim_task(runner, "test-runner")
                if task is not None:
                    assert task["provider_id"] == job["provider"] and task["kind"] == "test"
                    await api.finish_task(runner, task["id"], "failed", "401: the token was refused")
                    return
                await asyncio.sleep(0.05)
            raise AssertionError("no provider task was queued")

        await answer()
        await wait_for(pilot, lambda: "401: the token was refused" in _notes(app), what="result")

        # A job its provider no longer lists cannot be triggered, and the key says why.
        await pilot.press("5")
        await wait_for(pilot, lambda: isinstance(app.screen, CicdScreen))
        await wait_for(pilot, lambda: table.move_to(job["job"]))
        _db(backend_info, "update cicd_jobs set vanished_at = now() where id = %s", (job["job"],))
        await wait_for(pilot, lambda: table.view.rows[job["job"]].get("vanished_at"), what="live")
        await pilot.press("x")
        await wait_for(pilot, lambda: "vanished from its provider" in _notes(app))
        assert not isinstance(app.screen, TriggerScreen)
        _db(backend_info, "update cicd_jobs set vanished_at = null where id = %s", (job["job"],))
        await wait_for(pilot, lambda: not table.view.rows[job["job"]].get("vanished_at"))

        # The server's refusal reaches the form in one line, and what was typed stays.
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, TriggerScreen))
        form = app.screen
        form.query_one("#param-2", Input).value = "5.0"
        _db(backend_info, "delete from cicd_jobs where id = %s", (job["job"],))
        await pilot.press("ctrl+s")
        error = form.query_one("#form-error")
        await wait_for(pilot, lambda: "permission denied" in str(error.render()), what="refusal")
        assert "\n" not in str(error.render()) and app.screen is form
        assert form.query_one("#param-2", Input).value == "5.0"


async def test_the_run_view_shows_its_ci_cd_steps(backend, backend_info, job):
    deployment = str(
        _db(
            backend_info,
            "insert into deployments (name, team_id, tenant_id, status, schedule_type, host_ids) "
            "values (%s, %s, %s, 'pending', 'now', '{}') returning id",
            (f"tui-steps-{uuid.uuid4().hex[:6]}", job["team"], job["tenant"]),
        )[0][0]
    )
    run_id = str(
        _db(
            backend_info,
            "insert into deployment_runs (deployment_id, team_id, tenant_id, number, trigger, "
            "status, started_at, finished_at, spec) values (%s, %s, %s, 1, 'manual', 'failed', "
            "now(), now(), %s) returning id",
            (deployment, job["team"], job["tenant"], json.dumps({"deployment_name": "steps"})),
        )[0][0]
    )
    build_id = str(
        _db(
            backend_info,
            "insert into cicd_builds (job_id, provider_id, provider_type, job_name, team_id, "
            "tenant_id, run_id, status, number, url, error) values (%s, %s, 'jenkins', %s, %s, %s,"
            " %s, 'failed', '17', 'http://127.0.0.1:9/job/x/17/', 'FAILURE') returning id",
            (job["job"], job["provider"], job["name"], job["team"], job["tenant"], run_id),
        )[0][0]
    )
    try:
        app = make_app(backend, USER)
        async with app.run_test(size=SIZE) as pilot:
            await ready(pilot)
            app.open_run(run_id)
            await wait_for(
                pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.query("#run-builds")
            )
            steps = app.screen.query_one("#run-builds")
            await wait_for(pilot, lambda: steps.row_count == 1, what="the build step")
            assert steps.display
            cells = [str(c) for c in steps.get_row(build_id)]
            assert cells[:4] == [job["name"], "failed", "#17", "http://127.0.0.1:9/job/x/17/"]
            await pilot.press("b")
            await wait_for(pilot, lambda: isinstance(app.screen, BuildScreen))
            assert app.screen.build_id == build_id
    finally:
        _db(backend_info, "delete from deployments where id = %s", (deployment,))


async def test_the_build_view_catches_up_after_an_outage(backend, backend_info, job, sign_in):
    runner = await sign_in(RUNNER)
    user = await sign_in(USER)
    build_id = await api.trigger(user, job["job"], {"VERSION": "7"})
    await _claim(runner, build_id)
    await api.update(runner, build_id, {"status": "running", "number": "8"})
    await api.append_log(runner, build_id, [{"text": "one\n"}])
    app = make_app(backend, USER)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        app.open_build(build_id)
        await wait_for(pilot, lambda: isinstance(app.screen, BuildScreen) and app.screen.is_mounted)
        pane = app.screen.query_one(LogPane)
        await wait_for(pilot, lambda: pane.last_seq == 1, what="the stored chunk")
        await backend.stop_gateway()
        try:
            await wait_for(pilot, lambda: app.store.status.state.value != "live", what="outage")
            # Written while nobody can hear: never pushed, so it must come from a re-read.
            _db(
                backend_info,
                "insert into cicd_build_logs (build_id, seq, stream, text, team_id) "
                "values (%s, 2, 'stdout', 'two' || chr(10), %s)",
                (build_id, job["team"]),
            )
            # The log's poll fails while the server is away, and the view says so.
            await wait_for(pilot, lambda: "log paused" in _header(app), timeout=20, what="note")
        finally:
            await backend.start_gateway()
        await wait_for(pilot, lambda: pane.last_seq == 2, timeout=40, what="the missed chunk")
        assert [line.split(" │ ")[1] for line in pane.view.plain_lines] == ["one", "two"]
        assert pane.duplicates == 0 and pane.gaps == []
        await wait_for(pilot, lambda: "log paused" not in _header(app), what="the note goes")
    await api.finish(runner, build_id, "succeeded")


async def test_a_job_without_parameters_triggers_from_an_empty_form(backend, backend_info, job):
    bare = str(
        _db(
            backend_info,
            "insert into cicd_jobs (provider_id, external_id, name, team_id) "
            "values (%s, %s, %s, %s) returning id",
            (job["provider"], f"bare-{job['name']}", f"bare-{job['name']}", job["team"]),
        )[0][0]
    )
    app = make_app(backend, USER)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await _open_cicd(pilot, bare)
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, TriggerScreen) and app.screen.is_mounted)
        assert app.focused is app.screen.query_one("#trigger")
        await pilot.press("enter")  # the focused Trigger button
        await wait_for(pilot, lambda: isinstance(app.screen, BuildScreen), what="the build view")
    assert _db(backend_info, "select parameters from cicd_builds where job_id = %s", (bare,)) == [({},)]
