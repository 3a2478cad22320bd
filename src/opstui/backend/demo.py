"""Deterministic, realistic demo data for the embedded backend.

`seed_demo(conn)` inserts (as superuser) two tenants on different tiers, three
teams, seven users with different roles, hosts, git providers, repositories,
CI/CD providers and jobs, and deployments in every status. Users are created
by inserting into auth.users, so the on_auth_user_created trigger creates
their profiles; secrets are written through the normal columns, so the
triggers move them into the private secret tables.

The same `now` always produces the same rows (ids, timestamps, hashes).
Addresses are loopback or RFC 5737 documentation ranges only.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import bcrypt
import psycopg

DEMO_PASSWORD = "opstui-demo"
_SEED = 20261125
_BCRYPT_ALPHABET = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


@dataclass(frozen=True)
class DemoUser:
    email: str
    password: str
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
_NETS = {"platform": "192.0.2", "payments": "198.51.100", "core": "203.0.113"}
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
        "https://gitlab.acme.test",
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


def demo_users(conn: psycopg.Connection) -> list[DemoUser]:
    """The demo users as stored in the database (empty if not seeded)."""
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
            e, DEMO_PASSWORD, by_email[e][1], by_email[e][2], tuple(by_email[e][4]), by_email[e][3]
        )
        for e in DEMO_EMAILS
        if e in by_email
    ]


def seed_demo(conn: psycopg.Connection, *, now: datetime | None = None) -> list[DemoUser]:
    """Insert the demo data unless it is already there; return the demo users.

    Needs a superuser connection on a prepared database (bootstrap + migrations).
    """
    if _exists(conn):
        return demo_users(conn)
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    rng = random.Random(_SEED)
    if conn.autocommit:
        with conn.transaction():
            _seed(conn, rng, now)
    else:
        _seed(conn, rng, now)
        conn.commit()
    return demo_users(conn)


def _seed(conn: psycopg.Connection, rng: random.Random, now: datetime) -> None:  # noqa: C901
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
                _bcrypt_hash(DEMO_PASSWORD, rng),
                created,
                json.dumps({"provider": "email", "providers": ["email"], **meta}),
                json.dumps(meta),
                created,
                created,
                ago(hours=rng.randint(1, 96)),
            ),
        )
        # The trigger created the profile; pin its timestamps for determinism.
        x(
            "update public.profiles set created_at = %s, updated_at = %s where id = %s",
            (created, created, uid),
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
    for team, hosts in _HOSTS.items():
        for n, (name, is_windows, desc) in enumerate(hosts, start=1):
            hid = _uuid(rng)
            host_ids[team].append(hid)
            ip = f"127.0.0.{n + 1}" if "lab" in name else f"{_NETS[team]}.{10 + n}"
            port = rng.choice((5985, 5986)) if is_windows else rng.choice((22, 22, 22, 2222))
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
                    rng.choice(_HOST_STATUSES),
                    is_windows,
                    t,
                    t + timedelta(days=rng.randint(0, 20)),
                    team_ids[team],
                    creator(team),
                ),
            )

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
        base = (
            "https://gitlab.acme.test"
            if provider_types[provider] == "gitlab"
            else "https://github.example.com"
        )
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
                f"{base}/{org}/{name}",
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
            "https://jenkins.acme.test",
            8443,
            {"username": "ci-bot", "api_token": _token(rng, "jenkins-demo-"), "crumb_issuer": True},
        ),
        (
            "payments",
            "github_actions",
            "gha-payments",
            "https://api.github.example.com",
            443,
            {"owner": "acme", "repo": "payments-service", "token": _token(rng, "ghs_demo_")},
        ),
        (
            "core",
            "jenkins",
            "globex-jenkins",
            "https://ci.globex.test",
            8080,
            {"username": "deployer", "password": _token(rng, "pw-demo-", 12), "folder": "core"},
        ),
    )
    cicd_ids: dict[str, str] = {}
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
    script_sets = (
        ["scripts/deploy.sh", "scripts/healthcheck.sh"],
        ["scripts/migrate.sh"],
        ["ansible/site.yml"],
        ["scripts/rollout.ps1"],
        ["scripts/backup.sh", "scripts/verify-backup.sh"],
    )
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
                created = ago(minutes=rng.randint(5, 40))
                started = ago(minutes=rng.randint(1, 4))
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
                        else f"https://ci.example.com/job/{ext}/{build}/",
                        created,
                        completed or started or created,
                    ),
                )

    _seed_builds(x, now, cicd, cicd_ids, job_ids, team_ids, creator)


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
                link = f"{url}/job/{ext}/{number}/" if ctype == "jenkins" else f"{url}/runs/{number}"
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
