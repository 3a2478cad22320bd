"""The `:` command line, k9s style: suggestions as you type, Tab completes.

It completes resource names and aliases, `team NAME` with the user's teams, and
lists what still matches under the input, so a newcomer sees what exists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.suggester import Suggester
from textual.widgets import Input, Label

from opstui.resources import RESOURCES

# Canonical names before aliases, so `hos` suggests "hosts" rather than "host".
_NAMES = sorted({spec.name for spec in RESOURCES.values()} | {"team", "overview", "quit"})
COMMAND_WORDS = _NAMES + sorted(
    {alias for spec in RESOURCES.values() for alias in spec.aliases} - set(_NAMES)
)
TEAM_VERBS = ("team", "teams", "ctx")


def candidates(value: str, team_names: Iterable[str]) -> list[str]:
    """Every completion of `value`: `hos` -> ["hosts"], `team pa` -> ["team Payments"]."""
    text = value.lstrip(":")
    verb, space, rest = text.partition(" ")
    if space and verb.lower() in TEAM_VERBS:
        wanted = rest.lower()
        return [f"{verb} {name}" for name in sorted(team_names) if name.lower().startswith(wanted)]
    if space:
        return []
    wanted = text.lower()
    return [word for word in COMMAND_WORDS if word.startswith(wanted)]


class CommandSuggester(Suggester):
    def __init__(self, team_names: Callable[[], list[str]]) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.team_names = team_names

    async def get_suggestion(self, value: str) -> str | None:
        found = candidates(value, self.team_names())
        return found[0] if found and value else None


class CommandPrompt(ModalScreen[str | None]):
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="prompt.cancel"),
        Binding("tab", "complete", "Complete", id="prompt.complete", priority=True),
    ]

    def compose(self) -> ComposeResult:
        yield Label(
            "resources: hosts repos deploy cicd runs jobs teams members perms · team NAME · q",
            id="prompt-hint",
        )
        yield Input(placeholder=":", id="command", suggester=CommandSuggester(self._team_names))
        yield Label("", id="prompt-matches")

    def _team_names(self) -> list[str]:
        store = getattr(self.app, "store", None)
        identity = store.identity if store is not None else None
        return [team["name"] for team in identity.teams] if identity is not None else []

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        found = candidates(event.value, self._team_names()) if event.value else []
        shown = "  ".join(found[:12]) + ("  …" if len(found) > 12 else "")
        self.query_one("#prompt-matches", Label).update(shown if found else "")

    def action_complete(self) -> None:
        field = self.query_one(Input)
        found = candidates(field.value, self._team_names())
        if not found:
            return
        # Tab takes the suggestion shown in the input (the first match), as fish does.
        choice = found[0]
        field.value = choice + (" " if choice in TEAM_VERBS else "")
        field.cursor_position = len(field.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)
