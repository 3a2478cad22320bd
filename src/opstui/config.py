"""Profiles: which Supabase project to talk to.

`config.toml` (in `locations.config_dir()`) holds named profiles:

    default_profile = "prod"

    [profiles.prod]
    url = "https://abcd.supabase.co"
    anon_key = "eyJ..."
    email = "me@example.com"      # optional: pre-fills the sign-in screen

`SUPABASE_URL` and `SUPABASE_ANON_KEY` override the selected profile (or make
one when there is no file). With no profile at all, opstui runs on the
embedded backend. Every problem is a `ConfigError` with one line that names
the file, the problem and the fix.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from opstui import locations

EMBEDDED_PROFILE = "embedded"
ENV_PROFILE = "env"


class ConfigError(Exception):
    """A one-line, user-facing configuration problem."""


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    url: Annotated[str, Field(min_length=1)]
    anon_key: Annotated[str, Field(min_length=1)]
    email: str | None = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")) or "://" == value[-3:]:
            raise ValueError("must start with http:// or https://")
        return value

    @property
    def is_embedded(self) -> bool:
        return self.name == EMBEDDED_PROFILE


class ConfigFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default_profile: str | None = None
    # Re-check every host over SSH this often while the TUI runs; 0 (the default) is off,
    # since checking unreachable hosts costs a connect timeout each.
    health_interval_seconds: Annotated[float, Field(ge=0)] = 0
    # The TUI's colour theme (a Textual theme name); the TUI writes it when you pick one.
    theme: str | None = None
    profiles: dict[str, dict] = Field(default_factory=dict)


def save_setting(key: str, value: str, path: Path | None = None) -> None:
    """Set one top-level `key = "value"` in the config file, keeping everything else.

    Blocking file I/O: the TUI calls it from a worker thread.
    """
    path = path or locations.config_file()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        lines = []
    line = f"{key} = {json.dumps(value)}"
    top = next((i for i, text in enumerate(lines) if text.lstrip().startswith("[")), len(lines))
    for index in range(top):
        if lines[index].split("=", 1)[0].strip() == key:
            lines[index] = line
            break
    else:
        lines.insert(0, line)
    locations.ensure_private_dir(path.parent)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def load_config(path: Path | None = None) -> ConfigFile:
    path = path or locations.config_file()
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ConfigFile()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}; check its permissions") from None
    try:
        data = tomllib.loads(raw)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc}); fix or move the file") from None
    try:
        return ConfigFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            f"{path}: {_first_error(exc)}; see the README's Configuration section"
        ) from None


def select_profile(name: str | None = None, *, path: Path | None = None) -> Profile | None:
    """The profile to use, or None for the embedded backend.

    Precedence: `--profile NAME`, then the file's `default_profile`, then the
    only profile if there is exactly one. `SUPABASE_URL`/`SUPABASE_ANON_KEY`
    override the URL and key of whichever is chosen.
    """
    path = path or locations.config_file()
    config = load_config(path)
    env_url = os.environ.get("SUPABASE_URL")
    env_key = os.environ.get("SUPABASE_ANON_KEY")

    if name == EMBEDDED_PROFILE:
        return None
    chosen = name or config.default_profile
    if chosen is None and len(config.profiles) == 1:
        chosen = next(iter(config.profiles))
    if chosen is not None and chosen not in config.profiles:
        known = ", ".join(sorted(config.profiles)) or "none"
        raise ConfigError(
            f"no profile {chosen!r} in {path} (known: {known}); add it or pick another"
        )

    fields: dict = dict(config.profiles.get(chosen, {})) if chosen else {}
    if env_url:
        fields["url"] = env_url
    if env_key:
        fields["anon_key"] = env_key
    if not fields:
        return None
    if bool(env_url) != bool(env_key) and chosen is None:
        missing = "SUPABASE_ANON_KEY" if env_url else "SUPABASE_URL"
        raise ConfigError(f"SUPABASE_URL and SUPABASE_ANON_KEY go together; set {missing} too")
    try:
        return Profile(name=chosen or ENV_PROFILE, **fields)
    except (ValidationError, TypeError) as exc:
        detail = _first_error(exc) if isinstance(exc, ValidationError) else str(exc)
        raise ConfigError(f"profile {chosen or ENV_PROFILE!r} in {path}: {detail}") from None


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error.get("loc", ())) or "file"
    return f"{where}: {error.get('msg', 'invalid')}"
