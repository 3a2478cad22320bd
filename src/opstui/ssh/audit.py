"""The SSH audit trail: every interactive session and every command, via supabase-py.

Rows go to `public.ssh_audit` (see migration 20261125000600): who (profile_id
defaults to auth.uid() server-side), which host and team, when, the command, the
exit code and the duration. RLS lets the team read them and members insert only
their own; nobody updates or deletes.

    audit = SupabaseAudit(client)
    run = run_command(pool, targets, cmd, audit=audit)   # one row per host
    rows = await audit.trail(host_id)                    # newest first
"""

from __future__ import annotations

from typing import Any

from opstui.ssh.exec import AuditRecord


class SupabaseAudit:
    def __init__(self, client: Any) -> None:
        self.client = client

    async def __call__(self, record: AuditRecord) -> None:
        await self.record(record)

    async def record(self, record: AuditRecord) -> None:
        target = record.target
        if target.team_id is None:
            raise ValueError(f"{target.label}: no team_id, cannot audit")
        row = {
            "team_id": target.team_id,
            "host_id": target.host_id,
            "kind": record.kind,
            "command": record.command,
            "exit_code": record.exit_code,
            "started_at": record.started_at.isoformat(),
            "duration_ms": max(0, record.duration_ms),
        }
        await self.client.table("ssh_audit").insert(row).execute()

    async def trail(self, host_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """The host's audit rows, newest first (what RLS lets the caller see)."""
        response = await (
            self.client.table("ssh_audit")
            .select("*")
            .eq("host_id", host_id)
            .order("started_at", desc=True)
            .limit(limit)
            .execute()
        )
        return list(response.data or [])
