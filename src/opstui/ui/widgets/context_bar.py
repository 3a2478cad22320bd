"""The k9s-style context line: where am I, who am I, and is it live."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.text import Text
from textual.widgets import Static

from opstui.store import ConnectionState, ConnectionStatus, Store


class ContextBar(Static):
    """Backend, tenant, team, tier, user on the left; the connection state on the right."""

    def render_context(
        self,
        store: Store | None,
        backend_label: str,
        status: ConnectionStatus | None,
        now: datetime | None = None,
    ) -> None:
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(" opstui ", style="bold reverse")
        text.append(f" {backend_label}", style="bold")
        identity = store.identity if store else None
        if identity is not None:
            tenant = (identity.tenant or {}).get("name", "?")
            team = next((t["name"] for t in identity.teams if t["id"] == store.team_id), "—")
            tier = (identity.tier or {}).get("name", "no tier")
            text.append("  tenant ", style="dim")
            text.append(tenant)
            text.append("  team ", style="dim")
            text.append(team, style="bold")
            text.append("  tier ", style="dim")
            text.append(tier)
            text.append("  user ", style="dim")
            text.append(f"{identity.email} ({identity.profile.get('role', '?')})")
        text.append("   ")
        text.append_text(connection_text(status, now or datetime.now(UTC)))
        self.update(text)


def connection_text(status: ConnectionStatus | None, now: datetime) -> Text:
    if status is None:
        return Text("◌ connecting", style="yellow")
    if status.state is ConnectionState.LIVE:
        return Text("● live", style="bold green")
    if status.state is ConnectionState.OFFLINE:
        since = status.since.astimezone(UTC).strftime("%H:%M:%S UTC")
        return Text(f"✕ offline since {since}", style="bold red")
    if status.state is ConnectionState.RECONNECTING:
        elapsed = max(0, int((now - status.since).total_seconds()))
        return Text(f"◌ reconnecting ({elapsed}s)", style="bold yellow")
    return Text("◌ connecting", style="yellow")
