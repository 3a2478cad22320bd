"""The embedded backend on its own event-loop thread.

`opstui` starts this before it imports the UI, so Postgres boots while Python
imports Textual and supabase-py, and afterwards the gateway's work (bcrypt,
JSON, per-subscriber RLS checks) never runs on the UI's event loop. The demo's
own runners (backend/demo_runner.py) run on this thread too, so deployments
really run while the UI's loop only draws them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from typing import Any

from opstui.backend.embedded import BackendInfo, EmbeddedBackend


class BackgroundBackend:
    def __init__(self, **options: Any) -> None:
        options.setdefault("demo_live_runs", True)  # the TUI demo runs them at once
        self.backend = EmbeddedBackend(**options)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._serve, name="opstui-backend", daemon=True)
        self.thread.start()
        self._started: concurrent.futures.Future[BackendInfo] = asyncio.run_coroutine_threadsafe(
            self.backend.start(), self.loop
        )

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    async def wait(self) -> BackendInfo:
        """The backend's info once it serves (re-raises a start failure)."""
        return await asyncio.wrap_future(self._started)

    def start_deferred_ssh_demo(self) -> None:
        self.loop.call_soon_threadsafe(self.backend.start_deferred_ssh_demo)

    def start_demo_runners(self) -> None:
        """Start the demo's runners on the backend's thread (after its SSH hosts)."""

        def start() -> None:
            task = self.loop.create_task(self.backend.start_demo_runners(), name="opstui-demo-runners")
            task.add_done_callback(_log_failure)

        self.loop.call_soon_threadsafe(start)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the backend and its thread. Blocking: call it from a worker thread."""
        if self.loop.is_closed():
            return
        try:
            asyncio.run_coroutine_threadsafe(self.backend.stop(), self.loop).result(timeout)
            # Leftovers (the runners' Realtime push timers) end here, not as "Task was
            # destroyed" noise on the terminal once the loop is gone.
            with contextlib.suppress(TimeoutError):
                asyncio.run_coroutine_threadsafe(_cancel_the_rest(), self.loop).result(5)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout)
            self.loop.close()


async def _cancel_the_rest() -> None:
    current = asyncio.current_task()
    rest = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    for task in rest:
        task.cancel()
    await asyncio.gather(*rest, return_exceptions=True)


def _log_failure(task: asyncio.Future) -> None:
    if not task.cancelled() and task.exception() is not None:
        import logging

        logging.getLogger(__name__).warning("the demo runners did not start: %s", task.exception())
