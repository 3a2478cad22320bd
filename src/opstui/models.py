"""Pydantic models for what users type: hosts, repositories, deployments, CI/CD providers.

Rows read from the database stay plain dicts (the store keeps whatever the
server sends, so a new column never breaks the UI); these models validate
writes before they leave the machine, with messages that point at the field.
The database re-checks everything (RLS, constraints, limits).
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Port = Annotated[int, Field(ge=1, le=65535)]


class DeploymentStatus(StrEnum):
    PENDING = "pending"
    SCHEDULED = "scheduled"
    IN_PROGRESS = "in_progress"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELLED = "cancelled"


class HostStatus(StrEnum):
    PENDING = "pending"
    ONLINE = "online"
    OFFLINE = "offline"
    TESTING = "testing"
    FAILED = "failed"


_HOSTNAME_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def validate_host(value: str) -> str:
    """An IPv4/IPv6 address or an RFC 1123 host name."""
    value = value.strip()
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    labels = value.rstrip(".").split(".")
    if len(value) <= 253 and labels and all(_HOSTNAME_LABEL.match(label) for label in labels):
        # "10.0.0.300" is a bad IP, and "127.0.0.5root" a mistyped one, not host names
        # (validation examples only: nothing connects to them).
        if not labels[-1].isdigit() and not all(label.isdigit() for label in labels[:-1]):
            return value
        if len(labels) == 1 and not labels[0].isdigit():
            return value
    raise ValueError(f"{value!r} is not an IP address or host name")


# -- cron -----------------------------------------------------------------------------------------


def validate_cron(expression: str) -> str:
    """Standard 5-field cron (lists, ranges, steps, names) or an @macro, parsed by croniter.

    The runner fires schedules with the same parser (opstui.runs.schedule), so the
    form and the runner agree on what an expression means.
    """
    from opstui.runs.schedule import validate_cron as parse

    return parse(expression)


# -- forms ----------------------------------------------------------------------------------------


class FormModel(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    def to_row(self) -> dict[str, Any]:
        """The JSON the REST API gets (secrets revealed only here, on the way out)."""
        row = self.model_dump(mode="json", exclude_none=True)
        for name, value in self:
            if isinstance(value, SecretStr):
                row[name] = value.get_secret_value()
        return row


# Host names are used bare on the command line (`--hosts a,b`, `HOST:PATH`).
HostName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=63, pattern=r"^[A-Za-z0-9._-]+$"),
]


class HostForm(FormModel):
    # No `status`: it belongs to health checks, never to a hand edit.
    name: HostName
    description: str | None = None
    type: Literal["ssh", "docker", "portainer", "winrm"] = "ssh"
    ip: NonEmpty
    port: Port = 22
    user: str | None = None
    password: SecretStr | None = None
    is_windows: bool = False

    @field_validator("user")
    @classmethod
    def _user(cls, value: str | None) -> str | None:
        # A login name (Windows' DOMAIN\\user and user@domain included): no spaces or shell marks.
        if value and not re.fullmatch(r"[A-Za-z0-9._@\\$-]{1,64}", value):
            raise ValueError("a login name: letters, digits, '.', '_', '-', '@' or DOMAIN\\user")
        return value or None

    @field_validator("name", mode="wrap")
    @classmethod
    def _name(cls, value: Any, handler: Any) -> str:
        try:
            return handler(value)
        except ValidationError:
            raise ValueError(
                "use only letters, digits, '.', '-' and '_' (at most 63), e.g. lab-web-01"
            ) from None

    @field_validator("ip")
    @classmethod
    def _host(cls, value: str) -> str:
        return validate_host(value)


class RepositoryForm(FormModel):
    name: NonEmpty
    provider_id: NonEmpty
    provider_type: Literal["github", "gitlab", "gitea"] = "github"
    description: str | None = None
    owner: str | None = None
    url: str | None = None
    is_private: bool = False
    default_branch: NonEmpty = "main"
    language: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value and not re.match(r"^(https?|ssh|git)://|^git@", value):
            raise ValueError("must be an https://, ssh://, git:// or git@ URL")
        return value


class EnvVar(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
    value: str = ""


class DeploymentForm(FormModel):
    name: NonEmpty
    description: str | None = None
    repository_id: str | None = None
    scripts_path: list[NonEmpty] = Field(min_length=1)
    scripts_parameters: list[str] = Field(default_factory=list)
    host_ids: list[str] = Field(default_factory=list)
    schedule_type: Literal["now", "later", "cron"] = "now"
    scheduled_time: datetime | None = None
    cron_expression: str | None = None
    repeat_count: Annotated[int, Field(ge=0, le=10_000)] = 0
    environment_vars: list[EnvVar] = Field(default_factory=list)
    cicd_provider_id: str | None = None
    # Rollout (Ansible's serial): hosts per batch as a number or a percentage; the rollout
    # stops once more than rollout_max_failures hosts failed; each host's time limit.
    rollout_batch_size: NonEmpty = "100%"
    rollout_max_failures: Annotated[int, Field(ge=0, le=100_000)] = 0
    host_timeout_seconds: Annotated[int, Field(ge=1, le=604_800)] = 1800

    @field_validator("rollout_batch_size")
    @classmethod
    def _batch(cls, value: str) -> str:
        text = value.strip()
        number = text[:-1] if text.endswith("%") else text
        percent = text.endswith("%")
        if not number.isdigit() or not 1 <= int(number) <= (100 if percent else 999_999):
            raise ValueError("a number of hosts (e.g. 2) or a percentage from 1% to 100% (e.g. 25%)")
        return f"{int(number)}%" if percent else str(int(number))

    @field_validator("cron_expression")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return validate_cron(value) if value else None

    @model_validator(mode="after")
    def _schedule(self) -> DeploymentForm:
        if self.schedule_type == "cron" and not self.cron_expression:
            raise ValueError("cron_expression: required when the schedule is cron")
        if self.schedule_type == "later" and self.scheduled_time is None:
            raise ValueError("scheduled_time: required when the schedule is later")
        keys = [var.key for var in self.environment_vars]
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        if duplicates:
            raise ValueError(f"environment_vars: duplicate key {duplicates[0]!r}")
        return self

    @classmethod
    def parse_env(cls, text: str) -> list[EnvVar]:
        """`KEY=value` lines (blank lines and # comments ignored) as used by the form."""
        variables = []
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, sep, value = line.partition("=")
            if not sep:
                raise ValueError(f"environment line {number}: expected KEY=value")
            variables.append(EnvVar(key=key.strip(), value=value))
        return variables


_TOKEN_KEYS = ("api_token", "token", "password", "access_token", "private_token")


def _config_has(config: dict[str, Any], *names: str) -> bool:
    """A non-empty key among `names` at any depth, or a stored secret at such a path."""
    stored = {str(k).rsplit(".", 1)[-1] for k in config.get("secret_keys") or []}
    if stored & set(names):
        return True

    def walk(node: Any) -> bool:
        if isinstance(node, dict):
            return any((k in names and v not in (None, "")) or walk(v) for k, v in node.items())
        return isinstance(node, list) and any(walk(v) for v in node)

    return walk(config)


class CicdProviderForm(FormModel):
    """Jenkins: URL, user and API token; GitHub: API URL, owner/repo and token; GitLab: URL,
    project and token. Tokens go into `config` and the database moves them to the write-only
    secret store at once (any depth), so they are never read back."""

    name: NonEmpty
    type: Literal["jenkins", "github", "gitlab"] = "jenkins"
    url: NonEmpty
    port: Port | None = None
    config: dict[str, Any] = Field(default_factory=dict)

    @field_validator("type", mode="before")
    @classmethod
    def _type(cls, value: Any) -> Any:
        return {"github_actions": "github", "gitlab_ci": "gitlab"}.get(value, value)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        if "@" in value.split("//", 1)[1].split("/", 1)[0]:
            raise ValueError("must not carry credentials; put the user and token in config")
        return value

    @model_validator(mode="after")
    def _config(self) -> CicdProviderForm:
        config = self.config
        token = _config_has(config, *_TOKEN_KEYS)
        if self.type == "jenkins":
            if not _config_has(config, "username", "user"):
                raise ValueError('config: Jenkins needs "username" (the user the API token belongs to)')
            if not token:
                raise ValueError('config: Jenkins needs "api_token" (User > Security > API Token)')
        elif self.type == "github":
            repository = config.get("repository")
            has_repo = (config.get("owner") and config.get("repo")) or (
                isinstance(repository, str) and repository.count("/") == 1
            )
            if not has_repo:
                raise ValueError('config: GitHub needs "owner" and "repo" (or "repository": "owner/repo")')
            if not token:
                raise ValueError('config: GitHub needs "token" (actions:write on the repository)')
        elif self.type == "gitlab":
            if not _config_has(config, "project", "project_id"):
                raise ValueError('config: GitLab needs "project" (a path like group/app, or its id)')
            if not token:
                raise ValueError('config: GitLab needs "token" (a token with the api scope)')
        return self
