"""`opstui cicd trigger JOB --follow`, `builds list|logs|cancel`, `cicd test|refresh`, as a script
would call them: real processes with a signed-in profile, a BuildWorker in this process, the
FAKE Jenkins on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest

from opstui.backend.fake_cicd import FakeJenkins
from opstui.cicd import api
from tests.cicd_support import RUNNER, add_provider, running_worker, wait_build
from tests.conftest import demo_password

QUICK = {"queue_seconds": 0.1, "line_seconds": 0.02}
DEFS = [
    {"name": "ENVIRONMENT", "type": "choice", "choices": ["staging", "production"]},
    {"name": "FAIL", "type": "boolean"},
]


@pytest.fixture(scope="module")
def env(tmp_path_factory, backend_info) -> dict[str, str]:
    tmp_path = tmp_path_factory.mktemp("cicd-headless")
    config = tmp_path / "config"
    config.mkdir()
    (config / "config.toml").write_text(
        f'default_profile = "local"\n\n[profiles.local]\nurl = "{backend_info.url}"\n'
        f'anon_key = "{backend_info.anon_key}"\n'
    )
    return {
        **os.environ,
        "OPSTUI_CONFIG_DIR": str(config),
        "OPSTUI_DATA_DIR": str(tmp_path / "data"),
    }


async def _opstui(env, *args: str, stdin: str = "", timeout: float = 60):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "opstui", *args, env=env,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), timeout)
    return subprocess.CompletedProcess(args, proc.returncode, out.decode(), err.decode())


@pytest.fixture(scope="module")
async def logged_in(env, backend_info):
    login = await _opstui(
        env, "login", "--email", RUNNER, stdin=demo_password(backend_info, RUNNER) + "\n"
    )
    assert login.returncode == 0, login.stderr
    return env


@pytest.fixture
async def jenkins(backend_info, sign_in, logged_in):
    async with FakeJenkins(**QUICK) as fake:
        dev = await sign_in(RUNNER)
        provider = await add_provider(
            dev, backend_info.db_url, "jenkins", fake, jobs=[("deploy", DEFS)]
        )
        async with running_worker(dev) as worker:
            yield dev, fake, provider, worker


async def test_trigger_follow_streams_the_log_and_exits_by_the_outcome(jenkins, env):
    dev, fake, provider, _ = jenkins
    job = provider["jobs"]["deploy"]["name"]
    ok = await _opstui(
        env,
        "cicd",
        "trigger",
        job,
        "--team",
        "Platform",
        "--param",
        "ENVIRONMENT=staging",
        "--follow",
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.index("Checking out revision") < ok.stdout.index("Finished: SUCCESS")
    assert "build #1 succeeded" in ok.stderr and fake.url in ok.stderr
    failed = await _opstui(
        env, "cicd", "trigger", job, "--param", "FAIL=true", "--follow", "--json"
    )
    assert failed.returncode == 1
    events = [json.loads(line) for line in failed.stdout.splitlines()]
    assert events[0]["event"] == "queued" and events[-1]["event"] == "finished"
    assert events[-1]["status"] == "failed" and "FAILURE" in events[-1]["error"]
    assert any(e.get("line") == "Finished: FAILURE" for e in events)
    for result in (ok, failed):
        assert fake.token not in result.stdout + result.stderr


async def test_bad_parameters_and_unknown_jobs_are_one_line_errors(jenkins, env):
    _, _, provider, _ = jenkins
    job = provider["jobs"]["deploy"]["name"]
    bad = await _opstui(env, "cicd", "trigger", job, "--param", "ENVIRONMENT=moon")
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1
    assert "'moon' is not one of staging, production" in bad.stderr
    missing = await _opstui(env, "cicd", "trigger", "no-such-job")
    assert "no CI/CD job named 'no-such-job'" in missing.stderr and missing.returncode == 1
    assert "Traceback" not in bad.stderr + missing.stderr


async def test_builds_list_logs_and_cancel(jenkins, env):
    dev, fake, provider, _ = jenkins
    job = provider["jobs"]["deploy"]
    done = await wait_build(dev, await api.trigger(dev, job["id"], {"ENVIRONMENT": "staging"}))
    listing = await _opstui(env, "builds", "list", "--team", "Platform")
    assert listing.returncode == 0
    assert any(done["id"] in line and "succeeded" in line for line in listing.stdout.splitlines())
    as_json = await _opstui(env, "builds", "list", "--json")
    rows = json.loads(as_json.stdout)  # one JSON array, as `hosts list --json`
    assert isinstance(rows, list) and any(row["id"] == done["id"] for row in rows)
    logs = await _opstui(env, "builds", "logs", done["id"])
    assert logs.returncode == 0 and "Finished: SUCCESS" in logs.stdout
    by_number = await _opstui(env, "builds", "logs", f"{job['name']}#{done['number']}")
    assert by_number.stdout == logs.stdout

    fake.faults.never_end = True
    running = await api.trigger(dev, job["id"], {"ENVIRONMENT": "staging"})
    await wait_build(dev, running, {"running"})
    cancel = await _opstui(env, "builds", "cancel", running)
    assert cancel.returncode == 0 and "cancel requested" in cancel.stderr
    assert (await wait_build(dev, running))["status"] == "cancelled"


async def test_cicd_test_and_refresh_report_the_runners_result(jenkins, env):
    _, fake, provider, _ = jenkins
    tested = await _opstui(env, "cicd", "test", provider["name"])
    assert tested.returncode == 0 and "ok: Jenkins 2.479.1 as ci-bot (FAKE Jenkins" in tested.stderr
    refreshed = await _opstui(env, "cicd", "refresh", provider["name"])
    assert refreshed.returncode == 0 and "ok: 3 jobs" in refreshed.stderr
    fake.faults.status = 403
    refused = await _opstui(env, "cicd", "test", provider["name"])
    assert refused.returncode == 1 and "(403)" in refused.stderr
