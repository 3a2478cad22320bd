"""The demo's CI servers: the FAKE Jenkins and GitHub (protocol fakes, backend/fake_cicd/) on
127.0.0.1, with the demo's CI/CD providers pointed at them, so `opstui` alone shows builds
being triggered and followed. Started with the demo's runners (the TUI's demo only).

The fakes are given the jobs the demo seeded (same external ids), fresh tokens at every start
(written through `config`, so the database moves them into the secret store at once), and
each provider's `config.demo_server` says in plain words that it is a fake.
"""

from __future__ import annotations

import json
import logging
import secrets
from typing import Any

log = logging.getLogger(__name__)

NOTE = "FAKE demo CI server (opstui protocol fake on 127.0.0.1), not a real {kind}"


class DemoCiServers:
    def __init__(self) -> None:
        self.servers: list[Any] = []

    async def start(self, db_url: str) -> None:
        import asyncio

        rows = await asyncio.to_thread(_providers, db_url)
        updates = []
        for row in rows:
            server = await self._server_for(row)
            if server is None:
                continue
            self.servers.append(server)
            updates.append((row, server))
        await asyncio.to_thread(_point, db_url, updates)
        log.info("demo CI servers: %s", ", ".join(f"{r['name']} at {s.url}" for r, s in updates))

    async def _server_for(self, row: dict) -> Any:
        from opstui.backend.fake_cicd import FakeGitHub, FakeGitLab, FakeJenkins

        kind, config, jobs = row["type"], row["config"] or {}, row["jobs"]
        token = f"demo-{kind}-" + secrets.token_hex(12)
        if kind == "jenkins":
            specs = {
                ext: {"description": job.get("description") or "", "params": _jenkins_params(job)}
                for ext, job in jobs.items()
            }
            server = FakeJenkins(
                user=str(config.get("username") or config.get("user") or "ci-bot"),
                token=token, jobs=specs, queue_seconds=1.0, line_seconds=0.4,
            )  # fmt: skip
        elif kind == "github":
            workflows = {
                int(ext): {"name": job["name"], "path": f".github/workflows/{job['name']}.yml",
                           "yaml": _workflow_yaml(job)}
                for ext, job in jobs.items() if str(ext).isdigit()
            }  # fmt: skip
            server = FakeGitHub(owner=str(config.get("owner") or "acme"), repo=str(config.get("repo") or "app"),
                                token=token, workflows=workflows, queue_seconds=1.5, line_seconds=0.5)  # fmt: skip
        elif kind == "gitlab":
            server = FakeGitLab(project=str(config.get("project") or "group/app"), token=token,
                                queue_seconds=1.0, line_seconds=0.4)  # fmt: skip
        else:
            return None
        await server.start()
        server.demo_token = token
        return server

    async def stop(self) -> None:
        for server in self.servers:
            try:
                await server.stop()
            except Exception as exc:  # noqa: BLE001 - stopping goes on
                log.warning("a demo CI server did not stop cleanly: %s", exc)
        self.servers = []


def _jenkins_params(job: dict) -> list[dict]:
    return [
        {"name": k, "type": "boolean" if isinstance(v, bool) else "string", "default": v}
        for k, v in (job.get("parameters") or {}).items()
    ] + [{"name": "FAIL", "type": "boolean", "default": False, "description": "demo: make it fail"}]


def _workflow_yaml(job: dict) -> str:
    lines = [f"name: {job['name']}", "on:", "  workflow_dispatch:", "    inputs:"]
    for key, value in (job.get("parameters") or {}).items():
        kind = "boolean" if isinstance(value, bool) else "string"
        lines += [f"      {key}:", f"        type: {kind}", f"        default: {json.dumps(value)}"]
    lines += ["      fail:", "        type: boolean", "        default: false"]
    return "\n".join(lines) + "\njobs:\n  deploy:\n    runs-on: ubuntu-latest\n"


def _providers(db_url: str) -> list[dict]:
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(db_url, autocommit=True) as conn:
        providers = (
            conn.cursor(row_factory=dict_row)
            .execute("select id, name, type, config from public.cicd_providers order by name")
            .fetchall()
        )
        for provider in providers:
            rows = (
                conn.cursor(row_factory=dict_row)
                .execute(
                    "select external_id, name, description, parameters from public.cicd_jobs where provider_id = %s",
                    (provider["id"],),
                )
                .fetchall()
            )
            provider["jobs"] = {r["external_id"]: r for r in rows}
    return providers


def _point(db_url: str, updates: list[tuple[dict, Any]]) -> None:
    import psycopg

    with psycopg.connect(db_url, autocommit=True) as conn:
        for row, server in updates:
            secret_key = "api_token" if row["type"] == "jenkins" else "token"
            # Replaces the seeded secret (and a password the seed may have set instead).
            patch = {
                secret_key: server.demo_token,
                "password": "",
                "demo_server": NOTE.format(kind=row["type"]),
            }
            conn.execute(
                "update public.cicd_providers set url = %s, port = null, config = config || %s::jsonb where id = %s",
                (server.url, json.dumps(patch), row["id"]),
            )
