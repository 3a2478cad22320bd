-- opstui application schema: tables, keys, constraints, indexes, updated_at triggers.
--
-- Applies unchanged to a real Supabase project (auth.users, auth.uid() and the
-- API roles already exist there; the embedded backend creates them in
-- backend/bootstrap.sql). Column names and types follow the schema document.
-- Deviations from the document are marked "NOTE".

create schema if not exists private;
comment on schema private is
  'opstui internals: RLS helpers, trigger functions and secret tables. Never exposed through the Data API.';

-- One shared updated_at trigger function. An UPDATE that sets updated_at
-- explicitly keeps that value (lets imports and the demo seed stay deterministic).
create or replace function private.set_updated_at() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.updated_at is not distinct from old.updated_at then
    new.updated_at := now();
  end if;
  return new;
end
$$;

-- ---------------------------------------------------------------------------
-- Subscription tiers and limits
-- ---------------------------------------------------------------------------
create table if not exists public.subscription_tiers (
  id text primary key,
  name text not null,
  description text,
  created_at timestamptz default current_timestamp,
  updated_at timestamptz default current_timestamp
);

create table if not exists public.resource_limits (
  id uuid primary key default gen_random_uuid(),
  tier_id text not null references public.subscription_tiers (id) on delete cascade,
  -- matches the table name the limit applies to: hosts, repositories, deployments, cicd_providers, teams
  resource_type text not null,
  max_count integer not null check (max_count >= 0),
  is_unlimited boolean default false,
  created_at timestamptz default current_timestamp,
  updated_at timestamptz default current_timestamp,
  -- NOTE: one limit per (tier, resource); also serves as the index on tier_id.
  constraint resource_limits_tier_resource_key unique (tier_id, resource_type)
);

-- ---------------------------------------------------------------------------
-- Tenants, role templates, profiles
-- ---------------------------------------------------------------------------
create table if not exists public.tenants (
  id text primary key default gen_random_uuid()::text,
  name text not null,
  domain text unique,
  created_at timestamptz not null default current_timestamp,
  updated_at timestamptz not null default current_timestamp,
  subscription_tier_id text references public.subscription_tiers (id),
  organization_id uuid
);
create index if not exists tenants_subscription_tier_id_idx on public.tenants (subscription_tier_id);

create table if not exists public.role_templates (
  id uuid primary key default gen_random_uuid(),
  -- NOTE: unique name (admin, developer, contributor, tester, viewer).
  name text not null unique,
  -- resource_type -> {select, insert, update, delete, execute, update_own, delete_own}
  permissions jsonb not null check (jsonb_typeof(permissions) = 'object'),
  created_at timestamptz default now(),
  updated_at timestamptz default now()
);

create table if not exists public.profiles (
  id uuid not null primary key references auth.users (id) on delete cascade,
  avatar_url text,
  tenant_id text references public.tenants (id) on delete set null,
  -- NOTE: the document's default is 'admin'; least privilege is safer: 'viewer'.
  role text not null default 'viewer'
    check (role in ('admin', 'developer', 'contributor', 'tester', 'viewer')),
  tenant_name text default 'pro',
  -- NOTE: additions to the document, copied from auth.users for the UI.
  email text,
  full_name text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
create index if not exists profiles_tenant_id_idx on public.profiles (tenant_id);

-- ---------------------------------------------------------------------------
-- Teams, membership, permissions
-- ---------------------------------------------------------------------------
create table if not exists public.teams (
  id uuid primary key default gen_random_uuid(),
  name text not null,
  description text,
  tenant_id text not null references public.tenants (id) on delete cascade,
  created_by uuid default auth.uid() references public.profiles (id) on delete set null,
  is_default boolean default false,
  created_at timestamptz default current_timestamp,
  updated_at timestamptz default current_timestamp,
  constraint teams_tenant_name_key unique (tenant_id, name)
);
create index if not exists teams_created_by_idx on public.teams (created_by);

create table if not exists public.team_members (
  team_id uuid not null references public.teams (id) on delete cascade,
  profile_id uuid not null references public.profiles (id) on delete cascade,
  -- 'admin' members administer the team (membership and permission rows).
  role text not null,
  created_at timestamptz default current_timestamp,
  updated_at timestamptz default current_timestamp,
  primary key (team_id, profile_id)
);
create index if not exists team_members_profile_id_idx on public.team_members (profile_id, team_id);

create table if not exists public.permission_matrix (
  id uuid primary key default gen_random_uuid(),
  -- NOTE: team_id and profile_id are NOT NULL here (nullable in the document):
  -- a permission row without a team or a profile grants nothing.
  team_id uuid not null references public.teams (id) on delete cascade,
  profile_id uuid not null references public.profiles (id) on delete cascade,
  resource_type text not null,
  can_select boolean default false,
  can_insert boolean default false,
  can_update boolean default false,
  can_delete boolean default false,
  can_update_own boolean default true,
  can_delete_own boolean default true,
  can_execute boolean default false,
  created_at timestamptz default now(),
  updated_at timestamptz default now(),
  constraint permission_matrix_profile_team_resource_key unique (profile_id, team_id, resource_type)
);
create index if not exists permission_matrix_team_id_idx on public.permission_matrix (team_id);

-- ---------------------------------------------------------------------------
-- Hosts
-- ---------------------------------------------------------------------------
create table if not exists public.hosts (
  id text primary key default gen_random_uuid()::text,
  name text not null,
  description text,
  type text not null,
  ip text not null,
  port integer check (port between 1 and 65535),
  "user" text,
  -- Write-only: a trigger moves it to private.host_secrets; always NULL when read.
  password text,
  -- NOTE: vocabulary chosen here (the document gives none): pending, online, offline, testing, failed.
  status text not null default 'pending'
    check (status in ('pending', 'online', 'offline', 'testing', 'failed')),
  is_windows boolean not null default false,
  created_at timestamptz not null default current_timestamp,
  updated_at timestamptz not null default current_timestamp,
  team_id uuid references public.teams (id) on delete cascade,
  creator_id uuid default auth.uid() references public.profiles (id) on delete set null
);
create index if not exists hosts_team_id_idx on public.hosts (team_id);
create index if not exists hosts_creator_id_idx on public.hosts (creator_id);

-- ---------------------------------------------------------------------------
-- Git providers, repositories, pins
-- ---------------------------------------------------------------------------
create table if not exists public.git_providers (
  id uuid primary key default gen_random_uuid(),
  profile_id uuid not null default auth.uid() references public.profiles (id) on delete cascade,
  type text not null check (type in ('github', 'gitlab', 'gitea')),
  name text not null,
  display_name text,
  server_url text,
  -- Write-only: moved to private.git_provider_secrets by a trigger; always NULL when read.
  access_token text,
  refresh_token text,
  expires_at timestamp,
  is_configured boolean default false,
  last_synced timestamp,
  created_at timestamp default now(),
  updated_at timestamp default now()
);
create index if not exists git_providers_profile_id_idx on public.git_providers (profile_id);

create table if not exists public.repositories (
  id uuid primary key default gen_random_uuid(),
  provider_id uuid not null references public.git_providers (id) on delete cascade,
  provider_type text not null,
  name text not null,
  description text,
  owner text,
  url text,
  is_private boolean default false,
  default_branch text default 'main',
  language text,
  sync_status text default 'IDLE' check (sync_status in ('IDLE', 'SYNCING', 'SYNCED', 'ERROR')),
  last_synced_at timestamp,
  error text,
  created_at timestamp default now(),
  updated_at timestamp default now(),
  team_id uuid references public.teams (id) on delete cascade,
  creator_id uuid default auth.uid() references public.profiles (id) on delete set null
);
create index if not exists repositories_provider_id_idx on public.repositories (provider_id, team_id);
create index if not exists repositories_team_id_idx on public.repositories (team_id);
create index if not exists repositories_creator_id_idx on public.repositories (creator_id);

create table if not exists public.profile_repository_pins (
  profile_id uuid not null default auth.uid() references public.profiles (id) on delete cascade,
  repository_id uuid not null references public.repositories (id) on delete cascade,
  created_at timestamp default now(),
  -- NOTE: (profile_id, repository_id) order so the policy's profile_id filter uses the key.
  primary key (profile_id, repository_id)
);
create index if not exists profile_repository_pins_repository_id_idx
  on public.profile_repository_pins (repository_id);

-- ---------------------------------------------------------------------------
-- CI/CD
-- ---------------------------------------------------------------------------
create table if not exists public.cicd_providers (
  id uuid primary key default gen_random_uuid(),
  type text not null,
  name text not null,
  url text not null,
  -- Secret-looking keys are moved to private.cicd_provider_secrets by a trigger;
  -- config->'secret_keys' lists which ones are set.
  config jsonb not null default '{}'::jsonb check (jsonb_typeof(config) = 'object'),
  created_at timestamptz default now(),
  updated_at timestamptz default now(),
  tenant_id text references public.tenants (id) on delete cascade,
  team_id uuid references public.teams (id) on delete cascade,
  creator_id uuid default auth.uid() references public.profiles (id) on delete set null,
  port integer check (port between 1 and 65535)
);
create index if not exists cicd_providers_tenant_id_idx on public.cicd_providers (tenant_id);
create index if not exists cicd_providers_team_id_idx on public.cicd_providers (team_id);
create index if not exists cicd_providers_creator_id_idx on public.cicd_providers (creator_id);

create table if not exists public.cicd_jobs (
  id uuid primary key default gen_random_uuid(),
  provider_id uuid references public.cicd_providers (id) on delete cascade,
  external_id text not null,
  name text not null,
  description text,
  parameters jsonb,
  created_at timestamptz default now(),
  updated_at timestamptz default now(),
  creator_id uuid default auth.uid() references public.profiles (id) on delete set null,
  team_id uuid references public.teams (id) on delete cascade
);
create index if not exists cicd_jobs_provider_id_idx on public.cicd_jobs (provider_id);
create index if not exists cicd_jobs_team_id_idx on public.cicd_jobs (team_id);
create index if not exists cicd_jobs_creator_id_idx on public.cicd_jobs (creator_id);

-- ---------------------------------------------------------------------------
-- Deployments
-- ---------------------------------------------------------------------------
create table if not exists public.deployments (
  id uuid primary key default gen_random_uuid(),
  name text not null,
  description text,
  repository_id uuid references public.repositories (id) on delete set null,
  -- NOTE: vocabulary chosen here: pending, scheduled, in_progress, success, failed, cancelled.
  status text not null default 'pending'
    check (status in ('pending', 'scheduled', 'in_progress', 'success', 'failed', 'cancelled')),
  schedule_type text check (schedule_type in ('now', 'later', 'cron')),
  scheduled_time timestamptz,
  scripts_path text[],
  -- NOTE: uuid[] as documented although hosts.id is text (holding UUID strings).
  host_ids uuid[],
  user_id uuid default auth.uid() references public.profiles (id) on delete set null,
  created_at timestamptz default now(),
  started_at timestamptz,
  completed_at timestamptz,
  updated_at timestamptz default now(),
  cron_expression text,
  repeat_count integer default 0 check (repeat_count >= 0),
  environment_vars jsonb default '[]'::jsonb check (jsonb_typeof(environment_vars) = 'array'),
  tenant_id text references public.tenants (id) on delete cascade,
  scripts_parameters text[],
  team_id uuid references public.teams (id) on delete cascade,
  creator_id uuid default auth.uid() references public.profiles (id) on delete set null,
  cicd_provider_id uuid references public.cicd_providers (id) on delete set null,
  constraint deployments_cron_needs_expression
    check (schedule_type is distinct from 'cron' or cron_expression is not null),
  constraint deployments_completed_after_started
    check (completed_at is null or started_at is null or completed_at >= started_at)
);
create index if not exists deployments_repository_id_idx on public.deployments (repository_id);
create index if not exists deployments_user_id_idx on public.deployments (user_id);
create index if not exists deployments_tenant_id_idx on public.deployments (tenant_id);
create index if not exists deployments_team_id_idx on public.deployments (team_id, created_at desc);
create index if not exists deployments_creator_id_idx on public.deployments (creator_id);
create index if not exists deployments_cicd_provider_id_idx on public.deployments (cicd_provider_id);
create index if not exists deployments_status_idx on public.deployments (status);

create table if not exists public.deployment_cicd_mappings (
  id uuid primary key default gen_random_uuid(),
  deployment_id uuid references public.deployments (id) on delete cascade,
  cicd_job_id uuid references public.cicd_jobs (id) on delete cascade,
  parameters jsonb,
  build_number text,
  build_url text,
  created_at timestamptz default now(),
  updated_at timestamptz default now()
);
create index if not exists deployment_cicd_mappings_deployment_id_idx
  on public.deployment_cicd_mappings (deployment_id);
create index if not exists deployment_cicd_mappings_cicd_job_id_idx
  on public.deployment_cicd_mappings (cicd_job_id);

-- ---------------------------------------------------------------------------
-- updated_at triggers (every table with an updated_at column)
-- ---------------------------------------------------------------------------
do $$
declare
  t text;
begin
  foreach t in array array[
    'subscription_tiers', 'resource_limits', 'tenants', 'role_templates', 'profiles', 'teams',
    'team_members', 'permission_matrix', 'hosts', 'git_providers', 'repositories',
    'cicd_providers', 'cicd_jobs', 'deployments', 'deployment_cicd_mappings'
  ] loop
    execute format('drop trigger if exists set_updated_at on public.%I', t);
    execute format(
      'create trigger set_updated_at before update on public.%I '
      'for each row execute function private.set_updated_at()', t);
  end loop;
end
$$;

-- ---------------------------------------------------------------------------
-- Data API grants. Supabase grants nothing on new public tables to the API
-- roles (since 2026-10-30), so each table gets exactly what the app uses; the
-- policies in 20261125000300_rls.sql then decide which rows. anon gets
-- nothing: every policy is for signed-in users. No TRUNCATE, REFERENCES or
-- TRIGGER for anyone (TRUNCATE ignores RLS). service_role is the server-side
-- key (it bypasses RLS) and may write everything.
-- ---------------------------------------------------------------------------
revoke all on
  public.subscription_tiers, public.resource_limits, public.tenants, public.role_templates,
  public.profiles, public.teams, public.team_members, public.permission_matrix, public.hosts,
  public.git_providers, public.repositories, public.profile_repository_pins,
  public.cicd_providers, public.cicd_jobs, public.deployments, public.deployment_cicd_mappings
  from public, anon, authenticated, service_role;

-- Catalogs and tenants: read-only for users (changing a tier is a billing operation).
grant select on
  public.subscription_tiers, public.resource_limits, public.role_templates, public.tenants
  to authenticated;
-- Profiles are created by the on_auth_user_created trigger and deleted with the
-- auth user; users only read and edit them (protect_profile limits the columns).
grant select, update on public.profiles to authenticated;
-- Pins are added and removed, never edited.
grant select, insert, delete on public.profile_repository_pins to authenticated;
grant select, insert, update, delete on
  public.teams, public.team_members, public.permission_matrix, public.hosts,
  public.git_providers, public.repositories, public.cicd_providers, public.cicd_jobs,
  public.deployments, public.deployment_cicd_mappings
  to authenticated;

grant select, insert, update, delete on
  public.subscription_tiers, public.resource_limits, public.tenants, public.role_templates,
  public.profiles, public.teams, public.team_members, public.permission_matrix, public.hosts,
  public.git_providers, public.repositories, public.profile_repository_pins,
  public.cicd_providers, public.cicd_jobs, public.deployments, public.deployment_cicd_mappings
  to service_role;

-- The trigger function is only ever called by its triggers.
revoke execute on function private.set_updated_at() from public, anon, authenticated;
