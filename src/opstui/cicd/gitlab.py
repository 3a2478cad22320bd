"""GitLab CI over the REST API v4 (httpx, async).

- a job is a project + ref (`group/project@main`); its parameters are the pipeline variables
  declared at the top of `.gitlab-ci.yml` (`value`, `description`, `options`);
- trigger: POST `projects/:id/pipeline` with `ref` and `variables: [{key, value, variable_type}]`,
  which returns the pipeline (id, web_url, status): no run-id guessing;
- status: the pipeline's (`created`, `waiting_for_resource`, `preparing`, `pending`, `running`,
  `success`, `failed`, `canceling`, `canceled`, `skipped`, `manual`, `scheduled`), jobs as progress;
- logs: each job's trace, read incrementally with `Range: bytes=N-` (a server that ignores the
  range gets sliced here, so the text is never duplicated);
- cancel: POST `projects/:id/pipelines/:id/cancel`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import yaml

from opstui.cicd.base import BuildRef, BuildState, JobInfo, ProviderError
from opstui.cicd.http import ProviderHTTP

_QUEUED = {"created", "waiting_for_resource", "preparing", "pending", "scheduled", "manual"}
_DONE_JOB = {"success", "failed", "canceled", "skipped", "manual"}


def split_job(external_id: str) -> tuple[str, str]:
    project, sep, ref = external_id.rpartition("@")
    if not sep or not project or not ref:
        raise ProviderError(
            "config",
            f"GitLab job {external_id!r} is not <project>@<ref>; refresh the provider's jobs",
        )
    return project, ref


class GitLabClient:
    kind = "gitlab"

    def __init__(
        self,
        base_url: str,
        project: str,
        token: str,
        *,
        refs: list[str] | None = None,
        timeout: float = 15.0,
        verify: bool = True,
    ) -> None:
        api = base_url.rstrip("/")
        if not api.endswith("/api/v4"):
            api += "/api/v4"
        self.http = ProviderHTTP(
            "GitLab", api, headers={"PRIVATE-TOKEN": token}, timeout=timeout, verify=verify
        )
        self.project = str(project).strip("/")
        self.refs = refs
        self._offsets: dict[tuple[str, int], int] = {}
        self._headed: set[tuple[str, int]] = set()
        self._jobs: dict[str, list[dict[str, Any]]] = {}
        self._finished: dict[str, bool] = {}

    async def aclose(self) -> None:
        await self.http.aclose()

    def _p(self, project: str | None = None) -> str:
        return "/projects/" + quote(project or self.project, safe="")

    async def test_connection(self) -> str:
        data = await self.http.get_json(self._p(), what=f"project {self.project}")
        user = await self.http.get_json("/user", what="the token's user")
        fake = f" ({self.http.fake_label})" if self.http.fake_label else ""
        return f"ok: GitLab {data.get('path_with_namespace') or self.project} as {user.get('username') or '?'}{fake}"

    async def list_jobs(self) -> list[JobInfo]:
        data = await self.http.get_json(self._p(), what=f"project {self.project}")
        path = data.get("path_with_namespace") or self.project
        refs = self.refs or [data.get("default_branch") or "main"]
        jobs = []
        for ref in refs:
            definitions: list[dict[str, Any]] = []
            try:
                response = await self.http.request(
                    "GET",
                    self._p() + "/repository/files/.gitlab-ci.yml/raw",
                    params={"ref": ref},
                    what=".gitlab-ci.yml",
                )
                doc = yaml.safe_load(response.text) or {}
                variables = doc.get("variables") if isinstance(doc, dict) else None
                for name, spec in (variables or {}).items():
                    definitions.append(_definition(str(name), spec))
            except ProviderError as exc:
                if exc.kind != "not_found":
                    raise
            except yaml.YAMLError:
                pass
            jobs.append(
                JobInfo(
                    f"{path}@{ref}",
                    f"{path} @ {ref}",
                    data.get("description") or None,
                    data.get("web_url"),
                    definitions,
                )
            )
        return jobs

    async def trigger(
        self, job_external_id: str, parameters: dict[str, Any], marker: str
    ) -> BuildRef:
        project, ref = split_job(job_external_id)
        variables = [
            {
                "key": k,
                "value": ("true" if v else "false") if isinstance(v, bool) else str(v),
                "variable_type": "env_var",
            }
            for k, v in parameters.items()
        ]
        response = await self.http.request(
            "POST",
            self._p(project) + "/pipeline",
            ok=(201, 200),
            json={"ref": ref, "variables": variables},
            what=f"a pipeline on {job_external_id}",
        )
        data = response.json()
        pid = str(data["id"])
        return BuildRef(external_id=f"{project}#{pid}", number=pid, url=data.get("web_url"))

    async def resolve(self, ref: BuildRef, timeout: float) -> BuildRef:
        return ref

    @staticmethod
    def _ids(ref: BuildRef) -> tuple[str, str]:
        project, _, pid = str(ref.external_id).rpartition("#")
        return project, pid

    async def state(self, ref: BuildRef) -> BuildState:
        project, pid = self._ids(ref)
        pipeline = await self.http.get_json(
            f"{self._p(project)}/pipelines/{pid}", what=f"pipeline {pid}"
        )
        jobs_data = await self.http.get_json(
            f"{self._p(project)}/pipelines/{pid}/jobs",
            params={"per_page": 100},
            what="the pipeline's jobs",
        )
        jobs = sorted(
            (
                {
                    "id": j.get("id"),
                    "name": j.get("name"),
                    "stage": j.get("stage"),
                    "status": j.get("status"),
                }
                for j in jobs_data or []
            ),
            key=lambda j: j["id"] or 0,
        )
        self._jobs[ref.external_id] = jobs
        status = pipeline.get("status") or ""
        progress = {"jobs": jobs}
        finished = status in ("success", "failed", "canceled", "skipped")
        self._finished[ref.external_id] = finished
        if status in _QUEUED:
            return BuildState("queued", status, progress)
        if status in ("running", "canceling"):
            return BuildState("running", status, progress)
        if status == "success":
            return BuildState("succeeded", status, progress)
        if status == "canceled":
            return BuildState("cancelled", status, progress)
        return BuildState("failed", status or "unknown", progress)

    async def read_log(self, ref: BuildRef) -> tuple[str, bool]:
        project, _ = self._ids(ref)
        out: list[str] = []
        pending = False
        for job in self._jobs.get(ref.external_id, []):
            if job["status"] in (
                "created",
                "pending",
                "waiting_for_resource",
                "preparing",
                "scheduled",
                "skipped",
                "manual",
            ):
                pending = pending or job["status"] not in ("skipped", "manual")
                continue
            key = (ref.external_id, job["id"])
            offset = self._offsets.get(key, 0)
            response = await self.http.request(
                "GET",
                f"{self._p(project)}/jobs/{job['id']}/trace",
                ok=(200, 206, 416),
                headers={"Range": f"bytes={offset}-"},
                what=f"the trace of job {job['name']}",
            )
            body = b"" if response.status_code == 416 else response.content
            if response.status_code == 200 and offset:
                body = body[offset:]  # the server ignored the range
            if body and key not in self._headed:
                self._headed.add(key)
                out.append(f"── job {job['name']} (stage {job['stage']}) ──\n")
            self._offsets[key] = offset + len(body)
            out.append(body.decode("utf-8", "replace"))
            if job["status"] not in _DONE_JOB:
                pending = True
        return "".join(out), pending or not self._finished.get(ref.external_id, False)

    async def cancel(self, ref: BuildRef) -> None:
        project, pid = self._ids(ref)
        await self.http.request(
            "POST",
            f"{self._p(project)}/pipelines/{pid}/cancel",
            ok=(200, 201),
            what=f"cancelling pipeline {pid}",
        )


def _definition(name: str, spec: Any) -> dict[str, Any]:
    if isinstance(spec, dict):
        out: dict[str, Any] = {"name": name, "type": "string"}
        if spec.get("description"):
            out["description"] = str(spec["description"])
        if spec.get("value") is not None:
            out["default"] = str(spec["value"])
        if spec.get("options"):
            out["type"] = "choice"
            out["choices"] = [str(o) for o in spec["options"]]
        return out
    return {"name": name, "type": "string", "default": "" if spec is None else str(spec)}
