-- Deployment runs: one row per launch, its target hosts, its log; the RPCs that
-- launch, claim, drive and finish them. See docs/runs-contract.md.
--
-- Every write goes through the SECURITY DEFINER functions below (permission
-- checked inside, `set search_path = ''`); API roles only ever SELECT these
-- tables, under RLS. Grants are explicit: since 2026-10-30 Supabase grants new
-- public objects to nobody, and the embedded backend's broad defaults are
-- revoked here first so both behave the same.

-- ---------------------------------------------------------------------------
-- Rollout settings on the deployment (Ansible's `serial`, `max_fail`, timeout)
-- ---------------------------------------------------------------------------
alter table public.deployments
  add column if not exists rollout_batch_size text not null default '100%',
  add column if not exists rollout_max_failures integer not null default 0,
  add column if not exists host_timeout_seconds integer not null default 1800,
  add column if not exists repository_branch text;

alter table public.deployments drop constraint if exists deployments_rollout_batch_size_check;
alter table public.deployments add constraint deployments_rollout_batch_size_check
  check (rollout_batch_size ~ '^([1-9][0-9]{0,5}|[1-9][0-9]?%|100%)$');
alter table public.deployments drop constraint if exists deployments_rollout_max_failures_check;
alter table public.deployments add constraint deployments_rollout_max_failures_check
  check (rollout_max_failures >= 0);
alter table public.deployments drop constraint if exists deployments_host_timeout_seconds_check;
alter table public.deployments add constraint deployments_host_timeout_seconds_check
  check (host_timeout_seconds between 1 and 604800);

-- The same rules with messages a person can act on (the constraints stay the guarantee).
create or replace function private.check_deployment_rollout() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.rollout_batch_size is null
     or new.rollout_batch_size !~ '^([1-9][0-9]{0,5}|[1-9][0-9]?%|100%)$' then
    raise exception using
      errcode = '23514',
      message = format('rollout batch size %L is not valid: give a number of hosts (e.g. 2) or a percentage '
                       'from 1%% to 100%% (e.g. 25%%)', new.rollout_batch_size);
  end if;
  if new.rollout_max_failures is null or new.rollout_max_failures < 0 then
    raise exception using
      errcode = '23514',
      message = 'rollout max failures must be 0 or more (0: the first failure stops the hosts not yet started)';
  end if;
  if new.host_timeout_seconds is null or new.host_timeout_seconds not between 1 and 604800 then
    raise exception using
      errcode = '23514',
      message = 'host timeout must be between 1 and 604800 seconds (a week)';
  end if;
  return new;
end
$$;
drop trigger if exists check_deployment_rollout on public.deployments;
create trigger check_deployment_rollout
  before insert or update of rollout_batch_size, rollout_max_failures, host_timeout_seconds
  on public.deployments for each row execute function private.check_deployment_rollout();
revoke execute on function private.check_deployment_rollout() from public, anon, authenticated, service_role;

comment on column public.deployments.rollout_batch_size is
  'hosts per batch: a number ("2") or a percentage of the hosts ("25%", at least one host)';
comment on column public.deployments.rollout_max_failures is
  'the rollout stops once more than this many hosts failed; 0: the first failure stops the hosts not yet started';
comment on column public.deployments.repository_branch is
  'branch to fetch; null: the repository''s default branch';

-- ---------------------------------------------------------------------------
-- Tables
-- ---------------------------------------------------------------------------
create table if not exists public.deployment_runs (
  id uuid primary key default gen_random_uuid(),
  deployment_id uuid not null references public.deployments (id) on delete cascade,
  team_id uuid not null references public.teams (id) on delete cascade,
  tenant_id text not null references public.tenants (id) on delete cascade,
  number integer not null check (number > 0),
  trigger text not null check (trigger in ('manual', 'schedule', 'retry', 'api')),
  requested_by uuid references public.profiles (id) on delete set null,
  requested_at timestamptz not null default now(),
  scheduled_for timestamptz,
  retry_of uuid references public.deployment_runs (id) on delete set null,
  status text not null default 'queued'
    check (status in ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'lost')),
  -- The runner: its display name and its user (auth.uid()); no FK, history outlives it.
  runner_name text,
  runner_id uuid,
  lease_expires_at timestamptz,
  heartbeat_at timestamptz,
  started_at timestamptz,
  finished_at timestamptz,
  cancel_requested_at timestamptz,
  cancel_requested_by uuid,
  spec jsonb not null check (jsonb_typeof(spec) = 'object'),
  hosts_total integer not null default 0,
  hosts_done integer not null default 0,
  hosts_failed integer not null default 0,
  batch_count integer not null default 0,
  current_batch integer not null default 0,
  -- Refreshed from private.deployment_run_log_state at heartbeat and finish (not on
  -- every append: each run UPDATE is a Realtime message to every viewer).
  log_bytes bigint not null default 0,
  log_dropped_bytes bigint not null default 0,
  next_seq bigint not null default 0,
  error text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint deployment_runs_number_key unique (deployment_id, number),
  -- A schedule tick fires once, however many runners race for it (NULLs are distinct).
  constraint deployment_runs_tick_key unique (deployment_id, scheduled_for),
  constraint deployment_runs_finished_after_started
    check (finished_at is null or started_at is null or finished_at >= started_at)
);
comment on table public.deployment_runs is
  'one row per launch of a deployment; written only through the run RPCs';

-- One run at a time per deployment (launch checks first, with a clear message;
-- this index is the guarantee under races).
create unique index if not exists deployment_runs_one_active_idx
  on public.deployment_runs (deployment_id) where status in ('queued', 'running');
-- The claim: oldest queued first.
create index if not exists deployment_runs_queued_idx
  on public.deployment_runs (requested_at, id) where status = 'queued';
-- The lease sweep.
create index if not exists deployment_runs_running_lease_idx
  on public.deployment_runs (lease_expires_at) where status = 'running';
-- A team's runs, newest first (RLS filters on team_id).
create index if not exists deployment_runs_team_id_idx
  on public.deployment_runs (team_id, requested_at desc);
create index if not exists deployment_runs_tenant_id_idx on public.deployment_runs (tenant_id);
create index if not exists deployment_runs_requested_by_idx on public.deployment_runs (requested_by);
create index if not exists deployment_runs_retry_of_idx on public.deployment_runs (retry_of);

create table if not exists public.deployment_run_hosts (
  run_id uuid not null references public.deployment_runs (id) on delete cascade,
  -- No FK: a run's history outlives the host; host_name keeps its name at the time.
  host_id text not null,
  host_name text,
  batch integer not null default 1 check (batch > 0),
  position integer not null default 1 check (position > 0),
  status text not null default 'pending'
    check (status in ('pending', 'running', 'succeeded', 'failed', 'unreachable', 'skipped', 'cancelled')),
  exit_code integer,
  started_at timestamptz,
  finished_at timestamptz,
  error text,
  -- Denormalised from the run, for RLS and Realtime filters.
  team_id uuid not null,
  primary key (run_id, host_id)
);
create index if not exists deployment_run_hosts_host_id_idx
  on public.deployment_run_hosts (host_id);
comment on table public.deployment_run_hosts is
  'one row per target host of a run; written only by the runner holding the run''s lease';

create table if not exists public.deployment_run_logs (
  id bigint generated always as identity primary key,
  run_id uuid not null references public.deployment_runs (id) on delete cascade,
  host_id text,
  seq bigint not null check (seq > 0),
  stream text not null check (stream in ('stdout', 'stderr', 'system')),
  text text not null,
  created_at timestamptz not null default now(),
  team_id uuid not null,
  -- Also the index for reading a run's log in order.
  constraint deployment_run_logs_seq_key unique (run_id, seq)
);
comment on table public.deployment_run_logs is
  'append-only output chunks of a run (host_id null: the runner''s own lines); seq strictly increases per run';

-- The live log counter of a run. Private: it changes on every append, and
-- keeping it off deployment_runs keeps log traffic to one Realtime message per chunk.
create table if not exists private.deployment_run_log_state (
  run_id uuid primary key references public.deployment_runs (id) on delete cascade,
  next_seq bigint not null default 0,
  log_bytes bigint not null default 0,
  dropped_bytes bigint not null default 0
);
alter table private.deployment_run_log_state enable row level security;

drop trigger if exists set_updated_at on public.deployment_runs;
create trigger set_updated_at before update on public.deployment_runs
  for each row execute function private.set_updated_at();

-- Appending is the only write, even for the table owner's own functions.
create or replace function private.deployment_run_logs_append_only() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  raise exception using
    errcode = '42501',
    message = 'permission denied: deployment run logs are append-only';
end
$$;
drop trigger if exists append_only on public.deployment_run_logs;
create trigger append_only before update on public.deployment_run_logs
  for each row execute function private.deployment_run_logs_append_only();

-- ---------------------------------------------------------------------------
-- RLS: members of the run's team read; nobody writes except through the RPCs.
-- ---------------------------------------------------------------------------
alter table public.deployment_runs enable row level security;
alter table public.deployment_run_hosts enable row level security;
alter table public.deployment_run_logs enable row level security;

drop policy if exists "Members can view their teams' deployment runs" on public.deployment_runs;
create policy "Members can view their teams' deployment runs" on public.deployment_runs
  for select to authenticated
  using (team_id in (select private.my_team_ids()));

drop policy if exists "Members can view their teams' run hosts" on public.deployment_run_hosts;
create policy "Members can view their teams' run hosts" on public.deployment_run_hosts
  for select to authenticated
  using (team_id in (select private.my_team_ids()));

drop policy if exists "Members can view their teams' run logs" on public.deployment_run_logs;
create policy "Members can view their teams' run logs" on public.deployment_run_logs
  for select to authenticated
  using (team_id in (select private.my_team_ids()));

revoke all on public.deployment_runs, public.deployment_run_hosts, public.deployment_run_logs
  from public, anon, authenticated, service_role;
grant select on public.deployment_runs, public.deployment_run_hosts, public.deployment_run_logs
  to authenticated, service_role;
revoke all on sequence public.deployment_run_logs_id_seq from public, anon, authenticated, service_role;
revoke all on private.deployment_run_log_state from public, anon, authenticated, service_role;

-- ---------------------------------------------------------------------------
-- deployments.status / started_at / completed_at follow the latest run.
-- Definer: it updates deployments whoever drove the run (the execute-columns
-- trigger lets the owner through).
-- ---------------------------------------------------------------------------
create or replace function private.deployment_follows_run() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  v_status text := case new.status
    when 'queued' then 'pending'
    when 'running' then 'in_progress'
    when 'succeeded' then 'success'
    when 'cancelled' then 'cancelled'
    else 'failed'  -- failed, lost
  end;
begin
  -- max(): one backward step on deployment_runs_number_key, however long the history
  -- (an `exists (number > new.number)` scans every run of the deployment with a generic plan).
  if (select max(r.number) from public.deployment_runs r where r.deployment_id = new.deployment_id)
     > new.number then
    return null;  -- an older run: the deployment follows the latest one
  end if;
  update public.deployments d
     set status = v_status, started_at = new.started_at, completed_at = new.finished_at
   where d.id = new.deployment_id
     and (d.status, d.started_at, d.completed_at)
         is distinct from (v_status, new.started_at, new.finished_at);
  return null;
end
$$;
drop trigger if exists deployment_follows_run on public.deployment_runs;
create trigger deployment_follows_run
  after insert or update of status, started_at, finished_at on public.deployment_runs
  for each row execute function private.deployment_follows_run();

-- Clients no longer write the run state: it follows the runs. SECURITY INVOKER
-- on purpose (current_user is then the API role; the trigger above runs as the
-- owner and passes). Named to fire before enforce_execute_columns.
create or replace function private.deployment_run_state_is_derived() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if current_user not in ('anon', 'authenticated') then
    return new;
  end if;
  if tg_op = 'INSERT' then
    if new.status not in ('pending', 'scheduled') or new.started_at is not null or new.completed_at is not null then
      raise exception using
        errcode = '42501',
        message = 'permission denied: a new deployment starts pending or scheduled, with no start or end time; '
                  'its status then follows its runs';
    end if;
  elsif (new.status, new.started_at, new.completed_at) is distinct from (old.status, old.started_at, old.completed_at) then
    raise exception using
      errcode = '42501',
      message = 'permission denied: deployments.status, started_at and completed_at follow the deployment''s runs; '
                'launch or cancel a run instead (launch_deployment, cancel_deployment_run)';
  end if;
  return new;
end
$$;
drop trigger if exists deployment_run_state_is_derived on public.deployments;
create trigger deployment_run_state_is_derived before insert or update on public.deployments
  for each row execute function private.deployment_run_state_is_derived();

-- ---------------------------------------------------------------------------
-- Private helpers (called only from the definer functions below)
-- ---------------------------------------------------------------------------
create or replace function private.one_line(p_text text, p_max integer default 500) returns text
language sql immutable
set search_path = ''
as $$
  select nullif(left(btrim(regexp_replace(p_text, '\s*[\r\n]+\s*', ' ', 'g')), p_max), '')
$$;

create or replace function private.person_label(p_profile_id uuid) returns text
language sql stable security definer
set search_path = ''
as $$
  select coalesce(
    (select coalesce(nullif(p.full_name, ''), p.email, p.id::text)
       from public.profiles p where p.id = p_profile_id),
    'someone')
$$;

-- The caller may launch/cancel/queue runs of deployments in `p_team_id`?
create or replace function private.can_execute_deployments(p_team_id uuid) returns boolean
language sql stable security definer
set search_path = ''
as $$
  select p_team_id is not null and (
    auth.role() is not distinct from 'service_role'
    or p_team_id in (select private.team_ids_where('deployments', 'execute'))
  )
$$;

-- What a run will run, snapshotted at launch: editing the deployment later
-- does not rewrite history. Environment variable VALUES are not copied.
create or replace function private.deployment_run_spec(p_deployment_id uuid) returns jsonb
language sql stable security definer
set search_path = ''
as $$
  select jsonb_build_object(
    'deployment_name', d.name,
    'repository_id', d.repository_id,
    'repository_url', r.url,
    'repository_name', r.name,
    'branch', coalesce(d.repository_branch, r.default_branch),
    'scripts', to_jsonb(coalesce(d.scripts_path, '{}'::text[])),
    'parameters', to_jsonb(coalesce(d.scripts_parameters, '{}'::text[])),
    'host_ids', coalesce((
      select jsonb_agg(h.id::text order by h.ord)
      from unnest(d.host_ids) with ordinality as h(id, ord)), '[]'::jsonb),
    'env_names', coalesce((
      select jsonb_agg(e.value ->> 'key' order by e.ord)
      from jsonb_array_elements(coalesce(d.environment_vars, '[]'::jsonb)) with ordinality as e(value, ord)
      where e.value ->> 'key' is not null), '[]'::jsonb),
    'rollout', jsonb_build_object(
      'batch_size', d.rollout_batch_size,
      'max_failures', d.rollout_max_failures,
      'host_timeout_seconds', d.host_timeout_seconds),
    'cicd_steps', coalesce((
      select jsonb_agg(jsonb_build_object(
               'mapping_id', m.id, 'job_id', m.cicd_job_id, 'job_name', j.name,
               'parameters', m.parameters)
             order by m.created_at, m.id)
      from public.deployment_cicd_mappings m
      left join public.cicd_jobs j on j.id = m.cicd_job_id
      where m.deployment_id = d.id), '[]'::jsonb)
  )
  from public.deployments d
  left join public.repositories r on r.id = d.repository_id
  where d.id = p_deployment_id
$$;

-- Queue a run of a deployment whose row the caller has locked. Returns null
-- (and queues nothing) if a run is already queued or running when p_refuse is
-- false; raises P0001 naming that run otherwise.
create or replace function private.queue_run(
  p_deployment public.deployments,
  p_trigger text,
  p_spec jsonb,
  p_scheduled_for timestamptz,
  p_retry_of uuid,
  p_refuse boolean
) returns uuid
language plpgsql security definer
set search_path = ''
as $$
declare
  v_active public.deployment_runs;
  v_tenant text;
  v_number integer;
  v_id uuid;
begin
  select * into v_active from public.deployment_runs r
   where r.deployment_id = p_deployment.id and r.status in ('queued', 'running')
   limit 1;
  -- A run whose runner stopped heartbeating does not block the next one, sweeper or
  -- not: it is lost now. (skip locked: its runner may be finishing it this instant.)
  if found and v_active.status = 'running' and v_active.lease_expires_at <= now() then
    select * into v_active from public.deployment_runs r
     where r.id = v_active.id and r.status = 'running' and r.lease_expires_at <= now()
     for no key update skip locked;
    if found then
      perform private.lose_run(v_active);
    end if;
    select * into v_active from public.deployment_runs r
     where r.deployment_id = p_deployment.id and r.status in ('queued', 'running')
     limit 1;
  end if;
  if found then
    if not p_refuse then
      return null;
    end if;
    raise exception using
      errcode = 'P0001',
      message = format('deployment %s already has run #%s %s; cancel it or wait',
                       p_deployment.name, v_active.number, v_active.status);
  end if;
  if coalesce(jsonb_array_length(p_spec -> 'host_ids'), 0) = 0
     and coalesce(jsonb_array_length(p_spec -> 'cicd_steps'), 0) = 0 then
    raise exception using
      errcode = 'P0001',
      message = format('deployment %s has nothing to run: no target hosts and no CI/CD steps; add hosts first',
                       p_deployment.name);
  end if;
  select t.tenant_id into v_tenant from public.teams t where t.id = p_deployment.team_id;
  select coalesce(max(r.number), 0) + 1 into v_number
    from public.deployment_runs r where r.deployment_id = p_deployment.id;
  insert into public.deployment_runs as r
    (deployment_id, team_id, tenant_id, number, trigger, requested_by, scheduled_for, retry_of, spec)
  values
    (p_deployment.id, p_deployment.team_id, v_tenant, v_number, p_trigger, auth.uid(),
     p_scheduled_for, p_retry_of, p_spec)
  on conflict (deployment_id, scheduled_for) do nothing
  returning r.id into v_id;
  return v_id;
end
$$;

-- The run, if the caller holds its lease (running, claimed by auth.uid(), and
-- unless p_allow_lapsed, not expired). Locks the run row: every runner RPC
-- locks the run before its hosts, so they cannot deadlock each other.
create or replace function private.held_run(p_run_id uuid, p_allow_lapsed boolean default false)
returns public.deployment_runs
language plpgsql security definer
set search_path = ''
as $$
declare
  v_run public.deployment_runs;
begin
  select * into v_run from public.deployment_runs r where r.id = p_run_id for no key update;
  if not found
     or v_run.team_id not in (select private.team_ids_where('deployments', 'execute'))
     or v_run.runner_id is distinct from auth.uid()
     or v_run.status <> 'running'
     or (not p_allow_lapsed and v_run.lease_expires_at <= now()) then
    raise exception using
      errcode = '42501',
      message = format('permission denied: run %s is not held by this runner%s', p_run_id,
        case when found and v_run.runner_id = auth.uid() and v_run.status = 'running'
             then ' (its lease lapsed)'
             when found and v_run.runner_id = auth.uid()
             then format(' (it is %s)', v_run.status)
             else '' end);
  end if;
  return v_run;
end
$$;

-- Insert chunks into a run's log under its counter lock; returns the last seq.
-- The 50 MB cap drops whole chunks past it (counted, reported once at the end).
create or replace function private.write_run_log(p_run public.deployment_runs, p_chunks jsonb, p_apply_cap boolean)
returns bigint
language plpgsql security definer
set search_path = ''
as $$
declare
  c_cap constant bigint := 52428800;  -- 50 MB
  v_state private.deployment_run_log_state;
  v_kept integer;
  v_kept_bytes bigint;
  v_all_bytes bigint;
begin
  -- First append of a run: start from the run row's counters, and past any log a seed
  -- (or an import) wrote directly (one backward step on deployment_run_logs_seq_key).
  insert into private.deployment_run_log_state as s (run_id, next_seq, log_bytes, dropped_bytes)
  values (p_run.id,
          greatest(p_run.next_seq, (select coalesce(max(l.seq), 0) from public.deployment_run_logs l
                                    where l.run_id = p_run.id)),
          p_run.log_bytes, p_run.log_dropped_bytes)
  on conflict (run_id) do update set next_seq = s.next_seq
  returning * into v_state;

  with chunk as (
    select c.ord, c.value ->> 'host_id' as host_id, c.value ->> 'stream' as stream,
           c.value ->> 'text' as text,
           sum(octet_length(c.value ->> 'text')) over (order by c.ord) as upto
    from jsonb_array_elements(p_chunks) with ordinality as c(value, ord)
  ), kept as (
    select ch.*, row_number() over (order by ch.ord) as n
    from chunk ch
    where not p_apply_cap or (v_state.dropped_bytes = 0 and v_state.log_bytes + ch.upto <= c_cap)
  ), ins as (
    insert into public.deployment_run_logs (run_id, host_id, seq, stream, text, team_id)
    select p_run.id, k.host_id, v_state.next_seq + k.n, k.stream, k.text, p_run.team_id
    from kept k order by k.n
    returning octet_length(text) as bytes
  )
  select (select count(*) from ins), (select coalesce(sum(bytes), 0) from ins),
         (select coalesce(sum(octet_length(c.value ->> 'text')), 0)
            from jsonb_array_elements(p_chunks) as c(value))
    into v_kept, v_kept_bytes, v_all_bytes;

  update private.deployment_run_log_state s
     set next_seq = s.next_seq + v_kept,
         log_bytes = s.log_bytes + case when p_apply_cap then v_kept_bytes else 0 end,
         dropped_bytes = s.dropped_bytes + case when p_apply_cap then v_all_bytes - v_kept_bytes else 0 end
   where s.run_id = p_run.id
  returning * into v_state;
  return v_state.next_seq;
end
$$;

-- A run has ended: pending/running hosts are closed, the cap line is written,
-- the counters are copied onto the run row. Caller has locked the run.
create or replace function private.close_run(
  p_run public.deployment_runs, p_status text, p_error text, p_system_line text
) returns void
language plpgsql security definer
set search_path = ''
as $$
declare
  v_state private.deployment_run_log_state;
  v_lines jsonb := '[]'::jsonb;
begin
  update public.deployment_run_hosts h
     set status = case
           when h.status = 'running' then 'cancelled'
           when p_status = 'cancelled' then 'cancelled'
           else 'skipped' end,
         finished_at = now(),
         error = coalesce(h.error, case
           when h.status = 'running' and p_status = 'lost' then 'stopped: the runner was lost'
           when h.status = 'running' then 'stopped: the run ended'
           when p_status = 'cancelled' then 'cancelled before it started'
           else 'skipped: the rollout stopped before this host' end)
   where h.run_id = p_run.id and h.status in ('pending', 'running');

  select * into v_state from private.deployment_run_log_state s where s.run_id = p_run.id;
  if p_system_line is not null then
    v_lines := v_lines || jsonb_build_array(
      jsonb_build_object('host_id', null, 'stream', 'system', 'text', p_system_line));
  end if;
  if coalesce(v_state.dropped_bytes, p_run.log_dropped_bytes) > 0 then
    v_lines := v_lines || jsonb_build_array(jsonb_build_object(
      'host_id', null, 'stream', 'system',
      'text', format('log capped at 50 MB: %s bytes dropped',
                     coalesce(v_state.dropped_bytes, p_run.log_dropped_bytes))));
  end if;
  if jsonb_array_length(v_lines) > 0 then
    perform private.write_run_log(p_run, v_lines, false);
  end if;
  select * into v_state from private.deployment_run_log_state s where s.run_id = p_run.id;

  update public.deployment_runs r
     set status = p_status,
         finished_at = now(),
         error = private.one_line(p_error),
         hosts_done = x.done, hosts_failed = x.failed,
         next_seq = coalesce(v_state.next_seq, r.next_seq),
         log_bytes = coalesce(v_state.log_bytes, r.log_bytes),
         log_dropped_bytes = coalesce(v_state.dropped_bytes, r.log_dropped_bytes)
    from (select count(*) filter (where h.status not in ('pending', 'running')) as done,
                 count(*) filter (where h.status in ('failed', 'unreachable')) as failed
            from public.deployment_run_hosts h where h.run_id = p_run.id) x
   where r.id = p_run.id;
end
$$;

-- Why a run whose lease lapsed is lost, in one line.
create or replace function private.lapsed_lease_reason(p_run public.deployment_runs) returns text
language sql stable
set search_path = ''
as $$
  select format('runner %s stopped heartbeating at %s; its lease expired',
                coalesce(p_run.runner_name, 'unknown'),
                to_char(coalesce(p_run.heartbeat_at, p_run.started_at) at time zone 'UTC',
                        'YYYY-MM-DD HH24:MI:SS "UTC"'))
$$;

-- A lapsed lease: the run is lost (never requeued). Caller has locked the run.
create or replace function private.lose_run(p_run public.deployment_runs) returns void
language plpgsql security definer
set search_path = ''
as $$
declare
  v_error text := private.lapsed_lease_reason(p_run);
begin
  perform private.close_run(p_run, 'lost', v_error, 'run lost: ' || v_error);
end
$$;

revoke execute on function
  private.deployment_follows_run(), private.deployment_run_logs_append_only(),
  private.deployment_run_state_is_derived(),
  private.one_line(text, integer), private.person_label(uuid),
  private.can_execute_deployments(uuid), private.deployment_run_spec(uuid),
  private.queue_run(public.deployments, text, jsonb, timestamptz, uuid, boolean),
  private.held_run(uuid, boolean),
  private.write_run_log(public.deployment_runs, jsonb, boolean),
  private.close_run(public.deployment_runs, text, text, text),
  private.lapsed_lease_reason(public.deployment_runs), private.lose_run(public.deployment_runs)
  from public, anon, authenticated, service_role;

-- ---------------------------------------------------------------------------
-- RPCs for users: launch, retry, cancel. Need can_execute on deployments in the
-- deployment's team. A refusal does not say whether the deployment exists.
-- ---------------------------------------------------------------------------
create or replace function public.launch_deployment(p_deployment_id uuid, p_trigger text default 'manual')
returns uuid
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_deployment public.deployments;
begin
  if p_trigger is null or p_trigger not in ('manual', 'api') then
    raise exception using
      errcode = '22023',
      message = format('invalid trigger %L: launch_deployment takes manual or api', p_trigger);
  end if;
  -- Lock the deployment: launches of one deployment queue behind each other.
  select * into v_deployment from public.deployments d where d.id = p_deployment_id for no key update;
  if not found or not private.can_execute_deployments(v_deployment.team_id) then
    raise exception using
      errcode = '42501',
      message = 'permission denied: launching a deployment requires can_execute on deployments in the deployment''s team';
  end if;
  return private.queue_run(
    v_deployment, p_trigger, private.deployment_run_spec(v_deployment.id), null, null, true);
end
$$;

create or replace function public.retry_deployment_run(p_run_id uuid) returns uuid
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_run public.deployment_runs;
  v_deployment public.deployments;
begin
  select * into v_run from public.deployment_runs r where r.id = p_run_id;
  if not found or not private.can_execute_deployments(v_run.team_id) then
    raise exception using
      errcode = '42501',
      message = 'permission denied: retrying a run requires can_execute on deployments in the run''s team';
  end if;
  select * into v_deployment from public.deployments d where d.id = v_run.deployment_id for no key update;
  return private.queue_run(v_deployment, 'retry', v_run.spec, null, v_run.id, true);
end
$$;

create or replace function public.cancel_deployment_run(p_run_id uuid) returns void
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_run public.deployment_runs;
begin
  select * into v_run from public.deployment_runs r where r.id = p_run_id for no key update;
  if not found or not private.can_execute_deployments(v_run.team_id) then
    raise exception using
      errcode = '42501',
      message = 'permission denied: cancelling a run requires can_execute on deployments in the run''s team';
  end if;
  if v_run.status = 'queued' then
    update public.deployment_runs r
       set status = 'cancelled', finished_at = now(),
           cancel_requested_at = now(), cancel_requested_by = auth.uid(),
           error = private.one_line(format('cancelled by %s before it started',
                                           private.person_label(auth.uid())))
     where r.id = v_run.id;
  elsif v_run.status = 'running' and v_run.lease_expires_at <= now() then
    -- Nobody is driving it any more: close it now rather than wait for a sweep.
    update public.deployment_runs r
       set cancel_requested_at = now(), cancel_requested_by = auth.uid()
     where r.id = v_run.id;
    perform private.close_run(v_run, 'cancelled',
      format('cancelled by %s; %s', private.person_label(auth.uid()), private.lapsed_lease_reason(v_run)),
      null);
  elsif v_run.status = 'running' then
    update public.deployment_runs r
       set cancel_requested_at = coalesce(r.cancel_requested_at, now()),
           cancel_requested_by = coalesce(r.cancel_requested_by, auth.uid())
     where r.id = v_run.id;
  else
    raise exception using
      errcode = 'P0001',
      message = format('run #%s of %s already ended (%s); there is nothing to cancel',
                       v_run.number, v_run.spec ->> 'deployment_name', v_run.status);
  end if;
end
$$;

-- ---------------------------------------------------------------------------
-- RPCs for runners: a signed-in user; only runs of teams where that user has
-- can_execute on deployments are handed out and may be driven.
-- ---------------------------------------------------------------------------
create or replace function public.claim_deployment_run(p_runner_name text, p_lease_seconds integer default 30)
returns setof public.deployment_runs
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_run public.deployment_runs;
  v_total integer;
  v_batch_size integer;
  v_spec_batch text;
begin
  if auth.uid() is null then
    raise exception using
      errcode = '42501',
      message = 'permission denied: claiming runs needs a signed-in runner (opstui login, then opstui runner)';
  end if;
  if p_lease_seconds is null or p_lease_seconds not between 5 and 3600 then
    raise exception using
      errcode = '22023', message = 'lease must be between 5 and 3600 seconds';
  end if;
  if private.one_line(p_runner_name, 100) is null then
    raise exception using errcode = '22023', message = 'the runner needs a name';
  end if;

  update public.deployment_runs r
     set status = 'running', runner_id = auth.uid(), runner_name = private.one_line(p_runner_name, 100),
         lease_expires_at = now() + make_interval(secs => p_lease_seconds),
         heartbeat_at = now(), started_at = now()
   where r.id = (
     select q.id from public.deployment_runs q
      where q.status = 'queued'
        and q.team_id in (select private.team_ids_where('deployments', 'execute'))
      order by q.requested_at, q.id
      limit 1
      for update of q skip locked)
  returning r.* into v_run;
  if not found then
    return;
  end if;

  -- Batches as Ansible's serial: a number, or a percentage of the hosts (at least one).
  v_total := jsonb_array_length(coalesce(v_run.spec -> 'host_ids', '[]'::jsonb));
  v_spec_batch := coalesce(v_run.spec #>> '{rollout,batch_size}', '100%');
  if v_spec_batch ~ '^[0-9]+%$' then
    v_batch_size := greatest(1, floor(v_total * rtrim(v_spec_batch, '%')::numeric / 100)::integer);
  elsif v_spec_batch ~ '^[0-9]+$' then
    v_batch_size := greatest(1, v_spec_batch::integer);
  else
    v_batch_size := greatest(v_total, 1);
  end if;

  insert into public.deployment_run_hosts
    (run_id, host_id, host_name, batch, position, status, finished_at, error, team_id)
  select v_run.id, s.host_id, h.name, (s.ord - 1) / v_batch_size + 1, s.ord,
         case when h.id is null then 'skipped' else 'pending' end,
         case when h.id is null then now() end,
         case when h.id is null then 'skipped: the host was deleted after the run was queued' end,
         v_run.team_id
  from jsonb_array_elements_text(v_run.spec -> 'host_ids') with ordinality as s(host_id, ord)
  left join public.hosts h on h.id = s.host_id
  on conflict (run_id, host_id) do nothing;

  update public.deployment_runs r
     set hosts_total = x.total, hosts_done = x.done, batch_count = x.batches,
         current_batch = least(1, x.batches)
    from (select count(*) as total,
                 count(*) filter (where h.status <> 'pending') as done,
                 coalesce(max(h.batch), 0) as batches
            from public.deployment_run_hosts h where h.run_id = v_run.id) x
   where r.id = v_run.id
  returning r.* into v_run;
  return next v_run;
end
$$;

create or replace function public.heartbeat_deployment_run(p_run_id uuid, p_lease_seconds integer default 30)
returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_run public.deployment_runs;
begin
  if p_lease_seconds is null or p_lease_seconds not between 5 and 3600 then
    raise exception using
      errcode = '22023', message = 'lease must be between 5 and 3600 seconds';
  end if;
  perform private.held_run(p_run_id);
  update public.deployment_runs r
     set lease_expires_at = now() + make_interval(secs => p_lease_seconds),
         heartbeat_at = now(),
         next_seq = coalesce(s.next_seq, r.next_seq),
         log_bytes = coalesce(s.log_bytes, r.log_bytes),
         log_dropped_bytes = coalesce(s.dropped_bytes, r.log_dropped_bytes)
    from (select 1) one
    left join private.deployment_run_log_state s on s.run_id = p_run_id
   where r.id = p_run_id
  returning r.* into v_run;
  return jsonb_build_object(
    'cancel_requested', v_run.cancel_requested_at is not null,
    'lease_expires_at', v_run.lease_expires_at);
end
$$;

create or replace function public.update_run_host(
  p_run_id uuid, p_host_id text, p_status text, p_exit_code integer default null, p_error text default null
) returns void
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_run public.deployment_runs;
begin
  if p_status is null or p_status not in
     ('pending', 'running', 'succeeded', 'failed', 'unreachable', 'skipped', 'cancelled') then
    raise exception using
      errcode = '22023',
      message = format('invalid host status %L: use pending, running, succeeded, failed, unreachable, '
                       'skipped or cancelled', p_status);
  end if;
  v_run := private.held_run(p_run_id);
  update public.deployment_run_hosts h
     set status = p_status,
         exit_code = coalesce(p_exit_code, h.exit_code),
         error = case when p_status in ('pending', 'running', 'succeeded') then null
                      else private.one_line(p_error) end,
         started_at = case when p_status = 'running' then coalesce(h.started_at, now())
                           when p_status = 'pending' then null
                           else h.started_at end,
         finished_at = case when p_status in ('pending', 'running') then null else now() end
   where h.run_id = p_run_id and h.host_id = p_host_id;
  if not found then
    raise exception using
      errcode = 'P0001',
      message = format('host %s is not a target of run #%s', p_host_id, v_run.number);
  end if;
  update public.deployment_runs r
     set hosts_done = x.done, hosts_failed = x.failed
    from (select count(*) filter (where h.status not in ('pending', 'running')) as done,
                 count(*) filter (where h.status in ('failed', 'unreachable')) as failed
            from public.deployment_run_hosts h where h.run_id = p_run_id) x
   where r.id = p_run_id and (r.hosts_done, r.hosts_failed) is distinct from (x.done, x.failed);
end
$$;

create or replace function public.append_run_log(p_run_id uuid, p_chunks jsonb) returns bigint
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_run public.deployment_runs;
  v_bad text;
begin
  if p_chunks is null or jsonb_typeof(p_chunks) <> 'array' then
    raise exception using
      errcode = '22023',
      message = 'chunks must be a JSON array of {"host_id", "stream", "text"} objects';
  end if;
  select coalesce(
           (select format('chunk %s: stream must be stdout, stderr or system', c.ord)
              from jsonb_array_elements(p_chunks) with ordinality as c(value, ord)
             where jsonb_typeof(c.value) <> 'object'
                or coalesce(c.value ->> 'stream', '') not in ('stdout', 'stderr', 'system')
             limit 1),
           (select format('chunk %s: text must be a string', c.ord)
              from jsonb_array_elements(p_chunks) with ordinality as c(value, ord)
             where jsonb_typeof(c.value -> 'text') is distinct from 'string'
             limit 1))
    into v_bad;
  if v_bad is not null then
    raise exception using errcode = '22023', message = v_bad;
  end if;
  v_run := private.held_run(p_run_id);
  select format('host %s is not a target of run #%s', c.value ->> 'host_id', v_run.number)
    into v_bad
    from jsonb_array_elements(p_chunks) as c(value)
   where c.value ->> 'host_id' is not null
     and not exists (select 1 from public.deployment_run_hosts h
                      where h.run_id = p_run_id and h.host_id = c.value ->> 'host_id')
   limit 1;
  if v_bad is not null then
    raise exception using errcode = 'P0001', message = v_bad;
  end if;
  return private.write_run_log(v_run, p_chunks, true);
end
$$;

create or replace function public.set_run_batch(p_run_id uuid, p_batch integer) returns void
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_run public.deployment_runs;
begin
  v_run := private.held_run(p_run_id);
  if p_batch is null or p_batch < 1 or p_batch > greatest(v_run.batch_count, 1) then
    raise exception using
      errcode = '22023',
      message = format('batch %s is out of range: run #%s has %s batches', p_batch, v_run.number, v_run.batch_count);
  end if;
  update public.deployment_runs r set current_batch = p_batch
   where r.id = p_run_id and r.current_batch is distinct from p_batch;
end
$$;

create or replace function public.finish_deployment_run(p_run_id uuid, p_status text, p_error text default null)
returns void
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_run public.deployment_runs;
  v_error text := p_error;
begin
  if p_status is null or p_status not in ('succeeded', 'failed', 'cancelled') then
    raise exception using
      errcode = '22023',
      message = format('invalid final status %L: use succeeded, failed or cancelled', p_status);
  end if;
  -- A lapsed lease not yet swept may still record the real outcome.
  v_run := private.held_run(p_run_id, true);
  if p_status = 'succeeded' then
    v_error := null;
  elsif v_error is null and p_status = 'cancelled' then
    v_error := format('cancelled by %s', private.person_label(v_run.cancel_requested_by));
  elsif v_error is null then
    v_error := (select format('%s of %s hosts failed',
                              count(*) filter (where h.status in ('failed', 'unreachable')), count(*))
                  from public.deployment_run_hosts h where h.run_id = p_run_id);
  end if;
  perform private.close_run(v_run, p_status, v_error, null);
end
$$;

create or replace function public.expire_deployment_run_leases() returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_run public.deployment_runs;
  v_count integer := 0;
  -- Signed-in runners sweep the teams they run for; service_role (pg_cron) all.
  v_all boolean := auth.role() is distinct from 'authenticated';
begin
  if not v_all and auth.uid() is null then
    raise exception using errcode = '42501', message = 'permission denied: sign in to sweep run leases';
  end if;
  for v_run in
    select * from public.deployment_runs r
     where r.status = 'running' and r.lease_expires_at <= now()
       and (v_all or r.team_id in (select private.team_ids_where('deployments', 'execute')))
     order by r.lease_expires_at
     for no key update skip locked
  loop
    perform private.lose_run(v_run);
    v_count := v_count + 1;
  end loop;
  return v_count;
end
$$;

-- Queue the run for a schedule tick. Returns null, queueing nothing, when the
-- tick already fired, a run is going, repeat_count is used up, or the
-- deployment has no such schedule. p_skipped_ticks > 0 (missed ticks not
-- replayed) is written as the run's first system line.
create or replace function public.queue_scheduled_run(
  p_deployment_id uuid, p_tick timestamptz, p_skipped_ticks integer default 0
) returns uuid
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_deployment public.deployments;
  v_run public.deployment_runs;
  v_id uuid;
begin
  if p_tick is null or p_tick > now() + interval '1 minute' then
    raise exception using
      errcode = '22023',
      message = format('tick %s is in the future: queue a scheduled run only once it is due', p_tick);
  end if;
  select * into v_deployment from public.deployments d where d.id = p_deployment_id for no key update;
  if not found or not private.can_execute_deployments(v_deployment.team_id) then
    raise exception using
      errcode = '42501',
      message = 'permission denied: queueing a scheduled run requires can_execute on deployments in the deployment''s team';
  end if;
  if v_deployment.schedule_type is distinct from 'cron' and v_deployment.schedule_type is distinct from 'later' then
    return null;
  end if;
  if v_deployment.schedule_type = 'later' and p_tick is distinct from v_deployment.scheduled_time then
    return null;  -- `later` fires once, at scheduled_time
  end if;
  if v_deployment.schedule_type = 'cron' and coalesce(v_deployment.repeat_count, 0) > 0
     and (select count(*) from public.deployment_runs r
           where r.deployment_id = v_deployment.id and r.trigger = 'schedule') >= v_deployment.repeat_count then
    return null;
  end if;
  begin
    v_id := private.queue_run(
      v_deployment, 'schedule', private.deployment_run_spec(v_deployment.id), p_tick, null, false);
  exception when sqlstate 'P0001' then
    return null;  -- nothing to run (no hosts): a schedule does not raise every tick
  end;
  if v_id is not null and coalesce(p_skipped_ticks, 0) > 0 then
    select * into v_run from public.deployment_runs r where r.id = v_id;
    perform private.write_run_log(v_run, jsonb_build_array(jsonb_build_object(
      'host_id', null, 'stream', 'system',
      'text', format('skipped %s missed tick%s while no runner was up; fired only the latest (%s)',
                     p_skipped_ticks, case when p_skipped_ticks = 1 then '' else 's' end,
                     to_char(p_tick at time zone 'UTC', 'YYYY-MM-DD HH24:MI "UTC"')))), false);
  end if;
  return v_id;
end
$$;

do $$
declare
  f text;
begin
  foreach f in array array[
    'public.launch_deployment(uuid, text)',
    'public.retry_deployment_run(uuid)',
    'public.cancel_deployment_run(uuid)',
    'public.claim_deployment_run(text, integer)',
    'public.heartbeat_deployment_run(uuid, integer)',
    'public.update_run_host(uuid, text, text, integer, text)',
    'public.append_run_log(uuid, jsonb)',
    'public.set_run_batch(uuid, integer)',
    'public.finish_deployment_run(uuid, text, text)',
    'public.expire_deployment_run_leases()',
    'public.queue_scheduled_run(uuid, timestamptz, integer)'
  ] loop
    execute format('revoke execute on function %s from public, anon', f);
    execute format('grant execute on function %s to authenticated, service_role', f);
  end loop;
end
$$;

-- ---------------------------------------------------------------------------
-- Realtime (guarded: the publication belongs to Supabase). Replica identity
-- default: runs and hosts are never deleted by clients, logs are insert-only.
-- ---------------------------------------------------------------------------
do $$
declare
  t text;
begin
  foreach t in array array['deployment_runs', 'deployment_run_hosts', 'deployment_run_logs'] loop
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
