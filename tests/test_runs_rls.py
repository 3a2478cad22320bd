"""Deployment runs through the gateway with real supabase-py clients: who may launch,
cancel, claim and write; what each tenant sees; races between runners.

The module builds its own tenant (one team, two runner users, a viewer, hosts,
deployments) as superuser and removes it afterwards, so its runs never meet the
demo's or another test's, and no demo user may claim them.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import bcrypt
import psycopg
import pytest
from postgrest.exceptions import APIError
from supabase import acreate_client

from tests.conftest import demo_user

PASSWORD = "runs-test-password"
WAIT = 10


@dataclass
class Estate:
    db: str
    tenant: str
    team: str
    users: dict[str, str] = field(default_factory=dict)  # email -> id
    hosts: list[str] = field(default_factory=list)
    repo: str = ""


def _x(db: str, sql: str, params: tuple | list = ()) -> list[tuple]:
    with psycopg.connect(db, autocommit=True) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


def _perms(*ops: str) -> dict[str, bool]:
    return {f"can_{op}": op in ops for op in ("select", "insert", "update", "delete", "execute")}


@pytest.fixture(scope="module")
def estate(backend_info):
    db = backend_info.db_url
    tag = uuid.uuid4().hex[:8]
    tenant = f"runs-{tag}"
    _x(db, "insert into tenants (id, name, subscription_tier_id) values (%s, %s, 'enterprise')",
       (tenant, f"Runs {tag}"))  # fmt: skip
    team = str(uuid.uuid4())
    _x(db, "insert into teams (id, name, tenant_id) values (%s, 'Runs', %s)", (team, tenant))
    e = Estate(db, tenant, team)
    pw = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    roles = {"runner1": "developer", "runner2": "developer", "watcher": "viewer"}
    for name, role in roles.items():
        uid = str(uuid.uuid4())
        email = f"{name}@{tenant}.test"
        meta = json.dumps({"tenant_id": tenant, "role": role, "full_name": name})
        _x(
            db,
            "insert into auth.users (instance_id, id, aud, role, email, encrypted_password,"
            " email_confirmed_at, raw_app_meta_data, raw_user_meta_data, created_at, updated_at)"
            " values ('00000000-0000-0000-0000-000000000000', %s, 'authenticated', 'authenticated',"
            " %s, %s, now(), %s, %s, now(), now())",
            (uid, email, pw, meta, meta),
        )
        _x(db, "insert into team_members (team_id, profile_id, role) values (%s, %s, %s)",
           (team, uid, role))  # fmt: skip
        ops = ("select",) if role == "viewer" else ("select", "insert", "update", "execute")
        for resource in ("deployments", "hosts", "repositories"):
            p = _perms(*ops)
            _x(
                db,
                "insert into permission_matrix (team_id, profile_id, resource_type, can_select,"
                " can_insert, can_update, can_delete, can_execute) values (%s, %s, %s, %s, %s, %s, %s, %s)",
                (team, uid, resource, *p.values()),
            )
        e.users[name] = uid
    for i in range(4):
        hid = str(uuid.uuid4())
        _x(db, "insert into hosts (id, name, type, ip, port, team_id) values (%s, %s, 'ssh', '127.0.0.1', 22, %s)",
           (hid, f"runs-host-{i}", team))  # fmt: skip
        e.hosts.append(hid)
    provider = str(uuid.uuid4())
    _x(db, "insert into git_providers (id, profile_id, type, name) values (%s, %s, 'gitea', 'local')",
       (provider, e.users["runner1"]))  # fmt: skip
    e.repo = str(uuid.uuid4())
    _x(
        db,
        "insert into repositories (id, provider_id, provider_type, name, url, default_branch, team_id)"
        " values (%s, %s, 'gitea', 'app', 'file:///tmp/app.git', 'main', %s)",
        (e.repo, provider, team),
    )
    yield e
    _x(db, "delete from tenants where id = %s", (tenant,))
    _x(db, "delete from auth.users where id = any(%s::uuid[])", (list(e.users.values()),))


def deployment(e: Estate, n_hosts: int = 2, **cols: Any) -> str:
    did = str(uuid.uuid4())
    values = {
        "id": did,
        "name": f"runs-{did[:8]}",
        "team_id": e.team,
        "repository_id": e.repo,
        "scripts_path": ["deploy.sh"],
        "host_ids": [uuid.UUID(h) for h in e.hosts[:n_hosts]],
        "environment_vars": json.dumps([{"key": "API_TOKEN", "value": "hunter2"}]),
        **cols,
    }
    _x(
        e.db,
        f"insert into deployments ({', '.join(values)}) values ({', '.join(['%s'] * len(values))})",  # noqa: S608
        list(values.values()),
    )
    return did


@pytest.fixture
async def client_for(backend_info):
    """Factory: a supabase-py AsyncClient signed in as one of the estate's users (or a demo user)."""
    clients = []

    async def _client(email: str):
        client = await acreate_client(backend_info.url, backend_info.anon_key)
        clients.append(client)
        demo = next((u for u in backend_info.users if u["email"] == email), None)
        password = demo["password"] if demo else PASSWORD
        await client.auth.sign_in_with_password({"email": email, "password": password})
        return client

    yield _client
    for client in clients:
        try:
            await client.realtime.close()
        except Exception:  # noqa: BLE001 - best-effort teardown
            pass


@pytest.fixture
async def runner1(client_for, estate):
    return await client_for(f"runner1@{estate.tenant}.test")


@pytest.fixture
async def runner2(client_for, estate):
    return await client_for(f"runner2@{estate.tenant}.test")


@pytest.fixture
async def watcher(client_for, estate):
    return await client_for(f"watcher@{estate.tenant}.test")


async def rpc(client, fn: str, **args: Any):
    return (await client.rpc(fn, args).execute()).data


async def refused(coro, code: str) -> str:
    with pytest.raises(APIError) as info:
        await coro
    assert info.value.code == code, info.value
    return info.value.message


async def claim(client, name: str = "runner-a", lease: int = 30) -> dict | None:
    rows = await rpc(client, "claim_deployment_run", p_runner_name=name, p_lease_seconds=lease)
    return rows[0] if rows else None


def run_row(e: Estate, run_id: str) -> dict:
    with psycopg.connect(e.db, autocommit=True) as conn:
        cur = conn.execute("select * from deployment_runs where id = %s", (run_id,))
        return dict(zip([d.name for d in cur.description], cur.fetchone(), strict=True))


def deployment_status(e: Estate, did: str) -> str:
    return _x(e.db, "select status from deployments where id = %s", (did,))[0][0]


# -- launching and cancelling --------------------------------------------------------------------


async def test_launch_refuses_while_one_is_going_and_a_viewer_cannot_launch_or_cancel(
    estate, runner1, watcher, client_for
):
    did = deployment(estate)
    msg = await refused(rpc(watcher, "launch_deployment", p_deployment_id=did), "42501")
    assert "requires can_execute on deployments" in msg
    run_id = await rpc(runner1, "launch_deployment", p_deployment_id=did)
    name = _x(estate.db, "select name from deployments where id = %s", (did,))[0][0]
    msg = await refused(rpc(runner1, "launch_deployment", p_deployment_id=did), "P0001")
    assert msg == f"deployment {name} already has run #1 queued; cancel it or wait"
    await refused(rpc(watcher, "cancel_deployment_run", p_run_id=run_id), "42501")
    await refused(rpc(runner1, "launch_deployment", p_deployment_id=did, p_trigger="cron"), "22023")
    assert run_row(estate, run_id)["status"] == "queued"
    await rpc(runner1, "cancel_deployment_run", p_run_id=run_id)
    assert run_row(estate, run_id)["status"] == "cancelled"
    assert deployment_status(estate, did) == "cancelled"


async def test_another_tenant_sees_no_run_host_or_log(
    estate, runner1, watcher, client_for, backend_info
):
    did = deployment(estate)
    run_id = await rpc(runner1, "launch_deployment", p_deployment_id=did)
    run = await claim(runner1)
    assert run["id"] == run_id
    await rpc(runner1, "append_run_log", p_run_id=run_id,
              p_chunks=[{"host_id": estate.hosts[0], "stream": "stdout", "text": "hello\n"}])  # fmt: skip
    tables = {
        "deployment_runs": "id",
        "deployment_run_hosts": "run_id",
        "deployment_run_logs": "run_id",
    }

    async def seen(client) -> dict[str, int]:
        out = {}
        for table, col in tables.items():
            out[table] = len((await client.table(table).select("*").eq(col, run_id).execute()).data)
        return out

    assert await seen(watcher) == {
        "deployment_runs": 1,
        "deployment_run_hosts": 2,
        "deployment_run_logs": 1,
    }
    for role in ("admin", "developer", "viewer"):  # acme: another tenant, its admin included
        other = await client_for(demo_user(backend_info, role)["email"])
        assert await seen(other) == dict.fromkeys(tables, 0), role
        msg = await refused(rpc(other, "cancel_deployment_run", p_run_id=run_id), "42501")
        assert "requires can_execute" in msg
        await refused(
            rpc(
                other,
                "append_run_log",
                p_run_id=run_id,
                p_chunks=[{"stream": "stdout", "text": "x"}],
            ),
            "42501",
        )
    await rpc(runner1, "finish_deployment_run", p_run_id=run_id, p_status="succeeded")


async def test_a_user_cannot_forge_a_run_or_its_log(estate, runner1):
    did = deployment(estate, 1)
    run_id = await rpc(runner1, "launch_deployment", p_deployment_id=did)
    team = estate.team
    attempts = [
        runner1.table("deployment_runs").update({"status": "succeeded"}).eq("id", run_id),
        runner1.table("deployment_runs").delete().eq("id", run_id),
        runner1.table("deployment_runs").insert(
            {"deployment_id": did, "team_id": team, "tenant_id": estate.tenant, "number": 9,
             "trigger": "manual", "status": "succeeded", "spec": {}}),
        runner1.table("deployment_run_logs").insert(
            {"run_id": run_id, "seq": 1, "stream": "stdout", "text": "forged", "team_id": team}),
        runner1.table("deployment_run_hosts").insert(
            {"run_id": run_id, "host_id": estate.hosts[0], "status": "succeeded", "team_id": team}),
    ]  # fmt: skip
    attempts.append(runner1.table("deployments").update({"status": "success"}).eq("id", did))
    for attempt in attempts:
        await refused(attempt.execute(), "42501")
    assert deployment_status(estate, did) == "pending"
    # The holder of another run's lease cannot write this one either (it is not claimed at all).
    msg = await refused(
        rpc(runner1, "update_run_host", p_run_id=run_id, p_host_id=estate.hosts[0],
            p_status="succeeded", p_exit_code=0, p_error=None),
        "42501",
    )  # fmt: skip
    assert "is not held by this runner" in msg
    row = run_row(estate, run_id)
    assert row["status"] == "queued" and row["number"] == 1
    assert _x(
        estate.db, "select count(*) from deployment_run_logs where run_id = %s", (run_id,)
    ) == [(0,)]
    await rpc(runner1, "cancel_deployment_run", p_run_id=run_id)


# -- runners ------------------------------------------------------------------------------------


async def test_concurrent_claims_from_two_runners_never_share_a_run(estate, runner1, runner2):
    dids = [deployment(estate, 1) for _ in range(6)]
    runs = [await rpc(runner1, "launch_deployment", p_deployment_id=d) for d in dids]
    calls = [claim(c, f"r{i}") for i in range(8) for c in (runner1, runner2)]
    got = [r for r in await asyncio.gather(*calls) if r is not None]
    assert sorted(r["id"] for r in got) == sorted(runs)
    holders = {r["id"]: r["runner_id"] for r in got}
    assert set(holders.values()) <= set(estate.users.values())
    # Each run is driven only by the runner that holds it.
    for r in got:
        holder = runner1 if r["runner_id"] == estate.users["runner1"] else runner2
        other = runner2 if holder is runner1 else runner1
        msg = await refused(
            rpc(other, "append_run_log", p_run_id=r["id"],
                p_chunks=[{"host_id": None, "stream": "stdout", "text": "not mine"}]),
            "42501",
        )  # fmt: skip
        assert "is not held by this runner" in msg
        await refused(
            rpc(other, "update_run_host", p_run_id=r["id"], p_host_id=estate.hosts[0],
                p_status="failed", p_exit_code=1, p_error="x"),
            "42501",
        )  # fmt: skip
        await rpc(holder, "finish_deployment_run", p_run_id=r["id"], p_status="succeeded")
    assert _x(
        estate.db,
        "select count(*) from deployment_run_logs where run_id = any(%s::uuid[])",
        (runs,),
    ) == [(0,)]


async def test_log_seq_is_strictly_increasing_under_concurrent_appends(estate, runner1, watcher):
    did = deployment(estate, 2)
    run_id = await rpc(runner1, "launch_deployment", p_deployment_id=did)
    await claim(runner1)
    hosts = estate.hosts[:2]
    results = await asyncio.gather(*(
        rpc(runner1, "append_run_log", p_run_id=run_id,
            p_chunks=[{"host_id": hosts[i % 2], "stream": "stdout", "text": f"{i}-a\n"},
                      {"host_id": hosts[i % 2], "stream": "stderr", "text": f"{i}-b\n"}])
        for i in range(10)
    ))  # fmt: skip
    assert sorted(results) == list(range(2, 21, 2))  # each call got its own two seqs
    rows = (
        await watcher.table("deployment_run_logs").select("seq,text,host_id,stream")
        .eq("run_id", run_id).order("seq").execute()
    ).data  # fmt: skip
    assert [r["seq"] for r in rows] == list(range(1, 21))
    for a, b in zip(rows[::2], rows[1::2], strict=True):  # a call's chunks stay together, in order
        assert a["text"].split("-")[0] == b["text"].split("-")[0]
        assert (a["stream"], b["stream"]) == ("stdout", "stderr")
    await rpc(runner1, "finish_deployment_run", p_run_id=run_id, p_status="succeeded")


async def test_lease_expiry_makes_the_run_lost_with_the_reason(estate, runner1, runner2):
    did = deployment(estate, 2)
    run_id = await rpc(runner1, "launch_deployment", p_deployment_id=did)
    await claim(runner1, "doomed-runner", lease=5)
    await rpc(runner1, "update_run_host", p_run_id=run_id, p_host_id=estate.hosts[0],
              p_status="running", p_exit_code=None, p_error=None)  # fmt: skip
    assert await rpc(runner2, "expire_deployment_run_leases") == 0
    # The runner "dies": its lease lapses (moved into the past rather than waiting 5 s).
    _x(estate.db, "update deployment_runs set lease_expires_at = now() - interval '1 second' where id = %s",
       (run_id,))  # fmt: skip
    assert await rpc(runner2, "expire_deployment_run_leases") == 1
    row = run_row(estate, run_id)
    assert row["status"] == "lost"
    assert row["error"].startswith("runner doomed-runner stopped heartbeating at ")
    assert row["error"].endswith("; its lease expired")
    assert deployment_status(estate, did) == "failed"
    hosts = dict(
        _x(
            estate.db,
            "select host_id, status from deployment_run_hosts where run_id = %s",
            (run_id,),
        )
    )
    assert hosts == {estate.hosts[0]: "cancelled", estate.hosts[1]: "skipped"}
    # Never retried silently; the dead runner can no longer write.
    assert await claim(runner2) is None
    assert _x(
        estate.db, "select count(*) from deployment_runs where deployment_id = %s", (did,)
    ) == [(1,)]
    msg = await refused(rpc(runner1, "heartbeat_deployment_run", p_run_id=run_id), "42501")
    assert "(it is lost)" in msg
    retry = await rpc(runner1, "retry_deployment_run", p_run_id=run_id)
    assert run_row(estate, retry)["trigger"] == "retry" and run_row(estate, retry)[
        "retry_of"
    ] == uuid.UUID(run_id)
    await rpc(runner1, "cancel_deployment_run", p_run_id=retry)


# -- schedules ------------------------------------------------------------------------------------


async def test_a_scheduled_tick_fires_once_and_repeat_count_is_honoured(estate, runner1, runner2):
    did = deployment(estate, 1, schedule_type="cron", cron_expression="*/5 * * * *", repeat_count=2)
    ticks = ["2026-12-01T10:00:00+00:00", "2026-12-01T10:05:00+00:00", "2026-12-01T10:10:00+00:00"]
    fired = []
    for tick in ticks:
        got = await asyncio.gather(*(
            rpc(c, "queue_scheduled_run", p_deployment_id=did, p_tick=tick)
            for c in (runner1, runner2, runner1, runner2)
        ))  # fmt: skip
        queued = [g for g in got if g is not None]
        fired.append(len(queued))
        if queued:
            run = await claim(runner2)
            assert run["id"] == queued[0] and run["trigger"] == "schedule"
            await rpc(runner2, "finish_deployment_run", p_run_id=run["id"], p_status="succeeded")
    assert fired == [1, 1, 0]  # once per tick; repeat_count 2 stops the third
    rows = _x(estate.db, "select number, scheduled_for from deployment_runs where deployment_id = %s order by 1",
              (did,))  # fmt: skip
    assert [r[0] for r in rows] == [1, 2]


# -- the deployment follows its runs; the spec does not follow the deployment --------------------------


async def test_deployment_status_follows_the_latest_run_and_edits_do_not_change_its_spec(
    estate, runner1, watcher
):
    did = deployment(estate, 2, rollout_batch_size="1")
    run_id = await rpc(runner1, "launch_deployment", p_deployment_id=did)

    async def status() -> dict:
        return (
            await watcher.table("deployments").select("status,started_at,completed_at")
            .eq("id", did).single().execute()
        ).data  # fmt: skip

    assert (await status())["status"] == "pending"
    run = await claim(runner1)
    assert run["batch_count"] == 2 and run["spec"]["env_names"] == ["API_TOKEN"]
    assert "hunter2" not in json.dumps(run)
    now = await status()
    assert now["status"] == "in_progress" and now["started_at"] and now["completed_at"] is None
    await (
        runner1.table("deployments")
        .update({"scripts_path": ["other.sh"], "rollout_batch_size": "50%"})
        .eq("id", did).execute()
    )  # fmt: skip
    spec = (
        await watcher.table("deployment_runs").select("spec").eq("id", run_id).single().execute()
    ).data
    assert spec["spec"]["scripts"] == ["deploy.sh"] and spec["spec"]["rollout"]["batch_size"] == "1"
    for host in estate.hosts[:2]:
        await rpc(runner1, "update_run_host", p_run_id=run_id, p_host_id=host, p_status="succeeded",
                  p_exit_code=0, p_error=None)  # fmt: skip
    await rpc(runner1, "finish_deployment_run", p_run_id=run_id, p_status="succeeded")
    done = await status()
    finished = run_row(estate, run_id)
    assert done["status"] == "success" and done["completed_at"] is not None
    assert (finished["hosts_done"], finished["hosts_failed"]) == (2, 0)


async def subscribed(client, topic: str, *bindings: tuple[str, str, str | None]):
    """One channel with postgres_changes bindings (event, table, filter); a queue per binding."""
    states: asyncio.Queue = asyncio.Queue()
    channel = client.channel(topic)
    queues = []
    for event, table, flt in bindings:
        q: asyncio.Queue = asyncio.Queue()
        kwargs = {"filter": flt} if flt else {}
        channel.on_postgres_changes(event, q.put_nowait, schema="public", table=table, **kwargs)
        queues.append(q)
    await channel.subscribe(lambda state, err: states.put_nowait((state.value, err)))
    state, err = await asyncio.wait_for(states.get(), WAIT)
    assert state == "SUBSCRIBED", err
    return queues


async def test_a_team_member_receives_log_chunks_live_and_another_tenant_does_not(
    estate, runner1, watcher, client_for, backend_info
):
    did = deployment(estate, 1)
    (logs,) = await subscribed(
        watcher,
        f"runs-live-{did[:8]}",
        ("INSERT", "deployment_run_logs", f"team_id=eq.{estate.team}"),
    )
    outsider_user = demo_user(backend_info, "developer")
    outsider = await client_for(outsider_user["email"])
    outsider_team = outsider_user["team_ids"][0]
    stolen, marker = await subscribed(
        outsider,
        f"runs-outsider-{did[:8]}",
        ("*", "deployment_run_logs", None),
        ("INSERT", "hosts", f"team_id=eq.{outsider_team}"),
    )
    run_id = await rpc(runner1, "launch_deployment", p_deployment_id=did)
    await claim(runner1)
    await rpc(runner1, "append_run_log", p_run_id=run_id,
              p_chunks=[{"host_id": estate.hosts[0], "stream": "stdout", "text": "live line\n"}])  # fmt: skip
    record = (await asyncio.wait_for(logs.get(), WAIT))["data"]["record"]
    assert (record["run_id"], record["seq"], record["text"]) == (run_id, 1, "live line\n")
    # A change the outsider may see, committed after the log chunk: once it arrives,
    # the chunk would have arrived before it (changes go out in commit order).
    host = str(uuid.uuid4())
    _x(estate.db, "insert into hosts (id, name, type, ip, team_id) values (%s, 'rt-marker', 'ssh',"
       " '127.0.0.1', %s)", (host, outsider_team))  # fmt: skip
    try:
        seen = (await asyncio.wait_for(marker.get(), WAIT))["data"]["record"]
        assert seen["id"] == host
        assert stolen.empty()
    finally:
        _x(estate.db, "delete from hosts where id = %s", (host,))
    await rpc(runner1, "finish_deployment_run", p_run_id=run_id, p_status="succeeded")


async def test_anon_can_call_no_run_function(backend_info, estate):
    anon = await acreate_client(backend_info.url, backend_info.anon_key)
    for fn, args in (
        ("launch_deployment", {"p_deployment_id": str(uuid.uuid4())}),
        ("claim_deployment_run", {"p_runner_name": "anon"}),
        ("expire_deployment_run_leases", {}),
        ("append_run_log", {"p_run_id": str(uuid.uuid4()), "p_chunks": []}),
    ):
        await refused(anon.rpc(fn, args).execute(), "42501")
