"""Helpers for the SSH tests: real asyncssh servers on 127.0.0.1 with their own host
keys, a sandboxed HOME (never the real ~/.ssh), and condition waits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from opstui.backend.demo_ssh import DemoSshHost
from opstui.ssh import KnownHosts, SshSettings, SshTarget


async def until(predicate: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    """Wait for a condition (polling the event loop), failing after `timeout`."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.01)


@pytest.fixture
def ssh_home(tmp_path, monkeypatch) -> Path:
    """HOME is an empty sandbox: no real keys, config, known_hosts or agent."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.delenv("OPSTUI_SSH_CONFIG", raising=False)
    return home


@pytest.fixture
def known(tmp_path) -> KnownHosts:
    return KnownHosts(
        user_path=tmp_path / "user_known_hosts", own_path=tmp_path / "opstui_known_hosts"
    )


@pytest.fixture
async def ssh_hosts(tmp_path):
    """Factory: start a DemoSshHost (asyncssh server, own key and password) in tmp_path."""
    started: list[DemoSshHost] = []

    async def make(name: str = "h", **kwargs) -> DemoSshHost:
        host = DemoSshHost(name, tmp_path / "servers" / f"{name}-{len(started)}", **kwargs)
        await host.start()
        started.append(host)
        return host

    yield make
    for host in started:
        await host.stop()


def target_for(host: DemoSshHost, **kwargs) -> SshTarget:
    values = {"host": "127.0.0.1", "port": host.port, "username": host.username, "name": host.name}
    values.update(kwargs)
    return SshTarget(**values)


def trusting_settings(known: KnownHosts, hosts, **kwargs) -> SshSettings:
    """Settings that trust exactly these hosts' keys (recorded in opstui's file), password = theirs."""
    for host in hosts:
        known.remember("127.0.0.1", host.port, host.host_key())
    passwords = {host.name: host.password for host in hosts}

    async def password_source(host_id: str) -> str | None:
        return passwords.get(host_id)

    values = {
        "known_hosts": known,
        "password_source": password_source,
        "agent_path": None,
        "client_keys": None,
    }
    values.update(kwargs)
    return SshSettings(**values)
