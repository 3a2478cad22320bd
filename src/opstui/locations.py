"""Where opstui keeps its files: the one module that knows about paths.

`OPSTUI_CONFIG_DIR` and `OPSTUI_DATA_DIR` override the platformdirs defaults,
so tests (and people with unusual setups) stay out of the real locations.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "opstui"


def config_dir() -> Path:
    override = os.environ.get("OPSTUI_CONFIG_DIR")
    return Path(override) if override else platformdirs.user_config_path(APP_NAME)


def data_dir() -> Path:
    override = os.environ.get("OPSTUI_DATA_DIR")
    return Path(override) if override else platformdirs.user_data_path(APP_NAME)


def log_dir() -> Path:
    """Where the TUI logs while it owns the terminal (stderr would paint over it)."""
    override = os.environ.get("OPSTUI_LOG_DIR")
    if override:
        return Path(override)
    if os.environ.get("OPSTUI_DATA_DIR"):
        return data_dir() / "logs"
    return platformdirs.user_log_path(APP_NAME)


def config_file() -> Path:
    return config_dir() / "config.toml"


def embedded_dir() -> Path:
    """The persistent embedded backend: Postgres data, JWT secret, lock."""
    return data_dir() / "embedded"


def ensure_private_dir(path: Path) -> Path:
    """Create `path` (and parents) readable by the owner only."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path
