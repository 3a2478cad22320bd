"""The provider clients alone against the FAKE servers (no database): quirks that need exact timing."""

from __future__ import annotations

import asyncio
import time

import pytest

from opstui.backend.fake_cicd import FakeGitHub, FakeJenkins
from opstui.cicd.base import ProviderError
from opstui.cicd.clients import client_for


async def test_a_jenkins_queue_item_forgotten_before_it_was_read_is_a_clear_error():
    async with FakeJenkins(left_ttl=0.0, queue_seconds=0.05) as fake:
        client = client_for({"type": "jenkins", "name": "j", "url": fake.url, "config": {"username": fake.user}},
                            {"api_token": fake.token})  # fmt: skip
        client.poll_interval = (
            0.3  # too slow on purpose: the item leaves the queue and is forgotten
        )
        try:
            ref = await client.trigger("build", {}, "m")
            while not fake.builds[1].started():  # wait until it has left the queue
                await asyncio.sleep(0.01)
            with pytest.raises(
                ProviderError, match="forgot queue item 1 before it started a build"
            ):
                await client.resolve(ref, timeout=5)
        finally:
            await client.aclose()


async def test_an_exhausted_rate_limit_makes_the_next_request_wait_for_the_reset():
    async with FakeGitHub() as fake:
        client = client_for({"type": "github", "name": "g", "url": fake.url,
                             "config": {"owner": fake.owner, "repo": fake.repo}}, {"token": fake.token})  # fmt: skip
        try:
            fake.faults.status, fake.faults.retry_after, fake.faults.times = (
                403,
                1,
                1,
            )  # GitHub's secondary limit
            started = time.monotonic()
            assert (await client.test_connection()).startswith("ok: GitHub acme/app")
            assert time.monotonic() - started >= 0.9 and client.http.rate_limit_waits == 1
        finally:
            await client.aclose()
