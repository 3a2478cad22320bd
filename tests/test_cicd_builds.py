"""CI/CD builds end to end: trigger through the real client, claimed by the real BuildWorker,
driven against the FAKE Jenkins/GitHub/GitLab servers on 127.0.0.1."""

from __future__ import annotations

import time

import pytest

from opstui.backend.fake_cicd import FakeGitHub, FakeGitLab, FakeJenkins
from opstui.cicd import api
from tests.cicd_support import (
    RUNNER,
    add_provider,
    log_text,
    running_worker,
    secret_anywhere,
    wait_build,
    wait_for,
)

FAKES = {
    "jenkins": (
        FakeJenkins,
        "deploy",
        [
            {"name": "ENVIRONMENT", "type": "choice", "choices": ["staging", "production"]},
            {"name": "DRY_RUN", "type": "boolean"},
            {"name": "FAIL", "type": "boolean"},
        ],
    ),
    "github": (
        FakeGitHub,
        "101",
        [
            {"name": "environment", "type": "choice", "choices": ["staging", "production"]},
            {"name": "dry_run", "type": "boolean"},
        ],
    ),
    "gitlab": (
        FakeGitLab,
        "group/app@main",
        [{"name": "VERSION", "type": "string"}, {"name": "FAIL", "type": "string"}],
    ),
}
QUICK = {"queue_seconds": 0.1, "line_seconds": 0.02}
PARAMS = {
    "jenkins": {"ENVIRONMENT": "staging"},
    "github": {"environment": "staging"},
    "gitlab": {"VERSION": "2.0"},
}
EXPECTED_LINES = {
    "jenkins": ["Checking out revision", "Uploading artifact", "Finished: SUCCESS"],
    "github": ["[job deploy] ", "Checking out revision", "Uploading artifact"],
    "gitlab": ["── job build", "Checking out revision", "── job test", "Uploading artifact"],
}


@pytest.mark.parametrize("kind", ["jenkins", "github", "gitlab"])
async def test_trigger_follows_to_success_and_to_failure_with_the_whole_log_in_order(
    backend_info, sign_in, kind
):
    cls, job, definitions = FAKES[kind]
    db = backend_info.db_url
    async with cls(**QUICK) as fake:
        dev = await sign_in(RUNNER)
        provider = await add_provider(dev, db, kind, fake, jobs=[(job, definitions)])
        job_row = provider["jobs"][job]
        async with running_worker(dev) as worker:
            build_id = await api.trigger(dev, job_row["id"], PARAMS[kind])
            build = await wait_build(dev, build_id)
            fake.faults.fail_builds = True
            failed_id = await api.trigger(dev, job_row["id"], PARAMS[kind])
            failed = await wait_build(dev, failed_id)
        assert build["status"] == "succeeded", build["error"]
        assert build["number"] and build["url"].startswith(fake.url)
        assert build["started_at"] and build["finished_at"]
        text, seqs = await log_text(dev, build_id)
        assert seqs == list(range(1, len(seqs) + 1))
        positions = [text.index(line) for line in EXPECTED_LINES[kind]]
        assert positions == sorted(positions), text
        assert text.count("Checking out revision") == 1  # no chunk twice
        assert not worker.problems
        # The failure: the provider's own word, one line, and the log says why.
        assert failed["status"] == "failed"
        assert failed["error"] and "\n" not in failed["error"]
        assert {"jenkins": "FAILURE", "github": "failure", "gitlab": "failed"}[kind] in failed[
            "error"
        ]
        assert "ERROR: step exited with code 1" in (await log_text(dev, failed_id))[0]
        assert secret_anywhere(db, fake.token) == []
        assert fake.token not in text


@pytest.mark.parametrize("kind", ["jenkins", "github", "gitlab"])
async def test_cancel_stops_a_never_ending_build_on_the_provider(backend_info, sign_in, kind):
    cls, job, definitions = FAKES[kind]
    async with cls(**QUICK) as fake:
        fake.faults.never_end = True
        dev = await sign_in(RUNNER)
        provider = await add_provider(
            dev, backend_info.db_url, kind, fake, jobs=[(job, definitions)]
        )
        async with running_worker(dev, lease_seconds=30):
            build_id = await api.trigger(dev, provider["jobs"][job]["id"], PARAMS[kind])
            await wait_build(dev, build_id, {"running"})
            asked = time.monotonic()
            assert await api.cancel(dev, build_id) == "cancel_requested"
            build = await wait_build(dev, build_id, timeout=15)
            # Heard through Realtime, well before the next heartbeat (every 10 s here) would say.
            assert time.monotonic() - asked < 3.0
        assert build["status"] == "cancelled"
        assert all(b.phase() == "cancelled" for b in fake.builds.values())


async def test_github_204_without_run_details_finds_each_run_without_racing(backend_info, sign_in):
    async with FakeGitHub(old_api=True, **QUICK) as fake:
        dev = await sign_in(RUNNER)
        definitions = FAKES["github"][2]
        provider = await add_provider(
            dev, backend_info.db_url, "github", fake, jobs=[("101", definitions)]
        )
        async with running_worker(dev):
            ids = [
                await api.trigger(dev, provider["jobs"]["101"]["id"], {"environment": "staging"})
                for _ in range(3)
            ]
            builds = [await wait_build(dev, i) for i in ids]
        assert [b["status"] for b in builds] == ["succeeded"] * 3
        assert len({b["external_id"] for b in builds}) == 3  # three builds, three different runs
        for build in builds:  # each found by the marker its dispatch carried
            run = fake.runs[int(build["external_id"])]
            assert run["title"].endswith(build["id"])


async def test_rate_limit_429_is_waited_out(backend_info, sign_in):
    async with FakeGitLab(**QUICK) as fake:
        fake.faults.status, fake.faults.retry_after, fake.faults.times = 429, 1, 2
        dev = await sign_in(RUNNER)
        provider = await add_provider(
            dev, backend_info.db_url, "gitlab", fake, jobs=[("group/app@main", [])]
        )
        async with running_worker(dev):
            build = await wait_build(
                dev, await api.trigger(dev, provider["jobs"]["group/app@main"]["id"], {})
            )
        assert build["status"] == "succeeded", build["error"]
        assert fake.faults.times == 0  # both 429s were answered, then retried


async def test_another_tenant_sees_no_build_and_a_viewer_cannot_trigger(backend_info, sign_in):
    async with FakeJenkins(**QUICK) as fake:
        dev = await sign_in(RUNNER)
        provider = await add_provider(
            dev, backend_info.db_url, "jenkins", fake, jobs=[("build", [])]
        )
        job_id = provider["jobs"]["build"]["id"]
        viewer = await sign_in("viewer@acme.test")
        with pytest.raises(api.BuildsError) as refused:
            await api.trigger(viewer, job_id, {})
        assert refused.value.code == "42501" and "can_execute on cicd_jobs" in str(refused.value)
        async with running_worker(dev):
            build_id = await api.trigger(dev, job_id, {})
            await wait_build(dev, build_id)
        outsider = await sign_in("ops@globex.test")
        assert await api.get_build(outsider, build_id) is None
        assert await api.build_logs(outsider, build_id) == []
        assert await api.get_build(viewer, build_id) is not None  # a member reads it
        with pytest.raises(api.BuildsError):
            await api.cancel(viewer, build_id)
        with pytest.raises(Exception):  # noqa: B017 - no direct writes at all
            await (
                dev.table("cicd_builds")
                .update({"status": "succeeded"})
                .eq("id", build_id)
                .execute()
            )


async def test_secret_parameters_reach_the_provider_but_no_row(backend_info, sign_in):
    async with FakeJenkins(**QUICK) as fake:
        dev = await sign_in(RUNNER)
        definitions = [
            {"name": "DB_PASSWORD", "type": "password"},
            {"name": "ENVIRONMENT", "type": "string"},
        ]
        provider = await add_provider(
            dev, backend_info.db_url, "jenkins", fake, jobs=[("deploy", definitions)]
        )
        async with running_worker(dev):
            build_id = await api.trigger(
                dev,
                provider["jobs"]["deploy"]["id"],
                {"DB_PASSWORD": "hunter2-very-secret", "ENVIRONMENT": "qa"},
            )
            build = await wait_build(dev, build_id)
        assert build["status"] == "succeeded", build["error"]
        assert build["parameters"] == {"ENVIRONMENT": "qa"} and build["secret_parameters"] == [
            "DB_PASSWORD"
        ]
        sent = next(iter(fake.builds.values())).parameters
        assert sent["DB_PASSWORD"] == "hunter2-very-secret"
        assert secret_anywhere(backend_info.db_url, "hunter2-very-secret") == []


async def test_unknown_and_missing_parameters_are_refused_with_the_job_name(backend_info, sign_in):
    async with FakeJenkins(**QUICK) as fake:
        dev = await sign_in(RUNNER)
        definitions = [{"name": "VERSION", "type": "string", "required": True}]
        provider = await add_provider(
            dev, backend_info.db_url, "jenkins", fake, jobs=[("deploy", definitions)]
        )
        job = provider["jobs"]["deploy"]
        with pytest.raises(
            api.BuildsError, match="has no parameter VERSON; its parameters are: VERSION"
        ):
            await api.trigger(dev, job["id"], {"VERSON": "1"})
        with pytest.raises(api.BuildsError, match="needs parameter VERSION"):
            await api.trigger(dev, job["id"], {})


async def test_a_lapsed_build_lease_becomes_lost(backend_info, sign_in):
    async with FakeJenkins(**QUICK) as fake:
        dev = await sign_in(RUNNER)
        provider = await add_provider(
            dev, backend_info.db_url, "jenkins", fake, jobs=[("build", [])]
        )
        build_id = await api.trigger(dev, provider["jobs"]["build"]["id"], {})
        claimed = None
        while claimed is None or str(claimed["id"]) != build_id:  # claim it and then go silent
            claimed = await api.claim(dev, "silent-runner", 2)
            if claimed and str(claimed["id"]) != build_id:
                await api.finish(dev, str(claimed["id"]), "cancelled", "test cleanup")
        build = await wait_for(
            lambda: _expired(dev, build_id), timeout=15, what="the lease to lapse"
        )
        assert build["status"] == "lost"
        assert "silent-runner stopped heartbeating" in build["error"]


async def _expired(client, build_id):
    await api.expire_leases(client)
    build = await api.get_build(client, build_id)
    return build if build["status"] == "lost" else None
