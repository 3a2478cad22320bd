"""CI/CD builds against the FAKE Jenkins: trigger -> first log line, and 50 builds at once.

    .venv/bin/python benchmarks/bench_cicd.py [--triggers 30] [--concurrent 50]

The embedded backend (Postgres + gateway), a BuildWorker (the runner's build loop, with its
production polling: first poll 0.2 s, backing off to 1 s for Jenkins), a FakeJenkins
(queue delay 0.1 s, one log line every 50 ms) and a second supabase-py client (a teammate
watching, as the TUI's log pane does, through Realtime) share this process.

1. trigger_cicd_job -> the build's first log chunk on the other client's callback, and its first
   line from Jenkins (target p50 < 1 s);
2. 50 builds triggered at once: time until all succeeded, log rows written, rows/s, and this
   process's event-loop lag p99 meanwhile (the runner keeps up; the UI would stay responsive).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._machine import machine, median, percentile  # noqa: E402


async def _client(info, email: str):
    from supabase import AsyncClientOptions, acreate_client

    client = await acreate_client(info.url, info.anon_key, options=AsyncClientOptions())
    password = next(u["password"] for u in info.users if u["email"] == email)
    await client.auth.sign_in_with_password({"email": email, "password": password})
    return client


async def _lag_probe(samples: list[float], stop: asyncio.Event, every: float = 0.01) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        start = loop.time()
        await asyncio.sleep(every)
        samples.append((loop.time() - start - every) * 1000)


async def main(args) -> None:
    from opstui.backend.embedded import EmbeddedBackend
    from opstui.backend.fake_cicd import FakeJenkins
    from opstui.cicd import api
    from opstui.runs.builds import BuildSettings, BuildWorker

    backend = EmbeddedBackend(ephemeral=True)
    await backend.start()
    fake = await FakeJenkins(queue_seconds=0.1, line_seconds=0.05).start()
    runner_client = await _client(backend.info, "dev@acme.test")
    watcher = await _client(backend.info, "admin@acme.test")
    team = (await runner_client.table("teams").select("id").eq("name", "Platform").execute()).data[
        0
    ]["id"]
    provider = (
        await runner_client.table("cicd_providers")
        .insert({"name": "bench-fake-jenkins", "type": "jenkins", "url": fake.url, "team_id": team,
                 "config": {"username": fake.user, "api_token": fake.token}})
        .execute()
    ).data[0]  # fmt: skip
    job = (
        await runner_client.table("cicd_jobs")
        .insert({"provider_id": provider["id"], "external_id": "build", "name": "bench-build", "team_id": team})
        .execute()
    ).data[0]  # fmt: skip

    first_chunk: dict[str, float] = {}
    first_line: dict[str, float] = {}
    rows_seen = [0]

    def on_log(payload: dict) -> None:
        record = payload.get("data", payload).get("record") or {}
        build_id, now = str(record.get("build_id")), time.monotonic()
        rows_seen[0] += 1
        first_chunk.setdefault(build_id, now)
        if "Checking out revision" in (record.get("text") or ""):
            first_line.setdefault(build_id, now)

    channel = watcher.channel("bench-build-logs")
    channel.on_postgres_changes("INSERT", schema="public", table="cicd_build_logs",
                                filter=f"team_id=eq.{team}", callback=on_log)  # fmt: skip
    await channel.subscribe()
    await asyncio.sleep(1.0)

    worker = BuildWorker(runner_client, name="bench-runner", concurrency=max(args.concurrent, 8),
                         settings=BuildSettings())  # fmt: skip
    worker_task = asyncio.create_task(worker.run())
    print(machine())
    print(
        f"when: {datetime.now(UTC):%Y-%m-%d %H:%M UTC}; FakeJenkins queue 0.1 s, a line every 50 ms",
        flush=True,
    )
    try:
        # 1. trigger -> first log line on another client
        to_chunk, to_line = [], []
        for _ in range(args.triggers):
            started = time.monotonic()
            build_id = await api.trigger(runner_client, job["id"], {})
            deadline = started + 15
            while build_id not in first_line and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            if build_id in first_line:
                to_chunk.append(first_chunk[build_id] - started)
                to_line.append(first_line[build_id] - started)
            while (await api.get_build(runner_client, build_id))["status"] not in api.TERMINAL:
                await asyncio.sleep(0.05)
        print(f"1. trigger -> first log chunk on another client: p50 {median(to_chunk):.3f} s, "
              f"p99 {percentile(to_chunk, 99):.3f} s; -> first Jenkins line: p50 {median(to_line):.3f} s, "
              f"p99 {percentile(to_line, 99):.3f} s ({len(to_line)} of {args.triggers} builds; target p50 < 1 s)",
              flush=True)  # fmt: skip

        # 2. many builds at once
        lags: list[float] = []
        stop = asyncio.Event()
        probe = asyncio.create_task(_lag_probe(lags, stop))
        requests_before, rows_before = len(fake.requests), rows_seen[0]
        started = time.monotonic()
        ids = await asyncio.gather(
            *(api.trigger(runner_client, job["id"], {}) for _ in range(args.concurrent))
        )
        pending = set(ids)
        statuses: dict[str, str] = {}
        while pending and time.monotonic() - started < 120:
            rows = await api.list_builds(runner_client, team, limit=args.concurrent + 10)
            for row in rows:
                if row["id"] in pending and row["status"] in api.TERMINAL:
                    pending.discard(row["id"])
                    statuses[row["id"]] = row["status"]
            await asyncio.sleep(0.2)
        elapsed = time.monotonic() - started
        stop.set()
        await probe
        ok = sum(1 for s in statuses.values() if s == "succeeded")
        if args.verbose:
            from opstui.runs.schedule import parse_time

            done = [
                r
                for r in await api.list_builds(runner_client, team, limit=args.concurrent)
                if r["id"] in ids
            ]
            spans = sorted(
                ((parse_time(r["started_at"]) - parse_time(r["requested_at"])).total_seconds(),
                 (parse_time(r["finished_at"]) - parse_time(r["requested_at"])).total_seconds())
                for r in done if r["started_at"] and r["finished_at"]
            )  # fmt: skip
            print(
                "   requested->started / ->finished (s):",
                [f"{a:.1f}/{b:.1f}" for a, b in spans[:: max(1, len(spans) // 10)]],
            )
        rows = rows_seen[0] - rows_before
        print(f"2. {args.concurrent} builds at once: all done in {elapsed:.2f} s ({ok} succeeded, "
              f"{len(pending)} unfinished); {rows} log rows delivered ({rows / elapsed:.1f} rows/s); "
              f"{len(fake.requests) - requests_before} requests to Jenkins; event-loop lag p50 "
              f"{median(lags):.1f} ms, p99 {percentile(lags, 99):.1f} ms", flush=True)  # fmt: skip
    finally:
        worker.stop()
        await asyncio.wait_for(worker_task, 60)
        await watcher.remove_channel(channel)
        for client in (watcher, runner_client):  # close their sockets before the backend goes
            with contextlib.suppress(Exception):
                await client.realtime.close()
        await fake.stop()
        await backend.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triggers", type=int, default=30)
    parser.add_argument("--concurrent", type=int, default=50)
    parser.add_argument("--verbose", action="store_true", help="per-build timings of step 2")
    asyncio.run(main(parser.parse_args()))
