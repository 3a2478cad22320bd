"""The headless twin of the TUI: login, list and watch, on the same store and session."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import signal
import sys
from typing import Any

from opstui.config import select_profile
from opstui.connect import Connector, EmbeddedConnector, connector_for
from opstui.errors import CliError
from opstui.resources import RESOURCES, ResourceSpec, resolve
from opstui.session import SignInError, Target, sign_out
from opstui.store import RowChanged, Store, StoreError
from opstui.views import format_cell


class HeadlessError(CliError):
    """One line for stderr."""


async def run(args: argparse.Namespace) -> int:
    try:
        if args.command == "login":
            return await login(args.login_profile or args.profile, args.email)
        if args.command == "logout":
            return await logout(args.logout_profile or args.profile)
        if args.command == "watch":
            spec = _spec(args.watch_resource)
            return await watch(spec, args.profile, args.watch_team or args.team)
        spec = RESOURCES[args.resource]
        return await list_rows(spec, args.profile, args.list_team or args.team, as_json=args.json)
    except (HeadlessError, SignInError, StoreError) as exc:
        raise CliError(str(exc)) from None


def _spec(name: str) -> ResourceSpec:
    spec = resolve(name)
    if spec is None:
        names = ", ".join(RESOURCES)
        raise HeadlessError(f"unknown resource {name!r}; use one of: {names}")
    return spec


def _read_password() -> str:
    if sys.stdin.isatty():
        return getpass.getpass("password: ")
    line = sys.stdin.readline()
    if not line:
        raise HeadlessError("no password on standard input; pipe it in or run in a terminal")
    return line.rstrip("\r\n")


async def login(profile_name: str | None, email: str | None) -> int:
    connector = connector_for(profile_name)
    if isinstance(connector, EmbeddedConnector):
        raise HeadlessError(
            "the embedded demo signs in by itself; configure a profile to log in (see the README)"
        )
    email = email or connector.email_hint
    if not email:
        if not sys.stdin.isatty():
            raise HeadlessError("pass --email when the password comes from standard input")
        email = input("email: ").strip()
    password = _read_password()
    try:
        await connector.sign_in(email, password)
    finally:
        await connector.close()
    print(f"signed in to {connector.target.url} as {email}; session stored", file=sys.stderr)
    return 0


async def logout(profile_name: str | None) -> int:
    profile = select_profile(profile_name)
    if profile is None:
        raise HeadlessError("no profile configured; the embedded demo has no stored session")
    ended = await sign_out(Target.from_profile(profile))
    print("signed out" if ended else "no stored session", file=sys.stderr)
    return 0


async def _open(profile_name: str | None, team: str | None) -> tuple[Connector, Store]:
    connector = connector_for(profile_name)
    await connector.start()
    client = await connector.resume()
    if client is None:
        await connector.close()
        raise HeadlessError(f"not signed in to {connector.target.name}; run `opstui login` first")
    store = Store(client)
    try:
        await store.open(team)
    except BaseException:
        await store.close()
        await connector.close()
        raise
    return connector, store


def _line(spec: ResourceSpec, row: dict[str, Any], store: Store) -> str:
    now = store.clock()
    return "\t".join(format_cell(column, row, now) or "-" for column in spec.columns)


async def list_rows(
    spec: ResourceSpec, profile: str | None, team: str | None, *, as_json: bool
) -> int:
    connector, store = await _open(profile, team)
    try:
        rows = sorted(store.rows(spec.table), key=lambda r: str(r.get(spec.order_by) or ""))
        if as_json:
            # One JSON array (jq-friendly); `watch --json` is the NDJSON stream.
            print(json.dumps(rows, sort_keys=True, indent=None))
            return 0
        print("\t".join(column.label for column in spec.columns))
        for row in rows:
            print(_line(spec, row, store))
    finally:
        await store.close()
        await connector.close()
    return 0


async def watch(spec: ResourceSpec, profile: str | None, team: str | None) -> int:
    connector, store = await _open(profile, team)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def on_event(event: Any) -> None:
        if isinstance(event, RowChanged) and event.table == spec.table:
            line = {"table": event.table, "type": event.kind, "key": event.key, "record": event.row}
            print(json.dumps(line, sort_keys=True), flush=True)

    store.listen(on_event)
    print(f"watching {spec.name}; Ctrl+C to stop", file=sys.stderr, flush=True)
    try:
        await stop.wait()
    finally:
        await store.close()
        await connector.close()
    return 0
