"""Where to connect: an `SshTarget` built from a hosts row, plus SSH config lookup.

`~/.ssh/config` is honoured through asyncssh's own config support (User, Port,
IdentityFile, ProxyJump, ...): the row's explicit `port`/`user` win over the
config (as command-line values do for OpenSSH); a row without them falls back
to the config, then to 22 and the local user. The config path is
`OPSTUI_SSH_CONFIG` when set, else `~/.ssh/config` (resolved through $HOME at
connect time, so tests point HOME at a sandbox).
"""

from __future__ import annotations

import base64
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_PORT = 22


def ssh_config_paths(override: str | os.PathLike[str] | None = None) -> list[Path]:
    """The SSH client config files to read ([] when none exists)."""
    if override is not None:
        path = Path(override).expanduser()
    elif os.environ.get("OPSTUI_SSH_CONFIG"):
        path = Path(os.environ["OPSTUI_SSH_CONFIG"]).expanduser()
    else:
        path = Path("~", ".ssh", "config").expanduser()
    return [path] if path.is_file() else []


class UnsupportedHost(ValueError):
    """A host whose type opstui cannot reach (winrm, docker, portainer): not over SSH."""


@dataclass(frozen=True)
class SshTarget:
    """One SSH destination. `key` identifies a pooled connection."""

    host: str  # address or name to connect to (hosts.ip)
    port: int | None = None  # None: from the SSH config, else 22
    username: str | None = None  # None: from the SSH config, else the local user
    name: str = ""  # hosts.name, for messages
    host_id: str | None = None  # hosts.id: the stored password is fetched by it
    team_id: str | None = None
    is_windows: bool = False
    config: tuple[str, ...] = field(default=(), compare=False)  # SSH config files

    @classmethod
    def from_host(
        cls, row: dict[str, Any], *, ssh_config: str | os.PathLike[str] | None = None
    ) -> SshTarget:
        kind = str(row.get("type") or "ssh")
        if kind != "ssh":
            raise UnsupportedHost(
                f"{row.get('name') or row.get('id')} is a {kind} host; opstui reaches hosts over"
                f" SSH only, {kind} is not supported yet (set its type to ssh if it runs sshd)"
            )
        ip = str(row.get("ip") or "").strip()
        if not ip:
            raise ValueError(f"host {row.get('name') or row.get('id')!r} has no ip address")
        port = row.get("port")
        return cls(
            host=ip,
            port=int(port) if port else None,
            username=(row.get("user") or None),
            name=str(row.get("name") or ip),
            host_id=None if row.get("id") is None else str(row["id"]),
            team_id=None if row.get("team_id") is None else str(row["team_id"]),
            is_windows=bool(row.get("is_windows")),
            config=tuple(str(p) for p in ssh_config_paths(ssh_config)),
        )

    @property
    def key(self) -> tuple[str, int | None, str | None]:
        return (self.host, self.port, self.username)

    @property
    def label(self) -> str:
        """How messages name this target: `name (user@ip:port)`."""
        where = (
            f"{self.username + '@' if self.username else ''}{self.host}:{self.port or DEFAULT_PORT}"
        )
        return f"{self.name} ({where})" if self.name and self.name != self.host else where

    def connect_kwargs(self) -> dict[str, Any]:
        """asyncssh.connect() arguments for host, port, user and config."""
        kwargs: dict[str, Any] = {"host": self.host, "config": list(self.config)}
        if self.port is not None:
            kwargs["port"] = self.port
        if self.username is not None:
            kwargs["username"] = self.username
        return kwargs

    def remote_command(self, command: str) -> str:
        """The command line to send: PowerShell for Windows hosts, as-is otherwise."""
        return powershell_command(command) if self.is_windows else command


def powershell_command(script: str) -> str:
    """`powershell ... -EncodedCommand <base64 UTF-16LE>`: no quoting rules to get wrong.

    OpenSSH on Windows hands the command line to the default shell (cmd.exe or
    PowerShell); an encoded command survives both unchanged.
    """
    encoded = base64.b64encode(script.encode("utf-16-le")).decode("ascii")
    return f"powershell -NoProfile -NonInteractive -EncodedCommand {encoded}"


def decode_powershell_command(command: str) -> str:
    """The script inside a `powershell_command()` line (for tests and audit display)."""
    parts = shlex.split(command)
    return base64.b64decode(parts[parts.index("-EncodedCommand") + 1]).decode("utf-16-le")
