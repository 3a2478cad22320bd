"""Helpers for the runner tests: real git repositories, real asyncssh hosts registered as
rows of a team, deployments that use them, and a Runner wired to trust exactly those hosts."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from pathlib import Path

import psycopg

from opstui.runs import api
from opstui.runs.runner import Runner, RunnerSettings
from opstui.ssh import ConnectionPool, KnownHosts, SshSettings, rpc_password_source

TERMINAL = api.TERMINAL


def make_repo(root: Path, files: dict[str, str], *, branch: str = "main") -> Path:
    """A real git repository with `files` committed on `branch`."""
    root.mkdir(parents=True, exist_ok=True)
    run = lambda *a: subprocess.run(["git", *a], cwd=root, check=True, capture_output=True)  # noqa: E731
    run("init", "-q", "-b", branch)
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o755)
    run("add", ".")
    run("-c", "user.name=t", "-c", "user.email=t@example.test", "commit", "-q", "-m", "scripts")
    return root


def db(backend_info, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(backend_info.db_url, autocommit=True) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


async def team_id(client, name: str = "Platform") -> str:
    rows = (await client.table("teams").select("id").eq("name", name).execute()).data
    return rows[0]["id"]


async def register_hosts(client, team: str, servers, *, prefix: str | None = None) -> list[dict]:
    """Host rows for DemoSshHost servers (ip 127.0.0.1, their port and password)."""
    prefix = prefix or f"rt-{uuid.uuid4().hex[:6]}"
    rows = [
        {"name": f"{prefix}-{s.name}", "type": "ssh", "ip": "127.0.0.1", "port": s.port,
         "user": s.username, "password": s.password, "team_id": team}
        for s in servers
    ]  # fmt: skip
    data = (await client.table("hosts").insert(rows).execute()).data
    by_name = {r["name"]: r for r in data}
    return [by_name[r["name"]] for r in rows]


async def provider_id(client) -> str:
    rows = (
        await client.table("git_providers")
        .insert({"type": "github", "name": f"rt-{uuid.uuid4().hex[:6]}"})
        .execute()
    ).data
    return rows[0]["id"]


async def make_deployment(
    client, team: str, repo: Path, hosts: list[dict], scripts: list[str], *,
    params: list[str] | None = None, env: dict[str, str] | None = None,
    batch: str = "100%", max_failures: int = 0, timeout: int = 600, name: str | None = None,
    **extra,
) -> dict:  # fmt: skip
    provider = await provider_id(client)
    repository = (
        await client.table("repositories")
        .insert({"provider_id": provider, "provider_type": "github", "name": repo.name,
                 "url": str(repo), "default_branch": "main", "team_id": team})
        .execute()
    ).data[0]  # fmt: skip
    tenant = (await client.table("teams").select("tenant_id").eq("id", team).execute()).data[0]
    row = {
        "name": name or f"rt-deploy-{uuid.uuid4().hex[:6]}", "repository_id": repository["id"],
        "team_id": team, "tenant_id": tenant["tenant_id"], "schedule_type": "now",
        "scripts_path": scripts, "scripts_parameters": params or [],
        "host_ids": [h["id"] for h in hosts],
        "environment_vars": [{"key": k, "value": v} for k, v in (env or {}).items()],
        "rollout_batch_size": batch, "rollout_max_failures": max_failures,
        "host_timeout_seconds": timeout, **extra,
    }  # fmt: skip
    return (await client.table("deployments").insert(row).execute()).data[0]


def trusting(tmp_path: Path, servers) -> KnownHosts:
    known = KnownHosts(user_path=tmp_path / "user_kh", own_path=tmp_path / "opstui_kh")
    for s in servers:
        known.remember("127.0.0.1", s.port, s.host_key())
    return known


def make_runner(client, known: KnownHosts, *, name: str | None = None, **settings) -> Runner:
    values = {"name": name or f"rt-runner-{uuid.uuid4().hex[:4]}", "lease_seconds": 10,
              "poll_interval": 1.0, "expire_interval": 1.0, "schedules": False,
              "drain_seconds": 5.0}  # fmt: skip
    values.update(settings)
    pool = ConnectionPool(
        SshSettings(known_hosts=known, agent_path=None, client_keys=None,
                    password_source=rpc_password_source(client))
    )  # fmt: skip
    runner = Runner(client, RunnerSettings(**values), pool=pool)
    runner._test_pool = pool  # closed by the caller through close_runner
    return runner


async def close_runner(runner: Runner, task: asyncio.Task) -> None:
    runner.stop()
    await asyncio.wait_for(task, 30)
    await runner._test_pool.close()


async def wait_run(client, run_id: str, statuses=TERMINAL, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        run = await api.get_run(client, run_id)
        if run and run.get("status") in statuses:
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} still {run and run.get('status')} after {timeout}s")
        await asyncio.sleep(0.1)


async def log_text(client, run_id: str) -> list[dict]:
    rows = (
        await client.table("deployment_run_logs").select("*").eq("run_id", run_id).order("seq")
        .limit(100000).execute()
    ).data  # fmt: skip
    return rows


def host_output(rows: list[dict], host_id: str, stream: str = "stdout") -> str:
    return "".join(r["text"] for r in rows if r["host_id"] == host_id and r["stream"] == stream)


# A script that records its pid on the host, then runs until it is stopped.
LONG = '#!/bin/sh\necho $$ > "$HOME/long.pid"\necho started\nexec sleep 120\n'


def process_alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def recorded_pid(server) -> int | None:
    path = server.sandbox / "long.pid"
    return int(path.read_text()) if path.exists() and path.read_text().strip() else None


async def deployment_on(admin, tmp_path, servers, files, scripts=None, **kwargs):
    team = await team_id(admin)
    hosts = await register_hosts(admin, team, servers)
    repo = make_repo(tmp_path / f"repo-{time.monotonic_ns()}", files)
    return hosts, await make_deployment(admin, team, repo, hosts, scripts or list(files), **kwargs)
