"""Against a real OpenSSH sshd on a loopback port, with its own config and host key.

Skipped only when no sshd binary exists (.ci/run installs openssh-server)."""

from __future__ import annotations

import asyncio
import getpass
import os
import shutil
import socket
import subprocess
from pathlib import Path

import asyncssh
import pytest

from opstui.ssh import ConnectionPool, SshSettings, SshTarget
from opstui.ssh.exec import run_command
from opstui.ssh.known_hosts import fingerprint
from opstui.ssh.pty import PtySession
from opstui.ssh.sftp import download, upload
from tests import ssh_support
from tests.ssh_support import until

# Shared fixtures (assigned, so each test's parameters resolve to them).
known, ssh_home = ssh_support.known, ssh_support.ssh_home

SSHD = shutil.which("sshd") or next(
    (p for p in ("/usr/sbin/sshd", "/usr/local/sbin/sshd") if os.path.exists(p)), None
)
pytestmark = pytest.mark.skipif(
    SSHD is None, reason="OpenSSH sshd is not installed (apt-get install openssh-server)"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
async def sshd(tmp_path):
    root = tmp_path / "sshd"
    root.mkdir(mode=0o700)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / "host_key")], check=True
    )
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    (root / "authorized_keys").write_bytes(client_key.export_public_key())
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation directory
    port = _free_port()
    (root / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {root / 'host_key'}\nPidFile {root / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {root / 'authorized_keys'}\nStrictModes no\nUsePAM no\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
        "Subsystem sftp internal-sftp\nLogLevel ERROR\n"
    )
    proc = await asyncio.create_subprocess_exec(
        SSHD,
        "-D",
        "-e",
        "-f",
        str(root / "sshd_config"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        await until(
            lambda: _accepts(port) or proc.returncode is not None, timeout=15, what="sshd listening"
        )
        if proc.returncode is not None:
            raise AssertionError(f"sshd exited: {(await proc.stderr.read()).decode()}")
        yield port, root, client_key
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()


async def test_real_sshd_host_key_exec_sftp_pty(sshd, known, ssh_home, tmp_path):
    port, root, client_key = sshd
    (ssh_home / ".ssh" / "id_ed25519").write_bytes(client_key.export_private_key())
    os.chmod(ssh_home / ".ssh" / "id_ed25519", 0o600)
    asked = []

    async def decide(target, unknown):
        asked.append(unknown)
        return "remember"

    target = SshTarget("127.0.0.1", port, getpass.getuser(), name="openssh")
    async with ConnectionPool(
        SshSettings(known_hosts=known, agent_path=None, decide=decide)
    ) as pool:
        run = run_command(pool, [target], "echo user=$(id -un); echo err >&2; exit 3")
        await run.wait()
        result = run.results["openssh"]
        assert result.status == "failed" and result.exit_status == 3, result.error
        assert result.stdout == f"user={getpass.getuser()}\n" and result.stderr == "err\n"
        host_pub = asyncssh.read_public_key(str(root / "host_key.pub"))
        assert [a.fingerprint for a in asked] == [fingerprint(host_pub)]
        assert f"[127.0.0.1]:{port} ssh-ed25519" in known.own_file().read_text()

        payload = os.urandom(100_000)
        (tmp_path / "a.bin").write_bytes(payload)
        remote = str(tmp_path / "remote.bin")
        await upload(pool, target, tmp_path / "a.bin", remote)
        assert Path(remote).read_bytes() == payload
        await download(pool, target, remote, tmp_path / "b.bin")
        assert (tmp_path / "b.bin").read_bytes() == payload

        session = await PtySession.open(pool, target, cols=100, rows=30)
        received = bytearray()

        async def reader():
            async for chunk in session:
                received.extend(chunk)

        task = asyncio.create_task(reader())
        session.write(b"stty size; echo TERM=$TERM\n")
        await until(
            lambda: b"30 100" in received and b"TERM=xterm-256color" in received, what="pty output"
        )
        session.write(b"exit 5\n")
        await asyncio.wait_for(task, 10)
        assert session.exit_status == 5
