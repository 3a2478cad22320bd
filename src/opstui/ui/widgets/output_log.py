"""The multi-host run screen's log: the shared `LogView`, fed ready-made lines.

The renderer (capped buffer, lazy strips, follow, wrap, search, ANSI) lives in
`log_view.py`, shared with the run and build views through `log_pane.py`; this
module keeps the multi-host screen's `(prefix, prefix style, text, stream)` API.
"""

from __future__ import annotations

from opstui.ui.widgets.log_view import LogView, printable

__all__ = ["OutputLog", "printable"]


class OutputLog(LogView):
    """A `LogView` without per-source tails (the multi-host screen keeps its own)."""

    def __init__(
        self,
        *,
        max_lines: int = 5000,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(max_lines=max_lines, name=name, id=id, classes=classes)
