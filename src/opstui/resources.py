"""What opstui knows about each resource: table, aliases, columns, scope, permissions.

One registry serves the TUI (columns, `:` aliases), the headless commands and
the store (which tables to load and how to filter their realtime changes).
Adding a resource is adding one `ResourceSpec` here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ColumnKind = Literal[
    "text", "status", "time", "duration", "bool", "list", "number", "json", "progress"
]
# How the store scopes a table's snapshot and its realtime filter.
Scope = Literal["team", "tenant", "profile", "global", "visible"]


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    kind: ColumnKind = "text"
    width: int | None = None
    # "progress" columns show `key` of `of` ("3/5"); dotted keys read into JSON ("spec.name").
    of: str | None = None
    # A foreign key shown by name: (table the store holds, the column people read).
    ref: tuple[str, str] | None = None


@dataclass(frozen=True)
class ResourceSpec:
    name: str
    table: str
    title: str
    scope: Scope
    columns: tuple[Column, ...]
    aliases: tuple[str, ...] = ()
    # permission_matrix.resource_type governing writes; None = read-only here.
    permission_type: str | None = None
    primary_key: tuple[str, ...] = ("id",)
    order_by: str = "name"
    label_key: str = "name"
    hotkey: str | None = None
    writable: bool = False
    executable: bool = False
    related: tuple[str, ...] = field(default=())

    @property
    def scope_column(self) -> str | None:
        return {"team": "team_id", "tenant": "tenant_id", "profile": "profile_id"}.get(self.scope)

    @property
    def singular(self) -> str:
        """One row, in words: "repository", not "repositorie"."""
        title = self.title if self.title[1:2].isupper() else self.title.lower()
        if title.endswith("ies"):
            return title[:-3] + "y"
        if title == "people":
            return "person"
        return title.removesuffix("s")

    def key_of(self, row: dict) -> str:
        return "|".join(str(row.get(column)) for column in self.primary_key)


RESOURCES: dict[str, ResourceSpec] = {
    spec.name: spec
    for spec in (
        ResourceSpec(
            name="teams",
            table="teams",
            title="Teams",
            scope="tenant",
            aliases=("team", "tm"),
            hotkey="1",
            columns=(
                Column("name", "NAME", width=24),
                Column("description", "DESCRIPTION", width=40),
                Column("is_default", "DEFAULT", "bool"),
                Column("created_at", "AGE", "time"),
            ),
        ),
        ResourceSpec(
            name="hosts",
            table="hosts",
            title="Hosts",
            scope="team",
            aliases=("host", "ho", "no", "nodes"),
            permission_type="hosts",
            hotkey="2",
            writable=True,
            # Executing on hosts is SSH: the hosts screen's own keys (s, r, n) cover it.
            executable=False,
            columns=(
                Column("name", "NAME", width=22),
                Column("status", "STATUS", "status"),
                Column("ip", "ADDRESS", width=16),
                Column("port", "PORT", "number"),
                Column("user", "USER"),
                Column("is_windows", "OS", "bool"),
                Column("type", "TYPE"),
                # Health checks update the row: its age is from creation, the check has its own.
                Column("last_checked_at", "CHECKED", "time"),
                Column("created_at", "AGE", "time"),
            ),
            related=("deployments",),
        ),
        ResourceSpec(
            name="repositories",
            table="repositories",
            title="Repositories",
            scope="team",
            aliases=("repos", "repo", "rp"),
            permission_type="repositories",
            hotkey="3",
            writable=True,
            columns=(
                Column("name", "NAME", width=26),
                Column("owner", "OWNER"),
                Column("provider_type", "PROVIDER"),
                Column("default_branch", "BRANCH"),
                Column("language", "LANGUAGE"),
                Column("sync_status", "SYNC", "status"),
                Column("is_private", "PRIVATE", "bool"),
                Column("updated_at", "AGE", "time"),
            ),
            related=("deployments",),
        ),
        ResourceSpec(
            name="deployments",
            table="deployments",
            title="Deployments",
            scope="team",
            aliases=("deploy", "dp", "deployment"),
            permission_type="deployments",
            hotkey="4",
            order_by="created_at",
            writable=True,
            executable=True,
            columns=(
                Column("name", "NAME", width=28),
                Column("status", "STATUS", "status"),
                Column("schedule_type", "SCHEDULE"),
                Column("cron_expression", "CRON"),
                Column("host_ids", "HOSTS", "list"),
                Column("started_at", "STARTED", "time"),
                Column("completed_at", "DURATION", "duration"),
                Column("created_at", "AGE", "time"),
            ),
            related=("repositories", "hosts", "deployment_cicd_mappings"),
        ),
        ResourceSpec(
            # The CI/CD view (5): each job with its last build (the LAST.* values are derived
            # from the store's cicd_builds by the view; headless lists show them empty).
            name="cicd",
            table="cicd_jobs",
            title="CI/CD jobs",
            scope="team",
            aliases=("jobs", "cicd_jobs", "job", "ci"),
            permission_type="cicd_jobs",
            hotkey="5",
            executable=True,
            columns=(
                Column("name", "JOB", width=26),
                Column("provider_id", "PROVIDER", width=26, ref=("cicd_providers", "name")),
                Column("last_build.status", "LAST BUILD", "status"),
                Column("last_build.number", "#"),
                Column("last_build.requested_at", "BUILT", "time"),
                Column("last_build.error", "ERROR", width=30),
                Column("vanished_at", "VANISHED", "time"),
                Column("updated_at", "AGE", "time"),
            ),
        ),
        ResourceSpec(
            name="providers",
            table="cicd_providers",
            title="CI/CD providers",
            scope="team",
            aliases=("cicd_providers", "provider", "prov"),
            permission_type="cicd_providers",
            writable=True,
            columns=(
                Column("name", "NAME", width=24),
                Column("type", "TYPE"),
                Column("url", "URL", width=36),
                Column("port", "PORT", "number"),
                Column("updated_at", "AGE", "time"),
            ),
            related=("cicd_jobs",),
        ),
        ResourceSpec(
            name="builds",
            table="cicd_builds",
            title="CI/CD builds",
            scope="team",
            aliases=("cicd_builds", "build", "bl"),
            order_by="created_at",  # newest first
            label_key="job_name",
            columns=(
                Column("job_name", "JOB", width=26),
                Column("number", "#"),
                Column("status", "STATUS", "status"),
                Column("provider_type", "PROVIDER"),
                Column("requested_by", "BY", width=20, ref=("profiles", "email")),
                Column("started_at", "STARTED", "time"),
                Column("finished_at", "DURATION", "duration"),
                Column("url", "URL", width=30),
                Column("error", "ERROR", width=40),
            ),
        ),
        ResourceSpec(
            name="members",
            table="team_members",
            title="Team members",
            scope="team",
            aliases=("team_members", "member"),
            primary_key=("team_id", "profile_id"),
            order_by="created_at",
            label_key="profile_id",
            columns=(
                Column("profile_id", "MEMBER", width=30, ref=("profiles", "email")),
                Column("role", "ROLE"),
                Column("created_at", "AGE", "time"),
            ),
        ),
        ResourceSpec(
            name="permissions",
            table="permission_matrix",
            title="Permissions",
            scope="team",
            aliases=("permission_matrix", "perms"),
            order_by="resource_type",
            label_key="resource_type",
            columns=(
                Column("profile_id", "MEMBER", width=30, ref=("profiles", "email")),
                Column("resource_type", "RESOURCE"),
                Column("can_select", "SELECT", "bool"),
                Column("can_insert", "INSERT", "bool"),
                Column("can_update", "UPDATE", "bool"),
                Column("can_delete", "DELETE", "bool"),
                Column("can_execute", "EXECUTE", "bool"),
                Column("can_update_own", "UPD OWN", "bool"),
                Column("can_delete_own", "DEL OWN", "bool"),
            ),
        ),
        ResourceSpec(
            name="profiles",
            table="profiles",
            title="People",
            scope="tenant",
            aliases=("people", "users"),
            order_by="email",
            label_key="email",
            columns=(
                Column("email", "EMAIL", width=28),
                Column("full_name", "NAME", width=22),
                Column("role", "ROLE"),
            ),
        ),
        ResourceSpec(
            name="deployment_cicd_mappings",
            table="deployment_cicd_mappings",
            title="CI/CD mappings",
            scope="visible",
            aliases=("mappings",),
            order_by="created_at",
            label_key="build_number",
            columns=(
                Column("deployment_id", "DEPLOYMENT", width=30, ref=("deployments", "name")),
                Column("cicd_job_id", "JOB", width=30, ref=("cicd_jobs", "name")),
                Column("build_number", "BUILD"),
                Column("build_url", "URL", width=36),
            ),
        ),
        ResourceSpec(
            name="git_providers",
            table="git_providers",
            title="Git providers",
            scope="visible",
            aliases=("git", "gitproviders"),
            columns=(
                Column("name", "NAME", width=24),
                Column("type", "TYPE"),
                Column("server_url", "SERVER", width=36),
                Column("is_configured", "CONFIGURED", "bool"),
            ),
        ),
        ResourceSpec(
            name="runs",
            table="deployment_runs",
            title="Deployment runs",
            scope="team",
            aliases=("deployment_runs", "run", "history"),
            order_by="created_at",  # newest first
            label_key="number",
            columns=(
                Column("spec.deployment_name", "DEPLOYMENT", width=28),
                Column("number", "#", "number"),
                Column("status", "STATUS", "status"),
                Column("trigger", "TRIGGER"),
                Column("hosts_done", "HOSTS", "progress", of="hosts_total"),
                Column("hosts_failed", "FAILED", "number"),
                Column("started_at", "STARTED", "time"),
                Column("finished_at", "DURATION", "duration"),
                Column("runner_name", "RUNNER"),
                Column("error", "ERROR", width=40),
            ),
        ),
        ResourceSpec(
            name="pins",
            table="profile_repository_pins",
            title="Pinned repositories",
            scope="profile",
            primary_key=("profile_id", "repository_id"),
            order_by="created_at",
            label_key="repository_id",
            columns=(
                Column("repository_id", "REPOSITORY", ref=("repositories", "name")),
                Column("created_at", "PINNED", "time"),
            ),
        ),
    )
}


def resolve(name: str) -> ResourceSpec | None:
    """A resource by name or alias, as typed after `:` (case-insensitive)."""
    wanted = name.strip().lower()
    for spec in RESOURCES.values():
        if wanted == spec.name or wanted in spec.aliases or wanted == spec.table:
            return spec
    return None


def by_table(table: str) -> ResourceSpec:
    return next(spec for spec in RESOURCES.values() if spec.table == table)
