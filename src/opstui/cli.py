"""The `opstui` command line.

Every failure a user can cause (a busy port, a locked data dir, a bad flag)
ends in one line on stderr naming the problem and what to do, and exit code
1 (2 for usage errors, as argparse does). Never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opstui.backend.background import BackgroundBackend

EXIT_FAILURE = 1


class CliError(Exception):
    """A user-facing, one-line error."""


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

    serve = commands.add_parser(
        "serve", help="run the embedded Supabase-compatible backend in the foreground"
    )
    serve.add_argument(
        "--port", type=_port, default=0, help="port on 127.0.0.1 (default: any free)"
    )
    serve.add_argument(
        "--ephemeral", action="store_true", help="use a temporary database, removed at exit"
    )
    serve.add_argument(
        "--json", action="store_true", help="print one JSON line with URL, keys and demo users"
    )

    migrations = commands.add_parser("migrations", help="work with the SQL migrations")
    migration_commands = migrations.add_subparsers(dest="migrations_command", metavar="ACTION")
    export = migration_commands.add_parser(
        "export", help="write the migrations in Supabase CLI layout (DIR/supabase/migrations)"
    )
    export.add_argument("directory", type=Path, metavar="DIR")
    migration_commands.add_parser("list", help="list the migrations shipped with opstui")

    login = commands.add_parser("login", help="sign in without the TUI and keep the session")
    login.add_argument("--profile", dest="login_profile", metavar="NAME")
    login.add_argument("--email", metavar="E")
    logout = commands.add_parser("logout", help="end the stored session")
    logout.add_argument("--profile", dest="logout_profile", metavar="NAME")

    from opstui.resources import RESOURCES

    for spec in RESOURCES.values():
        resource = commands.add_parser(
            spec.name, aliases=list(spec.aliases), help=f"{spec.title}: list"
        )
        resource.set_defaults(resource=spec.name)
        actions = resource.add_subparsers(dest="resource_action", metavar="ACTION", required=True)
        listing = actions.add_parser("list", help=f"print one line per {spec.name} row")
        listing.add_argument("--team", dest="list_team", metavar="NAME")
        listing.add_argument("--json", action="store_true", help="one JSON object per line")
        if spec.name == "hosts":
            from opstui.ssh_cli import add_hosts_check

            add_hosts_check(actions)
    watch = commands.add_parser("watch", help="print live changes until interrupted")
    watch.add_argument("watch_resource", metavar="RESOURCE")
    watch.add_argument("--team", dest="watch_team", metavar="NAME")
    watch.add_argument("--json", action="store_true", help="NDJSON (the only format)")
    from opstui.ssh_cli import add_commands

    add_commands(commands)
    return parser


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is out of range; use 1-65535 (0 = any)")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        if args.command == "serve":
            return asyncio.run(_serve(args.port, ephemeral=args.ephemeral, as_json=args.json))
        if args.command == "migrations":
            return _migrations(args, parser)
        if args.command is None:
            return _run_tui(args.profile, args.team)
        if args.command in ("exec", "cp") or getattr(args, "resource_action", None) == "check":
            from opstui import ssh_cli

            return asyncio.run(ssh_cli.run(args))
        from opstui import headless

        return asyncio.run(headless.run(args))
    except CliError as exc:
        print(f"opstui: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, no traceback
        from opstui.config import ConfigError
        from opstui.session import SignInError
        from opstui.store import StoreError

        if isinstance(exc, ConfigError | SignInError | StoreError):
            print(f"opstui: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        raise


def _run_tui(profile: str | None, team: str | None) -> int:
    # No project configured: boot the embedded backend first, on its own thread, so
    # Postgres starts while the config code (pydantic), the UI and supabase-py are imported.
    background = _start_backend() if _plainly_embedded(profile) else None
    from opstui.config import ConfigError, select_profile

    try:
        chosen = select_profile(profile)
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    if chosen is None and background is None:
        background = _start_backend()
    from opstui.connect import Connector, EmbeddedConnector
    from opstui.session import Target

    if chosen is None:
        connector: Connector = EmbeddedConnector(
            target=Target("embedded", "", "", is_embedded=True), background=background
        )
    else:
        connector = Connector(target=Target.from_profile(chosen), email_hint=chosen.email)
    from opstui.config import load_config
    from opstui.ui.app import OpsApp

    interval = load_config().health_interval_seconds
    OpsApp(connector, team=team, health_interval=interval).run()
    return 0


def _plainly_embedded(profile: str | None) -> bool:
    """True when nothing could name a project: no --profile, no SUPABASE_* and no config file.

    Decided without importing the config module, which costs 0.26 s of start-up.
    """
    import os

    from opstui import locations

    if profile not in (None, "embedded"):
        return False
    if os.environ.get("SUPABASE_URL") or os.environ.get("SUPABASE_ANON_KEY"):
        return False
    return not locations.config_file().exists()


def _start_backend() -> BackgroundBackend:
    from opstui.backend.background import BackgroundBackend

    return BackgroundBackend(defer_ssh_demo=True)


def _migrations(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from opstui.backend import schema

    if args.migrations_command == "export":
        try:
            written = schema.export_migrations(args.directory)
        except (OSError, ValueError) as exc:
            raise CliError(f"cannot export migrations: {exc}") from None
        for path in written:
            print(path)
        return 0
    if args.migrations_command == "list":
        for path in schema.migration_files():
            print(path.name)
        return 0
    parser.parse_args(["migrations", "--help"])
    return 2


async def _serve(port: int, *, ephemeral: bool, as_json: bool) -> int:
    from opstui.backend.embedded import EmbeddedBackend
    from opstui.backend.postgres import PostgresError

    backend = EmbeddedBackend(port=port, ephemeral=ephemeral)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        try:
            info = await backend.start()
        except PostgresError as exc:
            raise CliError(str(exc)) from None
        except OSError as exc:
            if port and exc.errno in (98, 48):  # EADDRINUSE on Linux, macOS
                raise CliError(
                    f"port {port} on 127.0.0.1 is already in use; pick another with --port"
                ) from None
            raise CliError(f"cannot start the embedded backend: {exc}") from None
        for notice in info.notices:
            print(f"opstui: {notice}", file=sys.stderr)
        if as_json:
            print(json.dumps(info.public_json()), flush=True)
        else:
            _print_human(info, ephemeral=ephemeral)
        await stop.wait()
    finally:
        await backend.stop()
    return 0


def _print_human(info, *, ephemeral: bool) -> None:
    kind = "ephemeral" if ephemeral else "persistent"
    print(f"opstui embedded backend ({kind}) ready at {info.url}")
    print(f"  SUPABASE_URL={info.url}")
    print(f"  SUPABASE_ANON_KEY={info.anon_key}")
    print("  service_role key and database URL: run with --json")
    if info.users:
        print("  demo accounts:")
        for user in info.users:
            print(f"    {user['email']:<26} {user['role']}")
        print("  (their passwords are in the README, and in the --json output)")
    print("Press Ctrl+C to stop.", flush=True)
