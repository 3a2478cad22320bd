"""Multi-host exec over real SSH: per-host ordering, a host dropping mid-command,
cancel, output caps and coalescing, Windows command construction, probe parsing."""

from __future__ import annotations

import base64
import stat

from opstui.ssh import ConnectionPool, SshTarget, powershell_command
from opstui.ssh.exec import HostFinished, HostStarted, Output, RunFinished, run_command
from opstui.ssh.health import parse_linux_probe, parse_windows_probe
from opstui.ssh.target import decode_powershell_command
from tests import ssh_support
from tests.ssh_support import target_for, trusting_settings, until

# Shared fixtures (assigned, so each test's parameters resolve to them).
known, ssh_home, ssh_hosts = ssh_support.known, ssh_support.ssh_home, ssh_support.ssh_hosts


async def _pool(known, hosts) -> ConnectionPool:
    return ConnectionPool(trusting_settings(known, hosts))


async def test_output_streams_per_host_in_order(ssh_hosts, known, ssh_home):
    hosts = [await ssh_hosts(f"web-{i}") for i in range(3)]
    async with await _pool(known, hosts) as pool:
        targets = [target_for(h, host_id=h.name) for h in hosts]
        run = run_command(
            pool,
            targets,
            "for i in $(seq 1 300); do echo $OPSTUI_DEMO_HOST-$i; done; echo oops >&2",
        )
        events = [e async for e in run]
    assert (
        isinstance(events[-1], RunFinished) and sum(isinstance(e, RunFinished) for e in events) == 1
    )
    for host in hosts:
        mine = [e for e in events if getattr(e, "host", None) == host.name]
        assert isinstance(mine[0], HostStarted) and isinstance(mine[-1], HostFinished)
        stdout = "".join(e.text for e in mine if isinstance(e, Output) and e.stream == "stdout")
        assert stdout.splitlines() == [f"{host.name}-{i}" for i in range(1, 301)]
        assert (
            "".join(e.text for e in mine if isinstance(e, Output) and e.stream == "stderr")
            == "oops\n"
        )
        assert mine[-1].status == "ok" and mine[-1].exit_status == 0 and mine[-1].duration > 0
    assert run.summary.succeeded == tuple(h.name for h in hosts) and run.summary.ok


async def test_a_host_dropping_mid_command_fails_that_host_only(ssh_hosts, known, ssh_home):
    stays, drops = await ssh_hosts("stays"), await ssh_hosts("drops")
    async with await _pool(known, [stays, drops]) as pool:
        targets = [target_for(h, host_id=h.name) for h in (stays, drops)]
        run = run_command(pool, targets, "echo start; sleep 1; echo end")
        finished = {}
        async for event in run:
            if isinstance(event, Output) and event.host == "drops" and "start" in event.text:
                drops.drop_connections()
            if isinstance(event, HostFinished):
                finished[event.host] = event
    assert finished["stays"].status == "ok" and run.results["stays"].stdout == "start\nend\n"
    assert finished["drops"].status == "failed" and finished["drops"].error_kind == "disconnected"
    assert "disconnected" in finished["drops"].error and "\n" not in finished["drops"].error
    assert run.summary.failed == ("drops",) and run.summary.succeeded == ("stays",)


async def test_cancel_stops_every_host_and_the_remote_commands(ssh_hosts, known, ssh_home):
    hosts = [await ssh_hosts("c1"), await ssh_hosts("c2")]
    async with await _pool(known, hosts) as pool:
        run = run_command(
            pool, [target_for(h, host_id=h.name) for h in hosts], "echo started; sleep 30"
        )
        started = set()
        async for event in run:
            if isinstance(event, Output):
                started.add(event.host)
                if started == {"c1", "c2"}:
                    run.cancel()
        assert run.summary.cancelled == ("c1", "c2") and not run.summary.ok
        assert all(r.status == "cancelled" for r in run.results.values())
        await until(lambda: not any(h._children for h in hosts), what="remote commands killed")


async def test_output_is_capped_per_host_and_batches_coalesce(ssh_hosts, known, ssh_home):
    host = await ssh_hosts("loud")
    total = 4_000_000
    async with await _pool(known, [host]) as pool:
        run = run_command(
            pool, [target_for(host, host_id="loud")], f"head -c {total} /dev/zero | tr '\\0' x | fold -w 99",
            keep_bytes=64 * 1024, queue_size=8,
        )  # fmt: skip
        received = 0
        batches = 0
        outputs_in_batches = []
        async for batch in run.batches():
            batches += 1
            outputs = [e for e in batch if isinstance(e, Output)]
            outputs_in_batches.append(len(outputs))
            received += sum(len(e.text) for e in outputs)
    lines = total // 99 + (1 if total % 99 else 0)
    assert received == total + lines - 1  # every byte streamed, in order...
    result = run.results["loud"]
    assert len(result.stdout) == 64 * 1024  # ...but only the tail kept
    finished_dropped = result.stdout_tail.dropped
    assert finished_dropped == total + lines - 1 - 64 * 1024
    assert max(outputs_in_batches) <= 1, "adjacent output of one stream is merged in a batch"
    assert run._queue.maxsize == 8


def test_powershell_command_is_encoded_utf16le():
    script = "Get-Process | Where-Object { $_.CPU -gt 10 } ; echo 'ünï \"q\"'"
    line = powershell_command(script)
    assert line.startswith("powershell -NoProfile -NonInteractive -EncodedCommand ")
    encoded = line.rsplit(" ", 1)[1]
    assert base64.b64decode(encoded).decode("utf-16-le") == script
    assert decode_powershell_command(line) == script
    windows = SshTarget("127.0.0.1", 22, "Administrator", is_windows=True)
    assert windows.remote_command("hostname") == powershell_command("hostname")
    assert SshTarget("127.0.0.1").remote_command("hostname") == "hostname"


async def test_windows_hosts_run_through_powershell(
    ssh_hosts, known, ssh_home, tmp_path, monkeypatch
):
    """A fake `powershell` on the server's PATH proves what a Windows host receives."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "powershell"
    fake.write_text(
        "#!/usr/bin/env python3\nimport base64, sys\nargs = sys.argv[1:]\n"
        "print('ARGS', ' '.join(args[:-1]))\n"
        "print('SCRIPT', base64.b64decode(args[-1]).decode('utf-16-le'))\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}:{__import__('os').environ['PATH']}")
    host = await ssh_hosts("win")
    async with await _pool(known, [host]) as pool:
        run = run_command(
            pool, [target_for(host, host_id="win", is_windows=True)], "Get-Date; 'a b' | Out-Host"
        )
        await run.wait()
    out = run.results["win"].stdout.splitlines()
    assert out == [
        "ARGS -NoProfile -NonInteractive -EncodedCommand",
        "SCRIPT Get-Date; 'a b' | Out-Host",
    ]


def test_probe_parsers():
    linux = parse_linux_probe(
        "3600.5 7000.1\n0.50 0.25 0.10 1/200 999\nMemTotal:  1000 kB\nMemAvailable:  250 kB\n"
        "/dev/sda1 1000 600 400 60% /\n"
    )
    assert linux == {
        "uptime_s": 3600, "load": [0.5, 0.25, 0.1], "mem_total_kb": 1000, "mem_available_kb": 250,
        "mem_used_pct": 75.0, "disk_root_total_kb": 1000, "disk_root_used_pct": 60.0,
    }  # fmt: skip
    windows = parse_windows_probe(
        '{"uptime_s":86400,"cpu_load_pct":12,"mem_total_kb":2000,"mem_available_kb":500,'
        '"disk_root_total_kb":1000,"disk_root_free_kb":100}'
    )
    assert windows["mem_used_pct"] == 75.0 and windows["disk_root_used_pct"] == 90.0
    assert windows["cpu_load_pct"] == 12 and windows["uptime_s"] == 86400
