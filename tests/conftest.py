"""Shared fixtures: a real, throwaway PostgreSQL and (later) the gateway.

Every test runs with OPSTUI_CONFIG_DIR and OPSTUI_DATA_DIR pointed at a temp
dir, so nothing touches the developer's real config or data.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest

_SANDBOX = tempfile.mkdtemp(prefix="opstui-test-home-")
os.environ["OPSTUI_CONFIG_DIR"] = os.path.join(_SANDBOX, "config")
os.environ["OPSTUI_DATA_DIR"] = os.path.join(_SANDBOX, "data")


@pytest.fixture(scope="session")
def cluster() -> Iterator["PostgresCluster"]:  # noqa: F821
    """One ephemeral PostgreSQL for the whole session (Unix socket only)."""
    from opstui.backend.postgres import PostgresCluster

    pg = PostgresCluster.temporary()
    pg.start()
    yield pg
    pg.stop()
