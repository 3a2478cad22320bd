"""SSH for opstui (asyncssh; no Textual): targets, host keys, pooled connections,
multi-host exec, health checks, SFTP, audit and PTY sessions.

Module map: target (SshTarget, powershell_command), known_hosts (KnownHosts),
connection (SshSettings, connect, rpc_password_source), errors (SshError,
HostKeyUnknown, HostKeyChanged), pool (ConnectionPool), exec (run_command and
its events), health (HealthChecker, PeriodicHealth, STATUSES), sftp (upload,
download), audit (SupabaseAudit), pty (PtySession).
"""

from opstui.ssh.connection import SshSettings, connect, rpc_password_source
from opstui.ssh.errors import HostKeyChanged, HostKeyUnknown, SshError
from opstui.ssh.known_hosts import KnownHosts
from opstui.ssh.pool import ConnectionPool
from opstui.ssh.target import SshTarget, powershell_command

__all__ = [
    "ConnectionPool", "HostKeyChanged", "HostKeyUnknown", "KnownHosts", "SshError", "SshSettings",
    "SshTarget", "connect", "powershell_command", "rpc_password_source",
]  # fmt: skip
