"""Run as root, Postgres gets only its cluster, log and socket dir; never the secrets or repos."""

from __future__ import annotations

import asyncio
import os
import pwd
import subprocess
from pathlib import Path

import pytest

from opstui.backend import postgres
from opstui.runs import gitfetch

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the root-only path of the backend")


def _make_repo(path: Path) -> None:
    path.mkdir(parents=True)
    run = lambda *a: subprocess.run(["git", "-C", str(path), *a], check=True, capture_output=True)  # noqa: E731
    run("init", "-q", "-b", "main")
    (path / "README").write_text("hello\n")
    run("add", "README")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "first")


def test_second_start_keeps_secrets_and_repos_root_owned(tmp_path):
    data = tmp_path / "embedded"
    data.mkdir(mode=0o700)
    (data / "jwt_secret").write_text("s3cret")
    (data / "demo-accounts.json").write_text("{}")
    (data / "ssh-demo").mkdir()
    (data / "ssh-demo" / "host_key").write_text("key")
    _make_repo(data / "repos" / "platform-api.git")
    for _ in range(2):
        cluster = postgres.PostgresCluster(data)
        cluster.start()
        try:
            pg_user = pwd.getpwnam("pgserver")
            assert (data / "pgdata").stat().st_uid == pg_user.pw_uid
        finally:
            cluster.stop()
        # As an older opstui left it: everything handed to the postgres user.
        for path in [data / "jwt_secret", data / "repos", *(data / "repos").rglob("*")]:
            os.chown(path, pg_user.pw_uid, pg_user.pw_gid, follow_symlinks=False)
        os.chmod(data / "jwt_secret", 0o644)
    cluster = postgres.PostgresCluster(data)
    cluster.start()
    cluster.stop()
    for path in [data, data / "ssh-demo", data / "ssh-demo" / "host_key",
                 data / "demo-accounts.json", data / "jwt_secret",
                 *(data / "repos").rglob("*")]:
        assert path.lstat().st_uid == 0, path
    assert (data / "jwt_secret").stat().st_mode & 0o777 == 0o600
    assert (data / "repos").stat().st_mode & 0o777 == 0o700
    commit = asyncio.run(gitfetch.fetch(str(data / "repos" / "platform-api.git"), "main",
                                        tmp_path / "checkout"))
    assert len(commit) == 40


def test_fetch_of_a_repo_owned_by_another_user_works_and_errors_name_the_cause(tmp_path):
    repo = tmp_path / "other.git"
    _make_repo(repo)
    pg_user = postgres._pgserver_utils().ensure_user_exists("pgserver")
    for path in [repo, *repo.rglob("*")]:
        os.chown(path, pg_user.pw_uid, pg_user.pw_gid, follow_symlinks=False)
    commit = asyncio.run(gitfetch.fetch(str(repo), "main", tmp_path / "checkout"))
    assert len(commit) == 40
    with pytest.raises(gitfetch.GitFetchError) as missing:
        asyncio.run(gitfetch.fetch(str(tmp_path / "nowhere.git"), None, tmp_path / "c2"))
    message = str(missing.value)
    assert "and the repository exists" not in message and "\n" not in message
    assert "does not appear to be a git repository" in message
