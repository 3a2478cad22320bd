"""From `opstui` to the first frame showing demo data, as a person would start it.

Spawns the real `opstui` on a pseudo-terminal (120x40) with a persistent data
dir, and times spawn -> the first output that contains demo data (a deployment's
name in the overview). The first run is cold (initdb, migrations, seed);
the rest are warm (the usual start: data dir and bytecode cached). Usage:
python benchmarks/bench_startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine, median  # noqa: E402

# A demo deployment's name (see backend/demo.py), as the overview's running and failed
# panels show it: only rows that arrived can draw it. (A status word would not do: the
# overview draws the status labels, with zero counts, before any data arrives.)
MARKER = re.compile(rb"(?:staging|production|qa)-[a-z0-9-]+-\d{3}")
TARGET_WARM = 2.5


def time_to_data(data_dir: Path, timeout: float = 60.0) -> float:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {**os.environ, "OPSTUI_DATA_DIR": str(data_dir), "TERM": "xterm-256color"}
    env["OPSTUI_CONFIG_DIR"] = str(data_dir / "config")
    # Bytecode is cached as on any normal install (`pip install .` compiles it; an editable
    # install writes it on first import). Some sandboxes set PYTHONDONTWRITEBYTECODE, which
    # would recompile opstui's own source on every start of an editable install.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "opstui"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    seen = b""
    elapsed = None
    try:
        while time.perf_counter() - started < timeout:
            ready, _, _ = select.select([master], [], [], 0.05)
            if master in ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                seen = (seen + chunk)[-8192:]
                if MARKER.search(seen):
                    elapsed = time.perf_counter() - started
                    break
    finally:
        try:
            os.write(master, b"\x11")  # ctrl+q
            deadline = time.perf_counter() + 15
            while proc.poll() is None and time.perf_counter() < deadline:
                select.select([master], [], [], 0.05) and os.read(master, 65536)
        except OSError:
            pass
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)
        os.close(master)
    if elapsed is None:
        raise SystemExit("opstui did not show demo data in time")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)  # a noisy machine: medians need samples
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="opstui-bench-start-"))
    try:
        cold = time_to_data(root)
        warm = [time_to_data(root) for _ in range(args.runs)]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(machine())
    print(f"opstui to first frame with demo data, cold (new data dir): {cold:.2f} s")
    med = median(warm)
    print(
        f"opstui to first frame with demo data, warm: median {med:.2f} s "
        f"(min {min(warm):.2f}, max {max(warm):.2f}, n={len(warm)}); "
        f"target {TARGET_WARM} s, ratio {med / TARGET_WARM:.2f}; all: {' '.join(f'{w:.2f}' for w in warm)}"
    )


if __name__ == "__main__":
    main()
