"""`opstui cicd trigger JOB | test PROVIDER | refresh PROVIDER` and `opstui builds list | logs | cancel`.

`cicd trigger JOB --follow` is what a script calls: it queues a build (a runner does the work;
this process never holds a provider token), streams its log, and exits 0 only if the build
succeeded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from opstui.errors import CliError

EXIT_BUILD_FAILED = 1


def add_actions(actions: Any) -> None:
    """`trigger`, `test` and `refresh` on the `cicd` (CI/CD providers) resource."""
    trigger = actions.add_parser("trigger", help="queue a build of a job; --follow streams its log")
    trigger.add_argument("job", metavar="JOB", help="job name, external id, or id")
    trigger.add_argument("--team", dest="cicd_team", metavar="NAME")
    trigger.add_argument("--profile", dest="cicd_profile", metavar="NAME")
    trigger.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                         help="a build parameter (repeatable)")  # fmt: skip
    trigger.add_argument(
        "--follow", action="store_true", help="stream the log; exit 0 only if it succeeded"
    )
    trigger.add_argument("--json", action="store_true", help="NDJSON events")
    trigger.set_defaults(handler=handler)
    for name, text in (("test", "check a provider's URL, credentials and permissions"),
                       ("refresh", "fill the provider's jobs from the provider")):  # fmt: skip
        task = actions.add_parser(name, help=text + " (done by a runner)")
        task.add_argument("provider", metavar="PROVIDER", help="provider name or id")
        task.add_argument("--team", dest="cicd_team", metavar="NAME")
        task.add_argument("--profile", dest="cicd_profile", metavar="NAME")
        task.set_defaults(handler=handler, cicd_task=name)


def add_commands(commands: Any) -> None:
    builds = commands.add_parser(
        "builds", aliases=["build"], help="CI/CD builds: list, logs, cancel"
    )
    actions = builds.add_subparsers(dest="builds_action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="the team's builds, newest first")
    logs = actions.add_parser("logs", help="print a build's log; --follow streams it live")
    cancel = actions.add_parser("cancel", help="cancel a queued or running build")
    for sub in (listing, logs, cancel):
        sub.add_argument("--team", dest="cicd_team", metavar="NAME")
        sub.add_argument("--profile", dest="cicd_profile", metavar="NAME")
        sub.set_defaults(handler=builds_handler)
    listing.add_argument("--json", action="store_true", help="print one JSON array")
    listing.add_argument("--limit", type=int, default=50, metavar="N")
    for sub in (logs, cancel):
        sub.add_argument(
            "build", metavar="BUILD", help="build id, or JOB#NUMBER (JOB alone: its latest)"
        )
    logs.add_argument("--follow", action="store_true", help="stream until the build finishes")
    logs.add_argument("--json", action="store_true", help="NDJSON chunks")


def handler(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    return asyncio.run(_cicd(args))


def builds_handler(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    return asyncio.run(_builds(args))


async def _session(args: argparse.Namespace):
    from opstui.headless import _open

    return await _open(args.cicd_profile or args.profile, args.cicd_team or args.team)


# -- cicd -------------------------------------------------------------------------------------


async def _cicd(args: argparse.Namespace) -> int:
    from opstui.cicd import api, params

    connector, store = await _session(args)
    try:
        client = store.client
        if getattr(args, "cicd_task", None):
            return await _provider_task(client, store, args)
        job = await api.find_job(client, args.job, store.team_id)
        try:
            values = params.check(
                job.get("parameter_definitions") or [], params.parse_pairs(args.param)
            )
        except ValueError as exc:
            raise CliError(f"{job['name']}: {exc}") from None
        build_id = await api.trigger(client, str(job["id"]), values)
        if args.json:
            print(
                json.dumps({"event": "queued", "build_id": build_id, "job": job["name"]}),
                flush=True,
            )
        else:
            print(f"opstui: queued a build of {job['name']} ({build_id}); a runner picks it up",
                  file=sys.stderr, flush=True)  # fmt: skip
        if not args.follow:
            return 0
        return await follow(client, build_id, as_json=args.json)
    finally:
        await store.close()
        await connector.close()


async def _provider_task(client: Any, store: Any, args: argparse.Namespace) -> int:
    from opstui.cicd import api

    column = "id" if api._UUID.match(args.provider) else "name"
    rows = await api._select(
        client.table("cicd_providers").select("id,name,team_id").eq(column, args.provider),
        "read providers",
    )
    if store.team_id:
        rows = [r for r in rows if str(r["team_id"]) == str(store.team_id)] or rows
    if not rows:
        raise CliError(f"no CI/CD provider {args.provider!r} in your teams; see `opstui cicd list`")
    if len(rows) > 1:
        raise CliError(f"{len(rows)} providers are named {args.provider!r}; pass --team")
    task_id = await api.request_task(client, str(rows[0]["id"]), args.cicd_task)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        task = await api.get_task(client, task_id)
        if task and task["status"] not in ("queued", "running"):
            print(
                f"opstui: {rows[0]['name']}: {task.get('result') or task['status']}",
                file=sys.stderr,
            )
            return 0 if task["status"] == "succeeded" else EXIT_BUILD_FAILED
        await asyncio.sleep(0.3)
    raise CliError("no runner picked up the task within 60 s; start one with `opstui runner`")


async def follow(client: Any, build_id: str, *, as_json: bool) -> int:
    """Stream the build's log until it finishes; exit 0 only if it succeeded."""
    from opstui.cicd import api
    from opstui.cicd.logstream import BuildLogFollower

    started = time.monotonic()
    follower = BuildLogFollower(client, build_id, follow=True, poll_interval=1.0)
    partial = ""
    async for batch in follower.batches():
        for chunk in batch:
            if as_json:
                for line in chunk.text.splitlines():
                    print(
                        json.dumps(
                            {"event": "log", "seq": chunk.seq, "stream": chunk.stream, "line": line}
                        )
                    )
                continue
            text = partial + chunk.text
            lines = text.split("\n")
            partial = lines.pop()
            sys.stdout.write("".join(line + "\n" for line in lines))
        sys.stdout.flush()
    if partial and not as_json:
        print(partial)
    build = await api.get_build(client, build_id) or follower.run or {}
    status = build.get("status")
    if as_json:
        print(json.dumps({"event": "finished", "build_id": build_id, "status": status, "number": build.get("number"),
                          "url": build.get("url"), "error": build.get("error")}), flush=True)  # fmt: skip
    line = f"build {('#' + str(build['number'])) if build.get('number') else build_id} {status} in {time.monotonic() - started:.1f}s"
    if build.get("url"):
        line += f" {build['url']}"
    if build.get("error"):
        line += f": {build['error']}"
    print(f"opstui: {line}", file=sys.stderr, flush=True)
    return 0 if status == "succeeded" else EXIT_BUILD_FAILED


# -- builds -----------------------------------------------------------------------------------


async def _builds(args: argparse.Namespace) -> int:
    from opstui.cicd import api

    connector, store = await _session(args)
    try:
        client = store.client
        if args.builds_action == "list":
            rows = await api.list_builds(client, store.team_id, limit=args.limit)
            if args.json:
                print(json.dumps(rows, sort_keys=True))  # one array, as every `list --json`
                return 0
            print("\t".join(("BUILD", "STATUS", "PROVIDER", "REQUESTED", "URL", "ID")))
            for row in rows:
                print("\t".join((
                    f"{row.get('job_name')}#{row.get('number') or '-'}", str(row.get("status")),
                    str(row.get("provider_type")), str(row.get("requested_at") or "-")[:19],
                    str(row.get("url") or "-"), str(row.get("id")),
                )))  # fmt: skip
            return 0
        build = await api.find_build(client, args.build)
        if args.builds_action == "cancel":
            if build.get("status") in api.TERMINAL:
                raise CliError(
                    f"build {build.get('job_name')}#{build.get('number')} already {build['status']}; nothing to cancel"
                )
            outcome = await api.cancel(client, str(build["id"]))
            what = (
                "cancelled"
                if outcome == "cancelled"
                else "cancel requested; the runner stops it on the provider"
            )
            print(
                f"opstui: build {build.get('job_name')}#{build.get('number') or '-'}: {what}",
                file=sys.stderr,
            )
            return 0
        if args.follow:
            return await follow(client, str(build["id"]), as_json=args.json)
        for chunk in await api.build_logs(client, str(build["id"]), 0, 100_000):
            if args.json:
                print(json.dumps(chunk))
            else:
                sys.stdout.write(chunk["text"])
        sys.stdout.flush()
        return 0
    finally:
        await store.close()
        await connector.close()
