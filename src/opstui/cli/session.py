"""`opstui login`, `logout`, `<resource> list` and `watch`: the headless twin of the TUI."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any


def add_commands(commands: Any) -> None:
    login = commands.add_parser("login", help="sign in without the TUI and keep the session")
    login.add_argument("--profile", dest="login_profile", metavar="NAME")
    login.add_argument("--email", metavar="E")
    login.set_defaults(handler=headless_handler)
    logout = commands.add_parser("logout", help="end the stored session")
    logout.add_argument("--profile", dest="logout_profile", metavar="NAME")
    logout.set_defaults(handler=headless_handler)


def add_watch(commands: Any) -> None:
    watch = commands.add_parser("watch", help="print live changes until interrupted")
    watch.add_argument("watch_resource", metavar="RESOURCE")
    watch.add_argument("--team", dest="watch_team", metavar="NAME")
    watch.add_argument("--json", action="store_true", help="NDJSON (the only format)")
    watch.set_defaults(handler=headless_handler)


def headless_handler(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from opstui import headless

    return asyncio.run(headless.run(args))


list_handler = headless_handler
