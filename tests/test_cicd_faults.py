"""CI/CD builds that go wrong: refusals (401/403/404), a provider that is down, a dropped
connection, a Jenkins queue item that never gets a build, crumbs, rate limits. Through the
real client and BuildWorker, against the FAKE CI servers on 127.0.0.1."""

from __future__ import annotations

import socket

import pytest

from opstui.backend.fake_cicd import FakeGitHub, FakeGitLab, FakeJenkins
from opstui.cicd import api
from tests.cicd_support import RUNNER, add_provider, running_worker, wait_build
from tests.test_cicd_builds import FAKES, PARAMS, QUICK

REFUSALS = [
    (401, "refused the credentials (401)"),
    (403, "forbids this (403)"),
    (404, "not found (404)"),
]


@pytest.mark.parametrize("kind", ["jenkins", "github", "gitlab"])
async def test_provider_refusals_are_one_line_errors_on_the_build(backend_info, sign_in, kind):
    cls, job, definitions = FAKES[kind]
    async with cls(**QUICK) as fake:
        dev = await sign_in(RUNNER)
        provider = await add_provider(
            dev, backend_info.db_url, kind, fake, jobs=[(job, definitions)]
        )
        async with running_worker(dev):
            for status, words in REFUSALS:
                fake.faults.status = status
                build = await wait_build(
                    dev, await api.trigger(dev, provider["jobs"][job]["id"], PARAMS[kind])
                )
                assert build["status"] == "failed", status
                assert words in build["error"] and "\n" not in build["error"], build["error"]
                assert fake.token not in build["error"]


async def test_a_wrong_jenkins_token_gets_401_from_the_fake_itself(backend_info, sign_in):
    async with FakeJenkins(**QUICK) as fake:
        dev = await sign_in(RUNNER)
        provider = await add_provider(
            dev, backend_info.db_url, "jenkins", fake, jobs=[("build", [])]
        )
        fake.token = "rotated-" + fake.token  # the stored token is now wrong
        async with running_worker(dev):
            build = await wait_build(
                dev, await api.trigger(dev, provider["jobs"]["build"]["id"], {})
            )
        assert build["status"] == "failed" and "(401)" in build["error"]


@pytest.mark.parametrize("kind", ["jenkins", "github", "gitlab"])
async def test_a_provider_that_is_down_is_unreachable(backend_info, sign_in, kind):
    cls, job, definitions = FAKES[kind]
    fake = cls(**QUICK)
    with socket.socket() as sock:  # a loopback port where nothing listens
        sock.bind(("127.0.0.1", 0))
        fake.port = sock.getsockname()[1]
    dev = await sign_in(RUNNER)
    provider = await add_provider(dev, backend_info.db_url, kind, fake, jobs=[(job, definitions)])
    async with running_worker(dev):
        build = await wait_build(
            dev, await api.trigger(dev, provider["jobs"][job]["id"], PARAMS[kind])
        )
    assert build["status"] == "failed"
    assert "unreachable (connection refused)" in build["error"]


async def test_a_dropped_connection_is_one_line(backend_info, sign_in):
    async with FakeGitLab(**QUICK) as fake:
        fake.faults.drop = True
        dev = await sign_in(RUNNER)
        provider = await add_provider(
            dev, backend_info.db_url, "gitlab", fake, jobs=[("group/app@main", [])]
        )
        async with running_worker(dev):
            build = await wait_build(
                dev, await api.trigger(dev, provider["jobs"]["group/app@main"]["id"], {})
            )
        assert build["status"] == "failed"
        assert "GitLab" in build["error"] and "\n" not in build["error"]


async def test_a_jenkins_queue_item_that_never_gets_a_build_times_out(backend_info, sign_in):
    async with FakeJenkins(**QUICK) as fake:
        fake.faults.never_start = True
        dev = await sign_in(RUNNER)
        provider = await add_provider(
            dev, backend_info.db_url, "jenkins", fake, jobs=[("build", [])]
        )
        async with running_worker(dev, queue_timeout=1.0):
            build = await wait_build(
                dev, await api.trigger(dev, provider["jobs"]["build"]["id"], {})
            )
        assert build["status"] == "failed"
        assert "got no build within 1 s" in build["error"]
        assert "Waiting for next available executor" in build["error"]
        assert build["queue_id"] and build["number"] is None


async def test_jenkins_crumb_is_fetched_only_when_a_post_is_refused(backend_info, sign_in):
    async with FakeJenkins(require_crumb=True, **QUICK) as fake:
        dev = await sign_in(RUNNER)
        provider = await add_provider(
            dev, backend_info.db_url, "jenkins", fake, jobs=[("build", [])]
        )
        async with running_worker(dev):
            build = await wait_build(
                dev, await api.trigger(dev, provider["jobs"]["build"]["id"], {})
            )
        assert build["status"] == "succeeded", build["error"]
        assert ("GET", "/crumbIssuer/api/json") in fake.requests
    async with FakeJenkins(**QUICK) as fake:  # no crumb needed: none asked for
        dev = await sign_in(RUNNER)
        provider = await add_provider(
            dev, backend_info.db_url, "jenkins", fake, jobs=[("build", [])]
        )
        async with running_worker(dev):
            build = await wait_build(
                dev, await api.trigger(dev, provider["jobs"]["build"]["id"], {})
            )
        assert build["status"] == "succeeded"
        assert ("GET", "/crumbIssuer/api/json") not in fake.requests


async def test_a_gitlab_that_ignores_range_still_gives_the_log_once(backend_info, sign_in):
    async with FakeGitLab(ignore_range=True, **QUICK) as fake:
        dev = await sign_in(RUNNER)
        provider = await add_provider(
            dev, backend_info.db_url, "gitlab", fake, jobs=[("group/app@main", [])]
        )
        async with running_worker(dev):
            build_id = await api.trigger(dev, provider["jobs"]["group/app@main"]["id"], {})
            build = await wait_build(dev, build_id)
        assert build["status"] == "succeeded", build["error"]
        text = "".join(c["text"] for c in await api.build_logs(dev, build_id))
        for line in ("Checking out revision", "Compiling 214 files", "Uploading artifact"):
            assert text.count(line) == 1, text


async def test_a_build_cancelled_before_any_runner_took_it_is_cancelled_at_once(
    backend_info, sign_in
):
    async with FakeJenkins(**QUICK) as fake:
        dev = await sign_in(RUNNER)
        provider = await add_provider(
            dev, backend_info.db_url, "jenkins", fake, jobs=[("build", [])]
        )
        build_id = await api.trigger(dev, provider["jobs"]["build"]["id"], {})
        assert await api.cancel(dev, build_id) == "cancelled"
        build = await api.get_build(dev, build_id)
        assert build["status"] == "cancelled" and build["finished_at"]
        async with running_worker(dev) as worker:  # nothing is left for a runner
            assert await api.claim(dev, "nobody", 10) is None
        assert worker.finished == {} and fake.builds == {}


@pytest.mark.parametrize("kind", ["github", "gitlab"])
async def test_a_build_the_provider_never_starts_fails_and_is_withdrawn(
    backend_info, sign_in, kind
):
    cls, job, definitions = FAKES[kind]
    async with cls(**QUICK) as fake:
        fake.faults.never_start = True
        dev = await sign_in(RUNNER)
        provider = await add_provider(
            dev, backend_info.db_url, kind, fake, jobs=[(job, definitions)]
        )
        async with running_worker(dev, queue_timeout=1.0):
            build = await wait_build(
                dev, await api.trigger(dev, provider["jobs"][job]["id"], PARAMS[kind])
            )
        assert build["status"] == "failed"
        assert "never started within 1 s" in build["error"] and build["number"]
        assert all(b.phase() == "cancelled" for b in fake.builds.values())


async def test_a_github_dispatch_whose_run_never_appears_times_out(backend_info, sign_in):
    async with FakeGitHub(old_api=True, **QUICK) as fake:
        fake.hide_runs = True
        dev = await sign_in(RUNNER)
        provider = await add_provider(
            dev, backend_info.db_url, "github", fake, jobs=[("101", FAKES["github"][2])]
        )
        async with running_worker(dev, queue_timeout=1.0):
            build = await wait_build(
                dev, await api.trigger(dev, provider["jobs"]["101"]["id"], PARAMS["github"])
            )
        assert build["status"] == "failed"
        assert "no new run of it appeared within 1 s" in build["error"]
