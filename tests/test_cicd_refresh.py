"""Provider tasks done by the runner: test connection and refresh jobs (added, updated, marked
vanished, never deleted). Through the real client and BuildWorker, against the FAKE servers."""

from __future__ import annotations

import pytest

from opstui.backend.fake_cicd import FakeGitHub, FakeGitLab, FakeJenkins
from opstui.cicd import api
from tests.cicd_support import RUNNER, add_provider, rows, running_worker, secret_anywhere, wait_for


async def _task(client, provider_id: str, kind: str) -> dict:
    task_id = await api.request_task(client, provider_id, kind)

    async def done():
        task = await api.get_task(client, task_id)
        return task if task and task["status"] in ("succeeded", "failed", "lost") else None

    return await wait_for(done, timeout=15, what=f"the {kind} task")


async def _jobs(client, provider_id: str) -> dict[str, dict]:
    data = (
        await client.table("cicd_jobs").select("*").eq("provider_id", provider_id).execute()
    ).data
    return {j["external_id"]: j for j in data}


async def test_jenkins_refresh_adds_updates_and_marks_vanished_jobs_in_folders(
    backend_info, sign_in
):
    async with FakeJenkins() as fake:
        dev = await sign_in(RUNNER)
        provider = await add_provider(dev, backend_info.db_url, "jenkins", fake)
        async with running_worker(dev):
            first = await _task(dev, provider["id"], "refresh")
            assert first["status"] == "succeeded", first["result"]
            assert first["summary"] == {"added": 3, "updated": 0, "vanished": 0}
            jobs = await _jobs(dev, provider["id"])
            assert set(jobs) == {"build", "deploy", "platform/api/release"}  # the folder's job too
            deploy = jobs["deploy"]["parameter_definitions"]
            assert [d["name"] for d in deploy] == ["ENVIRONMENT", "DRY_RUN", "FAIL"]
            assert deploy[0] == {"name": "ENVIRONMENT", "type": "choice", "choices": ["staging", "production"],
                                 "default": "staging"}  # fmt: skip
            build_job = jobs["build"]["id"]
            build_id = await api.trigger(dev, build_job, {})

            del fake.jobs["build"]
            fake.jobs["deploy"] = {
                **fake.jobs["deploy"],
                "description": "Deploy, now with canaries",
            }
            fake.jobs["platform/web/release"] = {"description": "new"}
            second = await _task(dev, provider["id"], "refresh")
        assert second["summary"] == {"added": 1, "updated": 1, "vanished": 1}, second
        assert second["result"].startswith("ok: 3 jobs; 1 added, 1 updated, 1 vanished")
        jobs = await _jobs(dev, provider["id"])
        assert jobs["build"]["vanished_at"] is not None  # kept, with its history
        assert jobs["deploy"]["description"] == "Deploy, now with canaries"
        assert jobs["platform/web/release"]["vanished_at"] is None
        assert await api.get_build(dev, build_id) is not None
        with pytest.raises(api.BuildsError, match="no longer exists on its provider"):
            await api.trigger(dev, build_job, {})


async def test_github_refresh_lists_only_dispatchable_workflows_with_their_inputs(
    backend_info, sign_in
):
    async with FakeGitHub() as fake:
        dev = await sign_in(RUNNER)
        provider = await add_provider(dev, backend_info.db_url, "github", fake)
        async with running_worker(dev):
            task = await _task(dev, provider["id"], "refresh")
        assert task["status"] == "succeeded", task["result"]
        jobs = await _jobs(dev, provider["id"])
        assert {j["name"] for j in jobs.values()} == {
            "Deploy",
            "CI",
        }  # Nightly has no workflow_dispatch
        inputs = jobs["101"]["parameter_definitions"]
        assert [d["name"] for d in inputs] == [
            "environment",
            "dry_run",
        ]  # the marker input is hidden
        assert inputs[0]["required"] is True and inputs[0]["choices"] == ["staging", "production"]


async def test_gitlab_refresh_makes_a_project_ref_job_with_pipeline_variables(
    backend_info, sign_in
):
    async with FakeGitLab(refs=("main",)) as fake:
        dev = await sign_in(RUNNER)
        provider = await add_provider(dev, backend_info.db_url, "gitlab", fake)
        async with running_worker(dev):
            task = await _task(dev, provider["id"], "refresh")
        assert task["status"] == "succeeded", task["result"]
        jobs = await _jobs(dev, provider["id"])
        assert list(jobs) == ["group/app@main"]
        variables = {d["name"]: d for d in jobs["group/app@main"]["parameter_definitions"]}
        assert variables["DEPLOY_ENV"]["choices"] == ["staging", "production"]
        assert variables["VERSION"]["default"] == "1.0.0"


@pytest.mark.parametrize("kind", ["jenkins", "github", "gitlab"])
async def test_test_connection_says_ok_or_what_is_wrong_in_one_line(backend_info, sign_in, kind):
    cls = {"jenkins": FakeJenkins, "github": FakeGitHub, "gitlab": FakeGitLab}[kind]
    async with cls() as fake:
        dev = await sign_in(RUNNER)
        provider = await add_provider(dev, backend_info.db_url, kind, fake)
        async with running_worker(dev):
            ok = await _task(dev, provider["id"], "test")
            assert ok["status"] == "succeeded" and ok["result"].startswith("ok: "), ok["result"]
            assert ok["result"].endswith("(demo CI server))")  # the fake says it is one
            fake.faults.status = 401
            refused = await _task(dev, provider["id"], "test")
        assert refused["status"] == "failed"
        assert "(401)" in refused["result"] and "\n" not in refused["result"]
        assert secret_anywhere(backend_info.db_url, fake.token) == []


async def test_who_may_test_and_refresh(backend_info, sign_in):
    async with FakeJenkins() as fake:
        dev = await sign_in(RUNNER)
        provider = await add_provider(dev, backend_info.db_url, "jenkins", fake)
        viewer = await sign_in("viewer@acme.test")
        for kind, words in (
            ("test", "can_execute on cicd_providers"),
            ("refresh", "can_update on cicd_jobs"),
        ):
            with pytest.raises(api.BuildsError, match=words):
                await api.request_task(viewer, provider["id"], kind)
        assert not rows(backend_info.db_url, "select 1 from cicd_provider_tasks where provider_id = %s",
                        (provider["id"],))  # fmt: skip
