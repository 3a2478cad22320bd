"""`opstui deploy run NAME`: launch a deployment run (what a CI job calls)."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from opstui.cli.argtypes import positive_seconds


def add_actions(actions: Any) -> None:
    """Add `run` to the `deployments` (alias `deploy`) resource actions."""
    run = actions.add_parser("run", help="launch a run of a deployment; --follow streams its log")
    run.add_argument("deployment_name", metavar="NAME")
    run.add_argument("--team", dest="run_team", metavar="NAME")
    run.add_argument("--profile", dest="run_profile", metavar="NAME")
    run.add_argument(
        "--follow", action="store_true", help="stream the log; exit 0 only if the run succeeded"
    )
    run.add_argument("--json", action="store_true", help="NDJSON events")
    run.add_argument(
        "--timeout", type=positive_seconds, metavar="SECONDS",
        help="with --follow: stop waiting after SECONDS (exit 1; the run goes on)",
    )  # fmt: skip
    run.set_defaults(handler=handler)


def handler(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from opstui.cli import runs_commands

    return asyncio.run(runs_commands.deploy_run(args))
