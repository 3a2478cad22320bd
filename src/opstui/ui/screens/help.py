"""`?`: every key of the screen underneath, generated from its bindings."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

FILTER_HELP = (
    "Filter (/): plain text matches fuzzily (letters in order), text with regex syntax is a "
    "regex, a leading ! inverts. Commands (:): a resource name or alias (hosts, repos, deploy, "
    "cicd (jobs), providers, builds, runs, teams, members, perms, people), team NAME, q. "
    "Ctrl+P opens the palette."
)


def _works_here(namespace, binding: Binding) -> bool:
    """Keys that do nothing here (another resource's, or refused) are not listed."""
    from textual.actions import parse

    try:
        _, name, parameters = parse(binding.action)
        return namespace.check_action(name, parameters) is not False
    except Exception:  # noqa: BLE001 - a key we cannot judge is listed
        return True


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "close", "Close", id="help.close")]

    def __init__(self, under: Screen) -> None:
        super().__init__()
        self.under = under

    def compose(self) -> ComposeResult:
        table = Table(
            title=f"Keys: {type(self.under).__name__.removesuffix('Screen')}", expand=True
        )
        table.add_column("Key", style="bold cyan", no_wrap=True)
        table.add_column("Action")
        table.add_column("Where", style="dim")
        seen: set[tuple[str, str]] = set()
        for key, description, where in self._keys():
            if (key, description) not in seen:
                seen.add((key, description))
                table.add_row(key, description, where)
        with VerticalScroll(id="help-body"):
            yield Static(table)
            yield Static(FILTER_HELP, id="help-filters")

    def _keys(self):
        app = self.app
        for namespace, bindings in self.under._binding_chain:
            where = "app" if namespace is app else type(namespace).__name__
            for key, binding_list in bindings.key_to_bindings.items():
                for binding in binding_list:
                    if not binding.description or not _works_here(namespace, binding):
                        continue
                    display = app.get_key_display(binding)
                    yield display or key, binding.description, where

    def action_close(self) -> None:
        self.dismiss(None)
