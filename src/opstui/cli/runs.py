"""`opstui runs list | logs RUN [--follow] | cancel RUN`."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any


def add_commands(commands: Any) -> None:
    runs = commands.add_parser("runs", aliases=["run"], help="deployment runs: list, logs, cancel")
    actions = runs.add_subparsers(dest="runs_action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="the team's runs, newest first")
    listing.add_argument("--team", dest="runs_team", metavar="NAME")
    listing.add_argument("--profile", dest="runs_profile", metavar="NAME")
    listing.add_argument("--json", action="store_true", help="print one JSON array")
    listing.add_argument("--limit", type=int, default=50, metavar="N")
    listing.set_defaults(handler=handler)
    logs = actions.add_parser("logs", help="print a run's log; --follow streams it live")
    logs.add_argument("run", metavar="RUN", help="run id, or DEPLOYMENT#NUMBER")
    logs.add_argument("--team", dest="runs_team", metavar="NAME")
    logs.add_argument("--profile", dest="runs_profile", metavar="NAME")
    logs.add_argument("--follow", action="store_true", help="stream until the run finishes")
    logs.add_argument("--json", action="store_true", help="NDJSON chunks")
    logs.set_defaults(handler=handler)
    cancel = actions.add_parser("cancel", help="cancel a queued or running run")
    cancel.add_argument("run", metavar="RUN", help="run id, or DEPLOYMENT#NUMBER")
    cancel.add_argument("--team", dest="runs_team", metavar="NAME")
    cancel.add_argument("--profile", dest="runs_profile", metavar="NAME")
    cancel.set_defaults(handler=handler)


def handler(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from opstui.cli import runs_commands

    return asyncio.run(runs_commands.runs(args))
