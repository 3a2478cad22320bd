"""Deterministic, realistic demo data for the embedded backend.

`seed_demo(conn)` inserts (as superuser) two tenants on different tiers, three
teams, seven users with different roles, hosts, git providers, repositories,
CI/CD providers and jobs, and deployments in every status. Users are created
by inserting into auth.users, so the on_auth_user_created trigger creates
their profiles; secrets are written through the normal columns, so the
triggers move them into the private secret tables.

The same `now` (and passwords) always produces the same rows (ids, timestamps,
hashes). The passwords are generated per install (`load_or_create_accounts`) and
kept in the 0600 data directory: a published password plus a gateway on
127.0.0.1 would let any local user sign in and read a lab host's SSH password.

Every address is loopback: hosts that are not lab servers get 127.0.0.2xx on a
port nothing listens on (a health check fails fast and sends nothing off the
machine), CI/CD and git provider URLs likewise, and the repositories are real
local git repositories (`demo_repos.py`) whose scripts the runner really runs.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import bcrypt
import psycopg

from opstui.backend.demo_repos import LINUX_SCRIPT_SETS, WINDOWS_SCRIPTS

ACCOUNTS_FILE = "demo-accounts.json"  # in the embedded data directory, mode 0600
_SEED = 20261125
# Non-lab hosts and the CI/CD and git servers: 127.0.0.2xx on port 9 (discard), which
# nothing listens on (only root could bind it): connections are refused at once, locally.
UNUSED_PORT = 9
# Where the seeded repository URLs point when no repositories directory is given (SQL tests).
PLACEHOLDER_REPOS_DIR = Path("/nonexistent/opstui-demo-repos")
_BCRYPT_ALPHABET = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


@dataclass(frozen=True)
class DemoUser:
    email: str
    password: str = field(compare=False, repr=False)
    user_id: str
    tenant_id: str
    team_ids: tuple[str, ...]
    role: str


@dataclass(frozen=True)
class DemoAccount:
    """What the README lists: who can sign in, and what they can do."""

    email: str
    full_name: str
    role: str  # profiles.role
    tenant: str  # tenant name
    teams: tuple[tuple[str, str], ...]  # (team name, team_members.role)


TIERS = {
    "starter": ("Starter", "Small teams getting started", False),
    "pro": ("Pro", "Growing organisations", False),
    "enterprise": ("Enterprise", "No limits", True),
}
# resource_type -> max_count, for tiers with limits.
TIER_LIMITS = {
    "starter": {
        "hosts": 25,
        "repositories": 15,
        "deployments": 100,
        "cicd_providers": 3,
        "teams": 3,
    },
    "pro": {
        "hosts": 200,
        "repositories": 100,
        "deployments": 2000,
        "cicd_providers": 10,
        "teams": 20,
    },
}
RESOURCE_TYPES = ("hosts", "repositories", "deployments", "cicd_providers", "cicd_jobs")
_OPS = ("select", "insert", "update", "delete", "execute", "update_own", "delete_own")


def _perm(*ops: str) -> dict[str, bool]:
    return {op: op in ops for op in _OPS}


ROLE_TEMPLATES: dict[str, dict[str, dict[str, bool]]] = {
    "admin": {rt: _perm(*_OPS) for rt in RESOURCE_TYPES},
    "developer": {
        "hosts": _perm("select", "insert", "execute", "update_own", "delete_own"),
        "repositories": _perm("select", "insert", "update", "execute", "update_own", "delete_own"),
        "deployments": _perm("select", "insert", "update", "execute", "update_own", "delete_own"),
        "cicd_providers": _perm("select", "insert", "execute", "update_own", "delete_own"),
        "cicd_jobs": _perm("select", "insert", "update", "execute", "update_own", "delete_own"),
    },
    "contributor": {
        rt: _perm("select", "insert", "update_own", "delete_own") for rt in RESOURCE_TYPES
    },
    "tester": {
        "hosts": _perm("select", "execute"),
        "repositories": _perm("select"),
        "deployments": _perm("select", "execute"),
        "cicd_providers": _perm("select"),
        "cicd_jobs": _perm("select", "execute"),
    },
    "viewer": {rt: _perm("select") for rt in RESOURCE_TYPES},
}

TENANTS = (
    # key, name, domain, tier
    ("acme", "Acme Corp", "acme.test", "enterprise"),
    ("globex", "Globex", "globex.test", "starter"),
)
TEAMS = (
    # key, tenant key, name, description, is_default
    ("platform", "acme", "Platform", "Shared infrastructure, CI and observability", True),
    ("payments", "acme", "Payments", "Payment processing and ledger services", False),
    ("core", "globex", "Core", "Globex core services", True),
)
USERS = (
    # email, full name, tenant, profile role, ((team, team role), ...)
    (
        "admin@acme.test",
        "Ada Admin",
        "acme",
        "admin",
        (("platform", "admin"), ("payments", "admin")),
    ),
    (
        "dev@acme.test",
        "Dev Patel",
        "acme",
        "developer",
        (("platform", "developer"), ("payments", "developer")),
    ),
    ("viewer@acme.test", "Vera Viewer", "acme", "viewer", (("platform", "viewer"),)),
    ("tester@acme.test", "Tom Tester", "acme", "tester", (("payments", "tester"),)),
    (
        "contrib@acme.test",
        "Cora Contributor",
        "acme",
        "contributor",
        (("platform", "contributor"),),
    ),
    ("ops@globex.test", "Otto Ops", "globex", "admin", (("core", "admin"),)),
    ("dev@globex.test", "Gina Developer", "globex", "developer", (("core", "developer"),)),
)
_TENANT_NAMES = {key: name for key, name, _, _ in TENANTS}
_TEAM_NAMES = {key: name for key, _, name, _, _ in TEAMS}
TENANT_OF_TEAM = {key: tenant for key, tenant, _, _, _ in TEAMS}

DEMO_ACCOUNTS: tuple[DemoAccount, ...] = tuple(
    DemoAccount(
        email,
        full_name,
        role,
        _TENANT_NAMES[tenant],
        tuple((_TEAM_NAMES[t], r) for t, r in teams),
    )
    for email, full_name, tenant, role, teams in USERS
)
DEMO_EMAILS: tuple[str, ...] = tuple(u[0] for u in USERS)


def generate_passwords() -> dict[str, str]:
    """A fresh random password per demo account."""
    return {email: "demo-" + secrets.token_urlsafe(12) for email in DEMO_EMAILS}


def accounts_file(root: Path) -> Path:
    return Path(root) / ACCOUNTS_FILE


def load_or_create_accounts(root: Path) -> tuple[dict[str, str], bool]:
    """The demo passwords of this data directory: (email -> password, newly made?).

    Kept in `<root>/demo-accounts.json`, readable by the owner only. A missing or
    unreadable file gets new passwords (the caller then sets them in the database).
    """
    path = accounts_file(root)
    try:
        data = json.loads(path.read_text())
        passwords = {a["email"]: a["password"] for a in data["accounts"]}
        if all(isinstance(passwords.get(e), str) and passwords[e] for e in DEMO_EMAILS):
            return {e: passwords[e] for e in DEMO_EMAILS}, False
    except (OSError, ValueError, KeyError, TypeError):
        pass
    passwords = generate_passwords()
    write_accounts(root, passwords)
    return passwords, True


def write_accounts(root: Path, passwords: dict[str, str]) -> Path:
    path = accounts_file(root)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    accounts = [
        {
            "email": a.email,
            "password": passwords[a.email],
            "full_name": a.full_name,
            "role": a.role,
            "tenant": a.tenant,
            "teams": [{"team": team, "role": role} for team, role in a.teams],
        }
        for a in DEMO_ACCOUNTS
    ]
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"accounts": accounts}, f, indent=2)
    os.replace(tmp, path)
    return path


def read_accounts(root: Path) -> list[dict] | None:
    """The accounts file's entries (None when this data directory has none yet)."""
    try:
        return list(json.loads(accounts_file(root).read_text())["accounts"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def set_passwords(conn: psycopg.Connection, passwords: dict[str, str]) -> int:
    """Give the demo users these passwords (an install seeded with the old published one)."""
    changed = 0
    with conn.transaction():
        for email, password in passwords.items():
            hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(10)).decode()
            cur = conn.execute(
                "update auth.users set encrypted_password = %s where lower(email) = %s",
                (hashed, email),
            )
            changed += cur.rowcount
    return changed

# Hosts per team: (name, is_windows, description)
_HOSTS = {
    "platform": [
        ("bastion-01", False, "SSH bastion for the platform network"),
        ("k8s-cp-01", False, "Kubernetes control plane"),
        ("k8s-cp-02", False, "Kubernetes control plane"),
        ("k8s-node-01", False, "Kubernetes worker"),
        ("k8s-node-02", False, "Kubernetes worker"),
        ("k8s-node-03", False, "Kubernetes worker"),
        ("prometheus-01", False, "Metrics and alerting"),
        ("grafana-01", False, "Dashboards"),
        ("jenkins-agent-01", False, "CI build agent"),
        ("win-build-01", True, "Windows build agent (MSBuild)"),
        ("ad-dc-01", True, "Active Directory domain controller"),
        ("localhost-lab", False, "Local lab VM on loopback"),
    ],
    "payments": [
        ("pay-api-01", False, "Payments API"),
        ("pay-api-02", False, "Payments API"),
        ("ledger-db-01", False, "PostgreSQL primary for the ledger"),
        ("ledger-db-02", False, "PostgreSQL replica for the ledger"),
        ("pay-batch-win-01", True, "Windows batch settlement host"),
        ("pay-worker-01", False, "Queue worker"),
    ],
    "core": [
        ("core-web-01", False, "Web frontend"),
        ("core-web-02", False, "Web frontend"),
        ("core-db-01", False, "Primary database"),
        ("core-cache-01", False, "Redis cache"),
        ("core-win-01", True, "Windows reporting server"),
        ("core-lab", False, "Loopback lab host"),
    ],
}
_HOST_STATUSES = ("online", "online", "online", "offline", "pending", "testing", "failed")

# Git providers: key, owner email, type, name, display, server_url
_GIT_PROVIDERS = (
    ("acme-github", "admin@acme.test", "github", "acme-github", "Acme on GitHub", None),
    (
        "acme-gitlab",
        "dev@acme.test",
        "gitlab",
        "acme-gitlab",
        "Acme GitLab",
        "http://127.0.0.250:9",  # loopback, nothing listens (a self-hosted GitLab's place)
    ),
    ("globex-github", "ops@globex.test", "github", "globex-github", "Globex on GitHub", None),
)
# Repositories: team, provider, name, language, private, description
_REPOS = (
    ("platform", "acme-github", "infra-terraform", "HCL", True, "Terraform for all environments"),
    (
        "platform",
        "acme-github",
        "k8s-manifests",
        "YAML",
        True,
        "Kustomize overlays for the clusters",
    ),
    ("platform", "acme-gitlab", "ops-scripts", "Shell", False, "Runbooks and maintenance scripts"),
    ("platform", "acme-github", "platform-api", "Go", True, "Internal platform API"),
    ("platform", "acme-gitlab", "observability", "Jsonnet", False, "Dashboards and alert rules"),
    ("payments", "acme-gitlab", "payments-service", "Java", True, "Card and wallet payments"),
    ("payments", "acme-gitlab", "ledger", "Kotlin", True, "Double-entry ledger"),
    ("payments", "acme-github", "billing-ui", "TypeScript", True, "Billing back-office UI"),
    ("core", "globex-github", "core-api", "Python", True, "Globex core API"),
    ("core", "globex-github", "core-web", "TypeScript", False, "Globex website"),
    ("core", "globex-github", "deploy-tools", "Rust", False, "Deployment helpers"),
    ("core", "globex-github", "db-migrations", "SQL", True, "Schema migrations"),
)
_SYNC = ("SYNCED", "SYNCED", "SYNCED", "IDLE", "SYNCING", "ERROR")

_DEPLOYMENT_STATUSES = ("success", "failed", "in_progress", "pending", "scheduled", "cancelled")
_DEPLOYMENT_COUNTS = {"platform": 20, "payments": 12, "core": 12}


def _status_of(name: str, drawn: str) -> str:
    # A lab host is up when the demo runs: let a health check say so, never seed `offline`.
    return "pending" if "lab" in name else drawn


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _bcrypt_hash(password: str, rng: random.Random) -> str:
    salt_chars = "".join(rng.choice(_BCRYPT_ALPHABET) for _ in range(21)) + rng.choice(".Oeu")
    return bcrypt.hashpw(password.encode(), f"$2b$10${salt_chars}".encode()).decode()


def _token(rng: random.Random, prefix: str, n: int = 32) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return prefix + "".join(rng.choice(alphabet) for _ in range(n))


def _exists(conn: psycopg.Connection) -> bool:
    row = conn.execute(
        "select count(*) from auth.users where lower(email) = any(%s)", (list(DEMO_EMAILS),)
    ).fetchone()
    return bool(row and row[0])


def demo_users(
    conn: psycopg.Connection, passwords: dict[str, str] | None = None
) -> list[DemoUser]:
    """The demo users as stored in the database (empty if not seeded), with their
    passwords when given (the database keeps only hashes)."""
    rows = conn.execute(
        """
        select u.email, u.id::text, p.tenant_id, p.role,
               coalesce(array_agg(t.id::text order by t.name) filter (where t.id is not null), '{}')
        from auth.users u
        join public.profiles p on p.id = u.id
        left join public.team_members tm on tm.profile_id = u.id
        left join public.teams t on t.id = tm.team_id
        where lower(u.email) = any(%s)
        group by u.email, u.id, p.tenant_id, p.role
        """,
        (list(DEMO_EMAILS),),
    ).fetchall()
    by_email = {r[0]: r for r in rows}
    return [
        DemoUser(
            e,
            (passwords or {}).get(e, ""),
            by_email[e][1],
            by_email[e][2],
            tuple(by_email[e][4]),
            by_email[e][3],
        )
        for e in DEMO_EMAILS
        if e in by_email
    ]


def seed_demo(
    conn: psycopg.Connection,
    *,
    now: datetime | None = None,
    passwords: dict[str, str] | None = None,
    repos_dir: Path | None = None,
    live_runs: bool = False,
) -> list[DemoUser]:
    """Insert the demo data unless it is already there; return the demo users.

    `passwords` (email -> password) default to fresh random ones; `repos_dir` is where
    the demo's git repositories are (`demo_repos.ensure_repos` makes them); `live_runs`
    queues a run of two lab deployments, for a runner to pick up at once (the TUI demo
    and `opstui serve`; never the tests' shared backend, whose runners must see only
    their own runs). Needs a superuser connection on a prepared database.
    """
    passwords = passwords or generate_passwords()
    if _exists(conn):
        return demo_users(conn, passwords)
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    rng = random.Random(_SEED)
    repos_dir = Path(repos_dir or PLACEHOLDER_REPOS_DIR)
    if conn.autocommit:
        with conn.transaction():
            _seed(conn, rng, now, passwords, repos_dir, live_runs)
    else:
        _seed(conn, rng, now, passwords, repos_dir, live_runs)
        conn.commit()
    return demo_users(conn, passwords)


def repository_url(repos_dir: Path, name: str) -> str:
    return str(Path(repos_dir) / f"{name}.git")


def demo_repositories(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """(name, default branch) of the demo's repositories, for `demo_repos.ensure_repos`."""
    names = [name for _, _, name, *_ in _REPOS]
    rows = conn.execute(
        "select distinct on (name) name, coalesce(default_branch, 'main') from public.repositories"
        " where name = any(%s) order by name, created_at",
        (names,),
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def point_repositories(conn: psycopg.Connection, repos_dir: Path) -> int:
    """Point the demo repositories' URLs at `repos_dir` (the data directory may have moved)."""
    changed = 0
    for _, _, name, *_ in _REPOS:
        url = repository_url(repos_dir, name)
        cur = conn.execute(
            "update public.repositories set url = %s where name = %s and url is distinct from %s"
            " and (url like '%%/opstui-demo-repos/%%' or url like %s)",
            (url, name, url, f"%/repos/{name}.git"),
        )
        changed += cur.rowcount
    return changed


_OLD_ADDRESSES = ("192.0.2.%", "198.51.100.%", "203.0.113.%")
_OLD_URLS = ("https://github.example.com/%", "https://gitlab.acme.test%", "https://jenkins.acme.test%",
             "https://api.github.example.com%", "https://ci.globex.test%", "https://ci.example.com/%")  # fmt: skip


def repair_old_demo(conn: psycopg.Connection, repos_dir: Path) -> int:
    """Bring a demo seeded by an older opstui up to today's rules (idempotent; cheap when
    there is nothing to do): every address loopback, repositories local, tenants named."""
    changed = 0
    with conn.transaction():
        n = 200
        for team_hosts in _HOSTS.values():
            for name, is_windows, _ in team_hosts:
                if "lab" in name:
                    continue
                n += 1
                cur = conn.execute(
                    "update public.hosts set ip = %s, port = case when %s then port else %s end"
                    " where name = %s and ip like any(%s)",
                    (f"127.0.0.{n}", is_windows, UNUSED_PORT, name, list(_OLD_ADDRESSES)),
                )
                changed += cur.rowcount
        for name, url in (("jenkins-platform", "http://127.0.0.241"),
                          ("gha-payments", "http://127.0.0.242"),
                          ("globex-jenkins", "http://127.0.0.243")):  # fmt: skip
            changed += conn.execute(
                "update public.cicd_providers set url = %s, port = %s where name = %s"
                " and url like any(%s)", (url, UNUSED_PORT, name, list(_OLD_URLS)),
            ).rowcount  # fmt: skip
        changed += conn.execute(
            "update public.git_providers set server_url = 'http://127.0.0.250:9'"
            " where server_url like any(%s)", (list(_OLD_URLS),),
        ).rowcount  # fmt: skip
        for _, _, name, *_ in _REPOS:
            changed += conn.execute(
                "update public.repositories set url = %s where name = %s and url like any(%s)",
                (repository_url(repos_dir, name), name, list(_OLD_URLS)),
            ).rowcount
        changed += conn.execute(
            "update public.deployment_cicd_mappings set build_url = null"
            " where build_url like any(%s)", (list(_OLD_URLS),),
        ).rowcount  # fmt: skip
        for email, _, tenant, *_ in USERS:
            changed += conn.execute(
                "update public.profiles p set tenant_name = %s from auth.users u"
                " where u.id = p.id and lower(u.email) = %s and p.tenant_name = 'pro'",
                (_TENANT_NAMES[tenant], email),
            ).rowcount
    return changed


def _seed(  # noqa: C901
    conn: psycopg.Connection,
    rng: random.Random,
    now: datetime,
    passwords: dict[str, str],
    repos_dir: Path,
    live_runs: bool,
) -> None:
    ago = lambda **kw: now - timedelta(**kw)  # noqa: E731
    x = conn.execute
    # Timestamps are always passed explicitly (the updated_at triggers keep explicit values).

    # -- catalog ---------------------------------------------------------------------------
    for tier_id, (name, desc, _) in TIERS.items():
        t = ago(days=400)
        x(
            "insert into public.subscription_tiers (id, name, description, created_at, updated_at)"
            " values (%s, %s, %s, %s, %s) on conflict (id) do nothing",
            (tier_id, name, desc, t, t),
        )
    for tier_id, (_, _, unlimited) in TIERS.items():
        for resource in ("hosts", "repositories", "deployments", "cicd_providers", "teams"):
            t = ago(days=400)
            max_count = 0 if unlimited else TIER_LIMITS[tier_id][resource]
            x(
                "insert into public.resource_limits"
                " (id, tier_id, resource_type, max_count, is_unlimited, created_at, updated_at)"
                " values (%s, %s, %s, %s, %s, %s, %s) on conflict (tier_id, resource_type) do nothing",
                (_uuid(rng), tier_id, resource, max_count, unlimited, t, t),
            )
    for name, permissions in ROLE_TEMPLATES.items():
        t = ago(days=400)
        x(
            "insert into public.role_templates (id, name, permissions, created_at, updated_at)"
            " values (%s, %s, %s, %s, %s) on conflict (name) do nothing",
            (_uuid(rng), name, json.dumps(permissions), t, t),
        )

    # -- tenants, users, teams -----------------------------------------------------------------
    tenant_ids: dict[str, str] = {}
    for key, name, domain, tier in TENANTS:
        tenant_ids[key] = _uuid(rng)
        t = ago(days=300)
        x(
            "insert into public.tenants (id, name, domain, subscription_tier_id, organization_id,"
            " created_at, updated_at) values (%s, %s, %s, %s, %s, %s, %s)",
            (tenant_ids[key], name, domain, tier, _uuid(rng), t, t),
        )

    user_ids: dict[str, str] = {}
    for i, (email, full_name, tenant, role, _) in enumerate(USERS):
        uid = user_ids[email] = _uuid(rng)
        created = ago(days=280 - i * 9)
        meta = {"tenant_id": tenant_ids[tenant], "role": role, "full_name": full_name}
        x(
            """
            insert into auth.users (instance_id, id, aud, role, email, encrypted_password,
              email_confirmed_at, raw_app_meta_data, raw_user_meta_data, is_super_admin,
              created_at, updated_at, last_sign_in_at)
            values ('00000000-0000-0000-0000-000000000000', %s, 'authenticated', 'authenticated',
              %s, %s, %s, %s, %s, false, %s, %s, %s)
            """,
            (
                uid,
                email,
                _bcrypt_hash(passwords[email], rng),
                created,
                json.dumps({"provider": "email", "providers": ["email"], **meta}),
                json.dumps(meta),
                created,
                created,
                ago(hours=rng.randint(1, 96)),
            ),
        )
        # The trigger created the profile; pin its timestamps for determinism, and name
        # its tenant (the column's default, 'pro', is nobody's tenant).
        x(
            "update public.profiles set created_at = %s, updated_at = %s, tenant_name = %s"
            " where id = %s",
            (created, created, _TENANT_NAMES[tenant], uid),
        )

    team_ids: dict[str, str] = {}
    admin_of = {"acme": "admin@acme.test", "globex": "ops@globex.test"}
    for key, tenant, name, desc, is_default in TEAMS:
        team_ids[key] = _uuid(rng)
        t = ago(days=270)
        x(
            "insert into public.teams (id, name, description, tenant_id, created_by, is_default,"
            " created_at, updated_at) values (%s, %s, %s, %s, %s, %s, %s, %s)",
            (
                team_ids[key],
                name,
                desc,
                tenant_ids[tenant],
                user_ids[admin_of[tenant]],
                is_default,
                t,
                t,
            ),
        )

    members: dict[str, list[tuple[str, str]]] = {k: [] for k in team_ids}
    for email, _, _, _, teams in USERS:
        for team, team_role in teams:
            members[team].append((email, team_role))
            t = ago(days=260)
            x(
                "insert into public.team_members (team_id, profile_id, role, created_at, updated_at)"
                " values (%s, %s, %s, %s, %s)",
                (team_ids[team], user_ids[email], team_role, t, t),
            )
            for resource, perms in ROLE_TEMPLATES[team_role].items():
                x(
                    """
                    insert into public.permission_matrix (id, team_id, profile_id, resource_type,
                      can_select, can_insert, can_update, can_delete, can_execute,
                      can_update_own, can_delete_own, created_at, updated_at)
                    values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                    """,
                    (
                        _uuid(rng),
                        team_ids[team],
                        user_ids[email],
                        resource,
                        *(perms[op] for op in _OPS),
                        t,
                        t,
                    ),
                )

    def creator(team: str) -> str:
        """A member who may insert into this team."""
        able = [e for e, r in members[team] if r in ("admin", "developer", "contributor")]
        return user_ids[rng.choice(able)]

    # -- hosts ---------------------------------------------------------------------------------
    host_ids: dict[str, list[str]] = {k: [] for k in team_ids}
    windows_ids: set[str] = set()
    lab_ids: dict[str, str] = {}
    address = iter(range(201, 255))
    for team, hosts in _HOSTS.items():
        for n, (name, is_windows, desc) in enumerate(hosts, start=1):
            hid = _uuid(rng)
            host_ids[team].append(hid)
            if is_windows:
                windows_ids.add(hid)
            # Lab hosts are pointed at the demo SSH servers at start (demo_ssh.py); the rest
            # get a loopback address nothing listens on (see UNUSED_PORT).
            ip = "127.0.0.1" if "lab" in name else f"127.0.0.{next(address)}"
            port = rng.choice((5985, 5986)) if is_windows else rng.choice((22, 22, 22, 2222))
            port = port if is_windows else UNUSED_PORT
            if "lab" in name:
                lab_ids[name] = hid
            user = "Administrator" if is_windows else rng.choice(("deploy", "ubuntu", "ops"))
            password = _token(rng, "demo-", 16) if (is_windows or n % 3 == 0) else None
            t = ago(days=rng.randint(30, 250))
            x(
                """
                insert into public.hosts (id, name, description, type, ip, port, "user", password,
                  status, is_windows, created_at, updated_at, team_id, creator_id)
                values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                """,
                (
                    hid,
                    name,
                    desc,
                    "winrm" if is_windows else "ssh",
                    ip,
                    port,
                    user,
                    password,
                    # (drawn for every host, so the rest of the estate stays as it was)
                    _status_of(name, rng.choice(_HOST_STATUSES)),
                    is_windows,
                    t,
                    t + timedelta(days=rng.randint(0, 20)),
                    team_ids[team],
                    creator(team),
                ),
            )

    # The demo SSH servers' rows (demo_ssh.py points them at the servers at every start).
    from opstui.backend.demo_ssh import DEMO_HOSTS, LAB_DESCRIPTIONS, demo_host_id

    for team_name, name, down, existing in DEMO_HOSTS:
        if existing:
            continue
        team = next(k for k, _, tname, _, _ in TEAMS if tname == team_name)
        hid = lab_ids[name] = demo_host_id(name)  # (not in host_ids: the random picks stay)
        t = ago(days=20)
        x(
            """
            insert into public.hosts (id, name, description, type, ip, port, "user", status,
              is_windows, created_at, updated_at, team_id, creator_id)
            values (%s, %s, %s, 'ssh', '127.0.0.1', %s, 'demo', 'pending', false, %s, %s, %s, %s)
            """,
            (hid, name, LAB_DESCRIPTIONS[down], UNUSED_PORT, t, t, team_ids[team],
             user_ids[admin_of[TENANT_OF_TEAM[team]]]),
        )  # fmt: skip

    # -- git providers and repositories ----------------------------------------------------------
    provider_ids: dict[str, str] = {}
    for key, owner, ptype, name, display, server_url in _GIT_PROVIDERS:
        provider_ids[key] = _uuid(rng)
        t = ago(days=240)
        x(
            """
            insert into public.git_providers (id, profile_id, type, name, display_name, server_url,
              access_token, refresh_token, expires_at, is_configured, last_synced, created_at, updated_at)
            values (%s, %s, %s, %s, %s, %s, %s, %s, %s, true, %s, %s, %s)
            """,
            (
                provider_ids[key],
                user_ids[owner],
                ptype,
                name,
                display,
                server_url,
                _token(rng, "ghp_demo_" if ptype == "github" else "glpat-demo-"),
                _token(rng, "refresh-demo-"),
                (now + timedelta(days=30)).replace(tzinfo=None),
                ago(minutes=rng.randint(5, 600)).replace(tzinfo=None),
                t.replace(tzinfo=None),
                t.replace(tzinfo=None),
            ),
        )
    provider_types = {key: ptype for key, _, ptype, *_ in _GIT_PROVIDERS}
    repo_ids: dict[str, list[str]] = {k: [] for k in team_ids}
    repo_names: dict[str, str] = {}
    for team, provider, name, language, private, desc in _REPOS:
        rid = _uuid(rng)
        repo_ids[team].append(rid)
        repo_names[rid] = name
        org = "globex" if team == "core" else "acme"
        status = rng.choice(_SYNC)
        t = ago(days=rng.randint(60, 230)).replace(tzinfo=None)
        x(
            """
            insert into public.repositories (id, provider_id, provider_type, name, description, owner,
              url, is_private, default_branch, language, sync_status, last_synced_at, error,
              created_at, updated_at, team_id, creator_id)
            values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            """,
            (
                rid,
                provider_ids[provider],
                provider_types[provider],
                name,
                desc,
                org,
                repository_url(repos_dir, name),  # a real local repository (demo_repos.py)
                private,
                rng.choice(("main", "main", "main", "master", "trunk")),
                language,
                status,
                None
                if status == "IDLE"
                else ago(minutes=rng.randint(2, 3000)).replace(tzinfo=None),
                "remote: Repository not found (token expired?)" if status == "ERROR" else None,
                t,
                t,
                team_ids[team],
                creator(team),
            ),
        )
    for email, repo in (
        ("admin@acme.test", repo_ids["platform"][0]),
        ("admin@acme.test", repo_ids["payments"][0]),
        ("dev@acme.test", repo_ids["platform"][3]),
        ("dev@acme.test", repo_ids["payments"][1]),
        ("ops@globex.test", repo_ids["core"][0]),
    ):
        x(
            "insert into public.profile_repository_pins (profile_id, repository_id, created_at)"
            " values (%s, %s, %s)",
            (user_ids[email], repo, ago(days=rng.randint(1, 50)).replace(tzinfo=None)),
        )

    # -- CI/CD ---------------------------------------------------------------------------------
    cicd = (
        # team, type, name, url, port, config
        (
            "platform",
            "jenkins",
            "jenkins-platform",
            "http://127.0.0.241",  # loopback; nothing listens on UNUSED_PORT
            UNUSED_PORT,
            {"username": "ci-bot", "api_token": _token(rng, "jenkins-demo-"), "crumb_issuer": True},
        ),
        (
            "payments",
            "github_actions",
            "gha-payments",
            "http://127.0.0.242",
            UNUSED_PORT,
            {"owner": "acme", "repo": "payments-service", "token": _token(rng, "ghs_demo_")},
        ),
        (
            "core",
            "jenkins",
            "globex-jenkins",
            "http://127.0.0.243",
            UNUSED_PORT,
            {"username": "deployer", "password": _token(rng, "pw-demo-", 12), "folder": "core"},
        ),
    )
    cicd_ids: dict[str, str] = {}
    cicd_urls = {team: f"{url}:{port}" for team, _, _, url, port, _ in cicd}
    job_ids: dict[str, list[tuple[str, str]]] = {k: [] for k in team_ids}
    for team, ctype, name, url, port, config in cicd:
        cid = cicd_ids[team] = _uuid(rng)
        t = ago(days=200)
        x(
            """
            insert into public.cicd_providers (id, type, name, url, port, config, created_at,
              updated_at, tenant_id, team_id, creator_id)
            values (%s, %s, %s, %s, %s, %s, %s, %s, null, %s, %s)
            """,
            (cid, ctype, name, url, port, json.dumps(config), t, t, team_ids[team], creator(team)),
        )
        for job, desc, params in (
            ("build", "Build and unit tests", {"BRANCH": "main", "RUN_TESTS": True}),
            ("deploy-staging", "Deploy to staging", {"ENVIRONMENT": "staging", "CANARY": False}),
            (
                "deploy-production",
                "Deploy to production",
                {"ENVIRONMENT": "production", "CANARY": True},
            ),
        ):
            jid = _uuid(rng)
            ext = f"{name}/{job}" if ctype == "jenkins" else f"{rng.randint(1_000_000, 9_999_999)}"
            job_ids[team].append((jid, ext))
            x(
                """
                insert into public.cicd_jobs (id, provider_id, external_id, name, description,
                  parameters, created_at, updated_at, creator_id, team_id)
                values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                """,
                (jid, cid, ext, job, desc, json.dumps(params), t, t, creator(team), team_ids[team]),
            )

    # -- deployments ---------------------------------------------------------------------------
    cron_choices = ("0 2 * * *", "*/30 * * * *", "0 6 * * 1-5", "15 3 * * 0")
    # Scripts that exist in every demo repository (demo_repos.py); the PowerShell one
    # targets only Windows hosts, the shell ones only Linux hosts.
    script_sets = (*LINUX_SCRIPT_SETS[:3], WINDOWS_SCRIPTS, LINUX_SCRIPT_SETS[3])
    history: list[dict] = []
    envs = ("staging", "production", "qa")
    k = 0
    for team, count in _DEPLOYMENT_COUNTS.items():
        for i in range(count):
            status = _DEPLOYMENT_STATUSES[k % len(_DEPLOYMENT_STATUSES)]
            k += 1
            did = _uuid(rng)
            repo = rng.choice(repo_ids[team])
            hosts = rng.sample(host_ids[team], rng.randint(1, 3))
            env = rng.choice(envs)
            created = ago(days=rng.randint(1, 60), minutes=rng.randint(0, 1439))
            started = completed = scheduled = None
            schedule_type, cron = "now", None
            repeat = 0
            if status in ("success", "failed"):
                started = created + timedelta(minutes=rng.randint(0, 30))
                completed = started + timedelta(seconds=rng.randint(40, 1800))
            elif status == "in_progress":
                # Its run finished a moment ago (a seeded run never "ticks forever"):
                # the deployment follows it, as it does every run.
                created = ago(minutes=rng.randint(5, 40))
                started = ago(minutes=rng.randint(1, 4))
                completed = started + timedelta(seconds=35)
                status = "success"
            elif status == "pending":
                created = ago(minutes=rng.randint(0, 30))
            elif status == "scheduled":
                schedule_type = rng.choice(("later", "cron"))
                scheduled = now + timedelta(hours=rng.randint(1, 72))
                if schedule_type == "cron":
                    cron = rng.choice(cron_choices)
                    repeat = rng.choice((0, 5, 10))
            elif status == "cancelled" and rng.random() < 0.5:
                started = created + timedelta(minutes=rng.randint(0, 10))
                completed = started + timedelta(seconds=rng.randint(5, 120))
            use_ci = rng.random() < 0.5
            author = creator(team)
            scripts = rng.choice(script_sets)
            hosts = _hosts_for(scripts, hosts, host_ids[team], windows_ids)
            if status in ("success", "failed", "cancelled"):
                history.append({"id": did, "team": team, "status": status, "hosts": hosts,
                                "scripts": scripts, "created": created, "started": started,
                                "completed": completed, "author": author})  # fmt: skip
            x(
                """
                insert into public.deployments (id, name, description, repository_id, status,
                  schedule_type, scheduled_time, scripts_path, host_ids, user_id, created_at,
                  started_at, completed_at, updated_at, cron_expression, repeat_count,
                  environment_vars, tenant_id, scripts_parameters, team_id, creator_id,
                  cicd_provider_id)
                values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
                  null, %s, %s, %s, %s)
                """,
                (
                    did,
                    f"{env}-{repo_names[repo]}-{i + 1:03d}",
                    f"Deploy {repo_names[repo]} to {env}",
                    repo,
                    status,
                    schedule_type,
                    scheduled,
                    scripts,
                    [uuid.UUID(h) for h in hosts],
                    author,
                    created,
                    started,
                    completed,
                    completed or started or created,
                    cron,
                    repeat,
                    json.dumps(
                        [
                            {"key": "ENVIRONMENT", "value": env},
                            {"key": "LOG_LEVEL", "value": rng.choice(("info", "debug", "warn"))},
                            {
                                "key": "RELEASE",
                                "value": f"v{rng.randint(1, 4)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}",
                            },
                        ]
                    ),
                    [f"--env={env}", f"--timeout={rng.choice((60, 120, 300))}"],
                    team_ids[team],
                    author,
                    cicd_ids[team] if use_ci else None,
                ),
            )
            if use_ci:
                jid, ext = job_ids[team][1 if env != "production" else 2]
                build = str(rng.randint(100, 4000))
                x(
                    """
                    insert into public.deployment_cicd_mappings (id, deployment_id, cicd_job_id,
                      parameters, build_number, build_url, created_at, updated_at)
                    values (%s, %s, %s, %s, %s, %s, %s, %s)
                    """,
                    (
                        _uuid(rng),
                        did,
                        jid,
                        json.dumps({"ENVIRONMENT": env, "GIT_REF": "main"}),
                        None if status in ("pending", "scheduled") else build,
                        None
                        if status in ("pending", "scheduled")
                        else f"{cicd_urls[team]}/job/{ext}/{build}/",
                        created,
                        completed or started or created,
                    ),
                )

    _seed_builds(x, now, cicd, cicd_ids, job_ids, team_ids, creator)
    labs = _seed_lab_deployments(x, now, team_ids, lab_ids, repo_ids, repo_names, user_ids)
    _seed_runs(x, now, history + labs, team_ids, _host_names(x), user_ids)
    if live_runs:
        _queue_live_runs(x, now, labs, user_ids)


def _hosts_for(scripts: list[str], hosts: list[str], team_hosts: list[str], windows: set[str]):
    """The picked hosts the scripts can run on: PowerShell on Windows, shell on Linux."""
    if any(s.endswith(".ps1") for s in scripts):
        return [h for h in team_hosts if h in windows][: len(hosts)]
    return [h for h in hosts if h not in windows] or [
        next(h for h in team_hosts if h not in windows)
    ]


def _host_names(x) -> dict[str, str]:  # noqa: ANN001
    return {str(r[0]): r[1] for r in x("select id, name from public.hosts").fetchall()}


# Deployments of the lab hosts (the demo SSH servers): these run for real.
# (name, team key, repository, hosts, scripts, batch size, max failures, description)
LAB_DEPLOYMENTS = (
    ("lab-web-release", "platform", "platform-api", ("lab-web-01", "localhost-lab"),
     ["scripts/deploy.sh", "scripts/healthcheck.sh"], "1", 0,
     "Release the platform API to the lab web hosts, one at a time"),
    ("lab-full-rollout", "platform", "platform-api", ("lab-web-01", "lab-db-01", "localhost-lab"),
     ["scripts/build.sh", "scripts/migrate.sh", "scripts/restart.sh", "scripts/healthcheck.sh"],
     "2", 0, "Build, migrate, restart and check every lab host, two at a time "
     "(lab-db-01 fails its health check, so the rollout stops)"),
    ("lab-db-backup", "platform", "ops-scripts", ("lab-db-01",),
     ["scripts/backup.sh", "scripts/verify-backup.sh"], "1", 0,
     "Back up the lab database and verify the backup"),
    ("lab-canary-with-down-host", "platform", "k8s-manifests", ("lab-web-01", "lab-down-01"),
     ["scripts/deploy.sh"], "2", 1, "A rollout where one host is down (unreachable)"),
    ("core-lab-release", "core", "core-api", ("core-lab",),
     ["scripts/deploy.sh", "scripts/healthcheck.sh"], "1", 0, "Release the core API to the lab"),
)  # fmt: skip
LIVE_LAB_RUNS = ("lab-web-release", "lab-full-rollout")  # queued at first start (live_runs)


def _seed_lab_deployments(x, now, team_ids, lab_ids, repo_ids, repo_names, user_ids) -> list[dict]:  # noqa: ANN001
    admins = {"platform": user_ids["admin@acme.test"], "core": user_ids["ops@globex.test"]}
    by_name = {(team, repo_names[r]): r for team, ids in repo_ids.items() for r in ids}
    made = []
    for n, (name, team, repo, hosts, scripts, batch, max_failures, desc) in enumerate(LAB_DEPLOYMENTS):
        did = str(uuid.uuid5(uuid.NAMESPACE_URL, f"opstui-demo-deployment:{name}"))
        host_ids = [lab_ids[h] for h in hosts]
        created = now - timedelta(days=6 - n)
        # The latest seeded run: the full rollout failed (lab-db-01), the rest succeeded.
        status = "failed" if name in ("lab-full-rollout", "lab-canary-with-down-host") else "success"
        started = now - timedelta(hours=20 - n, minutes=n * 7)
        completed = started + timedelta(seconds=8 + 3 * len(scripts) * len(hosts))
        x(
            """
            insert into public.deployments (id, name, description, repository_id, status,
              schedule_type, scripts_path, host_ids, user_id, created_at, started_at,
              completed_at, updated_at, repeat_count, environment_vars, scripts_parameters,
              team_id, creator_id, rollout_batch_size, rollout_max_failures, host_timeout_seconds)
            values (%s, %s, %s, %s, %s, 'now', %s, %s, %s, %s, %s, %s, %s, 0, %s, %s, %s, %s, %s,
              %s, 300)
            """,
            (did, name, desc, by_name[(team, repo)], status, scripts,
             [uuid.UUID(h) for h in host_ids], admins[team], created, started, completed,
             completed, json.dumps([{"key": "ENVIRONMENT", "value": "lab"},
                                    {"key": "RELEASE", "value": f"v2.{n}.0"}]),
             [], team_ids[team], admins[team], batch, max_failures),
        )  # fmt: skip
        made.append({"id": did, "team": team, "status": status, "hosts": host_ids,
                     "scripts": scripts, "created": created, "started": started,
                     "completed": completed, "author": admins[team], "name": name,
                     "batch": int(batch), "max_failures": max_failures})  # fmt: skip
    return made


_RUN_STATUS = {"success": "succeeded", "failed": "failed", "cancelled": "cancelled"}


def _seed_runs(x, now, history, team_ids, host_names, user_ids) -> None:  # noqa: ANN001, C901
    """Each launched deployment's run history: runs, host results and logs.

    The latest run is inserted first and matches the deployment's status and times, so
    the deployment-follows-run trigger has nothing to change; older runs are ignored by it.
    Its own random stream, so the rest of the estate does not shift.
    """
    rng = random.Random(f"{_SEED}-runs")
    names = {user_ids[email]: full_name for email, full_name, *_ in USERS}
    for d in history:
        runs = [(d["status"], d["started"], d["completed"], d["author"])]
        if d.get("name"):  # the lab deployments have a longer history
            for back in range(1, 3):
                t = d["started"] - timedelta(hours=back * 26 + rng.randint(0, 5))
                if t > d["created"]:
                    runs.append((rng.choice(("success", "success", "failed")), t,
                                 t + timedelta(seconds=rng.randint(12, 40)), d["author"]))  # fmt: skip
        total = len(runs)
        for idx, (status, started, completed, who) in enumerate(runs):
            number = total - idx
            run_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            requested = (started or d["created"]) - timedelta(seconds=rng.randint(1, 20))
            _seed_run(x, rng, d, run_id, number, _RUN_STATUS[status], requested, started,
                      completed, who, names.get(who, ""), team_ids, host_names)  # fmt: skip


def _seed_run(x, rng, d, run_id, number, status, requested, started, finished, who, who_name,
              team_ids, host_names) -> None:  # noqa: ANN001
    """One finished run: its host rows (batch by batch, as the runner would) and its log."""
    team_id = team_ids[d["team"]]
    hosts = d["hosts"] if started is not None else []  # cancelled while queued: no host rows
    size = max(1, d.get("batch") or len(hosts) or 1)
    max_failures = d.get("max_failures", 0)
    failing = None
    if status == "failed" and hosts:
        lab_db = [h for h in hosts if host_names.get(h) == "lab-db-01"]
        failing = lab_db[0] if lab_db else hosts[rng.randrange(len(hosts))]
    scripts = d["scripts"]
    logs: list[tuple[str | None, str, str]] = [
        (None, "system", f"run #{number} of {d.get('name') or 'the deployment'} claimed by demo-runner\n")
    ]
    if hosts:
        logs.append((None, "system", "fetched the repository at its default branch\n"))
    rows: list[tuple] = []
    cancelled_at = None
    failed = 0
    stopped = False
    clock = started
    groups = [hosts[i : i + size] for i in range(0, len(hosts), size)]
    for batch, group in enumerate(groups, 1):
        if not stopped:
            names = ", ".join(host_names.get(h, h) for h in group)
            logs.append((None, "system", f"batch {batch} of {len(groups)}: {names}\n"))
        end = clock
        for offset, host in enumerate(group):
            pos = (batch - 1) * size + offset + 1
            name = host_names.get(host, host)
            if stopped:
                rows.append((host, name, batch, pos, "cancelled" if status == "cancelled" else "skipped",
                             None, None, None, None))  # fmt: skip
                continue
            h_end = min(finished, clock + timedelta(seconds=3 + 2 * len(scripts)))
            end = max(end, h_end)
            if status == "cancelled":
                cancelled_at = clock + timedelta(seconds=2)
                logs.append((host, "system", f"$ {scripts[0]}\n"))
                logs.append((host, "stdout", f"\x1b[1;34m==>\x1b[0m {_verb(scripts[0])} on {name}\n"))
                logs.append((host, "system", "stopped: signalled, then its channel was closed\n"))
                rows.append((host, name, batch, pos, "cancelled", None, clock, h_end,
                             f"{name}: stopped by the cancel request"))  # fmt: skip
                continue
            code = 0
            for script in scripts:
                logs.append((host, "system", f"$ {script}\n"))
                logs.append((host, "stdout",
                             f"\x1b[1;34m==>\x1b[0m \x1b[1m{_verb(script)} on {name}\x1b[0m\n"))  # fmt: skip
                if host == failing and script == scripts[-1]:
                    logs.append((host, "stderr", "  \x1b[31m✘ GET /healthz -> 503 Service "
                                 "Unavailable: replication lag 42s exceeds 30s\x1b[0m\n"))  # fmt: skip
                    code = 1
                    break
                logs.append((host, "stdout", f"  \x1b[32m✔\x1b[0m {_verb(script)} done\n"))
            if code:
                failed += 1
                rows.append((host, name, batch, pos, "failed", code, clock, h_end,
                             f"{name}: {scripts[-1]} exited with status {code}"))  # fmt: skip
            else:
                rows.append((host, name, batch, pos, "succeeded", 0, clock, h_end, None))
        clock = end
        if status == "cancelled" or failed > max_failures:
            if not stopped and batch < len(groups) and status == "failed":
                logs.append((None, "system", f"rollout stopped after batch {batch}: {failed} host"
                             f"{'s' if failed != 1 else ''} failed (more than {max_failures} "
                             "allowed); the hosts not started are skipped\n"))  # fmt: skip
            stopped = True
    error = None
    if status == "failed":
        first = f"{host_names.get(failing, failing)}: {scripts[-1]} exited with status 1"
        error = f"{max(failed, 1)} of {len(d['hosts'])} hosts failed (first: {first})"
    elif status == "cancelled":
        error = f"cancelled by {who_name or 'someone'}"
    logs.append((None, "system", f"run {status}" + (f": {error}" if error else "") + "\n"))
    batches = len(groups)
    log_bytes = sum(len(t.encode()) for _, _, t in logs)
    x(
        """
        insert into public.deployment_runs (id, deployment_id, team_id, tenant_id, number,
          trigger, requested_by, requested_at, status, runner_name, runner_id, started_at,
          finished_at, cancel_requested_at, cancel_requested_by, spec, hosts_total, hosts_done,
          hosts_failed, batch_count, current_batch, log_bytes, next_seq, error, created_at,
          updated_at)
        values (%s, %s, %s, (select tenant_id from public.teams where id = %s), %s, 'manual', %s,
          %s, %s, 'demo-runner', %s, %s, %s, %s, %s, private.deployment_run_spec(%s), %s, %s, %s,
          %s, %s, %s, %s, %s, %s, %s)
        """,
        (run_id, d["id"], team_id, team_id, number, who, requested, status,
         None, started, finished, cancelled_at, who if cancelled_at else None,
         d["id"], len(hosts), len(rows),
         failed, batches, batches, log_bytes, len(logs), error, requested, finished or requested),
    )  # fmt: skip
    for row in rows:
        x(
            "insert into public.deployment_run_hosts (run_id, host_id, host_name, batch, position,"
            " status, exit_code, started_at, finished_at, error, team_id)"
            " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (run_id, *row, team_id),
        )
    at = started or requested
    for seq, (host, stream, text) in enumerate(logs, 1):
        x(
            "insert into public.deployment_run_logs (run_id, host_id, seq, stream, text,"
            " created_at, team_id) values (%s, %s, %s, %s, %s, %s, %s)",
            (run_id, host, seq, stream, text, at, team_id),
        )


def _verb(script: str) -> str:
    return script.rsplit("/", 1)[-1].rsplit(".", 1)[0]


def _queue_live_runs(x, now, labs, user_ids) -> None:  # noqa: ANN001
    """Queued runs of two lab deployments: the TUI's own runner runs them at first start."""
    for d in labs:
        if d["name"] not in LIVE_LAB_RUNS:
            continue
        x(
            """
            insert into public.deployment_runs (deployment_id, team_id, tenant_id, number,
              trigger, requested_by, requested_at, status, spec, created_at, updated_at)
            select d.id, d.team_id, t.tenant_id,
              coalesce((select max(number) from public.deployment_runs r
                         where r.deployment_id = d.id), 0) + 1,
              'manual', %s, %s, 'queued', private.deployment_run_spec(d.id), %s, %s
            from public.deployments d join public.teams t on t.id = d.team_id where d.id = %s
            """,
            (d["author"], now, now, now, d["id"]),
        )


def _seed_builds(x, now, cicd, cicd_ids, job_ids, team_ids, creator) -> None:  # noqa: ANN001
    """A few finished builds with their logs, so `:builds` has history. Its own random
    stream, so the rest of the estate (and its snapshots) does not shift."""
    rng = random.Random(f"{_SEED}-builds")
    for team, ctype, _name, url, _port, _config in cicd:
        for (jid, ext), job in zip(job_ids[team], ("build", "deploy-staging"), strict=False):
            for n, status in enumerate(("succeeded", "failed"), 1):
                bid = _uuid(rng)
                number = str(100 + rng.randint(0, 50) + n)
                started = now - timedelta(days=rng.randint(1, 20), minutes=rng.randint(0, 600))
                finished = started + timedelta(seconds=rng.randint(30, 600))
                base = f"{url}:{_port}"
                link = f"{base}/job/{ext}/{number}/" if ctype == "jenkins" else f"{base}/runs/{number}"
                lines = [f"Started by user {creator(team)}", f"Running {job} #{number}"]
                lines.append("Finished: SUCCESS" if status == "succeeded" else "Finished: FAILURE")
                x(
                    """
                    insert into public.cicd_builds (id, job_id, provider_id, provider_type,
                      job_name, team_id, tenant_id, requested_by, requested_at, parameters,
                      external_id, number, url, status, runner_name, started_at, finished_at,
                      error, next_seq, log_bytes, created_at, updated_at)
                    values (%s, %s, %s, %s, %s, %s, (select tenant_id from public.teams
                      where id = %s), %s, %s, '{}', %s, %s, %s, %s, 'demo-runner', %s, %s, %s,
                      %s, %s, %s, %s)
                    """,
                    (
                        bid, jid, cicd_ids[team], ctype.replace("_actions", ""), job,
                        team_ids[team], team_ids[team], creator(team), started, number, number,
                        link, status, started, finished,
                        None if status == "succeeded" else "the build finished FAILURE",
                        len(lines), sum(len(line) + 1 for line in lines), started, finished,
                    ),
                )
                for seq, line in enumerate(lines, 1):
                    x(
                        "insert into public.cicd_build_logs (build_id, seq, stream, text,"
                        " created_at, team_id) values (%s, %s, 'stdout', %s, %s, %s)",
                        (bid, seq, line + "\n", started, team_ids[team]),
                    )
        x(
            "insert into public.cicd_provider_tasks (provider_id, team_id, kind, status,"
            " requested_by, requested_at, finished_at, result, created_at)"
            " values (%s, %s, 'test', 'succeeded', %s, %s, %s, %s, %s)",
            (
                cicd_ids[team], team_ids[team], creator(team), now - timedelta(days=3),
                now - timedelta(days=3), "ok: connected (demo data)", now - timedelta(days=3),
            ),
        )
