"""What `opstui` does to start quickly, without giving anything up."""

from __future__ import annotations

import asyncio
import ssl

import psycopg

from opstui.backend.background import BackgroundBackend
from opstui.cli import _plainly_embedded
from opstui.session import Target, _tls_for, close_client, create_client
from tests.conftest import DEMO_NOW


def test_the_backend_starts_before_the_config_code_only_when_no_project_can_be_named(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("OPSTUI_CONFIG_DIR", str(tmp_path))
    monkeypatch.delenv("SUPABASE_URL", raising=False)
    monkeypatch.delenv("SUPABASE_ANON_KEY", raising=False)
    assert _plainly_embedded(None)
    assert _plainly_embedded("embedded")
    assert not _plainly_embedded("prod")
    monkeypatch.setenv("SUPABASE_URL", "https://example.supabase.co")
    assert not _plainly_embedded(None)
    monkeypatch.delenv("SUPABASE_URL")
    (tmp_path / "config.toml").write_text('default_profile = "prod"\n')
    assert not _plainly_embedded(None)


async def test_auth_and_rest_share_one_http_client(tmp_path, monkeypatch):
    monkeypatch.setenv("OPSTUI_DATA_DIR", str(tmp_path))
    client = await create_client(Target("t", "http://127.0.0.1:9", "anon"), persist=False)
    try:
        shared = client.options.httpx_client
        assert shared is not None
        assert client.auth._http_client is shared
        assert client.postgrest.session is shared
    finally:
        await close_client(client)
    assert shared.is_closed


def test_the_loopback_gateway_trusts_no_certificate_and_everything_else_verifies():
    context = _tls_for("http://127.0.0.1:54321")
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert context.get_ca_certs() == []
    assert _tls_for("https://abcd.supabase.co") is True
    assert _tls_for("http://supabase.internal:8000") is True  # may redirect to https


def _demo_host_ports(db_url: str) -> dict[str, int | None]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        rows = conn.execute(
            "select name, port from public.hosts where name in ('lab-web-01', 'lab-db-01')"
        ).fetchall()
    return dict(rows)


async def test_the_tui_backend_starts_the_demo_ssh_hosts_only_when_asked():
    background = BackgroundBackend(ephemeral=True, defer_ssh_demo=True, demo_now=DEMO_NOW)
    try:
        info = await background.wait()
        before = await asyncio.to_thread(_demo_host_ports, info.db_url)
        assert background.backend.ssh_demo is None

        background.start_deferred_ssh_demo()

        def fleet_ports() -> dict[str, int]:
            fleet = background.backend.ssh_demo
            if fleet is None:
                return {}
            return {name: fleet.by_name(name).port for name in ("lab-web-01", "lab-db-01")}

        # The hosts listen on loopback and the demo rows point at them (they were not there).
        deadline = asyncio.get_running_loop().time() + 30
        while (
            not (ports := fleet_ports())
            or 0 in ports.values()
            or (await asyncio.to_thread(_demo_host_ports, info.db_url) != ports)
        ):
            assert asyncio.get_running_loop().time() < deadline, "demo SSH hosts never came up"
            await asyncio.sleep(0.05)
        assert before != ports
    finally:
        await asyncio.to_thread(background.stop)
