"""GitHub Actions over the REST API (httpx, async), github.com or Enterprise.

- jobs are the repository's workflows whose file has a `workflow_dispatch` trigger; its
  `inputs` become the parameter definitions;
- trigger: POST `actions/workflows/{id}/dispatches` with `return_run_details: true`; since
  2026-02-19 GitHub answers 200 with `workflow_run_id`, `run_url`, `html_url`. An older API
  (GHES) answers 204 with nothing: then the run is found without racing other dispatches —
  dispatches of one workflow from this runner are serialised, the candidates are runs of that
  workflow by `workflow_dispatch` on that ref created since the dispatch (server clock), not
  already recorded for another build (`taken`), and, when the workflow has an input named
  `opstui_build_id` (put it in `run-name`), the one whose title carries this build's marker;
- status and conclusion from `runs/{id}`, jobs and steps from `runs/{id}/jobs` as progress;
- logs: REST has no live log. Step transitions are written as they happen, and each job's log
  (`jobs/{id}/logs`, a 302 to a URL valid one minute) is fetched once the job completes;
- cancel: POST `runs/{id}/cancel`.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import yaml

from opstui.cicd.base import BuildRef, BuildState, JobInfo, ProviderError
from opstui.cicd.http import ProviderHTTP

MARKER_INPUT = "opstui_build_id"
_DISPATCH_LOCKS: dict[tuple[str, str], asyncio.Lock] = {}
_SUCCESS = {"success", "neutral", "skipped"}


class GitHubClient:
    kind = "github"

    def __init__(
        self,
        api_url: str,
        owner: str,
        repo: str,
        token: str,
        *,
        ref: str | None = None,
        api_version: str = "2022-11-28",
        timeout: float = 15.0,
        verify: bool = True,
        taken: Callable[[], Awaitable[set[str]]] | None = None,
    ) -> None:
        self.http = ProviderHTTP(
            "GitHub",
            api_url,
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": api_version,
                "User-Agent": "opstui",
            },
            timeout=timeout,
            verify=verify,
        )
        self.owner, self.repo = owner, repo
        self.ref = ref
        self.taken = taken
        self.find_timeout = 60.0
        self.poll_interval = 0.25
        self._repo_path = f"/repos/{quote(owner, safe='')}/{quote(repo, safe='')}"
        self._jobs: dict[str, list[dict[str, Any]]] = {}
        self._seen_steps: dict[str, set[tuple]] = {}
        self._logged_jobs: dict[str, set[int]] = {}
        self._finished: dict[str, bool] = {}

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _default_ref(self) -> str:
        if self.ref:
            return self.ref
        data = await self.http.get_json(
            self._repo_path, what=f"repository {self.owner}/{self.repo}"
        )
        self.ref = data.get("default_branch") or "main"
        return self.ref

    async def test_connection(self) -> str:
        data = await self.http.get_json(
            self._repo_path, what=f"repository {self.owner}/{self.repo}"
        )
        perms = data.get("permissions") or {}
        if perms and not (perms.get("push") or perms.get("admin") or perms.get("maintain")):
            raise ProviderError(
                "forbidden",
                f"GitHub: the token can read {self.owner}/{self.repo} but not dispatch workflows "
                "(needs actions:write / push)",
            )
        fake = f" ({self.http.fake_label})" if self.http.fake_label else ""
        return f"ok: GitHub {data.get('full_name') or self.owner + '/' + self.repo}{fake}"

    async def list_jobs(self) -> list[JobInfo]:
        ref = await self._default_ref()
        data = await self.http.get_json(
            self._repo_path + "/actions/workflows",
            params={"per_page": 100},
            what="the workflow list",
        )
        jobs: list[JobInfo] = []
        for wf in data.get("workflows") or []:
            if wf.get("state") not in (None, "active"):
                continue
            path = wf.get("path") or ""
            try:
                content = await self.http.get_json(
                    self._repo_path + "/contents/" + quote(path),
                    params={"ref": ref},
                    what=f"workflow {path}",
                )
                text = base64.b64decode(content.get("content") or "").decode("utf-8", "replace")
                doc = yaml.safe_load(text) or {}
            except (ProviderError, ValueError, yaml.YAMLError):
                continue
            on = doc.get("on", doc.get(True))  # YAML 1.1 reads a bare `on:` as True
            if isinstance(on, str):
                on = {on: None}
            elif isinstance(on, list):
                on = {k: None for k in on}
            if not isinstance(on, dict) or "workflow_dispatch" not in on:
                continue
            inputs = ((on.get("workflow_dispatch") or {}).get("inputs")) or {}
            definitions = [
                _definition(name, spec or {})
                for name, spec in inputs.items()
                if name != MARKER_INPUT
            ]
            jobs.append(
                JobInfo(
                    str(wf["id"]), wf.get("name") or path, path, wf.get("html_url"), definitions
                )
            )
        return jobs

    async def trigger(
        self, job_external_id: str, parameters: dict[str, Any], marker: str
    ) -> BuildRef:
        ref = await self._default_ref()
        inputs = {k: _input_value(v) for k, v in parameters.items()}
        url = f"{self._repo_path}/actions/workflows/{quote(job_external_id, safe='')}"
        lock = _DISPATCH_LOCKS.setdefault((self._repo_path, job_external_id), asyncio.Lock())
        async with lock:
            has_marker = MARKER_INPUT in await self._inputs_of(url)
            if has_marker:
                inputs[MARKER_INPUT] = marker
            body = {"ref": ref, "inputs": inputs, "return_run_details": True}
            response = await self.http.request(
                "POST",
                url + "/dispatches",
                ok=(200, 204),
                json=body,
                what=f"workflow {job_external_id}",
            )
            if response.status_code == 200:
                try:
                    data = response.json()
                except ValueError:
                    data = {}
                run_id = data.get("workflow_run_id") or data.get("id")
                if run_id:
                    return BuildRef(
                        external_id=str(run_id), number=str(run_id), url=data.get("html_url")
                    )
            server_now = _server_time(response.headers.get("date"))
            return await self._find_run(
                url, ref, server_now - timedelta(seconds=5), marker if has_marker else None
            )

    async def _inputs_of(self, workflow_url: str) -> set[str]:
        # The workflow's dispatch inputs, as recorded by the last refresh, are not at hand here;
        # reading the file costs one request and only matters on the 204 path.
        try:
            wf = await self.http.get_json(workflow_url, what="the workflow")
            content = await self.http.get_json(
                self._repo_path + "/contents/" + quote(wf.get("path") or ""),
                params={"ref": self.ref},
                what="the workflow file",
            )
            doc = yaml.safe_load(base64.b64decode(content.get("content") or "").decode()) or {}
            on = doc.get("on", doc.get(True)) or {}
            return (
                set(((on.get("workflow_dispatch") or {}).get("inputs") or {}).keys())
                if isinstance(on, dict)
                else set()
            )
        except (ProviderError, ValueError, yaml.YAMLError, AttributeError):
            return set()

    async def _find_run(
        self, workflow_url: str, ref: str, since: datetime, marker: str | None
    ) -> BuildRef:
        deadline = time.monotonic() + self.find_timeout
        params = {
            "event": "workflow_dispatch",
            "branch": ref,
            "per_page": 50,
            "created": ">=" + since.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        while time.monotonic() < deadline:
            data = await self.http.get_json(
                workflow_url + "/runs", params=params, what="the workflow's runs"
            )
            taken = await self.taken() if self.taken else set()
            candidates = [
                r for r in data.get("workflow_runs") or [] if str(r.get("id")) not in taken
            ]
            if marker is not None:
                candidates = [
                    r
                    for r in candidates
                    if marker in (r.get("display_title") or r.get("name") or "")
                ]
            if candidates:
                run = min(candidates, key=lambda r: (r.get("created_at") or "", r.get("id") or 0))
                return BuildRef(
                    external_id=str(run["id"]),
                    number=str(run.get("run_number") or run["id"]),
                    url=run.get("html_url"),
                )
            await asyncio.sleep(self.poll_interval)
        raise ProviderError(
            "timeout",
            f"GitHub accepted the dispatch but no new run of it appeared within {self.find_timeout:.0f} s",
        )

    async def resolve(self, ref: BuildRef, timeout: float) -> BuildRef:
        return ref

    async def state(self, ref: BuildRef) -> BuildState:
        run_path = f"{self._repo_path}/actions/runs/{ref.external_id}"
        run = await self.http.get_json(run_path, what=f"run {ref.external_id}")
        jobs_data = await self.http.get_json(
            run_path + "/jobs", params={"per_page": 100}, what="the run's jobs"
        )
        jobs = [
            {
                "id": j.get("id"),
                "name": j.get("name"),
                "status": j.get("status"),
                "conclusion": j.get("conclusion"),
                "steps": [
                    {
                        "number": s.get("number"),
                        "name": s.get("name"),
                        "status": s.get("status"),
                        "conclusion": s.get("conclusion"),
                    }
                    for s in j.get("steps") or []
                ],
            }
            for j in jobs_data.get("jobs") or []
        ]
        self._jobs[str(ref.external_id)] = jobs
        if run.get("run_number") and ref.number != str(run["run_number"]):
            ref.number = str(run["run_number"])
        ref.url = ref.url or run.get("html_url")
        status, conclusion = run.get("status"), run.get("conclusion")
        progress = {"jobs": jobs}
        if status != "completed":
            self._finished[str(ref.external_id)] = False
            return BuildState(
                "queued" if status in ("queued", "waiting", "requested", "pending") else "running",
                status or "",
                progress,
            )
        self._finished[str(ref.external_id)] = True
        if conclusion in _SUCCESS:
            return BuildState("succeeded", conclusion, progress)
        if conclusion == "cancelled":
            return BuildState("cancelled", conclusion, progress)
        return BuildState("failed", conclusion or "unknown", progress)

    async def read_log(self, ref: BuildRef) -> tuple[str, bool]:
        key = str(ref.external_id)
        jobs = self._jobs.get(key, [])
        seen = self._seen_steps.setdefault(key, set())
        logged = self._logged_jobs.setdefault(key, set())
        out: list[str] = []
        for job in jobs:
            mark = ("job", job["id"], job["status"], job["conclusion"])
            if mark not in seen:
                seen.add(mark)
                out.append(
                    f"[job {job['name']}] {job['status']}{' ' + job['conclusion'] if job['conclusion'] else ''}\n"
                )
            for step in job["steps"]:
                mark = ("step", job["id"], step["number"], step["status"], step["conclusion"])
                if mark not in seen and step["status"] != "queued":
                    seen.add(mark)
                    end = f" {step['conclusion']}" if step["conclusion"] else ""
                    out.append(
                        f"[job {job['name']}] step {step['number']} {step['name']}: {step['status']}{end}\n"
                    )
            if job["status"] == "completed" and job["id"] not in logged:
                logged.add(job["id"])
                try:
                    response = await self.http.fetch_redirected(
                        f"{self._repo_path}/actions/jobs/{job['id']}/logs",
                        what=f"the log of job {job['name']}",
                    )
                    text = response.content.decode("utf-8", "replace")
                    out.append(text if text.endswith("\n") or not text else text + "\n")
                except ProviderError as exc:
                    out.append(f"[job {job['name']}] log not available: {exc}\n")
        finished = self._finished.get(key, False)
        all_logged = all(j["id"] in logged for j in jobs if j["status"] == "completed")
        return "".join(out), not (finished and all_logged)

    async def cancel(self, ref: BuildRef) -> None:
        if ref.external_id:
            await self.http.request(
                "POST",
                f"{self._repo_path}/actions/runs/{ref.external_id}/cancel",
                ok=(202, 200, 409),
                what=f"cancelling run {ref.external_id}",
            )


def _server_time(date_header: str | None) -> datetime:
    if date_header:
        try:
            parsed = email.utils.parsedate_to_datetime(date_header)
            if parsed is not None:
                return parsed.astimezone(UTC)
        except (TypeError, ValueError):
            pass
    return datetime.now(UTC)


def _input_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _definition(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    kind = spec.get("type") or "string"
    kind = {"environment": "string"}.get(kind, kind)
    out: dict[str, Any] = {
        "name": name,
        "type": kind if kind in ("string", "boolean", "choice", "number") else "string",
    }
    if spec.get("description"):
        out["description"] = str(spec["description"])
    if spec.get("required"):
        out["required"] = True
    if "default" in spec and spec["default"] is not None:
        out["default"] = spec["default"]
    if kind == "choice":
        out["choices"] = [str(o) for o in spec.get("options") or []]
    return out
