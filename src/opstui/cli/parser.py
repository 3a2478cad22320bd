"""The argument parser: the global flags, then each command group's subcommands."""

from __future__ import annotations

import argparse

from opstui.cli import cicd, demo, deploy, runner, runs, serve, session, ssh

# Resources whose headless actions grow beyond `list`: name -> adds its extra actions.
_EXTRA_ACTIONS = {
    "hosts": ssh.add_hosts_check,
    "deployments": deploy.add_actions,
    "cicd": cicd.add_actions,
}
# Resources with a command group of their own (not the generic `list` parser).
_OWN_GROUPS = {"runs", "builds"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="opstui",
        description="A live, RLS-scoped terminal dashboard for SREs.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details to stderr")
    parser.add_argument(
        "--profile", metavar="NAME", help="config profile (default: the embedded demo)"
    )
    parser.add_argument("--team", metavar="NAME", help="team to open (default: your default team)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve.add_commands(commands)
    demo.add_commands(commands)
    session.add_commands(commands)
    _add_resources(commands)
    session.add_watch(commands)
    ssh.add_commands(commands)
    runs.add_commands(commands)
    cicd.add_commands(commands)
    runner.add_commands(commands)
    return parser


def _add_resources(commands) -> None:
    from opstui.resources import RESOURCES

    for spec in RESOURCES.values():
        if spec.name in _OWN_GROUPS:
            continue
        resource = commands.add_parser(
            spec.name, aliases=list(spec.aliases), help=f"{spec.title}: list"
        )
        resource.set_defaults(resource=spec.name)
        actions = resource.add_subparsers(dest="resource_action", metavar="ACTION", required=True)
        listing = actions.add_parser("list", help=f"print one line per {spec.name} row")
        listing.add_argument("--team", dest="list_team", metavar="NAME")
        listing.add_argument("--json", action="store_true", help="print one JSON array")
        listing.set_defaults(handler=session.list_handler)
        extra = _EXTRA_ACTIONS.get(spec.name)
        if extra is not None:
            extra(actions)
