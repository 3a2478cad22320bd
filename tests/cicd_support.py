"""Shared helpers for the CI/CD tests: providers on the FAKE CI servers, a fast BuildWorker,
waiting for builds, reading every row for leaked secrets."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from contextlib import asynccontextmanager

import psycopg
from psycopg.rows import dict_row

from opstui.cicd import api
from opstui.runs.builds import BuildSettings, BuildWorker

RUNNER = "dev@acme.test"  # developer: execute on cicd_jobs and cicd_providers in Platform


def rows(db_url: str, sql: str, params: tuple = ()) -> list[dict]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        cur = conn.cursor(row_factory=dict_row).execute(sql, params)
        return cur.fetchall() if cur.description else []


def team_id(db_url: str, name: str) -> str:
    return str(rows(db_url, "select id from teams where name = %s", (name,))[0]["id"])


def fast_settings(**overrides) -> BuildSettings:
    settings = BuildSettings(
        lease_seconds=10,
        queue_timeout=5.0,
        cancel_timeout=10.0,
        poll_seconds={"jenkins": 0.1, "github": 0.1, "gitlab": 0.1},
        first_poll=0.05,
        sink_options={"interval": 0.05, "rows_per_second": 100},
        http_timeout=3.0,
    )
    for key, value in overrides.items():
        setattr(settings, key, value)
    return settings


def provider_config(kind: str, fake) -> tuple[dict, dict]:
    """(config with its secret, the secret) for a provider row pointing at a fake."""
    if kind == "jenkins":
        return {"username": fake.user, "api_token": fake.token}, {"api_token": fake.token}
    if kind == "github":
        return {"owner": fake.owner, "repo": fake.repo, "token": fake.token}, {"token": fake.token}
    return {"project": fake.project, "auth": {"token": fake.token}}, {"auth.token": fake.token}


async def add_provider(
    client, db_url: str, kind: str, fake, *, team: str = "Platform", jobs=()
) -> dict:
    """A provider row (and job rows) through the real client, as the signed-in user."""
    config, _ = provider_config(kind, fake)
    row = (
        await client.table("cicd_providers")
        .insert({"name": f"fake-{kind}-{uuid.uuid4().hex[:6]}", "type": kind, "url": fake.url,
                 "config": config, "team_id": team_id(db_url, team)})
        .execute()
    ).data[0]  # fmt: skip
    job_rows = {}
    for external_id, definitions in jobs:
        job_rows[external_id] = (
            await client.table("cicd_jobs")
            .insert({"provider_id": row["id"], "external_id": external_id, "name": f"{external_id}-{row['id'][:6]}",
                     "team_id": row["team_id"], "parameter_definitions": definitions})
            .execute()
        ).data[0]  # fmt: skip
    row["jobs"] = job_rows
    return row


@asynccontextmanager
async def running_worker(client, **settings):
    worker = BuildWorker(
        client,
        name=f"test-runner-{uuid.uuid4().hex[:6]}",
        poll_interval=0.2,
        expire_interval=0.5,
        drain_seconds=1.0,
        settings=fast_settings(**settings),
    )
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)


async def wait_build(client, build_id: str, statuses=api.TERMINAL, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    build = None
    while time.monotonic() < deadline:
        build = await api.get_build(client, build_id)
        if build and build["status"] in statuses:
            return build
        await asyncio.sleep(0.05)
    raise AssertionError(f"build {build_id} never reached {sorted(statuses)}: {build}")


async def wait_for(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def log_text(client, build_id: str) -> tuple[str, list[int]]:
    chunks = await api.build_logs(client, build_id, 0, 10_000)
    return "".join(c["text"] for c in chunks), [c["seq"] for c in chunks]


def secret_anywhere(db_url: str, secret: str) -> list[str]:
    """Every public table (and the realtime queue) searched for the secret, as the superuser."""
    found = []
    tables = [
        r["table_name"]
        for r in rows(
            db_url,
            "select table_name from information_schema.tables"
            " where table_schema = 'public' and table_type = 'BASE TABLE'",
        )
    ]
    for table in tables:
        for row in rows(db_url, f"select * from public.{table}"):  # noqa: S608
            if secret in json.dumps(row, default=str):
                found.append(table)
                break
    return found
