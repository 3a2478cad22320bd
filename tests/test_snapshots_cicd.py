"""Snapshot tests of CI/CD: the jobs view with last builds, the trigger form, the build view.

Same rules as test_snapshots.py: a backend seeded at a fixed time (in a thread with its
own loop), the app's clock fixed to that time, 120x36, no blinking. The provider, jobs,
builds and log chunks are written here with fixed ids and times; the provider's URL is
loopback, so it is marked as a demo CI server.
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

PROVIDER = "c1cd0000-0000-4000-8000-000000000001"
DEPLOY_JOB = "c1cd0000-0000-4000-8000-000000000011"
BUILD_JOB = "c1cd0000-0000-4000-8000-000000000012"
RUNNING = "c1cd0000-0000-4000-8000-000000000021"
FAILED = "c1cd0000-0000-4000-8000-000000000022"
DEFINITIONS = [
    {"name": "ENVIRONMENT", "type": "choice", "choices": ["staging", "production"],
     "default": "staging", "description": "where it goes"},
    {"name": "DRY_RUN", "type": "boolean", "default": False},
    {"name": "VERSION", "type": "string", "required": True},
    {"name": "RETRIES", "type": "number", "default": 2},
]  # fmt: skip
LOG = [
    ("stdout", "Started by user admin@acme.test\n", 118),
    ("stdout", "\x1b[1m[Pipeline] stage (checkout)\x1b[0m\nChecking out revision 4f2a9c1\n", 110),
    ("stdout", "\x1b[1m[Pipeline] stage (build)\x1b[0m\ncompiling 214 modules\n", 95),
    ("stderr", "\x1b[33mwarning:\x1b[0m cache is cold, this will be slow\n", 80),
    ("stdout", "\x1b[32mbuild ok\x1b[0m in 41.2s\nUploading artifact app-1.4.2.tar.gz\n", 40),
]


def _at(seconds: int) -> str:
    return (DEMO_NOW - timedelta(seconds=seconds)).isoformat()


def _seed(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        team, tenant = conn.execute(
            "select id, tenant_id from teams where name = 'Platform'"
        ).fetchone()
        admin = conn.execute("select id from profiles where email = 'admin@acme.test'").fetchone()[0]
        conn.execute(
            "insert into cicd_providers (id, type, name, url, config, team_id, created_at,"
            " updated_at) values (%s, 'jenkins', 'lab-jenkins', 'http://127.0.0.1:8080', %s, %s,"
            " %s, %s)",
            (PROVIDER, json.dumps({"username": "ci"}), team, _at(86_400 * 9), _at(86_400 * 9)),
        )
        for job_id, name, definitions in (
            (DEPLOY_JOB, "lab/deploy-app", DEFINITIONS),
            (BUILD_JOB, "lab/build-app", []),
        ):
            conn.execute(
                "insert into cicd_jobs (id, provider_id, external_id, name, team_id,"
                " parameter_definitions, created_at, updated_at)"
                " values (%s, %s, %s, %s, %s, %s, %s, %s)",
                (job_id, PROVIDER, name, name, team, json.dumps(definitions), _at(86_400 * 9),
                 _at(86_400 * 2)),
            )  # fmt: skip
        url = "http://127.0.0.1:8080/job/lab/job/{}/{}/"
        for build_id, job_id, job, number, status, started, finished, error in (
            (FAILED, BUILD_JOB, "lab/build-app", "7", "failed", 7200, 7100,
             "Jenkins says FAILURE: step exited with code 1"),
            (RUNNING, DEPLOY_JOB, "lab/deploy-app", "42", "running", 120, None, None),
        ):  # fmt: skip
            short = job.split("/")[-1]
            conn.execute(
                """
                insert into cicd_builds (id, job_id, provider_id, provider_type, job_name,
                    team_id, tenant_id, requested_by, requested_at, parameters, number, url,
                    status, runner_name, started_at, finished_at, error, created_at, next_seq,
                    progress)
                values (%s, %s, %s, 'jenkins', %s, %s, %s, %s, %s, %s, %s, %s, %s, 'runner-1',
                        %s, %s, %s, %s, %s, %s)
                """,
                (build_id, job_id, PROVIDER, job, team, tenant, admin, _at(started + 3),
                 json.dumps({"ENVIRONMENT": "staging", "VERSION": "1.4.2"} if status == "running" else {}),
                 number, url.format(short, number), status, _at(started),
                 _at(finished) if finished else None, error, _at(started + 3),
                 len(LOG) if status == "running" else 0,
                 json.dumps({"stage": "build"} if status == "running" else {})),
            )  # fmt: skip
        for seq, (stream, text, ago) in enumerate(LOG, 1):
            conn.execute(
                "insert into cicd_build_logs (build_id, seq, stream, text, created_at, team_id)"
                " values (%s, %s, %s, %s, %s, %s)",
                (RUNNING, seq, stream, text, _at(ago), team),
            )


@pytest.fixture(scope="module")
def cicd_backend():
    threaded = _ThreadedBackend()
    _seed(threaded.backend.info.db_url)
    yield threaded.backend
    threaded.close()


def _on_job(job_id: str, *keys: str, wait_for: str | None = None):
    async def then(pilot) -> None:
        table = pilot.app.screen.query_one(ResourceTable)
        await _until(pilot, lambda: table.move_to(job_id))
        await pilot.pause()
        for key in keys:
            await pilot.press(key)
            await pilot.pause()
        if wait_for is not None:
            await _until(pilot, lambda: type(pilot.app.screen).__name__ == wait_for)
            screen = pilot.app.screen
            if wait_for == "BuildScreen":
                await _until(
                    pilot,
                    lambda: screen.build is not None
                    and screen.query_one(LogPane).last_seq == len(LOG),
                )
            await pilot.pause()

    return then


def test_cicd_jobs_view(snap_compare, cicd_backend):
    assert snap_compare(
        _app(cicd_backend), terminal_size=SIZE, run_before=_steady("5", then=_on_job(DEPLOY_JOB))
    )


def test_trigger_form(snap_compare, cicd_backend):
    then = _on_job(DEPLOY_JOB, "x", wait_for="TriggerScreen")
    assert snap_compare(_app(cicd_backend), terminal_size=SIZE, run_before=_steady("5", then=then))


def test_build_view_running(snap_compare, cicd_backend):
    then = _on_job(DEPLOY_JOB, "l", wait_for="BuildScreen")
    assert snap_compare(_app(cicd_backend), terminal_size=SIZE, run_before=_steady("5", then=then))
