"""A deployment's mapped CI/CD jobs run as the first step of its run, in order, before the host
scripts; a failing job fails the run and skips the hosts. The real Runner, real supabase-py,
a real asyncssh host, a real git repository, and a FAKE Jenkins on 127.0.0.1."""

from __future__ import annotations

import asyncio

from opstui.backend.fake_cicd import FakeJenkins
from opstui.cicd import api as builds_api
from opstui.runs import api
from tests import ssh_support
from tests.cicd_support import add_provider, fast_settings
from tests.runner_support import (
    close_runner,
    host_output,
    log_text,
    make_deployment,
    make_repo,
    make_runner,
    register_hosts,
    team_id,
    trusting,
    wait_run,
)

ssh_hosts, ssh_home = ssh_support.ssh_hosts, ssh_support.ssh_home
QUICK = {"queue_seconds": 0.1, "line_seconds": 0.02}
SCRIPTS = {"deploy/run.sh": "#!/bin/sh\necho deployed-on-host\ntouch deployed\n"}
DEFS = [{"name": "ENVIRONMENT", "type": "string"}, {"name": "FAIL", "type": "boolean"}]


async def _deployment_with_jobs(admin, backend_info, fake, tmp_path, servers, mappings):
    team = await team_id(admin)
    hosts = await register_hosts(admin, team, servers)
    deployment = await make_deployment(
        admin, team, make_repo(tmp_path / "repo", SCRIPTS), hosts, list(SCRIPTS)
    )
    provider = await add_provider(
        admin, backend_info.db_url, "jenkins", fake, jobs=[("build", []), ("deploy", DEFS)]
    )
    rows = []
    for job, parameters in mappings:  # one insert each: created_at orders the steps
        rows += (
            await admin.table("deployment_cicd_mappings")
            .insert({"deployment_id": deployment["id"], "cicd_job_id": provider["jobs"][job]["id"],
                     "parameters": parameters})
            .execute()
        ).data  # fmt: skip
    return deployment, hosts, rows


async def _run(admin, tmp_path, servers, deployment):
    runner = make_runner(admin, trusting(tmp_path, servers), build_settings=fast_settings())
    task = asyncio.create_task(runner.run())
    try:
        run_id = await api.launch(admin, deployment["id"])
        return await wait_run(admin, run_id)
    finally:
        await close_runner(runner, task)


async def _builds_of(admin, run_id: str) -> list[dict]:
    data = (
        await admin.table("cicd_builds")
        .select("*")
        .eq("run_id", run_id)
        .order("requested_at")
        .execute()
    ).data
    return data


async def test_mapped_jobs_run_in_order_then_the_scripts(
    backend_info, sign_in, ssh_hosts, ssh_home, tmp_path
):
    admin = await sign_in("admin@acme.test")
    servers = [await ssh_hosts("a")]
    async with FakeJenkins(**QUICK) as fake:
        deployment, hosts, mappings = await _deployment_with_jobs(
            admin, backend_info, fake, tmp_path, servers,
            [("build", None), ("deploy", {"ENVIRONMENT": "staging"})],
        )  # fmt: skip
        run = await _run(admin, tmp_path, servers, deployment)
    assert run["status"] == "succeeded", run["error"]
    builds = await _builds_of(admin, run["id"])
    assert [b["job_name"].split("-")[0] for b in builds] == ["build", "deploy"]
    assert all(b["status"] == "succeeded" for b in builds)
    assert builds[0]["finished_at"] <= builds[1]["requested_at"]  # in order, one after the other
    assert builds[1]["parameters"] == {"ENVIRONMENT": "staging"}
    host = (await api.run_hosts(admin, run["id"]))[0]
    assert host["status"] == "succeeded" and host["started_at"] >= builds[1]["finished_at"]
    log = await log_text(admin, run["id"])
    system = "".join(r["text"] for r in log if r["stream"] == "system")
    assert system.index("CI/CD step 1 of 2") < system.index("CI/CD step 2 of 2")
    assert f"build #{builds[1]['number']} succeeded {builds[1]['url']}" in system
    assert "deployed-on-host" in host_output(log, hosts[0]["id"])
    # The mapping rows show their latest build.
    stored = {m["id"]: m for m in (await admin.table("deployment_cicd_mappings").select("*")
                                   .eq("deployment_id", deployment["id"]).execute()).data}  # fmt: skip
    for mapping, build in zip(mappings, builds, strict=True):
        assert (stored[mapping["id"]]["build_number"], stored[mapping["id"]]["build_url"]) == (
            build["number"], build["url"])  # fmt: skip
    text = "".join(c["text"] for c in await builds_api.build_logs(admin, builds[0]["id"]))
    assert "Finished: SUCCESS" in text


async def test_a_failing_job_fails_the_run_and_skips_the_hosts(
    backend_info, sign_in, ssh_hosts, ssh_home, tmp_path
):
    admin = await sign_in("admin@acme.test")
    servers = [await ssh_hosts("a")]
    async with FakeJenkins(**QUICK) as fake:
        deployment, hosts, _ = await _deployment_with_jobs(
            admin,
            backend_info,
            fake,
            tmp_path,
            servers,
            [("deploy", {"FAIL": True}), ("build", None)],
        )
        run = await _run(admin, tmp_path, servers, deployment)
        assert len(fake.builds) == 1  # the second job was never triggered
    assert run["status"] == "failed"
    assert (
        "CI/CD step deploy" in run["error"]
        and "FAILURE" in run["error"]
        and "hosts were skipped" in run["error"]
    )
    builds = await _builds_of(admin, run["id"])
    assert [b["status"] for b in builds] == ["failed"]
    assert [h["status"] for h in await api.run_hosts(admin, run["id"])] == ["skipped"]
    assert not list(servers[0].sandbox.rglob("deployed"))


async def test_cancelling_the_run_during_its_ci_step_stops_the_build(
    backend_info, sign_in, ssh_hosts, ssh_home, tmp_path
):
    admin = await sign_in("admin@acme.test")
    servers = [await ssh_hosts("a")]
    async with FakeJenkins(**QUICK) as fake:
        fake.faults.never_end = True
        deployment, _, _ = await _deployment_with_jobs(
            admin, backend_info, fake, tmp_path, servers, [("build", None)]
        )
        runner = make_runner(admin, trusting(tmp_path, servers), build_settings=fast_settings())
        task = asyncio.create_task(runner.run())
        try:
            run_id = await api.launch(admin, deployment["id"])

            async def running_build():
                builds = await _builds_of(admin, run_id)
                return builds and builds[0]["status"] == "running"

            from tests.cicd_support import wait_for

            await wait_for(running_build, timeout=20, what="the run's build to run")
            await api.cancel(admin, run_id)
            run = await wait_run(admin, run_id)
        finally:
            await close_runner(runner, task)
        assert run["status"] == "cancelled"
        assert [b["status"] for b in await _builds_of(admin, run_id)] == ["cancelled"]
        assert all(b.phase() == "cancelled" for b in fake.builds.values())
        assert [h["status"] for h in await api.run_hosts(admin, run_id)] in (
            ["cancelled"],
            ["skipped"],
        )
