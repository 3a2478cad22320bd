-- Row level security for every public table.
--
-- Rules (caller = auth.uid(); all helpers are set-based, see 20261125000200):
--   * tenant isolation: tenants, profiles, teams are visible within the caller's tenant;
--   * reading team resources requires membership of the team;
--   * INSERT/UPDATE/DELETE of team resources require the permission_matrix flag
--     (update_own/delete_own: only rows with creator_id = caller); every INSERT
--     and UPDATE has a WITH CHECK that pins team and creator, so a write without
--     RETURNING cannot plant a row in another team/tenant;
--   * teams/team_members/permission_matrix writes: team admins
--     (team_members.role = 'admin') of that team, or tenant admins
--     (profiles.role = 'admin') for every team of their tenant. Creating or
--     deleting a team is for tenant admins only;
--   * catalog tables (subscription_tiers, resource_limits, role_templates) are
--     read-only for authenticated users; tenants are read-only too (changing the
--     tier is a billing operation: service_role);
--   * anon gets nothing: every policy is `to authenticated`, and anon has no grants;
--   * table privileges (what each role may do at all) are granted in 20261125000100.
-- service_role bypasses RLS (BYPASSRLS), as on Supabase.

do $$
declare
  t text;
begin
  foreach t in array array[
    'subscription_tiers', 'resource_limits', 'tenants', 'role_templates', 'profiles', 'teams',
    'team_members', 'permission_matrix', 'hosts', 'git_providers', 'repositories',
    'profile_repository_pins', 'cicd_providers', 'cicd_jobs', 'deployments',
    'deployment_cicd_mappings'
  ] loop
    execute format('alter table public.%I enable row level security', t);
  end loop;
end
$$;

-- ---------------------------------------------------------------------------
-- Catalog tables: read-only for signed-in users.
-- ---------------------------------------------------------------------------
drop policy if exists "Authenticated users can read subscription tiers" on public.subscription_tiers;
create policy "Authenticated users can read subscription tiers" on public.subscription_tiers
  for select to authenticated using (true);

drop policy if exists "Authenticated users can read resource limits" on public.resource_limits;
create policy "Authenticated users can read resource limits" on public.resource_limits
  for select to authenticated using (true);

drop policy if exists "Authenticated users can read role templates" on public.role_templates;
create policy "Authenticated users can read role templates" on public.role_templates
  for select to authenticated using (true);

-- (The API roles are granted only SELECT on these: see 20261125000100_schema.sql.)

-- ---------------------------------------------------------------------------
-- Tenants, profiles, teams: tenant isolation.
-- ---------------------------------------------------------------------------
drop policy if exists "Users can view their own tenant" on public.tenants;
create policy "Users can view their own tenant" on public.tenants
  for select to authenticated
  using (id = (select private.my_tenant_id()));

-- No 42P17: the tenant lookup goes through a SECURITY DEFINER helper, not a
-- subquery on profiles.
drop policy if exists "Users can view profiles in their tenant" on public.profiles;
create policy "Users can view profiles in their tenant" on public.profiles
  for select to authenticated
  using (id = (select auth.uid()) or tenant_id = (select private.my_tenant_id()));

-- Own profile, or any profile of the tenant for tenant admins. Column rules
-- (role/tenant/email) are enforced by the protect_profile trigger.
drop policy if exists "Users can update their own profile" on public.profiles;
create policy "Users can update their own profile" on public.profiles
  for update to authenticated
  using (
    id = (select auth.uid())
    or (tenant_id = (select private.my_tenant_id()) and (select private.is_tenant_admin()))
  )
  with check (
    id = (select auth.uid())
    or (tenant_id = (select private.my_tenant_id()) and (select private.is_tenant_admin()))
  );
-- Profiles are created by the on_auth_user_created trigger and deleted with the auth user.

drop policy if exists "Users can view teams in their tenant" on public.teams;
create policy "Users can view teams in their tenant" on public.teams
  for select to authenticated
  using (tenant_id = (select private.my_tenant_id()));

drop policy if exists "Tenant admins can create teams" on public.teams;
create policy "Tenant admins can create teams" on public.teams
  for insert to authenticated
  with check (
    tenant_id = (select private.my_tenant_id())
    and (select private.is_tenant_admin())
    and created_by = (select auth.uid())
  );

drop policy if exists "Team admins can update their teams" on public.teams;
create policy "Team admins can update their teams" on public.teams
  for update to authenticated
  using (id in (select private.my_admin_team_ids()))
  with check (
    id in (select private.my_admin_team_ids())
    and tenant_id = (select private.my_tenant_id())
  );

drop policy if exists "Tenant admins can delete teams" on public.teams;
create policy "Tenant admins can delete teams" on public.teams
  for delete to authenticated
  using (tenant_id = (select private.my_tenant_id()) and (select private.is_tenant_admin()));

-- ---------------------------------------------------------------------------
-- Team membership and permission matrix: visible to members (and to the
-- admins of the team), writable by team/tenant admins.
-- ---------------------------------------------------------------------------
drop policy if exists "Members can view their teams' members" on public.team_members;
create policy "Members can view their teams' members" on public.team_members
  for select to authenticated
  using (
    team_id in (select private.my_team_ids())
    or team_id in (select private.my_admin_team_ids())
  );

drop policy if exists "Team admins can add members" on public.team_members;
create policy "Team admins can add members" on public.team_members
  for insert to authenticated
  with check (team_id in (select private.my_admin_team_ids()));

drop policy if exists "Team admins can update members" on public.team_members;
create policy "Team admins can update members" on public.team_members
  for update to authenticated
  using (team_id in (select private.my_admin_team_ids()))
  with check (team_id in (select private.my_admin_team_ids()));

drop policy if exists "Team admins can remove members" on public.team_members;
create policy "Team admins can remove members" on public.team_members
  for delete to authenticated
  using (team_id in (select private.my_admin_team_ids()));

drop policy if exists "Members can view their teams' permissions" on public.permission_matrix;
create policy "Members can view their teams' permissions" on public.permission_matrix
  for select to authenticated
  using (
    team_id in (select private.my_team_ids())
    or team_id in (select private.my_admin_team_ids())
  );

drop policy if exists "Team admins can grant permissions" on public.permission_matrix;
create policy "Team admins can grant permissions" on public.permission_matrix
  for insert to authenticated
  with check (
    team_id in (select private.my_admin_team_ids())
    and profile_id in (
      select p.id from public.profiles p where p.tenant_id = (select private.my_tenant_id())
    )
  );

drop policy if exists "Team admins can change permissions" on public.permission_matrix;
create policy "Team admins can change permissions" on public.permission_matrix
  for update to authenticated
  using (team_id in (select private.my_admin_team_ids()))
  with check (
    team_id in (select private.my_admin_team_ids())
    and profile_id in (
      select p.id from public.profiles p where p.tenant_id = (select private.my_tenant_id())
    )
  );

drop policy if exists "Team admins can revoke permissions" on public.permission_matrix;
create policy "Team admins can revoke permissions" on public.permission_matrix
  for delete to authenticated
  using (team_id in (select private.my_admin_team_ids()));

-- ---------------------------------------------------------------------------
-- Team resources: hosts, repositories, cicd_providers, cicd_jobs, deployments.
-- SELECT: membership. INSERT/UPDATE/DELETE: permission_matrix of that resource.
-- ---------------------------------------------------------------------------

-- hosts
drop policy if exists "Members can view their teams' hosts" on public.hosts;
create policy "Members can view their teams' hosts" on public.hosts
  for select to authenticated
  using (team_id in (select private.my_team_ids()));

drop policy if exists "Users with insert permission can add hosts" on public.hosts;
create policy "Users with insert permission can add hosts" on public.hosts
  for insert to authenticated
  with check (
    team_id in (select private.team_ids_where('hosts', 'insert'))
    and creator_id = (select auth.uid())
  );

drop policy if exists "Users with update permission can modify hosts" on public.hosts;
create policy "Users with update permission can modify hosts" on public.hosts
  for update to authenticated
  using (
    team_id in (select private.team_ids_where('hosts', 'update'))
    or (creator_id = (select auth.uid())
        and team_id in (select private.team_ids_where('hosts', 'update_own')))
  )
  with check (
    team_id in (select private.team_ids_where('hosts', 'update'))
    or (creator_id = (select auth.uid())
        and team_id in (select private.team_ids_where('hosts', 'update_own')))
  );

drop policy if exists "Users with delete permission can remove hosts" on public.hosts;
create policy "Users with delete permission can remove hosts" on public.hosts
  for delete to authenticated
  using (
    team_id in (select private.team_ids_where('hosts', 'delete'))
    or (creator_id = (select auth.uid())
        and team_id in (select private.team_ids_where('hosts', 'delete_own')))
  );

-- repositories (the git provider must be the caller's own or already used by the team)
drop policy if exists "Members can view their teams' repositories" on public.repositories;
create policy "Members can view their teams' repositories" on public.repositories
  for select to authenticated
  using (team_id in (select private.my_team_ids()));

drop policy if exists "Users with insert permission can add repositories" on public.repositories;
create policy "Users with insert permission can add repositories" on public.repositories
  for insert to authenticated
  with check (
    team_id in (select private.team_ids_where('repositories', 'insert'))
    and creator_id = (select auth.uid())
    and private.can_use_git_provider(provider_id, team_id)
  );

drop policy if exists "Users with update permission can modify repositories" on public.repositories;
create policy "Users with update permission can modify repositories" on public.repositories
  for update to authenticated
  using (
    team_id in (select private.team_ids_where('repositories', 'update'))
    or (creator_id = (select auth.uid())
        and team_id in (select private.team_ids_where('repositories', 'update_own')))
  )
  with check (
    (team_id in (select private.team_ids_where('repositories', 'update'))
     or (creator_id = (select auth.uid())
         and team_id in (select private.team_ids_where('repositories', 'update_own'))))
    and private.can_use_git_provider(provider_id, team_id)
  );

drop policy if exists "Users with delete permission can remove repositories" on public.repositories;
create policy "Users with delete permission can remove repositories" on public.repositories
  for delete to authenticated
  using (
    team_id in (select private.team_ids_where('repositories', 'delete'))
    or (creator_id = (select auth.uid())
        and team_id in (select private.team_ids_where('repositories', 'delete_own')))
  );

-- cicd_providers
drop policy if exists "Members can view their teams' CI/CD providers" on public.cicd_providers;
create policy "Members can view their teams' CI/CD providers" on public.cicd_providers
  for select to authenticated
  using (team_id in (select private.my_team_ids()));

drop policy if exists "Users with insert permission can add CI/CD providers" on public.cicd_providers;
create policy "Users with insert permission can add CI/CD providers" on public.cicd_providers
  for insert to authenticated
  with check (
    team_id in (select private.team_ids_where('cicd_providers', 'insert'))
    and creator_id = (select auth.uid())
  );

drop policy if exists "Users with update permission can modify CI/CD providers" on public.cicd_providers;
create policy "Users with update permission can modify CI/CD providers" on public.cicd_providers
  for update to authenticated
  using (
    team_id in (select private.team_ids_where('cicd_providers', 'update'))
    or (creator_id = (select auth.uid())
        and team_id in (select private.team_ids_where('cicd_providers', 'update_own')))
  )
  with check (
    team_id in (select private.team_ids_where('cicd_providers', 'update'))
    or (creator_id = (select auth.uid())
        and team_id in (select private.team_ids_where('cicd_providers', 'update_own')))
  );

drop policy if exists "Users with delete permission can remove CI/CD providers" on public.cicd_providers;
create policy "Users with delete permission can remove CI/CD providers" on public.cicd_providers
  for delete to authenticated
  using (
    team_id in (select private.team_ids_where('cicd_providers', 'delete'))
    or (creator_id = (select auth.uid())
        and team_id in (select private.team_ids_where('cicd_providers', 'delete_own')))
  );

-- cicd_jobs (resource_type 'cicd_jobs'; the provider must be one the caller can see)
drop policy if exists "Members can view their teams' CI/CD jobs" on public.cicd_jobs;
create policy "Members can view their teams' CI/CD jobs" on public.cicd_jobs
  for select to authenticated
  using (team_id in (select private.my_team_ids()));

drop policy if exists "Users with insert permission can add CI/CD jobs" on public.cicd_jobs;
create policy "Users with insert permission can add CI/CD jobs" on public.cicd_jobs
  for insert to authenticated
  with check (
    team_id in (select private.team_ids_where('cicd_jobs', 'insert'))
    and creator_id = (select auth.uid())
    and (provider_id is null or provider_id in (select c.id from public.cicd_providers c))
  );

drop policy if exists "Users with update permission can modify CI/CD jobs" on public.cicd_jobs;
create policy "Users with update permission can modify CI/CD jobs" on public.cicd_jobs
  for update to authenticated
  using (
    team_id in (select private.team_ids_where('cicd_jobs', 'update'))
    or (creator_id = (select auth.uid())
        and team_id in (select private.team_ids_where('cicd_jobs', 'update_own')))
  )
  with check (
    (team_id in (select private.team_ids_where('cicd_jobs', 'update'))
     or (creator_id = (select auth.uid())
         and team_id in (select private.team_ids_where('cicd_jobs', 'update_own'))))
    and (provider_id is null or provider_id in (select c.id from public.cicd_providers c))
  );

drop policy if exists "Users with delete permission can remove CI/CD jobs" on public.cicd_jobs;
create policy "Users with delete permission can remove CI/CD jobs" on public.cicd_jobs
  for delete to authenticated
  using (
    team_id in (select private.team_ids_where('cicd_jobs', 'delete'))
    or (creator_id = (select auth.uid())
        and team_id in (select private.team_ids_where('cicd_jobs', 'delete_own')))
  );

-- deployments (repository and CI/CD provider must be visible to the caller;
-- host_ids are checked against the team by the check_team_scoped_row trigger)
drop policy if exists "Members can view their teams' deployments" on public.deployments;
create policy "Members can view their teams' deployments" on public.deployments
  for select to authenticated
  using (team_id in (select private.my_team_ids()));

drop policy if exists "Users with insert permission can add deployments" on public.deployments;
create policy "Users with insert permission can add deployments" on public.deployments
  for insert to authenticated
  with check (
    team_id in (select private.team_ids_where('deployments', 'insert'))
    and creator_id = (select auth.uid())
    and (user_id is null or user_id = (select auth.uid()))
    and (repository_id is null or repository_id in (select r.id from public.repositories r))
    and (cicd_provider_id is null or cicd_provider_id in (select c.id from public.cicd_providers c))
  );

drop policy if exists "Users with update permission can modify deployments" on public.deployments;
create policy "Users with update permission can modify deployments" on public.deployments
  for update to authenticated
  using (
    team_id in (select private.team_ids_where('deployments', 'update'))
    or (creator_id = (select auth.uid())
        and team_id in (select private.team_ids_where('deployments', 'update_own')))
  )
  with check (
    (team_id in (select private.team_ids_where('deployments', 'update'))
     or (creator_id = (select auth.uid())
         and team_id in (select private.team_ids_where('deployments', 'update_own'))))
    and (repository_id is null or repository_id in (select r.id from public.repositories r))
    and (cicd_provider_id is null or cicd_provider_id in (select c.id from public.cicd_providers c))
  );

-- The document's "Can execute deployments with execute permission": the
-- enforce_execute_columns trigger limits such updates to status/started_at/completed_at.
drop policy if exists "Can execute deployments with execute permission" on public.deployments;
create policy "Can execute deployments with execute permission" on public.deployments
  for update to authenticated
  using (team_id in (select private.team_ids_where('deployments', 'execute')))
  with check (team_id in (select private.team_ids_where('deployments', 'execute')));

drop policy if exists "Users with delete permission can remove deployments" on public.deployments;
create policy "Users with delete permission can remove deployments" on public.deployments
  for delete to authenticated
  using (
    team_id in (select private.team_ids_where('deployments', 'delete'))
    or (creator_id = (select auth.uid())
        and team_id in (select private.team_ids_where('deployments', 'delete_own')))
  );

-- deployment_cicd_mappings: follow the deployment. Reading: the deployment is
-- visible (RLS of deployments applies inside the subquery). Writing: the caller
-- may update or execute the deployment, and can see the CI/CD job.
drop policy if exists "Members can view their deployments' CI/CD mappings" on public.deployment_cicd_mappings;
create policy "Members can view their deployments' CI/CD mappings" on public.deployment_cicd_mappings
  for select to authenticated
  using (deployment_id in (select d.id from public.deployments d));

drop policy if exists "Deployment writers can add CI/CD mappings" on public.deployment_cicd_mappings;
create policy "Deployment writers can add CI/CD mappings" on public.deployment_cicd_mappings
  for insert to authenticated
  with check (
    exists (
      select 1 from public.deployments d
      where d.id = deployment_id
        and (d.team_id in (select private.team_ids_where('deployments', 'update'))
             or d.team_id in (select private.team_ids_where('deployments', 'execute'))
             or (d.creator_id = (select auth.uid())
                 and d.team_id in (select private.team_ids_where('deployments', 'update_own'))))
    )
    and (cicd_job_id is null or cicd_job_id in (select j.id from public.cicd_jobs j))
  );

drop policy if exists "Deployment writers can update CI/CD mappings" on public.deployment_cicd_mappings;
create policy "Deployment writers can update CI/CD mappings" on public.deployment_cicd_mappings
  for update to authenticated
  using (
    exists (
      select 1 from public.deployments d
      where d.id = deployment_id
        and (d.team_id in (select private.team_ids_where('deployments', 'update'))
             or d.team_id in (select private.team_ids_where('deployments', 'execute'))
             or (d.creator_id = (select auth.uid())
                 and d.team_id in (select private.team_ids_where('deployments', 'update_own'))))
    )
  )
  with check (
    exists (
      select 1 from public.deployments d
      where d.id = deployment_id
        and (d.team_id in (select private.team_ids_where('deployments', 'update'))
             or d.team_id in (select private.team_ids_where('deployments', 'execute'))
             or (d.creator_id = (select auth.uid())
                 and d.team_id in (select private.team_ids_where('deployments', 'update_own'))))
    )
    and (cicd_job_id is null or cicd_job_id in (select j.id from public.cicd_jobs j))
  );

drop policy if exists "Deployment writers can remove CI/CD mappings" on public.deployment_cicd_mappings;
create policy "Deployment writers can remove CI/CD mappings" on public.deployment_cicd_mappings
  for delete to authenticated
  using (
    exists (
      select 1 from public.deployments d
      where d.id = deployment_id
        and (d.team_id in (select private.team_ids_where('deployments', 'update'))
             or (d.creator_id = (select auth.uid())
                 and d.team_id in (select private.team_ids_where('deployments', 'update_own'))))
    )
  );

-- ---------------------------------------------------------------------------
-- Git providers: owned by a profile; members of a team that has a repository on
-- the provider may see it (never its tokens).
-- ---------------------------------------------------------------------------
drop policy if exists "Owners and teams using it can view a git provider" on public.git_providers;
create policy "Owners and teams using it can view a git provider" on public.git_providers
  for select to authenticated
  using (
    profile_id = (select auth.uid())
    or id in (select private.team_git_provider_ids())
  );

drop policy if exists "Users can add their own git providers" on public.git_providers;
create policy "Users can add their own git providers" on public.git_providers
  for insert to authenticated
  with check (profile_id = (select auth.uid()));

drop policy if exists "Owners can update their git providers" on public.git_providers;
create policy "Owners can update their git providers" on public.git_providers
  for update to authenticated
  using (profile_id = (select auth.uid()))
  with check (profile_id = (select auth.uid()));

drop policy if exists "Owners can delete their git providers" on public.git_providers;
create policy "Owners can delete their git providers" on public.git_providers
  for delete to authenticated
  using (profile_id = (select auth.uid()));

-- ---------------------------------------------------------------------------
-- Repository pins: personal, and only for repositories the caller can see.
-- ---------------------------------------------------------------------------
drop policy if exists "Users can view their own pins" on public.profile_repository_pins;
create policy "Users can view their own pins" on public.profile_repository_pins
  for select to authenticated
  using (
    profile_id = (select auth.uid())
    and repository_id in (select r.id from public.repositories r)
  );

drop policy if exists "Users can pin visible repositories" on public.profile_repository_pins;
create policy "Users can pin visible repositories" on public.profile_repository_pins
  for insert to authenticated
  with check (
    profile_id = (select auth.uid())
    and repository_id in (select r.id from public.repositories r)
  );

drop policy if exists "Users can unpin their repositories" on public.profile_repository_pins;
create policy "Users can unpin their repositories" on public.profile_repository_pins
  for delete to authenticated
  using (profile_id = (select auth.uid()));
