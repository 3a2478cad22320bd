-- Many hosts' results of one run in one call: the runner sends its host updates in
-- batches (every ~200 ms) instead of two update_run_host calls per host, each taking
-- the run row's lock and recounting its progress. Same rules as update_run_host: lease
-- holder only; the run's counters are recomputed once per call.
--
-- p_hosts: a JSON array, applied in order, of
--   {"host_id": text, "status": text, "exit_code": int|null, "error": text|null,
--    "ago": seconds|null, "started_ago": seconds|null}
-- "ago" is how long before the call the change happened (the runner batches, so the
-- times stay those of the events, measured on the database's clock: no clock skew);
-- "started_ago" gives a host that finished before its `running` was sent its start.
-- Both are clamped to 0..3600 seconds.

create or replace function public.update_run_hosts(p_run_id uuid, p_hosts jsonb) returns void
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_run public.deployment_runs;
  v_item jsonb;
  v_status text;
  v_at timestamptz;
  v_started timestamptz;
begin
  if p_hosts is null or jsonb_typeof(p_hosts) <> 'array' then
    raise exception using
      errcode = '22023',
      message = 'hosts must be a JSON array of {"host_id", "status", "exit_code", "error"} objects';
  end if;
  v_run := private.held_run(p_run_id);
  for v_item in select value from jsonb_array_elements(p_hosts) loop
    v_status := case when jsonb_typeof(v_item) = 'object' then v_item ->> 'status' end;
    if v_status is null or v_status not in
       ('pending', 'running', 'succeeded', 'failed', 'unreachable', 'skipped', 'cancelled') then
      raise exception using
        errcode = '22023',
        message = format('invalid host status %L: use pending, running, succeeded, failed, unreachable, '
                         'skipped or cancelled', v_status);
    end if;
    v_at := now() - make_interval(secs => least(greatest(
              coalesce((v_item ->> 'ago')::double precision, 0), 0), 3600));
    v_started := case when v_item ? 'started_ago' and v_item ->> 'started_ago' is not null
                      then now() - make_interval(secs => least(greatest(
                             (v_item ->> 'started_ago')::double precision, 0), 3600)) end;
    update public.deployment_run_hosts h
       set status = v_status,
           exit_code = coalesce((v_item ->> 'exit_code')::integer, h.exit_code),
           error = case when v_status in ('pending', 'running', 'succeeded') then null
                        else private.one_line(v_item ->> 'error') end,
           started_at = case when v_status = 'running' then coalesce(h.started_at, v_at)
                             when v_status = 'pending' then null
                             else coalesce(h.started_at, v_started) end,
           finished_at = case when v_status in ('pending', 'running') then null else v_at end
     where h.run_id = p_run_id and h.host_id = v_item ->> 'host_id';
    if not found then
      raise exception using
        errcode = 'P0001',
        message = format('host %s is not a target of run #%s', v_item ->> 'host_id', v_run.number);
    end if;
  end loop;
  update public.deployment_runs r
     set hosts_done = x.done, hosts_failed = x.failed
    from (select count(*) filter (where h.status not in ('pending', 'running')) as done,
                 count(*) filter (where h.status in ('failed', 'unreachable')) as failed
            from public.deployment_run_hosts h where h.run_id = p_run_id) x
   where r.id = p_run_id and (r.hosts_done, r.hosts_failed) is distinct from (x.done, x.failed);
end
$$;

revoke execute on function public.update_run_hosts(uuid, jsonb) from public, anon;
grant execute on function public.update_run_hosts(uuid, jsonb) to authenticated, service_role;
