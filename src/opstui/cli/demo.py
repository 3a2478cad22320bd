"""`opstui demo accounts`: the demo's accounts and this install's passwords for them."""

from __future__ import annotations

import argparse
import json
from typing import Any

from opstui.errors import CliError


def add_commands(commands: Any) -> None:
    demo = commands.add_parser("demo", help="the embedded demo's accounts")
    demo.set_defaults(handler=_usage)
    actions = demo.add_subparsers(dest="demo_command", metavar="ACTION")
    accounts = actions.add_parser(
        "accounts", help="print the demo accounts with their passwords (made per install)"
    )
    accounts.add_argument("--json", action="store_true", help="print one JSON array")
    accounts.set_defaults(handler=accounts_handler)


def _usage(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    parser.parse_args(["demo", "--help"])
    return 2


def accounts_handler(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from opstui import locations
    from opstui.backend.demo import accounts_file, read_accounts

    root = locations.embedded_dir()
    accounts = read_accounts(root)
    if accounts is None:
        raise CliError(
            f"no demo accounts in {accounts_file(root)} yet: start the demo once "
            "(`opstui` or `opstui serve`) and they are made"
        )
    if args.json:
        print(json.dumps(accounts, indent=2))
        return 0
    width = max(len(a.get("email", "")) for a in accounts)
    for a in accounts:
        teams = ", ".join(f"{t['team']} ({t['role']})" for t in a.get("teams", []))
        print(f"{a['email']:<{width}}  {a['password']}  {a.get('role', ''):<11} "
              f"{a.get('tenant', '')}: {teams}")  # fmt: skip
    print(f"(made for this install, kept in {accounts_file(root)}, readable by you only)")
    return 0
