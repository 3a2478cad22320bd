"""The demo's git repositories: real bare repositories on this machine, with real scripts.

`ensure_repos(repos_dir, [(name, branch), ...])` creates `<repos_dir>/<name>.git` with
one commit on `branch` (made with `git fast-import`, so it needs no work tree and no
git identity), once: a marker file per branch makes it idempotent across restarts.
The scripts print believable progress (build, migrate, restart, health check, with
some ANSI colour), take a few seconds, and `scripts/healthcheck.sh` fails on
`lab-db-01`, so the demo shows a rollout stopping.

The runner fetches them by path (`runs/gitfetch.py` turns a local path into file://).
Nothing here touches the network.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

FAILING_HOST = "lab-db-01"  # healthcheck.sh fails here, on purpose
_STAMP = 1764000000  # fixed commit time: the same scripts give the same commit everywhere

_PRELUDE = r"""#!/bin/sh
# opstui demo script: prints what a real one would, and sleeps a little.
set -e
HOST="${OPSTUI_DEMO_HOST:-$(hostname)}"
RELEASE="${RELEASE:-v1.4.2}"
ENVIRONMENT="${ENVIRONMENT:-staging}"
step() { printf '\033[1;34m==>\033[0m \033[1m%s\033[0m\n' "$*"; }
ok() { printf '  \033[32m✔\033[0m %s\n' "$*"; }
note() { printf '  \033[2m%s\033[0m\n' "$*"; }
warn() { printf '  \033[33m!\033[0m %s\n' "$*"; }
fail() { printf '  \033[31m✘ %s\033[0m\n' "$*" >&2; }
pause() { sleep "${1:-0.4}"; }
"""

SCRIPTS: dict[str, str] = {
    "scripts/build.sh": _PRELUDE
    + r"""
step "build $RELEASE for $ENVIRONMENT on $HOST"
note "resolving dependencies (212 packages, 198 cached)"; pause
note "compiling 148 modules"; pause 0.6
note "running 86 unit tests"; pause 0.5
ok "86 passed in 0.48s"
ok "artifact app-$RELEASE.tar.gz (4.2 MB, sha256 3f9c…e1a7)"
""",
    "scripts/migrate.sh": _PRELUDE
    + r"""
step "migrate the database ($ENVIRONMENT)"
note "current schema: 0041_add_invoice_status"; pause 0.3
note "applying 0042_index_ledger_entries_by_account"; pause 0.6
ok "0042 applied in 0.58s"
note "applying 0043_backfill_currency_codes (1,204 rows)"; pause 0.5
ok "0043 applied in 0.47s"
ok "schema at 0043"
""",
    "scripts/restart.sh": _PRELUDE
    + r"""
step "restart the service on $HOST"
note "draining connections (12 open)"; pause 0.5
note "stopping app.service"; pause 0.3
note "starting app.service with $RELEASE"; pause 0.5
ok "app.service active (running) since $(date -u +%H:%M:%S) UTC"
""",
    "scripts/healthcheck.sh": _PRELUDE
    + r"""
step "health check $HOST"
for i in 1 2 3; do
  pause 0.4
  if [ "$HOST" = "FAILING_HOST" ] && [ "$i" = 3 ]; then
    fail "GET /healthz -> 503 Service Unavailable: replication lag 42s exceeds 30s"
    fail "$HOST is not healthy after $RELEASE; rolling back is up to you"
    exit 1
  fi
  ok "GET /healthz -> 200 OK ($((9 + i * 3)) ms)"
done
ok "$HOST healthy on $RELEASE"
""".replace("FAILING_HOST", FAILING_HOST),
    "scripts/deploy.sh": _PRELUDE
    + r"""
step "deploy $RELEASE to $HOST ($ENVIRONMENT)"
note "downloading app-$RELEASE.tar.gz"; pause 0.5
note "unpacking into releases/$RELEASE"; pause 0.3
note "switching current -> releases/$RELEASE"; pause 0.3
warn "config key cache.ttl is deprecated; use cache.ttl_seconds"
note "reloading app.service"; pause 0.5
ok "deployed $RELEASE"
""",
    "scripts/backup.sh": _PRELUDE
    + r"""
step "back up the database on $HOST"
note "pg_dump --format=custom ledger"; pause 0.6
note "compressing (zstd -3)"; pause 0.4
ok "backup ledger-$(date -u +%Y%m%d).dump.zst (186 MB)"
note "uploading to the backup bucket"; pause 0.5
ok "uploaded"
""",
    "scripts/verify-backup.sh": _PRELUDE
    + r"""
step "verify the latest backup"
note "restoring into a scratch database"; pause 0.7
note "checking 38 tables, 2.1M rows"; pause 0.5
ok "checksums match"
""",
    "scripts/rollout.ps1": r"""# opstui demo script (PowerShell, for the Windows hosts)
$ErrorActionPreference = 'Stop'
$release = if ($env:RELEASE) { $env:RELEASE } else { 'v1.4.2' }
Write-Host "==> rollout $release on $env:COMPUTERNAME" -ForegroundColor Blue
Write-Host "  stopping the AppPool"; Start-Sleep -Milliseconds 400
Write-Host "  copying the build"; Start-Sleep -Milliseconds 600
Write-Host "  starting the AppPool"; Start-Sleep -Milliseconds 400
Write-Host "  OK: rolled out $release" -ForegroundColor Green
""",
}

# Script sets the demo deployments use (Linux ones, then the Windows one).
LINUX_SCRIPT_SETS = (
    ["scripts/deploy.sh", "scripts/healthcheck.sh"],
    ["scripts/migrate.sh"],
    ["scripts/build.sh", "scripts/migrate.sh", "scripts/restart.sh", "scripts/healthcheck.sh"],
    ["scripts/backup.sh", "scripts/verify-backup.sh"],
)
WINDOWS_SCRIPTS = ["scripts/rollout.ps1"]


def repo_path(repos_dir: Path, name: str) -> Path:
    return Path(repos_dir) / f"{name}.git"


def _readme(name: str) -> str:
    return (
        f"# {name}\n\nAn opstui demo repository, made on this machine by the embedded backend.\n"
        "Its scripts print believable progress and sleep a little; they change nothing.\n"
    )


def fast_import_stream(name: str, branch: str) -> bytes:
    files = {"README.md": (_readme(name), "100644")}
    files.update({path: (text, "100755") for path, text in SCRIPTS.items()})
    out = bytearray()
    message = f"{name}: deployment scripts\n".encode()
    who = f"opstui demo <demo@opstui.invalid> {_STAMP} +0000\n".encode()
    out += f"commit refs/heads/{branch}\n".encode()
    out += b"author " + who + b"committer " + who
    out += f"data {len(message)}\n".encode() + message
    for path, (text, mode) in files.items():
        data = text.encode()
        out += f"M {mode} inline {path}\n".encode()
        out += f"data {len(data)}\n".encode() + data + b"\n"
    out += b"done\n"
    return bytes(out)


async def _git(*args: str, stdin: bytes | None = None) -> None:
    process = await asyncio.create_subprocess_exec(
        "git",
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env={"PATH": _path(), "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent"},
    )
    _, err = await process.communicate(stdin)
    if process.returncode != 0:
        lines = err.decode("utf-8", "replace").strip().splitlines() or [f"exit {process.returncode}"]
        raise OSError(f"git {args[0]} failed: {lines[-1]}")


def _path() -> str:
    import os

    return os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")


async def ensure_repo(repos_dir: Path, name: str, branch: str) -> Path:
    path = repo_path(repos_dir, name)
    marker = path / f"opstui-demo-{branch}"
    if marker.exists():
        return path
    if not (path / "HEAD").exists():
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        await _git("init", "--bare", "--quiet", "-b", branch, str(path))
    await _git("--git-dir", str(path), "fast-import", "--quiet", "--force",
               stdin=fast_import_stream(name, branch))  # fmt: skip
    marker.write_text("made by opstui's embedded backend\n")
    return path


async def ensure_repos(repos_dir: Path, repos: list[tuple[str, str]]) -> list[str]:
    """Create the missing repositories; returns notices (empty when all is well)."""
    if not repos:
        return []
    if shutil.which("git") is None:
        return ["git is not installed: the demo deployments cannot fetch their scripts"]
    Path(repos_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
    results = await asyncio.gather(
        *(ensure_repo(repos_dir, name, branch) for name, branch in repos), return_exceptions=True
    )
    notices = []
    for (name, _), result in zip(repos, results, strict=True):
        if isinstance(result, BaseException):
            notices.append(f"demo repository {name} could not be made: {result}")
            log.warning("%s", notices[-1])
    return notices
