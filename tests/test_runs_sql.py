"""Deployment runs at the SQL level: launch, claim, logs, finish, leases and
schedules, acting as users the way PostgREST does (role + request.jwt.claims).

Each test runs in one rolled-back transaction on a module-private database
seeded with the demo, switching identities inside it (`become`). The two
concurrency tests commit on their own connections and clean up after.
"""

from __future__ import annotations

import json
import threading
import uuid
from contextlib import contextmanager

import psycopg
import pytest
from psycopg import errors

from opstui.backend import demo
from tests.sql_fixtures import prepared_database, savepoint

CAP = 50 * 1024 * 1024


@pytest.fixture(scope="module")
def db(cluster):
    with prepared_database(cluster, "runs", demo=True) as conn:
        yield conn


@pytest.fixture(scope="module")
def users(db) -> dict[str, demo.DemoUser]:
    return {u.email: u for u in demo.demo_users(db)}


@pytest.fixture(scope="module")
def teams(db) -> dict[str, str]:
    return {name: str(tid) for tid, name in db.execute("select id, name from teams").fetchall()}


@contextmanager
def txn(db):
    with db.transaction(force_rollback=True):
        yield db


def become(db, user: demo.DemoUser | None) -> None:
    """Act as `user` (None: superuser) for the rest of the current transaction."""
    if user is None:
        db.execute("reset role")
        db.execute("select set_config('request.jwt.claims', '', true)")
        return
    claims = {
        "role": "authenticated",
        "aud": "authenticated",
        "sub": user.user_id,
        "email": user.email,
    }
    db.execute("set local role authenticated")
    db.execute("select set_config('request.jwt.claims', %s, true)", (json.dumps(claims),))


def one(db, sql, params=None):
    return db.execute(sql, params).fetchone()[0]


def row(db, sql, params=None) -> dict:
    cur = db.execute(sql, params)
    names = [d.name for d in cur.description]
    return dict(zip(names, cur.fetchone(), strict=True))


def make_deployment(db, team_id: str, n_hosts: int, **cols) -> str:
    """A deployment of `team_id` on its first `n_hosts` hosts (as superuser, in the open transaction)."""
    become(db, None)
    hosts = [
        r[0]
        for r in db.execute(
            "select id from hosts where team_id = %s order by name limit %s", (team_id, n_hosts)
        ).fetchall()
    ]
    assert len(hosts) == n_hosts
    repo = one(
        db, "select id from repositories where team_id = %s order by name limit 1", (team_id,)
    )
    did = str(uuid.uuid4())
    values = {
        "id": did,
        "name": f"runs-test-{did[:8]}",
        "team_id": team_id,
        "repository_id": repo,
        "status": "success",
        "scripts_path": ["scripts/deploy.sh", "scripts/check.sh"],
        "scripts_parameters": ["--env=qa", "--fast"],
        "host_ids": [uuid.UUID(h) for h in hosts],
        "environment_vars": json.dumps(
            [{"key": "TOKEN", "value": "s3cr3t-value"}, {"key": "MODE", "value": "x"}]
        ),
        **cols,
    }
    names = ", ".join(values)
    marks = ", ".join(["%s"] * len(values))
    db.execute(f"insert into deployments ({names}) values ({marks})", list(values.values()))  # noqa: S608
    return did


def launch(db, user, deployment_id) -> str:
    become(db, user)
    return str(one(db, "select launch_deployment(%s)", (deployment_id,)))


def claim(db, user, name="runner-a", lease=30) -> dict | None:
    become(db, user)
    cur = db.execute("select * from claim_deployment_run(%s, %s)", (name, lease))
    names = [d.name for d in cur.description]
    r = cur.fetchone()
    return dict(zip(names, r, strict=True)) if r else None


def append(db, run_id, chunks) -> int:
    return one(db, "select append_run_log(%s, %s)", (run_id, json.dumps(chunks)))


def refused(db, sql, params, exc=errors.InsufficientPrivilege) -> str:
    with pytest.raises(exc) as info, savepoint(db):
        db.execute(sql, params)
    return str(info.value)


def deployment_state(db, did) -> tuple:
    become(db, None)
    return db.execute(
        "select status, started_at, completed_at from deployments where id = %s", (did,)
    ).fetchone()


# -- launching -----------------------------------------------------------------------------------


def test_launch_snapshots_the_deployment_and_the_snapshot_survives_edits(db, users, teams):
    dev = users["dev@acme.test"]
    with txn(db):
        did = make_deployment(
            db, teams["Platform"], 3, rollout_batch_size="2", rollout_max_failures=1
        )
        job_ids = [
            r[0]
            for r in db.execute(
                "select id from cicd_jobs where team_id = %s limit 2", (teams["Platform"],)
            )
        ]
        for i, jid in enumerate(reversed(job_ids)):  # created_at order differs from job order
            db.execute(
                "insert into deployment_cicd_mappings (deployment_id, cicd_job_id, parameters, created_at)"
                " values (%s, %s, %s, now() - make_interval(mins => %s))",
                (did, jid, json.dumps({"STEP": i}), 10 - i),
            )
        expected_hosts = [
            str(h) for h in one(db, "select host_ids from deployments where id = %s", (did,))
        ]
        repo = row(
            db,
            "select r.url, r.name, r.default_branch from repositories r"
            " join deployments d on d.repository_id = r.id where d.id = %s",
            (did,),
        )
        run_id = launch(db, dev, did)
        run = row(db, "select * from deployment_runs where id = %s", (run_id,))
        assert (run["number"], run["trigger"], run["status"]) == (1, "manual", "queued")
        assert str(run["requested_by"]) == dev.user_id and run["team_id"] is not None
        spec = run["spec"]
        assert spec["scripts"] == ["scripts/deploy.sh", "scripts/check.sh"]
        assert spec["parameters"] == ["--env=qa", "--fast"]
        assert spec["host_ids"] == expected_hosts
        assert spec["env_names"] == ["TOKEN", "MODE"]
        assert "s3cr3t-value" not in json.dumps(spec)
        assert spec["rollout"] == {
            "batch_size": "2",
            "max_failures": 1,
            "host_timeout_seconds": 1800,
        }
        assert (spec["repository_url"], spec["repository_name"], spec["branch"]) == (
            repo["url"],
            repo["name"],
            repo["default_branch"],
        )
        assert [s["job_id"] for s in spec["cicd_steps"]] == [str(j) for j in reversed(job_ids)]
        assert [s["parameters"] for s in spec["cicd_steps"]] == [{"STEP": 0}, {"STEP": 1}]
        assert deployment_state(db, did) == ("pending", None, None)

        # Editing the deployment does not rewrite the run.
        db.execute(
            "update deployments set scripts_path = '{other.sh}', rollout_batch_size = '50%%',"
            " repository_branch = 'release' where id = %s",
            (did,),
        )
        assert one(db, "select spec from deployment_runs where id = %s", (run_id,)) == spec


def test_one_run_at_a_time_with_a_clear_message(db, users, teams):
    dev = users["dev@acme.test"]
    with txn(db):
        did = make_deployment(db, teams["Platform"], 1)
        name = one(db, "select name from deployments where id = %s", (did,))
        launch(db, dev, did)
        msg = refused(db, "select launch_deployment(%s)", (did,), errors.RaiseException)
        assert f"deployment {name} already has run #1 queued; cancel it or wait" in msg
        claim(db, dev)
        msg = refused(db, "select launch_deployment(%s)", (did,), errors.RaiseException)
        assert "already has run #1 running" in msg


def test_only_executors_of_the_team_launch_or_cancel(db, users, teams):
    with txn(db):
        did = make_deployment(db, teams["Platform"], 1)
        for email in (
            "viewer@acme.test",
            "contrib@acme.test",
            "tester@acme.test",
            "ops@globex.test",
        ):
            become(db, users[email])
            msg = refused(db, "select launch_deployment(%s)", (did,))
            assert "requires can_execute on deployments" in msg, email
        # The refusal for a deployment that does not exist reads the same.
        assert refused(db, "select launch_deployment(%s)", (str(uuid.uuid4()),)) == msg
        run_id = launch(db, users["dev@acme.test"], did)
        for email in ("viewer@acme.test", "ops@globex.test"):
            become(db, users[email])
            refused(db, "select cancel_deployment_run(%s)", (run_id,))
        become(db, None)
        assert one(db, "select status from deployment_runs where id = %s", (run_id,)) == "queued"
        # The tester has execute in Payments only.
        pay = make_deployment(db, teams["Payments"], 1)
        assert launch(db, users["tester@acme.test"], pay)


def test_nobody_writes_runs_directly(db, users, teams):
    dev = users["dev@acme.test"]
    with txn(db):
        did = make_deployment(db, teams["Platform"], 1)
        run_id = launch(db, dev, did)
        become(db, dev)
        assert one(db, "select count(*) from deployment_runs where id = %s", (run_id,)) == 1
        for sql in (
            "update deployment_runs set status = 'succeeded' where id = %s",
            "delete from deployment_runs where id = %s",
            "update deployment_run_hosts set status = 'succeeded' where run_id = %s",
            "delete from deployment_run_logs where run_id = %s",
            "insert into deployment_run_logs (run_id, seq, stream, text, team_id)"
            " select id, 99, 'stdout', 'forged', team_id from deployment_runs where id = %s",
        ):
            refused(db, sql, (run_id,))
        refused(db, "select * from private.deployment_run_log_state where run_id = %s", (run_id,))
        # Nor the deployment's run state, which follows its runs (dev has update permission).
        msg = refused(db, "update deployments set status = 'success' where id = %s", (did,))
        assert "follow the deployment's runs; launch or cancel a run instead" in msg
        refused(db, "update deployments set completed_at = now() where id = %s", (did,))
        assert refused(
            db,
            "insert into deployments (name, team_id, status) values ('forged', %s, 'success')",
            (teams["Platform"],),
        ).startswith("permission denied: a new deployment starts pending or scheduled")
        db.execute(
            "update deployments set description = 'still editable' where id = %s", (did,)
        )  # other columns: as before
        become(db, None)
        assert one(db, "select status from deployment_runs where id = %s", (run_id,)) == "queued"


def test_rollout_settings_are_checked_with_messages_a_person_can_act_on(db, users, teams):
    with txn(db):
        did = make_deployment(db, teams["Platform"], 1)
        become(db, users["dev@acme.test"])
        for column, value, expected in (
            (
                "rollout_batch_size",
                "0",
                "rollout batch size '0' is not valid: give a number of hosts",
            ),
            ("rollout_batch_size", "150%", "a percentage from 1% to 100% (e.g. 25%)"),
            ("rollout_batch_size", "two", "is not valid"),
            ("rollout_max_failures", -1, "rollout max failures must be 0 or more"),
            ("host_timeout_seconds", 0, "host timeout must be between 1 and 604800 seconds"),
        ):
            msg = refused(
                db,
                f"update deployments set {column} = %s where id = %s",  # noqa: S608
                (value, did),
                errors.CheckViolation,
            )
            assert expected in msg, (column, value, msg)
        db.execute(
            "update deployments set rollout_batch_size = '25%%', rollout_max_failures = 2,"
            " host_timeout_seconds = 60 where id = %s",
            (did,),
        )


# -- claiming and batches -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("batch_size", "n_hosts", "batches"),
    [("2", 5, [1, 1, 2, 2, 3]), ("25%", 4, [1, 2, 3, 4]), ("30%", 3, [1, 2, 3]),
     ("100%", 3, [1, 1, 1]), ("50%", 5, [1, 1, 2, 2, 3])],
)  # fmt: skip
def test_claim_makes_host_rows_in_batches_like_ansible_serial(
    db, users, teams, batch_size, n_hosts, batches
):
    dev = users["dev@acme.test"]
    with txn(db):
        did = make_deployment(db, teams["Platform"], n_hosts, rollout_batch_size=batch_size)
        run_id = launch(db, dev, did)
        run = claim(db, dev, "runner-a")
        assert str(run["id"]) == run_id
        assert (run["status"], run["runner_name"], str(run["runner_id"])) == (
            "running",
            "runner-a",
            dev.user_id,
        )
        assert run["started_at"] is not None and run["lease_expires_at"] > run["started_at"]
        assert (run["hosts_total"], run["batch_count"], run["current_batch"]) == (
            n_hosts,
            max(batches),
            1,
        )
        hosts = db.execute(
            "select host_id, batch, status, host_name from deployment_run_hosts where run_id = %s order by position",
            (run_id,),
        ).fetchall()
        assert [h[0] for h in hosts] == run["spec"]["host_ids"]
        assert [h[1] for h in hosts] == batches
        assert {h[2] for h in hosts} == {"pending"} and all(h[3] for h in hosts)
        state = deployment_state(db, did)
        assert state[0] == "in_progress" and state[1] == run["started_at"] and state[2] is None


def test_claim_hands_out_only_runs_of_teams_the_runner_may_execute(db, users, teams):
    with txn(db):
        did = make_deployment(db, teams["Platform"], 1)
        launch(db, users["dev@acme.test"], did)
        assert claim(db, users["tester@acme.test"]) is None  # execute in Payments only
        assert claim(db, users["viewer@acme.test"]) is None
        assert claim(db, users["dev@globex.test"]) is None
        assert claim(db, users["dev@acme.test"]) is not None
        assert claim(db, users["dev@acme.test"]) is None  # nothing left


def test_a_deleted_host_is_skipped_at_claim(db, users, teams):
    dev = users["dev@acme.test"]
    with txn(db):
        did = make_deployment(db, teams["Platform"], 2)
        run_id = launch(db, dev, did)
        become(db, None)
        gone = one(db, "select spec->'host_ids'->>1 from deployment_runs where id = %s", (run_id,))
        db.execute("delete from hosts where id = %s", (gone,))
        run = claim(db, dev)
        status = dict(
            db.execute(
                "select host_id, status from deployment_run_hosts where run_id = %s", (run_id,)
            ).fetchall()
        )
        assert status[gone] == "skipped" and run["hosts_done"] == 1 and run["hosts_total"] == 2


# -- driving a run ---------------------------------------------------------------------------------


def test_only_the_lease_holder_drives_the_run(db, users, teams):
    dev, admin = users["dev@acme.test"], users["admin@acme.test"]
    with txn(db):
        did = make_deployment(db, teams["Platform"], 2)
        run_id = launch(db, dev, did)
        run = claim(db, dev)
        host = run["spec"]["host_ids"][0]
        become(db, admin)  # may execute in the team, but does not hold the lease
        for sql, params in (
            (
                "select append_run_log(%s, %s)",
                (run_id, json.dumps([{"stream": "stdout", "text": "x"}])),
            ),
            ("select update_run_host(%s, %s, 'succeeded', 0, null)", (run_id, host)),
            ("select heartbeat_deployment_run(%s, 30)", (run_id,)),
            ("select set_run_batch(%s, 1)", (run_id,)),
            ("select finish_deployment_run(%s, 'succeeded', null)", (run_id,)),
        ):
            assert "is not held by this runner" in refused(db, sql, params), sql
        become(db, None)
        assert one(db, "select count(*) from deployment_run_logs where run_id = %s", (run_id,)) == 0
        assert one(db, "select status from deployment_run_hosts where run_id = %s and host_id = %s",
                   (run_id, host)) == "pending"  # fmt: skip


def test_host_results_progress_and_finish(db, users, teams):
    dev = users["dev@acme.test"]
    with txn(db):
        did = make_deployment(
            db, teams["Platform"], 4, rollout_batch_size="2", rollout_max_failures=0
        )
        run_id = launch(db, dev, did)
        run = claim(db, dev)
        h = run["spec"]["host_ids"]
        db.execute("select update_run_host(%s, %s, 'running', null, null)", (run_id, h[0]))
        db.execute("select update_run_host(%s, %s, 'succeeded', 0, null)", (run_id, h[0]))
        db.execute("select update_run_host(%s, %s, 'running', null, null)", (run_id, h[1]))
        db.execute(
            "select update_run_host(%s, %s, 'failed', 3, %s)",
            (run_id, h[1], "exit 3\nfrom deploy.sh"),
        )
        msg = refused(db, "select update_run_host(%s, 'not-a-host', 'failed', 1, null)", (run_id,),
                      errors.RaiseException)  # fmt: skip
        assert "not-a-host is not a target of run #1" in msg
        refused(
            db,
            "select update_run_host(%s, %s, 'done', 0, null)",
            (run_id, h[0]),
            errors.InvalidParameterValue,
        )
        refused(db, "select set_run_batch(%s, 3)", (run_id,), errors.InvalidParameterValue)
        db.execute("select set_run_batch(%s, 2)", (run_id,))
        r = row(
            db,
            "select hosts_done, hosts_failed, current_batch from deployment_runs where id = %s",
            (run_id,),
        )
        assert r == {"hosts_done": 2, "hosts_failed": 1, "current_batch": 2}
        db.execute("select finish_deployment_run(%s, 'failed', null)", (run_id,))
        hosts = {
            r[0]: r[1:]
            for r in db.execute(
                "select host_id, status, exit_code, error, started_at is not null, finished_at is not null"
                " from deployment_run_hosts where run_id = %s",
                (run_id,),
            )
        }
        assert hosts[h[0]] == ("succeeded", 0, None, True, True)
        assert hosts[h[1]] == ("failed", 3, "exit 3 from deploy.sh", True, True)
        assert hosts[h[2]][0] == hosts[h[3]][0] == "skipped" and hosts[h[2]][3] is False
        run = row(db, "select * from deployment_runs where id = %s", (run_id,))
        assert (run["status"], run["error"], run["hosts_done"]) == (
            "failed",
            "1 of 4 hosts failed",
            4,
        )
        assert deployment_state(db, did) == ("failed", run["started_at"], run["finished_at"])
        # A finished run takes no more writes, even from its runner.
        become(db, dev)
        refused(db, "select append_run_log(%s, '[]')", (run_id,))


def test_log_seq_is_strictly_increasing_and_chunks_are_checked(db, users, teams):
    dev = users["dev@acme.test"]
    with txn(db):
        did = make_deployment(db, teams["Platform"], 2)
        run_id = launch(db, dev, did)
        h = claim(db, dev)["spec"]["host_ids"]
        assert append(db, run_id, [{"host_id": None, "stream": "system", "text": "fetching"}]) == 1
        last = append(db, run_id, [
            {"host_id": h[0], "stream": "stdout", "text": "a\nb\n"},
            {"host_id": h[1], "stream": "stderr", "text": "warn\n"},
            {"host_id": h[0], "stream": "stdout", "text": "c\n"},
        ])  # fmt: skip
        assert last == 4
        assert append(db, run_id, []) == 4
        assert "not a target" in refused(
            db,
            "select append_run_log(%s, %s)",
            (run_id, json.dumps([{"host_id": "nope", "stream": "stdout", "text": "x"}])),
            errors.RaiseException,
        )
        for bad in (
            [{"stream": "trace", "text": "x"}],
            [{"stream": "stdout"}],
            {"stream": "stdout"},
        ):
            refused(
                db,
                "select append_run_log(%s, %s)",
                (run_id, json.dumps(bad)),
                errors.InvalidParameterValue,
            )
        rows = db.execute(
            "select seq, host_id, stream, text from deployment_run_logs where run_id = %s order by id",
            (run_id,),
        ).fetchall()
        assert [r[0] for r in rows] == [1, 2, 3, 4]
        assert rows[1] == (2, h[0], "stdout", "a\nb\n") and rows[2][2] == "stderr"
        # The heartbeat copies the counter onto the run row.
        out = one(db, "select heartbeat_deployment_run(%s, 30)", (run_id,))
        assert out["cancel_requested"] is False
        assert one(db, "select next_seq from deployment_runs where id = %s", (run_id,)) == 4
        become(db, None)
        refused(db, "update deployment_run_logs set text = 'x' where run_id = %s", (run_id,))


def test_appends_continue_after_a_log_written_directly(db, users, teams):
    """A seeded (or imported) running run with log rows and next_seq left at 0."""
    dev = users["dev@acme.test"]
    with txn(db):
        did = make_deployment(db, teams["Platform"], 1)
        run_id = launch(db, dev, did)
        claim(db, dev)
        become(db, None)
        db.execute(
            "insert into deployment_run_logs (run_id, seq, stream, text, team_id)"
            " select id, g, 'stdout', 'seeded', team_id from deployment_runs, generate_series(1, 3) g"
            " where id = %s",
            (run_id,),
        )
        become(db, dev)
        assert append(db, run_id, [{"host_id": None, "stream": "system", "text": "next"}]) == 4


def test_the_log_is_capped_at_50_mb_with_one_line_saying_what_was_dropped(db, users, teams):
    dev = users["dev@acme.test"]
    with txn(db):
        did = make_deployment(db, teams["Platform"], 1)
        run_id = launch(db, dev, did)
        h = claim(db, dev)["spec"]["host_ids"][0]
        append(db, run_id, [{"host_id": h, "stream": "stdout", "text": "first\n"}])
        # Stand in for 50 MB already written (writing it for real takes seconds).
        become(db, None)
        db.execute(
            "update private.deployment_run_log_state set log_bytes = %s - 10 where run_id = %s",
            (CAP, run_id),
        )
        become(db, dev)
        seq = append(db, run_id, [
            {"host_id": h, "stream": "stdout", "text": "12345678\n"},  # 9 bytes: fits
            {"host_id": h, "stream": "stdout", "text": "0123456789\n"},  # 11: dropped
            {"host_id": h, "stream": "stdout", "text": "x"},  # would fit, but the log is capped
        ])  # fmt: skip
        assert seq == 2
        assert append(db, run_id, [{"host_id": h, "stream": "stderr", "text": "more\n"}]) == 2
        db.execute("select finish_deployment_run(%s, 'succeeded', null)", (run_id,))
        rows = db.execute(
            "select seq, stream, text from deployment_run_logs where run_id = %s order by seq",
            (run_id,),
        ).fetchall()
        assert rows == [(1, "stdout", "first\n"), (2, "stdout", "12345678\n"),
                        (3, "system", "log capped at 50 MB: 17 bytes dropped")]  # fmt: skip
        r = row(db, "select log_dropped_bytes, log_bytes, next_seq, status from deployment_runs where id = %s",
                (run_id,))  # fmt: skip
        assert r == {
            "log_dropped_bytes": 17,
            "log_bytes": CAP - 1,
            "next_seq": 3,
            "status": "succeeded",
        }


def test_the_cap_holds_with_real_bytes(db, users, teams):
    dev = users["dev@acme.test"]
    mb = "z" * (1024 * 1024 - 1) + "\n"
    with txn(db):
        did = make_deployment(db, teams["Platform"], 1)
        run_id = launch(db, dev, did)
        h = claim(db, dev)["spec"]["host_ids"][0]
        for _ in range(13):  # 52 MB in 4 MB calls
            append(db, run_id, [{"host_id": h, "stream": "stdout", "text": mb}] * 4)
        db.execute("select finish_deployment_run(%s, 'succeeded', null)", (run_id,))
        stored, rows, last = db.execute(
            "select sum(octet_length(text)) filter (where stream <> 'system'), count(*),"
            " (array_agg(text order by seq desc))[1] from deployment_run_logs where run_id = %s",
            (run_id,),
        ).fetchone()
        assert stored == CAP and rows == 51
        assert last == f"log capped at 50 MB: {2 * 1024 * 1024} bytes dropped"


# -- cancel, retry, leases -------------------------------------------------------------------------


def test_cancel_a_queued_run_at_once_and_a_running_one_by_request(db, users, teams):
    dev, admin = users["dev@acme.test"], users["admin@acme.test"]
    with txn(db):
        did = make_deployment(db, teams["Platform"], 2)
        queued = launch(db, dev, did)
        become(db, admin)
        db.execute("select cancel_deployment_run(%s)", (queued,))
        r = row(db, "select status, finished_at, error, cancel_requested_by from deployment_runs where id = %s",
                (queued,))  # fmt: skip
        assert r["status"] == "cancelled" and r["finished_at"] is not None
        assert r["error"] == "cancelled by Ada Admin before it started"
        assert deployment_state(db, did) == ("cancelled", None, r["finished_at"])
        assert claim(db, dev) is None
        msg = refused(db, "select cancel_deployment_run(%s)", (queued,), errors.RaiseException)
        assert "already ended (cancelled); there is nothing to cancel" in msg

        running = launch(db, dev, did)
        assert one(db, "select number from deployment_runs where id = %s", (running,)) == 2
        h = claim(db, dev)["spec"]["host_ids"]
        db.execute("select update_run_host(%s, %s, 'running', null, null)", (running, h[0]))
        become(db, admin)
        db.execute("select cancel_deployment_run(%s)", (running,))
        become(db, dev)
        assert (
            one(db, "select heartbeat_deployment_run(%s)", (running,))["cancel_requested"] is True
        )
        db.execute("select finish_deployment_run(%s, 'cancelled', null)", (running,))
        hosts = dict(
            db.execute(
                "select host_id, status from deployment_run_hosts where run_id = %s", (running,)
            )
        )
        assert hosts == {h[0]: "cancelled", h[1]: "cancelled"}
        r = row(db, "select status, error from deployment_runs where id = %s", (running,))
        assert r == {"status": "cancelled", "error": "cancelled by Ada Admin"}


def test_retry_reruns_the_old_spec_as_a_new_run(db, users, teams):
    dev = users["dev@acme.test"]
    with txn(db):
        did = make_deployment(db, teams["Platform"], 1)
        first = launch(db, dev, did)
        claim(db, dev)
        db.execute("select finish_deployment_run(%s, 'failed', 'boom')", (first,))
        become(db, None)
        db.execute("update deployments set scripts_path = '{changed.sh}' where id = %s", (did,))
        become(db, users["viewer@acme.test"])
        refused(db, "select retry_deployment_run(%s)", (first,))
        become(db, dev)
        again = str(one(db, "select retry_deployment_run(%s)", (first,)))
        r = row(
            db,
            "select number, trigger, retry_of, spec, status from deployment_runs where id = %s",
            (again,),
        )
        assert (r["number"], r["trigger"], str(r["retry_of"]), r["status"]) == (
            2,
            "retry",
            first,
            "queued",
        )
        assert r["spec"]["scripts"] == ["scripts/deploy.sh", "scripts/check.sh"]
        assert "already has run #2 queued" in refused(
            db, "select retry_deployment_run(%s)", (first,), errors.RaiseException
        )
        assert deployment_state(db, did)[0] == "pending"


def test_a_lapsed_lease_makes_the_run_lost_with_the_reason_and_it_is_not_retried(db, users, teams):
    dev = users["dev@acme.test"]
    with txn(db):
        did = make_deployment(db, teams["Platform"], 2)
        run_id = launch(db, dev, did)
        h = claim(db, dev, "box-7")["spec"]["host_ids"]
        db.execute("select update_run_host(%s, %s, 'running', null, null)", (run_id, h[0]))
        assert one(db, "select expire_deployment_run_leases()") == 0  # lease still valid
        become(db, None)
        db.execute(
            "update deployment_runs set lease_expires_at = now() - interval '1 second',"
            " heartbeat_at = '2026-12-01 10:00:00+00' where id = %s",
            (run_id,),
        )
        become(db, users["tester@acme.test"])  # no execute in Platform: does not sweep it
        assert one(db, "select expire_deployment_run_leases()") == 0
        become(db, dev)
        assert "its lease lapsed" in refused(db, "select heartbeat_deployment_run(%s)", (run_id,))
        assert one(db, "select expire_deployment_run_leases()") == 1
        r = row(
            db, "select status, error, finished_at from deployment_runs where id = %s", (run_id,)
        )
        assert r["status"] == "lost" and r["finished_at"] is not None
        assert (
            r["error"]
            == "runner box-7 stopped heartbeating at 2026-12-01 10:00:00 UTC; its lease expired"
        )
        hosts = dict(
            db.execute(
                "select host_id, status from deployment_run_hosts where run_id = %s", (run_id,)
            )
        )
        assert hosts == {h[0]: "cancelled", h[1]: "skipped"}
        assert one(db, "select text from deployment_run_logs where run_id = %s order by seq desc limit 1",
                   (run_id,)).startswith("run lost: runner box-7")  # fmt: skip
        assert deployment_state(db, did)[0] == "failed"
        assert one(db, "select count(*) from deployment_runs where deployment_id = %s", (did,)) == 1
        assert claim(db, dev) is None
        refused(db, "select finish_deployment_run(%s, 'succeeded', null)", (run_id,))


def test_a_run_whose_runner_died_blocks_neither_a_launch_nor_a_cancel(db, users, teams):
    """No sweeper needs to be up: launching after a lapsed lease loses the old run first,
    and cancelling a lapsed run closes it at once."""
    dev, admin = users["dev@acme.test"], users["admin@acme.test"]
    with txn(db):
        did = make_deployment(db, teams["Platform"], 2)
        first = launch(db, dev, did)
        claim(db, dev, "gone-runner")

        def lapse(run_id):
            become(db, None)
            db.execute(
                "update deployment_runs set lease_expires_at = now() - interval '1 second',"
                " heartbeat_at = '2026-12-01 10:00:00+00' where id = %s",
                (run_id,),
            )

        lapse(first)
        second = launch(db, admin, did)
        r = row(db, "select status, error from deployment_runs where id = %s", (first,))
        assert r["status"] == "lost" and "runner gone-runner stopped heartbeating" in r["error"]
        assert one(db, "select number from deployment_runs where id = %s", (second,)) == 2
        h = claim(db, dev, "gone-runner")["spec"]["host_ids"]
        db.execute("select update_run_host(%s, %s, 'running', null, null)", (second, h[0]))
        lapse(second)
        become(db, admin)
        db.execute("select cancel_deployment_run(%s)", (second,))
        r = row(
            db, "select status, error, finished_at from deployment_runs where id = %s", (second,)
        )
        assert r["status"] == "cancelled" and r["finished_at"] is not None
        assert r["error"] == (
            "cancelled by Ada Admin; runner gone-runner stopped heartbeating at"
            " 2026-12-01 10:00:00 UTC; its lease expired"
        )
        hosts = dict(
            db.execute(
                "select host_id, status from deployment_run_hosts where run_id = %s", (second,)
            )
        )
        assert hosts == {h[0]: "cancelled", h[1]: "cancelled"}
        assert deployment_state(db, did)[0] == "cancelled"


def test_deployment_status_follows_the_latest_run(db, users, teams):
    dev = users["dev@acme.test"]
    with txn(db):
        did = make_deployment(db, teams["Platform"], 1)
        first = launch(db, dev, did)
        claim(db, dev)
        db.execute("select finish_deployment_run(%s, 'succeeded', null)", (first,))
        done = row(
            db, "select started_at, finished_at from deployment_runs where id = %s", (first,)
        )
        assert deployment_state(db, did) == ("success", done["started_at"], done["finished_at"])
        second = launch(db, dev, did)
        assert deployment_state(db, did) == ("pending", None, None)
        # The first run is history: the deployment follows #2 only.
        become(db, None)
        db.execute("update deployment_runs set status = 'failed' where id = %s", (first,))
        assert deployment_state(db, did)[0] == "pending"
        become(db, dev)
        db.execute("select cancel_deployment_run(%s)", (second,))
        assert deployment_state(db, did)[0] == "cancelled"


# -- schedules ---------------------------------------------------------------------------------------


def test_a_tick_fires_once_and_repeat_count_is_honoured(db, users, teams):
    dev = users["dev@acme.test"]
    with txn(db):
        did = make_deployment(db, teams["Platform"], 1, schedule_type="cron",
                              cron_expression="*/5 * * * *", repeat_count=2)  # fmt: skip
        become(db, dev)
        ticks = ["2026-12-01 10:00+00", "2026-12-01 10:05+00", "2026-12-01 10:10+00"]
        first = one(db, "select queue_scheduled_run(%s, %s)", (did, ticks[0]))
        assert first is not None
        assert (
            one(db, "select queue_scheduled_run(%s, %s)", (did, ticks[1])) is None
        )  # #1 still queued
        claim(db, dev)
        db.execute("select finish_deployment_run(%s, 'succeeded', null)", (first,))
        assert (
            one(db, "select queue_scheduled_run(%s, %s)", (did, ticks[0])) is None
        )  # already fired
        second = one(db, "select queue_scheduled_run(%s, %s, 4)", (did, ticks[1]))
        r = row(
            db,
            "select trigger, scheduled_for, number from deployment_runs where id = %s",
            (second,),
        )
        assert r["trigger"] == "schedule" and r["number"] == 2 and r["scheduled_for"].minute == 5
        line = one(
            db, "select text from deployment_run_logs where run_id = %s and seq = 1", (second,)
        )
        assert (
            line
            == "skipped 4 missed ticks while no runner was up; fired only the latest (2026-12-01 10:05 UTC)"
        )
        db.execute("select cancel_deployment_run(%s)", (second,))
        assert one(db, "select queue_scheduled_run(%s, %s)", (did, ticks[2])) is None  # 2 of 2 used
        # Manual launches do not use up the repeat count.
        assert launch(db, dev, did)
        assert "is in the future" in refused(
            db,
            "select queue_scheduled_run(%s, now() + interval '1 hour')",
            (did,),
            errors.InvalidParameterValue,
        )
        become(db, users["viewer@acme.test"])
        refused(db, "select queue_scheduled_run(%s, %s)", (did, ticks[2]))


def test_later_fires_once_at_its_time_and_now_has_no_schedule(db, users, teams):
    dev = users["dev@acme.test"]
    with txn(db):
        at = "2026-12-01 09:30+00"
        later = make_deployment(
            db, teams["Platform"], 1, schedule_type="later", scheduled_time=at, repeat_count=5
        )
        now_dep = make_deployment(db, teams["Platform"], 1, schedule_type="now")
        become(db, dev)
        assert one(db, "select queue_scheduled_run(%s, %s)", (later, "2026-12-01 09:31+00")) is None
        run_id = one(db, "select queue_scheduled_run(%s, %s)", (later, at))
        assert run_id is not None
        db.execute("select cancel_deployment_run(%s)", (run_id,))
        assert one(db, "select queue_scheduled_run(%s, %s)", (later, at)) is None
        assert one(db, "select queue_scheduled_run(%s, %s)", (now_dep, at)) is None


# -- concurrency (committed, on separate connections) -------------------------------------------------


def _connect_as(db, user):
    conn = psycopg.connect(db.info.dsn, autocommit=False)
    claims = {
        "role": "authenticated",
        "aud": "authenticated",
        "sub": user.user_id,
        "email": user.email,
    }
    conn.execute("set role authenticated")
    conn.execute("select set_config('request.jwt.claims', %s, false)", (json.dumps(claims),))
    conn.commit()
    return conn


def _race(db, user, n_threads, work):
    """Run `work(conn)` on n connections at once (each its own transaction); collect the results."""
    barrier = threading.Barrier(n_threads)
    results, errors_seen = [], []

    def go():
        conn = _connect_as(db, user)
        try:
            barrier.wait()
            results.append(work(conn))
            conn.commit()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors_seen.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=go) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors_seen, errors_seen
    return results


def test_concurrent_claims_never_share_a_run_and_concurrent_ticks_fire_once(db, users, teams):
    dev = users["dev@acme.test"]
    dids = []
    try:
        with db.transaction():
            for _ in range(6):
                dids.append(
                    make_deployment(
                        db, teams["Payments"], 1, schedule_type="cron", cron_expression="* * * * *"
                    )
                )
            become(db, dev)
            runs = [launch(db, dev, d) for d in dids]
        # Other queued runs of the demo? None: this database is ours.
        claimed = _race(
            db, dev, 8,
            lambda c: [str(r[0]) for r in c.execute("select id from claim_deployment_run('r', 30)")],
        )  # fmt: skip
        flat = [r for rs in claimed for r in rs]
        assert sorted(flat) == sorted(runs)  # each run exactly once; two threads got none

        with db.transaction():
            become(db, dev)
            for r in runs:
                db.execute("select finish_deployment_run(%s, 'succeeded', null)", (r,))
        tick = "2026-12-01 11:00+00"
        fired = _race(
            db,
            dev,
            6,
            lambda c: c.execute("select queue_scheduled_run(%s, %s)", (dids[0], tick)).fetchone()[
                0
            ],
        )
        assert len([f for f in fired if f is not None]) == 1
        assert one(db, "select count(*) from deployment_runs where deployment_id = %s and scheduled_for = %s",
                   (dids[0], tick)) == 1  # fmt: skip
    finally:
        with db.transaction():
            become(db, None)
            db.execute("delete from deployments where id = any(%s)", (dids,))
