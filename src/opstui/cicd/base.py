"""What every CI/CD provider client offers, and the one error type they raise.

A client is built from a provider row plus its secrets (read by the runner through
`get_cicd_provider_secrets`), talks HTTP with httpx, and never puts a secret in
anything it returns or raises.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


class ProviderError(Exception):
    """A one-line, user-facing explanation (unreachable, 401, 403, not found, ...).

    `kind` is one of: unreachable, timeout, unauthorized, forbidden, not_found, server,
    protocol, rate_limited, bad_request, config.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class JobInfo:
    """One triggerable job as the provider lists it."""

    external_id: str
    name: str
    description: str | None = None
    url: str | None = None
    parameter_definitions: list[dict[str, Any]] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        return {
            "external_id": self.external_id,
            "name": self.name,
            "description": self.description,
            "url": self.url,
            "parameter_definitions": self.parameter_definitions,
        }


@dataclass
class BuildRef:
    """Where a triggered build is on the provider. Filled in as it becomes known."""

    queue_id: str | None = None  # Jenkins queue item URL
    external_id: str | None = None  # Jenkins build URL, GitHub run id, GitLab pipeline id
    number: str | None = None
    url: str | None = None

    def fields(self) -> dict[str, str]:
        return {
            k: v
            for k, v in (
                ("queue_id", self.queue_id),
                ("external_id", self.external_id),
                ("number", self.number),
                ("url", self.url),
            )
            if v is not None
        }


@dataclass
class BuildState:
    """The provider's view of a build, in opstui's vocabulary."""

    status: str  # queued | running | succeeded | failed | cancelled
    detail: str = ""  # the provider's own word (FAILURE, timed_out, ...)
    progress: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.status in ("succeeded", "failed", "cancelled")


class ProviderClient(Protocol):
    kind: str

    async def test_connection(self) -> str:
        """One line saying what was reached and as whom; raises ProviderError."""

    async def list_jobs(self) -> list[JobInfo]: ...

    async def trigger(
        self, job_external_id: str, parameters: dict[str, Any], marker: str
    ) -> BuildRef:
        """Start a build. `marker` is unique per build (used to find it without racing)."""

    async def resolve(self, ref: BuildRef, timeout: float) -> BuildRef:
        """Wait until the build has its number and URL (Jenkins: leaves the queue)."""

    async def state(self, ref: BuildRef) -> BuildState: ...

    async def read_log(self, ref: BuildRef) -> tuple[str, bool]:
        """New log text since the last call, and whether more may come."""

    async def cancel(self, ref: BuildRef) -> None: ...

    async def aclose(self) -> None: ...
