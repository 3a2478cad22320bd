"""A 50-row filtered page through /rest/v1, end to end with supabase-py.

    /work/venv/bin/python benchmarks/bench_rest.py [--requests 400]

Starts `EmbeddedBackend(ephemeral=True)` in this process (as the TUI embeds
it), adds 150 deployments to the demo Platform team so a page is full, signs
in the demo admin with a real supabase-py AsyncClient and times

    deployments?select=*&team_id=eq.<platform>&order=created_at.desc&limit=50

as an authenticated user (RLS applies). Client and gateway share the event
loop, so the figure includes httpx/supabase-py overhead, the gateway, the
per-request transaction (role + claims + query) and JSON parsing.
Target: p50 < 10 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import machine, median, percentile  # noqa: E402

TARGET_MS = 10.0
EXTRA_DEPLOYMENTS = 150


async def run(requests: int) -> int:
    import psycopg
    from supabase import acreate_client

    from opstui.backend.embedded import EmbeddedBackend

    started = time.perf_counter()
    async with EmbeddedBackend(ephemeral=True) as backend:
        info = backend.info
        admin = next(u for u in info.users if u["role"] == "admin")
        with psycopg.connect(info.db_url, autocommit=True) as conn:
            team_id = conn.execute(
                "select id::text from public.teams where name = 'Platform'"
            ).fetchone()[0]
            conn.execute(
                "insert into public.deployments (name, team_id, status, created_at)"
                " select 'bench-' || i, %s, 'success', now() - i * interval '1 minute'"
                " from generate_series(1, %s) as i",
                (team_id, EXTRA_DEPLOYMENTS),
            )
        client = await acreate_client(info.url, info.anon_key)
        await client.auth.sign_in_with_password(
            {"email": admin["email"], "password": admin["password"]}
        )

        async def page():
            return await (
                client.table("deployments")
                .select("*")
                .eq("team_id", team_id)
                .order("created_at", desc=True)
                .limit(50)
                .execute()
            )

        for _ in range(30):  # warm-up: pool connections, prepared statements, schema cache
            result = await page()
        assert len(result.data) == 50, len(result.data)
        samples = []
        for _ in range(requests):
            t0 = time.perf_counter()
            result = await page()
            samples.append((time.perf_counter() - t0) * 1000)
            assert len(result.data) == 50
        body_bytes = len(result.model_dump_json())

    p50, p99 = median(samples), percentile(samples, 99)
    print(f"rest page: {requests} requests, 50 rows (~{body_bytes // 1024} KiB JSON) per response")
    print(f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, mean {sum(samples) / len(samples):.2f} ms")
    print(
        f"p50 / target ({TARGET_MS:.0f} ms) = {p50 / TARGET_MS:.2f}  ->  {'OK' if p50 < TARGET_MS else 'MISSED'}"
    )
    print(machine())
    print(f"total run time {time.perf_counter() - started:.1f} s")
    return 0 if p50 < TARGET_MS else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args()
    sandbox = tempfile.mkdtemp(prefix="opstui-bench-rest-")
    os.environ.setdefault("OPSTUI_CONFIG_DIR", os.path.join(sandbox, "config"))
    os.environ.setdefault("OPSTUI_DATA_DIR", os.path.join(sandbox, "data"))
    return asyncio.run(run(max(args.requests, 300)))


if __name__ == "__main__":
    sys.exit(main())
