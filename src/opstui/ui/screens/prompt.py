"""The `:` command line, k9s style, with completion of resource names and aliases."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import Input, Label

from opstui.resources import RESOURCES

COMMAND_WORDS = sorted(
    {name for spec in RESOURCES.values() for name in (spec.name, *spec.aliases)}
    | {"team", "overview", "quit", "q"}
)


class CommandPrompt(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="prompt.cancel")]

    def compose(self) -> ComposeResult:
        yield Label(
            "resources: hosts repos deploy cicd jobs teams members perms · team NAME · q",
            id="prompt-hint",
        )
        yield Input(
            placeholder=":",
            id="command",
            suggester=SuggestFromList(COMMAND_WORDS, case_sensitive=False),
        )

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)
