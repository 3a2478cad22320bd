"""`opstui` with no command: the TUI, on the embedded demo or a configured project."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from opstui.errors import CliError

if TYPE_CHECKING:
    from opstui.backend.background import BackgroundBackend


def run_tui(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    return _run_tui(args.profile, args.team, verbose=args.verbose)


def _run_tui(profile: str | None, team: str | None, *, verbose: bool = False) -> int:
    # No project configured: boot the embedded backend first, on its own thread, so
    # Postgres starts while the config code (pydantic), the UI and supabase-py are imported.
    background = _start_backend() if _plainly_embedded(profile) else None
    from opstui.config import ConfigError, select_profile

    try:
        chosen = select_profile(profile)
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    if chosen is None and background is None:
        background = _start_backend()
    from opstui.connect import Connector, EmbeddedConnector
    from opstui.session import Target

    if chosen is None:
        connector: Connector = EmbeddedConnector(
            target=Target("embedded", "", "", is_embedded=True), background=background
        )
    else:
        connector = Connector(target=Target.from_profile(chosen), email_hint=chosen.email)
    from opstui.config import load_config
    from opstui.ui.app import OpsApp
    from opstui.ui.log_notices import logs_to_file

    config = load_config()
    app = OpsApp(
        connector,
        team=team,
        health_interval=config.health_interval_seconds,
        exit_on_signals=True,
        theme=config.theme,
        remember_theme=True,
    )
    try:
        with logs_to_file(app, verbose=verbose):
            app.run()
    finally:
        # Whatever ended the app (ctrl+q, SIGHUP from a closed terminal, a crash), the
        # embedded Postgres stops with it; the app's own unmount may have been cut short.
        if background is not None:
            background.stop()
    return 0


def _plainly_embedded(profile: str | None) -> bool:
    """True when nothing could name a project: no --profile, no SUPABASE_* and no config file.

    Decided without importing the config module, which costs 0.26 s of start-up.
    """
    import os

    from opstui import locations

    if profile not in (None, "embedded"):
        return False
    if os.environ.get("SUPABASE_URL") or os.environ.get("SUPABASE_ANON_KEY"):
        return False
    path = locations.config_file()
    if not path.exists():
        return True
    # A file holding only UI settings (the theme) names no project either.
    text = path.read_text(encoding="utf-8", errors="replace")
    return "profiles" not in text and "default_profile" not in text


def _start_backend() -> BackgroundBackend:
    from opstui.backend.background import BackgroundBackend

    return BackgroundBackend(defer_ssh_demo=True)
