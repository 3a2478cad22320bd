"""CI/CD builds through supabase-py: what users call (trigger, cancel, list, find) and the
runner's RPCs. Every call is a PostgREST request on the caller's session; permissions are
checked inside the SQL functions and by RLS. Failures raise `BuildsError` (one line)."""

from __future__ import annotations

import re
from typing import Any

from opstui.runs.api import RunsError, _select, rpc

TERMINAL = frozenset({"succeeded", "failed", "cancelled", "lost"})
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)


class BuildsError(RunsError):
    """One line: what the server refused, or what is missing, and what to do."""


async def _call(client: Any, name: str, params: dict, what: str) -> Any:
    try:
        return await rpc(client, name, params, what)
    except RunsError as exc:
        raise BuildsError(str(exc), code=exc.code) from None


# -- users --------------------------------------------------------------------------------------


async def trigger(client: Any, job_id: str, parameters: dict[str, Any] | None = None) -> str:
    return str(
        await _call(
            client,
            "trigger_cicd_job",
            {"p_job_id": job_id, "p_parameters": parameters or {}},
            "trigger the job",
        )
    )


async def cancel(client: Any, build_id: str) -> str:
    return str(
        await _call(client, "cancel_cicd_build", {"p_build_id": build_id}, "cancel the build")
    )


async def request_task(client: Any, provider_id: str, kind: str) -> str:
    return str(
        await _call(
            client,
            "request_cicd_provider_task",
            {"p_provider_id": provider_id, "p_kind": kind},
            "test the provider" if kind == "test" else "refresh the provider's jobs",
        )
    )


async def get_build(client: Any, build_id: str) -> dict | None:
    rows = await _select(
        client.table("cicd_builds").select("*").eq("id", build_id).limit(1), "read the build"
    )
    return rows[0] if rows else None


async def get_task(client: Any, task_id: str) -> dict | None:
    rows = await _select(
        client.table("cicd_provider_tasks").select("*").eq("id", task_id).limit(1),
        "read the provider task",
    )
    return rows[0] if rows else None


async def list_builds(
    client: Any, team_id: str | None = None, limit: int = 50, job_id: str | None = None
) -> list[dict]:
    query = client.table("cicd_builds").select("*")
    if team_id:
        query = query.eq("team_id", team_id)
    if job_id:
        query = query.eq("job_id", job_id)
    return await _select(query.order("requested_at", desc=True).limit(limit), "list builds")


async def build_logs(
    client: Any, build_id: str, after_seq: int = 0, limit: int = 1000
) -> list[dict]:
    return await _select(
        client.table("cicd_build_logs")
        .select("seq,stream,text,created_at")
        .eq("build_id", build_id)
        .gt("seq", after_seq)
        .order("seq")
        .limit(limit),
        "read the build log",
    )


async def find_job(client: Any, name: str, team_id: str | None = None) -> dict:
    """A job by id, by name, or by external id (one that has not vanished)."""
    if _UUID.match(name.strip()):
        rows = await _select(
            client.table("cicd_jobs").select("*").eq("id", name.strip()), "read jobs"
        )
    else:
        rows = []
        for column in ("name", "external_id"):
            query = (
                client.table("cicd_jobs").select("*").eq(column, name).is_("vanished_at", "null")
            )
            if team_id:
                query = query.eq("team_id", team_id)
            rows = await _select(query, "read jobs")
            if rows:
                break
    if not rows:
        raise BuildsError(
            f"no CI/CD job named {name!r} in your teams; see `opstui get jobs` or refresh the provider"
        )
    if len(rows) > 1:
        raise BuildsError(f"{len(rows)} CI/CD jobs are named {name!r}; pass --team or the job's id")
    return rows[0]


async def find_build(client: Any, ref: str) -> dict:
    """A build by id, or `JOB#NUMBER` / `JOB` (its latest build)."""
    ref = ref.strip()
    if _UUID.match(ref):
        build = await get_build(client, ref)
        if build is None:
            raise BuildsError(
                f"no build {ref} (or it is not in your teams); see `opstui builds list`"
            )
        return build
    name, _, number = ref.rpartition("#") if "#" in ref else (ref, "", "")
    job = await find_job(client, name)
    query = client.table("cicd_builds").select("*").eq("job_id", job["id"])
    if number:
        query = query.eq("number", number)
    rows = await _select(query.order("requested_at", desc=True).limit(1), "read builds")
    if not rows:
        raise BuildsError(f"job {name} has no build {('#' + number) if number else 'yet'}")
    return rows[0]


# -- runners ------------------------------------------------------------------------------------


async def claim(client: Any, runner_name: str, lease_seconds: int, limit: int = 1) -> dict | None:
    """One queued build (see claim_many)."""
    claimed = await claim_many(client, runner_name, lease_seconds, limit)
    return claimed[0] if claimed else None


async def claim_many(client: Any, runner_name: str, lease_seconds: int, limit: int) -> list[dict]:
    data = await _call(
        client,
        "claim_cicd_build",
        {"p_runner_name": runner_name, "p_lease_seconds": lease_seconds, "p_limit": limit},
        "claim builds",
    )
    if isinstance(data, list):
        return data
    return [data] if data else []


async def start_run_build(
    client: Any, run_id: str, mapping_id: str, runner_name: str, lease_seconds: int, parameters: Any
) -> dict:
    data = await _call(
        client,
        "start_run_cicd_build",
        {"p_run_id": run_id, "p_mapping_id": mapping_id, "p_runner_name": runner_name,
         "p_lease_seconds": lease_seconds, "p_parameters": parameters},
        "start the run's CI/CD step",
    )  # fmt: skip
    row = data[0] if isinstance(data, list) and data else data
    if not row:
        raise BuildsError("the server did not create the run's CI/CD build")
    return row


async def claim_task(client: Any, runner_name: str, lease_seconds: int = 60) -> dict | None:
    data = await _call(
        client,
        "claim_cicd_provider_task",
        {"p_runner_name": runner_name, "p_lease_seconds": lease_seconds},
        "claim a provider task",
    )
    if isinstance(data, list):
        return data[0] if data else None
    return data or None


async def provider(client: Any, provider_id: str) -> dict:
    rows = await _select(
        client.table("cicd_providers").select("*").eq("id", provider_id), "read the provider"
    )
    if not rows:
        raise BuildsError(
            f"CI/CD provider {provider_id} is gone or not visible to the runner's user"
        )
    return rows[0]


async def job(client: Any, job_id: str) -> dict:
    rows = await _select(client.table("cicd_jobs").select("*").eq("id", job_id), "read the job")
    if not rows:
        raise BuildsError(f"CI/CD job {job_id} is gone or not visible to the runner's user")
    return rows[0]


async def provider_secrets(client: Any, provider_id: str) -> dict:
    data = await _call(
        client,
        "get_cicd_provider_secrets",
        {"p_provider_id": provider_id},
        "read the provider's secrets",
    )
    return data if isinstance(data, dict) else {}


async def secret_parameters(client: Any, build_id: str) -> dict:
    data = await _call(
        client,
        "get_cicd_build_secret_parameters",
        {"p_build_id": build_id},
        "read the build's secret parameters",
    )
    return data if isinstance(data, dict) else {}


async def heartbeat(client: Any, build_id: str, lease_seconds: int) -> bool:
    data = await _call(
        client,
        "heartbeat_cicd_build",
        {"p_build_id": build_id, "p_lease_seconds": lease_seconds},
        "heartbeat the build",
    )
    return bool((data or {}).get("cancel_requested")) if isinstance(data, dict) else False


async def update(client: Any, build_id: str, fields: dict) -> None:
    await _call(
        client,
        "update_cicd_build",
        {"p_build_id": build_id, "p_fields": fields},
        "update the build",
    )


async def append_log(client: Any, build_id: str, chunks: list[dict]) -> Any:
    clean = [{"stream": c.get("stream", "stdout"), "text": c["text"]} for c in chunks]
    return await _call(
        client,
        "append_build_log",
        {"p_build_id": build_id, "p_chunks": clean},
        "append to the build log",
    )


async def finish(client: Any, build_id: str, status: str, error: str | None = None) -> None:
    await _call(
        client,
        "finish_cicd_build",
        {"p_build_id": build_id, "p_status": status, "p_error": error},
        "finish the build",
    )


async def expire_leases(client: Any) -> int:
    return int(await _call(client, "expire_cicd_build_leases", {}, "expire build leases") or 0)


async def finish_task(client: Any, task_id: str, status: str, result: str) -> None:
    await _call(
        client,
        "finish_cicd_provider_task",
        {"p_task_id": task_id, "p_status": status, "p_result": result},
        "finish the provider task",
    )


async def sync_jobs(client: Any, task_id: str, jobs: list[dict]) -> dict:
    data = await _call(
        client,
        "sync_cicd_jobs",
        {"p_task_id": task_id, "p_jobs": jobs},
        "store the provider's jobs",
    )
    return data if isinstance(data, dict) else {}
