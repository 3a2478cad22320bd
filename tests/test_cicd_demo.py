"""The demo's CI/CD providers point at the FAKE CI servers and their seeded jobs really build."""

from __future__ import annotations

import json

import psycopg

from opstui.backend.demo_cicd import DemoCiServers
from opstui.cicd import api
from tests.cicd_support import rows, running_worker, secret_anywhere, wait_build


async def test_the_demo_providers_build_against_the_fakes(backend_info, sign_in):
    db = backend_info.db_url
    saved = rows(db, "select p.id, p.url, p.port, p.config, p.updated_at, s.secrets from public.cicd_providers p"
                     " left join private.cicd_provider_secrets s on s.provider_id = p.id")  # fmt: skip
    servers = DemoCiServers()
    try:
        await servers.start(db)
        assert {s.label for s in servers.servers} >= {"FAKE Jenkins (demo CI server)",
                                                     "FAKE GitHub Actions (demo CI server)"}  # fmt: skip
        admin = await sign_in("admin@acme.test")
        providers = {
            p["name"]: p for p in (await admin.table("cicd_providers").select("*").execute()).data
        }
        jenkins, github = providers["jenkins-platform"], providers["gha-payments"]
        assert (
            jenkins["url"].startswith("http://127.0.0.1:")
            and "FAKE demo CI server" in jenkins["config"]["demo_server"]
        )
        jobs = {
            (j["provider_id"], j["name"]): j["id"]
            for j in (await admin.table("cicd_jobs").select("id,provider_id,name").execute()).data
        }
        async with running_worker(admin) as worker:
            ids = [
                await api.trigger(admin, jobs[(jenkins["id"], "build")], {"BRANCH": "main"}),
                await api.trigger(
                    admin, jobs[(github["id"], "deploy-staging")], {"ENVIRONMENT": "staging"}
                ),
            ]
            builds = [await wait_build(admin, i, timeout=30) for i in ids]
        assert [b["status"] for b in builds] == ["succeeded", "succeeded"], [
            b["error"] for b in builds
        ]
        assert not worker.problems
        for server in servers.servers:
            assert secret_anywhere(db, server.demo_token) == []
    finally:
        before = {str(r["id"]): r for r in saved}
        await servers.stop()
        with psycopg.connect(
            db, autocommit=True
        ) as conn:  # the shared backend's demo rows as they were
            for row in saved:
                config = {
                    k: v
                    for k, v in (row["config"] or {}).items()
                    if k not in ("secret_keys", "demo_server")
                }
                conn.execute(
                    "update public.cicd_providers set url = %s, port = %s, config = %s::jsonb where id = %s",
                    (row["url"], row["port"], json.dumps(config), row["id"]),
                )
                conn.execute(
                    "update private.cicd_provider_secrets set secrets = %s::jsonb where provider_id = %s",
                    (json.dumps(row["secrets"] or {}), row["id"]),
                )
                conn.execute(
                    "update public.cicd_providers set updated_at = %s, config = config || jsonb_build_object("
                    "'secret_keys', (select coalesce(jsonb_agg(k order by k), '[]') from jsonb_object_keys(%s::jsonb) k))"
                    " where id = %s",
                    (row["updated_at"], json.dumps(row["secrets"] or {}), row["id"]),
                )
        after = {
            str(r["id"]): r
            for r in rows(
                db,
                "select p.id, p.url, p.port, p.config, p.updated_at, s.secrets"
                " from public.cicd_providers p left join private.cicd_provider_secrets s on s.provider_id = p.id",
            )
        }
        assert after == before  # fmt: skip
