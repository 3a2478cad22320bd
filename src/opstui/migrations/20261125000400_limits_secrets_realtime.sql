-- Resource limits, write-only secrets, the new-user profile trigger, realtime.

-- ---------------------------------------------------------------------------
-- Resource limits: BEFORE INSERT on hosts, repositories, deployments,
-- cicd_providers, teams. The tenant's tier comes from
-- tenants.subscription_tier_id; resource_limits.resource_type is the table
-- name; is_unlimited or no row = no limit. SECURITY DEFINER so RLS does not
-- hide rows from the count; an advisory lock per (tenant, resource)
-- serialises concurrent inserts.
-- ---------------------------------------------------------------------------
create or replace function private.enforce_resource_limit() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  v_tenant text;
  v_tier text;
  v_max integer;
  v_unlimited boolean;
  v_count bigint;
  v_plural text;
  v_singular text;
begin
  if tg_table_name = 'teams' then
    v_tenant := new.tenant_id;
  elsif new.team_id is not null then
    select t.tenant_id into v_tenant from public.teams t where t.id = new.team_id;
  end if;
  if v_tenant is null then
    return new;
  end if;

  select tn.subscription_tier_id, rl.max_count, coalesce(rl.is_unlimited, false)
    into v_tier, v_max, v_unlimited
  from public.tenants tn
  join public.resource_limits rl
    on rl.tier_id = tn.subscription_tier_id and rl.resource_type = tg_table_name
  where tn.id = v_tenant;
  if not found or v_unlimited then
    return new;
  end if;

  perform pg_advisory_xact_lock(hashtextextended('opstui.limit:' || tg_table_name || ':' || v_tenant, 0));

  if tg_table_name = 'teams' then
    select count(*) into v_count from public.teams t where t.tenant_id = v_tenant;
  else
    execute format(
      'select count(*) from public.%I x join public.teams t on t.id = x.team_id where t.tenant_id = $1',
      tg_table_name)
      into v_count using v_tenant;
  end if;

  if v_count >= v_max then
    v_plural := case tg_table_name when 'cicd_providers' then 'CI/CD providers' else tg_table_name end;
    v_singular := case tg_table_name
      when 'hosts' then 'host'
      when 'repositories' then 'repository'
      when 'deployments' then 'deployment'
      when 'cicd_providers' then 'CI/CD provider'
      when 'teams' then 'team'
      else tg_table_name
    end;
    raise exception using
      errcode = 'P0001',
      message = format(
        'resource limit reached: the ''%s'' tier allows %s %s per tenant; delete %s %s or upgrade the subscription',
        v_tier, v_max, v_plural,
        case when v_singular ~ '^[aeiou]' then 'an' else 'a' end, v_singular);
  end if;
  return new;
end
$$;

do $$
declare
  t text;
begin
  foreach t in array array['hosts', 'repositories', 'deployments', 'cicd_providers', 'teams'] loop
    execute format('drop trigger if exists enforce_resource_limit on public.%I', t);
    execute format(
      'create trigger enforce_resource_limit before insert on public.%I '
      'for each row execute function private.enforce_resource_limit()', t);
  end loop;
end
$$;

-- ---------------------------------------------------------------------------
-- Secrets. Each secret lives in a split table in schema "private" (not exposed
-- through the Data API, no grants to API roles, RLS on with no policies).
-- Writes go through the normal tables: BEFORE INSERT/UPDATE triggers move a
-- non-null password / token into the secret table and store NULL in the
-- visible column ('' clears the secret). Reads go through the checked
-- get_*_secret* functions below. Visible rows (and their realtime/WAL images,
-- which use REPLICA IDENTITY FULL) therefore never carry a secret.
-- FKs are deferrable because the BEFORE INSERT trigger writes the secret row
-- before its parent row exists.
-- ---------------------------------------------------------------------------
create table if not exists private.host_secrets (
  host_id text primary key
    references public.hosts (id) on delete cascade on update cascade deferrable initially deferred,
  password text not null,
  updated_at timestamptz not null default now()
);

create table if not exists private.git_provider_secrets (
  provider_id uuid primary key
    references public.git_providers (id) on delete cascade deferrable initially deferred,
  access_token text,
  refresh_token text,
  updated_at timestamptz not null default now()
);

create table if not exists private.cicd_provider_secrets (
  provider_id uuid primary key
    references public.cicd_providers (id) on delete cascade deferrable initially deferred,
  secrets jsonb not null default '{}'::jsonb,
  updated_at timestamptz not null default now()
);

alter table private.host_secrets enable row level security;
alter table private.git_provider_secrets enable row level security;
alter table private.cicd_provider_secrets enable row level security;
revoke all on all tables in schema private from public, anon, authenticated, service_role;

-- An INSERT whose row already exists (an upsert, or a plain insert about to
-- fail) leaves the secret in NEW untouched: it must not overwrite that row's
-- secret, and in an upsert it is EXCLUDED.<column> that carries the new secret
-- into the UPDATE branch, whose UPDATE trigger (under the UPDATE policy) moves
-- it. Nulling it here would silently drop a changed password. The row never
-- stores it: the INSERT does not happen, and the UPDATE trigger nulls it.
create or replace function private.move_host_secret() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  if new.password is null then
    return new;
  end if;
  if tg_op = 'INSERT' and exists (select 1 from public.hosts h where h.id = new.id) then
    return new;
  end if;
  if new.password = '' then
    delete from private.host_secrets s where s.host_id = new.id;
  elsif tg_op = 'UPDATE' then
    insert into private.host_secrets as s (host_id, password)
    values (new.id, new.password)
    on conflict (host_id) do update set password = excluded.password, updated_at = now();
  else
    -- A new host has no secret yet; one here belongs to a concurrent insert of the same id.
    insert into private.host_secrets (host_id, password)
    values (new.id, new.password)
    on conflict (host_id) do nothing;
  end if;
  new.password := null;
  return new;
end
$$;
drop trigger if exists move_host_secret on public.hosts;
create trigger move_host_secret before insert or update on public.hosts
  for each row execute function private.move_host_secret();

create or replace function private.move_git_provider_tokens() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  if tg_op = 'INSERT' and exists (select 1 from public.git_providers g where g.id = new.id) then
    return new;  -- the row exists: the UPDATE branch of an upsert moves the tokens (see hosts)
  end if;
  if new.access_token is not null or new.refresh_token is not null then
    insert into private.git_provider_secrets as s (provider_id, access_token, refresh_token)
    values (new.id, nullif(new.access_token, ''), nullif(new.refresh_token, ''))
    on conflict (provider_id) do update set
      access_token = case when new.access_token is null then s.access_token
                          else nullif(new.access_token, '') end,
      refresh_token = case when new.refresh_token is null then s.refresh_token
                           else nullif(new.refresh_token, '') end,
      updated_at = now();
    delete from private.git_provider_secrets s
    where s.provider_id = new.id and s.access_token is null and s.refresh_token is null;
    new.access_token := null;
    new.refresh_token := null;
  end if;
  return new;
end
$$;
drop trigger if exists move_git_provider_tokens on public.git_providers;
create trigger move_git_provider_tokens before insert or update on public.git_providers
  for each row execute function private.move_git_provider_tokens();

-- Is a cicd_providers.config key a secret? (token, password, api_token, api_key,
-- secret, client_secret, private_key, credentials, ...)
create or replace function private.is_secret_config_key(p_key text) returns boolean
language sql immutable
set search_path = ''
as $$
  select p_key <> 'secret_keys'
    and lower(p_key) ~ '(token|passw|secret|api_?key|private_?key|credential|auth_?key|access_?key|passphrase)'
    and lower(p_key) !~ '(_url|_uri|_name|_type|_expires_at)$'
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
  select coalesce(jsonb_object_agg(e.key, e.value) filter (where e.value <> '""'::jsonb and e.value <> 'null'::jsonb), '{}'::jsonb),
         coalesce(array_agg(e.key) filter (where e.value = '""'::jsonb or e.value = 'null'::jsonb), '{}')
    into v_moved, v_cleared
  from jsonb_each(coalesce(new.config, '{}'::jsonb)) as e(key, value)
  where private.is_secret_config_key(e.key);

  if tg_op = 'INSERT' and exists (select 1 from public.cicd_providers c where c.id = new.id) then
    return new;  -- the row exists: the UPDATE branch of an upsert moves the secrets (see hosts)
  end if;
  select s.secrets into v_secrets from private.cicd_provider_secrets s where s.provider_id = new.id;
  v_secrets := (coalesce(v_secrets, '{}'::jsonb) || v_moved) - v_cleared;
  if v_moved <> '{}'::jsonb or cardinality(v_cleared) > 0 then
    insert into private.cicd_provider_secrets as s (provider_id, secrets)
    values (new.id, v_secrets)
    on conflict (provider_id) do update set secrets = excluded.secrets, updated_at = now();
  end if;

  new.config := (
    select coalesce(jsonb_object_agg(e.key, e.value), '{}'::jsonb)
    from jsonb_each(coalesce(new.config, '{}'::jsonb)) as e(key, value)
    where not private.is_secret_config_key(e.key) and e.key <> 'secret_keys'
  ) || jsonb_build_object('secret_keys', (
    select coalesce(jsonb_agg(k order by k), '[]'::jsonb) from jsonb_object_keys(v_secrets) as k
  ));
  return new;
end
$$;
drop trigger if exists move_cicd_provider_secrets on public.cicd_providers;
create trigger move_cicd_provider_secrets before insert or update on public.cicd_providers
  for each row execute function private.move_cicd_provider_secrets();

-- Checked readers (exposed as RPCs to authenticated users and service_role).
-- A refusal does not reveal whether the row exists.
create or replace function public.get_host_secret(p_host_id text) returns text
language plpgsql stable security definer
set search_path = ''
as $$
declare
  v_team uuid;
begin
  select h.team_id into v_team from public.hosts h where h.id = p_host_id;
  if auth.role() is distinct from 'service_role' and (
       v_team is null
       or v_team not in (select private.team_ids_where('hosts', 'execute'))) then
    raise exception using
      errcode = '42501',
      message = 'permission denied: reading a host''s password requires can_execute on hosts in the host''s team';
  end if;
  return (select s.password from private.host_secrets s where s.host_id = p_host_id);
end
$$;

create or replace function public.get_git_provider_tokens(p_provider_id uuid) returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
declare
  v_result jsonb;
begin
  if auth.role() is distinct from 'service_role'
     and not exists (
       select 1 from public.git_providers g
       where g.id = p_provider_id and g.profile_id = (select auth.uid())
     )
     and not exists (
       select 1 from public.repositories r
       where r.provider_id = p_provider_id
         and r.team_id in (select private.team_ids_where('repositories', 'execute'))
     ) then
    raise exception using
      errcode = '42501',
      message = 'permission denied: reading git provider tokens requires owning the provider or can_execute on repositories in a team that uses it';
  end if;
  select jsonb_build_object(
           'access_token', s.access_token,
           'refresh_token', s.refresh_token,
           'expires_at', g.expires_at)
    into v_result
  from public.git_providers g
  left join private.git_provider_secrets s on s.provider_id = g.id
  where g.id = p_provider_id;
  return v_result;
end
$$;

create or replace function public.get_cicd_provider_secrets(p_provider_id uuid) returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
declare
  v_team uuid;
begin
  select c.team_id into v_team from public.cicd_providers c where c.id = p_provider_id;
  if auth.role() is distinct from 'service_role' and (
       v_team is null
       or v_team not in (select private.team_ids_where('cicd_providers', 'execute'))) then
    raise exception using
      errcode = '42501',
      message = 'permission denied: reading CI/CD provider secrets requires can_execute on cicd_providers in the provider''s team';
  end if;
  return coalesce(
    (select s.secrets from private.cicd_provider_secrets s where s.provider_id = p_provider_id),
    '{}'::jsonb);
end
$$;

revoke execute on function public.get_host_secret(text) from public, anon;
revoke execute on function public.get_git_provider_tokens(uuid) from public, anon;
revoke execute on function public.get_cicd_provider_secrets(uuid) from public, anon;
grant execute on function public.get_host_secret(text) to authenticated, service_role;
grant execute on function public.get_git_provider_tokens(uuid) to authenticated, service_role;
grant execute on function public.get_cicd_provider_secrets(uuid) to authenticated, service_role;

revoke execute on all functions in schema private from public, anon;
grant execute on function private.is_secret_config_key(text) to authenticated, service_role;

-- ---------------------------------------------------------------------------
-- New auth user -> profile (the usual Supabase pattern).
-- tenant_id and role come ONLY from raw_app_meta_data, which only the service
-- role (GoTrue's admin API) can set. raw_user_meta_data is whatever the person
-- signing up sent (`options.data`), so it supplies the display name and avatar
-- and nothing that grants access: someone who signs up on their own gets no
-- tenant and the 'viewer' role until a tenant admin's server side assigns them.
-- An unknown tenant is stored as NULL and an unknown role as 'viewer'.
-- ---------------------------------------------------------------------------
create or replace function public.handle_new_user() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  v_app jsonb := coalesce(new.raw_app_meta_data, '{}'::jsonb);
  v_user jsonb := coalesce(new.raw_user_meta_data, '{}'::jsonb);
  v_tenant text := v_app ->> 'tenant_id';
  v_role text := v_app ->> 'role';
begin
  if v_tenant is not null and not exists (select 1 from public.tenants t where t.id = v_tenant) then
    v_tenant := null;
  end if;
  if v_role is null or v_role not in ('admin', 'developer', 'contributor', 'tester', 'viewer') then
    v_role := 'viewer';
  end if;
  insert into public.profiles (id, tenant_id, role, email, full_name, avatar_url)
  values (
    new.id, v_tenant, v_role, new.email,
    coalesce(v_user ->> 'full_name', v_user ->> 'name'),
    v_user ->> 'avatar_url'
  )
  on conflict (id) do nothing;
  return new;
end
$$;
revoke execute on function public.handle_new_user() from public, anon, authenticated;

do $$
begin
  if not exists (
    select 1 from pg_trigger
    where tgname = 'on_auth_user_created' and tgrelid = 'auth.users'::regclass
  ) then
    create trigger on_auth_user_created after insert on auth.users
      for each row execute function public.handle_new_user();
  end if;
end
$$;

-- ---------------------------------------------------------------------------
-- Realtime: publish the resource tables (guarded: re-running is harmless;
-- the publication itself belongs to Supabase). REPLICA IDENTITY FULL on the
-- team-scoped tables so DELETE events carry team_id for filtering.
-- ---------------------------------------------------------------------------
do $$
declare
  t text;
begin
  foreach t in array array[
    'teams', 'team_members', 'permission_matrix', 'hosts', 'repositories',
    'profile_repository_pins', 'git_providers', 'cicd_providers', 'cicd_jobs', 'deployments',
    'deployment_cicd_mappings', 'profiles', 'tenants'
  ] loop
    if exists (select 1 from pg_publication where pubname = 'supabase_realtime')
       and not exists (
         select 1 from pg_publication_tables
         where pubname = 'supabase_realtime' and schemaname = 'public' and tablename = t
       ) then
      execute format('alter publication supabase_realtime add table public.%I', t);
    end if;
  end loop;
  foreach t in array array[
    'teams', 'team_members', 'permission_matrix', 'hosts', 'repositories',
    'profile_repository_pins', 'git_providers', 'cicd_providers', 'cicd_jobs', 'deployments',
    'deployment_cicd_mappings'
  ] loop
    execute format('alter table public.%I replica identity full', t);
  end loop;
end
$$;
