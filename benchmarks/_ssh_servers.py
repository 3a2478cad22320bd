"""Child process for the SSH benchmarks: N demo SSH hosts (asyncssh servers running
real commands) on 127.0.0.1, each with its own host key. Prints one JSON line
(ports, password, public keys), then serves until stdin closes.

    python benchmarks/_ssh_servers.py N ROOT
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path


async def main(count: int, root: Path) -> None:
    prefix = root.name
    from opstui.backend.demo_ssh import DemoSshHost

    hosts = [DemoSshHost(f"bench-{prefix}-{i:03d}", root / f"h{i:03d}") for i in range(count)]
    await asyncio.gather(*(h.start() for h in hosts))
    line = [
        {"name": h.name, "port": h.port, "user": h.username, "password": h.password,
         "key": h.host_key().export_public_key().decode().strip()}
        for h in hosts
    ]  # fmt: skip
    print(json.dumps(line), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
    await asyncio.gather(*(h.stop() for h in hosts))


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), Path(sys.argv[2])))
