"""Deployment runs in the TUI: launch, the run view live, cancel, history, refusals, the log.

The real app, store, supabase-py, gateway and Postgres. A second supabase-py
client plays the runner through the runner RPCs (claim, update_run_host,
append_run_log, set_run_batch, finish), so these tests drive a run step by
step without depending on the runner's own code.

They use the Globex "Core" team: its only executors are ops@ and dev@globex,
so a claim made here hands out only runs queued here.
"""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest

from opstui.runs import api
from opstui.ui.screens.confirm import ConfirmScreen
from opstui.ui.screens.detail import DetailScreen
from opstui.ui.screens.help import HelpScreen
from opstui.ui.screens.overview import OverviewScreen
from opstui.ui.screens.resource import ResourceScreen
from opstui.ui.screens.run import RunScreen
from opstui.ui.widgets.log_pane import LogPane
from opstui.ui.widgets.resource_table import ResourceTable
from tests.tui_support import SIZE, make_app, ready, text_of, wait_for

USER = "ops@globex.test"
RUNNER = "dev@globex.test"


def _db(backend_info, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(backend_info.db_url, autocommit=True) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


@pytest.fixture
def core(backend_info):
    """A fresh deployment in Core on three of its hosts; no other Core run is waiting."""
    team, tenant = _db(backend_info, "select id::text, tenant_id from teams where name = 'Core'")[0]
    hosts = _db(
        backend_info, "select id, name from hosts where team_id = %s order by name limit 3", (team,)
    )
    # A run an earlier test left queued in Core must not be handed out here.
    _db(
        backend_info,
        "update deployment_runs set status = 'cancelled', finished_at = now() "
        "where team_id = %s and status = 'queued'",
        (team,),
    )
    name = f"tui-run-{uuid.uuid4().hex[:6]}"
    deployment = str(
        _db(
            backend_info,
            """
            insert into deployments (name, team_id, tenant_id, status, schedule_type,
                                     scripts_path, scripts_parameters, host_ids,
                                     rollout_batch_size, rollout_max_failures,
                                     host_timeout_seconds)
            values (%s, %s, %s, 'pending', 'now', %s, %s, %s::uuid[], '2', 1, 600)
            returning id
            """,
            (
                name,
                team,
                tenant,
                ["build.sh", "migrate.sh", "health.sh"],
                ["--release", "", "--retries 3"],
                [h[0] for h in hosts],
            ),
        )[0][0]
    )
    return {
        "team": team,
        "deployment": deployment,
        "name": name,
        "hosts": [(str(h[0]), h[1]) for h in hosts],
    }


async def _claim(client, run_id: str) -> dict:
    """Claim our run as the runner (retrying until the queue hands it out)."""
    for _ in range(50):
        claimed = await api.claim(client, "test-runner", 30)
        if claimed is not None:
            assert claimed["id"] == run_id, "a run queued elsewhere in Core was handed out"
            return claimed
        await asyncio.sleep(0.05)
    raise AssertionError("the run was never handed out")


async def _open_deployments(pilot, deployment_id: str) -> ResourceTable:
    app = pilot.app
    await pilot.press("4")
    await wait_for(pilot, lambda: isinstance(app.screen, ResourceScreen))
    table = app.screen.query_one(ResourceTable)
    await wait_for(pilot, lambda: table.move_to(deployment_id), what="the test deployment")
    await pilot.pause()
    return table


def _run_screen(app) -> RunScreen:
    assert isinstance(app.screen, RunScreen), type(app.screen).__name__
    return app.screen


def _header(app) -> str:
    found = app.screen.query("#run-header")
    return text_of(found.first()) if found else ""


def _host_cells(screen: RunScreen, host_id: str) -> list[str]:
    table = screen.query_one("#run-hosts")
    return [str(cell) for cell in table.get_row(host_id)]


def _runs_of(backend_info, deployment_id: str) -> list[tuple]:
    return _db(
        backend_info,
        "select id, number, status, trigger, cancel_requested_at from deployment_runs "
        "where deployment_id = %s order by number",
        (deployment_id,),
    )


async def test_launch_asks_first_naming_hosts_scripts_and_rollout(backend, backend_info, core):
    app = make_app(backend, USER)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await _open_deployments(pilot, core["deployment"])
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        dialog = app.screen
        question = str(dialog.query_one("#question").render())
        detail = str(dialog.query_one("#detail").render())
        assert core["name"] in question
        assert "On 3 hosts: " + ", ".join(name for _, name in core["hosts"]) in detail
        assert "1. build.sh --release" in detail and "3. health.sh --retries 3" in detail
        assert "batches of 2" in detail and "more than 1 hosts failed" in detail
        assert "10m" in detail  # the per-host timeout
        # No: nothing is queued.
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, ResourceScreen))
        assert _runs_of(backend_info, core["deployment"]) == []

        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), what="the run view")
        runs = _runs_of(backend_info, core["deployment"])
        assert [(r[1], r[2], r[3]) for r in runs] == [(1, "queued", "manual")]
        screen = _run_screen(app)
        assert screen.run_id == str(runs[0][0])
        await wait_for(pilot, lambda: "queued" in _header(app), what="the header")
        assert f"{core['name']} #1" in _header(app) and "manual by ops@globex.test" in _header(app)
        # The run row reached the store live (the `:runs` list and the overview read it).
        await wait_for(pilot, lambda: app.store.row("deployment_runs", screen.run_id) is not None)

        # A second x while it is queued is refused before asking, naming the run.
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ResourceScreen))
        await pilot.press("x")
        await wait_for(
            pilot, lambda: any("#1 is queued" in n.message for n in app._notifications)
        )
        assert not isinstance(app.screen, ConfirmScreen)


async def test_the_servers_refusal_is_one_line(backend, backend_info, core):
    app = make_app(backend, USER)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        row = await wait_for_row(pilot, "deployments", core["deployment"])
        app.launch_deployment(row)
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
        # Bypass the local check: the database refuses a second active run, and says why.
        app.launch_deployment(row)
        await wait_for(
            pilot, lambda: any("already has run #1 queued" in n.message for n in app._notifications)
        )
        message = next(n.message for n in app._notifications if "already has run" in n.message)
        assert "\n" not in message and "Traceback" not in message
        assert len(_runs_of(backend_info, core["deployment"])) == 1


async def wait_for_row(pilot, table: str, key: str) -> dict:
    await wait_for(pilot, lambda: pilot.app.store.row(table, key) is not None, what=key)
    return pilot.app.store.row(table, key)


async def test_a_viewer_is_refused_with_the_reason(backend, backend_info):
    app = make_app(backend, "viewer@acme.test")
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("4")
        await wait_for(
            pilot,
            lambda: isinstance(app.screen, ResourceScreen)
            and len(app.screen.query_one(ResourceTable).view) > 0,
        )
        before = _db(backend_info, "select count(*) from deployment_runs")[0][0]
        await pilot.press("x")
        await wait_for(
            pilot,
            lambda: any("needs execute on deployments" in n.message for n in app._notifications),
        )
        assert not isinstance(app.screen, ConfirmScreen)
        assert _db(backend_info, "select count(*) from deployment_runs")[0][0] == before
        # The footer offers no Run key to a viewer.
        enabled = {b.action for (_, b, on, _) in app.screen.active_bindings.values() if on}
        assert "execute" not in enabled


async def test_the_run_view_follows_a_run_live(backend, backend_info, core, sign_in):
    runner = await sign_in(RUNNER)
    app = make_app(backend, USER)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await _open_deployments(pilot, core["deployment"])
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
        screen = _run_screen(app)
        run_id = screen.run_id
        await wait_for(pilot, lambda: "queued" in _header(app))

        claimed = await _claim(runner, run_id)
        assert claimed["status"] == "running"
        await wait_for(pilot, lambda: "running" in _header(app), what="running in the header")
        await wait_for(pilot, lambda: len(screen.hosts) == 3, what="the host rows")
        (h1, n1), (h2, n2), (h3, n3) = core["hosts"]
        assert "0 of 3 done" in _header(app) and "runner test-runner" in _header(app)
        await wait_for(pilot, lambda: "pending" in _host_cells(screen, h1))

        await api.set_batch(runner, run_id, 1)
        await api.update_host(runner, run_id, h1, "running", None, None)
        await api.append_log(
            runner,
            run_id,
            [
                {"host_id": h1, "stream": "stdout", "text": "\x1b[32mbuilding\x1b[0m release\n"},
                {"host_id": None, "stream": "system", "text": "batch 1 of 2\n"},
                {"host_id": h1, "stream": "stderr", "text": "warning: cache cold\n"},
            ],
        )
        pane = screen.query_one(LogPane)
        await wait_for(pilot, lambda: "running" in _host_cells(screen, h1))
        await wait_for(pilot, lambda: len(pane.view.plain_lines) == 3, what="three log lines")
        width = max(len(name) for name in (n1, n2, n3, "runner"))
        assert pane.view.plain_lines == [
            f"{n1:<{width}} │ building release",
            f"{'runner':<{width}} │ batch 1 of 2",
            f"{n1:<{width}} │ warning: cache cold",
        ]
        await wait_for(pilot, lambda: "batch 1 of" in _header(app))

        await api.update_host(runner, run_id, h1, "succeeded", 0, None)
        await api.update_host(runner, run_id, h2, "running", None, None)
        await api.update_host(runner, run_id, h2, "failed", 3, "health.sh exited with 3")
        await wait_for(pilot, lambda: "2 of 3 done, 1 failed" in _header(app), what="progress")
        assert _host_cells(screen, h1)[2:4] == ["succeeded", "0"]
        assert _host_cells(screen, h2)[2:4] == ["failed", "3"]
        assert "health.sh exited with 3" in _host_cells(screen, h2)[5]
        assert "hosts · 2 of 3 done" in str(screen.query_one("#run-hosts").border_title)

        # The overview shows it running, with its progress.
        await pilot.press("escape")
        await pilot.press("0")
        await wait_for(pilot, lambda: isinstance(app.screen, OverviewScreen))
        await wait_for(
            pilot,
            lambda: f"{core['name']} #1" in text_of(app.screen.query_one("#running"))
            and "2/3 (1 failed)" in text_of(app.screen.query_one("#running")),
            what="the run in the overview",
        )

        await api.finish(runner, run_id, "failed", "1 host failed: " + n2)
        await wait_for(
            pilot,
            lambda: f"{core['name']} #1" in text_of(app.screen.query_one("#failed")),
            what="the run among the recently failed",
        )
        await wait_for(
            pilot,
            lambda: f"{n2} exit 3" in text_of(app.screen.query_one("#failed")),
            what="its failing host",
        )
        assert f"{core['name']} #1" not in text_of(app.screen.query_one("#running"))
        assert _db(
            backend_info,
            "select status from deployment_run_hosts where run_id = %s and host_id = %s",
            (run_id, h3),
        ) == [("skipped",)]


async def test_cancel_asks_then_requests_it(backend, backend_info, core, sign_in):
    runner = await sign_in(RUNNER)
    app = make_app(backend, USER)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        run_id = await api.launch(runner, core["deployment"])
        await _claim(runner, run_id)
        app.open_run(run_id)
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
        await wait_for(pilot, lambda: "running" in _header(app))
        # Help lists the keys that work here: cancel, yes; run again, not while it runs.
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        keys = text_of(app.screen.query_one("#help-body Static"))
        for description in ("Cancel run", "Search log", "Next match", "Wrap", "Timestamps"):
            assert description in keys
        assert "Run again" not in keys
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))

        await pilot.press("ctrl+k")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "Cancel run" in str(app.screen.query_one("#question").render())
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
        assert _runs_of(backend_info, core["deployment"])[0][4] is None

        await pilot.press("ctrl+k")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(
            pilot, lambda: _runs_of(backend_info, core["deployment"])[0][4] is not None
        )
        await wait_for(pilot, lambda: "cancel requested by ops@globex.test" in _header(app))
        # The runner learns it at its next heartbeat, stops, and finishes as cancelled.
        assert await api.heartbeat(runner, run_id, 30) is True
        await api.finish(runner, run_id, "cancelled", "cancelled by ops@globex.test")
        await wait_for(pilot, lambda: "cancelled" in _header(app).split("\n")[0])
        # A second ctrl+k says why not.
        await pilot.press("ctrl+k")
        await wait_for(pilot, lambda: any("already ended" in n.message for n in app._notifications))


async def test_history_runs_list_latest_run_detail_and_retry(backend, backend_info, core, sign_in):
    runner = await sign_in(RUNNER)
    first = await api.launch(runner, core["deployment"])
    await _claim(runner, first)
    await api.finish(runner, first, "failed", "boom")
    second = await api.retry(runner, first)
    await _claim(runner, second)
    await api.finish(runner, second, "succeeded")
    app = make_app(backend, USER)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("colon", *"runs", "enter")
        await wait_for(
            pilot,
            lambda: isinstance(app.screen, ResourceScreen) and app.screen.spec.name == "runs",
        )
        table = app.screen.query_one(ResourceTable)
        await pilot.press("slash", *core["name"].rsplit("-", 1)[1], "enter")  # its unique suffix
        await wait_for(pilot, lambda: len(table.view) == 2, what="the deployment's two runs")
        # Newest first.
        numbers = [table.view.rows[table.view.key_at(i)]["number"] for i in range(2)]
        assert numbers == [2, 1]
        assert table.view.rows[table.view.key_at(0)]["trigger"] == "retry"
        table.focus()
        await pilot.press("home", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
        assert app.screen.run_id == second
        await wait_for(pilot, lambda: "succeeded" in _header(app))
        assert "retry by dev@globex.test" in _header(app)
        await pilot.press("escape", "escape", "escape")

        # l on the deployment opens its latest run; the detail lists its runs.
        await _open_deployments(pilot, core["deployment"])
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        assert "Latest run" in text_of(app.screen.query_one("#help-body Static"))
        await pilot.press("escape")
        await pilot.press("l")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
        assert app.screen.run_id == second
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ResourceScreen))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen))
        body = text_of(app.screen.query_one("#detail-body"))
        assert "Runs, newest first" in body and "boom" in body and "retry" in body
        await pilot.press("escape")

        # x on a finished run runs it again (trigger retry), after asking.
        app.open_run(first)
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.run is not None)
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert f"{core['name']} #1 again" in str(app.screen.query_one("#question").render())
        await pilot.press("y")
        await wait_for(
            pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.run_id not in (first, second)
        )
        runs = _runs_of(backend_info, core["deployment"])
        assert [(r[1], r[3]) for r in runs] == [(1, "manual"), (2, "retry"), (3, "retry")]
        assert app.screen.run_id == str(runs[2][0])


async def test_the_log_has_no_gap_and_no_duplicate_when_chunks_arrive_while_it_loads(
    backend, core, sign_in, monkeypatch
):
    import opstui.run_watch as run_watch

    runner = await sign_in(RUNNER)
    run_id = await api.launch(runner, core["deployment"])
    await _claim(runner, run_id)
    host = core["hosts"][0][0]
    total = 0

    async def write(calls: int, per_call: int) -> None:
        nonlocal total
        for _ in range(calls):
            chunks = []
            for _ in range(per_call):
                total += 1
                chunks.append({"host_id": host, "stream": "stdout", "text": f"line {total}\n"})
            await api.append_log(runner, run_id, chunks)

    await write(24, 5)  # 120 chunks stored before the view opens
    # Small pages: the stored log takes many round trips, and the runner writes meanwhile.
    monkeypatch.setattr(run_watch, "PAGE_ROWS", 7)
    app = make_app(backend, USER)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        writing = asyncio.ensure_future(write(40, 2))  # 80 more while it loads
        app.open_run(run_id)
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.is_mounted)
        await writing
        pane = app.screen.query_one(LogPane)
        await wait_for(pilot, lambda: pane.last_seq == 200, what="every chunk", timeout=30)
        lines = [line.split(" │ ")[1] for line in pane.view.plain_lines]
        assert lines == [f"line {n}" for n in range(1, 201)]
        assert pane.gaps == []
    await api.finish(runner, run_id, "succeeded")


async def test_every_team_member_sees_the_run_live(backend, core, sign_in):
    """Two people, two apps: a launch by one appears in the other's list and run view."""
    runner = await sign_in(RUNNER)
    ops, dev = make_app(backend, USER), make_app(backend, RUNNER)
    async with ops.run_test(size=SIZE) as pilot, dev.run_test(size=SIZE) as other:
        await ready(pilot)
        await ready(other)
        await other.press("colon", *"runs", "enter")
        await wait_for(
            other,
            lambda: isinstance(dev.screen, ResourceScreen) and dev.screen.spec.name == "runs",
        )
        await _open_deployments(pilot, core["deployment"])
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(ops.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(pilot, lambda: isinstance(ops.screen, RunScreen))
        run_id = ops.screen.run_id
        listing = dev.screen.query_one(ResourceTable)
        await wait_for(other, lambda: run_id in listing.view.rows, what="the run in dev's list")
        assert listing.move_to(run_id)
        await other.pause()
        await other.press("enter")
        await wait_for(other, lambda: isinstance(dev.screen, RunScreen))
        await _claim(runner, run_id)
        host = core["hosts"][0][0]
        await api.update_host(runner, run_id, host, "running", None, None)
        await api.append_log(runner, run_id, [{"host_id": host, "stream": "stdout", "text": "hi\n"}])
        for app, driver in ((ops, pilot), (dev, other)):
            pane = app.screen.query_one(LogPane)
            await wait_for(driver, lambda p=pane: len(p.view.plain_lines) == 1, what="the line")
            assert pane.view.plain_lines[0].endswith("│ hi")
            await wait_for(driver, lambda a=app: "running" in _header(a))
        await api.finish(runner, run_id, "succeeded")
        await wait_for(other, lambda: "succeeded" in _header(dev))
        await wait_for(other, lambda: listing.view.rows[run_id]["status"] == "succeeded")


async def test_a_big_stored_log_opens_at_its_tail(backend, core, sign_in, monkeypatch):
    import opstui.run_watch as run_watch

    runner = await sign_in(RUNNER)
    run_id = await api.launch(runner, core["deployment"])
    await _claim(runner, run_id)
    host = core["hosts"][0][0]
    for start in range(0, 100, 20):  # 100 chunks of 100 bytes, 20 to a call
        chunks = [
            {"host_id": host, "stream": "stdout", "text": f"chunk {n:03d} ".ljust(99, ".") + "\n"}
            for n in range(start + 1, start + 21)
        ]
        await api.append_log(runner, run_id, chunks)
    # Only the newest 2 KB are read at open: the viewer's scrollback is capped anyway.
    monkeypatch.setattr(run_watch, "TAIL_BYTES", 2000)
    app = make_app(backend, USER)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        app.open_run(run_id)
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.is_mounted)
        pane = app.screen.query_one(LogPane)
        await wait_for(pilot, lambda: pane.last_seq == 100, what="the tail")
        lines = pane.view.plain_lines
        assert "80 earlier log chunks not loaded" in lines[0]
        assert [line.split(" │ ")[1][:9] for line in lines[1:]] == [
            f"chunk {n:03d}" for n in range(81, 101)
        ]
        # What arrives next follows on, as usual.
        await api.append_log(runner, run_id, [{"host_id": host, "stream": "stdout", "text": "next\n"}])
        await wait_for(pilot, lambda: pane.last_seq == 101)
        assert pane.view.plain_lines[-1].endswith("│ next") and pane.gaps == []
    await api.finish(runner, run_id, "succeeded")


async def test_the_run_view_catches_up_after_an_outage(backend, backend_info, core, sign_in):
    runner = await sign_in(RUNNER)
    run_id = await api.launch(runner, core["deployment"])
    await _claim(runner, run_id)
    host = core["hosts"][0][0]
    await api.append_log(runner, run_id, [{"host_id": host, "stream": "stdout", "text": "one\n"}])
    app = make_app(backend, USER)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        app.open_run(run_id)
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.is_mounted)
        screen = app.screen
        pane = screen.query_one(LogPane)
        await wait_for(pilot, lambda: pane.last_seq == 1)
        await backend.stop_gateway()
        try:
            await wait_for(pilot, lambda: app.store.status.state.value != "live", what="outage")
            # Written while nobody can hear: never pushed, so it must come from a re-read.
            _db(
                backend_info,
                "insert into deployment_run_logs (run_id, host_id, seq, stream, text, team_id) "
                "values (%s, %s, 2, 'stdout', 'two' || chr(10), %s)",
                (run_id, host, core["team"]),
            )
            _db(
                backend_info,
                "update deployment_run_hosts set status = 'running', started_at = now() "
                "where run_id = %s and host_id = %s",
                (run_id, host),
            )
        finally:
            await backend.start_gateway()
        await wait_for(pilot, lambda: pane.last_seq == 2, timeout=40, what="the missed chunk")
        assert [line.split(" │ ")[1] for line in pane.view.plain_lines] == ["one", "two"]
        await wait_for(pilot, lambda: "running" in _host_cells(screen, host), timeout=20)
    await api.finish(runner, run_id, "succeeded")
