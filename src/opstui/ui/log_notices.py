"""While the TUI owns the terminal, logs go to a file and problems become notifications.

Anything written to stderr would be painted across the screen (a gateway
warning with its traceback once was). The file keeps the details; the user
gets one line, at most one every few seconds, naming where the details are.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

from opstui import locations

FORMAT = "%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"


class NotifyingHandler(logging.Handler):
    """Warnings and errors from any thread, as one-line notifications on the app."""

    def __init__(self, app: Any, log_path: Path, *, min_gap: float = 3.0) -> None:
        super().__init__(level=logging.WARNING)
        self.app = app
        self.log_path = log_path
        self.min_gap = min_gap
        self._last = 0.0
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._last < self.min_gap:
                return  # the file has every one; the screen gets a digest
            self._last = now
        first_line = record.getMessage().splitlines()[0][:200] if record.getMessage() else ""
        text = f"{first_line} (details in {self.log_path})"
        severity = "error" if record.levelno >= logging.ERROR else "warning"
        try:
            if getattr(self.app, "_thread_id", None) == threading.get_ident():
                self.app.notify(text, title="opstui", severity=severity, timeout=10)
            else:
                self.app.call_from_thread(
                    self.app.notify, text, title="opstui", severity=severity, timeout=10
                )
        except Exception:  # noqa: BLE001 - the app may be gone; the file still has it
            pass


@contextmanager
def logs_to_file(app: Any, *, verbose: bool = False) -> Iterator[Path]:
    """Route the root logger to a rotating file (and the app) for the TUI's lifetime."""
    directory = locations.ensure_private_dir(locations.log_dir())
    path = directory / "opstui.log"
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    to_file = RotatingFileHandler(path, maxBytes=5_000_000, backupCount=2, encoding="utf-8")
    to_file.setFormatter(logging.Formatter(FORMAT))
    root.handlers = [to_file, NotifyingHandler(app, path)]
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    try:
        yield path
    finally:
        root.handlers = saved_handlers
        root.setLevel(saved_level)
        to_file.close()
