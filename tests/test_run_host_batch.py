"""The runner's batched host results (`update_run_hosts`) at the SQL level, and the
upload shell that carries the scripts on the first script's channel (real `sh`)."""

from __future__ import annotations

import json
import subprocess

import pytest
from psycopg import errors

from opstui.backend import demo
from opstui.runs.execute import posix_command, posix_env, posix_files
from tests.sql_fixtures import prepared_database
from tests.test_runs_sql import become, claim, launch, make_deployment, refused, row, txn


@pytest.fixture(scope="module")
def db(cluster):
    with prepared_database(cluster, "runbatch", demo=True) as conn:
        yield conn


@pytest.fixture(scope="module")
def users(db) -> dict[str, demo.DemoUser]:
    return {u.email: u for u in demo.demo_users(db)}


@pytest.fixture(scope="module")
def teams(db) -> dict[str, str]:
    return {name: str(tid) for tid, name in db.execute("select id, name from teams").fetchall()}


def test_many_hosts_in_one_call_with_their_times_and_the_counters(db, users, teams):
    dev, admin = users["dev@acme.test"], users["admin@acme.test"]
    with txn(db):
        did = make_deployment(db, teams["Platform"], 3)
        run_id = launch(db, dev, did)
        h = claim(db, dev)["spec"]["host_ids"]
        db.execute("select update_run_hosts(%s, %s)", (run_id, json.dumps([
            {"host_id": h[0], "status": "running", "ago": 5},
            {"host_id": h[1], "status": "failed", "exit_code": 3, "error": "exit 3\nmore",
             "ago": 1, "started_ago": 4},
            {"host_id": h[2], "status": "running"},
        ])))  # fmt: skip
        db.execute("select update_run_hosts(%s, %s)", (run_id, json.dumps([
            {"host_id": h[0], "status": "succeeded", "exit_code": 0}])))  # fmt: skip
        become(db, None)
        hosts = {r[0]: r[1:] for r in db.execute(
            "select host_id, status, exit_code, error, extract(epoch from finished_at - started_at)::int "
            "from deployment_run_hosts where run_id = %s", (run_id,)).fetchall()}  # fmt: skip
        assert hosts[h[0]] == ("succeeded", 0, None, 5)
        assert hosts[h[1]] == ("failed", 3, "exit 3 more", 3)
        assert hosts[h[2]][:2] == ("running", None)
        r = row(db, "select hosts_done, hosts_failed from deployment_runs where id = %s", (run_id,))
        assert r == {"hosts_done": 2, "hosts_failed": 1}
        # Only the lease holder; a bad entry rejects the whole call.
        become(db, admin)
        sql = "select update_run_hosts(%s, %s)"
        ok = json.dumps([{"host_id": h[2], "status": "succeeded"}])
        assert "is not held by this runner" in refused(db, sql, (run_id, ok))
        become(db, dev)
        bad = json.dumps([{"host_id": h[2], "status": "succeeded"}, {"host_id": h[2], "status": "done"}])
        refused(db, sql, (run_id, bad), errors.InvalidParameterValue)
        stranger = json.dumps([{"host_id": "not-a-host", "status": "failed"}])
        assert "not a target" in refused(db, sql, (run_id, stranger), errors.RaiseException)
        become(db, None)
        assert db.execute("select status from deployment_run_hosts where run_id = %s and host_id = %s",
                          (run_id, h[2])).fetchone()[0] == "running"  # fmt: skip


def test_anon_cannot_call_it(db):
    granted = db.execute(
        "select has_function_privilege('anon', 'public.update_run_hosts(uuid, jsonb)', 'execute'),"
        " has_function_privilege('authenticated', 'public.update_run_hosts(uuid, jsonb)', 'execute')"
    ).fetchone()
    assert granted == (False, True)


def test_the_upload_shell_writes_the_scripts_and_runs_the_first(tmp_path):
    files = {"a.sh": b"#!/bin/sh\necho \"a $FOO $1\"\nprintf 'no newline'", "sub/b.sh": b"echo '$x' `y`"}
    shell = posix_files(files)
    command = posix_command(".opstui/runs/r1", "a.sh", "'x y'", 0, make=True)
    done = subprocess.run(["sh", "-c", command], input=shell + posix_env({"FOO": "s'e$cret"}),
                          cwd=tmp_path, capture_output=True, timeout=10)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"a s'e$cret x y\nno newline"
    run_dir = tmp_path / ".opstui/runs/r1"
    for name, data in files.items():
        assert (run_dir / name).read_bytes() == data
        assert (run_dir / name).stat().st_mode & 0o777 == 0o755
    assert b"s'e$cret" not in command.encode()  # secrets stay on stdin
    assert posix_files({"bin": b"\x00\x01"}) is None  # binary: SFTP uploads it
    assert posix_files({"latin": b"\xe9t\xe9"}) is None


def test_a_failed_write_stops_the_first_script(tmp_path):
    (tmp_path / ".opstui/runs/r2").mkdir(parents=True)
    (tmp_path / ".opstui/runs/r2/a.sh").mkdir()  # a directory where the script goes
    command = posix_command(".opstui/runs/r2", "a.sh", "", 0, make=True, last=True)
    done = subprocess.run(["sh", "-c", command], input=posix_files({"a.sh": b"echo ran\n"}),
                          cwd=tmp_path, capture_output=True, timeout=10)  # fmt: skip
    assert done.returncode == 97
    assert b"ran" not in done.stdout and b"cannot write a.sh" in done.stderr


async def test_audit_batch_inserts_together_and_a_refused_row_loses_no_other(sign_in):
    import uuid
    from datetime import UTC, datetime

    from opstui.runs.execute import AuditBatch
    from opstui.ssh.exec import AuditRecord
    from opstui.ssh.target import SshTarget

    client = await sign_in("admin@acme.test")
    hosts = (await client.table("hosts").select("*").limit(2).execute()).data
    marker = f"audit-batch-{uuid.uuid4().hex[:8]}"
    errors_seen: list[tuple[str, str]] = []
    batch = AuditBatch(client, on_error=lambda text, host_id: errors_seen.append((text, host_id)))
    stranger = {**hosts[1], "team_id": str(uuid.uuid4())}  # not a team of this user: refused
    for i, host in enumerate([hosts[0], stranger, hosts[0]]):
        record = AuditRecord(SshTarget.from_host(host), "command", f"{marker} {i}", 0,
                             datetime.now(UTC), 5)  # fmt: skip
        batch.add(record, str(host["id"]))
    await batch.close()
    rows = (await client.table("ssh_audit").select("command,host_id")
            .like("command", f"{marker}%").execute()).data  # fmt: skip
    assert sorted(r["command"] for r in rows) == [f"{marker} 0", f"{marker} 2"]
    assert len(errors_seen) == 1 and errors_seen[0][1] == str(hosts[1]["id"])
    assert errors_seen[0][0].startswith("audit not recorded: ")
