"""The k9s-style context line: where am I, who am I, and is it live."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.text import Text
from textual.widgets import Static

from opstui.store import ConnectionState, ConnectionStatus, Store


class ContextBar(Static):
    """Backend, tenant, team, tier, user on the left; the connection state on the right.

    At any width the connection state and the user stay; the backend, tier and
    tenant give way first (an 80-column terminal used to lose both).
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._last: tuple | None = None

    def render_context(
        self,
        store: Store | None,
        backend_label: str,
        status: ConnectionStatus | None,
        now: datetime | None = None,
        error: str | None = None,
    ) -> None:
        self._last = (store, backend_label, status, now, error)
        # (piece, priority): lower numbers are dropped last.
        pieces: list[tuple[Text, int]] = [
            (Text(" opstui ", style="bold reverse"), 3),
            (Text(f" {backend_label}", style="bold"), 5),
        ]
        identity = store.identity if store else None
        if identity is not None:
            tenant = (identity.tenant or {}).get("name", "?")
            team = next((t["name"] for t in identity.teams if t["id"] == store.team_id), "—")
            tier = (identity.tier or {}).get("name", "no tier")
            pieces += [
                (Text.assemble(("  tenant ", "dim"), tenant), 4),
                (Text.assemble(("  team ", "dim"), (team, "bold")), 1),
                (Text.assemble(("  tier ", "dim"), tier), 6),
                (
                    Text.assemble(
                        ("  user ", "dim"),
                        f"{identity.email} ({identity.profile.get('role', '?')})",
                    ),
                    2,
                ),
            ]
        state = Text("  ").append_text(connection_text(status, now or datetime.now(UTC), error))
        width = self.size.width or (self.app.size.width if self.is_attached else 200)
        room = width - state.cell_len
        for _, priority in sorted(pieces, key=lambda p: -p[1]):
            if sum(p.cell_len for p, _ in pieces) <= room:
                break
            pieces = [(p, r) for p, r in pieces if r != priority]
        text = Text(no_wrap=True, overflow="ellipsis")
        for piece, _ in pieces:
            text.append_text(piece)
        text.append_text(state)
        self.update(text)

    def on_resize(self) -> None:
        if self._last is not None:
            self.render_context(*self._last)


def connection_text(
    status: ConnectionStatus | None, now: datetime, error: str | None = None
) -> Text:
    if status is None:
        # A start that failed says so; it never claims to be "connecting" forever.
        if error:
            return Text("✕ not connected", style="bold red")
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
