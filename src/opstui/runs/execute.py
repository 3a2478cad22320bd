"""One deployment run, start to finish, on the runner's machine.

    execution = RunExecution(client, run_row, pool=pool, workdir=Path(...))
    status = await execution.execute()      # 'succeeded' | 'failed' | 'cancelled' | 'lost'
    execution.request_cancel()              # any time (a cancel request, SIGTERM)

What it does, in order:
1. reads the deployment's environment values, the target hosts and the
   repository (a private repository's token through `get_git_provider_tokens`;
   host passwords through `get_host_secret`, by the SSH pool);
2. fetches the repository once, with the `git` command, into a temp dir;
3. per batch (rows made by the claim), per host at once: writes the scripts
   to `.opstui/runs/<run id>/` under the login directory (POSIX: on the first
   script's own channel, see `posix_files`; Windows: over SFTP), runs them
   in order (parameters quoted; environment values sent on the command's
   stdin, so they are never on a command line, in a file or in the audit),
   stopping at the first failing script; Windows hosts through PowerShell;
4. stops the rollout once more than `max_failures` hosts failed: later
   batches become `skipped`;
5. finishes the run.

Output streams through a `LogSink` into `append_run_log`; host results
(`HostRecorder` -> `update_run_hosts`) and `ssh_audit` rows (`AuditBatch`) go
in batches every 200 ms, not one call per host. Heartbeats extend the
lease; a lost lease stops the hosts and ends the run as `lost`, writing nothing
more. No Supabase key or token is ever sent to a host.
"""

from __future__ import annotations

import asyncio
import base64
import codecs
import contextlib
import logging
import re
import shlex
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import asyncssh

from opstui.runs import api
from opstui.runs.gitfetch import GitFetchError, fetch, safe_url
from opstui.runs.logsink import LogSink
from opstui.ssh.errors import HostKeyUnknown, SshError, classify
from opstui.ssh.exec import AuditRecord
from opstui.ssh.pool import ConnectionPool
from opstui.ssh.target import SshTarget

log = logging.getLogger(__name__)

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
STOP_GRACE = 2.0  # seconds between SIGTERM and SIGKILL / closing the channel


class LeaseLost(Exception):
    """This runner no longer holds the run (its lease lapsed, or it was swept as lost)."""


@dataclass
class HostOutcome:
    host_id: str
    status: str  # succeeded | failed | unreachable | cancelled
    exit_code: int | None = None
    error: str | None = None
    cleaned: bool = False  # the last script removed the run's directory itself


def parse_batch_size(text: str | None, total: int) -> int:
    """Ansible's serial: '2' or '25%' (at least one host); anything else: all at once."""
    text = str(text or "100%").strip()
    if text.endswith("%") and text[:-1].isdigit():
        return max(1, total * int(text[:-1]) // 100)
    if text.isdigit():
        return max(1, int(text))
    return max(1, total)


def remote_dir(run_id: str) -> str:
    return f".opstui/runs/{run_id}"


def posix_command(
    directory: str, script: str, params: str, index: int, *, last: bool = False,
    make: bool = False,
) -> str:  # fmt: skip
    """The POSIX command for one script: environment from stdin, then exec (pid kept for kill).

    The last script also removes the run's directory when it ends, saving a channel per host.
    With `make`, it first creates the run's directory; its stdin then starts with the
    script files (`posix_files`), written before the environment is read.
    """
    args = " ".join(shlex.quote(a) for a in shlex.split(params or ""))
    path = "./" + script
    runner = "python3 " if script.endswith(".py") else ""
    call = f"{runner}{shlex.quote(path)}{' ' + args if args else ''}"
    where = shlex.quote(directory)
    mkdir = f"mkdir -p {where} && " if make else ""
    if last:
        return (
            f'h=$PWD && {mkdir}cd {where} && echo $$ > .pid-{index} && eval "$(cat)" && '
            f'{{ {call}; rc=$?; cd "$h" && rm -rf {where}; exit $rc; }}'
        )
    return f'{mkdir}cd {where} && echo $$ > .pid-{index} && eval "$(cat)" && exec {call}'


def posix_files(files: dict[str, bytes]) -> bytes | None:
    """Shell that writes the run's scripts (mode 755) in the current directory, for the
    first script's stdin: the upload rides on the channel that runs it (no SFTP channel,
    no extra process). None when a file cannot travel as a shell word (a NUL byte, or not
    UTF-8): SFTP then uploads them. A failed write ends the command with status 97."""
    lines = []
    for name, data in files.items():
        if b"\0" in data:
            return None
        try:
            text = data.decode()
        except UnicodeDecodeError:
            return None
        where = shlex.quote(name)
        parent = str(PurePosixPath(name).parent)
        mkdir = f"mkdir -p {shlex.quote(parent)} && " if parent != "." else ""
        lines.append(
            f"{{ {mkdir}printf '%s' {shlex.quote(text)} > {where}; }} || "
            f"{{ echo {shlex.quote(f'opstui: cannot write {name} in the run directory')} >&2; "
            "exit 97; }\n"
        )
    if files:  # one chmod for all: a process less per script on every host
        names = " ".join(shlex.quote(n) for n in files)
        lines.append(f"chmod 755 {names} || {{ echo 'opstui: cannot chmod the run scripts' >&2; exit 97; }}\n")
    return "".join(lines).encode()


def posix_env(env: dict[str, str]) -> bytes:
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()).encode()


def _ps_quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def powershell_script(directory: str, script: str, params: str, index: int) -> str:
    """The PowerShell for one script: the same contract as `posix_command`."""
    args = " ".join(_ps_quote(a) for a in shlex.split(params or "", posix=True))
    path = ".\\" + script.replace("/", "\\")
    call = f"& {_ps_quote(path)} {args}".rstrip()
    if script.endswith(".py"):
        call = f"& python {_ps_quote(path)} {args}".rstrip()
    return "\n".join([
        "$ErrorActionPreference = 'Stop'",
        f"Set-Location -LiteralPath {_ps_quote(directory)}",
        f"Set-Content -LiteralPath '.pid-{index}' -Value $PID",
        "foreach ($line in ([Console]::In.ReadToEnd() -split \"`n\")) {",
        "  $line = $line.Trim(); if (-not $line) { continue }",
        "  $k, $v = $line -split '=', 2",
        "  [Environment]::SetEnvironmentVariable($k, "
        "[Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($v)), 'Process')",
        "}",
        call,
        "exit $LASTEXITCODE",
    ])  # fmt: skip


def powershell_env(env: dict[str, str]) -> bytes:
    return "".join(
        f"{k}={base64.b64encode(v.encode()).decode()}\n" for k, v in env.items()
    ).encode()


def _kill_command(target: SshTarget, directory: str, index: int) -> str:
    if target.is_windows:
        return target.remote_command(
            f"$p = Get-Content -LiteralPath '{directory}\\.pid-{index}' -ErrorAction SilentlyContinue; "
            "if ($p) { taskkill /T /F /PID $p | Out-Null }"
        )
    pidfile = shlex.quote(f"{directory}/.pid-{index}")
    return (
        f'p=$(cat {pidfile} 2>/dev/null) && [ -n "$p" ] && '
        f"{{ kill -TERM -$p 2>/dev/null || kill -TERM $p 2>/dev/null; sleep {STOP_GRACE:g}; "
        f"kill -KILL -$p 2>/dev/null || kill -KILL $p 2>/dev/null; }}; true"
    )


def _host_error(exc: Exception, target: SshTarget) -> SshError:
    error = exc if isinstance(exc, SshError) else classify(exc, target)
    if isinstance(error, HostKeyUnknown):
        return SshError(
            f"{target.label}: host key unknown ({error.key_type} {error.fingerprint}); a runner "
            f"cannot ask: verify the fingerprint, then trust it as the runner's user with "
            f"`opstui hosts check --hosts {target.name} --accept-new` (or start the runner "
            "with --accept-new)",
            host=target.label,
            kind="host_key_unknown",
        )
    return error


class HostRecorder:
    """Host results, sent in batches through `update_run_hosts` (one call, one recount of
    the run's progress, every `interval`), not two `update_run_host` calls per host.

    A host that finishes before its `running` was sent is sent once, finished, with its
    start time. Times travel as "seconds ago", so they are the events' times on the
    database's clock. Falls back to `update_run_host` on a database without the batch
    function. A lease refusal goes to `on_lease_lost`; other failures are logged.
    """

    def __init__(self, client, run_id: str, *, on_lease_lost, interval: float = 0.2) -> None:
        self.client, self.run_id = client, run_id
        self.on_lease_lost = on_lease_lost
        self.interval = interval
        self._pending: dict[str, dict] = {}  # host id -> its latest unsent change
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task | None = None
        self._batched = True
        self.calls = 0

    def record(self, host_id: str, status: str, code: int | None, error: str | None) -> None:
        now = time.monotonic()
        change = {"host_id": host_id, "status": status, "exit_code": code, "error": error, "at": now}
        earlier = self._pending.get(host_id)
        if earlier is not None and earlier["status"] == "running" and status != "running":
            change["started"] = earlier["at"]
        self._pending[host_id] = change
        self._wake.set()
        if self._task is None:
            self._task = asyncio.ensure_future(self._flush_forever())

    async def _flush_forever(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.interval)  # gather the hosts that change together
            self._wake.clear()
            await asyncio.shield(self.flush())

    async def flush(self) -> None:
        async with self._lock:
            changes, self._pending = list(self._pending.values()), {}
            if not changes:
                return
            now = time.monotonic()
            try:
                if self._batched:
                    try:
                        await self._send_batch(changes, now)
                        return
                    except api.RunsError as exc:
                        if exc.code not in ("PGRST202", "42883"):
                            raise
                        self._batched = False  # an older database: one call per change
                for change in changes:
                    if "started" in change:
                        await api.update_host(self.client, self.run_id, change["host_id"],
                                              "running", None, None)  # fmt: skip
                    await api.update_host(self.client, self.run_id, change["host_id"],
                                          change["status"], change["exit_code"], change["error"])  # fmt: skip
                    self.calls += 1
            except api.RunsError as exc:
                if exc.code == "42501":
                    self.on_lease_lost(str(exc))
                    return
                log.warning("run %s: host results not recorded: %s", self.run_id, exc)

    async def _send_batch(self, changes: list[dict], now: float) -> None:
        hosts = []
        for c in changes:
            item = {k: c[k] for k in ("host_id", "status", "exit_code", "error")}
            item["ago"] = round(max(0.0, now - c["at"]), 3)
            if "started" in c:
                item["started_ago"] = round(max(0.0, now - c["started"]), 3)
            hosts.append(item)
        await api.rpc(self.client, "update_run_hosts", {"p_run_id": self.run_id, "p_hosts": hosts},
                      "record the hosts' results")  # fmt: skip
        self.calls += 1

    async def close(self) -> None:
        """Send what is left (before the run is finished), then stop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()


class AuditBatch:
    """The run's `ssh_audit` rows, inserted many per call (every `interval`) instead of one
    REST insert per command: the same rows as `SupabaseAudit` writes. A failed insert is
    reported on each of its hosts' logs (`on_error(text, host_id)`), never fatal."""

    def __init__(self, client, *, on_error, interval: float = 0.2) -> None:
        self.client = client
        self.on_error = on_error
        self.interval = interval
        self._rows: list[tuple[dict, str]] = []
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task | None = None
        self.calls = 0

    def add(self, record: AuditRecord, host_id: str) -> None:
        target = record.target
        if target.team_id is None:
            self.on_error(f"audit not recorded: {target.label}: no team_id, cannot audit", host_id)
            return
        row = {  # (SupabaseAudit.record's row)
            "team_id": target.team_id,
            "host_id": target.host_id,
            "kind": record.kind,
            "command": record.command,
            "exit_code": record.exit_code,
            "started_at": record.started_at.isoformat(),
            "duration_ms": max(0, record.duration_ms),
        }
        self._rows.append((row, host_id))
        self._wake.set()
        if self._task is None:
            self._task = asyncio.ensure_future(self._flush_forever())

    async def _flush_forever(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.interval)
            self._wake.clear()
            await asyncio.shield(self.flush())

    async def flush(self) -> None:
        async with self._lock:
            rows, self._rows = self._rows, []
            parts = [rows[i : i + 500] for i in range(0, len(rows), 500)]
            while parts:
                part = parts.pop(0)
                try:
                    await self.client.table("ssh_audit").insert([r for r, _ in part]).execute()
                    self.calls += 1
                except Exception as exc:  # noqa: BLE001 - reported, never fatal for the run
                    if len(part) > 1:  # one refused row must not lose the others: one by one
                        parts[:0] = [[item] for item in part]
                        continue
                    line = str(exc).splitlines()[0] if str(exc) else repr(exc)
                    self.on_error(f"audit not recorded: {line}", part[0][1])

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()


class RunExecution:
    def __init__(
        self,
        client: Any,
        run: dict,
        *,
        pool: ConnectionPool,
        workdir: Path | None = None,
        lease_seconds: int = 30,
        host_concurrency: int = 64,
        sink_options: dict | None = None,
    ) -> None:
        self.client = client
        self.run = run
        self.run_id = str(run["id"])
        self.spec: dict = run.get("spec") or {}
        self.pool = pool
        self.workdir = workdir
        self.lease_seconds = lease_seconds
        self.sink = LogSink(lambda chunks: api.append_log(client, self.run_id, chunks),
                            **(sink_options or {}))  # fmt: skip
        self.recorder = HostRecorder(client, self.run_id, on_lease_lost=self._lose_lease)
        self.audits = AuditBatch(client, on_error=lambda text, host_id: self.sink.system(text, host_id))
        self.cancel_requested = asyncio.Event()
        self.cancel_reason: str | None = None
        self.lease_lost: str | None = None
        self.outcomes: dict[str, HostOutcome] = {}
        self._host_sem = asyncio.Semaphore(max(1, host_concurrency))
        self._stopping: set[asyncio.Task] = set()
        self._preconnects: set[asyncio.Future] = set()  # not waited for: cancelled at the end
        self.status: str | None = None
        self.build_settings = None  # BuildSettings for the run's CI/CD steps (tests tune it)

    # -- control ----------------------------------------------------------------------------

    def request_cancel(self, reason: str | None = None) -> None:
        if not self.cancel_requested.is_set():
            self.cancel_reason = reason
            self.cancel_requested.set()

    def _lose_lease(self, why: str) -> None:
        if self.lease_lost is None:
            self.lease_lost = why
            log.warning("run %s: %s", self.run_id, why)
        self.cancel_requested.set()

    async def _heartbeat_forever(self) -> None:
        interval = max(1.0, self.lease_seconds / 3)
        while True:
            await asyncio.sleep(interval)
            try:
                if await api.heartbeat(self.client, self.run_id, self.lease_seconds):
                    self.request_cancel()
            except api.RunsError as exc:
                if exc.code == "42501":
                    self._lose_lease(str(exc))
                    return
                log.warning("run %s: heartbeat failed: %s", self.run_id, exc)
            except Exception as exc:  # noqa: BLE001 - a blip: the next beat retries
                log.warning("run %s: heartbeat failed: %s", self.run_id, exc)

    # -- the run ----------------------------------------------------------------------------

    async def execute(self) -> str:
        self._t0 = time.monotonic()
        self.sink.start()
        beat = asyncio.create_task(self._heartbeat_forever(), name=f"heartbeat:{self.run_id}")
        scratch = Path(tempfile.mkdtemp(prefix=f"opstui-run-{self.run_id[:8]}-", dir=self.workdir))
        status, error = "failed", None
        try:
            status, error = await self._execute(scratch)
            log.debug("run %s: hosts done at %.3fs", self.run_id, time.monotonic() - self._t0)
        except LeaseLost as exc:
            self._lose_lease(str(exc))
        except Exception as exc:  # noqa: BLE001 - the run fails with one line, the runner lives on
            log.exception("run %s failed", self.run_id)
            status, error = (
                "failed",
                f"runner error: {str(exc).splitlines()[0] if str(exc) else exc!r}",
            )
            self.sink.system(error)
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
            for task in list(self._preconnects):
                task.cancel()
            while self._stopping:  # kills, cleanups and audit rows still on their way
                await asyncio.gather(*list(self._stopping), return_exceptions=True)
            await asyncio.gather(self.recorder.close(), self.audits.close())  # before the finish
            shutil.rmtree(scratch, ignore_errors=True)
        if self.lease_lost is None:
            self.sink.system(f"run {status}" + (f": {error}" if error else ""))
        await self.sink.close()
        if self.sink.failure is not None and _is_lease_error(self.sink.failure):
            self._lose_lease(str(self.sink.failure))
        if self.lease_lost is not None:
            self.status = "lost"
            return "lost"
        log.debug("run %s: log closed at %.3fs", self.run_id, time.monotonic() - self._t0)
        try:
            await api.finish(self.client, self.run_id, status, error)
        except api.RunsError as exc:
            if exc.code == "42501":
                self._lose_lease(str(exc))
                self.status = "lost"
                return "lost"
            raise
        self.status = status
        return status

    async def _execute(self, scratch: Path) -> tuple[str, str | None]:
        spec = self.spec
        scripts = [str(s) for s in spec.get("scripts") or [] if str(s).strip()]
        params = [str(p or "") for p in spec.get("parameters") or []]
        rollout = spec.get("rollout") or {}
        max_failures = int(rollout.get("max_failures") or 0)
        timeout = float(rollout.get("host_timeout_seconds") or 1800)
        name = spec.get("deployment_name") or self.run.get("deployment_id")
        self.sink.system(
            f"run #{self.run.get('number')} of {name} claimed by {self.run.get('runner_name')}"
        )

        hosts_rows = await api.run_hosts(self.client, self.run_id)
        pending = [h for h in hosts_rows if h.get("status") == "pending"]
        if spec.get("cicd_steps"):  # mapped CI/CD jobs run first; a failure skips the hosts
            from opstui.runs.builds import BuildSettings, run_cicd_steps

            status, error = await run_cicd_steps(
                self.client, self.run, self.sink, runner_name=str(self.run.get("runner_name")),
                cancel_requested=self.cancel_requested,
                settings=self.build_settings or BuildSettings(lease_seconds=self.lease_seconds),
            )  # fmt: skip
            if status != "succeeded" or not pending:
                return status, error
        if not scripts:
            return "failed", "the deployment has no scripts; add scripts_path entries"
        first_batch = min((int(h.get("batch") or 1) for h in pending), default=1)

        async def hosts_then_connect() -> dict[str, dict]:
            # The first batch connects while the repository is fetched (no side effect on hosts).
            rows = await self._hosts([str(h["host_id"]) for h in pending])
            self._preconnect([rows.get(str(h["host_id"])) for h in pending
                              if int(h.get("batch") or 1) == first_batch])  # fmt: skip
            return rows

        # Independent reads and the git fetch at once: the first host starts sooner.
        env, repo, hosts = await asyncio.gather(
            self._environment(), self._fetch(scratch), hosts_then_connect()
        )
        if isinstance(repo, str):
            return "failed", repo
        missing = [s for s in scripts if not _inside(repo, s) or not (repo / s).is_file()]
        if missing:
            return (
                "failed",
                f"script {missing[0]} is not in the repository at its branch; fix scripts_path",
            )
        log.debug("run %s: prepared in %.3fs", self.run_id, time.monotonic() - self._t0)
        batches: dict[int, list[dict]] = {}
        for row in pending:
            batches.setdefault(int(row.get("batch") or 1), []).append(row)
        stopped: str | None = None
        for number in sorted(batches):
            if self.cancel_requested.is_set():
                break
            await self._set_batch(number)
            log.debug("run %s: batch %s at %.3fs", self.run_id, number, time.monotonic() - self._t0)
            rows = batches[number]
            later = [n for n in sorted(batches) if n > number]
            if later:  # connect the next batch while this one runs (no side effect on hosts)
                self._preconnect([hosts.get(str(r["host_id"])) for r in batches[later[0]]])
            self.sink.system(
                f"batch {number} of {max(batches)}: {', '.join(str(r.get('host_name') or r['host_id']) for r in rows)}"
            )
            await asyncio.gather(*(
                self._host(row, hosts.get(str(row["host_id"])), repo, scripts, params, env, timeout)
                for row in rows
            ))  # fmt: skip
            failed = [o for o in self.outcomes.values() if o.status in ("failed", "unreachable")]
            if len(failed) > max_failures and number != max(batches):
                stopped = (
                    f"rollout stopped after batch {number}: {len(failed)} host"
                    f"{'s' if len(failed) != 1 else ''} failed (more than {max_failures} allowed); "
                    "the hosts not started are skipped"
                )
                self.sink.system(stopped)
                break
        if self.lease_lost is not None:
            raise LeaseLost(self.lease_lost)
        if self.cancel_requested.is_set():
            return "cancelled", self.cancel_reason
        failed = [o for o in self.outcomes.values() if o.status in ("failed", "unreachable")]
        if failed:
            first = failed[0].error or failed[0].status
            total = len(hosts_rows)
            summary = f"{len(failed)} of {total} hosts failed (first: {first})"
            return "failed", (stopped.split(":")[0] + "; " + summary) if stopped else summary
        return "succeeded", None

    async def _environment(self) -> dict[str, str]:
        names = [str(n) for n in self.spec.get("env_names") or []]
        if not names:
            return {}
        rows = await api._select(
            self.client.table("deployments").select("environment_vars").eq("id", self.run["deployment_id"]),
            "read the deployment's environment",
        )  # fmt: skip
        values = {}
        for item in (rows[0].get("environment_vars") if rows else None) or []:
            if isinstance(item, dict) and item.get("key") in names:
                values[str(item["key"])] = str(item.get("value") or "")
        bad = [n for n in values if not _ENV_NAME.match(n)]
        for n in bad:
            values.pop(n)
            self.sink.system(f"environment variable {n!r} skipped: not a valid name")
        return {n: values[n] for n in names if n in values}

    async def _fetch(self, scratch: Path) -> Path | str:
        url = self.spec.get("repository_url")
        if not url:
            return "the deployment has no repository (or it has no URL); its scripts come from one"
        token = None
        repo_id = self.spec.get("repository_id")
        if repo_id:
            rows = await api._select(
                self.client.table("repositories").select("id,provider_id,is_private").eq("id", repo_id),
                "read the repository",
            )  # fmt: skip
            if rows and rows[0].get("is_private") and rows[0].get("provider_id"):
                try:
                    tokens = await api.rpc(self.client, "get_git_provider_tokens",
                                           {"p_provider_id": rows[0]["provider_id"]}, "read the git token")  # fmt: skip
                except api.RunsError as exc:
                    return f"cannot read the git provider's token: {exc}"
                token = (tokens or {}).get("access_token") if isinstance(tokens, dict) else None
        branch = self.spec.get("branch") or None
        self.sink.system(f"fetching {safe_url(str(url))}" + (f" at {branch}" if branch else ""))
        started = time.monotonic()
        try:
            commit = await fetch(str(url), branch, scratch / "repo", token=token)
        except GitFetchError as exc:
            return str(exc)
        self.sink.system(f"fetched {commit[:12]} in {time.monotonic() - started:.1f}s")
        return scratch / "repo"

    async def _hosts(self, host_ids: list[str]) -> dict[str, dict]:
        if not host_ids:
            return {}
        rows = await api._select(
            self.client.table("hosts").select("*").in_("id", host_ids), "read the hosts"
        )
        return {str(r["id"]): r for r in rows}

    async def _set_batch(self, number: int) -> None:
        try:
            await api.set_batch(self.client, self.run_id, number)
        except api.RunsError as exc:
            if exc.code == "42501":
                raise LeaseLost(str(exc)) from None
            raise

    def _record(self, host_id: str, status: str, code: int | None, error: str | None) -> None:
        self.recorder.record(host_id, status, code, error)

    # -- one host ---------------------------------------------------------------------------

    async def _host(self, row, host, repo, scripts, params, env, timeout) -> None:
        host_id = str(row["host_id"])
        label = str(row.get("host_name") or host_id)
        async with self._host_sem:
            if self.cancel_requested.is_set():
                outcome = HostOutcome(
                    host_id, "cancelled", None, f"{label}: not started: the run was cancelled"
                )
                self.outcomes[host_id] = outcome
                return  # finish_deployment_run marks it cancelled
            if host is None:
                outcome = HostOutcome(
                    host_id,
                    "failed",
                    None,
                    f"{label}: the host is not readable (deleted, or not in this team)",
                )
            else:
                self._record(host_id, "running", None, None)  # sent in the next batch
                try:
                    target = SshTarget.from_host(host)
                except ValueError as exc:
                    outcome = HostOutcome(host_id, "failed", None, f"{label}: {exc}")
                else:
                    outcome = await self._on_host(
                        host_id, target, repo, scripts, params, env, timeout
                    )
            self.outcomes[host_id] = outcome
            self._record(host_id, outcome.status, outcome.exit_code, outcome.error)

    async def _on_host(self, host_id, target, repo, scripts, params, env, timeout) -> HostOutcome:
        directory = remote_dir(self.run_id)
        try:
            async with self.pool.connection(target) as conn:
                outcome: HostOutcome | None = None
                try:
                    outcome = await self._scripts(conn, host_id, target, repo, scripts, params,
                                                  env, timeout, directory)  # fmt: skip
                    return outcome
                finally:
                    # Whatever the outcome, the run's directory does not stay behind (in the
                    # background: the host's result need not wait for it; the run does).
                    if outcome is None or not outcome.cleaned:
                        self._background(self._cleanup(conn, target, directory))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is one line for this host
            error = _host_error(exc, target)
            self.sink.system(str(error), host_id)
            connected = getattr(error, "kind", "") in ("disconnected", "error")
            if connected:
                self.pool.discard(target)
            status = "failed" if connected else "unreachable"
            return HostOutcome(host_id, status, None, str(error))

    async def _scripts(self, conn, host_id, target, repo, scripts, params, env, timeout,
                       directory) -> HostOutcome:  # fmt: skip
        name = target.name
        try:
            async with asyncio.timeout(timeout):
                files = None if target.is_windows else self._posix_files(repo, scripts)
                if files is None:  # Windows hosts (and binary scripts) upload over SFTP
                    await self._upload(conn, target, repo, scripts, directory)
                for index, script in enumerate(scripts):
                    last = index == len(scripts) - 1
                    code = await self._script(conn, host_id, target, directory, script,
                                              params[index] if index < len(params) else "",
                                              index, env, last=last,
                                              files=files if index == 0 else None)  # fmt: skip
                    if code is None:
                        return HostOutcome(host_id, "cancelled", None,
                                           f"{name}: stopped by the cancel request")  # fmt: skip
                    if code != 0:
                        return HostOutcome(host_id, "failed", code,
                                           f"{name}: {script} exited with status {code}")  # fmt: skip
        except TimeoutError:
            return HostOutcome(host_id, "failed", None,
                               f"{name}: timed out after {timeout:g}s (host_timeout_seconds); "
                               "its scripts were stopped")  # fmt: skip
        return HostOutcome(host_id, "succeeded", 0, None, cleaned=not target.is_windows)

    def _posix_files(self, repo: Path, scripts) -> bytes | None:
        """The upload shell for POSIX hosts, built once per run (every host gets the same)."""
        if not hasattr(self, "_files_shell"):
            self._files_shell = posix_files({s: (repo / s).read_bytes() for s in dict.fromkeys(scripts)})
        return self._files_shell

    async def _upload(self, conn, target, repo: Path, scripts, directory: str) -> None:
        started = time.monotonic()
        try:
            await self._sftp_put(conn, target, repo, scripts, directory)
        finally:
            log.debug("%s: upload %.3fs", target.name, time.monotonic() - started)

    async def _sftp_put(self, conn, target, repo: Path, scripts, directory: str) -> None:
        # Few round trips: mkdir the run dir (its parents only when missing), and each
        # script written with its mode in one open, not put + chmod.
        attrs = asyncssh.SFTPAttrs(permissions=0o755) if not target.is_windows else None
        async with conn.start_sftp_client() as sftp:
            made: set[str] = set()
            for script in scripts:
                remote = PurePosixPath(directory) / script
                parent = str(remote.parent)
                if parent not in made:
                    try:
                        await sftp.mkdir(parent)
                    except asyncssh.SFTPError:
                        await sftp.makedirs(parent, exist_ok=True)
                    made.add(parent)
                data = (repo / script).read_bytes()
                async with sftp.open(
                    str(remote), "wb", attrs or asyncssh.SFTPAttrs()
                ) as remote_file:
                    await remote_file.write(data)

    async def _cleanup(self, conn, target, directory: str) -> None:
        command = (
            target.remote_command(f"Remove-Item -Recurse -Force -LiteralPath '{directory}'")
            if target.is_windows
            else f"rm -rf {shlex.quote(directory)}"
        )
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.run(command, check=False), 10)

    async def _script(
        self, conn, host_id, target, directory, script, params, index, env, *, last: bool = False,
        files: bytes | None = None,
    ) -> int | None:  # fmt: skip
        """Run one script; its exit status, or None when it was stopped by a cancel.

        `files` (POSIX, first script): the scripts to write first, see `posix_files`."""
        if target.is_windows:
            command = powershell_script(directory.replace("/", "\\"), script, params, index)
            wire, stdin = target.remote_command(command), powershell_env(env)
        else:
            command = posix_command(directory, script, params, index, last=last,
                                    make=files is not None)  # fmt: skip
            wire, stdin = command, (files or b"") + posix_env(env)
        self.sink.system(f"$ {script}" + (f" {params}" if params else ""), host_id)
        started, started_at = time.monotonic(), datetime.now(UTC)
        process = await conn.create_process(wire, encoding=None)
        log.debug(
            "%s: %s process open after %.3fs", target.name, script, time.monotonic() - started
        )
        exit_code: int | None = None
        try:
            process.stdin.write(stdin)
            process.stdin.write_eof()
            pumps = asyncio.gather(
                self._pump(host_id, "stdout", process.stdout),
                self._pump(host_id, "stderr", process.stderr),
            )
            cancel = asyncio.ensure_future(self.cancel_requested.wait())
            try:
                done, _ = await asyncio.wait({pumps, cancel}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                cancel.cancel()
            if pumps in done:
                pumps.result()
                await process.wait_closed()
                exit_code = process.exit_status
                if exit_code is None:
                    if process.exit_signal:
                        exit_code = 128
                        self.sink.system(f"killed by signal {process.exit_signal[0]}", host_id)
                    else:
                        raise asyncssh.ConnectionLost("the connection dropped mid-script")
                return exit_code
            await self._stop(conn, target, process, directory, index)
            pumps.cancel()
            with contextlib.suppress(BaseException):
                await pumps
            self.sink.system("stopped: signalled, then its channel was closed", host_id)
            return None
        except BaseException:
            await self._stop(conn, target, process, directory, index)
            raise
        finally:
            record = AuditRecord(target, "command", command, exit_code, started_at,
                                 int((time.monotonic() - started) * 1000))  # fmt: skip
            self.audits.add(record, host_id)

    def _preconnect(self, rows: list[dict | None]) -> None:
        async def connect(target: SshTarget) -> None:
            with contextlib.suppress(Exception):  # a failure shows when the host runs
                await self.pool.get(target)

        for row in rows:
            if row is not None:
                with contextlib.suppress(ValueError):
                    task = asyncio.ensure_future(connect(SshTarget.from_host(row)))
                    self._preconnects.add(task)
                    task.add_done_callback(self._preconnects.discard)

    def _background(self, coro) -> asyncio.Future:
        """Work the run waits for before it finishes, but no host waits for."""
        task = asyncio.ensure_future(coro)
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)
        return task

    async def _stop(self, conn, target, process, directory: str, index: int) -> None:
        """Signal the remote process (group), give it STOP_GRACE, then close the channel."""
        # (not is_closing(): that is already true once stdin's EOF was sent)
        if process.exit_status is not None or process.exit_signal is not None:
            return
        with contextlib.suppress(Exception):
            process.send_signal("TERM")
        # sshd may ignore signal requests: kill the process group by its pid file as well.
        kill = self._background(conn.run(_kill_command(target, directory, index), check=False))
        with contextlib.suppress(Exception, TimeoutError):
            await asyncio.wait_for(asyncio.shield(process.wait_closed()), STOP_GRACE + 0.5)
        process.close()
        with contextlib.suppress(Exception, TimeoutError):
            await asyncio.wait_for(asyncio.shield(kill), STOP_GRACE + 1)

    async def _pump(self, host_id: str, stream: str, reader) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        while True:
            data = await reader.read(64 * 1024)
            if not data:
                break
            await self.sink.write(host_id, stream, decoder.decode(data))
        tail = decoder.decode(b"", final=True)
        if tail:
            await self.sink.write(host_id, stream, tail)


def _inside(root: Path, relative: str) -> bool:
    try:
        (root / relative).resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def _is_lease_error(exc: BaseException) -> bool:
    return isinstance(exc, api.RunsError) and exc.code == "42501"


__all__ = ["HostOutcome", "LeaseLost", "RunExecution", "parse_batch_size", "remote_dir"]
