"""`opstui serve` (the embedded backend in the foreground) and `opstui migrations`."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

from opstui.cli.argtypes import port_number
from opstui.errors import CliError


def add_commands(commands: Any) -> None:
    serve = commands.add_parser(
        "serve", help="run the embedded Supabase-compatible backend in the foreground"
    )
    serve.add_argument(
        "--port",
        type=port_number,
        default=0,
        help="port on 127.0.0.1 (default: the one this data directory used last, else any free)",
    )
    serve.add_argument(
        "--ephemeral", action="store_true", help="use a temporary database, removed at exit"
    )
    serve.add_argument(
        "--json", action="store_true", help="print one JSON line with URL, keys and demo users"
    )
    serve.set_defaults(handler=serve_handler)

    migrations = commands.add_parser("migrations", help="work with the SQL migrations")
    migrations.set_defaults(handler=migrations_handler)
    migration_commands = migrations.add_subparsers(dest="migrations_command", metavar="ACTION")
    export = migration_commands.add_parser(
        "export", help="write the migrations in Supabase CLI layout (DIR/supabase/migrations)"
    )
    export.add_argument("directory", type=Path, metavar="DIR")
    migration_commands.add_parser("list", help="list the migrations shipped with opstui")


def serve_handler(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    return asyncio.run(_serve(args.port, ephemeral=args.ephemeral, as_json=args.json))


def migrations_handler(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
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
    from opstui.backend.embedded import EmbeddedBackend, PortInUse
    from opstui.backend.postgres import PostgresError

    # No runner here: run `opstui runner` against it (the queued demo runs wait for one).
    backend = EmbeddedBackend(port=port, ephemeral=ephemeral, keep_port=True, demo_live_runs=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        try:
            info = await backend.start()
        except PostgresError as exc:
            raise CliError(str(exc)) from None
        except PortInUse as exc:
            raise CliError(exc.strerror or str(exc)) from None
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
        if ephemeral:  # made for this run only: nowhere else to look them up
            print("  (their passwords, made for this run: --json)")
        else:
            print("  (their passwords, made for this install: `opstui demo accounts`, or --json)")
    print("Press Ctrl+C to stop.", flush=True)
