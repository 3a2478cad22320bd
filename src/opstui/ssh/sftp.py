"""SFTP upload and download with a progress callback and one-line errors.

    await upload(pool, target, "local.txt", "/tmp/remote.txt", progress=cb)
    await download(pool, target, "/etc/hostname", "hostname.txt", progress=cb)

`progress(done_bytes, total_bytes)` is called as blocks complete. Failures raise
`SftpError` (an SshError) naming the file and what to do.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import asyncssh

from opstui.ssh.errors import SshError, classify
from opstui.ssh.pool import ConnectionPool
from opstui.ssh.target import SshTarget

Progress = Callable[[int, int], None]
BLOCK_SIZE = 64 * 1024  # progress granularity (asyncssh reports per completed block)


class SftpError(SshError):
    kind = "error"


_SFTP_REASONS = {
    asyncssh.sftp.FX_NO_SUCH_FILE: "no such file or directory",
    asyncssh.sftp.FX_PERMISSION_DENIED: "permission denied",
    asyncssh.sftp.FX_FAILURE: "failed",
}


def _handler(progress: Progress | None):
    if progress is None:
        return None

    def handler(_src: bytes, _dst: bytes, done: int, total: int) -> None:
        progress(done, total)

    return handler


async def upload(
    pool: ConnectionPool, target: SshTarget, local: str | os.PathLike[str], remote: str,
    *, progress: Progress | None = None,
) -> int:  # fmt: skip
    """Copy a local file to the host; returns the size."""
    path = Path(local)
    if not path.is_file():
        raise SftpError(f"{path}: no such local file; check the path", host=target.label)
    return await _transfer(pool, target, "put", str(path), remote, progress, path.stat().st_size)


async def download(
    pool: ConnectionPool, target: SshTarget, remote: str, local: str | os.PathLike[str],
    *, progress: Progress | None = None,
) -> int:  # fmt: skip
    """Copy a file from the host to `local`; returns the size."""
    parent = Path(local).expanduser().resolve().parent
    if not parent.is_dir():
        raise SftpError(
            f"{parent}: local directory does not exist; create it first", host=target.label
        )
    return await _transfer(pool, target, "get", remote, str(local), progress, None)


async def _transfer(pool, target, op, src, dst, progress, size) -> int:
    try:
        async with pool.connection(target) as conn, conn.start_sftp_client() as sftp:
            if op == "get":
                size = (await sftp.stat(src)).size or 0
            await getattr(sftp, op)(
                src, dst, block_size=BLOCK_SIZE, progress_handler=_handler(progress)
            )
            if progress is not None and not size:
                progress(0, 0)
            return int(size or 0)
    except asyncssh.SFTPError as exc:
        remote = src if op == "get" else dst
        reason = _SFTP_REASONS.get(exc.code, exc.reason or "failed")
        raise SftpError(f"{target.label}:{remote}: {reason}; check the remote path and permissions",
                        host=target.label) from None  # fmt: skip
    except OSError as exc:
        if isinstance(exc, ConnectionError) or exc.errno is None:
            raise classify(exc, target) from None
        local = dst if op == "get" else src
        raise SftpError(
            f"{local}: {exc.strerror or exc}; check the local path", host=target.label
        ) from None
    except SshError:
        raise
    except asyncssh.Error as exc:
        raise classify(exc, target) from None
