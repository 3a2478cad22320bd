"""Health checks of 200 reachable loopback SSH hosts: target < 5 s for all of them.

    /work/venv/bin/python benchmarks/bench_ssh_health.py [--hosts 200] [--runs 5] [--servers 2]

The hosts are 200 asyncssh servers (opstui's demo SSH hosts, each with its own
ed25519 host key and password) spread over `--servers` child processes, so the
client's event loop is not also serving. Each run uses a FRESH connection pool:
every check is a full TCP connect + key exchange + password auth + the real
probe (`cat /proc/uptime /proc/loadavg; grep ... /proc/meminfo; df -P /`),
which the server runs as a real subprocess. Results are not written to a
backend (that is one rpc per host; see bench_rest.py for REST costs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import machine, median  # noqa: E402

TARGET_S = 5.0


async def start_servers(count: int, processes: int, root: Path):
    procs, hosts = [], []
    per = [count // processes + (1 if i < count % processes else 0) for i in range(processes)]
    for i, n in enumerate(per):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(Path(__file__).with_name("_ssh_servers.py")), str(n), str(root / f"p{i}"),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        procs.append(proc)
    for proc in procs:
        hosts.extend(json.loads(await proc.stdout.readline()))
    return procs, hosts


async def stop_servers(procs) -> None:
    for proc in procs:
        proc.stdin.close()
    for proc in procs:
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--servers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="opstui-bench-ssh-"))
    os.environ["HOME"] = str(tmp / "home")  # no real ~/.ssh, no agent
    os.environ.pop("SSH_AUTH_SOCK", None)
    import asyncssh

    from opstui.ssh import ConnectionPool, KnownHosts, SshSettings, SshTarget
    from opstui.ssh.health import HealthChecker

    t0 = time.perf_counter()
    procs, hosts = await start_servers(args.hosts, args.servers, tmp / "servers")
    print(f"{len(hosts)} servers up in {time.perf_counter() - t0:.1f}s ({args.servers} processes)")
    known = KnownHosts(user_path=tmp / "none", own_path=tmp / "known_hosts")
    for h in hosts:
        known.remember("127.0.0.1", h["port"], asyncssh.import_public_key(h["key"]))
    passwords = {h["name"]: h["password"] for h in hosts}

    async def password_source(host_id: str) -> str | None:
        return passwords[host_id]

    targets = [
        SshTarget("127.0.0.1", h["port"], h["user"], name=h["name"], host_id=h["name"])
        for h in hosts
    ]
    settings = SshSettings(
        known_hosts=known, password_source=password_source, agent_path=None, client_keys=None
    )
    timings = []
    try:
        for run in range(args.runs):
            async with ConnectionPool(settings) as pool:
                checker = HealthChecker(pool, concurrency=args.concurrency)
                start = time.perf_counter()
                results = await checker.check_many(targets)
                elapsed = time.perf_counter() - start
            bad = [r for r in results if r.status != "online"]
            if bad:
                raise SystemExit(f"run {run}: {len(bad)} hosts not online, e.g. {bad[0].error}")
            timings.append(elapsed)
            print(f"run {run + 1}: {len(results)} hosts online in {elapsed:.2f}s")
    finally:
        await stop_servers(procs)
    med = median(timings)
    print(
        f"health check of {len(targets)} hosts (concurrency {args.concurrency}): median {med:.2f}s "
        f"over {len(timings)} runs (min {min(timings):.2f}s, max {max(timings):.2f}s); "
        f"target < {TARGET_S:.0f}s -> {med / TARGET_S:.2f}x of target"
    )
    print(machine())


if __name__ == "__main__":
    asyncio.run(main())
