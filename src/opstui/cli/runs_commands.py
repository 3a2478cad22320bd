"""The bodies of `deploy run`, `runs list|logs|cancel` and `runner`, signed in like other headless commands.

`deploy run NAME --follow` is what a CI job calls: it streams the log
(`host | line`, or NDJSON with --json) and exits 0 only if the run succeeded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
from typing import Any

from opstui.errors import CliError

EXIT_RUN_FAILED = 1


class _Session:
    """A signed-in client and the team asked for (None: every team RLS shows), without
    loading the TUI's snapshot of every table: these commands read a few rows."""

    def __init__(self, connector, client, team_id: str | None) -> None:
        self.connector, self.client, self.team_id = connector, client, team_id


async def _session(profile: str | None, team: str | None) -> _Session:
    from opstui.connect import connector_for
    from opstui.runs import api

    connector = connector_for(profile)
    await connector.start()
    client = await connector.resume()
    if client is None:
        await connector.close()
        raise CliError(f"not signed in to {connector.target.name}; run `opstui login` first")
    team_id = None
    if team:
        try:
            column = "id" if api._UUID.match(team) else "name"
            rows = await api._select(
                client.table("teams").select("id").eq(column, team), "read teams"
            )
        except BaseException:
            await connector.close()
            raise
        if not rows:
            await connector.close()
            raise CliError(f"no team named {team!r} among your teams; see `opstui teams list`")
        team_id = str(rows[0]["id"])
    return _Session(connector, client, team_id)


async def _closing(session: _Session) -> None:
    await session.connector.close()


# -- deploy run ---------------------------------------------------------------------------------


async def deploy_run(args: argparse.Namespace) -> int:
    from opstui.runs import api

    if getattr(args, "timeout", None) and not args.follow:
        raise CliError("--timeout limits the wait of --follow; add --follow, or drop --timeout")
    store = await _session(args.run_profile or args.profile, args.run_team or args.team)
    try:
        client = store.client
        deployment = await api.find_deployment(client, args.deployment_name, store.team_id)
        run_id = await api.launch(client, str(deployment["id"]), trigger="api")
        run = await api.get_run(client, run_id) or {"id": run_id}
        if args.json:
            print(json.dumps({"event": "queued", "run_id": run_id, "number": run.get("number"),
                              "deployment": deployment["name"]}), flush=True)  # fmt: skip
        else:
            print(f"opstui: queued run #{run.get('number')} of {deployment['name']} ({run_id})",
                  file=sys.stderr, flush=True)  # fmt: skip
        if not args.follow:
            return 0
        watching = asyncio.create_task(_say_while_queued(client, run_id, run.get("number")))
        try:
            return await asyncio.wait_for(
                follow(client, run_id, as_json=args.json), getattr(args, "timeout", None)
            )
        except TimeoutError:
            number = run.get("number")
            print(f"opstui: stopped waiting for run #{number} after {args.timeout:g}s; the run "
                  f"goes on (see `opstui runs logs {run_id}`, or `opstui runs cancel {run_id}`)",
                  file=sys.stderr, flush=True)  # fmt: skip
            return EXIT_RUN_FAILED
        finally:
            watching.cancel()
    finally:
        await _closing(store)


def _queued_notice_delay() -> float:
    # Seconds a run may wait for a runner before we say so (tests make it short).
    try:
        return max(0.05, float(os.environ.get("OPSTUI_QUEUED_NOTICE_SECONDS", "10")))
    except ValueError:
        return 10.0


async def _say_while_queued(client: Any, run_id: str, number: Any) -> None:
    """A run nobody claims would leave a CI job silent forever: say why it waits, now and
    then (first after ~10 s, then at most once a minute), without giving up on it."""
    from opstui.runs import api

    delay = _queued_notice_delay()
    repeat = delay * 6
    await asyncio.sleep(delay)
    while True:
        try:
            run = await api.get_run(client, run_id) or {}
        except Exception:  # noqa: BLE001 - a notice is best effort; the follow reports errors
            run = {}
        if run and run.get("status") != "queued":
            return
        if run:
            print(f"opstui: run #{number} is queued and no runner has claimed it yet; is "
                  "`opstui runner` running for this team?", file=sys.stderr, flush=True)  # fmt: skip
        await asyncio.sleep(repeat)


class _LinePrinter:
    """Chunks -> whole lines, prefixed with the host name (a chunk may end mid-line)."""

    def __init__(self, names: dict[str | None, str], as_json: bool) -> None:
        self.names = names
        self.width = max((len(n) for n in names.values()), default=6)
        self.as_json = as_json
        self.partial: dict[tuple[str | None, str], str] = {}

    def name(self, host_id: str | None) -> str:
        return self.names.get(host_id) or (host_id or "runner")

    def chunk(self, chunk) -> None:
        key = (chunk.host_id, chunk.stream)
        text = self.partial.pop(key, "") + chunk.text
        lines = text.split("\n")
        if lines[-1]:
            self.partial[key] = lines[-1]
        self._print(chunk.host_id, chunk.stream, lines[:-1], chunk.seq)

    def flush(self) -> None:
        for (host_id, stream), text in list(self.partial.items()):
            self._print(host_id, stream, [text], None)
        self.partial.clear()
        sys.stdout.flush()

    def _print(self, host_id, stream, lines, seq) -> None:
        name = self.name(host_id)
        if self.as_json:
            for line in lines:
                print(json.dumps({"event": "log", "seq": seq, "host": name, "host_id": host_id,
                                  "stream": stream, "line": line}))  # fmt: skip
            return
        sys.stdout.write("".join(f"{name:<{self.width}} | {line}\n" for line in lines))


async def follow(client: Any, run_id: str, *, as_json: bool) -> int:
    """Stream the run's log until it finishes; exit 0 only if it succeeded."""
    from opstui.runs import api
    from opstui.runs.logstream import RunLogFollower

    started = time.monotonic()
    names: dict[str | None, str] = {None: "runner"}
    printer = _LinePrinter(names, as_json)
    follower = RunLogFollower(client, run_id, follow=True)
    async for batch in follower.batches():
        if any(c.host_id not in names for c in batch):
            for row in await api.run_hosts(client, run_id):
                names[str(row["host_id"])] = str(row.get("host_name") or row["host_id"])
            printer.width = max(len(n) for n in names.values())
        for chunk in batch:
            printer.chunk(chunk)
        sys.stdout.flush()
    printer.flush()
    run = await api.get_run(client, run_id) or follower.run or {}
    hosts = await api.run_hosts(client, run_id)
    status = run.get("status")
    if as_json:
        print(json.dumps({"event": "finished", "run_id": run_id, "number": run.get("number"),
                          "status": status, "error": run.get("error"),
                          "hosts": [{"host": h.get("host_name"), "host_id": h.get("host_id"),
                                     "status": h.get("status"), "exit_code": h.get("exit_code"),
                                     "error": h.get("error")} for h in hosts]}), flush=True)  # fmt: skip
    counts: dict[str, int] = {}
    for h in hosts:
        counts[str(h.get("status"))] = counts.get(str(h.get("status")), 0) + 1
    tally = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    line = f"run #{run.get('number')} {status} in {time.monotonic() - started:.1f}s ({tally or 'no hosts'})"
    if run.get("error"):
        line += f": {run['error']}"
    print(f"opstui: {line}", file=sys.stderr, flush=True)
    return 0 if status == "succeeded" else EXIT_RUN_FAILED


# -- runs ---------------------------------------------------------------------------------------


async def runs(args: argparse.Namespace) -> int:
    from opstui.runs import api

    store = await _session(args.runs_profile or args.profile, args.runs_team or args.team)
    try:
        client = store.client
        if args.runs_action == "list":
            return await _list(client, store, args)
        run = await api.find_run(client, args.run, store.team_id)
        if args.runs_action == "cancel":
            if run.get("status") in api.TERMINAL:
                raise CliError(
                    f"run #{run.get('number')} already {run.get('status')}; nothing to cancel"
                )
            await api.cancel(client, str(run["id"]))
            fresh = await api.get_run(client, str(run["id"])) or run
            what = (
                "cancelled"
                if fresh.get("status") == "cancelled"
                else "cancel requested; the runner stops it"
            )
            print(
                f"opstui: run #{run.get('number')} of {_deployment_name(run)}: {what}",
                file=sys.stderr,
            )
            return 0
        if args.follow:
            return await follow(client, str(run["id"]), as_json=args.json)
        return await _print_log(client, run, as_json=args.json)
    finally:
        await _closing(store)


def _deployment_name(run: dict) -> str:
    return str((run.get("spec") or {}).get("deployment_name") or run.get("deployment_id"))


async def _print_log(client: Any, run: dict, *, as_json: bool) -> int:
    from opstui.runs import api
    from opstui.runs.logstream import RunLogFollower

    names: dict[str | None, str] = {None: "runner"}
    for row in await api.run_hosts(client, str(run["id"])):
        names[str(row["host_id"])] = str(row.get("host_name") or row["host_id"])
    printer = _LinePrinter(names, as_json)
    async for batch in RunLogFollower(client, str(run["id"]), follow=False).batches():
        for chunk in batch:
            printer.chunk(chunk)
    printer.flush()
    return 0


async def _list(client: Any, store: Any, args: argparse.Namespace) -> int:
    from opstui.runs import api

    rows = await api.list_runs(client, store.team_id, limit=args.limit)
    if args.json:
        print(json.dumps(rows, sort_keys=True))  # one array, as every `list --json`
        return 0
    print("\t".join(("RUN", "STATUS", "TRIGGER", "HOSTS", "REQUESTED", "DURATION", "ID")))
    for row in rows:
        hosts = f"{row.get('hosts_done') or 0}/{row.get('hosts_total') or 0}"
        if row.get("hosts_failed"):
            hosts += f" ({row['hosts_failed']} failed)"
        print("\t".join((
            f"{_deployment_name(row)}#{row.get('number')}", str(row.get("status")),
            str(row.get("trigger")), hosts, str(row.get("requested_at") or "-")[:19],
            _duration(row), str(row.get("id")),
        )))  # fmt: skip
    return 0


def _duration(row: dict) -> str:
    from opstui.runs.schedule import parse_time

    start, end = parse_time(row.get("started_at")), parse_time(row.get("finished_at"))
    if start is None:
        return "-"
    if end is None:
        return "running"
    seconds = (end - start).total_seconds()
    return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f}m"


# -- runner -------------------------------------------------------------------------------------


async def runner(args: argparse.Namespace) -> int:
    from opstui.connect import connector_for
    from opstui.runs.runner import Runner, RunnerSettings
    from opstui.ssh import SshSettings, rpc_password_source

    connector = connector_for(args.runner_profile or args.profile)
    await connector.start()
    client = await connector.resume()
    if client is None:
        await connector.close()
        raise CliError(f"not signed in to {connector.target.name}; run `opstui login` first")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    runs_log = logging.getLogger("opstui.runs")
    runs_log.addHandler(handler)
    runs_log.setLevel(logging.INFO)
    runs_log.propagate = False
    settings = RunnerSettings(concurrency=args.concurrency, lease_seconds=args.lease,
                              poll_interval=args.poll, drain_seconds=args.drain)  # fmt: skip
    if args.runner_name:
        settings.name = args.runner_name
    ssh = SshSettings(accept_new=args.accept_new, password_source=rpc_password_source(client))
    runner = Runner(client, settings, ssh_settings=ssh)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, runner.stop)
    print(f"opstui: runner {settings.name} started (up to {settings.concurrency} runs at once); "
          "SIGTERM or Ctrl+C stops it", file=sys.stderr, flush=True)  # fmt: skip
    try:
        await runner.run()
    finally:
        await connector.close()
    print(f"opstui: runner {settings.name} stopped cleanly after {len(runner.claimed)} runs",
          file=sys.stderr, flush=True)  # fmt: skip
    return 0
