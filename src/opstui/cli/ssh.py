"""Headless SSH commands: `opstui exec`, `opstui cp`, `opstui hosts check`.

    opstui exec [--team NAME] (--hosts a,b | --all) [--accept-new] [--json] -- CMD
    opstui cp [--team NAME] [--accept-new] SRC DST      (one side is HOST:PATH)
    opstui hosts check [--team NAME] (--hosts a,b | --all) [--accept-new] [--json]

Unknown host keys are refused unless --accept-new (then remembered in opstui's
known_hosts, like OpenSSH's accept-new); changed keys are always refused.
exec/check exit 1 if any host failed or was unreachable. Like ssh, the words of
CMD are joined with spaces and run by the remote shell.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from opstui.errors import CliError


def add_commands(commands: Any) -> None:
    """Add `exec` and `cp` to the top-level subparsers."""
    run = commands.add_parser("exec", help="run a command on hosts over SSH")
    run.add_argument("--team", dest="ssh_team", metavar="NAME")
    which = run.add_mutually_exclusive_group(required=True)
    which.add_argument("--hosts", metavar="A,B", help="comma-separated host names")
    which.add_argument("--all", action="store_true", help="every host of the team")
    run.add_argument(
        "--accept-new", action="store_true", help="trust and remember unknown host keys"
    )
    run.add_argument("--json", action="store_true", help="NDJSON events")
    run.add_argument("--concurrency", type=int, default=32, metavar="N")
    run.add_argument("--timeout", type=float, default=None, metavar="SECONDS", help="per host")
    run.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD")
    run.set_defaults(handler=handler)

    cp = commands.add_parser("cp", help="copy a file to or from a host over SFTP (HOST:PATH)")
    cp.add_argument("--team", dest="ssh_team", metavar="NAME")
    cp.add_argument(
        "--accept-new", action="store_true", help="trust and remember unknown host keys"
    )
    cp.add_argument("src", metavar="SRC")
    cp.add_argument("dst", metavar="DST")
    cp.set_defaults(handler=handler)


def add_hosts_check(actions: Any) -> None:
    """Add `check` to the `hosts` resource actions."""
    check = actions.add_parser("check", help="SSH health check; writes status for the team")
    check.add_argument("--team", dest="ssh_team", metavar="NAME")
    which = check.add_mutually_exclusive_group(required=True)
    which.add_argument("--hosts", metavar="A,B")
    which.add_argument("--all", action="store_true")
    check.add_argument(
        "--accept-new", action="store_true", help="trust and remember unknown host keys"
    )
    check.add_argument("--json", action="store_true", help="one JSON object per host")
    check.set_defaults(handler=handler)


def _targets(rows: list[dict[str, Any]], *, every: bool) -> list[Any]:
    """SSH targets for `rows`. A named host opstui cannot reach is an error; with
    --all, such hosts are skipped with a one-line note each."""
    from opstui.ssh.target import SshTarget

    targets = []
    for row in rows:
        try:
            targets.append(SshTarget.from_host(row))
        except ValueError as exc:
            if not every:
                raise SshCliError(str(exc)) from None
            print(f"opstui: skipped {exc}", file=sys.stderr)
    if not targets:
        raise SshCliError("no SSH host to reach among those selected")
    return targets


class SshCliError(CliError):
    pass


def handler(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    return asyncio.run(run(args))


async def run(args: argparse.Namespace) -> int:
    from opstui.headless import HeadlessError
    from opstui.session import SignInError
    from opstui.ssh.errors import SshError
    from opstui.store import StoreError

    try:
        if args.command == "exec":
            return await exec_command(args)
        if args.command == "cp":
            return await copy(args)
        return await check(args)
    except (SshCliError, HeadlessError, SignInError, StoreError, SshError) as exc:
        raise CliError(str(exc)) from None


async def _session(args: argparse.Namespace):
    from opstui.headless import _open

    return await _open(args.profile, getattr(args, "ssh_team", None) or args.team)


def _pool(client: Any, accept_new: bool):
    from opstui.ssh import ConnectionPool, SshSettings, rpc_password_source

    return ConnectionPool(
        SshSettings(accept_new=accept_new, password_source=rpc_password_source(client))
    )


def _select(store: Any, names: str | None, everything: bool) -> list[dict[str, Any]]:
    rows = sorted(store.rows("hosts"), key=lambda r: str(r.get("name") or ""))
    if everything:
        if not rows:
            raise SshCliError("the team has no hosts")
        return rows
    wanted = [n.strip() for n in (names or "").split(",") if n.strip()]
    by_name = {r.get("name"): r for r in rows}
    missing = [n for n in wanted if n not in by_name]
    if missing:
        raise SshCliError(
            f"no host named {', '.join(missing)} in this team; see `opstui hosts list`"
        )
    if not wanted:
        raise SshCliError("no hosts given; use --hosts a,b or --all")
    return [by_name[n] for n in wanted]


def _command(words: list[str]) -> str:
    if words and words[0] == "--":
        words = words[1:]
    command = " ".join(words).strip()
    if not command:
        raise SshCliError("no command given; put it after --, e.g. opstui exec --all -- uptime")
    return command


async def exec_command(args: argparse.Namespace) -> int:
    from opstui.ssh.audit import SupabaseAudit
    from opstui.ssh.exec import HostFinished, Output, RunFinished, run_command

    command = _command(args.cmd)
    connector, store = await _session(args)
    pool = _pool(store.client, args.accept_new)
    try:
        targets = _targets(_select(store, args.hosts, args.all), every=args.all)
        width = max(len(t.name) for t in targets)
        run = run_command(
            pool, targets, command, concurrency=args.concurrency, timeout=args.timeout,
            audit=SupabaseAudit(store.client),
        )  # fmt: skip
        async for batch in run.batches():
            for event in batch:
                if isinstance(event, Output):
                    _print_output(event, width, args.json)
                elif isinstance(event, HostFinished):
                    _print_finished(event, args.json)
                elif isinstance(event, RunFinished):
                    summary = event.summary
                    if args.json:
                        print(json.dumps({"event": "summary", "succeeded": list(summary.succeeded),
                                          "failed": list(summary.failed), "unreachable": list(summary.unreachable),
                                          "duration": round(summary.duration, 3)}), flush=True)  # fmt: skip
                    print(f"opstui: {summary.line()}", file=sys.stderr, flush=True)
        for problem in run.audit_errors:
            print(f"opstui: {problem}", file=sys.stderr)
        return 0 if run.summary and run.summary.ok else 1
    finally:
        await pool.close()
        await store.close()
        await connector.close()


def _print_output(event: Any, width: int, as_json: bool) -> None:
    lines = event.text.splitlines()
    if as_json:
        for line in lines:
            print(
                json.dumps(
                    {"event": "output", "host": event.host, "stream": event.stream, "line": line}
                )
            )
        return
    out = sys.stdout if event.stream == "stdout" else sys.stderr
    out.write("".join(f"{event.host:<{width}} | {line}\n" for line in lines))


def _print_finished(event: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"event": "exit", "host": event.host, "status": event.status,
                          "exit_status": event.exit_status, "duration": round(event.duration, 3),
                          "error": event.error}), flush=True)  # fmt: skip
        return
    sys.stdout.flush()
    if event.status == "ok":
        print(f"opstui: {event.host}: exit 0 ({event.duration:.2f}s)", file=sys.stderr)
    else:
        print(
            f"opstui: {event.error or event.host + ': ' + event.status} ({event.duration:.2f}s)",
            file=sys.stderr,
        )


def _split_remote(spec: str) -> tuple[str, str] | None:
    """`host:path` -> (host, path); local paths (with / before any colon, or no colon) -> None."""
    head, sep, tail = spec.partition(":")
    if (
        not sep
        or not head
        or "/" in head
        or (len(head) == 1 and head.isalpha() and tail.startswith("\\"))
    ):
        return None
    return head, tail or "."


async def copy(args: argparse.Namespace) -> int:
    from opstui.ssh.sftp import download, upload

    src, dst = _split_remote(args.src), _split_remote(args.dst)
    if (src is None) == (dst is None):
        raise SshCliError(
            "exactly one of SRC and DST must be HOST:PATH (e.g. opstui cp app.log web-01:/tmp/)"
        )
    connector, store = await _session(args)
    pool = _pool(store.client, args.accept_new)
    try:
        host_name, remote = src or dst  # type: ignore[misc]
        (target,) = _targets(_select(store, host_name, False), every=False)
        label = f"{args.src} -> {args.dst}"

        live = sys.stderr.isatty()  # "\r" redraws only on a terminal; a log gets one line

        def progress(done: int, total: int) -> None:
            if not live:
                return
            pct = f"{100 * done // total:3d}%" if total else "   "
            sys.stderr.write(f"\r{label}  {pct}  {done:,}/{total:,} bytes")
            sys.stderr.flush()

        if src is not None:
            local = args.dst
            if local.endswith("/") or _is_dir(local):
                local = local.rstrip("/") + "/" + remote.rstrip("/").rsplit("/", 1)[-1]
            size = await download(pool, target, remote, local, progress=progress)
        else:
            if remote.endswith("/"):
                remote += args.src.rstrip("/").rsplit("/", 1)[-1]
            size = await upload(pool, target, args.src, remote, progress=progress)
        sys.stderr.write(f"{chr(13) if live else ''}{label}  done, {size:,} bytes\n")
        return 0
    finally:
        await pool.close()
        await store.close()
        await connector.close()


def _is_dir(path: str) -> bool:
    from pathlib import Path

    return Path(path).is_dir()


async def check(args: argparse.Namespace) -> int:
    from opstui.ssh.health import HealthChecker, rpc_health_writer

    connector, store = await _session(args)
    pool = _pool(store.client, args.accept_new)
    try:
        targets = _targets(_select(store, args.hosts, args.all), every=args.all)
        checker = HealthChecker(pool, writer=rpc_health_writer(store.client))
        results = await checker.check_many(targets)
        for result in results:
            if args.json:
                print(
                    json.dumps(
                        {
                            "host": result.target.name,
                            "status": result.status,
                            "health": result.health,
                        }
                    )
                )
            else:
                detail = result.error or _figures(result.health)
                print(f"{result.target.name}\t{result.status}\t{detail}")
        for problem in checker.write_errors:
            print(f"opstui: {problem}", file=sys.stderr)
        return 0 if all(r.status == "online" for r in results) else 1
    finally:
        await pool.close()
        await store.close()
        await connector.close()


def _figures(health: dict[str, Any]) -> str:
    load = health.get("load") or []
    parts = []
    if load:
        parts.append("load " + " ".join(f"{x:.2f}" for x in load))
    if health.get("mem_used_pct") is not None:
        parts.append(f"mem {health['mem_used_pct']}%")
    if health.get("disk_root_used_pct") is not None:
        parts.append(f"disk / {health['disk_root_used_pct']}%")
    if health.get("uptime_s") is not None:
        parts.append(f"up {health['uptime_s'] // 86400}d{health['uptime_s'] % 86400 // 3600}h")
    return ", ".join(parts)


__all__ = ["add_commands", "add_hosts_check", "handler", "run"]
