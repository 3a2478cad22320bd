"""Deployment runs, measured end to end: launch, log delivery, throughput, fan-out, cancel.

    .venv/bin/python benchmarks/bench_runs.py [--launches 50] [--quick]

The embedded backend runs as `opstui serve --ephemeral` in a child process (as a
Supabase project would be elsewhere); a Runner and a second supabase-py client
(the "other teammate", signed in as another user) share this process; the SSH
hosts (asyncssh servers running real commands) run in another child process
(benchmarks/_ssh_servers.py). Scripts come from a real git repository.

1. launch -> first host log line on the other client's callback, p50/p99 (target 0.5 s / 1.5 s);
2. a line printed on a host -> the other client's callback, p50/p99 (target p99 300 ms);
3. 20 hosts printing as fast as they can: MB/s stored and delivered, and this
   process's event-loop lag p99 meanwhile (target < 50 ms);
4. 200 hosts, trivial script, batches of 50: the run vs the same fan-out with the
   SSH layer directly (run_command, 4 batches of 50, fresh connections) (target < 15 %);
5. cancel -> every remote process gone (10 hosts) (target < 5 s);
6. the row budget at 50 streaming hosts: rows/s and line latency p50/p99.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._machine import machine, median, percentile  # noqa: E402


def _git_repo(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True)
    for name, text in files.items():
        (root / name).write_text(text)
        (root / name).chmod(0o755)
    for args in (["init", "-q", "-b", "main"], ["add", "."],
                 ["-c", "user.name=b", "-c", "user.email=b@example.test", "commit", "-q", "-m", "b"]):  # fmt: skip
        subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)
    return root


class Bench:
    def __init__(self, backend, servers: list[dict], root: Path) -> None:
        self.backend = backend
        self.servers = servers
        self.root = root

    async def setup(self) -> None:
        from supabase import AsyncClientOptions, acreate_client

        info = self.backend.info

        async def client(email: str):
            c = await acreate_client(info.url, info.anon_key, options=AsyncClientOptions())
            password = next(u["password"] for u in info.users if u["email"] == email)
            await c.auth.sign_in_with_password({"email": email, "password": password})
            return c

        self.admin = await client("admin@acme.test")
        self.watcher = await client("dev@acme.test")
        team = (
            await self.admin.table("teams").select("id,tenant_id").eq("name", "Platform").execute()
        ).data[0]
        self.team, self.tenant = team["id"], team["tenant_id"]
        rows = [{"name": s["name"], "type": "ssh", "ip": "127.0.0.1", "port": s["port"], "user": s["user"],
                 "password": s["password"], "team_id": self.team} for s in self.servers]  # fmt: skip
        inserted = []
        for i in range(0, len(rows), 100):
            inserted += (await self.admin.table("hosts").insert(rows[i : i + 100]).execute()).data
        by_name = {r["name"]: r for r in inserted}
        self.hosts = [by_name[s["name"]] for s in self.servers]
        provider = (
            await self.admin.table("git_providers")
            .insert({"type": "github", "name": "bench"})
            .execute()
        ).data[0]
        self.provider = provider["id"]
        # The other client hears every log chunk of the team.
        self.arrivals: list[tuple[float, dict]] = []
        self.on_chunk = None
        channel = self.watcher.channel(f"bench-logs-{uuid.uuid4().hex[:6]}")
        channel.on_postgres_changes("INSERT", schema="public", table="deployment_run_logs",
                                    filter=f"team_id=eq.{self.team}", callback=self._chunk)  # fmt: skip
        joined = asyncio.Event()
        await channel.subscribe(lambda state, err: joined.set())
        await asyncio.wait_for(joined.wait(), 10)
        self.runner, self.runner_task = self._runner()

    def _chunk(self, payload) -> None:
        now = time.monotonic()
        record = payload["data"]["record"]
        self.arrivals.append((now, record))
        if self.on_chunk is not None:
            self.on_chunk(now, record)

    def _runner(self, **settings):
        import asyncssh

        from opstui.runs.runner import Runner, RunnerSettings
        from opstui.ssh import ConnectionPool, KnownHosts, SshSettings, rpc_password_source

        known = KnownHosts(user_path=self.root / "u_kh", own_path=self.root / "o_kh")
        if not known.own_file().exists():
            for s in self.servers:
                known.remember("127.0.0.1", s["port"], asyncssh.import_public_key(s["key"]))
        self.known = known
        pool = ConnectionPool(SshSettings(known_hosts=known, agent_path=None, client_keys=None,
                                          password_source=rpc_password_source(self.admin)))  # fmt: skip
        values = {"name": "bench-runner", "schedules": False, "poll_interval": 5.0,
                  "host_concurrency": 256, **settings}  # fmt: skip
        runner = Runner(self.admin, RunnerSettings(**values), pool=pool)
        return runner, asyncio.create_task(runner.run())

    async def deployment(self, files: dict[str, str], hosts: list[dict], **columns) -> dict:
        repo = _git_repo(self.root / f"repo-{uuid.uuid4().hex[:8]}", files)
        repository = (await self.admin.table("repositories").insert({
            "provider_id": self.provider, "provider_type": "github", "name": repo.name, "url": str(repo),
            "default_branch": "main", "team_id": self.team}).execute()).data[0]  # fmt: skip
        row = {"name": f"bench-{uuid.uuid4().hex[:6]}", "repository_id": repository["id"],
               "team_id": self.team, "tenant_id": self.tenant, "schedule_type": "now",
               "scripts_path": list(files), "host_ids": [h["id"] for h in hosts], **columns}  # fmt: skip
        return (await self.admin.table("deployments").insert(row).execute()).data[0]

    async def wait(self, run_id: str, timeout: float = 300) -> dict:
        from opstui.runs import api

        deadline = time.monotonic() + timeout
        while True:
            run = await api.get_run(self.admin, run_id)
            if run["status"] in api.TERMINAL:
                return run
            if time.monotonic() > deadline:
                raise RuntimeError(f"run {run_id} still {run['status']}")
            await asyncio.sleep(0.05)

    # -- 1 ------------------------------------------------------------------------------------

    async def launch_to_first_line(self, launches: int) -> dict:
        from opstui.runs import api

        deployment = await self.deployment({"hi.sh": "#!/bin/sh\necho hi\n"}, self.hosts[:1])
        samples = []
        for _ in range(launches):
            first = asyncio.get_running_loop().create_future()
            run_box: dict = {}

            def on_chunk(now, record, first=first, run_box=run_box):
                if (
                    record.get("host_id")
                    and record.get("run_id") == run_box.get("id")
                    and not first.done()
                ):
                    first.set_result(now)

            self.on_chunk = on_chunk
            started = time.monotonic()
            run_box["id"] = await api.launch(self.admin, deployment["id"])
            # (a chunk could arrive before launch() returns: look back once)
            for now, record in self.arrivals[-50:]:
                on_chunk(now, record)
            samples.append(await asyncio.wait_for(first, 30) - started)
            await self.wait(run_box["id"])
        self.on_chunk = None
        return {"p50_s": median(samples), "p99_s": percentile(samples, 99), "n": len(samples)}

    # -- 2 ------------------------------------------------------------------------------------

    async def line_latency(self, hosts: int = 1, seconds: float = 6, every: float = 0.05) -> dict:
        from opstui.runs import api

        script = (f"#!/usr/bin/env python3\nimport time\nend = time.time() + {seconds}\n"
                  f"while time.time() < end:\n    print('T', time.time(), flush=True)\n    time.sleep({every})\n")  # fmt: skip
        deployment = await self.deployment({"tick.py": script}, self.hosts[:hosts])
        lat: list[float] = []
        offset = time.time() - time.monotonic()
        rows_before = len(self.arrivals)
        run_id = await api.launch(self.admin, deployment["id"])
        run = await self.wait(run_id)
        chunks = [(t, r) for t, r in self.arrivals[rows_before:] if r.get("run_id") == run_id]
        for t, record in chunks:
            for line in (record.get("text") or "").splitlines():
                if line.startswith("T "):
                    lat.append(t + offset - float(line.split()[1]))
        span = max(t for t, _ in chunks) - min(t for t, _ in chunks)
        rows = len([1 for _, r in chunks if r.get("host_id")])
        return {"p50_ms": 1000 * median(lat), "p99_ms": 1000 * percentile(lat, 99), "lines": len(lat),
                "host_rows": rows, "rows_per_s": rows / max(span, 1e-9), "status": run["status"]}  # fmt: skip

    # -- 3 ------------------------------------------------------------------------------------

    async def throughput(self, hosts: int = 20, mb_each: float = 2.0) -> dict:
        from opstui.runs import api

        size = int(mb_each * 1_000_000)
        script = f"#!/bin/sh\nyes 'the quick brown fox jumps over the lazy dog 0123456789 0123456789 abcdefghij' | head -c {size}\n"
        deployment = await self.deployment({"flood.sh": script}, self.hosts[:hosts])
        lags: list[float] = []
        stop = asyncio.Event()

        async def probe():
            while not stop.is_set():
                t = time.monotonic()
                await asyncio.sleep(0.01)
                lags.append(time.monotonic() - t - 0.01)

        probing = asyncio.create_task(probe())
        before = len(self.arrivals)
        started = time.monotonic()
        run_id = await api.launch(self.admin, deployment["id"])
        run = await self.wait(run_id)
        stored_at = time.monotonic()
        expected = hosts * size

        def delivered() -> int:
            return sum(len(r.get("text") or "") for _, r in self.arrivals[before:]
                       if r.get("run_id") == run_id and r.get("stream") == "stdout")  # fmt: skip

        while delivered() < expected:
            if time.monotonic() - stored_at > 60:
                break
            await asyncio.sleep(0.05)
        delivered_at = time.monotonic()
        stop.set()
        await probing
        got = delivered()
        stored = 0
        offset = 0
        while True:  # what the table holds, page by page
            page = (await self.admin.table("deployment_run_logs").select("seq,text,host_id,stream").eq("run_id", run_id)
                    .order("seq").range(offset, offset + 999).execute()).data  # fmt: skip
            stored += sum(len(p["text"]) for p in page if p["stream"] == "stdout")
            offset += len(page)
            if len(page) < 1000:
                break
        return {"status": run["status"], "mb": expected / 1e6, "stored_mb_s": expected / 1e6 / (stored_at - started),
                "delivered_mb_s": got / 1e6 / (delivered_at - started), "complete": got == expected, "stored_complete": stored == expected, "rows": offset,
                "loop_lag_p99_ms": 1000 * percentile(lags, 99)}  # fmt: skip

    # -- 4 ------------------------------------------------------------------------------------

    async def fan_out(self, hosts: int = 200, batch: int = 50) -> dict:
        from opstui.runs import api
        from opstui.ssh import ConnectionPool, SshSettings, SshTarget, rpc_password_source
        from opstui.ssh.audit import SupabaseAudit
        from opstui.ssh.exec import run_command

        targets = self.hosts[:hosts]
        deployment = await self.deployment({"true.sh": "#!/bin/sh\ntrue\n"}, targets,
                                           rollout_batch_size=str(batch))  # fmt: skip
        runs, direct = [], []
        for _ in range(3):
            # The runner, with fresh connections (a new runner and pool per round).
            self.runner.stop()
            await self.runner_task
            await self.runner.pool.close()
            self.runner, self.runner_task = self._runner(concurrency=1)
            started = time.monotonic()
            run = await self.wait(await api.launch(self.admin, deployment["id"]))
            assert run["status"] == "succeeded", run
            runs.append(time.monotonic() - started)
            pool = ConnectionPool(SshSettings(known_hosts=self.known, agent_path=None, client_keys=None,
                                              password_source=rpc_password_source(self.admin)))  # fmt: skip
            started = time.monotonic()
            ssh_targets = [SshTarget.from_host(h) for h in targets]
            for i in range(0, hosts, batch):
                # Audited, as `opstui exec` and the runner are.
                summary = await run_command(pool, ssh_targets[i : i + batch], "true", concurrency=batch,
                                            audit=SupabaseAudit(self.admin)).wait()  # fmt: skip
                assert summary.ok, summary.line()
            direct.append(time.monotonic() - started)
            await pool.close()
        r, d = median(runs), median(direct)
        return {"run_s": r, "ssh_layer_s": d, "overhead_pct": 100 * (r - d) / d}

    # -- 5 ------------------------------------------------------------------------------------

    async def cancel(self, hosts: int = 10) -> dict:
        from opstui.runs import api

        script = '#!/bin/sh\necho $$ > "$HOME/bench-long.pid"\nexec sleep 300\n'
        targets = self.hosts[:hosts]
        sandboxes = [self.root / "servers" / f"h{i:03d}" / "sandbox" for i in range(hosts)]
        for box in sandboxes:
            (box / "bench-long.pid").unlink(missing_ok=True)
        deployment = await self.deployment({"long.sh": script}, targets)
        run_id = await api.launch(self.admin, deployment["id"])
        deadline = time.monotonic() + 60
        while not all(
            (b / "bench-long.pid").exists() and (b / "bench-long.pid").read_text().strip()
            for b in sandboxes
        ):
            if time.monotonic() > deadline:
                raise RuntimeError("the long scripts never started")
            await asyncio.sleep(0.05)
        pids = [int((b / "bench-long.pid").read_text()) for b in sandboxes]
        started = time.monotonic()
        await api.cancel(self.admin, run_id)
        while any(_alive(p) for p in pids):
            await asyncio.sleep(0.02)
        gone = time.monotonic() - started
        run = await self.wait(run_id)
        return {
            "processes_gone_s": gone,
            "run_cancelled_s": time.monotonic() - started,
            "status": run["status"],
        }


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def main(args) -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-runs-"))
    hosts = 60 if args.quick else 200
    child = subprocess.Popen([sys.executable, str(Path(__file__).parent / "_ssh_servers.py"), str(hosts),
                              str(root / "servers")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")})  # fmt: skip
    servers = json.loads(child.stdout.readline())
    serve = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "opstui", "serve", "--ephemeral", "--json",
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        env={**os.environ, "OPSTUI_DATA_DIR": str(root / "serve-data"), "OPSTUI_CONFIG_DIR": str(root / "cfg")},
    )  # fmt: skip
    info = json.loads(await asyncio.wait_for(serve.stdout.readline(), 120))
    backend = SimpleNamespace(info=SimpleNamespace(**info))
    bench = Bench(backend, servers, root)
    results = {}
    try:
        await bench.setup()
        print(machine())
        print(
            f"when: {datetime.now(UTC):%Y-%m-%d %H:%M UTC}; {hosts} SSH hosts in a child process",
            flush=True,
        )
        only = set(args.only.split(",")) if args.only else None

        def wanted(n: int) -> bool:
            return only is None or str(n) in only

        if wanted(1):
            results["launch_to_first_line"] = r = await bench.launch_to_first_line(args.launches)
            print(f"1. launch -> first host line on another client: p50 {r['p50_s']:.3f} s, p99 {r['p99_s']:.3f} s "
              f"({r['n']} launches; target 0.5 / 1.5 s)", flush=True)  # fmt: skip
        if wanted(2):
            results["line_latency"] = r = await bench.line_latency()
            print(f"2. host line -> other client's callback: p50 {r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms "
              f"({r['lines']} lines, 1 host; target p99 300 ms)", flush=True)  # fmt: skip
        if wanted(3):
            results["throughput"] = r = await bench.throughput()
            print(f"3. 20 hosts flooding {r['mb']:.0f} MB: stored {r['stored_mb_s']:.2f} MB/s, delivered "
              f"{r['delivered_mb_s']:.2f} MB/s, stored complete={r['stored_complete']} delivered complete={r['complete']} "
              f"({r['rows']} rows), event-loop lag p99 "
              f"{r['loop_lag_p99_ms']:.0f} ms", flush=True)  # fmt: skip
        fan = 50 if args.quick else 200
        if wanted(4):
            results["fan_out"] = r = await bench.fan_out(fan, 50 if not args.quick else 25)
            print(f"4. {fan} hosts, trivial script, batches: run {r['run_s']:.2f} s vs SSH layer "
              f"{r['ssh_layer_s']:.2f} s: overhead {r['overhead_pct']:.0f}% (target < 15%)", flush=True)  # fmt: skip
        if wanted(5):
            results["cancel"] = r = await bench.cancel()
            print(f"5. cancel -> every remote process gone (10 hosts): {r['processes_gone_s']:.2f} s; run "
              f"{r['status']} after {r['run_cancelled_s']:.2f} s (target < 5 s)", flush=True)  # fmt: skip
        if wanted(6):
            results["row_budget_50"] = r = await bench.line_latency(hosts=50, seconds=10, every=0.1)
            print(f"6. 50 hosts streaming a line / 100 ms: {r['rows_per_s']:.1f} rows/s (budget 10); "
              f"line latency p50 {r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms", flush=True)  # fmt: skip
    finally:
        bench.runner.stop()
        await asyncio.wait_for(bench.runner_task, 60)
        await bench.runner.pool.close()
        serve.terminate()
        await serve.wait()
        child.stdin.close()
        child.wait(30)
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--launches", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="fewer hosts (a smoke run)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--only", default="", help="measures to run, e.g. 1,4 (default: all)")
    asyncio.run(main(parser.parse_args()))
