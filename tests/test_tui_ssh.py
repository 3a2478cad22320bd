"""Pilot tests of the SSH UI: the terminal widget, session tabs, multi-host runs,
host-key prompts and permission-hidden keys.

The terminal widget is driven over a local PTY (a real program on a real
pseudo-terminal); everything else runs against the real embedded backend and
its demo SSH hosts (asyncssh servers on 127.0.0.1, backend/demo_ssh.py).
Every wait is on a condition, never a sleep.
"""

from __future__ import annotations

import asyncio
import fcntl
import gc
import os
import pty
import struct
import sys
import termios
import textwrap
import time
from pathlib import Path

import psycopg
import pytest
from textual import events
from textual.app import App, ComposeResult
from textual.widgets import Input, Tabs

import opstui.ui
from opstui.ssh.known_hosts import KnownHosts, fingerprint
from opstui.ui.screens.hostkey import HostKeyScreen
from opstui.ui.screens.hosts import HostsScreen, native_ssh_argv
from opstui.ui.screens.multirun import MultiRunScreen, RunPrompt
from opstui.ui.screens.sessions import SessionsScreen
from opstui.ui.ssh_bridge import ssh_for
from opstui.ui.widgets.output_log import OutputLog
from opstui.ui.widgets.terminal import BACKLOG_LIMIT, TerminalView
from tests.tui_support import SIZE, make_app, ready, wait_for

# -- a local program on a PTY, shaped like ssh/pty.py's PtySession --------------------------


class LocalPty:
    """`argv` on a fresh pseudo-terminal (its controlling tty, so SIGWINCH works)."""

    def __init__(self, argv: list[str], cols: int = 80, rows: int = 24) -> None:
        self.argv, self.cols, self.rows = argv, cols, rows
        self.resizes: list[tuple[int, int]] = []
        self.exit_status: int | None = None
        self.written = bytearray()

    async def start(self) -> LocalPty:
        master, slave = pty.openpty()
        _winsize(master, self.cols, self.rows)
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=dict(os.environ, TERM="xterm-256color"),
            start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        )
        os.close(slave)
        os.set_blocking(master, False)
        self.master = master
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        asyncio.get_running_loop().add_reader(master, self._readable)
        return self

    def _readable(self) -> None:
        try:
            data = os.read(self.master, 65536)
        except OSError:
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(self.master)
        self.queue.put_nowait(data)

    def __aiter__(self):
        return self._read()

    async def _read(self):
        while data := await self.queue.get():
            yield data
        self.exit_status = await self.proc.wait()

    def write(self, data: bytes) -> None:
        self.written += data
        os.write(self.master, data)

    def resize(self, cols: int, rows: int) -> None:
        self.resizes.append((cols, rows))
        _winsize(self.master, cols, rows)

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


def _winsize(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


# A tiny full-screen program: alternate screen, cursor addressing, colours, raw keys,
# SIGWINCH; 'q' restores the main screen and exits 7.
FULLSCREEN = textwrap.dedent(
    r"""
    import os, signal, sys, termios, tty
    out = sys.stdout
    def size(*_):
        cols, rows = os.get_terminal_size(0)
        out.write(f"\x1b7\x1b[1;1H\x1b[2Ksize={cols}x{rows}\x1b8"); out.flush()
    print("before-alt: the shell's screen")
    old = termios.tcgetattr(0)
    tty.setraw(0)
    out.write("\x1b[?1049h\x1b[2J\x1b[H")
    size()
    out.write("\x1b[5;10H\x1b[1;31mRED\x1b[0m")
    out.write("\x1b[6;10H\x1b[38;5;82mG256\x1b[0m \x1b[38;2;10;20;30;48;2;200;100;50mTRUE\x1b[0m")
    out.write("\x1b[7;10H\x1b[4munder\x1b[0m \x1b[7mrev\x1b[0m")
    out.write("\x1b[20;30Hready>"); out.flush()
    signal.signal(signal.SIGWINCH, size)
    keys = []
    while True:
        data = os.read(0, 64)
        if data == b"q":
            break
        keys.append(data)
        out.write(f"\x1b[10;1H\x1b[2Kkeys={keys!r}\x1b[20;36H"); out.flush()
    out.write("\x1b[?1049l"); out.flush()
    termios.tcsetattr(0, termios.TCSADRAIN, old)
    sys.exit(7)
    """
)


class TerminalApp(App):
    CSS_PATH = str(Path(opstui.ui.__file__).parent / "app.tcss")

    def __init__(self, session=None, history: int = 5000) -> None:
        super().__init__()
        self.session = session
        self.history = history
        self.released = 0
        self.ended: list[int | None] = []

    def compose(self) -> ComposeResult:
        yield TerminalView(self.session, history=self.history, id="term")

    def on_mount(self) -> None:
        self.query_one(TerminalView).focus()

    def on_terminal_view_released(self, message: TerminalView.Released) -> None:
        self.released += 1
        self.set_focus(None)

    def on_terminal_view_session_ended(self, message: TerminalView.SessionEnded) -> None:
        self.ended.append(message.exit_status)


def _segments(view: TerminalView, y: int):
    return list(view.render_line(y))


def _style_at(view: TerminalView, y: int, x: int):
    """The Rich style of the rendered cell at (x, y)."""
    position = 0
    for segment in _segments(view, y):
        if position <= x < position + len(segment.text):
            return segment.style
        position += len(segment.text)
    raise AssertionError(f"no cell at {x},{y}")


async def test_terminal_renders_a_full_screen_program_and_passes_keys():
    session = await LocalPty([sys.executable, "-c", FULLSCREEN], cols=80, rows=24).start()
    app = TerminalApp(session)
    async with app.run_test(size=(100, 30)) as pilot:
        view = app.query_one(TerminalView)
        await wait_for(pilot, lambda: "ready>" in view.lines[19], what="program drew its screen")
        # The widget's size reached pyte and the session (and the program saw it).
        assert (view.screen_model.columns, view.screen_model.lines) == (100, 30)
        assert session.resizes[-1] == (100, 30)
        await wait_for(pilot, lambda: view.lines[0].startswith("size=100x30"))

        # Alternate screen: the shell's line is gone while the program runs.
        assert view.screen_model.alternate
        assert not any("before-alt" in line for line in view.lines)
        # Cursor addressing and colours, in pyte's model and in the rendered strips.
        assert view.lines[4][9:12] == "RED"
        red = _style_at(view, 4, 9)
        assert red.color.name == "red" and red.bold
        assert _style_at(view, 5, 9).color.triplet is not None  # 256-colour
        true = _style_at(view, 5, 14)
        assert true.color.triplet == (10, 20, 30) and true.bgcolor.triplet == (200, 100, 50)
        assert _style_at(view, 6, 9).underline and _style_at(view, 6, 15).reverse
        assert view.cursor == (35, 19)
        cursor_style = _style_at(view, 19, 35)
        assert cursor_style == view.rich_style + cursor_style  # drawn with the cursor style
        assert cursor_style.bgcolor != view.rich_style.bgcolor

        # Keys reach the program as xterm sequences (raw mode: the program sees bytes).
        await pilot.press("x", "up", "ctrl+c", "tab", "f5", "1")
        await wait_for(
            pilot, lambda: "'1'" in view.lines[9], what=f"keys echoed: {view.lines[9]!r}"
        )
        echoed = view.lines[9]
        for expected in ("b'x'", r"b'\x1b[A'", r"b'\x03'", r"b'\t'", r"b'\x1b[15~'"):
            assert expected in echoed, (expected, echoed)
        assert not app.screen.query("#nothing")  # the app's own keys did nothing

        # Resize: widget -> pyte -> session -> the program (SIGWINCH).
        await pilot.resize_terminal(90, 26)
        await wait_for(pilot, lambda: session.resizes[-1] == (90, 26), what="resize sent")
        await wait_for(pilot, lambda: view.lines[0].startswith("size=90x26"))
        assert (view.screen_model.columns, view.screen_model.lines) == (90, 26)

        # The escape key hands focus back to the app, and is not sent to the program.
        sent = bytes(session.written)
        await pilot.press("ctrl+right_square_bracket")
        await wait_for(pilot, lambda: app.released == 1)
        assert app.focused is None and bytes(session.written) == sent
        await pilot.press("z")
        assert bytes(session.written) == sent  # unfocused: keys no longer go to the host

        # q: the program leaves the alternate screen (the shell's screen is back) and exits.
        view.focus()
        await pilot.press("q")
        await wait_for(pilot, lambda: app.ended == [7], what="session ended with status 7")
        assert not view.screen_model.alternate
        assert any("before-alt" in line for line in view.lines)
        await session.close()


class IdleSession:
    """A session that says nothing until closed."""

    def __init__(self) -> None:
        self.closed = asyncio.Event()
        self.exit_status = None

    def __aiter__(self):
        return self._read()

    async def _read(self):
        await self.closed.wait()
        return
        yield b""

    def write(self, data: bytes) -> None:
        pass

    def resize(self, cols: int, rows: int) -> None:
        pass

    async def close(self) -> None:
        self.closed.set()


async def test_terminal_scrollback_is_capped_and_scrolls():
    app = TerminalApp(IdleSession(), history=50)
    async with app.run_test(size=(60, 12)) as pilot:
        view = app.query_one(TerminalView)
        await pilot.pause()
        view.feed(b"".join(f"line {i}\r\n".encode() for i in range(500)))
        await pilot.pause()
        assert len(view.screen_model.history) == 50  # the cap
        assert view.lines[-2].strip() == "line 499"
        await pilot.press("shift+pageup")
        assert view.scrollback == 6
        top = "".join(s.text for s in _segments(view, 0)).strip()
        assert top == f"line {500 - 11 - 6}"  # six lines above the live screen's first line
        for _ in range(20):
            await pilot.press("shift+pageup")
        assert view.scrollback == 50  # never beyond the cap
        oldest = "".join(s.text for s in _segments(view, 0)).strip()
        assert oldest == f"line {500 - 11 - 50}"
        await pilot.press("shift+pagedown", "shift+pagedown")
        assert view.scrollback == 38
        shown = "".join(s.text for s in _segments(view, 0)).strip()
        # Output while scrolled back keeps the view on the same lines.
        view.feed(b"more\r\n")
        await pilot.pause()
        assert view.scrollback == 39
        assert "".join(s.text for s in _segments(view, 0)).strip() == shown
        # Typing goes back to the live screen.
        await pilot.press("a")
        assert view.scrollback == 0


@pytest.fixture
def frozen_heap():
    """Earlier tests' garbage out of the measurement: a full collection of everything
    this process accumulated (backends, apps) would show up as timer lag."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


class FloodSession:
    """Output as fast as the event loop lets a reader take it (50 MB), then exit 0."""

    def __init__(self, total: int = 50 << 20, chunk: int = 64 << 10) -> None:
        self.total, self.chunk = total, chunk
        self.sent = 0
        self.exit_status: int | None = None
        self.written = bytearray()
        line = b"\x1b[32mok\x1b[0m heavy output line with some width to it 0123456789\r\n"
        self.block = (line * (chunk // len(line) + 1))[:chunk]

    def __aiter__(self):
        return self._read()

    async def _read(self):
        while self.sent < self.total:
            self.sent += len(self.block)
            yield self.block
            await asyncio.sleep(0)
        self.exit_status = 0

    def write(self, data: bytes) -> None:
        self.written += data

    def resize(self, cols: int, rows: int) -> None:
        pass

    async def close(self) -> None:
        self.total = 0


async def test_terminal_stays_responsive_under_a_flood_of_output(frozen_heap):
    session = FloodSession()
    app = TerminalApp(session)
    async with app.run_test(size=(120, 40)) as pilot:
        view = app.query_one(TerminalView)
        lags: list[float] = []
        last = [time.perf_counter()]

        def tick() -> None:
            now = time.perf_counter()
            lags.append(now - last[0])
            last[0] = now

        app.set_interval(0.01, tick)
        started = time.perf_counter()
        typed: list[float] = []
        # Keys go in as a terminal would deliver them (pilot.press waits for an idle
        # screen, which a flood never gives); the time until the session has the key
        # is what a user feels.
        while app.ended == []:
            before = len(session.written)
            t0 = time.perf_counter()
            app.post_message(events.Key("k", "k"))
            while len(session.written) == before:
                await asyncio.sleep(0.002)
                if time.perf_counter() - t0 > 5:
                    raise AssertionError("a key did not reach the session in 5 s")
            typed.append(time.perf_counter() - t0)
            await asyncio.sleep(0.02)
            assert view.backlog_bytes <= BACKLOG_LIMIT
            if time.perf_counter() - started > 60:
                raise AssertionError("flood did not end")
        await pilot.pause()
        elapsed = time.perf_counter() - started
        assert session.sent >= 50 << 20
        assert view.skipped_bytes > 0  # pyte cannot parse 50 MB/s: old output was skipped
        assert "skipped" in str(view.border_subtitle)
        assert "heavy output line" in "".join(view.lines)
        worst_lag, worst_key = max(lags), max(typed)
        print(
            f"\nflood: 50 MB in {elapsed:.2f}s ({50 / elapsed:.0f} MB/s); "
            f"parsed {view.fed_bytes / 1e6:.1f} MB, skipped {view.skipped_bytes / 1e6:.1f} MB; "
            f"worst timer lag {worst_lag * 1000:.0f} ms; worst key→session {worst_key * 1000:.0f} ms "
            f"over {len(typed)} keys"
        )
        assert worst_key < 0.5
        assert worst_lag < 0.5


# -- the real app against the embedded backend and its demo SSH hosts ------------------------


@pytest.fixture
def isolated_ssh(tmp_path, monkeypatch):
    """No agent, no user keys, empty known_hosts files: only the stored passwords work."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.delenv("OPSTUI_SSH_CONFIG", raising=False)
    return tmp_path


def _setup_bridge(app, tmp_path):
    bridge = ssh_for(app)
    bridge.known_hosts.user_path = tmp_path / "user_known_hosts"
    bridge.known_hosts.own_path = tmp_path / "known_hosts"
    bridge.settings.agent_path = None
    bridge.settings.client_keys = None
    return bridge


def _trust(bridge, backend, *names: str) -> None:
    """Record the demo hosts' keys, as if trusted earlier."""
    for name in names:
        host = backend.ssh_demo.by_name(name)
        bridge.known_hosts.remember("127.0.0.1", host.port, host.host_key())


def _db(backend_info, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(backend_info.db_url, autocommit=True) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


def _sessions_audited(backend_info, host_id: str) -> list[tuple]:
    return _db(
        backend_info,
        "select exit_code from ssh_audit where host_id = %s and kind = 'session'",
        (host_id,),
    )


def _footer_actions(app) -> set[str]:
    return {
        binding.action
        for (_, binding, enabled, _) in app.screen.active_bindings.values()
        if enabled and binding.show
    }


async def _hosts_screen(pilot) -> HostsScreen:
    await ready(pilot)
    await pilot.press("2")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, HostsScreen))
    screen = pilot.app.screen
    await wait_for(pilot, lambda: len(screen.table.view) > 3)
    return screen


async def _select(pilot, screen: HostsScreen, name: str) -> dict:
    key = next(k for k, row in screen.table.view.rows.items() if row["name"] == name)
    assert screen.table.move_to(key)
    await pilot.pause()
    return screen.table.current_row


async def test_shell_in_a_tab_survives_view_switches_and_is_audited(
    backend, backend_info, isolated_ssh
):
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        bridge = _setup_bridge(app, isolated_ssh)
        hosts = await _hosts_screen(pilot)
        row = await _select(pilot, hosts, "lab-web-01")
        assert {"shell", "native_ssh", "run", "health"} <= _footer_actions(app)
        audited = _sessions_audited(backend_info, row["id"])

        await pilot.press("s")
        # The key is unknown: the modal shows the host's real fingerprint.
        await wait_for(pilot, lambda: isinstance(app.screen, HostKeyScreen), what="host key modal")
        demo = backend.ssh_demo.by_name("lab-web-01")
        assert app.screen.unknown.fingerprint == fingerprint(demo.host_key())
        facts = str(app.screen.query_one("#hostkey-facts").render())
        assert fingerprint(demo.host_key()) in facts and "ssh-ed25519" in facts
        await pilot.press("r")  # trust and remember

        await wait_for(pilot, lambda: isinstance(app.screen, SessionsScreen))
        sessions: SessionsScreen = app.screen
        session = next(iter(sessions.sessions.values()))
        await wait_for(pilot, lambda: session.state == "open", what="session open")
        assert "lab-web-01" in str(sessions.tabs.get_tab(session.pane_id).label)
        assert "open" in str(sessions.tabs.get_tab(session.pane_id).label)
        assert (bridge.known_hosts.own_file()).read_text().count("ssh-ed25519") == 1

        view = session.view
        await wait_for(pilot, lambda: app.focused is view)
        await pilot.press(*"echo hi-$((6*7))", "enter")
        await wait_for(pilot, lambda: any(line.startswith("hi-42") for line in view.lines))

        # ctrl+] gives the keys back: view switches work and the session stays alive.
        await pilot.press("ctrl+right_square_bracket")
        await wait_for(pilot, lambda: isinstance(app.focused, Tabs))
        await pilot.press("3")
        await wait_for(pilot, lambda: getattr(app.screen, "spec", None) is not None)
        assert app.screen.spec.name == "repositories"
        await pilot.press("6")
        await wait_for(pilot, lambda: app.screen is sessions)
        assert session.state == "open" and sessions.sessions[session.pane_id] is session
        await pilot.press("enter")  # back into the session
        await wait_for(pilot, lambda: app.focused is view)
        await pilot.press(*"echo again-$((2+3))", "enter")
        await wait_for(pilot, lambda: any(line.startswith("again-5") for line in view.lines))

        # The shell exits: the tab shows the exit status; closing the tab removes it.
        await pilot.press(*"exit 3", "enter")
        await wait_for(pilot, lambda: session.state == "exited 3", what="exit status in title")
        assert "exited 3" in str(sessions.tabs.get_tab(session.pane_id).label)
        await pilot.press("ctrl+right_square_bracket", "w")
        await wait_for(pilot, lambda: not sessions.sessions)
        await wait_for(
            pilot,
            lambda: sorted(_sessions_audited(backend_info, row["id"])) == sorted([*audited, (3,)]),
            what="the session's audit row (exit status 3)",
        )


async def test_unknown_host_key_refused(backend, isolated_ssh):
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        bridge = _setup_bridge(app, isolated_ssh)
        hosts = await _hosts_screen(pilot)
        await _select(pilot, hosts, "lab-db-01")
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, HostKeyScreen))
        await pilot.press("escape")  # refuse
        await wait_for(pilot, lambda: isinstance(app.screen, SessionsScreen))
        session = next(iter(app.screen.sessions.values()))
        await wait_for(pilot, lambda: session.state == "failed")
        assert "host key unknown" in session.error
        assert any("host key unknown" in line for line in session.view.lines)
        assert not bridge.known_hosts.own_file().exists()  # nothing remembered


async def test_run_a_command_on_marked_hosts(backend, isolated_ssh):
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        bridge = _setup_bridge(app, isolated_ssh)
        _trust(bridge, backend, "lab-web-01", "lab-db-01")
        hosts = await _hosts_screen(pilot)
        for name in ("lab-web-01", "lab-db-01", "lab-down-01"):
            await _select(pilot, hosts, name)
            await pilot.press("space")
        assert len(hosts.table.marked) == 3
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, RunPrompt))
        command = (
            'echo "first of $(basename "$(dirname "$PWD")")"; echo to-stderr >&2; '
            '[ "$(basename "$(dirname "$PWD")")" = lab-web-01 ] || exit 4'
        )
        app.screen.query_one(Input).value = command
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, MultiRunScreen))
        run: MultiRunScreen = app.screen
        await wait_for(pilot, lambda: run.finished, what="run finished")
        await wait_for(
            pilot, lambda: "succeeded" in str(run.query_one("#multirun-summary").render())
        )
        summary = str(run.query_one("#multirun-summary").render())
        assert "1 succeeded, 1 failed, 1 unreachable" in summary

        log = "\n".join(run.query_one(OutputLog).plain_lines)
        # Every line carries its host's prefix, padded to the longest name.
        assert "lab-web-01  │ first of lab-web-01" in log
        assert "lab-db-01   │ first of lab-db-01" in log
        assert "lab-db-01   │ to-stderr" in log
        assert all(line.split(" │ ")[0].strip() in run.lanes for line in log.splitlines())
        # Each host's prefix has its own colour.
        colours = {lane.colour for lane in run.lanes.values()}
        assert len(colours) == 3
        lanes = run.lanes
        assert (lanes["lab-web-01"].state, lanes["lab-web-01"].exit_status) == ("ok", 0)
        assert (lanes["lab-db-01"].state, lanes["lab-db-01"].exit_status) == ("failed", 4)
        assert lanes["lab-down-01"].state == "unreachable"
        assert lanes["lab-web-01"].duration is not None
        table = run.query_one("#multirun-status")
        assert str(table.get_cell("lab-db-01", "exit")) == "4"
        assert str(table.get_cell("lab-web-01", "duration")).endswith("s")
        # Results are never cut: the state and the whole error can be read.
        state_column = next(c for c in table.columns.values() if str(c.key.value) == "state")
        assert state_column.get_render_width(table) - 2 * table.cell_padding >= len("unreachable")
        error_column = next(c for c in table.columns.values() if str(c.key.value) == "error")
        error = lanes["lab-down-01"].error
        assert error and error_column.content_width >= min(len(error), 200)

        # f on the unreachable host says why it has no output; f again restores all hosts.
        before = list(run.query_one(OutputLog).plain_lines)
        table.move_cursor(row=table.get_row_index("lab-down-01"))
        await pilot.press("f")
        only = "\n".join(run.query_one(OutputLog).plain_lines)
        assert "no output (unreachable" in only, only
        await pilot.press("f")
        assert list(run.query_one(OutputLog).plain_lines) == before, "the combined output is back"
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, HostsScreen))


async def test_cancel_a_running_command(backend, isolated_ssh):
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        bridge = _setup_bridge(app, isolated_ssh)
        _trust(bridge, backend, "lab-web-01")
        hosts = await _hosts_screen(pilot)
        await _select(pilot, hosts, "lab-web-01")
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, RunPrompt))
        app.screen.query_one(Input).value = "echo started; sleep 60"
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, MultiRunScreen))
        run: MultiRunScreen = app.screen
        await wait_for(pilot, lambda: run.lanes["lab-web-01"].lines == 1, what="output")
        assert not run.finished
        await pilot.press("ctrl+c")
        await wait_for(pilot, lambda: run.finished, timeout=10, what="cancelled")
        assert run.lanes["lab-web-01"].state == "cancelled"
        assert "1 cancelled" in str(run.query_one("#multirun-summary").render())


async def test_ssh_keys_hidden_without_execute_permission(backend):
    app = make_app(backend, "viewer@acme.test")
    async with app.run_test(size=SIZE) as pilot:
        hosts = await _hosts_screen(pilot)
        await _select(pilot, hosts, "lab-web-01")
        actions = _footer_actions(app)
        assert "health" in actions and "health_all" in actions  # any member may check
        assert not {"shell", "native_ssh", "run"} & actions
        await pilot.press("s")
        await wait_for(
            pilot,
            lambda: any("needs execute on hosts" in n.message for n in app._notifications),
        )
        assert not isinstance(app.screen, SessionsScreen)
        await pilot.press("r")
        await pilot.pause()
        assert not isinstance(app.screen, RunPrompt)


async def test_a_viewers_health_check_is_shown_not_recorded_and_says_why(
    backend, backend_info, isolated_ssh
):
    from opstui.ssh.health import NOT_PERMITTED

    app = make_app(backend, "viewer@acme.test")
    async with app.run_test(size=SIZE) as pilot:
        bridge = _setup_bridge(app, isolated_ssh)
        _trust(bridge, backend, "lab-web-01")
        hosts = await _hosts_screen(pilot)
        row = await _select(pilot, hosts, "lab-web-01")
        state = "select status, last_checked_at, health from hosts where id = %s"
        before = _db(backend_info, state, (row["id"],))
        await pilot.press("h")
        await wait_for(
            pilot,
            lambda: any(NOT_PERMITTED in n.message for n in app._notifications),
            what="told why nothing was recorded",
        )
        # The viewer sees their own result (no password for them: auth_failed)...
        assert any("1 auth_failed" in n.message for n in app._notifications)
        # ...and the team's record of the host is untouched.
        assert _db(backend_info, state, (row["id"],)) == before


def test_native_ssh_argv_uses_the_same_target_and_both_known_hosts(tmp_path):
    from opstui.ssh.target import SshTarget

    known = KnownHosts(user_path=tmp_path / "u kh", own_path=tmp_path / "own")
    target = SshTarget.from_host({"name": "web", "ip": "10.0.0.5", "port": 2222, "user": "ops"})
    argv = native_ssh_argv(target, known)
    assert argv[0] == "ssh" and argv[-1] == "ops@10.0.0.5"
    assert argv[argv.index("-p") + 1] == "2222"
    option = argv[argv.index("-o") + 1]
    assert option == f'UserKnownHostsFile="{tmp_path / "u kh"}" {tmp_path / "own"}'
    assert not any("pass" in part.lower() for part in argv)


async def test_changed_host_key_is_refused_until_deliberately_forgotten(backend, isolated_ssh):
    import asyncssh

    from opstui.ui.screens.hostkey import HostKeyChangedScreen

    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        bridge = _setup_bridge(app, isolated_ssh)
        demo = backend.ssh_demo.by_name("lab-db-01")
        impostor = asyncssh.generate_private_key("ssh-ed25519")
        bridge.known_hosts.remember("127.0.0.1", demo.port, impostor)  # "the old key"
        hosts = await _hosts_screen(pilot)
        await _select(pilot, hosts, "lab-db-01")
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, HostKeyChangedScreen))
        dialog = app.screen
        facts = str(dialog.query_one("#hostkey-changed-facts").render())
        assert fingerprint(impostor) in facts  # old
        assert fingerprint(demo.host_key()) in facts  # new
        sessions = app.screen_stack[0]
        session = next(iter(sessions.sessions.values()))
        assert session.state == "failed" and "HOST KEY CHANGED" in session.error

        # Forgetting takes a deliberate second step: the address, typed exactly.
        await pilot.press("f")
        await pilot.press(*"127.0.0.2", "enter")
        await pilot.pause()
        assert app.screen is dialog
        dialog.query_one(Input).value = "127.0.0.1"
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is sessions)
        await wait_for(
            pilot,
            lambda: fingerprint(impostor) not in _fingerprints(bridge.known_hosts, demo.port),
            what="old key forgotten",
        )
        # The tab of a failed session takes opstui's keys: R reconnects, and the new
        # key is now merely unknown, so the user is asked about it.
        await pilot.press("R")
        await wait_for(pilot, lambda: isinstance(app.screen, HostKeyScreen))
        assert app.screen.unknown.fingerprint == fingerprint(demo.host_key())
        await pilot.press("o")
        await wait_for(pilot, lambda: session.state == "open")


def _fingerprints(known: KnownHosts, port: int) -> set[str]:
    trusted, _ = known.lookup("127.0.0.1", "127.0.0.1", port)
    return {fingerprint(k) for k in trusted}


async def test_health_check_then_host_detail_shows_health_audit_and_moves_files(
    backend, backend_info, isolated_ssh
):
    from textual.widgets import ProgressBar

    from opstui.ui.screens.detail import DetailScreen
    from tests.tui_support import text_of

    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        bridge = _setup_bridge(app, isolated_ssh)
        _trust(bridge, backend, "lab-web-01")
        hosts = await _hosts_screen(pilot)
        row = await _select(pilot, hosts, "lab-web-01")
        checked_before = row.get("last_checked_at")
        await pilot.press("h")
        await wait_for(
            pilot,
            lambda: (
                (app.store.row("hosts", row["id"]) or {}).get("last_checked_at")
                not in (None, checked_before)
            ),
            what="health written and seen live",
        )
        assert app.store.row("hosts", row["id"])["status"] == "online"

        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen))
        detail = app.screen
        health = detail.query_one("#host-health")
        await wait_for(pilot, lambda: "uptime" in text_of(health))
        assert "memory" in text_of(health) and "online" in text_of(health)
        audit = detail.query_one("#host-audit")
        await wait_for(pilot, lambda: "SSH audit trail (" in text_of(audit), what="audit trail")
        trail = detail.query_one("#host-ssh").audit_rows
        expected = _db(
            backend_info, "select count(*) from ssh_audit where host_id = %s", (row["id"],)
        )[0][0]
        assert expected and len(trail) == expected
        assert "admin@acme.test" in text_of(audit) or "session" in text_of(audit)

        # Upload with a progress bar; the file lands in the host's sandbox.
        local = isolated_ssh / "upload.bin"
        local.write_bytes(os.urandom(300_000))
        await pilot.press("u")
        await wait_for(pilot, lambda: app.screen.query("#transfer-source"))
        app.screen.query_one("#transfer-source", Input).value = str(local)
        app.screen.query_one("#transfer-destination", Input).value = "upload.bin"
        app.screen.query_one("#transfer-destination", Input).focus()
        await pilot.press("enter")
        status = detail.query_one("#transfer-status")
        await wait_for(pilot, lambda: "✓" in str(status.render()), what="upload done")
        sandbox = backend.ssh_demo.by_name("lab-web-01").sandbox
        assert (sandbox / "upload.bin").read_bytes() == local.read_bytes()
        bar = detail.query_one(ProgressBar)
        assert bar.total == 300_000 and bar.progress == 300_000

        # A failed download says what went wrong, in one line.
        await pilot.press("d")
        await wait_for(pilot, lambda: app.screen.query("#transfer-source"))
        app.screen.query_one("#transfer-source", Input).value = "no-such-file.txt"
        app.screen.query_one("#transfer-destination", Input).value = str(isolated_ssh / "x")
        app.screen.query_one("#transfer-destination", Input).focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: "✗" in str(status.render()), what="download error")
        assert "no such file" in str(status.render())
        assert not (isolated_ssh / "x").exists()


async def test_viewer_gets_no_file_transfer_keys_in_host_detail(backend):
    from opstui.ui.screens.detail import DetailScreen

    app = make_app(backend, "viewer@acme.test")
    async with app.run_test(size=SIZE) as pilot:
        hosts = await _hosts_screen(pilot)
        await _select(pilot, hosts, "lab-web-01")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen))
        assert "transfer" not in _footer_actions(app)
        await pilot.press("u")
        await wait_for(
            pilot,
            lambda: any("needs execute on hosts" in n.message for n in app._notifications),
        )
        assert isinstance(app.screen, DetailScreen)


async def test_multirun_stays_responsive_with_a_host_streaming_heavy_output(backend, isolated_ssh):
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        bridge = _setup_bridge(app, isolated_ssh)
        _trust(bridge, backend, "lab-web-01", "lab-db-01")
        hosts = await _hosts_screen(pilot)
        for name in ("lab-web-01", "lab-db-01"):
            await _select(pilot, hosts, name)
            await pilot.press("space")
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, RunPrompt))
        # lab-web-01 streams 50 MB of 100-character lines; lab-db-01 says one line.
        app.screen.query_one(Input).value = (
            'if [ "$(basename "$(dirname "$PWD")")" = lab-web-01 ]; then '
            "head -c 50000000 /dev/zero | tr '\\0' x | fold -w 99; else echo quiet-host; fi"
        )
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, MultiRunScreen))
        run: MultiRunScreen = app.screen
        lags: list[float] = []
        last = [time.perf_counter()]

        def tick() -> None:
            now = time.perf_counter()
            lags.append(now - last[0])
            last[0] = now

        run.set_interval(0.01, tick)
        started = time.perf_counter()
        while not run.finished:
            await asyncio.sleep(0.01)
            if time.perf_counter() - started > 90:
                raise AssertionError("heavy run did not finish")
        elapsed = time.perf_counter() - started
        await pilot.pause()
        log = run.query_one(OutputLog)
        assert len(log) == 5000  # the cap, after half a million lines
        assert log.plain_lines[-1].startswith("lab-web-01 │ x")
        # The quiet host's output is kept apart from the heavy host's: f shows it alone.
        table = run.query_one("#multirun-status")
        table.move_cursor(row=table.get_row_index("lab-db-01"))
        await pilot.press("f")
        await wait_for(pilot, lambda: run.only == "lab-db-01")
        assert log.plain_lines == ["lab-db-01  │ quiet-host"]
        assert run.lanes["lab-web-01"].lines == -(-50_000_000 // 99)
        assert run.lanes["lab-web-01"].exit_status == 0
        print(
            f"\nmultirun: 50 MB from one host in {elapsed:.2f}s ({50 / elapsed:.0f} MB/s); "
            f"worst timer lag {max(lags) * 1000:.0f} ms over {len(lags)} ticks"
        )
        # The demo SSH server encrypts and pumps those 50 MB in this same event loop, and
        # a full collection of this test process's heap takes ~0.1-0.2 s, so allow 1 s.
        assert max(lags) < 1.0


async def test_ctrl_q_in_a_shell_goes_to_the_host_and_quitting_asks_first(
    backend, backend_info, isolated_ssh
):
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        _setup_bridge(app, isolated_ssh)
        hosts = await _hosts_screen(pilot)
        await _select(pilot, hosts, "lab-web-01")
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, HostKeyScreen), what="host key modal")
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, SessionsScreen))
        sessions: SessionsScreen = app.screen
        session = next(iter(sessions.sessions.values()))
        await wait_for(pilot, lambda: session.state == "open", what="session open")
        view = session.view
        await wait_for(pilot, lambda: app.focused is view)
        # `cat -v` shows control characters as ^X: ctrl+q must reach it, not quit opstui.
        await pilot.press(*"stty -ixon; cat -v", "enter")
        await pilot.press("ctrl+q", "enter")
        await wait_for(pilot, lambda: any(line.startswith("^Q") for line in view.lines), what="^Q")
        assert app.is_running and app.screen is sessions
        await pilot.press("ctrl+c")

        # With the keys back, ctrl+q quits, but asks first while a shell is open.
        await pilot.press("ctrl+right_square_bracket")
        await wait_for(pilot, lambda: app.focused is not view)
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen")
        assert "lab-web-01" in str(app.screen.query_one("#detail").content)
        await pilot.press("n")
        await wait_for(pilot, lambda: app.screen is sessions)
        assert app.is_running and session.state == "open"
