"""A build's log, stored then live, in seq order: the run log follower pointed at builds."""

from __future__ import annotations

from opstui.runs.logstream import LogChunk, RunLogFollower, SeqMerge


class BuildLogFollower(RunLogFollower):
    """`RunLogFollower` over `cicd_build_logs` / `cicd_builds` (`.run` is the build row)."""

    log_table = "cicd_build_logs"
    key_column = "build_id"
    parent_table = "cicd_builds"
    what = "build"
    _columns = "seq,stream,text,created_at"

    async def _parent(self) -> dict | None:
        from opstui.cicd import api

        return await api.get_build(self.client, self.run_id)

    @property
    def build_id(self) -> str:
        return self.run_id


__all__ = ["BuildLogFollower", "LogChunk", "SeqMerge"]
