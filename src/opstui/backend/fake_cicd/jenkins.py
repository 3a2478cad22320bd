"""FakeJenkins: a FAKE Jenkins (protocol fake for tests and the demo), not Jenkins.

Endpoints: `/api/json` (with `X-Jenkins`), `/me/api/json`, `/crumbIssuer/api/json`,
`job/…/build`, `job/…/buildWithParameters` (201 + Location of a queue item),
`/queue/item/N/api/json` (gains `executable` only after the queue delay, forgotten
`left_ttl` seconds after it left the queue, as Jenkins forgets after ~5 min),
`/queue/cancelItem`, `job/…/N/api/json`, `job/…/N/logText/progressiveText`
(`X-Text-Size`, `X-More-Data`), `job/…/N/stop`.

Auth: basic with the configured user and API token; a wrong one gets 401, none gets 403.
With `require_crumb=True` every POST needs the crumb from `crumbIssuer`, bound to the
session cookie it set (as Jenkins 2.222+ binds crumbs to the web session).
"""

from __future__ import annotations

import base64
import secrets
import time
from typing import Any

from aiohttp import web

from opstui.backend.fake_cicd.common import DEFAULT_SCRIPT, FakeBuild, FakeServer

_CLASSES = {
    "string": "StringParameterDefinition",
    "boolean": "BooleanParameterDefinition",
    "choice": "ChoiceParameterDefinition",
    "password": "PasswordParameterDefinition",
    "text": "TextParameterDefinition",
}

DEFAULT_JOBS: dict[str, dict[str, Any]] = {
    "build": {"description": "Build and unit tests"},
    "deploy": {
        "description": "Deploy a build",
        "params": [
            {"name": "ENVIRONMENT", "type": "choice", "choices": ["staging", "production"]},
            {"name": "DRY_RUN", "type": "boolean", "default": False},
            {
                "name": "FAIL",
                "type": "boolean",
                "default": False,
                "description": "demo: make it fail",
            },
        ],
    },
    "platform/api/release": {
        "description": "Release the platform API",
        "params": [{"name": "VERSION", "type": "string", "default": "1.0.0"}],
    },
}


class FakeJenkins(FakeServer):
    label = "FAKE Jenkins (demo CI server)"

    def __init__(
        self,
        *,
        user: str = "ci-bot",
        token: str | None = None,
        require_crumb: bool = False,
        jobs: dict[str, dict[str, Any]] | None = None,
        left_ttl: float = 300.0,
        **kw: Any,
    ) -> None:
        self.user = user
        self.token = token or "jenkins-fake-" + secrets.token_hex(12)
        self.require_crumb = require_crumb
        self.jobs = dict(DEFAULT_JOBS if jobs is None else jobs)
        self.left_ttl = left_ttl
        self._crumbs: dict[str, str] = {}  # session cookie -> crumb
        self.queue: dict[int, FakeBuild] = {}  # queue item id -> build
        self.numbers: dict[str, int] = {}  # job -> last build number
        self.by_number: dict[tuple[str, int], FakeBuild] = {}
        self.build_number: dict[int, int] = {}  # build id -> number
        super().__init__(**kw)

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/api/json", self.root)
        router.add_get("/me/api/json", self.me)
        router.add_get("/crumbIssuer/api/json", self.crumb)
        router.add_get("/queue/item/{id}/api/json", self.queue_item)
        router.add_post("/queue/cancelItem", self.cancel_item)
        router.add_route("*", "/{path:job/.*}", self.job_dispatch)

    # -- auth ---------------------------------------------------------------------------

    def _auth(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return web.Response(status=403, text="Authentication required")
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return web.Response(status=401, text="Invalid authorization header")
        if user != self.user or password != self.token:
            return web.Response(status=401, text="Invalid password/token for user: " + user)
        return None

    def _check_crumb(self, request: web.Request) -> web.Response | None:
        if not self.require_crumb:
            return None
        session = request.cookies.get("JSESSIONID.fake", "")
        if not session or self._crumbs.get(session) != request.headers.get("Jenkins-Crumb"):
            return web.Response(status=403, text="No valid crumb was included in the request")
        return None

    def _headers(self) -> dict[str, str]:
        return {"X-Jenkins": "2.479.1", "X-Fake": "FakeJenkins"}

    # -- root ---------------------------------------------------------------------------

    def _job_json(self, name: str) -> dict[str, Any]:
        spec = self.jobs[name]
        params = [
            {
                "name": p["name"],
                "type": _CLASSES[p.get("type", "string")],
                "description": p.get("description", ""),
                **({"choices": p["choices"]} if p.get("choices") else {}),
                **({"defaultParameterValue": {"value": p["default"]}} if "default" in p else {}),
            }
            for p in spec.get("params", [])
        ]
        return {
            "_class": "hudson.model.FreeStyleProject",
            "name": name.rsplit("/", 1)[-1],
            "fullName": name,
            "url": self.url + "".join(f"/job/{p}" for p in name.split("/")) + "/",
            "description": spec.get("description", ""),
            "property": [{"parameterDefinitions": params}] if params else [],
        }

    def _tree(self, prefix: str) -> list[dict[str, Any]]:
        children: dict[str, list[str]] = {}
        for name in sorted(self.jobs):
            if prefix and not name.startswith(prefix + "/"):
                continue
            rest = name[len(prefix) + 1 :] if prefix else name
            head = rest.split("/", 1)[0]
            children.setdefault(head, []).append(name)
        out = []
        for head, _names in children.items():
            full = f"{prefix}/{head}" if prefix else head
            if full in self.jobs:
                out.append(self._job_json(full))
            else:
                out.append(
                    {
                        "_class": "com.cloudbees.hudson.plugins.folder.Folder",
                        "name": head,
                        "fullName": full,
                        "url": self.url + "".join(f"/job/{p}" for p in full.split("/")) + "/",
                        "jobs": self._tree(full),
                    }
                )
        return out

    async def root(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        return web.json_response(
            {"mode": "NORMAL", "jobs": self._tree("")}, headers=self._headers()
        )

    async def me(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        return web.json_response({"id": self.user, "fullName": self.user}, headers=self._headers())

    async def crumb(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        session = request.cookies.get("JSESSIONID.fake") or secrets.token_hex(8)
        crumb = self._crumbs.setdefault(session, secrets.token_hex(16))
        response = web.json_response(
            {"crumbRequestField": "Jenkins-Crumb", "crumb": crumb}, headers=self._headers()
        )
        response.set_cookie("JSESSIONID.fake", session)
        return response

    # -- queue --------------------------------------------------------------------------

    def _number_of(self, build: FakeBuild) -> int | None:
        if build.id in self.build_number:
            return self.build_number[build.id]
        if not build.started():
            return None
        number = self.numbers.get(build.job, 0) + 1
        self.numbers[build.job] = number
        self.build_number[build.id] = number
        self.by_number[(build.job, number)] = build
        return number

    async def queue_item(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        build = self.queue.get(int(request.match_info["id"]))
        if build is None:
            return web.Response(status=404, text="Not Found")
        number = self._number_of(build)
        if number is not None and time.monotonic() - build.start > self.left_ttl:
            return web.Response(status=404, text="Not Found")  # left the queue long ago: forgotten
        item: dict[str, Any] = {
            "id": build.id,
            "cancelled": False,
            "why": None,
            "task": {"name": build.job},
        }
        if build.cancelled_at is not None and number is None:
            item["cancelled"] = True
        elif number is None:
            item["why"] = "Waiting for next available executor"
        else:
            item["executable"] = {"number": number, "url": self._build_url(build.job, number)}
        return web.json_response(item, headers=self._headers())

    async def cancel_item(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request) or self._check_crumb(request)) is not None:
            return denied
        build = self.queue.get(int(request.query.get("id", "0")))
        if build is not None and not build.started():
            build.cancel()
        return web.Response(status=302, headers={"Location": self.url + "/queue/"})

    def _build_url(self, job: str, number: int) -> str:
        return self.url + "".join(f"/job/{p}" for p in job.split("/")) + f"/{number}/"

    # -- jobs and builds ---------------------------------------------------------------

    async def job_dispatch(self, request: web.Request) -> web.StreamResponse:
        if (denied := self._auth(request)) is not None:
            return denied
        parts = request.match_info["path"].strip("/").split("/")
        names: list[str] = []
        i = 0
        while i + 1 < len(parts) and parts[i] == "job":
            names.append(parts[i + 1])
            i += 2
        rest = parts[i:]
        job = "/".join(names)
        if job not in self.jobs and not any(n.startswith(job + "/") for n in self.jobs):
            return web.Response(status=404, text="Not Found")
        if rest == ["api", "json"]:
            if job in self.jobs:
                return web.json_response(self._job_json(job), headers=self._headers())
            return web.json_response(
                {"name": names[-1], "fullName": job, "jobs": self._tree(job)},
                headers=self._headers(),
            )
        if request.method == "POST" and rest in (["build"], ["buildWithParameters"]):
            if (denied := self._check_crumb(request)) is not None:
                return denied
            if job not in self.jobs:
                return web.Response(status=404, text="Not Found")
            form = dict(await request.post()) if rest == ["buildWithParameters"] else {}
            form.update({k: v for k, v in request.query.items()})
            build = self.new_build(
                job,
                DEFAULT_SCRIPT + [f"Job {job} with {sorted(form)}"],
                {k: str(v) for k, v in form.items()},
            )
            self.queue[build.id] = build
            return web.Response(
                status=201, headers={"Location": f"{self.url}/queue/item/{build.id}/"}
            )
        if rest and rest[0].isdigit():
            build = self.by_number.get((job, int(rest[0])))
            if build is None:
                return web.Response(status=404, text="Not Found")
            tail = rest[1:]
            if tail == ["api", "json"]:
                phase = build.phase()
                result = {"succeeded": "SUCCESS", "failed": "FAILURE", "cancelled": "ABORTED"}.get(
                    phase
                )
                return web.json_response(
                    {
                        "number": int(rest[0]),
                        "building": phase == "running",
                        "result": result,
                        "url": self._build_url(job, int(rest[0])),
                    },
                    headers=self._headers(),
                )
            if tail == ["logText", "progressiveText"]:
                start = int(request.query.get("start", "0") or 0)
                phase = build.phase()
                data = build.log_text().encode()
                if phase != "running":
                    data += f"Finished: {dict(succeeded='SUCCESS', failed='FAILURE', cancelled='ABORTED')[phase]}\n".encode()
                chunk = data[start:]
                headers = {"X-Text-Size": str(len(data)), **self._headers()}
                if phase == "running":
                    headers["X-More-Data"] = "true"
                return web.Response(
                    body=chunk, headers=headers, content_type="text/plain", charset="utf-8"
                )
            if tail == ["stop"] and request.method == "POST":
                if (denied := self._check_crumb(request)) is not None:
                    return denied
                build.cancel()
                return web.Response(
                    status=302, headers={"Location": self._build_url(job, int(rest[0]))}
                )
        return web.Response(status=404, text="Not Found")
