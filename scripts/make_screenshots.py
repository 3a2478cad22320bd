"""Make screenshots/*.svg from the demo: the real app on the embedded backend.

Usage: python scripts/make_screenshots.py [--out screenshots]
Data is seeded at a fixed time and the app's clock is fixed to it, so the
pictures only change when the UI does.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime
from pathlib import Path

from opstui.backend.embedded import EmbeddedBackend
from opstui.connect import EmbeddedConnector
from opstui.session import Target
from opstui.store import ConnectionState
from opstui.ui.app import OpsApp

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SIZE = (140, 40)
SHOTS = [
    ("overview", ()),
    ("hosts", ("2",)),
    ("deployments", ("4",)),
    ("deployment-detail", ("4", "down", "enter")),
    ("repositories", ("3",)),
    ("teams", ("1", "enter")),
    ("filter", ("4", "slash", "f", "a", "i", "l")),
    ("command-line", ("colon", "d", "e", "p")),
    ("help", ("4", "question_mark")),
    ("runs", ("colon", "r", "u", "n", "s", "enter")),
    ("run-view", ("colon", "r", "u", "n", "s", "enter", "enter")),
    ("cicd", ("5",)),
]


async def shoot(backend: EmbeddedBackend, name: str, keys: tuple[str, ...], out: Path) -> None:
    connector = EmbeddedConnector(
        target=Target("embedded", "", "", is_embedded=True), backend=backend, owns_backend=False
    )
    app = OpsApp(connector, clock=lambda: NOW, tick_seconds=0)
    async with app.run_test(size=SIZE) as pilot:
        while not (
            app.store
            and app.store.status.state is ConnectionState.LIVE
            and all(t.complete for t in app.store.tables.values())
        ):
            await pilot.pause(0.05)
        await pilot.pause(0.2)
        for key in keys:
            await pilot.press(key)
            await pilot.pause(0.2)
        app.save_screenshot(filename=f"{name}.svg", path=str(out))
    print(out / f"{name}.svg")


async def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    backend = EmbeddedBackend(ephemeral=True, demo_now=NOW, ssh_demo_hosts=False)
    await backend.start()
    try:
        for name, keys in SHOTS:
            await shoot(backend, name, keys, out)
    finally:
        await backend.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parents[1] / "screenshots"
    )
    asyncio.run(main(parser.parse_args().out))
