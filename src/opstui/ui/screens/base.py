"""What every main screen shares: the context bar, the footer, store events."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.screen import Screen

from opstui.store import ConnectionChanged, IdentityLoaded, StoreEvent, TeamSwitched
from opstui.ui.widgets.context_bar import ContextBar
from opstui.ui.widgets.footer import OpsFooter

if TYPE_CHECKING:
    from opstui.store import Store
    from opstui.ui.app import OpsApp


class OpsScreen(Screen):
    """A main screen: context bar on top, a body, the footer at the bottom."""

    app: OpsApp  # type: ignore[assignment]

    def compose(self) -> ComposeResult:
        yield ContextBar(id="context")
        yield from self.compose_body()
        yield OpsFooter()

    def compose_body(self) -> ComposeResult:
        yield from ()

    @property
    def store(self) -> Store | None:
        return self.app.store

    def on_mount(self) -> None:
        self.app.store_changed.subscribe(self, self._on_store_event)
        self.refresh_context()
        if self.store is not None:
            self.store_ready()

    def _on_store_event(self, event: StoreEvent) -> None:
        if isinstance(event, IdentityLoaded | TeamSwitched | ConnectionChanged):
            self.refresh_context()
        self.on_store_event(event)

    def refresh_context(self) -> None:
        store = self.store
        self.query_one(ContextBar).render_context(
            store,
            self.app.backend_label,
            store.status if store else None,
            self.app.clock(),
            error=getattr(self.app, "connection_error", None),
        )

    def store_ready(self) -> None:
        """The store exists (now, or already at mount): load what this screen shows."""

    def on_store_event(self, event: StoreEvent) -> None:
        """Override to react to store events."""
