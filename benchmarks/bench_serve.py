"""Time from `opstui serve` start to its ready line, cold (new data dir) and warm.

Cold = initdb + bootstrap + migrations + demo data; warm = an existing data dir.
Each run is a fresh process, timed from spawn to the JSON ready line.
Usage: python benchmarks/bench_serve.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine, median  # noqa: E402

TARGETS = {"cold": 5.0, "warm": 2.0}


def time_to_ready(data_dir: Path) -> float:
    env = {**os.environ, "OPSTUI_DATA_DIR": str(data_dir)}
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "opstui", "serve", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stdout.readline()
        elapsed = time.perf_counter() - started
        if not line:
            raise SystemExit(f"serve failed: {proc.stderr.read()}")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    results: dict[str, list[float]] = {"cold": [], "warm": []}
    for _ in range(args.runs):
        root = Path(tempfile.mkdtemp(prefix="opstui-bench-serve-"))
        try:
            results["cold"].append(time_to_ready(root))
            results["warm"].append(time_to_ready(root))
        finally:
            shutil.rmtree(root, ignore_errors=True)
    print(machine())
    for kind, samples in results.items():
        med = median(samples)
        print(
            f"serve {kind} start to ready: median {med:.2f} s "
            f"(min {min(samples):.2f}, max {max(samples):.2f}, n={len(samples)}); "
            f"target {TARGETS[kind]:.1f} s, ratio {med / TARGETS[kind]:.2f}"
        )


if __name__ == "__main__":
    main()
