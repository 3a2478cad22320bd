"""Deployment runs, with no Textual: the runner and what reads runs.

Module map: runner (Runner: claim loop, Realtime wake-up + poll, heartbeats,
SIGTERM, lease expiry, schedules), execute (one run: git fetch, SFTP upload,
batches, per-host scripts, cancel), logsink (batched log writer with a run-wide
row budget), logstream (RunLogFollower / SeqMerge: stored then live chunks in
seq order, no gap, no duplicate), schedule (croniter ticks), gitfetch (the git
command), api (launch, cancel, list and find runs).

`from opstui.runs import Runner, RunLogFollower` imports lazily, so importing
`opstui.runs.schedule` (the form's cron validator) stays cheap.
"""

from __future__ import annotations

_LAZY = {
    "Runner": "opstui.runs.runner",
    "RunnerSettings": "opstui.runs.runner",
    "RunLogFollower": "opstui.runs.logstream",
    "LogChunk": "opstui.runs.logstream",
    "SeqMerge": "opstui.runs.logstream",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(name)
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = sorted(_LAZY)
