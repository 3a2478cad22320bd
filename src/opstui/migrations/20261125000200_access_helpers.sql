-- Access helpers used by the RLS policies, integrity triggers, and the
-- document's check_permission()/get_user_teams() RPCs.
--
-- Helpers live in schema "private" (not exposed through the Data API), are
-- SECURITY DEFINER with an empty search_path (everything fully qualified),
-- and only ever answer questions about the CALLER (auth.uid()). Policies call
-- them set-based, e.g. `team_id in (select private.my_team_ids())`, so each
-- runs once per statement as a hashed subplan, never once per row.

-- Policies call the helpers as the API role: it needs the schema and EXECUTE
-- (granted per function below; PostgreSQL grants EXECUTE to PUBLIC otherwise).
grant usage on schema private to authenticated, service_role;

-- The caller's tenant.
create or replace function private.my_tenant_id() returns text
language sql stable security definer
set search_path = ''
as $$
  select p.tenant_id from public.profiles p where p.id = (select auth.uid())
$$;

-- Is the caller a tenant admin (profiles.role = 'admin')?
create or replace function private.is_tenant_admin() returns boolean
language sql stable security definer
set search_path = ''
as $$
  select exists (
    select 1 from public.profiles p
    where p.id = (select auth.uid()) and p.role = 'admin' and p.tenant_id is not null
  )
$$;

-- Teams the caller is a member of.
create or replace function private.my_team_ids() returns setof uuid
language sql stable security definer rows 10
set search_path = ''
as $$
  select tm.team_id from public.team_members tm where tm.profile_id = (select auth.uid())
$$;

-- Teams the caller administers: teams where they are a team admin
-- (team_members.role = 'admin'), plus every team of their tenant if they are a
-- tenant admin (profiles.role = 'admin').
create or replace function private.my_admin_team_ids() returns setof uuid
language sql stable security definer rows 10
set search_path = ''
as $$
  select tm.team_id
  from public.team_members tm
  join public.teams t on t.id = tm.team_id
  join public.profiles p on p.id = tm.profile_id and p.tenant_id = t.tenant_id
  where tm.profile_id = (select auth.uid()) and tm.role = 'admin'
  union
  select t.id
  from public.teams t
  join public.profiles p on p.tenant_id = t.tenant_id
  where p.id = (select auth.uid()) and p.role = 'admin'
$$;

-- Teams where the caller holds permission `op` on `resource` in the
-- permission matrix AND is still a member of the team.
-- op: select, insert, update, delete, execute, update_own, delete_own.
create or replace function private.team_ids_where(resource text, op text) returns setof uuid
language sql stable security definer rows 10
set search_path = ''
as $$
  select pm.team_id
  from public.permission_matrix pm
  join public.team_members tm on tm.team_id = pm.team_id and tm.profile_id = pm.profile_id
  where pm.profile_id = (select auth.uid())
    and pm.resource_type = resource
    and coalesce(case op
      when 'select' then pm.can_select
      when 'insert' then pm.can_insert
      when 'update' then pm.can_update
      when 'delete' then pm.can_delete
      when 'execute' then pm.can_execute
      when 'update_own' then pm.can_update_own
      when 'delete_own' then pm.can_delete_own
      else false
    end, false)
$$;

-- Git providers used by repositories of the caller's teams (those the caller may see).
create or replace function private.team_git_provider_ids() returns setof uuid
language sql stable security definer rows 10
set search_path = ''
as $$
  select distinct r.provider_id
  from public.repositories r
  where r.team_id in (
    select tm.team_id from public.team_members tm where tm.profile_id = (select auth.uid())
  )
$$;

-- May the caller attach a repository of `p_team_id` to git provider `p_provider_id`?
-- Yes if they own the provider, or the team already uses it. Used only in
-- WITH CHECK of repository writes (never in a read path).
create or replace function private.can_use_git_provider(p_provider_id uuid, p_team_id uuid)
returns boolean
language sql stable security definer
set search_path = ''
as $$
  select exists (
    select 1 from public.git_providers g
    where g.id = p_provider_id and g.profile_id = (select auth.uid())
  ) or exists (
    select 1 from public.repositories r
    where r.provider_id = p_provider_id and r.team_id = p_team_id
      and r.team_id in (
        select tm.team_id from public.team_members tm where tm.profile_id = (select auth.uid())
      )
  )
$$;

revoke execute on all functions in schema private from public, anon;
grant execute on function
  private.my_tenant_id(), private.is_tenant_admin(), private.my_team_ids(),
  private.my_admin_team_ids(), private.team_ids_where(text, text),
  private.team_git_provider_ids(), private.can_use_git_provider(uuid, uuid)
  to authenticated, service_role;

-- ---------------------------------------------------------------------------
-- Integrity triggers
-- ---------------------------------------------------------------------------

-- A member must belong to the team's tenant.
create or replace function private.check_team_member_tenant() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  if not exists (
    select 1 from public.teams t join public.profiles p on p.tenant_id = t.tenant_id
    where t.id = new.team_id and p.id = new.profile_id
  ) then
    raise exception using
      errcode = '23514',
      message = 'team member must belong to the same tenant as the team';
  end if;
  return new;
end
$$;
drop trigger if exists check_team_member_tenant on public.team_members;
create trigger check_team_member_tenant before insert or update of team_id, profile_id
  on public.team_members for each row execute function private.check_team_member_tenant();

-- deployments / cicd_providers: tenant_id follows the team (filled in when
-- omitted, rejected when inconsistent); deployments may only target hosts of
-- their own team.
create or replace function private.check_team_scoped_row() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  v_tenant text;
begin
  if new.team_id is not null then
    select t.tenant_id into v_tenant from public.teams t where t.id = new.team_id;
    if new.tenant_id is null then
      new.tenant_id := v_tenant;
    elsif new.tenant_id is distinct from v_tenant then
      raise exception using
        errcode = '23514',
        message = format('%s.tenant_id must be the tenant of its team', tg_table_name);
    end if;
  end if;
  if tg_table_name <> 'deployments' then
    return new;
  end if;
  -- (separate statement: plpgsql would resolve new.host_ids even when the table has none)
  if new.host_ids is not null
     and cardinality(new.host_ids) > 0
     and (tg_op = 'INSERT' or new.host_ids is distinct from old.host_ids
          or new.team_id is distinct from old.team_id)
     and exists (
       select 1 from unnest(new.host_ids) as h(id)
       where not exists (
         select 1 from public.hosts x where x.id = h.id::text and x.team_id = new.team_id
       )
     ) then
    raise exception using
      errcode = '23514',
      message = 'deployments.host_ids may only reference hosts of the deployment''s team';
  end if;
  return new;
end
$$;
drop trigger if exists check_team_scoped_row on public.deployments;
create trigger check_team_scoped_row before insert or update on public.deployments
  for each row execute function private.check_team_scoped_row();
drop trigger if exists check_team_scoped_row on public.cicd_providers;
create trigger check_team_scoped_row before insert or update on public.cicd_providers
  for each row execute function private.check_team_scoped_row();

-- End users (roles anon/authenticated) may not reassign creator_id.
-- SECURITY INVOKER on purpose: current_user is then the API role.
create or replace function private.protect_creator_id() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if current_user in ('anon', 'authenticated') and new.creator_id is distinct from old.creator_id then
    raise exception using
      errcode = '42501',
      message = format('permission denied: %s.creator_id cannot be changed', tg_table_name);
  end if;
  return new;
end
$$;
do $$
declare
  t text;
begin
  foreach t in array array['hosts', 'repositories', 'cicd_providers', 'cicd_jobs', 'deployments'] loop
    execute format('drop trigger if exists protect_creator_id on public.%I', t);
    execute format(
      'create trigger protect_creator_id before update of creator_id on public.%I '
      'for each row execute function private.protect_creator_id()', t);
  end loop;
end
$$;

-- Profiles: end users may edit their own name/avatar; only a tenant admin may
-- change role, and nobody may move a profile to another tenant or change its email
-- (the email mirrors auth.users).
create or replace function private.protect_profile() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if current_user not in ('anon', 'authenticated') then
    return new;
  end if;
  if new.id is distinct from old.id
     or new.tenant_id is distinct from old.tenant_id
     or new.tenant_name is distinct from old.tenant_name
     or new.email is distinct from old.email then
    raise exception using
      errcode = '42501',
      message = 'permission denied: a profile''s id, tenant and email cannot be changed through the API';
  end if;
  if new.role is distinct from old.role and not (select private.is_tenant_admin()) then
    raise exception using
      errcode = '42501',
      message = 'permission denied: only a tenant admin can change a profile''s role';
  end if;
  return new;
end
$$;
drop trigger if exists protect_profile on public.profiles;
create trigger protect_profile before update on public.profiles
  for each row execute function private.protect_profile();

-- Deployments: a caller who may execute but not update a deployment may only
-- change its run-state columns (mirrors the document's "Can execute deployments
-- with execute permission" UPDATE policy, with the column restriction it lacked).
create or replace function private.enforce_deployment_execute_columns() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  v_changed text;
begin
  if current_user not in ('anon', 'authenticated') then
    return new;
  end if;
  -- Cheap part first: which columns outside the run state does this update change?
  select string_agg(n.key, ', ' order by n.key) into v_changed
  from jsonb_each(to_jsonb(new)) as n(key, value)
  where n.key not in ('status', 'started_at', 'completed_at', 'updated_at')
    and n.value is distinct from (to_jsonb(old) -> n.key);
  if v_changed is null then
    return new;
  end if;
  if old.team_id in (select private.team_ids_where('deployments', 'update'))
     or (old.creator_id = (select auth.uid())
         and old.team_id in (select private.team_ids_where('deployments', 'update_own'))) then
    return new;
  end if;
  raise exception using
    errcode = '42501',
    message = format(
      'permission denied: execute permission on deployments only allows changing '
      'status, started_at and completed_at (not %s); that needs update permission', v_changed);
  return new;
end
$$;
drop trigger if exists enforce_execute_columns on public.deployments;
create trigger enforce_execute_columns before update on public.deployments
  for each row execute function private.enforce_deployment_execute_columns();

-- ---------------------------------------------------------------------------
-- The document's RPCs, kept with their signatures and semantics.
--
-- SECURITY INVOKER: they read permission_matrix / teams / team_members under
-- the caller's RLS, so a caller only learns about teams they can see (their
-- own teams; every team of the tenant for tenant admins), never about another
-- tenant. Policies do NOT use them (they use the set-based private helpers).
-- ---------------------------------------------------------------------------
create or replace function public.check_permission(
  p_profile_id uuid,
  p_team_id uuid,
  p_resource_type text,
  p_operation text,
  p_is_own_resource boolean default false
) returns boolean
language sql stable security invoker
set search_path = ''
as $$
  select coalesce((
    select case p_operation
      when 'select' then pm.can_select
      when 'insert' then pm.can_insert
      when 'update' then case when p_is_own_resource
        then (pm.can_update or pm.can_update_own) else pm.can_update end
      when 'delete' then case when p_is_own_resource
        then (pm.can_delete or pm.can_delete_own) else pm.can_delete end
      when 'execute' then pm.can_execute
      else false
    end
    from public.permission_matrix pm
    where pm.profile_id = p_profile_id
      and pm.team_id = p_team_id
      and pm.resource_type = p_resource_type
  ), false)
$$;

create or replace function public.get_user_teams(p_profile_id uuid) returns setof public.teams
language sql stable security invoker
set search_path = ''
as $$
  select t.*
  from public.teams t
  join public.team_members tm on t.id = tm.team_id
  where tm.profile_id = p_profile_id
$$;

revoke execute on function public.check_permission(uuid, uuid, text, text, boolean) from public, anon;
revoke execute on function public.get_user_teams(uuid) from public, anon;
grant execute on function public.check_permission(uuid, uuid, text, text, boolean)
  to authenticated, service_role;
grant execute on function public.get_user_teams(uuid) to authenticated, service_role;
