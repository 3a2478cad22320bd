"""FakeGitHub: a FAKE GitHub Actions API (protocol fake for tests and the demo), not GitHub.

One repository, `owner/repo`, with workflows whose files (served base64 by `contents/`) declare
`workflow_dispatch` inputs. Dispatch answers 200 with `workflow_run_id`/`run_url`/`html_url`
when asked for `return_run_details` — unless `old_api=True`, which answers 204 with no body,
as GitHub did before 2026-02-19 (and GHES may still). Runs go `queued` → `in_progress` →
`completed` with a conclusion; one job with steps; its log is a 302 to a short-lived URL and
exists only once the job completed. Bearer token auth; a wrong token gets 401
"Bad credentials".
"""

from __future__ import annotations

import base64
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from opstui.backend.fake_cicd.common import DEFAULT_SCRIPT, FakeBuild, FakeServer

DEFAULT_WORKFLOWS: dict[int, dict[str, Any]] = {
    101: {
        "name": "Deploy",
        "path": ".github/workflows/deploy.yml",
        "yaml": (
            "name: Deploy\n"
            "run-name: Deploy ${{ inputs.environment }} ${{ inputs.opstui_build_id }}\n"
            "on:\n"
            "  workflow_dispatch:\n"
            "    inputs:\n"
            "      environment:\n"
            "        type: choice\n"
            "        options: [staging, production]\n"
            "        default: staging\n"
            "        required: true\n"
            "      dry_run:\n"
            "        type: boolean\n"
            "        default: false\n"
            "      opstui_build_id:\n"
            "        type: string\n"
            "        required: false\n"
            "jobs:\n"
            "  deploy:\n"
            "    runs-on: ubuntu-latest\n"
        ),
    },
    102: {
        "name": "CI",
        "path": ".github/workflows/ci.yml",
        "yaml": "name: CI\non:\n  push:\n  workflow_dispatch:\njobs:\n  test:\n    runs-on: ubuntu-latest\n",
    },
    103: {
        "name": "Nightly",
        "path": ".github/workflows/nightly.yml",
        "yaml": "name: Nightly\non:\n  schedule:\n    - cron: '0 3 * * *'\njobs: {}\n",
    },
}


class FakeGitHub(FakeServer):
    label = "FAKE GitHub Actions (demo CI server)"

    def __init__(
        self,
        *,
        owner: str = "acme",
        repo: str = "app",
        token: str | None = None,
        old_api: bool = False,
        workflows: dict[int, dict[str, Any]] | None = None,
        **kw: Any,
    ) -> None:
        self.owner, self.repo = owner, repo
        self.token = token or "ghp_fake_" + secrets.token_hex(12)
        self.old_api = old_api
        self.hide_runs = False  # a dispatch whose run never shows up in the run list
        self.workflows = dict(DEFAULT_WORKFLOWS if workflows is None else workflows)
        self.runs: dict[
            int, dict[str, Any]
        ] = {}  # run id -> {"build", "workflow", "number", "ref", "title"}
        self._blob_keys: dict[str, int] = {}
        super().__init__(**kw)

    def routes(self, router: web.UrlDispatcher) -> None:
        base = "/repos/{owner}/{repo}"
        router.add_get(base, self.repository)
        router.add_get(base + "/actions/workflows", self.list_workflows)
        router.add_get(base + "/actions/workflows/{wf}", self.get_workflow)
        router.add_post(base + "/actions/workflows/{wf}/dispatches", self.dispatch)
        router.add_get(base + "/actions/workflows/{wf}/runs", self.list_runs)
        router.add_get(base + "/contents/{path:.*}", self.contents)
        router.add_get(base + "/actions/runs/{run}", self.get_run)
        router.add_get(base + "/actions/runs/{run}/jobs", self.run_jobs)
        router.add_post(base + "/actions/runs/{run}/cancel", self.cancel_run)
        router.add_get(base + "/actions/jobs/{job}/logs", self.job_logs)
        router.add_get("/_blobs/{key}", self.blob)

    def _check(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"message": "Bad credentials"}, status=401)
        if (request.match_info.get("owner"), request.match_info.get("repo")) != (
            self.owner,
            self.repo,
        ):
            return web.json_response({"message": "Not Found"}, status=404)
        return None

    def _wf(self, request: web.Request) -> tuple[int, dict[str, Any]] | None:
        key = request.match_info["wf"]
        for wid, wf in self.workflows.items():
            if key == str(wid) or key == wf["path"].rsplit("/", 1)[-1]:
                return wid, wf
        return None

    async def repository(self, request: web.Request) -> web.Response:
        if (denied := self._check(request)) is not None:
            return denied
        return web.json_response(
            {
                "full_name": f"{self.owner}/{self.repo}",
                "default_branch": "main",
                "permissions": {"admin": False, "maintain": False, "push": True, "pull": True},
            }
        )

    def _wf_json(self, wid: int, wf: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": wid,
            "name": wf["name"],
            "path": wf["path"],
            "state": "active",
            "html_url": f"{self.url}/{self.owner}/{self.repo}/actions/workflows/{wf['path'].rsplit('/', 1)[-1]}",
        }

    async def list_workflows(self, request: web.Request) -> web.Response:
        if (denied := self._check(request)) is not None:
            return denied
        items = [self._wf_json(wid, wf) for wid, wf in self.workflows.items()]
        return web.json_response({"total_count": len(items), "workflows": items})

    async def get_workflow(self, request: web.Request) -> web.Response:
        if (denied := self._check(request)) is not None:
            return denied
        found = self._wf(request)
        if found is None:
            return web.json_response({"message": "Not Found"}, status=404)
        return web.json_response(self._wf_json(*found))

    async def contents(self, request: web.Request) -> web.Response:
        if (denied := self._check(request)) is not None:
            return denied
        path = request.match_info["path"]
        for wf in self.workflows.values():
            if wf["path"] == path:
                return web.json_response(
                    {
                        "path": path,
                        "encoding": "base64",
                        "content": base64.b64encode(wf["yaml"].encode()).decode(),
                    }
                )
        return web.json_response({"message": "Not Found"}, status=404)

    async def dispatch(self, request: web.Request) -> web.Response:
        if (denied := self._check(request)) is not None:
            return denied
        found = self._wf(request)
        if found is None:
            return web.json_response({"message": "Not Found"}, status=404)
        wid, wf = found
        if "workflow_dispatch" not in wf["yaml"]:
            return web.json_response(
                {"message": "Workflow does not have 'workflow_dispatch' trigger"}, status=422
            )
        body = await request.json()
        if body.get("ref") != "main":
            return web.json_response(
                {"message": f"No ref found for: {body.get('ref')}"}, status=422
            )
        inputs = body.get("inputs") or {}
        declared = {
            line.strip().rstrip(":")
            for line in wf["yaml"].splitlines()
            if line.startswith("      ") and not line.startswith("        ")
        }
        unexpected = sorted(set(inputs) - declared)
        if unexpected:
            return web.json_response(
                {"message": f"Unexpected inputs provided: {unexpected}"}, status=422
            )
        fail = str(inputs.get("fail", "")).lower() == "true"
        build = self.new_build(
            wf["name"], DEFAULT_SCRIPT, {**inputs, **({"FAIL": "true"} if fail else {})}
        )
        run_id = 9_000_000 + build.id
        number = sum(1 for r in self.runs.values() if r["workflow"] == wid) + 1
        title = wf["name"] + "".join(
            f" {v}" for k, v in sorted(inputs.items()) if k in ("environment", "opstui_build_id")
        )
        self.runs[run_id] = {
            "build": build,
            "workflow": wid,
            "number": number,
            "ref": "main",
            "title": title,
        }
        if self.old_api or not body.get("return_run_details"):
            return web.Response(status=204)
        return web.json_response(
            {
                "workflow_run_id": run_id,
                "run_url": f"{self.url}/repos/{self.owner}/{self.repo}/actions/runs/{run_id}",
                "html_url": f"{self.url}/{self.owner}/{self.repo}/actions/runs/{run_id}",
            }
        )

    def _run_json(self, run_id: int) -> dict[str, Any]:
        run = self.runs[run_id]
        build: FakeBuild = run["build"]
        phase = build.phase()
        status = {"queued": "queued", "running": "in_progress"}.get(phase, "completed")
        conclusion = {"succeeded": "success", "failed": "failure", "cancelled": "cancelled"}.get(
            phase
        )
        return {
            "id": run_id,
            "run_number": run["number"],
            "name": self.workflows[run["workflow"]]["name"],
            "display_title": run["title"],
            "event": "workflow_dispatch",
            "head_branch": run["ref"],
            "status": status,
            "conclusion": conclusion,
            "workflow_id": run["workflow"],
            "actor": {"login": "opstui-bot"},
            "created_at": datetime.fromtimestamp(build.created_wall, UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            ),
            "html_url": f"{self.url}/{self.owner}/{self.repo}/actions/runs/{run_id}",
        }

    async def list_runs(self, request: web.Request) -> web.Response:
        if (denied := self._check(request)) is not None:
            return denied
        found = self._wf(request)
        if found is None:
            return web.json_response({"message": "Not Found"}, status=404)
        created = request.query.get("created", "")
        since = 0.0
        if created.startswith(">="):
            since = (
                datetime.strptime(created[2:], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
            )
        runs = [
            self._run_json(rid)
            for rid, r in sorted(self.runs.items(), reverse=True)
            if r["workflow"] == found[0]
            and int(r["build"].created_wall) >= int(since)
            and not self.hide_runs
        ]
        return web.json_response({"total_count": len(runs), "workflow_runs": runs})

    async def get_run(self, request: web.Request) -> web.Response:
        if (denied := self._check(request)) is not None:
            return denied
        run_id = int(request.match_info["run"])
        if run_id not in self.runs:
            return web.json_response({"message": "Not Found"}, status=404)
        return web.json_response(self._run_json(run_id))

    def _steps(self, build: FakeBuild) -> list[dict[str, Any]]:
        """Step i covers script line i; finished steps are those whose line was printed."""
        printed = len(build.log_lines())
        phase = build.phase()
        steps = []
        for i, line in enumerate(build.lines, 1):
            if phase in ("succeeded", "failed", "cancelled") and i <= printed:
                conclusion = "success"
                if phase != "succeeded" and i == min(printed, len(build.lines)):
                    conclusion = "failure" if phase == "failed" else "cancelled"
                steps.append(
                    {
                        "number": i,
                        "name": line.split(" ")[0],
                        "status": "completed",
                        "conclusion": conclusion,
                    }
                )
            elif i < printed:
                steps.append(
                    {
                        "number": i,
                        "name": line.split(" ")[0],
                        "status": "completed",
                        "conclusion": "success",
                    }
                )
            elif i == printed and phase == "running":
                steps.append(
                    {
                        "number": i,
                        "name": line.split(" ")[0],
                        "status": "in_progress",
                        "conclusion": None,
                    }
                )
            else:
                steps.append(
                    {
                        "number": i,
                        "name": line.split(" ")[0],
                        "status": "queued",
                        "conclusion": None,
                    }
                )
        return steps

    async def run_jobs(self, request: web.Request) -> web.Response:
        if (denied := self._check(request)) is not None:
            return denied
        run_id = int(request.match_info["run"])
        if run_id not in self.runs:
            return web.json_response({"message": "Not Found"}, status=404)
        run = self._run_json(run_id)
        build: FakeBuild = self.runs[run_id]["build"]
        if run["status"] == "queued":
            return web.json_response({"total_count": 0, "jobs": []})
        job = {
            "id": run_id * 10 + 1,
            "run_id": run_id,
            "name": "deploy",
            "status": run["status"],
            "conclusion": run["conclusion"],
            "steps": self._steps(build),
        }
        return web.json_response({"total_count": 1, "jobs": [job]})

    async def cancel_run(self, request: web.Request) -> web.Response:
        if (denied := self._check(request)) is not None:
            return denied
        run_id = int(request.match_info["run"])
        if run_id not in self.runs:
            return web.json_response({"message": "Not Found"}, status=404)
        build: FakeBuild = self.runs[run_id]["build"]
        if build.phase() not in ("queued", "running"):
            return web.json_response(
                {"message": "Cannot cancel a workflow run that is completed."}, status=409
            )
        build.cancel()
        return web.json_response({}, status=202)

    async def job_logs(self, request: web.Request) -> web.Response:
        if (denied := self._check(request)) is not None:
            return denied
        run_id = int(request.match_info["job"]) // 10
        if run_id not in self.runs or self._run_json(run_id)["status"] != "completed":
            return web.json_response({"message": "Not Found"}, status=404)
        key = secrets.token_hex(8)
        self._blob_keys[key] = run_id
        return web.Response(
            status=302,
            headers={"Location": f"{self.url}/_blobs/{key}?expires={int(time.time()) + 60}"},
        )

    async def blob(self, request: web.Request) -> web.Response:
        # The download URL carries its own signature; an Authorization header is not needed
        # (and must not be sent there: the real one is another host).
        if "Authorization" in request.headers:
            return web.Response(status=400, text="Authorization header sent to the blob store")
        run_id = self._blob_keys.pop(request.match_info["key"], None)
        if run_id is None:
            return web.Response(status=404, text="expired")
        build: FakeBuild = self.runs[run_id]["build"]
        stamp = datetime.fromtimestamp(build.created_wall, UTC).strftime(
            "%Y-%m-%dT%H:%M:%S.0000000Z"
        )
        text = "".join(f"{stamp} {line}" for line in build.log_lines())
        return web.Response(text=text, content_type="text/plain")
