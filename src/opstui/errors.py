"""User-facing errors shared by the command line and the data layer.

It sits below both (it imports nothing of opstui), so the runner, the headless
commands and the CLI entry point can raise and catch the same one-line error
without importing each other.
"""

from __future__ import annotations


class CliError(Exception):
    """A user-facing, one-line error: printed as `opstui: <message>`, exit code 1."""


EXIT_FAILURE = 1

__all__ = ["EXIT_FAILURE", "CliError"]
