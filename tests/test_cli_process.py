"""`opstui` as a process: a closed terminal, a closed pipe, ctrl+c meant for a child.

Each case runs the real program the way a person meets it, in a pseudo-terminal
or a pipe, because the failures (an orphaned postmaster, a BrokenPipeError
traceback, opstui killed by ssh's ctrl+c) only exist at that level.
"""

from __future__ import annotations

import os
import pty
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from opstui.ui.screens.hosts import call_in_foreground


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child of ours still answers kill(0); it is gone for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "OPSTUI_CONFIG_DIR": str(tmp_path / "config"),
        "OPSTUI_DATA_DIR": str(tmp_path / "data"),
        "TERM": "xterm-256color",
        "COLUMNS": "100",
        "LINES": "30",
    }


@pytest.mark.timeout(180)
def test_closing_the_terminal_stops_the_embedded_postgres(tmp_path):
    """SIGHUP (tmux kill-session, a closed window) ends opstui and its postmaster."""
    env = _env(tmp_path)
    pid, master = pty.fork()
    if pid == 0:  # the child: opstui on the pseudo-terminal, as in a real window
        os.execvpe(sys.executable, [sys.executable, "-m", "opstui"], env)
    pid_file = tmp_path / "data" / "embedded" / "pgdata" / "postmaster.pid"
    output = bytearray()

    def drain() -> None:
        import select

        while select.select([master], [], [], 0)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                return
            if not chunk:
                return
            output.extend(chunk)

    try:

        def screen_text() -> str:
            drain()
            return re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", bytes(output)).decode(errors="replace")

        try:
            # "● live" in the header: signed in and subscribed, so Postgres is serving.
            _wait(lambda: "● live" in screen_text(), 120, "the first live screen")
        except AssertionError:
            raise AssertionError(
                f"no first screen; opstui wrote: {screen_text()[-1500:]!r}"
            ) from None
        # Read only now: while it initialises, the file names short-lived bootstrap servers.
        _wait(lambda: pid_file.exists(), 30, "postmaster.pid")
        postmaster = int(pid_file.read_text().split("\n")[0])
        assert postmaster > 0, "a postmaster, not a single-user bootstrap backend"
        os.kill(pid, signal.SIGHUP)
        os.close(master)
        master = -1
        _, status = os.waitpid(pid, 0)
        pid = 0
        assert os.WIFEXITED(status), f"opstui died of a signal: {status}"
        log = tmp_path / "data" / "embedded" / "postgres.log"
        try:
            _wait(lambda: not _alive(postmaster), 30, "the postmaster to stop")
        except AssertionError:
            tail = log.read_text()[-1500:] if log.exists() else ""
            raise AssertionError(
                f"postmaster outlived opstui (exit {os.WEXITSTATUS(status)}); log: {tail}"
            ) from None
    finally:
        if master >= 0:
            os.close(master)
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def test_a_closed_pipe_ends_quietly(tmp_path):
    """`opstui ... | head -1`: no BrokenPipeError traceback, as Unix tools do."""
    env = _env(tmp_path)
    # `migrations list` prints many lines without a backend; `head -1` leaves after one.
    result = subprocess.run(
        f"'{sys.executable}' -m opstui migrations list | head -1",
        shell=True,  # noqa: S602 - a fixed pipeline, as a user types it
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    assert result.stdout.count("\n") == 1
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr


def test_ctrl_c_at_a_native_ssh_prompt_reaches_only_ssh():
    """ctrl+c signals the whole foreground group: the child dies of it, opstui does not."""
    child = (
        "import os, signal, time\n"
        # The child keeps Python's default SIGINT (it was not inherited as ignored)...
        "assert signal.getsignal(signal.SIGINT) is signal.default_int_handler\n"
        # ...and ctrl+c reaches the terminal's whole foreground group: opstui and ssh.
        # (Sent to the two of them only: the test's process group also holds servers.)
        "os.kill(os.getppid(), signal.SIGINT)\n"
        "os.kill(os.getpid(), signal.SIGINT)\n"
        "time.sleep(5)\n"
    )
    code = call_in_foreground([sys.executable, "-c", child])
    assert code == -signal.SIGINT, f"the child died of ctrl+c (it exited {code})"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, "handler restored"
