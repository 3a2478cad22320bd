-- SSH: host health written by checks, and the audit trail of sessions and commands.
--
-- hosts.status vocabulary (extended here; the first five are the original ones):
--   pending, testing, failed      -- set by people/deployments (unchanged)
--   online            handshake + probe succeeded
--   offline           unreachable or connection refused
--   auth_failed       reached, but every authentication method was refused
--   host_key_unknown  the host key is in no known_hosts file and was not trusted
--   host_key_changed  the host key differs from the recorded one (refused)
--   timeout           connect or probe timed out
--   error             anything else (probe failed, disconnected mid-check)

alter table public.hosts add column if not exists last_checked_at timestamptz;
alter table public.hosts add column if not exists health jsonb;

alter table public.hosts drop constraint if exists hosts_status_check;
alter table public.hosts add constraint hosts_status_check check (status in (
  'pending', 'online', 'offline', 'testing', 'failed',
  'auth_failed', 'host_key_unknown', 'host_key_changed', 'timeout', 'error'
));

-- A health check is shared with the team, so only someone who may act on the
-- host records one: can_execute on hosts in the host's team (the permission
-- that also reads its password). A viewer's check fails for want of the
-- password, and recording that as auth_failed would tell the team a lie. The
-- function writes ONLY status, last_checked_at and health, so recording needs
-- no update permission.
create or replace function public.record_host_health(p_host_id text, p_status text, p_health jsonb)
returns timestamptz
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_team uuid;
  v_now timestamptz := now();
begin
  if p_status is null or p_status not in (
       'online', 'offline', 'auth_failed', 'host_key_unknown', 'host_key_changed', 'timeout', 'error') then
    raise exception using
      errcode = '22023',
      message = format('invalid health status %L: use online, offline, auth_failed, host_key_unknown, '
                       'host_key_changed, timeout or error', p_status);
  end if;
  if p_health is not null and (jsonb_typeof(p_health) <> 'object' or length(p_health::text) > 8192) then
    raise exception using
      errcode = '22023',
      message = 'health must be a JSON object of at most 8 KB';
  end if;
  select h.team_id into v_team from public.hosts h where h.id = p_host_id;
  if auth.role() is distinct from 'service_role' and (
       v_team is null
       or v_team not in (select private.team_ids_where('hosts', 'execute'))) then
    raise exception using
      errcode = '42501',
      message = 'permission denied: recording host health requires can_execute on hosts in the host''s team';
  end if;
  update public.hosts h
     set status = p_status, last_checked_at = v_now, health = p_health
   where h.id = p_host_id;
  return v_now;
end
$$;
revoke execute on function public.record_host_health(text, text, jsonb) from public, anon;
grant execute on function public.record_host_health(text, text, jsonb) to authenticated, service_role;

-- ---------------------------------------------------------------------------
-- Audit: every interactive session and every command run through opstui.
-- Append-only: members read their teams' rows and insert only their own; no
-- update or delete policies, and the privileges are revoked as well.
-- ---------------------------------------------------------------------------
create table if not exists public.ssh_audit (
  id uuid primary key default gen_random_uuid(),
  team_id uuid not null references public.teams (id) on delete cascade,
  -- The trail outlives the host and the person (set null, never cascade).
  host_id text references public.hosts (id) on delete set null,
  profile_id uuid default auth.uid() references public.profiles (id) on delete set null,
  kind text not null check (kind in ('session', 'command')),
  command text check (length(command) <= 10000),
  exit_code integer,
  started_at timestamptz not null default now(),
  duration_ms bigint check (duration_ms >= 0),
  created_at timestamptz not null default now()
);
create index if not exists ssh_audit_team_id_idx on public.ssh_audit (team_id, started_at desc);
create index if not exists ssh_audit_host_id_idx on public.ssh_audit (host_id, started_at desc);
create index if not exists ssh_audit_profile_id_idx on public.ssh_audit (profile_id);

alter table public.ssh_audit enable row level security;
revoke all on public.ssh_audit from public, anon, authenticated, service_role;
grant select, insert on public.ssh_audit to authenticated, service_role;

drop policy if exists "Members can view their teams' ssh audit" on public.ssh_audit;
create policy "Members can view their teams' ssh audit" on public.ssh_audit
  for select to authenticated
  using (team_id in (select private.my_team_ids()));

drop policy if exists "Members can record their own ssh activity" on public.ssh_audit;
create policy "Members can record their own ssh activity" on public.ssh_audit
  for insert to authenticated
  with check (
    profile_id = (select auth.uid())
    and team_id in (select private.my_team_ids())
    and (host_id is null or exists (
      select 1 from public.hosts h where h.id = host_id and h.team_id = ssh_audit.team_id))
  );

do $$
begin
  if exists (select 1 from pg_publication where pubname = 'supabase_realtime')
     and not exists (
       select 1 from pg_publication_tables
       where pubname = 'supabase_realtime' and schemaname = 'public' and tablename = 'ssh_audit'
     ) then
    alter publication supabase_realtime add table public.ssh_audit;
  end if;
end
$$;
