"""A provider client from a `cicd_providers` row and its secrets.

The row's `config` has the secret-bearing keys removed by the database (they live in the
write-only store, under their path: "api_token", "auth.password"); `merge_secrets` puts them
back, in memory only, for the runner.

Why thin httpx clients rather than python-jenkins / PyGithub / python-gitlab: those three are
synchronous (requests), and nothing may block the runner's or the TUI's event loop; wrapping
each call in a thread would still leave their retry/sleep logic blind to our cancel and lease
deadlines. The endpoints used are few and stable, so a thin async client per provider is
smaller than the glue a sync library would need.
"""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from opstui.cicd.base import ProviderClient, ProviderError
from opstui.cicd.github import GitHubClient
from opstui.cicd.gitlab import GitLabClient
from opstui.cicd.jenkins import JenkinsClient

PROVIDER_TYPES = ("jenkins", "github", "gitlab")
_ALIASES = {"github_actions": "github", "gitlab_ci": "gitlab"}


def normalize_type(kind: str) -> str:
    kind = (kind or "").strip().lower()
    return _ALIASES.get(kind, kind)


def merge_secrets(config: dict[str, Any], secrets: dict[str, Any]) -> dict[str, Any]:
    """config with each secret put back at its dotted path (a copy)."""
    merged = copy.deepcopy({k: v for k, v in (config or {}).items() if k != "secret_keys"})
    for path, value in (secrets or {}).items():
        parts = path.split(".")
        node: Any = merged
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list) and part.isdigit():
                index = int(part)
                while len(node) <= index:
                    node.append({})
                if last:
                    node[index] = value
                else:
                    node = node[index]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    nxt = parts[i + 1]
                    node = node.setdefault(part, [] if nxt.isdigit() else {})
            else:
                break
    return merged


def base_url(url: str, port: int | None) -> str:
    """The provider URL with the row's port applied when the URL has none."""
    parts = urlsplit(url.strip())
    if port and parts.port is None and parts.hostname:
        host = parts.hostname
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{host}:{port}"
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts).rstrip("/")


def _first(config: dict[str, Any], *names: str) -> Any:
    """The first of `names` set in config: top level first, then nested (`auth.token`)."""
    for name in names:
        value = config.get(name)
        if value not in (None, ""):
            return value
    for value in config.values():
        if isinstance(value, dict):
            found = _first(value, *names)
            if found is not None:
                return found
    return None


def client_for(
    provider: dict[str, Any], secrets: dict[str, Any], *, timeout: float = 15.0
) -> ProviderClient:
    """The client for a provider row; raises ProviderError(kind="config") naming what is missing."""
    kind = normalize_type(provider.get("type") or "")
    config = merge_secrets(provider.get("config") or {}, secrets)
    url = base_url(provider.get("url") or "", provider.get("port"))
    name = provider.get("name") or "provider"
    if not url.startswith(("http://", "https://")):
        raise ProviderError(
            "config", f"CI/CD provider {name}: the URL must start with http:// or https://"
        )
    verify = bool(config.get("verify_tls", True))
    token = _first(config, "api_token", "token", "password", "access_token", "private_token")
    if kind == "jenkins":
        user = _first(config, "username", "user")
        if not user or not token:
            raise ProviderError("config", f"Jenkins provider {name} needs a user and an API token")
        return JenkinsClient(
            url,
            str(user),
            str(token),
            crumb=bool(_first(config, "crumb", "use_crumb", "crumb_issuer")),
            folder=str(config.get("folder") or ""),
            timeout=timeout,
            verify=verify,
        )
    if kind == "github":
        owner, repo = config.get("owner"), config.get("repo")
        if not owner and isinstance(config.get("repository"), str) and "/" in config["repository"]:
            owner, repo = config["repository"].split("/", 1)
        if not owner or not repo or not token:
            raise ProviderError("config", f"GitHub provider {name} needs owner, repo and a token")
        return GitHubClient(
            url,
            str(owner),
            str(repo),
            str(token),
            ref=config.get("ref"),
            api_version=str(config.get("api_version") or "2022-11-28"),
            timeout=timeout,
            verify=verify,
        )
    if kind == "gitlab":
        project = _first(config, "project", "project_id")
        if not project or not token:
            raise ProviderError("config", f"GitLab provider {name} needs a project and a token")
        refs = config.get("refs")
        return GitLabClient(
            url,
            str(project),
            str(token),
            refs=list(refs) if isinstance(refs, list) else None,
            timeout=timeout,
            verify=verify,
        )
    raise ProviderError(
        "config",
        f"CI/CD provider {name} has type {kind or 'none'}; opstui drives jenkins, github and gitlab",
    )
