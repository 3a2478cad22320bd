"""The real deployments screen with 100k deployments in one team, end to end.

An ephemeral embedded backend (on its own thread, as `opstui` runs it) gets N extra
deployments in the demo's Platform team, in one SQL statement. The real app then signs
in through supabase-py, loads the snapshot through the gateway page by page, and keys
are typed into the deployments screen's filter box (opened with "/"), each timed to the
frame Textual hands to the terminal driver. Peak RSS is the app's process (Postgres
runs in processes of its own).
Usage: python benchmarks/bench_tui_filter.py [--rows N]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine  # noqa: E402
from bench_table import FrameClock, summary, type_filters  # noqa: E402

SEED = """
insert into public.deployments (name, status, schedule_type, team_id, tenant_id, creator_id,
  user_id, created_at, started_at, completed_at, host_ids)
select format('%%s-%%s-%%s',
         (array['api','web','billing','search','ledger','auth','edge','batch'])[1 + i %% 8],
         (array['prod','staging','canary'])[1 + (i / 8) %% 3], i),
       (array['pending','scheduled','in_progress','success','failed','cancelled'])[1 + i %% 6],
       'now', t.id, t.tenant_id, admin.id, admin.id,
       now() - make_interval(mins => i),
       case when i %% 6 in (3, 4) then now() - make_interval(mins => i) end,
       case when i %% 6 in (3, 4) then now() - make_interval(mins => i) + interval '3 minutes' end,
       '{}'::uuid[]
from public.teams t
cross join lateral (
  select m.profile_id as id from public.team_members m
  where m.team_id = t.id and m.role = 'admin' order by m.profile_id limit 1
) admin
cross join generate_series(1, %(rows)s) as i
where t.name = 'Platform'
"""


async def main(rows: int) -> None:
    import psycopg

    from opstui.backend.background import BackgroundBackend
    from opstui.connect import EmbeddedConnector
    from opstui.session import Target
    from opstui.ui.app import OpsApp
    from opstui.ui.screens.resource import ResourceScreen

    background = BackgroundBackend(ephemeral=True, ssh_demo_hosts=False)
    info = await background.wait()
    started = time.perf_counter()
    with psycopg.connect(info.db_url) as conn:
        # A bulk load: no resource-limit or change-capture triggers (superuser only).
        conn.execute("set session_replication_role = replica")
        conn.execute(SEED, {"rows": rows})
        conn.commit()
        total = conn.execute(
            "select count(*) from public.deployments d join public.teams t on t.id = d.team_id "
            "where t.name = 'Platform'"
        ).fetchone()[0]
    print(
        f"seeded {total:,} deployments in the Platform team in {time.perf_counter() - started:.1f} s"
    )

    connector = EmbeddedConnector(
        target=Target("embedded", "", "", is_embedded=True), background=background
    )
    app = OpsApp(connector)
    async with app.run_test(size=(160, 50)) as pilot:
        clock = FrameClock(app)
        started = time.perf_counter()

        def loaded() -> bool:
            store = app.store
            return (
                store is not None and store.team_id is not None and store.is_complete("deployments")
            )

        first_page = None
        while not loaded():
            if first_page is None and app.store is not None and app.store.rows("deployments"):
                first_page = time.perf_counter() - started
            await asyncio.sleep(0.005)
        if first_page is not None:
            print(f"sign-in to the first page of deployments in the store: {first_page:.2f} s")
        print(
            f"sign-in to all {len(app.store.rows('deployments')):,} deployments in the store: "
            f"{time.perf_counter() - started:.1f} s"
        )
        await pilot.press("4")
        while not (isinstance(app.screen, ResourceScreen) and len(app.screen.table.view) == total):
            await asyncio.sleep(0.05)
        table = app.screen.table
        while table._warming is not None:
            await asyncio.sleep(0.01)
        repaint, counted = await type_filters(pilot, clock, table, open_key="slash")
        print(
            f"deployments screen, filter keystroke to repaint: {summary(repaint)} keys (target 50 ms)"
        )
        print(f"deployments screen, filter keystroke to final row count: {summary(counted)} keys")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of the app's process {peak:.0f} MiB (target 500 MB)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    print(machine())
    asyncio.run(main(args.rows))
