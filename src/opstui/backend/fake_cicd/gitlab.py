"""FakeGitLab: a FAKE GitLab CI API v4 (protocol fake for tests and the demo), not GitLab.

One project (`group/app`) whose `.gitlab-ci.yml` declares pipeline variables. Creating a
pipeline returns it at once (`created`); it goes `pending` → `running` → `success`/`failed`,
or `canceling` → `canceled` on cancel. Two jobs, `build` then `test`, each with a trace that
grows while it runs and honours `Range: bytes=N-` (206; 416 past the end) unless
`ignore_range=True`. `PRIVATE-TOKEN` auth; a wrong token gets 401.
"""

from __future__ import annotations

import secrets
import time
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from opstui.backend.fake_cicd.common import DEFAULT_SCRIPT, FakeBuild, FakeServer

CI_YAML = """\
variables:
  DEPLOY_ENV:
    value: staging
    options: [staging, production]
    description: Where to deploy
  VERSION:
    value: "1.0.0"
    description: Release to build
  FAIL:
    value: "false"
    description: "demo: make it fail"
build:
  stage: build
  script: [make]
test:
  stage: test
  script: [make test]
"""


class FakeGitLab(FakeServer):
    label = "FAKE GitLab CI (demo CI server)"

    def __init__(
        self,
        *,
        project: str = "group/app",
        token: str | None = None,
        refs: tuple[str, ...] = ("main",),
        ignore_range: bool = False,
        **kw: Any,
    ) -> None:
        self.project = project
        self.project_id = 42
        self.token = token or "glpat-fake-" + secrets.token_hex(10)
        self.refs = refs
        self.ignore_range = ignore_range
        self.ci_yaml = CI_YAML
        self.pipelines: dict[
            int, dict[str, Any]
        ] = {}  # id -> {"jobs": [FakeBuild, FakeBuild], "ref"}
        self._next_job = 500
        super().__init__(**kw)

    def routes(self, router: web.UrlDispatcher) -> None:
        p = "/api/v4/projects/{project}"
        router.add_get("/api/v4/user", self.user)
        router.add_get(p, self.get_project)
        router.add_get(p + "/repository/files/{file}/raw", self.raw_file)
        router.add_post(p + "/pipeline", self.create_pipeline)
        router.add_get(p + "/pipelines/{pid}", self.get_pipeline)
        router.add_get(p + "/pipelines/{pid}/jobs", self.pipeline_jobs)
        router.add_post(p + "/pipelines/{pid}/cancel", self.cancel_pipeline)
        router.add_get(p + "/jobs/{jid}/trace", self.trace)

    def _check(self, request: web.Request, project: bool = True) -> web.Response | None:
        if request.headers.get("PRIVATE-TOKEN") != self.token:
            return web.json_response({"message": "401 Unauthorized"}, status=401)
        if project and unquote(request.match_info.get("project", "")) not in (
            self.project,
            str(self.project_id),
        ):
            return web.json_response({"message": "404 Project Not Found"}, status=404)
        return None

    async def user(self, request: web.Request) -> web.Response:
        if (denied := self._check(request, project=False)) is not None:
            return denied
        return web.json_response({"id": 7, "username": "deploy-bot"})

    async def get_project(self, request: web.Request) -> web.Response:
        if (denied := self._check(request)) is not None:
            return denied
        return web.json_response(
            {
                "id": self.project_id,
                "path_with_namespace": self.project,
                "default_branch": "main",
                "description": "Fake project",
                "web_url": f"{self.url}/{self.project}",
            }
        )

    async def raw_file(self, request: web.Request) -> web.Response:
        if (denied := self._check(request)) is not None:
            return denied
        if unquote(request.match_info["file"]) != ".gitlab-ci.yml":
            return web.json_response({"message": "404 File Not Found"}, status=404)
        return web.Response(text=self.ci_yaml, content_type="text/plain")

    # -- pipelines ------------------------------------------------------------------------

    def _jobs(self, pipeline: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        for jid, stage, build in pipeline["jobs"]:
            phase = build.phase()
            status = {
                "queued": "pending",
                "running": "running",
                "succeeded": "success",
                "failed": "failed",
                "cancelled": "canceled",
            }[phase]
            if phase == "queued" and pipeline["cancelled"]:
                status = "canceled"
            elif phase == "queued" and stage == "test" and not self._build_done(pipeline):
                status = "created"
            out.append(
                {
                    "id": jid,
                    "name": stage,
                    "stage": stage,
                    "status": status,
                    "web_url": f"{self.url}/{self.project}/-/jobs/{jid}",
                }
            )
        return out

    def _build_done(self, pipeline: dict[str, Any]) -> bool:
        return pipeline["jobs"][0][2].phase() == "succeeded"

    def _status(self, pipeline: dict[str, Any]) -> str:
        jobs = self._jobs(pipeline)
        statuses = [j["status"] for j in jobs]
        if time.monotonic() - pipeline["created"] < 0.05 and all(
            s in ("pending", "created") for s in statuses
        ):
            return "created"
        if "failed" in statuses:
            return "failed"
        if pipeline["cancelled"]:
            return (
                "canceled"
                if all(s in ("canceled", "success", "created") for s in statuses)
                else "canceling"
            )
        if all(s == "success" for s in statuses):
            return "success"
        if "running" in statuses or "success" in statuses:
            return "running"
        return "pending"

    def _pipeline_json(self, pid: int) -> dict[str, Any]:
        pipeline = self.pipelines[pid]
        return {
            "id": pid,
            "iid": pid - 1000,
            "project_id": self.project_id,
            "ref": pipeline["ref"],
            "status": self._status(pipeline),
            "web_url": f"{self.url}/{self.project}/-/pipelines/{pid}",
        }

    async def create_pipeline(self, request: web.Request) -> web.Response:
        if (denied := self._check(request)) is not None:
            return denied
        body = await request.json()
        if body.get("ref") not in self.refs:
            return web.json_response({"message": {"base": ["Reference not found"]}}, status=400)
        variables = {v["key"]: v.get("value", "") for v in body.get("variables") or []}
        build = self.new_build("build", DEFAULT_SCRIPT[:3], variables)
        test = self.new_build("test", DEFAULT_SCRIPT[3:], variables)
        test.queue_seconds = (
            build.queue_seconds + max(1, len(build.lines)) * build.line_seconds + 0.05
        )
        build.fail = False  # the failure (if any) is in the test job
        pid = 1000 + build.id
        self.pipelines[pid] = {
            "jobs": [(self._next_job, "build", build), (self._next_job + 1, "test", test)],
            "ref": body["ref"],
            "cancelled": False,
            "created": time.monotonic(),
        }
        self._next_job += 2
        return web.json_response(self._pipeline_json(pid), status=201)

    def _pipeline(self, request: web.Request) -> tuple[int, dict[str, Any]] | None:
        pid = int(request.match_info["pid"])
        return (pid, self.pipelines[pid]) if pid in self.pipelines else None

    async def get_pipeline(self, request: web.Request) -> web.Response:
        if (denied := self._check(request)) is not None:
            return denied
        found = self._pipeline(request)
        if found is None:
            return web.json_response({"message": "404 Not found"}, status=404)
        return web.json_response(self._pipeline_json(found[0]))

    async def pipeline_jobs(self, request: web.Request) -> web.Response:
        if (denied := self._check(request)) is not None:
            return denied
        found = self._pipeline(request)
        if found is None:
            return web.json_response({"message": "404 Not found"}, status=404)
        return web.json_response(self._jobs(found[1]))

    async def cancel_pipeline(self, request: web.Request) -> web.Response:
        if (denied := self._check(request)) is not None:
            return denied
        found = self._pipeline(request)
        if found is None:
            return web.json_response({"message": "404 Not found"}, status=404)
        found[1]["cancelled"] = True
        for _jid, _stage, build in found[1]["jobs"]:
            build.cancel()
        return web.json_response(self._pipeline_json(found[0]))

    async def trace(self, request: web.Request) -> web.Response:
        if (denied := self._check(request)) is not None:
            return denied
        jid = int(request.match_info["jid"])
        for pipeline in self.pipelines.values():
            for job_id, _stage, build in pipeline["jobs"]:
                if job_id == jid:
                    return self._serve_trace(request, build)
        return web.json_response({"message": "404 Not found"}, status=404)

    def _serve_trace(self, request: web.Request, build: FakeBuild) -> web.Response:
        data = build.log_text().encode()
        header = request.headers.get("Range", "")
        if self.ignore_range or not header.startswith("bytes="):
            return web.Response(body=data, content_type="text/plain")
        start = int(header[6:].split("-", 1)[0] or 0)
        if start >= len(data):
            return web.Response(status=416, headers={"Content-Range": f"bytes */{len(data)}"})
        return web.Response(
            status=206,
            body=data[start:],
            content_type="text/plain",
            headers={"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"},
        )
