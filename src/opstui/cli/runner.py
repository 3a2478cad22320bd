"""`opstui runner`: the long-lived process that executes deployment runs."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from opstui.cli.argtypes import positive_int


def add_commands(commands: Any) -> None:
    runner = commands.add_parser(
        "runner", help="execute queued deployment runs and fire schedules, until stopped"
    )
    runner.add_argument("--profile", dest="runner_profile", metavar="NAME")
    runner.add_argument("--name", dest="runner_name", metavar="NAME", help="default: host name")
    runner.add_argument(
        "--concurrency", type=positive_int, default=4, metavar="N", help="runs at once"
    )
    runner.add_argument(
        "--accept-new", action="store_true", help="trust and remember unknown host keys"
    )
    runner.add_argument(
        "--lease", type=positive_int, default=30, metavar="SECONDS",
        help="run lease; a runner silent this long loses its runs (5-3600, default 30)",
    )  # fmt: skip
    runner.add_argument(
        "--poll", type=float, default=5.0, metavar="SECONDS",
        help="fallback poll when Realtime is quiet (default 5)",
    )  # fmt: skip
    runner.add_argument(
        "--drain", type=float, default=10.0, metavar="SECONDS",
        help="on SIGTERM, let held runs finish this long, then cancel them (default 10)",
    )  # fmt: skip
    runner.set_defaults(handler=handler)


def handler(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from opstui.cli import runs_commands

    return asyncio.run(runs_commands.runner(args))
