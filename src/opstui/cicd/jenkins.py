"""Jenkins over its REST API (httpx, async).

- trigger: POST `job/…/buildWithParameters` (or `build` for a job without parameters); Jenkins
  answers 201 with `Location: …/queue/item/N/`;
- the queue item gains `executable.number`/`url` once a build starts; items are remembered only
  ~5 minutes after they leave the queue, so the runner resolves it right away and keeps polling
  quickly (0.2 s, backing off to 1 s);
- status from the build's JSON (`building`, `result`), the live log from
  `logText/progressiveText?start=N` (`X-Text-Size` is the next offset, `X-More-Data` says more);
- cancel: `queue/cancelItem?id=N` while queued, `…/N/stop` once running;
- API-token basic auth. An API token is exempt from CSRF crumbs; a crumb is fetched from
  `crumbIssuer/api/json` only when the provider is configured so (`crumb: true`) or a POST gets
  a 403 that asks for one, and the session cookie it is bound to is kept by the client.

URLs Jenkins returns (Location, executable.url) are reduced to their path and joined to the
configured base URL: the runner never follows Jenkins to another host.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import quote, urlsplit

from opstui.cicd.base import BuildRef, BuildState, JobInfo, ProviderError
from opstui.cicd.http import ProviderHTTP

_PARAM_TYPES = {
    "StringParameterDefinition": "string",
    "TextParameterDefinition": "text",
    "BooleanParameterDefinition": "boolean",
    "ChoiceParameterDefinition": "choice",
    "PasswordParameterDefinition": "password",
}
_RESULTS = {
    "SUCCESS": "succeeded",
    "UNSTABLE": "failed",
    "FAILURE": "failed",
    "NOT_BUILT": "failed",
    "ABORTED": "cancelled",
}


def _tree(depth: int) -> str:
    params = (
        "property[parameterDefinitions[name,type,description,choices,defaultParameterValue[value]]]"
    )
    inner = f"name,fullName,url,description,_class,{params}"
    if depth > 0:
        inner += f",jobs[{_tree(depth - 1)}]"
    return inner


def job_path(full_name: str) -> str:
    """`folder/sub/name` -> `/job/folder/job/sub/job/name/`."""
    parts = [p for p in full_name.strip("/").split("/") if p]
    return "".join(f"/job/{quote(p, safe='')}" for p in parts) + "/"


def _path_of(url: str) -> str:
    path = urlsplit(url).path or "/"
    return path if path.endswith("/") else path + "/"


class JenkinsClient:
    kind = "jenkins"

    def __init__(
        self,
        base_url: str,
        user: str,
        token: str,
        *,
        crumb: bool = False,
        folder: str = "",
        timeout: float = 15.0,
        verify: bool = True,
    ) -> None:
        self.http = ProviderHTTP(
            "Jenkins", base_url, auth=(user, token), timeout=timeout, verify=verify
        )
        self.user = user
        self.folder = folder.strip("/")
        self._use_crumb = crumb
        self._crumb: tuple[str, str] | None = None
        self._log_offsets: dict[str, int] = {}
        self.poll_interval = 0.2

    async def aclose(self) -> None:
        await self.http.aclose()

    # -- connection and jobs ----------------------------------------------------------------

    async def test_connection(self) -> str:
        response = await self.http.request(
            "GET", "/api/json", params={"tree": "mode"}, what="the Jenkins root"
        )
        version = response.headers.get("x-jenkins")
        if version is None:
            raise ProviderError(
                "protocol",
                f"{self.http.base_url} answered, but it is not Jenkins (no X-Jenkins header)",
            )
        me = await self.http.get_json(
            "/me/api/json", params={"tree": "id"}, what="the signed-in user"
        )
        fake = f" ({self.http.fake_label})" if self.http.fake_label else ""
        return f"ok: Jenkins {version} as {me.get('id') or self.user}{fake}"

    async def list_jobs(self) -> list[JobInfo]:
        root = job_path(self.folder) if self.folder else "/"
        data = await self.http.get_json(
            root + "api/json", params={"tree": f"jobs[{_tree(4)}]"}, what="the job list"
        )
        jobs: list[JobInfo] = []

        def walk(nodes: list[dict[str, Any]], prefix: str) -> None:
            for node in nodes or []:
                name = node.get("name") or ""
                full = node.get("fullName") or (f"{prefix}/{name}" if prefix else name)
                if isinstance(node.get("jobs"), list):  # a folder (or multibranch project)
                    walk(node["jobs"], full)
                    continue
                definitions: list[dict[str, Any]] = []
                for prop in node.get("property") or []:
                    for d in (prop or {}).get("parameterDefinitions") or []:
                        definitions.append(_definition(d))
                jobs.append(
                    JobInfo(
                        full, full, node.get("description") or None, node.get("url"), definitions
                    )
                )

        walk(data.get("jobs") or [], self.folder)
        return jobs

    # -- builds -----------------------------------------------------------------------------

    async def _post(self, url: str, *, ok: tuple[int, ...], what: str, **kwargs: Any):
        headers = dict(kwargs.pop("headers", {}) or {})
        if self._use_crumb:
            headers.update(await self._crumb_header())
        try:
            return await self.http.request("POST", url, ok=ok, what=what, headers=headers, **kwargs)
        except ProviderError as exc:
            if exc.kind != "forbidden" or self._use_crumb:
                raise
        # A 403 on a POST: Jenkins may want a crumb (user+password auth, or an old core).
        self._use_crumb = True
        headers.update(await self._crumb_header())
        return await self.http.request("POST", url, ok=ok, what=what, headers=headers, **kwargs)

    async def _crumb_header(self) -> dict[str, str]:
        if self._crumb is None:
            data = await self.http.get_json("/crumbIssuer/api/json", what="a CSRF crumb")
            self._crumb = (
                data.get("crumbRequestField") or "Jenkins-Crumb",
                data.get("crumb") or "",
            )
        return {self._crumb[0]: self._crumb[1]}

    async def trigger(
        self, job_external_id: str, parameters: dict[str, Any], marker: str
    ) -> BuildRef:
        path = job_path(job_external_id)
        what = f"job {job_external_id}"
        if parameters:
            data = {k: _form_value(v) for k, v in parameters.items()}
            response = await self._post(
                path + "buildWithParameters", ok=(201, 302, 303), what=what, data=data
            )
        else:
            response = await self._post(path + "build", ok=(201, 302, 303), what=what)
        location = response.headers.get("location", "")
        if "/queue/item/" not in location:
            raise ProviderError(
                "protocol",
                f"Jenkins accepted {what} but sent no queue item (Location: {location[:80] or 'none'})",
            )
        queue_path = _path_of(location)
        return BuildRef(queue_id=queue_path)

    async def resolve(self, ref: BuildRef, timeout: float) -> BuildRef:
        if ref.external_id:
            return ref
        assert ref.queue_id
        deadline = time.monotonic() + timeout
        interval = self.poll_interval
        why = ""
        while True:
            try:
                item = await self.http.get_json(ref.queue_id + "api/json", what="the queue item")
            except ProviderError as exc:
                if exc.kind == "not_found":
                    raise ProviderError(
                        "protocol",
                        f"Jenkins forgot queue item {_queue_number(ref.queue_id)} before it started a build "
                        "(items expire ~5 min after leaving the queue)",
                    ) from None
                raise
            if item.get("cancelled"):
                raise ProviderError(
                    "cancelled", f"Jenkins queue item {_queue_number(ref.queue_id)} was cancelled"
                )
            executable = item.get("executable") or {}
            if executable.get("number") is not None:
                ref.number = str(executable["number"])
                ref.url = executable.get("url") or (self.http.base_url + ref.queue_id)
                ref.external_id = _path_of(ref.url)
                return ref
            why = item.get("why") or why
            if time.monotonic() >= deadline:
                raise ProviderError(
                    "timeout",
                    f"Jenkins queue item {_queue_number(ref.queue_id)} got no build within {timeout:.0f} s"
                    + (f" (Jenkins says: {why.strip()[:120]})" if why else ""),
                )
            await asyncio.sleep(interval)
            interval = min(1.0, interval * 1.5)

    async def state(self, ref: BuildRef) -> BuildState:
        if not ref.external_id:
            return BuildState("queued")
        data = await self.http.get_json(
            ref.external_id + "api/json",
            params={"tree": "building,result,number,displayName"},
            what="the build",
        )
        if data.get("building") or data.get("result") is None:
            return BuildState("running")
        result = str(data.get("result"))
        return BuildState(_RESULTS.get(result, "failed"), result)

    async def read_log(self, ref: BuildRef) -> tuple[str, bool]:
        if not ref.external_id:
            return "", True
        start = self._log_offsets.get(ref.external_id, 0)
        response = await self.http.request(
            "GET",
            ref.external_id + "logText/progressiveText",
            params={"start": start},
            what="the build log",
        )
        size = response.headers.get("x-text-size")
        self._log_offsets[ref.external_id] = (
            int(size) if size and size.isdigit() else start + len(response.content)
        )
        more = response.headers.get("x-more-data", "").lower() == "true"
        return response.content.decode("utf-8", "replace"), more

    async def cancel(self, ref: BuildRef) -> None:
        if ref.external_id:
            await self._post(
                ref.external_id + "stop", ok=(200, 204, 302, 303), what="stopping the build"
            )
        elif ref.queue_id:
            # Old cores answer 404 to a successful cancelItem: accept it.
            await self._post(
                "/queue/cancelItem",
                ok=(200, 204, 302, 303, 404),
                what="cancelling the queue item",
                params={"id": _queue_number(ref.queue_id)},
            )


def _queue_number(queue_path: str) -> str:
    return queue_path.rstrip("/").rsplit("/", 1)[-1]


def _form_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _definition(d: dict[str, Any]) -> dict[str, Any]:
    kind = _PARAM_TYPES.get(str(d.get("type")), "string")
    out: dict[str, Any] = {"name": d.get("name"), "type": kind}
    if d.get("description"):
        out["description"] = d["description"]
    default = (d.get("defaultParameterValue") or {}).get("value")
    if default is not None and kind != "password":
        out["default"] = default
    if kind == "choice":
        out["choices"] = list(d.get("choices") or [])
        if "default" not in out and out["choices"]:
            out["default"] = out["choices"][0]
    return out
