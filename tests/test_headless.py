"""The headless twin, run as a user would: login, <resource> list, watch, logout, and config errors.

The backend runs in this test process's event loop, so the commands run as
asyncio subprocesses: a blocking subprocess call would freeze the backend.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from opstui.config import ConfigError, select_profile

TIMEOUT = 60


@pytest.fixture
def home(tmp_path, backend_info) -> dict[str, str]:
    """A config dir with one profile pointing at the test backend, and a private data dir."""
    config = tmp_path / "config"
    config.mkdir()
    (config / "config.toml").write_text(
        'default_profile = "local"\n\n[profiles.local]\n'
        f'url = "{backend_info.url}"\nanon_key = "{backend_info.anon_key}"\n'
    )
    _PASSWORDS.update({u["email"]: u["password"] for u in backend_info.users})
    return {
        **os.environ,
        "OPSTUI_CONFIG_DIR": str(config),
        "OPSTUI_DATA_DIR": str(tmp_path / "data"),
    }


async def _opstui(
    env: dict, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "opstui",
        *args,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(
        proc.communicate(stdin.encode() if stdin is not None else b""), TIMEOUT
    )
    return subprocess.CompletedProcess(args, proc.returncode, out.decode(), err.decode())


_PASSWORDS: dict[str, str] = {}  # the test backend's demo passwords (made per backend)


async def _login(env: dict, email: str = "dev@acme.test", password: str | None = None):
    password = _PASSWORDS[email] if password is None else password
    return await _opstui(env, "login", "--email", email, stdin=password + "\n")


async def test_login_stores_a_private_session_and_list_uses_it(home, backend_info):
    result = await _login(home)
    assert result.returncode == 0, result.stderr
    session_file = Path(home["OPSTUI_DATA_DIR"]) / "sessions" / "local.json"
    assert stat.S_IMODE(session_file.stat().st_mode) == 0o600
    password = _PASSWORDS["dev@acme.test"]
    assert password not in session_file.read_text(), "the password is never stored"
    assert password not in result.stdout + result.stderr

    listed = await _opstui(home, "hosts", "list", "--team", "Payments", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)  # one JSON array (watch --json is the NDJSON stream)
    assert isinstance(rows, list)
    with psycopg.connect(backend_info.db_url) as conn:
        expected = {
            r[0]
            for r in conn.execute(
                "select h.name from hosts h join teams t on t.id = h.team_id where t.name = 'Payments'"
            )
        }
    assert {r["name"] for r in rows} == expected
    assert all(r.get("password") is None for r in rows)

    plain = await _opstui(home, "deploy", "list")
    assert plain.returncode == 0, plain.stderr
    header, *lines = plain.stdout.splitlines()
    assert header.split("\t")[:2] == ["NAME", "STATUS"]
    assert len(lines) > 5


async def test_wrong_password_and_unknown_team_are_one_line_errors(home):
    bad = await _login(home, password="not-it")
    assert bad.returncode == 1
    assert bad.stderr.strip() == "opstui: wrong email or password"
    assert (await _login(home)).returncode == 0
    unknown = await _opstui(home, "hosts", "list", "--team", "Nope")
    assert unknown.returncode == 1
    assert unknown.stderr.count("\n") == 1 and "no team 'Nope'" in unknown.stderr


async def test_list_without_a_session_says_how_to_log_in(home):
    result = await _opstui(home, "hosts", "list")
    assert result.returncode == 1
    assert "run `opstui login` first" in result.stderr
    assert "Traceback" not in result.stderr


async def test_logout_ends_the_session(home):
    assert (await _login(home)).returncode == 0
    out = await _opstui(home, "logout")
    assert out.returncode == 0 and "signed out" in out.stderr
    assert not (Path(home["OPSTUI_DATA_DIR"]) / "sessions" / "local.json").exists()
    assert "run `opstui login` first" in (await _opstui(home, "hosts", "list")).stderr


async def test_watch_prints_one_ndjson_line_per_change(home, backend_info):
    assert (await _login(home, email="admin@acme.test")).returncode == 0
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "opstui",
        "watch",
        "hosts",
        "--json",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=home,
    )
    name = f"watched-{uuid.uuid4().hex[:6]}"
    try:
        # Ready once it says so on stderr (after the snapshot and the subscription).
        ready = await asyncio.wait_for(proc.stderr.readline(), TIMEOUT)
        assert b"watching hosts" in ready

        # One change at a time: realtime checks visibility against the row as it is
        # when the change is processed (as Supabase does), so a row deleted at once
        # would never be shown as inserted.
        async def next_event() -> dict:
            return json.loads(await asyncio.wait_for(proc.stdout.readline(), TIMEOUT))

        with psycopg.connect(backend_info.db_url, autocommit=True) as conn:
            team = conn.execute("select id from teams where name = 'Platform'").fetchone()[0]
            conn.execute(
                "insert into hosts (name, type, ip, team_id) values (%s, 'ssh', '127.0.2.123', %s)",
                (name, team),
            )
            inserted = await next_event()
            conn.execute("update hosts set status = 'online' where name = %s", (name,))
            updated = await next_event()
            conn.execute("delete from hosts where name = %s", (name,))
            deleted = await next_event()
        assert [e["type"] for e in (inserted, updated, deleted)] == ["INSERT", "UPDATE", "DELETE"]
        assert inserted["record"]["name"] == name
        assert updated["record"]["status"] == "online"
        assert deleted["key"] == inserted["key"]
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), TIMEOUT) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        with psycopg.connect(backend_info.db_url, autocommit=True) as conn:
            conn.execute("delete from hosts where name = %s", (name,))


async def test_broken_config_is_a_one_line_error(tmp_path, monkeypatch):
    config = tmp_path / "config.toml"
    config.write_text("[profiles.prod\nurl = 1\n")
    with pytest.raises(ConfigError) as broken:
        select_profile(path=config)
    assert "is not valid TOML" in str(broken.value) and "\n" not in str(broken.value)

    config.write_text('[profiles.prod]\nurl = "ftp://x"\nanon_key = "k"\n')
    with pytest.raises(ConfigError, match="must start with http"):
        select_profile(path=config)
    with pytest.raises(ConfigError, match="no profile 'other'"):
        select_profile("other", path=config)

    env = {**os.environ, "OPSTUI_CONFIG_DIR": str(tmp_path), "OPSTUI_DATA_DIR": str(tmp_path / "d")}
    config.write_text("not = [valid\n")
    result = await _opstui(env, "hosts", "list")
    assert result.returncode == 1
    assert result.stderr.startswith("opstui: ") and result.stderr.count("\n") == 1


async def test_env_overrides_and_unreachable_url(tmp_path, monkeypatch):
    monkeypatch.setenv("SUPABASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("SUPABASE_ANON_KEY", "anon")
    profile = select_profile(path=tmp_path / "none.toml")
    assert profile is not None and profile.url == "http://127.0.0.1:9" and profile.name == "env"

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "OPSTUI_CONFIG_DIR": str(tmp_path),
        "OPSTUI_DATA_DIR": str(tmp_path / "d"),
        "SUPABASE_URL": f"http://127.0.0.1:{port}",
        "SUPABASE_ANON_KEY": "anon",
    }
    started = time.monotonic()
    result = await _opstui(env, "login", "--email", "a@b.c", stdin="pw\n")
    assert result.returncode == 1
    assert "cannot reach the server" in result.stderr and result.stderr.count("\n") == 1
    assert time.monotonic() - started < TIMEOUT
