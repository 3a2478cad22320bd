"""Host health: an SSH handshake plus one cheap probe, written to the host row.

Statuses (hosts.status, see migration 20261125000600):

    online            handshake + probe succeeded
    offline           unreachable or connection refused
    auth_failed       every authentication method was refused
    host_key_unknown  the host key is not trusted (no decision, or refused)
    host_key_changed  the host key differs from the recorded one
    timeout           connect or probe timed out
    error             anything else (probe failed, dropped mid-check)

The probe figures go to `hosts.health` (jsonb) with `last_checked_at`, through
the `record_host_health` rpc, shared with the team live through realtime. Only
members with execute permission on hosts record: anyone else's check is shown
to them and written nowhere (`NOT_PERMITTED` says why).

Linux probe: one shell command reading /proc/uptime, /proc/loadavg,
/proc/meminfo and `df -P /`. Windows: one PowerShell command (CIM) printing JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from opstui.ssh.errors import SshError, classify
from opstui.ssh.pool import ConnectionPool
from opstui.ssh.target import SshTarget

log = logging.getLogger(__name__)

STATUSES = (
    "online",
    "offline",
    "auth_failed",
    "host_key_unknown",
    "host_key_changed",
    "timeout",
    "error",
)

LINUX_PROBE = (
    "cat /proc/uptime /proc/loadavg; grep -E '^(MemTotal|MemAvailable):' /proc/meminfo; "
    "df -P / | tail -n 1"
)
WINDOWS_PROBE = (
    "$ErrorActionPreference='Stop';"
    "$os=Get-CimInstance Win32_OperatingSystem;"
    "$cpu=(Get-CimInstance Win32_Processor | Measure-Object -Property LoadPercentage -Average).Average;"
    "$d=Get-CimInstance Win32_LogicalDisk -Filter \"DeviceID='$($env:SystemDrive)'\";"
    "[pscustomobject]@{uptime_s=[int64]((Get-Date)-$os.LastBootUpTime).TotalSeconds;"
    "cpu_load_pct=$cpu;mem_total_kb=[int64]$os.TotalVisibleMemorySize;"
    "mem_available_kb=[int64]$os.FreePhysicalMemory;disk_root_total_kb=[int64]($d.Size/1024);"
    "disk_root_free_kb=[int64]($d.FreeSpace/1024)} | ConvertTo-Json -Compress"
)


@dataclass(frozen=True)
class HealthResult:
    target: SshTarget
    status: str  # one of STATUSES
    health: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def parse_linux_probe(text: str) -> dict[str, Any]:
    lines = [line for line in text.splitlines() if line.strip()]
    uptime = float(lines[0].split()[0])
    load = [float(x) for x in lines[1].split()[:3]]
    mem = {}
    for line in lines[2:4]:
        key, value = line.split(":", 1)
        mem[key.strip()] = int(value.split()[0])
    df = lines[-1].split()
    total_kb, used_kb, avail_kb = int(df[1]), int(df[2]), int(df[3])
    mem_total, mem_avail = mem.get("MemTotal", 0), mem.get("MemAvailable", 0)
    return {
        "uptime_s": int(uptime),
        "load": load,
        "mem_total_kb": mem_total,
        "mem_available_kb": mem_avail,
        "mem_used_pct": round(100 * (mem_total - mem_avail) / mem_total, 1) if mem_total else None,
        "disk_root_total_kb": total_kb,
        "disk_root_used_pct": round(100 * used_kb / (used_kb + avail_kb), 1)
        if used_kb + avail_kb
        else None,
    }


def parse_windows_probe(text: str) -> dict[str, Any]:
    data = json.loads(text)
    total, avail = int(data.get("mem_total_kb") or 0), int(data.get("mem_available_kb") or 0)
    disk_total, disk_free = (
        int(data.get("disk_root_total_kb") or 0),
        int(data.get("disk_root_free_kb") or 0),
    )
    return {
        "uptime_s": int(data.get("uptime_s") or 0),
        "cpu_load_pct": data.get("cpu_load_pct"),
        "mem_total_kb": total,
        "mem_available_kb": avail,
        "mem_used_pct": round(100 * (total - avail) / total, 1) if total else None,
        "disk_root_total_kb": disk_total,
        "disk_root_used_pct": round(100 * (disk_total - disk_free) / disk_total, 1)
        if disk_total
        else None,
    }


HealthSink = Callable[[HealthResult], Awaitable[None]]

NOT_PERMITTED = "not recorded: you need execute permission on hosts to record health"


class HealthNotPermitted(Exception):
    """The backend refused to record a result: the user may not execute on the host."""

    def __init__(self) -> None:
        super().__init__(NOT_PERMITTED)


def rpc_health_writer(client: Any) -> HealthSink:
    """Write a result to the host row through `record_host_health` (supabase-py)."""

    async def write(result: HealthResult) -> None:
        if result.target.host_id is None:
            return
        try:
            await client.rpc(
                "record_host_health",
                {
                    "p_host_id": result.target.host_id,
                    "p_status": result.status,
                    "p_health": result.health,
                },
            ).execute()
        except Exception as exc:
            if getattr(exc, "code", None) == "42501":
                raise HealthNotPermitted() from None
            raise

    return write


class HealthChecker:
    def __init__(
        self,
        pool: ConnectionPool,
        *,
        writer: HealthSink | None = None,
        concurrency: int = 64,
        probe_timeout: float = 10.0,
    ) -> None:
        self.pool = pool
        self.writer = writer
        self.concurrency = concurrency
        self.probe_timeout = probe_timeout
        self.write_errors: list[str] = []

    async def check(self, target: SshTarget) -> HealthResult:
        """Check one host (never raises for SSH problems: they become the status)."""
        started = time.monotonic()
        try:
            async with self.pool.connection(target) as conn:
                connected = time.monotonic()
                async with asyncio.timeout(self.probe_timeout):
                    probe = WINDOWS_PROBE if target.is_windows else LINUX_PROBE
                    completed = await conn.run(target.remote_command(probe), check=False)
                if completed.exit_status != 0:
                    raise SshError(
                        f"{target.label}: probe failed (exit {completed.exit_status}): "
                        f"{str(completed.stderr or '').strip().splitlines()[-1:] or ''}",
                        host=target.label,
                    )
                parse = parse_windows_probe if target.is_windows else parse_linux_probe
                try:
                    figures = parse(str(completed.stdout))
                except (ValueError, IndexError, KeyError) as exc:
                    raise SshError(
                        f"{target.label}: unexpected probe output ({exc})", host=target.label
                    ) from None
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            return self._failed(
                target, SshError(f"{target.label}: probe timed out", kind="timeout"), started
            )
        except Exception as exc:  # noqa: BLE001 - the failure is the result
            error = classify(exc, target)
            if error.kind == "disconnected":
                self.pool.discard(target)
            return self._failed(target, error, started)
        figures["handshake_ms"] = round((connected - started) * 1000, 1)
        figures["latency_ms"] = round((time.monotonic() - started) * 1000, 1)
        return HealthResult(target, "online", figures)

    def _failed(self, target: SshTarget, error: SshError, started: float) -> HealthResult:
        health = {"error": str(error), "latency_ms": round((time.monotonic() - started) * 1000, 1)}
        return HealthResult(target, error.status, health, str(error))

    async def check_and_record(self, target: SshTarget) -> HealthResult:
        result = await self.check(target)
        if self.writer is not None:
            try:
                await self.writer(result)
            except HealthNotPermitted:
                self.write_errors.append(f"{target.label}: {NOT_PERMITTED}")
            except Exception as exc:  # noqa: BLE001 - reported, the check itself stands
                message = getattr(exc, "message", None) or str(exc)
                self.write_errors.append(f"{target.label}: health not recorded: {message}")
                log.warning("%s: health not recorded: %s", target.label, message)
        return result

    async def check_many(self, targets: Iterable[SshTarget]) -> list[HealthResult]:
        """Check (and record) several hosts, at most `concurrency` at a time; input order."""
        sem = asyncio.Semaphore(self.concurrency)

        async def one(target: SshTarget) -> HealthResult:
            async with sem:
                return await self.check_and_record(target)

        return list(await asyncio.gather(*(one(t) for t in targets)))


class PeriodicHealth:
    """Re-check `targets()` every `interval` seconds until `stop()`."""

    def __init__(
        self,
        checker: HealthChecker,
        targets: Callable[[], Sequence[SshTarget]],
        *,
        interval: float = 60.0,
        on_results: Callable[[list[HealthResult]], None] | None = None,
    ) -> None:
        self.checker = checker
        self.targets = targets
        self.interval = interval
        self.on_results = on_results
        self.rounds = 0
        self._task: asyncio.Task | None = None
        self._stop = asyncio.Event()

    def start(self) -> None:
        if self._task is None:
            self._stop.clear()
            self._task = asyncio.create_task(self._loop(), name="ssh-health-periodic")

    async def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                results = await self.checker.check_many(self.targets())
            except Exception as exc:  # noqa: BLE001 - keep running; the next round may work
                log.warning("health round failed: %s", exc)
            else:
                self.rounds += 1
                if self.on_results is not None:
                    self.on_results(results)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval)

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
