-- CI/CD builds: one row per triggered build, its append-only log, provider
-- tasks (test connection, refresh jobs) that only a runner can do because only
-- a runner reads provider tokens, and the RPCs that queue, claim and drive them.
--
-- Runs unchanged on a real Supabase project: every table, sequence and function
-- created here gets exactly the privileges each API role needs (Supabase no
-- longer grants new public objects to anon/authenticated/service_role).
--
-- Permissions (permission_matrix resource types):
--   trigger / cancel a build ............ can_execute on cicd_jobs in the job's team
--   test a provider's connection ........ can_execute on cicd_providers
--   refresh a provider's jobs ........... can_update on cicd_jobs
--   a runner claims builds and tasks .... can_execute on cicd_jobs AND cicd_providers
--                                         (it reads the token through get_cicd_provider_secrets)

-- ---------------------------------------------------------------------------
-- Provider types: jenkins, github (Actions), gitlab. Older clients wrote
-- github_actions / gitlab_ci: a trigger maps them. The check is added NOT VALID
-- so a legacy row of another type cannot stop this migration; it is validated
-- at once when no such row exists.
-- ---------------------------------------------------------------------------
create or replace function private.normalize_cicd_provider_type() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.type := case lower(trim(new.type))
    when 'github_actions' then 'github'
    when 'gitlab_ci' then 'gitlab'
    else lower(trim(new.type))
  end;
  return new;
end
$$;
drop trigger if exists normalize_cicd_provider_type on public.cicd_providers;
create trigger normalize_cicd_provider_type before insert or update of type on public.cicd_providers
  for each row execute function private.normalize_cicd_provider_type();

update public.cicd_providers set type = 'github' where type = 'github_actions';
update public.cicd_providers set type = 'gitlab' where type = 'gitlab_ci';

alter table public.cicd_providers drop constraint if exists cicd_providers_type_check;
alter table public.cicd_providers add constraint cicd_providers_type_check
  check (type in ('jenkins', 'github', 'gitlab')) not valid;
do $$
begin
  if not exists (
    select 1 from public.cicd_providers where type not in ('jenkins', 'github', 'gitlab')
  ) then
    alter table public.cicd_providers validate constraint cicd_providers_type_check;
  end if;
end
$$;

-- ---------------------------------------------------------------------------
-- Secrets in cicd_providers.config, at any depth. A key is secret-bearing by
-- its name (token, password, secret, api_key, private_key, credentials, ...):
-- its whole value (scalar, object or array) moves to
-- private.cicd_provider_secrets.secrets under its path ("api_token",
-- "auth.password", "headers.0.token"); '' or null at that path clears it.
-- config.secret_keys lists the stored paths. Only get_cicd_provider_secrets
-- reads them.
-- ---------------------------------------------------------------------------
create or replace function private.is_secret_config_key(p_key text) returns boolean
language sql immutable
set search_path = ''
as $$
  select p_key <> 'secret_keys'
    and (lower(p_key) ~ '(token|passw|secret|api_?key|private_?key|credential|auth_?key|access_?key|passphrase|bearer|cookie|jwt|signing_?key|client_?key)'
         or lower(p_key) ~ '(^|[_-])(key|pat|pwd)$')
    and lower(p_key) !~ '(_url|_uri|_name|_type|_expires_at)$'
$$;

-- Every secret-bearing (path, value) in a config document, depth first.
create or replace function private.secret_config_entries(p_doc jsonb, p_prefix text default '')
returns table (path text, value jsonb)
language plpgsql immutable
set search_path = ''
as $$
declare
  e record;
  v_path text;
begin
  if jsonb_typeof(p_doc) = 'object' then
    for e in select * from jsonb_each(p_doc) loop
      continue when p_prefix = '' and e.key = 'secret_keys';
      v_path := case when p_prefix = '' then e.key else p_prefix || '.' || e.key end;
      if private.is_secret_config_key(e.key) then
        path := v_path;
        value := e.value;
        return next;
      elsif jsonb_typeof(e.value) in ('object', 'array') then
        return query select * from private.secret_config_entries(e.value, v_path);
      end if;
    end loop;
  elsif jsonb_typeof(p_doc) = 'array' then
    for e in select * from jsonb_array_elements(p_doc) with ordinality as a(value, n) loop
      if jsonb_typeof(e.value) in ('object', 'array') then
        return query select * from private.secret_config_entries(
          e.value, case when p_prefix = '' then '' else p_prefix || '.' end || (e.n - 1)::text);
      end if;
    end loop;
  end if;
end
$$;

-- The document with every secret-bearing key removed, at any depth.
create or replace function private.strip_secret_config(p_doc jsonb) returns jsonb
language sql immutable
set search_path = ''
as $$
  select case jsonb_typeof(p_doc)
    when 'object' then (
      select coalesce(jsonb_object_agg(e.key, private.strip_secret_config(e.value)), '{}'::jsonb)
      from jsonb_each(p_doc) as e(key, value)
      where not private.is_secret_config_key(e.key))
    when 'array' then (
      select coalesce(jsonb_agg(private.strip_secret_config(a.value) order by a.n), '[]'::jsonb)
      from jsonb_array_elements(p_doc) with ordinality as a(value, n))
    else p_doc
  end
$$;

create or replace function private.move_cicd_provider_secrets() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  v_moved jsonb;
  v_cleared text[];
  v_secrets jsonb;
begin
  select coalesce(jsonb_object_agg(s.path, s.value)
                    filter (where s.value <> '""'::jsonb and s.value <> 'null'::jsonb), '{}'::jsonb),
         coalesce(array_agg(s.path) filter (where s.value = '""'::jsonb or s.value = 'null'::jsonb), '{}')
    into v_moved, v_cleared
  from private.secret_config_entries(coalesce(new.config, '{}'::jsonb)) as s;

  if tg_op = 'INSERT' and exists (select 1 from public.cicd_providers c where c.id = new.id) then
    -- The row exists, so this insert will conflict: leave the secrets in NEW, and the
    -- UPDATE branch of the upsert (this trigger again, on excluded.config) moves them.
    -- Clearing them here dropped a secret changed by upsert.
    return new;
  end if;
  select s.secrets into v_secrets from private.cicd_provider_secrets s where s.provider_id = new.id;
  v_secrets := (coalesce(v_secrets, '{}'::jsonb) || v_moved) - v_cleared;
  if v_moved <> '{}'::jsonb or cardinality(v_cleared) > 0 then
    insert into private.cicd_provider_secrets as s (provider_id, secrets)
    values (new.id, v_secrets)
    on conflict (provider_id) do update set secrets = excluded.secrets, updated_at = now();
  end if;

  new.config := (private.strip_secret_config(coalesce(new.config, '{}'::jsonb)) - 'secret_keys')
    || jsonb_build_object('secret_keys', (
      select coalesce(jsonb_agg(k order by k), '[]'::jsonb) from jsonb_object_keys(v_secrets) as k));
  return new;
end
$$;

-- Rows written before this migration may hold nested secrets: move them now.
update public.cicd_providers set config = config
where exists (
  select 1 from private.secret_config_entries(config) s where s.path like '%.%'
);

-- ---------------------------------------------------------------------------
-- Jobs: what "refresh jobs" learns from the provider.
-- parameter_definitions: [{"name", "type": string|boolean|choice|number|password|text,
--   "default", "choices": [..], "required": bool, "description"}]
-- A job the provider no longer lists gets vanished_at (history is kept).
-- ---------------------------------------------------------------------------
alter table public.cicd_jobs add column if not exists parameter_definitions jsonb not null default '[]'::jsonb;
alter table public.cicd_jobs add column if not exists vanished_at timestamptz;
alter table public.cicd_jobs add column if not exists refreshed_at timestamptz;
alter table public.cicd_jobs add column if not exists url text;
alter table public.cicd_jobs drop constraint if exists cicd_jobs_parameter_definitions_array;
alter table public.cicd_jobs add constraint cicd_jobs_parameter_definitions_array
  check (jsonb_typeof(parameter_definitions) = 'array');
create unique index if not exists cicd_jobs_provider_external_key
  on public.cicd_jobs (provider_id, external_id);

-- ---------------------------------------------------------------------------
-- Builds
-- ---------------------------------------------------------------------------
create table if not exists public.cicd_builds (
  id uuid primary key default gen_random_uuid(),
  job_id uuid not null references public.cicd_jobs (id) on delete cascade,
  provider_id uuid not null references public.cicd_providers (id) on delete cascade,
  provider_type text not null,
  job_name text not null,
  team_id uuid not null references public.teams (id) on delete cascade,
  tenant_id text references public.tenants (id) on delete cascade,
  run_id uuid,  -- the deployment run this build is a step of (FK added below)
  mapping_id uuid references public.deployment_cicd_mappings (id) on delete set null,
  requested_by uuid default auth.uid() references public.profiles (id) on delete set null,
  requested_at timestamptz not null default now(),
  -- parameters sent, secret-looking names excluded (their values live in private.cicd_build_secrets)
  parameters jsonb not null default '{}'::jsonb check (jsonb_typeof(parameters) = 'object'),
  secret_parameters text[] not null default '{}',
  -- the provider's ids: Jenkins queue item then job path/number, GitHub run id, GitLab pipeline id
  queue_id text,
  external_id text,
  number text,
  url text,
  status text not null default 'queued'
    check (status in ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'lost')),
  -- what the provider reports (GitHub jobs and steps, GitLab jobs, Jenkins stage) for the UI
  progress jsonb not null default '{}'::jsonb,
  runner_name text,
  runner_id uuid,
  lease_expires_at timestamptz,
  heartbeat_at timestamptz,
  cancel_requested_at timestamptz,
  cancel_requested_by uuid references public.profiles (id) on delete set null,
  started_at timestamptz,
  finished_at timestamptz,
  error text,
  next_seq bigint not null default 0,
  log_bytes bigint not null default 0,
  log_dropped_bytes bigint not null default 0,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
create index if not exists cicd_builds_team_id_idx on public.cicd_builds (team_id, requested_at desc);
create index if not exists cicd_builds_job_id_idx on public.cicd_builds (job_id, requested_at desc);
create index if not exists cicd_builds_provider_id_idx on public.cicd_builds (provider_id);
create index if not exists cicd_builds_tenant_id_idx on public.cicd_builds (tenant_id);
create index if not exists cicd_builds_run_id_idx on public.cicd_builds (run_id);
create index if not exists cicd_builds_mapping_id_idx on public.cicd_builds (mapping_id);
create index if not exists cicd_builds_requested_by_idx on public.cicd_builds (requested_by);
create index if not exists cicd_builds_cancel_requested_by_idx on public.cicd_builds (cancel_requested_by);
create index if not exists cicd_builds_queued_idx on public.cicd_builds (requested_at)
  where status = 'queued' and runner_id is null;
create index if not exists cicd_builds_leased_idx on public.cicd_builds (lease_expires_at)
  where status in ('queued', 'running') and runner_id is not null;

-- deployment_runs comes from 20261201000100 (applied first, by file order).
do $$
begin
  if to_regclass('public.deployment_runs') is not null and not exists (
    select 1 from pg_constraint where conname = 'cicd_builds_run_id_fkey'
  ) then
    alter table public.cicd_builds add constraint cicd_builds_run_id_fkey
      foreign key (run_id) references public.deployment_runs (id) on delete cascade;
  end if;
end
$$;

drop trigger if exists set_updated_at on public.cicd_builds;
create trigger set_updated_at before update on public.cicd_builds
  for each row execute function private.set_updated_at();

-- Secret parameter values of a build (Jenkins password parameters and the like):
-- readable only by the runner holding the build, through get_cicd_build_secret_parameters.
create table if not exists private.cicd_build_secrets (
  build_id uuid primary key references public.cicd_builds (id) on delete cascade,
  parameters jsonb not null default '{}'::jsonb
);
alter table private.cicd_build_secrets enable row level security;
revoke all on private.cicd_build_secrets from public, anon, authenticated, service_role;

create table if not exists public.cicd_build_logs (
  id bigint generated always as identity primary key,
  build_id uuid not null references public.cicd_builds (id) on delete cascade,
  seq bigint not null,
  stream text not null default 'stdout' check (stream in ('stdout', 'stderr', 'system')),
  text text not null,
  created_at timestamptz not null default now(),
  team_id uuid not null references public.teams (id) on delete cascade,
  constraint cicd_build_logs_build_seq_key unique (build_id, seq)
);
create index if not exists cicd_build_logs_team_id_idx on public.cicd_build_logs (team_id);

-- Provider tasks: test connection / refresh jobs, done by a runner.
create table if not exists public.cicd_provider_tasks (
  id uuid primary key default gen_random_uuid(),
  provider_id uuid not null references public.cicd_providers (id) on delete cascade,
  team_id uuid not null references public.teams (id) on delete cascade,
  kind text not null check (kind in ('test', 'refresh')),
  status text not null default 'queued'
    check (status in ('queued', 'running', 'succeeded', 'failed', 'lost')),
  requested_by uuid default auth.uid() references public.profiles (id) on delete set null,
  requested_at timestamptz not null default now(),
  runner_name text,
  runner_id uuid,
  lease_expires_at timestamptz,
  finished_at timestamptz,
  result text,        -- one line: "ok: Jenkins 2.440 as ci-bot" / "401: the token was refused"
  summary jsonb not null default '{}'::jsonb,  -- refresh: {"added", "updated", "vanished"}
  created_at timestamptz not null default now()
);
create index if not exists cicd_provider_tasks_provider_id_idx on public.cicd_provider_tasks (provider_id, requested_at desc);
create index if not exists cicd_provider_tasks_team_id_idx on public.cicd_provider_tasks (team_id);
create index if not exists cicd_provider_tasks_requested_by_idx on public.cicd_provider_tasks (requested_by);
create index if not exists cicd_provider_tasks_queued_idx on public.cicd_provider_tasks (requested_at)
  where status = 'queued';

-- ---------------------------------------------------------------------------
-- RLS: members of the team (and tenant admins) read; nobody writes directly.
-- ---------------------------------------------------------------------------
alter table public.cicd_builds enable row level security;
alter table public.cicd_build_logs enable row level security;
alter table public.cicd_provider_tasks enable row level security;

drop policy if exists "Members can view their teams' builds" on public.cicd_builds;
create policy "Members can view their teams' builds" on public.cicd_builds
  for select to authenticated
  using (
    team_id in (select private.my_team_ids())
    or (tenant_id = (select private.my_tenant_id()) and (select private.is_tenant_admin()))
  );

drop policy if exists "Members can view their teams' build logs" on public.cicd_build_logs;
create policy "Members can view their teams' build logs" on public.cicd_build_logs
  for select to authenticated
  using (team_id in (select private.my_team_ids()));

drop policy if exists "Members can view their teams' provider tasks" on public.cicd_provider_tasks;
create policy "Members can view their teams' provider tasks" on public.cicd_provider_tasks
  for select to authenticated
  using (team_id in (select private.my_team_ids()));

-- Exactly these privileges (the embedded backend's default privileges would grant more).
revoke all on public.cicd_builds, public.cicd_build_logs, public.cicd_provider_tasks
  from public, anon, authenticated, service_role;
grant select on public.cicd_builds, public.cicd_build_logs, public.cicd_provider_tasks
  to authenticated, service_role;

-- ---------------------------------------------------------------------------
-- Helpers
-- ---------------------------------------------------------------------------
-- The caller holds a live lease on this build (raises otherwise).
create or replace function private.held_build(p_build_id uuid) returns public.cicd_builds
language plpgsql security definer
set search_path = ''
as $$
declare
  v public.cicd_builds;
begin
  select * into v from public.cicd_builds b where b.id = p_build_id for update;
  if not found or v.runner_id is distinct from (select auth.uid())
     or v.status not in ('queued', 'running') or v.lease_expires_at < now() then
    raise exception using
      errcode = '42501',
      message = 'this runner does not hold build ' || p_build_id || ' (not claimed by it, finished, or its lease lapsed)';
  end if;
  return v;
end
$$;

-- Split trigger parameters into (visible, secret) by name and by the job's definitions.
create or replace function private.split_build_parameters(p_job public.cicd_jobs, p_parameters jsonb,
  out visible jsonb, out secret jsonb)
language plpgsql stable
set search_path = ''
as $$
declare
  v_secret_names text[];
begin
  select coalesce(array_agg(d ->> 'name'), '{}') into v_secret_names
  from jsonb_array_elements(coalesce(p_job.parameter_definitions, '[]'::jsonb)) d
  where d ->> 'type' = 'password';
  select coalesce(jsonb_object_agg(e.key, e.value), '{}'::jsonb) into visible
  from jsonb_each(p_parameters) e
  where not (private.is_secret_config_key(e.key) or e.key = any (v_secret_names));
  select coalesce(jsonb_object_agg(e.key, e.value), '{}'::jsonb) into secret
  from jsonb_each(p_parameters) e
  where private.is_secret_config_key(e.key) or e.key = any (v_secret_names);
end
$$;

-- A new build row for a job (permission checks are the caller's).
create or replace function private.insert_build(p_job public.cicd_jobs, p_parameters jsonb,
  p_run_id uuid, p_mapping_id uuid) returns public.cicd_builds
language plpgsql security definer
set search_path = ''
as $$
declare
  v_provider public.cicd_providers;
  v_split record;
  v_build public.cicd_builds;
  v_defined text[];
  v_unknown text;
  v_missing text;
begin
  if p_parameters is null then
    p_parameters := '{}'::jsonb;
  end if;
  if jsonb_typeof(p_parameters) <> 'object'
     or exists (select 1 from jsonb_each(p_parameters) e where jsonb_typeof(e.value) in ('object', 'array')) then
    raise exception using errcode = '22023',
      message = 'build parameters must be a JSON object of names to strings, numbers or booleans';
  end if;
  if p_job.vanished_at is not null then
    raise exception using errcode = 'P0001',
      message = format('job %s no longer exists on its provider (vanished %s); refresh the provider''s jobs',
                       p_job.name, to_char(p_job.vanished_at, 'YYYY-MM-DD HH24:MI'));
  end if;
  select * into v_provider from public.cicd_providers c where c.id = p_job.provider_id;
  if not found then
    raise exception using errcode = 'P0001', message = format('job %s has no CI/CD provider', p_job.name);
  end if;
  if jsonb_array_length(p_job.parameter_definitions) > 0 then
    select array_agg(d ->> 'name') into v_defined from jsonb_array_elements(p_job.parameter_definitions) d;
    select e.key into v_unknown from jsonb_each(p_parameters) e where e.key <> all (v_defined) limit 1;
    if v_unknown is not null then
      raise exception using errcode = '22023',
        message = format('job %s has no parameter %s; its parameters are: %s',
                         p_job.name, v_unknown, array_to_string(v_defined, ', '));
    end if;
    select d ->> 'name' into v_missing from jsonb_array_elements(p_job.parameter_definitions) d
    where coalesce((d ->> 'required')::boolean, false) and d -> 'default' is null
      and not p_parameters ? (d ->> 'name') limit 1;
    if v_missing is not null then
      raise exception using errcode = '22023',
        message = format('job %s needs parameter %s', p_job.name, v_missing);
    end if;
  end if;
  select * into v_split from private.split_build_parameters(p_job, p_parameters);
  insert into public.cicd_builds (job_id, provider_id, provider_type, job_name, team_id, tenant_id,
    run_id, mapping_id, requested_by, parameters, secret_parameters)
  values (p_job.id, v_provider.id, v_provider.type, p_job.name, p_job.team_id,
    (select t.tenant_id from public.teams t where t.id = p_job.team_id),
    p_run_id, p_mapping_id, (select auth.uid()), v_split.visible,
    array(select jsonb_object_keys(v_split.secret) order by 1))
  returning * into v_build;
  if v_split.secret <> '{}'::jsonb then
    insert into private.cicd_build_secrets (build_id, parameters) values (v_build.id, v_split.secret);
  end if;
  return v_build;
end
$$;

-- ---------------------------------------------------------------------------
-- RPCs for users
-- ---------------------------------------------------------------------------
create or replace function public.trigger_cicd_job(p_job_id uuid, p_parameters jsonb default '{}'::jsonb)
returns uuid
language plpgsql security definer
set search_path = ''
as $$
declare
  v_job public.cicd_jobs;
  v_build public.cicd_builds;
begin
  select * into v_job from public.cicd_jobs j where j.id = p_job_id;
  if not found or v_job.team_id is null
     or v_job.team_id not in (select private.team_ids_where('cicd_jobs', 'execute')) then
    raise exception using errcode = '42501',
      message = 'permission denied: triggering a CI/CD job requires can_execute on cicd_jobs in the job''s team';
  end if;
  v_build := private.insert_build(v_job, p_parameters, null, null);
  return v_build.id;
end
$$;

create or replace function public.cancel_cicd_build(p_build_id uuid) returns text
language plpgsql security definer
set search_path = ''
as $$
declare
  v public.cicd_builds;
begin
  select * into v from public.cicd_builds b where b.id = p_build_id for update;
  if not found or v.team_id not in (select private.team_ids_where('cicd_jobs', 'execute')) then
    raise exception using errcode = '42501',
      message = 'permission denied: cancelling a build requires can_execute on cicd_jobs in the build''s team';
  end if;
  if v.status not in ('queued', 'running') then
    return v.status;  -- already finished: nothing to do
  end if;
  if v.runner_id is null then
    update public.cicd_builds b set status = 'cancelled', finished_at = now(),
      cancel_requested_at = now(), cancel_requested_by = (select auth.uid()),
      error = 'cancelled before a runner picked it up'
    where b.id = p_build_id;
    return 'cancelled';
  end if;
  update public.cicd_builds b set cancel_requested_at = coalesce(b.cancel_requested_at, now()),
    cancel_requested_by = coalesce(b.cancel_requested_by, (select auth.uid()))
  where b.id = p_build_id;
  return 'cancel_requested';
end
$$;

create or replace function public.request_cicd_provider_task(p_provider_id uuid, p_kind text) returns uuid
language plpgsql security definer
set search_path = ''
as $$
declare
  v_team uuid;
  v_id uuid;
begin
  select c.team_id into v_team from public.cicd_providers c where c.id = p_provider_id;
  if p_kind not in ('test', 'refresh') then
    raise exception using errcode = '22023', message = 'provider task kind must be test or refresh';
  end if;
  if v_team is null or (p_kind = 'test' and v_team not in (select private.team_ids_where('cicd_providers', 'execute')))
     or (p_kind = 'refresh' and v_team not in (select private.team_ids_where('cicd_jobs', 'update'))) then
    raise exception using errcode = '42501',
      message = case p_kind
        when 'test' then 'permission denied: testing a provider requires can_execute on cicd_providers in its team'
        else 'permission denied: refreshing jobs requires can_update on cicd_jobs in the provider''s team' end;
  end if;
  insert into public.cicd_provider_tasks (provider_id, team_id, kind, requested_by)
  values (p_provider_id, v_team, p_kind, (select auth.uid()))
  returning id into v_id;
  return v_id;
end
$$;

-- ---------------------------------------------------------------------------
-- RPCs for runners
-- ---------------------------------------------------------------------------
create or replace function private.runner_team_ids() returns setof uuid
language sql stable security definer rows 10
set search_path = ''
as $$
  select private.team_ids_where('cicd_jobs', 'execute')
  intersect
  select private.team_ids_where('cicd_providers', 'execute')
$$;

-- Up to p_limit queued builds at once (a busy runner claims its free slots in one call).
create or replace function public.claim_cicd_build(p_runner_name text, p_lease_seconds int default 30,
  p_limit int default 1)
returns setof public.cicd_builds
language plpgsql security definer
set search_path = ''
as $$
begin
  return query
  update public.cicd_builds b set
    runner_id = (select auth.uid()), runner_name = left(p_runner_name, 200),
    lease_expires_at = now() + make_interval(secs => greatest(p_lease_seconds, 2)),
    heartbeat_at = now()
  where b.id in (
    select q.id from public.cicd_builds q
    where q.status = 'queued' and q.runner_id is null and q.run_id is null
      and q.team_id in (select private.runner_team_ids())
    order by q.requested_at
    for update skip locked
    limit least(greatest(p_limit, 1), 100)
  )
  returning b.*;
end
$$;

-- The runner holding a deployment run starts one of its mapped jobs as a build it holds,
-- with the parameters of the run's snapshot (p_parameters; null: the mapping's current ones).
create or replace function public.start_run_cicd_build(p_run_id uuid, p_mapping_id uuid,
  p_runner_name text, p_lease_seconds int default 30, p_parameters jsonb default null)
returns setof public.cicd_builds
language plpgsql security definer
set search_path = ''
as $$
declare
  v_team uuid;
  v_mapping public.deployment_cicd_mappings;
  v_job public.cicd_jobs;
  v_build public.cicd_builds;
begin
  execute 'select r.team_id from public.deployment_runs r where r.id = $1 and r.runner_id = $2'
          ' and r.status = ''running'' and r.lease_expires_at >= now()'
    into v_team using p_run_id, (select auth.uid());
  if v_team is null then
    raise exception using errcode = '42501',
      message = 'this runner does not hold run ' || p_run_id;
  end if;
  if v_team not in (select private.runner_team_ids()) then
    raise exception using errcode = '42501',
      message = 'permission denied: a run''s CI/CD step needs a runner with can_execute on cicd_jobs and cicd_providers in the team';
  end if;
  select * into v_mapping from public.deployment_cicd_mappings m where m.id = p_mapping_id;
  select * into v_job from public.cicd_jobs j where j.id = v_mapping.cicd_job_id;
  if v_job.id is null or v_job.team_id is distinct from v_team then
    raise exception using errcode = 'P0001', message = 'the mapped CI/CD job is missing or belongs to another team';
  end if;
  v_build := private.insert_build(v_job, coalesce(p_parameters, v_mapping.parameters, '{}'::jsonb),
    p_run_id, p_mapping_id);
  return query
  update public.cicd_builds b set runner_id = (select auth.uid()), runner_name = left(p_runner_name, 200),
    lease_expires_at = now() + make_interval(secs => greatest(p_lease_seconds, 2)), heartbeat_at = now()
  where b.id = v_build.id
  returning b.*;
end
$$;

create or replace function public.get_cicd_build_secret_parameters(p_build_id uuid) returns jsonb
language plpgsql security definer
set search_path = ''
as $$
begin
  perform private.held_build(p_build_id);
  return coalesce((select s.parameters from private.cicd_build_secrets s where s.build_id = p_build_id), '{}'::jsonb);
end
$$;

create or replace function public.heartbeat_cicd_build(p_build_id uuid, p_lease_seconds int default 30)
returns jsonb
language plpgsql security definer
set search_path = ''
as $$
declare
  v public.cicd_builds;
begin
  v := private.held_build(p_build_id);
  update public.cicd_builds b set
    lease_expires_at = now() + make_interval(secs => greatest(p_lease_seconds, 2)), heartbeat_at = now()
  where b.id = p_build_id;
  return jsonb_build_object('cancel_requested', v.cancel_requested_at is not null);
end
$$;

-- p_fields: any of queue_id, external_id, number, url, status (queued|running), started_at, progress.
-- The mapping row of a run's build shows the latest build's number and URL.
create or replace function public.update_cicd_build(p_build_id uuid, p_fields jsonb) returns void
language plpgsql security definer
set search_path = ''
as $$
declare
  v public.cicd_builds;
  v_status text := p_fields ->> 'status';
begin
  v := private.held_build(p_build_id);
  if v_status is not null and v_status not in ('queued', 'running') then
    raise exception using errcode = '22023',
      message = 'update_cicd_build sets status queued or running; finish_cicd_build ends a build';
  end if;
  update public.cicd_builds b set
    queue_id = coalesce(left(p_fields ->> 'queue_id', 500), b.queue_id),
    external_id = coalesce(left(p_fields ->> 'external_id', 500), b.external_id),
    number = coalesce(left(p_fields ->> 'number', 100), b.number),
    url = coalesce(left(p_fields ->> 'url', 2000), b.url),
    status = coalesce(v_status, b.status),
    started_at = case when v_status = 'running' then coalesce(b.started_at, now()) else b.started_at end,
    progress = case when p_fields ? 'progress' and jsonb_typeof(p_fields -> 'progress') = 'object'
                    then p_fields -> 'progress' else b.progress end
  where b.id = p_build_id
  returning * into v;
  if v.mapping_id is not null and (p_fields ? 'number' or p_fields ? 'url') then
    update public.deployment_cicd_mappings m set build_number = v.number, build_url = v.url
    where m.id = v.mapping_id;
  end if;
end
$$;

-- p_chunks: [{"stream": "stdout"|"stderr"|"system", "text": "..."}]; returns the last seq.
create or replace function public.append_build_log(p_build_id uuid, p_chunks jsonb) returns bigint
language plpgsql security definer
set search_path = ''
as $$
declare
  v public.cicd_builds;
  v_cap constant bigint := 50 * 1024 * 1024;
  c jsonb;
  v_text text;
  v_len bigint;
  v_seq bigint;
  v_bytes bigint;
  v_dropped bigint;
begin
  v := private.held_build(p_build_id);
  if jsonb_typeof(p_chunks) <> 'array' then
    raise exception using errcode = '22023', message = 'append_build_log expects an array of chunks';
  end if;
  v_seq := v.next_seq;
  v_bytes := v.log_bytes;
  v_dropped := v.log_dropped_bytes;
  for c in select * from jsonb_array_elements(p_chunks) loop
    v_text := coalesce(c ->> 'text', '');
    continue when v_text = '';
    v_len := octet_length(v_text);
    if v_dropped > 0 or v_bytes + v_len > v_cap then
      if v_dropped = 0 then
        v_seq := v_seq + 1;
        insert into public.cicd_build_logs (build_id, seq, stream, text, team_id)
        values (p_build_id, v_seq, 'system', 'log capped at 50 MB: further output is dropped', v.team_id);
      end if;
      v_dropped := v_dropped + v_len;
      continue;
    end if;
    v_seq := v_seq + 1;
    v_bytes := v_bytes + v_len;
    insert into public.cicd_build_logs (build_id, seq, stream, text, team_id)
    values (p_build_id, v_seq,
      case when c ->> 'stream' in ('stdout', 'stderr', 'system') then c ->> 'stream' else 'stdout' end,
      v_text, v.team_id);
  end loop;
  update public.cicd_builds b set next_seq = v_seq, log_bytes = v_bytes, log_dropped_bytes = v_dropped
  where b.id = p_build_id;
  return v_seq;
end
$$;

create or replace function public.finish_cicd_build(p_build_id uuid, p_status text, p_error text default null)
returns void
language plpgsql security definer
set search_path = ''
as $$
declare
  v public.cicd_builds;
begin
  v := private.held_build(p_build_id);
  if p_status not in ('succeeded', 'failed', 'cancelled') then
    raise exception using errcode = '22023',
      message = 'a build finishes as succeeded, failed or cancelled';
  end if;
  update public.cicd_builds b set status = p_status, finished_at = now(),
    started_at = coalesce(b.started_at, case when p_status = 'succeeded' then now() end),
    error = left(split_part(coalesce(p_error, ''), E'\n', 1), 500),
    lease_expires_at = null
  where b.id = p_build_id;
  update public.cicd_builds b set error = null where b.id = p_build_id and b.error = '';
end
$$;

create or replace function public.expire_cicd_build_leases() returns int
language plpgsql security definer
set search_path = ''
as $$
declare
  v_count int;
begin
  if (select auth.uid()) is null and auth.role() is distinct from 'service_role' then
    raise exception using errcode = '42501', message = 'sign in to expire leases';
  end if;
  with lapsed as (
    select b.id from public.cicd_builds b
    where b.status in ('queued', 'running') and b.runner_id is not null and b.lease_expires_at < now()
    for update skip locked
  )
  update public.cicd_builds b set status = 'lost', finished_at = now(),
    error = format('runner %s stopped heartbeating at %s; its lease expired (the build may still be running on the provider)',
                   coalesce(b.runner_name, '?'), to_char(b.heartbeat_at at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"'))
  from lapsed where b.id = lapsed.id;
  get diagnostics v_count = row_count;
  update public.cicd_provider_tasks t set status = 'lost', finished_at = now(),
    result = 'runner ' || coalesce(t.runner_name, '?') || ' stopped before finishing this task'
  where t.status = 'running' and t.lease_expires_at < now();
  return v_count;
end
$$;

create or replace function public.claim_cicd_provider_task(p_runner_name text, p_lease_seconds int default 60)
returns setof public.cicd_provider_tasks
language plpgsql security definer
set search_path = ''
as $$
begin
  return query
  update public.cicd_provider_tasks t set status = 'running',
    runner_id = (select auth.uid()), runner_name = left(p_runner_name, 200),
    lease_expires_at = now() + make_interval(secs => greatest(p_lease_seconds, 2))
  where t.id = (
    select q.id from public.cicd_provider_tasks q
    where q.status = 'queued' and q.team_id in (select private.runner_team_ids())
    order by q.requested_at
    for update skip locked
    limit 1
  )
  returning t.*;
end
$$;

create or replace function private.held_task(p_task_id uuid) returns public.cicd_provider_tasks
language plpgsql security definer
set search_path = ''
as $$
declare
  v public.cicd_provider_tasks;
begin
  select * into v from public.cicd_provider_tasks t where t.id = p_task_id for update;
  if not found or v.runner_id is distinct from (select auth.uid()) or v.status <> 'running' then
    raise exception using errcode = '42501',
      message = 'this runner does not hold provider task ' || p_task_id;
  end if;
  return v;
end
$$;

create or replace function public.finish_cicd_provider_task(p_task_id uuid, p_status text, p_result text)
returns void
language plpgsql security definer
set search_path = ''
as $$
begin
  perform private.held_task(p_task_id);
  if p_status not in ('succeeded', 'failed') then
    raise exception using errcode = '22023', message = 'a provider task finishes as succeeded or failed';
  end if;
  update public.cicd_provider_tasks t set status = p_status, finished_at = now(),
    result = left(split_part(coalesce(p_result, ''), E'\n', 1), 500)
  where t.id = p_task_id;
end
$$;

-- The provider's job list as rows (one per external_id).
create or replace function private.incoming_cicd_jobs(p_jobs jsonb)
returns table (external_id text, name text, description text, url text, parameter_definitions jsonb)
language sql immutable
set search_path = ''
as $$
  select distinct on (j ->> 'external_id') left(j ->> 'external_id', 500),
    left(coalesce(j ->> 'name', j ->> 'external_id'), 300), left(j ->> 'description', 2000),
    left(j ->> 'url', 2000),
    case when jsonb_typeof(j -> 'parameter_definitions') = 'array' then j -> 'parameter_definitions'
         else '[]'::jsonb end
  from jsonb_array_elements(p_jobs) j
  where coalesce(j ->> 'external_id', '') <> ''
  order by j ->> 'external_id'
$$;

-- Refresh: p_jobs is the provider's whole list [{"external_id", "name", "description", "url",
-- "parameter_definitions": [..]}]. Adds new jobs, updates changed ones, marks the
-- missing ones vanished (never deletes: builds and mappings keep their history).
create or replace function public.sync_cicd_jobs(p_task_id uuid, p_jobs jsonb) returns jsonb
language plpgsql security definer
set search_path = ''
as $$
declare
  v_task public.cicd_provider_tasks;
  v_added int;
  v_updated int;
  v_vanished int;
begin
  v_task := private.held_task(p_task_id);
  if v_task.kind <> 'refresh' or jsonb_typeof(p_jobs) <> 'array' then
    raise exception using errcode = '22023', message = 'sync_cicd_jobs needs a refresh task and an array of jobs';
  end if;
  with changed as (
    update public.cicd_jobs c set name = i.name, description = i.description, url = i.url,
      parameter_definitions = i.parameter_definitions, vanished_at = null, refreshed_at = now()
    from private.incoming_cicd_jobs(p_jobs) i
    where c.provider_id = v_task.provider_id and c.external_id = i.external_id
      and (c.name, c.description, c.url, c.parameter_definitions, c.vanished_at)
          is distinct from (i.name, i.description, i.url, i.parameter_definitions, null::timestamptz)
    returning 1
  ) select count(*) into v_updated from changed;
  update public.cicd_jobs c set refreshed_at = now()
  from private.incoming_cicd_jobs(p_jobs) i
  where c.provider_id = v_task.provider_id and c.external_id = i.external_id;

  with added as (
    insert into public.cicd_jobs (provider_id, external_id, name, description, url,
      parameter_definitions, parameters, team_id, creator_id, refreshed_at)
    select v_task.provider_id, i.external_id, i.name, i.description, i.url, i.parameter_definitions,
      (select coalesce(jsonb_object_agg(d ->> 'name', d -> 'default'), '{}'::jsonb)
         from jsonb_array_elements(i.parameter_definitions) d where d ? 'default' and d ->> 'type' <> 'password'),
      v_task.team_id, v_task.requested_by, now()
    from private.incoming_cicd_jobs(p_jobs) i
    where not exists (select 1 from public.cicd_jobs c
                      where c.provider_id = v_task.provider_id and c.external_id = i.external_id)
    returning 1
  ) select count(*) into v_added from added;

  with gone as (
    update public.cicd_jobs c set vanished_at = now()
    where c.provider_id = v_task.provider_id and c.vanished_at is null
      and not exists (select 1 from private.incoming_cicd_jobs(p_jobs) i where i.external_id = c.external_id)
    returning 1
  ) select count(*) into v_vanished from gone;

  update public.cicd_provider_tasks t
  set summary = jsonb_build_object('added', v_added, 'updated', v_updated, 'vanished', v_vanished)
  where t.id = p_task_id;
  return jsonb_build_object('added', v_added, 'updated', v_updated, 'vanished', v_vanished);
end
$$;

-- ---------------------------------------------------------------------------
-- Function privileges: nothing for anon, exactly these for signed-in users.
-- ---------------------------------------------------------------------------
revoke execute on function
  private.normalize_cicd_provider_type(),
  private.secret_config_entries(jsonb, text),
  private.strip_secret_config(jsonb),
  private.held_build(uuid),
  private.held_task(uuid),
  private.split_build_parameters(public.cicd_jobs, jsonb),
  private.insert_build(public.cicd_jobs, jsonb, uuid, uuid),
  private.runner_team_ids(),
  private.incoming_cicd_jobs(jsonb)
  from public, anon, authenticated, service_role;
grant execute on function private.is_secret_config_key(text) to authenticated, service_role;

do $$
declare
  f text;
begin
  foreach f in array array[
    'public.trigger_cicd_job(uuid, jsonb)',
    'public.cancel_cicd_build(uuid)',
    'public.request_cicd_provider_task(uuid, text)',
    'public.claim_cicd_build(text, int, int)',
    'public.start_run_cicd_build(uuid, uuid, text, int, jsonb)',
    'public.get_cicd_build_secret_parameters(uuid)',
    'public.heartbeat_cicd_build(uuid, int)',
    'public.update_cicd_build(uuid, jsonb)',
    'public.append_build_log(uuid, jsonb)',
    'public.finish_cicd_build(uuid, text, text)',
    'public.expire_cicd_build_leases()',
    'public.claim_cicd_provider_task(text, int)',
    'public.finish_cicd_provider_task(uuid, text, text)',
    'public.sync_cicd_jobs(uuid, jsonb)'
  ] loop
    execute format('revoke execute on function %s from public, anon', f);
    execute format('grant execute on function %s to authenticated, service_role', f);
  end loop;
end
$$;

-- ---------------------------------------------------------------------------
-- Realtime: builds, their logs (insert-only) and provider tasks.
-- ---------------------------------------------------------------------------
do $$
declare
  t text;
begin
  foreach t in array array['cicd_builds', 'cicd_build_logs', 'cicd_provider_tasks'] loop
    if exists (select 1 from pg_publication where pubname = 'supabase_realtime')
       and not exists (
         select 1 from pg_publication_tables
         where pubname = 'supabase_realtime' and schemaname = 'public' and tablename = t
       ) then
      execute format('alter publication supabase_realtime add table public.%I', t);
    end if;
  end loop;
end
$$;
