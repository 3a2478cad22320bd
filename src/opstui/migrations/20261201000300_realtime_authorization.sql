-- Realtime Authorization: who may join which private Realtime channel.
--
-- A channel joined with `config.private: true` is authorized by the RLS
-- policies on realtime.messages (Supabase Realtime Authorization): SELECT
-- decides who receives its broadcasts and presence, INSERT who sends them,
-- with realtime.topic() returning the channel's topic. Without a matching
-- policy the join is refused.
--
-- Team topics are `team:<team uuid>` and `team:<team uuid>:<anything>`, the uuid
-- in its canonical lowercase form. Only members of that team may use them.
-- Public channels are not affected.
--
-- realtime.messages, its grants and realtime.topic() belong to Supabase (they
-- exist on every project): this migration only adds policies, and grants
-- nothing. authenticated already holds SELECT/INSERT on realtime.messages and
-- EXECUTE on private.my_team_ids(); anon matches no policy, so anon is refused.

drop policy if exists "Team members receive on their team's topics" on realtime.messages;
create policy "Team members receive on their team's topics" on realtime.messages
  for select to authenticated
  using (
    realtime.messages.extension in ('broadcast', 'presence')
    and split_part((select realtime.topic()), ':', 1) = 'team'
    and split_part((select realtime.topic()), ':', 2)
      in (select team_id::text from private.my_team_ids() as team_id)
  );

drop policy if exists "Team members send on their team's topics" on realtime.messages;
create policy "Team members send on their team's topics" on realtime.messages
  for insert to authenticated
  with check (
    realtime.messages.extension in ('broadcast', 'presence')
    and split_part((select realtime.topic()), ':', 1) = 'team'
    and split_part((select realtime.topic()), ':', 2)
      in (select team_id::text from private.my_team_ids() as team_id)
  );
