"""A host streaming ~50 MB/s into `run_command`: does the consumer keep up, with
bounded memory, while the event loop stays responsive?

    /work/venv/bin/python benchmarks/bench_ssh_output.py [--mb 200] [--rate 50] [--runs 3]

One demo SSH host (asyncssh server in a child process) runs a real command that
writes `--mb` MB of 99-char lines paced at `--rate` MB/s. The consumer is what a
UI does: `run.batches()`, splitting lines into a scrollback capped at 10,000
lines. A ticker task measures event-loop lag every 10 ms (p50/p99/max): that is
how late a keystroke would be handled. Peak RSS growth shows memory stays
bounded (keep_bytes = 256 KiB per stream; queue of 256 chunks of <= 64 KiB).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import machine, median, percentile  # noqa: E402

SCROLLBACK = 10_000
WRITER = (
    'python3 -c "import sys,time\n'
    "mb,rate=float(sys.argv[1]),float(sys.argv[2]);line=b'x'*98+b'\\n';chunk=line*662\n"
    "total=int(mb*1e6);sent=0;t0=time.monotonic();out=sys.stdout.buffer\n"
    "while sent<total:\n"
    " out.write(chunk);sent+=len(chunk)\n"
    " ahead=sent/(rate*1e6)-(time.monotonic()-t0)\n"
    " if ahead>0: time.sleep(ahead)\n"
    'out.flush()" {mb} {rate}'
)


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def one_run(pool, target, mb: float, rate: float) -> dict:
    from opstui.ssh.exec import Output, run_command

    lags: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append((time.perf_counter() - t - 0.01) * 1000)

    tick = asyncio.create_task(ticker())
    scrollback: collections.deque[str] = collections.deque(maxlen=SCROLLBACK)
    received = 0
    rss_before, rss_peak = rss_mib(), 0.0
    start = time.perf_counter()
    run = run_command(pool, [target], WRITER.format(mb=mb, rate=rate))
    async for batch in run.batches():
        for event in batch:
            if isinstance(event, Output):
                received += len(event.text)
                scrollback.extend(event.text.splitlines())
        rss_peak = max(rss_peak, rss_mib())
    elapsed = time.perf_counter() - start
    stop.set()
    await tick
    result = run.results[target.name]
    assert result.status == "ok", result.error
    return {
        "mb": received / 1e6, "seconds": elapsed, "mb_s": received / 1e6 / elapsed,
        "lag_p50": percentile(lags, 50), "lag_p99": percentile(lags, 99), "lag_max": max(lags),
        "rss_growth": rss_peak - rss_before, "scrollback": len(scrollback),
    }  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=float, default=200)
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="opstui-bench-out-"))
    os.environ["HOME"] = str(tmp / "home")
    os.environ.pop("SSH_AUTH_SOCK", None)
    import asyncssh

    from opstui.ssh import ConnectionPool, KnownHosts, SshSettings, SshTarget

    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(Path(__file__).with_name("_ssh_servers.py")), "1", str(tmp / "srv"),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    host = json.loads(await proc.stdout.readline())[0]
    known = KnownHosts(user_path=tmp / "none", own_path=tmp / "known_hosts")
    known.remember("127.0.0.1", host["port"], asyncssh.import_public_key(host["key"]))

    async def password_source(_id: str) -> str:
        return host["password"]

    settings = SshSettings(
        known_hosts=known, password_source=password_source, agent_path=None, client_keys=None
    )
    target = SshTarget("127.0.0.1", host["port"], host["user"], name="loud", host_id="loud")
    runs = []
    try:
        async with ConnectionPool(settings) as pool:
            for i in range(args.runs):
                r = await one_run(pool, target, args.mb, args.rate)
                runs.append(r)
                print(
                    f"run {i + 1}: {r['mb']:.0f} MB in {r['seconds']:.2f}s = {r['mb_s']:.1f} MB/s; loop lag "
                    f"p50 {r['lag_p50']:.2f} ms, p99 {r['lag_p99']:.2f} ms, max {r['lag_max']:.1f} ms; "
                    f"RSS +{r['rss_growth']:.1f} MiB; scrollback {r['scrollback']} lines"
                )
    finally:
        proc.stdin.close()
        await proc.wait()
    print(
        f"median of {len(runs)}: {median([r['mb_s'] for r in runs]):.1f} MB/s consumed (offered {args.rate:g} MB/s), "
        f"loop lag p99 {median([r['lag_p99'] for r in runs]):.2f} ms, "
        f"RSS growth {median([r['rss_growth'] for r in runs]):.1f} MiB; "
        f"keeps up: {median([r['mb_s'] for r in runs]) / args.rate:.2f}x of the offered rate"
    )
    print(
        f"peak RSS of the process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )
    print(machine())


if __name__ == "__main__":
    asyncio.run(main())
