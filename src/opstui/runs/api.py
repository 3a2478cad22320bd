"""Runs through supabase-py: launch, retry, cancel, list and find (users); the runner's RPCs.

Every call is a PostgREST request on the caller's session; permissions are
checked inside the SQL functions and by RLS. Failures raise `RunsError`, one
line with the server's message (e.g. "run #3 of deploy-api is still running").
"""

from __future__ import annotations

import re
from typing import Any

from opstui.errors import CliError

TERMINAL = frozenset({"succeeded", "failed", "cancelled", "lost"})
ACTIVE = frozenset({"queued", "running"})
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)


class RunsError(CliError):
    """One line: what the server refused, or what is missing, and what to do."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


def _refused(exc: Exception, what: str) -> RunsError:
    from postgrest.exceptions import APIError

    if isinstance(exc, APIError):
        message = (exc.message or f"the server refused to {what}").strip().splitlines()[0]
        return RunsError(message, code=exc.code)
    return RunsError(f"cannot {what}: {str(exc).splitlines()[0] if str(exc) else exc!r}")


async def rpc(client: Any, name: str, params: dict, what: str) -> Any:
    try:
        response = await client.rpc(name, params).execute()
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line
        raise _refused(exc, what) from None
    return response.data


async def _select(query: Any, what: str) -> list[dict]:
    try:
        response = await query.execute()
    except Exception as exc:  # noqa: BLE001
        raise _refused(exc, what) from None
    return list(response.data or [])


# -- users --------------------------------------------------------------------------------------


async def launch(client: Any, deployment_id: str, trigger: str = "manual") -> str:
    data = await rpc(
        client,
        "launch_deployment",
        {"p_deployment_id": deployment_id, "p_trigger": trigger},
        "launch the deployment",
    )
    return str(data)


async def retry(client: Any, run_id: str) -> str:
    return str(await rpc(client, "retry_deployment_run", {"p_run_id": run_id}, "retry the run"))


async def cancel(client: Any, run_id: str) -> None:
    await rpc(client, "cancel_deployment_run", {"p_run_id": run_id}, "cancel the run")


async def get_run(client: Any, run_id: str) -> dict | None:
    rows = await _select(
        client.table("deployment_runs").select("*").eq("id", run_id).limit(1), "read the run"
    )
    return rows[0] if rows else None


async def run_hosts(client: Any, run_id: str) -> list[dict]:
    return await _select(
        client.table("deployment_run_hosts")
        .select("*")
        .eq("run_id", run_id)
        .order("batch")
        .order("position"),
        "read the run's hosts",
    )


async def list_runs(client: Any, team_id: str | None = None, limit: int = 50) -> list[dict]:
    query = client.table("deployment_runs").select("*")
    if team_id:
        query = query.eq("team_id", team_id)
    return await _select(query.order("requested_at", desc=True).limit(limit), "list runs")


async def find_deployment(client: Any, name: str, team_id: str | None) -> dict:
    query = client.table("deployments").select("*").eq("name", name)
    if team_id:
        query = query.eq("team_id", team_id)
    rows = await _select(query, "read deployments")
    if not rows:
        raise RunsError(f"no deployment named {name!r} in this team; see `opstui deploy list`")
    if len(rows) > 1:
        raise RunsError(f"{len(rows)} deployments are named {name!r}; pass --team")
    return rows[0]


async def find_run(client: Any, ref: str, team_id: str | None = None) -> dict:
    """A run by id, or by `DEPLOYMENT#NUMBER` (`DEPLOYMENT` alone: its latest run)."""
    ref = ref.strip()
    if _UUID.match(ref):
        run = await get_run(client, ref)
        if run is None:
            raise RunsError(f"no run {ref} (or it is not in your teams); see `opstui runs list`")
        return run
    name, _, number = ref.rpartition("#") if "#" in ref else (ref, "", "")
    deployment = await find_deployment(client, name, team_id)
    query = client.table("deployment_runs").select("*").eq("deployment_id", deployment["id"])
    if number:
        if not number.isdigit():
            raise RunsError(f"{ref!r}: the run number after # must be a number, e.g. {name}#3")
        query = query.eq("number", int(number))
    rows = await _select(query.order("number", desc=True).limit(1), "read runs")
    if not rows:
        raise RunsError(f"{name} has no run {('#' + number) if number else 'yet'}")
    return rows[0]


# -- runners ------------------------------------------------------------------------------------


async def claim(client: Any, runner_name: str, lease_seconds: int) -> dict | None:
    data = await rpc(
        client,
        "claim_deployment_run",
        {"p_runner_name": runner_name, "p_lease_seconds": lease_seconds},
        "claim a run",
    )
    if isinstance(data, list):
        return data[0] if data else None
    return data or None


async def heartbeat(client: Any, run_id: str, lease_seconds: int) -> bool:
    """Extends the lease; True when a cancel was requested. RunsError (42501): lease lost."""
    data = await rpc(
        client,
        "heartbeat_deployment_run",
        {"p_run_id": run_id, "p_lease_seconds": lease_seconds},
        "heartbeat the run",
    )
    return bool((data or {}).get("cancel_requested")) if isinstance(data, dict) else False


async def update_host(
    client: Any, run_id: str, host_id: str, status: str, exit_code: int | None, error: str | None
) -> None:
    await rpc(
        client,
        "update_run_host",
        {"p_run_id": run_id, "p_host_id": host_id, "p_status": status,
         "p_exit_code": exit_code, "p_error": error},
        "record a host's result",
    )  # fmt: skip


async def append_log(client: Any, run_id: str, chunks: list[dict]) -> Any:
    return await rpc(
        client, "append_run_log", {"p_run_id": run_id, "p_chunks": chunks}, "append to the log"
    )


async def set_batch(client: Any, run_id: str, batch: int) -> None:
    await rpc(client, "set_run_batch", {"p_run_id": run_id, "p_batch": batch}, "record the batch")


async def finish(client: Any, run_id: str, status: str, error: str | None = None) -> None:
    await rpc(
        client,
        "finish_deployment_run",
        {"p_run_id": run_id, "p_status": status, "p_error": error},
        "finish the run",
    )


async def expire_leases(client: Any) -> int:
    return int(await rpc(client, "expire_deployment_run_leases", {}, "expire leases") or 0)


async def queue_scheduled(
    client: Any, deployment_id: str, tick: str, skipped: int = 0
) -> str | None:
    """Queue the run for a tick (once, whatever the number of runners); None: not queued."""
    data = await rpc(
        client,
        "queue_scheduled_run",
        {"p_deployment_id": deployment_id, "p_tick": tick, "p_skipped_ticks": skipped},
        "queue a scheduled run",
    )
    return str(data) if data else None
