-- Supabase-owned objects for the embedded backend ONLY.
--
-- On a real Supabase project all of this already exists (created by the
-- platform, GoTrue and the CLI); the app's migrations in
-- src/opstui/migrations/ must never create any of it. This file mirrors
-- Supabase's own definitions closely enough that those migrations apply
-- unchanged here. It is idempotent: re-running it on an existing database
-- changes nothing.

-- ---------------------------------------------------------------------------
-- Roles (cluster-wide), with the attributes they have on Supabase today.
--
-- The cluster's superuser is supabase_admin (as on Supabase); this file runs as
-- it. `postgres` is NOT a superuser there: it applies the app's migrations with
-- CREATEROLE, CREATEDB, REPLICATION and BYPASSRLS only, so a migration that
-- needs more fails here as it would on Supabase.
-- ---------------------------------------------------------------------------
do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'postgres') then
    create role postgres login;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'anon') then
    create role anon nologin;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'authenticated') then
    create role authenticated nologin;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'service_role') then
    create role service_role nologin bypassrls;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'authenticator') then
    create role authenticator login noinherit;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'supabase_auth_admin') then
    create role supabase_auth_admin login noinherit createrole;
  end if;
end
$$;
alter role postgres nosuperuser login inherit createrole createdb replication bypassrls;
alter role anon nologin inherit nobypassrls;
alter role authenticated nologin inherit nobypassrls;
alter role service_role nologin inherit bypassrls;
alter role authenticator login noinherit nobypassrls;

-- Supabase's timeouts. The gateway's connections log in as authenticator, so
-- every API request runs under its 8 s limits; a session running as anon or
-- authenticated gets theirs (PostgREST also applies the impersonated role's
-- settings per request, which the gateway does not yet).
alter role anon set statement_timeout = '3s';
alter role authenticated set statement_timeout = '8s';
alter role authenticator set statement_timeout = '8s';
alter role authenticator set lock_timeout = '8s';

-- The gateway connects as authenticator and, like PostgREST, switches role per
-- transaction with set_config('role', <jwt role>, true). postgres may act as
-- the API roles too (Supabase grants them to it).
grant anon, authenticated, service_role to authenticator;
grant anon, authenticated, service_role to postgres;

-- postgres creates the app's schemas in this database (the database itself
-- stays the superuser's).
do $$
begin
  execute format('grant create, temporary on database %I to postgres', current_database());
end
$$;

-- ---------------------------------------------------------------------------
-- auth schema (GoTrue's tables, reduced to the columns the app uses).
-- ---------------------------------------------------------------------------
create schema if not exists auth;

create table if not exists auth.users (
  instance_id uuid,
  id uuid not null primary key,
  aud varchar(255),
  role varchar(255),
  email varchar(255),
  encrypted_password varchar(255),
  email_confirmed_at timestamptz,
  invited_at timestamptz,
  confirmation_token varchar(255),
  recovery_token varchar(255),
  last_sign_in_at timestamptz,
  raw_app_meta_data jsonb,
  raw_user_meta_data jsonb,
  is_super_admin boolean,
  created_at timestamptz,
  updated_at timestamptz,
  phone text unique default null,
  phone_confirmed_at timestamptz,
  confirmed_at timestamptz generated always as (least(email_confirmed_at, phone_confirmed_at)) stored,
  banned_until timestamptz,
  deleted_at timestamptz,
  is_anonymous boolean not null default false,
  is_sso_user boolean not null default false
);
create unique index if not exists users_email_lower_key on auth.users (lower(email));
create index if not exists users_instance_id_idx on auth.users (instance_id);

create table if not exists auth.sessions (
  id uuid not null primary key,
  user_id uuid not null references auth.users (id) on delete cascade,
  created_at timestamptz,
  updated_at timestamptz,
  not_after timestamptz,
  user_agent text,
  ip inet
);
create index if not exists sessions_user_id_idx on auth.sessions (user_id);

create table if not exists auth.refresh_tokens (
  instance_id uuid,
  id bigserial primary key,
  token varchar(255) unique,
  user_id varchar(255),
  revoked boolean,
  created_at timestamptz,
  updated_at timestamptz,
  parent varchar(255),
  session_id uuid references auth.sessions (id) on delete cascade
);
create index if not exists refresh_tokens_session_id_idx on auth.refresh_tokens (session_id);
create index if not exists refresh_tokens_parent_idx on auth.refresh_tokens (parent);
create index if not exists refresh_tokens_user_id_idx on auth.refresh_tokens (user_id);

-- Supabase's definitions (supabase/auth migrations 20220224000811 and 20220531120530):
-- the legacy per-claim setting first, then the whole-payload request.jwt.claims.
create or replace function auth.uid() returns uuid
language sql stable
as $$
  select
    coalesce(
      nullif(current_setting('request.jwt.claim.sub', true), ''),
      (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
    )::uuid
$$;

create or replace function auth.role() returns text
language sql stable
as $$
  select
    coalesce(
      nullif(current_setting('request.jwt.claim.role', true), ''),
      (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
    )::text
$$;

create or replace function auth.email() returns text
language sql stable
as $$
  select
    coalesce(
      nullif(current_setting('request.jwt.claim.email', true), ''),
      (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'email')
    )::text
$$;

create or replace function auth.jwt() returns jsonb
language sql stable
as $$
  select
    coalesce(
      nullif(current_setting('request.jwt.claim', true), ''),
      nullif(current_setting('request.jwt.claims', true), '')
    )::jsonb
$$;

-- The auth schema belongs to supabase_auth_admin (GoTrue's role), as on Supabase.
alter schema auth owner to supabase_auth_admin;
alter table auth.users owner to supabase_auth_admin;
alter table auth.sessions owner to supabase_auth_admin;
alter table auth.refresh_tokens owner to supabase_auth_admin;
alter function auth.uid() owner to supabase_auth_admin;
alter function auth.role() owner to supabase_auth_admin;
alter function auth.email() owner to supabase_auth_admin;
alter function auth.jwt() owner to supabase_auth_admin;

-- Grants as on Supabase: the schema and the helper functions are usable, the
-- tables themselves are not readable by API roles. postgres may read them,
-- reference them in foreign keys and put triggers on them (what Supabase still
-- allows it since April 2025), nothing more.
grant usage on schema auth to anon, authenticated, service_role, postgres;
grant execute on function auth.uid(), auth.role(), auth.email(), auth.jwt()
  to anon, authenticated, service_role, postgres;
revoke all on all tables in schema auth from public, anon, authenticated, service_role, postgres;
revoke all on all sequences in schema auth from public, anon, authenticated, service_role, postgres;
grant select, references, trigger on auth.users, auth.sessions, auth.refresh_tokens to postgres;

-- ---------------------------------------------------------------------------
-- public schema: usable by the API roles, but since 2026-10-30 Supabase grants
-- them nothing on new objects. No default privileges here: every migration
-- grants what each role needs on what it creates.
-- ---------------------------------------------------------------------------
grant usage on schema public to anon, authenticated, service_role;
grant usage, create on schema public to postgres;

-- ---------------------------------------------------------------------------
-- Realtime publication (Supabase creates it, empty, on every project).
-- ---------------------------------------------------------------------------
do $$
begin
  if not exists (select 1 from pg_publication where pubname = 'supabase_realtime') then
    create publication supabase_realtime;
  end if;
end
$$;
-- postgres owns it, so migrations can add their tables.
alter publication supabase_realtime owner to postgres;

-- ---------------------------------------------------------------------------
-- Supabase CLI migration bookkeeping (+ checksum and applied_at).
-- ---------------------------------------------------------------------------
create schema if not exists supabase_migrations;
create table if not exists supabase_migrations.schema_migrations (
  version text not null primary key,
  statements text[],
  name text
);
alter table supabase_migrations.schema_migrations add column if not exists checksum text;
alter table supabase_migrations.schema_migrations
  add column if not exists applied_at timestamptz default now();
-- The CLI creates these as postgres, which records each migration it applies.
alter schema supabase_migrations owner to postgres;
alter table supabase_migrations.schema_migrations owner to postgres;
revoke all on schema supabase_migrations from public, anon, authenticated;

-- ===========================================================================
-- Realtime (Supabase Realtime's own objects). Kept at the end of this file.
--
-- What Realtime Authorization needs, as Supabase Realtime's tenant migrations
-- define it: the realtime schema, realtime.messages (RLS on, no policies: the
-- app's migrations add them) and realtime.topic(). Supabase partitions
-- realtime.messages by day and stores broadcasts there; the embedded gateway
-- only evaluates policies against it (every probe is rolled back), so here it
-- is one plain table with the same columns, defaults, RLS and grants.
-- ===========================================================================
do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'supabase_realtime_admin') then
    create role supabase_realtime_admin nologin noinherit noreplication;
  end if;
end
$$;

create schema if not exists realtime;
grant usage on schema realtime to anon, authenticated, service_role;
grant usage on schema realtime to postgres with grant option;
grant all on schema realtime to supabase_realtime_admin with grant option;

create table if not exists realtime.messages (
  topic text not null,
  extension text not null,
  payload jsonb,
  event text,
  private boolean default false,
  updated_at timestamp without time zone not null default now(),
  inserted_at timestamp without time zone not null default now(),
  id uuid not null default gen_random_uuid(),
  primary key (id, inserted_at)
);
alter table realtime.messages enable row level security;
alter table realtime.messages owner to supabase_realtime_admin;

create or replace function realtime.topic() returns text
language sql stable
as $$
select nullif(current_setting('realtime.topic', true), '')::text;
$$;
alter function realtime.topic() owner to supabase_realtime_admin;

grant select, insert, update on realtime.messages to anon, authenticated, service_role;
grant all on realtime.messages to postgres;
grant all on function realtime.topic() to postgres;
-- On Supabase, supautils lets postgres create policies on realtime.messages;
-- here membership of the owning role does the same.
grant supabase_realtime_admin to postgres with inherit true;
