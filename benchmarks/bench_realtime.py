"""Commit → supabase-py callback latency through the embedded Realtime gateway.

    /work/venv/bin/python benchmarks/bench_realtime.py [--changes 500] [--rate 100]

The backend (Postgres + gateway) runs in this process; the subscribers and the
writer run in a child process, as the TUI would, so client-side parsing does
not steal the gateway's CPU. Each change is an UPDATE of one host of a team,
committed by a superuser connection at a steady rate; latency is measured in
the child from just before the UPDATE is sent to the callback (both on one
monotonic clock).

Scenarios:
  1. one subscriber (a team member, filter team_id=eq.<team>);
  2. 50 subscribers on the same filter: 25 members of the team, 25 users of
     other teams/tenants (RLS must drop the change for them) — 7 distinct users,
     so 7 RLS checks per change;
  3. as 2, but every subscriber has distinct claims (50 RLS checks per change):
     the worst case for the per-user grouping.
Targets: p50 < 20 ms and p99 < 100 ms for 1; p99 < 250 ms for 2 and 3.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

# Changes per second. One 2-core box hosts Postgres, the gateway AND all 50
# supabase-py clients (~0.8 ms of client CPU per delivered frame), so fan-out
# scenarios run slower; the distinct-claims case costs ~0.9 ms of gateway CPU per
# RLS check (50 per change).
RATES = {"single": 100.0, "fanout": 20.0, "fanout-distinct": 5.0}
TARGETS = {"single": (20.0, 100.0), "fanout": (None, 250.0), "fanout-distinct": (None, 250.0)}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


# -- child: subscribers + writer -----------------------------------------------------------


async def worker(cfg: dict) -> dict:
    import psycopg
    from realtime import AsyncRealtimeClient

    url, anon = cfg["url"], cfg["anon_key"]
    host_id, team = cfg["host_id"], cfg["team"]
    received: dict[int, dict[int, float]] = {}  # change n -> subscriber -> time
    first_seen: dict[int, asyncio.Event] = {}

    def callback_for(idx: int):
        def on_change(payload) -> None:
            now = time.monotonic()
            n = int(payload["data"]["record"]["port"]) - 1000
            received.setdefault(n, {})[idx] = now
            if n in first_seen:
                first_seen[n].set()

        return on_change

    clients = []
    for idx, token in enumerate(cfg["tokens"]):
        rt = AsyncRealtimeClient(f"{url}/realtime/v1", anon, max_retries=3)
        await rt.set_auth(token)
        await rt.connect()
        ch = rt.channel(f"bench-{idx}").on_postgres_changes(
            "UPDATE", callback_for(idx), table="hosts", schema="public", filter=f"team_id=eq.{team}"
        )
        states: list[str] = []
        await ch.subscribe(lambda s, e, states=states: states.append(s.value))
        assert states == ["SUBSCRIBED"], states
        clients.append(rt)

    permitted = set(cfg["permitted"])
    sent: dict[int, float] = {}
    async with await psycopg.AsyncConnection.connect(cfg["db_url"], autocommit=True) as conn:
        interval = 1.0 / cfg["rate"]
        start = time.monotonic()
        for n in range(cfg["changes"]):
            target = start + n * interval
            delay = target - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            first_seen[n] = asyncio.Event()
            sent[n] = time.monotonic()
            await conn.execute(
                "update public.hosts set port = %s where id = %s", (1000 + n, host_id)
            )
        # Wait until every permitted subscriber has the last change (bounded).
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            last = received.get(cfg["changes"] - 1, {})
            if permitted <= set(last):
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # let stragglers (wrongly delivered ones) show up
    for rt in clients:
        await rt.close()

    latencies = [
        (t - sent[n]) * 1000
        for n, subs in received.items()
        for idx, t in subs.items()
        if idx in permitted
    ]
    leaked = sum(1 for subs in received.values() for idx in subs if idx not in permitted)
    missing = cfg["changes"] * len(permitted) - len(latencies)
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "changes": cfg["changes"],
        "rate": cfg["rate"],
        "latencies_ms": latencies,
        "leaked": leaked,
        "missing": missing,
        "client_cpu_s": cpu.ru_utime + cpu.ru_stime,
    }


# -- parent: backend + scenarios -----------------------------------------------------------


async def main(args: argparse.Namespace) -> int:
    import psycopg

    from opstui.backend.embedded import EmbeddedBackend

    t0 = time.monotonic()
    backend = EmbeddedBackend(ephemeral=True)
    info = await backend.start()
    signer = backend._ctx.signer
    try:
        by_email = {u["email"]: u for u in info.users}
        team = by_email["admin@acme.test"]["team_ids"][0]  # Platform
        members = [u for u in info.users if team in u["team_ids"]]
        others = [u for u in info.users if team not in u["team_ids"]]
        with psycopg.connect(info.db_url, autocommit=True) as conn:
            ids = dict(conn.execute("select email, id::text from auth.users").fetchall())
            host_id = conn.execute(
                "insert into public.hosts (id, name, type, ip, team_id) values"
                " ('bench-host', 'bench', 'linux', '10.1.1.1', %s) returning id",
                (team,),
            ).fetchone()[0]

        def token(u: dict, n: int, distinct: bool) -> str:
            meta = {"bench": n} if distinct else {}
            tok, _ = signer.access_token(
                user_id=ids[u["email"]],
                email=u["email"],
                session_id=f"bench-{n}",
                app_metadata={"provider": "email"},
                user_metadata=meta,
            )
            return tok

        scenarios = {
            "single": ([token(members[0], 0, False)], [0]),
        }
        for name, distinct in (("fanout", False), ("fanout-distinct", True)):
            toks = [token(members[i % len(members)], i, distinct) for i in range(25)]
            toks += [token(others[i % len(others)], 25 + i, distinct) for i in range(25)]
            scenarios[name] = (toks, list(range(25)))

        results = {}
        for name, (tokens, permitted) in scenarios.items():
            if args.only and name not in args.only:
                continue
            before = resource.getrusage(resource.RUSAGE_SELF)
            cfg = {
                "url": info.url,
                "anon_key": info.anon_key,
                "db_url": info.db_url,
                "host_id": host_id,
                "team": team,
                "tokens": tokens,
                "permitted": permitted,
                "changes": args.changes if name != "fanout-distinct" else args.changes // 4,
                "rate": RATES[name] if args.rate is None else args.rate,
            }
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                "--worker",
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            out, _ = await asyncio.wait_for(proc.communicate(json.dumps(cfg).encode()), 90)
            results[name] = json.loads(out.decode().strip().splitlines()[-1])
            after = resource.getrusage(resource.RUSAGE_SELF)
            results[name]["gateway_cpu_s"] = (after.ru_utime + after.ru_stime) - (
                before.ru_utime + before.ru_stime
            )
    finally:
        await backend.stop()

    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print("UPDATEs at a steady rate; latency commit → callback in ms (permitted subscribers)")
    ok = True
    for name, res in results.items():
        lat = res["latencies_ms"]
        p50, p99 = statistics.median(lat), pct(lat, 99)
        t50, t99 = TARGETS[name]
        ratio = f"p99/target {p99 / t99:.2f}" + (f", p50/target {p50 / t50:.2f}" if t50 else "")
        print(
            f"  {name:16s} {res['changes']} changes @ {res['rate']:g}/s, n={len(lat):6d} p50={p50:6.2f} p95={pct(lat, 95):6.2f} p99={p99:6.2f}"
            f" max={max(lat):7.2f}  {ratio}  missing={res['missing']} leaked={res['leaked']}"
            f"  cpu: gateway {res['gateway_cpu_s']:.1f}s, clients {res['client_cpu_s']:.1f}s"
        )
        ok &= p99 < t99 and (t50 is None or p50 < t50) and not res["missing"] and not res["leaked"]
    print(f"total runtime {time.monotonic() - t0:.1f}s; {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    if "--worker" in sys.argv:
        result = asyncio.run(worker(json.loads(sys.stdin.read())))
        print(json.dumps(result))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=500)
    parser.add_argument("--only", nargs="*", help="scenario names to run")
    parser.add_argument("--rate", type=float, default=None, help="changes/s (default per scenario)")
    sys.exit(asyncio.run(main(parser.parse_args())))
