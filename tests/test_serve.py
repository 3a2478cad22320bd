"""`opstui serve` as a user runs it: a real subprocess, real signals, real crashes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from opstui.backend.postgres import process_alive

SERVE_TIMEOUT = 60


def _serve(*args: str, data_dir: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "OPSTUI_DATA_DIR": str(data_dir)}
    return subprocess.Popen(
        [sys.executable, "-m", "opstui", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _ready_line(proc: subprocess.Popen[str]) -> dict:
    line = proc.stdout.readline()
    assert line, f"serve exited early: {proc.stderr.read()}"
    return json.loads(line)


def _stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> int:
    proc.send_signal(sig)
    return proc.wait(timeout=SERVE_TIMEOUT)


def _postgres_pid(data_dir: Path) -> int:
    pid_file = data_dir / "embedded" / "pgdata" / "postmaster.pid"
    return int(pid_file.read_text().splitlines()[0])


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_json_prints_one_ready_line_and_stops_cleanly(tmp_path, sig):
    proc = _serve("--ephemeral", "--json", data_dir=tmp_path)
    try:
        info = _ready_line(proc)
        assert set(info) == {"url", "anon_key", "service_role_key", "db_url", "users"}
        assert info["url"].startswith("http://127.0.0.1:")
        assert len(info["users"]) >= 5
        for user in info["users"]:
            assert set(user) == {"email", "password", "tenant_id", "team_ids", "role"}
        with psycopg.connect(info["db_url"]) as conn:
            data_dir = conn.execute("show data_directory").fetchone()[0]
            listen = conn.execute("show listen_addresses").fetchone()[0]
        assert listen == "", "Postgres must not listen on TCP"
        assert _stop(proc, sig) == 0
        # Ephemeral means gone: the temporary cluster is removed at exit.
        assert not Path(data_dir).exists()
        assert proc.stdout.read() == "", "exactly one JSON line on stdout"
    finally:
        if proc.poll() is None:
            proc.kill()


def test_persistent_data_survives_a_restart_and_a_crash_is_recovered(tmp_path):
    proc = _serve("--json", data_dir=tmp_path)
    try:
        info = _ready_line(proc)
        with psycopg.connect(info["db_url"], autocommit=True) as conn:
            conn.execute("create table public.survives_restart (id int)")
        pg_pid = _postgres_pid(tmp_path)
        # Simulate a crash: the serve process dies without cleaning up; Postgres lives on.
        proc.kill()
        proc.wait(timeout=SERVE_TIMEOUT)
        assert process_alive(pg_pid)
    finally:
        if proc.poll() is None:
            proc.kill()

    again = _serve("--json", data_dir=tmp_path)
    try:
        info = _ready_line(again)
        with psycopg.connect(info["db_url"]) as conn:
            kept = conn.execute("select to_regclass('public.survives_restart')").fetchone()[0]
        assert kept == "survives_restart", "the persistent data dir keeps its data"
        assert not process_alive(pg_pid), "the crashed run's Postgres was stopped"
        assert _stop(again) == 0
        notices = again.stderr.read()
        assert "recovered: a previous opstui run crashed" in notices
        assert "Traceback" not in notices
    finally:
        if again.poll() is None:
            again.kill()


def test_a_second_serve_on_the_same_data_is_refused_in_one_line(tmp_path):
    first = _serve("--json", data_dir=tmp_path)
    try:
        _ready_line(first)
        second = _serve("--json", data_dir=tmp_path)
        out, err = second.communicate(timeout=SERVE_TIMEOUT)
        assert second.returncode == 1
        assert out == ""
        assert err.count("\n") == 1, err
        assert "another opstui backend" in err and "--ephemeral" in err
        assert _stop(first) == 0
    finally:
        if first.poll() is None:
            first.kill()


def test_a_busy_port_is_a_one_line_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _serve("--ephemeral", "--port", str(port), data_dir=tmp_path)
        out, err = proc.communicate(timeout=SERVE_TIMEOUT)
    assert proc.returncode == 1
    assert (
        err.strip()
        == f"opstui: port {port} on 127.0.0.1 is already in use; stop what uses it"
        " (another `opstui serve`?) or pick another with --port"
    )


def test_bad_flags_are_usage_errors_not_tracebacks(tmp_path):
    proc = _serve("--port", "70000", data_dir=tmp_path)
    _out, err = proc.communicate(timeout=SERVE_TIMEOUT)
    assert proc.returncode == 2
    assert "out of range" in err
    assert "Traceback" not in err
