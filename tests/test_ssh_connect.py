"""Connections over real SSH (asyncssh servers on 127.0.0.1): host-key decisions,
each authentication method, failure classification, pooling."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess

import asyncssh
import pytest

from opstui.ssh import (
    ConnectionPool,
    HostKeyChanged,
    HostKeyUnknown,
    KnownHosts,
    SshError,
    SshSettings,
    SshTarget,
)
from opstui.ssh.connection import connect, rpc_password_source
from opstui.ssh.known_hosts import fingerprint
from tests import ssh_support
from tests.conftest import demo_user
from tests.ssh_support import target_for, trusting_settings, until

# Shared fixtures (assigned, so each test's parameters resolve to them).
known, ssh_home, ssh_hosts = ssh_support.known, ssh_support.ssh_home, ssh_support.ssh_hosts


async def _echo(conn, text: str = "ok") -> str:
    result = await conn.run(f"echo {text}", check=True)
    return str(result.stdout).strip()


# -- host keys ---------------------------------------------------------------------------------


async def test_unknown_key_refuse_once_remember(ssh_hosts, known, ssh_home):
    host = await ssh_hosts("alpha")
    fp = fingerprint(host.host_key())
    asked: list[HostKeyUnknown] = []

    def deciding(answer):
        async def decide(target, unknown):
            asked.append(unknown)
            return answer

        return decide

    password = lambda _id: asyncio.sleep(0, host.password)  # noqa: E731
    target = target_for(host, host_id="alpha")
    base = {
        "known_hosts": known,
        "password_source": password,
        "agent_path": None,
        "client_keys": None,
    }

    with pytest.raises(HostKeyUnknown) as refused:
        await connect(target, SshSettings(decide=deciding("refuse"), **base))
    assert refused.value.fingerprint == fp and refused.value.key_type == "ssh-ed25519"
    assert fp in str(refused.value) and "\n" not in str(refused.value)
    assert not known.own_file().exists()

    conn = await connect(target, SshSettings(decide=deciding("once"), **base))
    assert await _echo(conn) == "ok"
    conn.close()
    assert not known.own_file().exists(), "trust once is not remembered"
    conn = await connect(target, SshSettings(decide=deciding("once"), **base))
    conn.close()
    assert len(asked) == 3, "trust once asks again next time"

    conn = await connect(target, SshSettings(decide=deciding("remember"), **base))
    conn.close()
    recorded = known.own_file().read_text()
    assert f"[127.0.0.1]:{host.port} ssh-ed25519 " in recorded
    # A new KnownHosts over the same file: trusted without asking.
    fresh = KnownHosts(user_path=known.user_path, own_path=known.own_path)

    async def never(target, unknown):
        raise AssertionError("a remembered key must not be asked about")

    conn = await connect(target, SshSettings(decide=never, **{**base, "known_hosts": fresh}))
    assert await _echo(conn) == "ok"
    conn.close()


async def test_changed_key_is_refused_with_both_fingerprints_until_forgotten(
    ssh_hosts, known, ssh_home
):
    host = await ssh_hosts("beta")
    old = asyncssh.generate_private_key("ssh-ed25519")
    # The user's own ~/.ssh/known_hosts says this host has another key.
    known.user_file().write_text(
        f"[127.0.0.1]:{host.port} {old.export_public_key().decode().strip()}\n"
    )
    calls = []

    async def decide(target, unknown):
        calls.append(unknown)
        return "remember"

    settings = trusting_settings(
        known, [], decide=decide, password_source=lambda _i: asyncio.sleep(0, host.password)
    )
    target = target_for(host, host_id="beta")
    for accept_new in (False, True):
        settings.accept_new = accept_new
        with pytest.raises(HostKeyChanged) as changed:
            await connect(target, settings)
        assert changed.value.old_fingerprint == fingerprint(old)
        assert changed.value.new_fingerprint == fingerprint(host.host_key())
        assert fingerprint(old) in str(changed.value) and fingerprint(host.host_key()) in str(
            changed.value
        )
        assert changed.value.kind == "host_key_changed"
    assert calls == [], "a changed key is never offered for trust"

    assert known.forget("127.0.0.1", host.port) == 1  # the explicit action
    conn = await connect(target, settings)
    conn.close()
    assert len(calls) == 1 and calls[0].fingerprint == fingerprint(host.host_key())
    assert "@revoked" in known.own_file().read_text()


async def test_headless_refuses_unknown_keys_unless_accept_new(ssh_hosts, known, ssh_home):
    host = await ssh_hosts("gamma")
    settings = SshSettings(
        known_hosts=known, agent_path=None, client_keys=None,
        password_source=lambda _i: asyncio.sleep(0, host.password),
    )  # fmt: skip
    target = target_for(host, host_id="gamma")
    with pytest.raises(HostKeyUnknown):
        await connect(target, settings)
    settings.accept_new = True
    conn = await connect(target, settings)
    conn.close()
    assert f"[127.0.0.1]:{host.port}" in known.own_file().read_text()
    settings.accept_new = False
    conn = await connect(target, settings)  # remembered now
    conn.close()


# -- authentication ----------------------------------------------------------------------------


async def test_key_file_auth_and_ssh_config_user_port_identityfile(ssh_hosts, known, ssh_home):
    key = asyncssh.generate_private_key("ssh-ed25519")
    host = await ssh_hosts("keyed", authorized_keys=[key])
    trusting_settings(known, [host])
    # 1. The default key file ~/.ssh/id_ed25519.
    (ssh_home / ".ssh" / "id_ed25519").write_bytes(key.export_private_key())
    os.chmod(ssh_home / ".ssh" / "id_ed25519", 0o600)
    settings = SshSettings(known_hosts=known, agent_path=None)
    conn = await connect(target_for(host), settings)
    assert await _echo(conn) == "ok"
    conn.close()
    # 2. Elsewhere, named by ~/.ssh/config, which also gives User and Port for a row without them.
    (ssh_home / ".ssh" / "id_ed25519").rename(ssh_home / "lab.key")
    (ssh_home / ".ssh" / "config").write_text(
        f"Host 127.0.0.1\n  Port {host.port}\n  User {host.username}\n  IdentityFile {ssh_home / 'lab.key'}\n"
    )
    target = SshTarget.from_host(
        {"id": "h1", "name": "keyed", "ip": "127.0.0.1", "port": None, "user": None}
    )
    assert target.port is None and target.username is None and target.config
    conn = await connect(target, settings)
    assert await _echo(conn) == "ok"
    conn.close()
    # Without the config (and no key, no password) the same row cannot authenticate.
    (ssh_home / ".ssh" / "config").unlink()
    with pytest.raises(SshError) as failed:
        await connect(target_for(host), settings)
    assert failed.value.kind == "auth_failed"


@pytest.mark.skipif(shutil.which("ssh-agent") is None, reason="ssh-agent is not installed")
async def test_agent_auth(ssh_hosts, known, ssh_home, tmp_path):
    key = asyncssh.generate_private_key("ssh-ed25519")
    host = await ssh_hosts("agented", authorized_keys=[key])
    trusting_settings(known, [host])
    sock = tmp_path / "agent.sock"
    agent = await asyncio.create_subprocess_exec(
        "ssh-agent", "-D", "-a", str(sock), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        await until(sock.exists, what="ssh-agent socket")
        async with asyncssh.connect_agent(str(sock)) as client:
            await client.add_keys([key])
        # No key files, no password: only the agent can get us in.
        conn = await connect(target_for(host), SshSettings(known_hosts=known, agent_path=str(sock)))
        assert await _echo(conn) == "ok"
        conn.close()
        with pytest.raises(SshError) as no_agent:
            await connect(target_for(host), SshSettings(known_hosts=known, agent_path=None))
        assert no_agent.value.kind == "auth_failed"
    finally:
        agent.terminate()
        await agent.wait()


async def test_stored_password_via_rpc_needs_can_execute(
    backend, backend_info, sign_in, known, ssh_home
):
    fleet = backend.ssh_demo
    demo = fleet.by_name("lab-web-01")
    trusting_settings(known, [demo])
    admin = await sign_in(demo_user(backend_info, "admin")["email"])
    row = (await admin.table("hosts").select("*").eq("name", "lab-web-01").execute()).data[0]
    assert row["password"] is None, "the stored password is never readable as a column"
    target = SshTarget.from_host(row)
    settings = SshSettings(
        known_hosts=known,
        agent_path=None,
        client_keys=None,
        password_source=rpc_password_source(admin),
    )
    conn = await connect(target, settings)
    assert await _echo(conn, "$OPSTUI_DEMO_HOST") == "lab-web-01"
    conn.close()

    viewer = await sign_in("viewer@acme.test")  # member of Platform, no can_execute on hosts
    settings.password_source = rpc_password_source(viewer)
    with pytest.raises(SshError) as refused:
        await connect(target, settings)
    assert refused.value.kind == "auth_failed"
    assert "stored password not readable" in str(refused.value) and "can_execute" in str(
        refused.value
    )
    assert demo.password not in str(refused.value)


async def test_wrong_password_is_auth_failed(ssh_hosts, known, ssh_home):
    host = await ssh_hosts("delta")
    settings = trusting_settings(
        known, [host], password_source=lambda _i: asyncio.sleep(0, "not-the-password")
    )
    with pytest.raises(SshError) as failed:
        await connect(target_for(host, host_id="delta"), settings)
    assert failed.value.kind == "auth_failed" and failed.value.status == "auth_failed"
    assert "authentication failed" in str(failed.value) and "not-the-password" not in str(
        failed.value
    )
    assert "\n" not in str(failed.value)


# -- failures ------------------------------------------------------------------------------------


async def test_refused_timeout_unreachable_each_one_line(known, ssh_home):
    settings = SshSettings(
        known_hosts=known, agent_path=None, client_keys=None, connect_timeout=0.5
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with pytest.raises(SshError) as refused:
        await connect(SshTarget("127.0.0.1", closed_port, "u", name="down"), settings)
    assert refused.value.kind == "refused" and "connection refused" in str(refused.value)

    silent = socket.socket()  # accepts TCP (backlog) but never speaks SSH
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    try:
        with pytest.raises(SshError) as slow:
            await connect(
                SshTarget("127.0.0.1", silent.getsockname()[1], "u", name="mute"), settings
            )
        assert slow.value.kind == "timeout" and "timed out" in str(slow.value)
    finally:
        silent.close()

    with pytest.raises(SshError) as nowhere:
        await connect(SshTarget("no-such-host.invalid", 22, "u"), settings)
    assert nowhere.value.kind == "unreachable"
    for error in (refused.value, slow.value, nowhere.value):
        assert "\n" not in str(error) and "Traceback" not in str(error)


async def test_pool_reuses_one_connection_and_closes_idle_ones(ssh_hosts, known, ssh_home):
    host = await ssh_hosts("pooled")
    pool = ConnectionPool(trusting_settings(known, [host]), idle_timeout=0.3)
    target = target_for(host, host_id="pooled")
    try:
        conns = await asyncio.gather(*(pool.get(target) for _ in range(10)))
        assert len({id(c) for c in conns}) == 1
        assert len(host._connections) == 1
        async with pool.connection(target) as again:
            assert again is conns[0]
        await until(lambda: len(pool) == 0, what="idle connection reaped")
        await until(lambda: not host._connections, what="server sees the close")
        async with pool.connection(target) as fresh:  # reconnects after the reap
            assert fresh is not conns[0] and await _echo(fresh) == "ok"
    finally:
        await pool.close()
    await until(lambda: not host._connections, what="pool.close closes everything")
