"""Fetch a repository at a branch with the `git` command (asyncio subprocess).

A private repository's token never touches the disk or the command line: git
asks a credential helper, given inline with `-c`, that prints the token from
an environment variable of the git process only. Errors are one line, with the
token (and any userinfo in the URL) scrubbed.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from pathlib import Path

_TOKEN_ENV = "OPSTUI_GIT_TOKEN"
_USER_ENV = "OPSTUI_GIT_USER"
# The helper is shell code git runs; it only echoes the variables git's env carries.
_HELPER = (
    '!f() { test "$1" = get || exit 0; '
    f'echo "username=${{{_USER_ENV}}}"; echo "password=${{{_TOKEN_ENV}}}"; }}; f'
)


class GitFetchError(Exception):
    """One line: which repository, what git said, what to do."""


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return re.sub(r"(\w+://)[^/@\s]+@", r"\1***@", text)


def safe_url(url: str) -> str:
    """The URL as it may be shown: userinfo removed."""
    return re.sub(r"(\w+://)[^/@\s]+@", r"\1", url)


async def fetch(
    url: str,
    branch: str | None,
    dest: Path,
    *,
    token: str | None = None,
    username: str = "x-access-token",
    timeout: float = 300.0,
) -> str:
    """Clone `url` at `branch` (None: its default branch) into `dest`; returns the commit."""
    if shutil.which("git") is None:
        raise GitFetchError("the git command is not installed on the runner's machine; install git")
    dest = Path(dest)
    env = {
        **os.environ,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "/bin/false",
        "GCM_INTERACTIVE": "never",
    }
    args = ["git", "-c", "credential.helper=", "-c", "core.askPass=/bin/false"]
    if token:
        env[_TOKEN_ENV] = token
        env[_USER_ENV] = username
        args += ["-c", f"credential.helper={_HELPER}"]
    args += ["clone", "--quiet", "--depth", "1", "--no-tags", "--single-branch"]
    if branch:
        args += ["--branch", branch]
    local = not ("://" in url or ":" in url.split("/", 1)[0])
    source = _file_url(url) if local else url
    if local or source.startswith("file://"):
        # A local repository owned by another user (e.g. a data dir an older opstui handed
        # to the postgres user): git's upload-pack refuses it as "dubious ownership". The
        # runner's own configuration names it, so trust it; `-c` alone does not reach
        # upload-pack on the local transport.
        args += ["--upload-pack", "git -c 'safe.directory=*' upload-pack"]
    args += ["--", source, str(dest)]
    await _git(args, env, timeout, url, [token or ""])
    head = await _git(["git", "-C", str(dest), "rev-parse", "HEAD"], env, 30, url, [])
    return head.strip()


def _file_url(path: str) -> str:
    # A local path: file:// makes --depth work (git ignores it for plain paths).
    return Path(path).expanduser().resolve().as_uri()


async def _git(args: list[str], env: dict, timeout: float, url: str, secrets: list[str]) -> str:
    process = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except asyncio.CancelledError:
        process.kill()
        await asyncio.shield(process.wait())
        raise
    except TimeoutError:
        process.kill()
        await process.wait()
        raise GitFetchError(
            f"git fetch of {safe_url(url)} did not finish in {timeout:g}s; check the repository"
        ) from None
    if process.returncode != 0:
        lines = [line.strip() for line in err.decode("utf-8", "replace").splitlines()]
        lines = [line for line in lines if line and not line.startswith("hint:")]
        detail = _scrub(_cause(lines) or f"exit status {process.returncode}", secrets)
        raise GitFetchError(
            f"cannot fetch {safe_url(url)}: {detail}; check the URL, the branch and the access token"
        )
    return out.decode("utf-8", "replace")


def _cause(lines: list[str]) -> str:
    """The line that says why: git's first fatal/error line (the ones after it, such as
    "Please make sure you have the correct access rights", are boilerplate), else the last."""
    for line in lines:
        for prefix in ("fatal: ", "error: "):
            if line.startswith(prefix):
                return line.removeprefix(prefix)
    return lines[-1] if lines else ""
