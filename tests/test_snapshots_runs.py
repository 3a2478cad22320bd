"""Snapshot tests of deployment runs: the run view, its log search, the launch confirmation.

Same rules as test_snapshots.py: a backend seeded at a fixed time (in a thread
with its own loop), the app's clock fixed to that time, 120x36, no blinking.
The runs, host rows and log chunks are written here with fixed ids and times.
"""

from __future__ import annotations

import json
from datetime import timedelta

import psycopg
import pytest

from opstui.ui.widgets.log_pane import LogPane
from opstui.ui.widgets.resource_table import ResourceTable
from tests.conftest import DEMO_NOW
from tests.test_snapshots import SIZE, _app, _steady, _ThreadedBackend, _until

DEPLOYMENT = "5eed0000-0000-4000-8000-000000000001"
IDLE = "5eed0000-0000-4000-8000-000000000002"  # never run: x asks to launch it
RUNNING = "5eed0000-0000-4000-8000-000000000007"
FAILED = "5eed0000-0000-4000-8000-000000000006"
HOSTS = [
    ("5eed0000-0000-4000-8000-0000000000a1", "web-01"),
    ("5eed0000-0000-4000-8000-0000000000a2", "web-02"),
    ("5eed0000-0000-4000-8000-0000000000a3", "web-03"),
    ("5eed0000-0000-4000-8000-0000000000a4", "web-04"),
]
GREEN, RED, YELLOW, BOLD, RESET = "\x1b[32m", "\x1b[31m", "\x1b[33m", "\x1b[1m", "\x1b[0m"


def _at(seconds: int) -> str:
    return (DEMO_NOW - timedelta(seconds=seconds)).isoformat()


LOG = [
    (None, "system", "runner-1 claimed run #7; fetching checkout-api @ main\n", 298),
    (None, "system", "batch 1 of 2: web-01, web-02\n", 296),
    (HOSTS[0][0], "stdout", f"{BOLD}==> build.sh --release{RESET}\ncompiling 214 modules\n", 295),
    (HOSTS[1][0], "stdout", f"{BOLD}==> build.sh --release{RESET}\ncompiling 214 modules\n", 294),
    (HOSTS[0][0], "stdout", f"{GREEN}build ok{RESET} in 41.2s\n{BOLD}==> migrate.sh{RESET}\n", 253),
    (HOSTS[1][0], "stderr", f"{YELLOW}warning:{RESET} cache is cold, this will be slow\n", 250),
    (HOSTS[0][0], "stdout", "applied 3 migrations\n==> health.sh --retries 3\n", 240),
    (HOSTS[1][0], "stderr", f"{RED}error:{RESET} migration 0042 failed: lock timeout\n", 236),
    (HOSTS[0][0], "stdout", f"{GREEN}healthy{RESET} after 1 try\n", 238),
    (None, "system", "web-02 failed (exit 2); 1 failure allowed, rollout goes on\n", 235),
    (None, "system", "batch 2 of 2: web-03, web-04\n", 234),
    (HOSTS[2][0], "stdout", f"{BOLD}==> build.sh --release{RESET}\ncompiling 214 modules\n", 230),
]


def _seed(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        team, tenant = conn.execute(
            "select id, tenant_id from teams where name = 'Platform'"
        ).fetchone()
        admin = conn.execute("select id from profiles where email = 'admin@acme.test'").fetchone()[
            0
        ]
        hosts = [
            row[0]
            for row in conn.execute(
                "select id from hosts where team_id = %s order by name limit 4", (team,)
            )
        ]
        for deployment_id, name in ((DEPLOYMENT, "checkout-api"), (IDLE, "checkout-web")):
            conn.execute(
                """
                insert into deployments (id, name, team_id, tenant_id, status, schedule_type,
                                         scripts_path, scripts_parameters, host_ids,
                                         created_at, rollout_batch_size, rollout_max_failures,
                                         host_timeout_seconds)
                values (%s, %s, %s, %s, 'pending', 'now', %s, %s, %s::uuid[], %s, '2', 1, 600)
                """,
                (
                    deployment_id,
                    name,
                    team,
                    tenant,
                    ["build.sh", "migrate.sh", "health.sh"],
                    ["--release", "", "--retries 3"],
                    hosts,
                    _at(86_400 * 30),
                ),
            )
        spec = {
            "deployment_name": "checkout-api",
            "scripts": ["build.sh", "migrate.sh", "health.sh"],
            "parameters": ["--release", "", "--retries 3"],
            "host_ids": [h for h, _ in HOSTS],
            "env_names": ["RELEASE"],
            "rollout": {"batch_size": "2", "max_failures": 1, "host_timeout_seconds": 600},
        }
        for run_id, number, status, started, finished, error, done, failed, batch in (
            (FAILED, 6, "failed", 7200, 6900, "2 of 4 hosts failed; rollout stopped", 4, 2, 2),
            (RUNNING, 7, "running", 298, None, None, 2, 1, 2),
        ):
            conn.execute(
                """
                insert into deployment_runs (id, deployment_id, team_id, tenant_id, number,
                    trigger, requested_by, requested_at, status, runner_name, started_at,
                    finished_at, spec, hosts_total, hosts_done, hosts_failed, batch_count,
                    current_batch, error, created_at)
                values (%s, %s, %s, %s, %s, 'manual', %s, %s, %s, 'runner-1', %s, %s, %s,
                        4, %s, %s, 2, %s, %s, %s)
                """,
                (
                    run_id,
                    DEPLOYMENT,
                    team,
                    tenant,
                    number,
                    admin,
                    _at(started + 2),
                    status,
                    _at(started),
                    _at(finished) if finished else None,
                    json.dumps(spec),
                    done,
                    failed,
                    batch,
                    error,
                    _at(started + 2),
                ),
            )
        host_rows = (
            (HOSTS[0], 1, 1, "succeeded", 0, 295, 237, None),
            (HOSTS[1], 1, 2, "failed", 2, 294, 235, "migrate.sh exited with 2"),
            (HOSTS[2], 2, 3, "running", None, 231, None, None),
            (HOSTS[3], 2, 4, "pending", None, None, None, None),
        )
        for (host_id, name), batch, position, status, code, start, end, error in host_rows:
            conn.execute(
                """
                insert into deployment_run_hosts (run_id, host_id, host_name, batch, position,
                    status, exit_code, started_at, finished_at, error, team_id)
                values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                """,
                (
                    RUNNING,
                    host_id,
                    name,
                    batch,
                    position,
                    status,
                    code,
                    _at(start) if start else None,
                    _at(end) if end else None,
                    error,
                    team,
                ),
            )
        for seq, (host_id, stream, text, ago) in enumerate(LOG, 1):
            conn.execute(
                "insert into deployment_run_logs (run_id, host_id, seq, stream, text, created_at,"
                " team_id) values (%s, %s, %s, %s, %s, %s, %s)",
                (RUNNING, host_id, seq, stream, text, _at(ago), team),
            )


@pytest.fixture(scope="module")
def runs_backend():
    threaded = _ThreadedBackend()
    _seed(threaded.backend.info.db_url)
    yield threaded.backend
    threaded.close()


def _open_run(run_id: str, *keys: str):
    async def then(pilot) -> None:
        pilot.app.open_run(run_id)
        await _until(pilot, lambda: type(pilot.app.screen).__name__ == "RunScreen")
        screen = pilot.app.screen
        await _until(pilot, lambda: screen.run is not None and len(screen.hosts) == 4)
        if run_id == RUNNING:
            await _until(pilot, lambda: screen.query_one(LogPane).last_seq == len(LOG))
        await pilot.pause()
        for key in keys:
            await pilot.press(key)
        await pilot.pause()
        # DataTable sizes its columns lazily, on idle: wait until it has, or the picture
        # may catch a table just rebuilt with label-wide columns.
        hosts = screen.query_one("#run-hosts")
        await _until(
            pilot,
            lambda: (
                not (hosts._require_update_dimensions or hosts._new_rows or hosts._updated_cells)
            ),
        )
        for box in screen.query("Input"):
            box.cursor_blink = False  # a blinking cursor makes two pictures of one screen
        await pilot.pause()

    return then


def test_run_view_running(snap_compare, runs_backend):
    assert snap_compare(
        _app(runs_backend), terminal_size=SIZE, run_before=_steady(then=_open_run(RUNNING))
    )


def test_run_view_log_search_and_timestamps(snap_compare, runs_backend):
    keys = ("slash", *"error", "enter", "t")
    assert snap_compare(
        _app(runs_backend), terminal_size=SIZE, run_before=_steady(then=_open_run(RUNNING, *keys))
    )


def test_run_view_one_host(snap_compare, runs_backend):
    # f shows the host highlighted in the table (the cursor starts on web-01).
    keys = ("tab", "down", "f")
    assert snap_compare(
        _app(runs_backend), terminal_size=SIZE, run_before=_steady(then=_open_run(RUNNING, *keys))
    )


def test_launch_confirmation(snap_compare, runs_backend):
    async def then(pilot) -> None:
        table = pilot.app.screen.query_one(ResourceTable)
        await _until(pilot, lambda: table.move_to(IDLE))
        await pilot.pause()
        await pilot.press("x")
        await _until(pilot, lambda: type(pilot.app.screen).__name__ == "ConfirmScreen")
        await pilot.pause()

    assert snap_compare(_app(runs_backend), terminal_size=SIZE, run_before=_steady("4", then=then))
