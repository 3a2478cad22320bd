-- Usage of the caller's tenant against its subscription tier, for the overview.
--
-- Counts are tenant-wide (what the limit triggers count), which a user's own
-- RLS view cannot see, so the function is SECURITY DEFINER. It reveals only
-- aggregate counts, and only for the caller's own tenant.
create or replace function public.tenant_usage() returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
declare
  v_tenant text := private.my_tenant_id();
  v_tier text;
  v_resources jsonb := '{}'::jsonb;
  v_type text;
  v_count bigint;
  v_max integer;
  v_unlimited boolean;
begin
  if v_tenant is null then
    raise exception using errcode = '42501',
      message = 'tenant usage needs a signed-in user with a tenant';
  end if;
  select subscription_tier_id into v_tier from public.tenants where id = v_tenant;
  foreach v_type in array array['hosts', 'repositories', 'deployments', 'cicd_providers', 'teams'] loop
    if v_type = 'teams' then
      select count(*) into v_count from public.teams t where t.tenant_id = v_tenant;
    else
      execute format(
        'select count(*) from public.%I x join public.teams t on t.id = x.team_id where t.tenant_id = $1',
        v_type) into v_count using v_tenant;
    end if;
    v_max := null;
    v_unlimited := true;
    select rl.max_count, coalesce(rl.is_unlimited, false) into v_max, v_unlimited
      from public.resource_limits rl where rl.tier_id = v_tier and rl.resource_type = v_type;
    v_resources := v_resources || jsonb_build_object(
      v_type, jsonb_build_object(
        'used', v_count,
        'max', case when coalesce(v_unlimited, true) then null else v_max end,
        'unlimited', coalesce(v_unlimited, true)));
  end loop;
  return jsonb_build_object('tenant_id', v_tenant, 'tier_id', v_tier, 'resources', v_resources);
end
$$;

revoke execute on function public.tenant_usage() from public, anon;
grant execute on function public.tenant_usage() to authenticated, service_role;
