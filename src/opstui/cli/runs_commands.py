"""The bodies of `deploy run`, `runs ...` and `runner` (async, signed in like other headless commands)."""

from __future__ import annotations

import argparse

from opstui.errors import CliError


async def deploy_run(args: argparse.Namespace) -> int:
    raise CliError("deployment runs are not available yet in this build")


async def runs(args: argparse.Namespace) -> int:
    raise CliError("deployment runs are not available yet in this build")


async def runner(args: argparse.Namespace) -> int:
    raise CliError("the runner is not available yet in this build")
