"""Ctrl+P palette entries: every view, every team, every command-line verb."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from textual.app import SystemCommand

from opstui.resources import RESOURCES

if TYPE_CHECKING:
    from opstui.ui.app import OpsApp


def ops_commands(app: OpsApp) -> Iterator[SystemCommand]:
    yield SystemCommand(
        "Overview",
        "Counts, running and failed deployments, tier usage",
        lambda: app.run_command("overview"),
    )
    for spec in RESOURCES.values():
        aliases = ", ".join(spec.aliases)
        yield SystemCommand(
            f"Show {spec.title}",
            f":{spec.name}" + (f" (also {aliases})" if aliases else ""),
            lambda name=spec.name: app.run_command(name),
        )
    store = app.store
    if store is not None and store.identity is not None:
        for team in store.identity.my_teams:
            current = " (active)" if team["id"] == store.team_id else ""
            yield SystemCommand(
                f"Switch to team {team['name']}{current}",
                f":team {team['name']}",
                lambda name=team["name"]: app.run_command(f"team {name}"),
            )
