"""The run RPCs through /rest/v1/rpc, end to end with supabase-py, over a big history.

    .venv/bin/python benchmarks/bench_run_rpcs.py [--history 100000] [--rounds 50]

Starts `EmbeddedBackend(ephemeral=True)` in this process, adds `--history`
finished runs to the demo's deployments (so the claim's partial index and the
newest-first listing have something to skip), signs in the demo developer and
times, per round: launch_deployment, claim_deployment_run, one append_run_log
of 10 chunks x 4 KB, heartbeat, finish. Then log throughput: sequential appends
of 16 x 16 KB chunks (256 KB a call) to one run, and the team's 50 newest runs.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import machine, median, percentile  # noqa: E402


async def run(history: int, rounds: int) -> int:
    import psycopg
    from supabase import acreate_client

    from opstui.backend.embedded import EmbeddedBackend

    async with EmbeddedBackend(ephemeral=True) as backend:
        info = backend.info
        dev = next(u for u in info.users if u["email"] == "dev@acme.test")
        with psycopg.connect(info.db_url, autocommit=True) as conn:
            team = conn.execute("select id::text from teams where name = 'Platform'").fetchone()[0]
            deployments = [
                r[0]
                for r in conn.execute(
                    "select id::text from deployments d where team_id = %s and cardinality(host_ids) > 0"
                    " and not exists (select 1 from deployment_runs r where r.deployment_id = d.id"
                    " and r.status in ('queued', 'running')) order by name",
                    (team,),
                )
            ]
            t0 = time.perf_counter()
            per = max(1, history // len(deployments))
            # History only: no Realtime capture, no status trigger per seeded row.
            conn.execute("set session_replication_role = replica")
            conn.execute(
                """
                insert into deployment_runs (deployment_id, team_id, tenant_id, number, trigger,
                  status, requested_at, started_at, finished_at, spec)
                select d.id, d.team_id, d.tenant_id,
                       g + coalesce((select max(r.number) from deployment_runs r
                                     where r.deployment_id = d.id), 0),
                       'manual', 'succeeded',
                       now() - (g || ' hours')::interval, now() - (g || ' hours')::interval,
                       now() - (g || ' hours')::interval + interval '1 minute',
                       jsonb_build_object('host_ids', to_jsonb(d.host_ids::text[]))
                from deployments d cross join generate_series(1, %s) g
                where d.id = any(%s::uuid[])
                """,
                (per, deployments),
            )
            conn.execute("set session_replication_role = origin")
            conn.execute("analyze deployment_runs")
            seeded = conn.execute("select count(*) from deployment_runs").fetchone()[0]
            seed_s = time.perf_counter() - t0
        client = await acreate_client(info.url, info.anon_key)
        await client.auth.sign_in_with_password(
            {"email": dev["email"], "password": dev["password"]}
        )

        async def rpc(fn, **args):
            return (await client.rpc(fn, args).execute()).data

        chunk = "x" * 4095 + "\n"
        timings: dict[str, list[float]] = {
            k: [] for k in ("launch", "claim", "append 40 KB", "heartbeat", "finish")
        }
        for i in range(rounds + 5):
            did = deployments[i % len(deployments)]
            marks = [time.perf_counter()]
            run_id = await rpc("launch_deployment", p_deployment_id=did)
            marks.append(time.perf_counter())
            claimed = await rpc("claim_deployment_run", p_runner_name="bench", p_lease_seconds=30)
            marks.append(time.perf_counter())
            assert claimed and claimed[0]["id"] == run_id, claimed
            host = claimed[0]["spec"]["host_ids"][0]
            await rpc(
                "append_run_log",
                p_run_id=run_id,
                p_chunks=[{"host_id": host, "stream": "stdout", "text": chunk}] * 10,
            )
            marks.append(time.perf_counter())
            await rpc("heartbeat_deployment_run", p_run_id=run_id, p_lease_seconds=30)
            marks.append(time.perf_counter())
            await rpc("finish_deployment_run", p_run_id=run_id, p_status="succeeded")
            marks.append(time.perf_counter())
            if i >= 5:  # warm-up rounds
                for name, a, b in zip(timings, marks, marks[1:], strict=False):
                    timings[name].append((b - a) * 1000)

        # Throughput: one run, sequential 256 KB appends.
        run_id = await rpc("launch_deployment", p_deployment_id=deployments[0])
        claimed = await rpc("claim_deployment_run", p_runner_name="bench", p_lease_seconds=60)
        host = claimed[0]["spec"]["host_ids"][0]
        big = [{"host_id": host, "stream": "stdout", "text": "y" * 16383 + "\n"}] * 16
        calls, t0 = 40, time.perf_counter()
        for _ in range(calls):
            await rpc("append_run_log", p_run_id=run_id, p_chunks=big)
        elapsed = time.perf_counter() - t0
        mb = calls * 16 * 16384 / 1e6
        await rpc("finish_deployment_run", p_run_id=run_id, p_status="succeeded")

        listing = []
        for _ in range(30):
            t0 = time.perf_counter()
            rows = (
                await client.table("deployment_runs")
                .select("id,number,status,requested_at,deployment_id")
                .eq("team_id", team)
                .order("requested_at", desc=True)
                .limit(50)
                .execute()
            ).data
            listing.append((time.perf_counter() - t0) * 1000)
            assert len(rows) == 50

    print(machine())
    print(f"history: {seeded} runs in the database (seeded in {seed_s:.1f} s)")
    for name, samples in timings.items():
        print(
            f"{name:>13}: p50 {median(samples):6.1f} ms  p99 {percentile(samples, 99):6.1f} ms"
            f"  ({len(samples)} rounds)"
        )
    print(
        f"log throughput, one run, 256 KB appends: {mb / elapsed:.1f} MB/s ({mb:.1f} MB in {elapsed:.2f} s)"
    )
    print(
        f"team's 50 newest runs: p50 {median(listing):.1f} ms  p99 {percentile(listing, 99):.1f} ms"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    return asyncio.run(run(args.history, args.rounds))


if __name__ == "__main__":
    raise SystemExit(main())
