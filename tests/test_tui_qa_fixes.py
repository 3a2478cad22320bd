"""QA findings: dialogs that cut their text, the run view's frozen host columns, relative
times in resource tables that never moved."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from textual.app import App
from textual.widgets import Button

import opstui.ui.app as ui_app
from opstui.ssh.errors import HostKeyChanged, HostKeyUnknown
from opstui.ssh.target import SshTarget
from opstui.ui.screens.confirm import ConfirmScreen
from opstui.ui.screens.hostkey import HostKeyChangedScreen, HostKeyScreen

CSS = str(Path(ui_app.__file__).with_name("app.tcss"))
SIZES = [(80, 24), (140, 40)]
FINGERPRINT = "SHA256:3v9t0mQ4b0J5nJtq7o8xUuN3cS0rRkq0m2bH3yA9Zc4"


class DialogApp(App):
    """Only the app's stylesheet and one dialog: what the QA screenshots showed."""

    CSS_PATH = CSS

    def __init__(self, dialog) -> None:
        super().__init__()
        self.dialog = dialog

    def on_mount(self) -> None:
        self.push_screen(self.dialog)


def screen_text(app: App) -> str:
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def words(text: str) -> list[str]:
    return re.findall(r"\S+", text)


async def assert_fits(dialog, size: tuple[int, int], texts: list[str]) -> None:
    app = DialogApp(dialog)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        await pilot.pause()
        painted = screen_text(app)
        # Borders and button edges are box-drawing and block characters: not words.
        flat = " ".join(words(re.sub("[\u2500-\u259f]", " ", painted)))
        for text in texts:
            # Every word appears whole, in order, though lines wrap anywhere between words.
            pattern = r"\s+".join(re.escape(word) for word in words(text))
            assert re.search(pattern, flat), f"{text!r} is cut at {size}:\n{painted}"
        width, height = size
        for button in app.screen.query(Button):
            region = button.region
            assert region.width > 0 and region.height > 0, f"{button.id} not visible at {size}"
            assert region.right <= width and region.bottom <= height, (
                f"{button.id} off screen at {size}: {region}\n{painted}"
            )


@pytest.mark.parametrize("size", SIZES)
async def test_the_host_key_dialog_wraps_its_advice(size):
    target = SshTarget("127.0.0.1", 2222, "deploy", name="lab-a")
    unknown = HostKeyUnknown("127.0.0.1", FINGERPRINT, "ssh-ed25519")
    await assert_fits(
        HostKeyScreen(target, unknown),
        size,
        [
            "This key is in neither ~/.ssh/known_hosts nor opstui's known_hosts. "
            "Compare the fingerprint with the host's own (ssh-keygen -lf "
            "/etc/ssh/ssh_host_*_key.pub) before trusting it.",
        ],
    )



@pytest.mark.parametrize("size", SIZES)
async def test_the_changed_host_key_dialog_wraps_its_advice(size):
    target = SshTarget("127.0.0.1", 2222, "deploy", name="lab-a")
    changed = HostKeyChanged("127.0.0.1", FINGERPRINT, FINGERPRINT[:-4] + "AAAA", "ssh-ed25519")
    await assert_fits(
        HostKeyChangedScreen(target, changed),
        size,
        [
            "Someone may be intercepting this connection, or the host was reinstalled. "
            "Check with whoever runs the host before going on.",
        ],
    )

@pytest.mark.parametrize("size", SIZES)
async def test_the_quit_confirmation_wraps(size):
    detail = (
        "Still going: 2 SSH sessions (lab-a, lab-b); a file transfer to lab-c; "
        "1 run being followed. Quitting closes them."
    )
    await assert_fits(
        ConfirmScreen("Quit opstui?", detail, yes_label="Quit (y)", no_label="Stay (n)"),
        size,
        ["Quit opstui?", detail],
    )


@pytest.mark.parametrize("size", SIZES)
async def test_the_cancel_run_confirmation_wraps(size):
    detail = (
        "The runner stops its remote processes within seconds; hosts not yet started are skipped."
    )
    await assert_fits(
        ConfirmScreen(
            "Cancel run nightly-deploy-of-the-api #12?",
            detail,
            yes_label="Cancel run (y)",
            no_label="Keep it (n)",
        ),
        size,
        ["Cancel run nightly-deploy-of-the-api #12?", detail],
    )


@pytest.mark.parametrize("size", SIZES)
async def test_the_launch_confirmation_stays_on_screen(size):
    detail = "\n".join(
        [
            "On 3 hosts: lab-a, lab-b, lab-c",
            "Scripts (1):",
            "  1. deploy.sh --fast",
            "Rollout: batches of 50% of the hosts; the first failure stops the hosts not yet started",
        ]
    )
    await assert_fits(
        ConfirmScreen(
            "Run deployment 'api' now?",
            detail,
            yes_label="Run (y)",
            no_label="Cancel (n)",
            classes="wide",
        ),
        size,
        ["Run deployment 'api' now?", "deploy.sh --fast", "the first failure stops the hosts"],
    )


# -- the run view's hosts table ----------------------------------------------------------------

SKIP_ERROR = "skipped: the host was deleted after the run was queued"


def _host(host_id: str, name: str, position: int, status: str, error: str | None = None) -> dict:
    return {
        "host_id": host_id,
        "host_name": name,
        "batch": 1,
        "position": position,
        "status": status,
        "error": error,
        "exit_code": 0 if status == "succeeded" else None,
        "started_at": None,
        "finished_at": None,
    }


async def test_the_run_hosts_table_grows_its_columns_and_agrees_with_the_header(backend):
    from opstui.run_watch import RunUpdate
    from opstui.ui.screens.run import RunScreen
    from tests.tui_support import SIZE, make_app, ready, text_of, wait_for

    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        # A run id nobody has: the screen's own watch finds nothing; this test feeds it updates.
        app.open_run("00000000-0000-4000-8000-00000000abcd")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.is_mounted)
        screen = app.screen
        run = {
            "id": "00000000-0000-4000-8000-00000000abcd",
            "number": 7,
            "status": "running",
            "trigger": "manual",
            "spec": {"deployment_name": "api"},
            # The run row's counter lags the host rows by one update.
            "hosts_total": 3,
            "hosts_done": 1,
            "hosts_failed": 0,
        }
        first = (_host("h1", "lab-a", 1, "pending"), _host("h2", "lab-b", 2, "pending"),
                 _host("h3", "lab-d", 3, "pending"))
        screen._take(RunUpdate(run=run, hosts=first, snapshot=True))
        await pilot.pause()
        later = (
            _host("h1", "lab-a", 1, "succeeded"),
            _host("h2", "lab-b-with-a-longer-name", 2, "running"),
            _host("h3", "lab-d", 3, "skipped", SKIP_ERROR),
        )
        screen._take(RunUpdate(run=run, hosts=later))
        await pilot.pause()
        await pilot.pause()
        table = screen.query_one("#run-hosts")
        painted = "\n".join(table.render_line(y).text for y in range(table.size.height))
        for whole in ("succeeded", "skipped", "lab-b-with-a-longer-name", SKIP_ERROR):
            assert whole in painted, f"{whole!r} cut in the hosts table:\n{painted}"
        assert "2 of 3 done, 1 skipped" in str(table.border_title)
        assert "2 of 3 done, 1 skipped" in text_of(screen.query_one("#run-header"))


# -- relative times in resource tables ---------------------------------------------------------


async def test_relative_times_in_a_resource_table_move_with_the_clock(backend):
    from datetime import timedelta

    from opstui.connect import EmbeddedConnector
    from opstui.session import Target
    from opstui.ui.app import OpsApp
    from opstui.ui.screens.resource import ResourceScreen
    from opstui.ui.widgets.resource_table import ResourceTable
    from opstui.views import format_cell
    from tests.conftest import DEMO_NOW
    from tests.tui_support import SIZE, ready, wait_for

    now = [DEMO_NOW]
    connector = EmbeddedConnector(
        target=Target("embedded", "", "", is_embedded=True),
        backend=backend,
        owns_backend=False,
        demo_email="admin@acme.test",
    )
    app = OpsApp(connector, clock=lambda: now[0], tick_seconds=0.05)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("2")  # teams: NAME, DESCRIPTION, DEFAULT, AGE
        await wait_for(
            pilot,
            lambda: isinstance(app.screen, ResourceScreen)
            and len(app.screen.query_one(ResourceTable).view),
        )
        table = app.screen.query_one(ResourceTable)
        age = next(column for column in table.spec.columns if column.label == "AGE")
        first = table.view.rows[table.view.key_at(0)]

        def painted_line() -> str:
            # What the screen shows (the compositor's lines), not a fresh render of ours.
            strips = app.screen._compositor.render_strips()
            return strips[table.content_region.y + 1].text

        before = format_cell(age, first, now[0], table.labels)
        await wait_for(pilot, lambda: before in painted_line(), what="the first row painted")
        now[0] = DEMO_NOW + timedelta(days=40)
        after = format_cell(age, first, now[0], table.labels)
        assert after != before
        await wait_for(
            pilot, lambda: after in painted_line() and before not in painted_line(),
            timeout=5, what=f"AGE {before!r} to become {after!r}",
        )


async def test_a_long_launch_summary_scrolls_and_keeps_the_buttons_on_screen():
    scripts = [f"  {index + 1}. step{index + 1}.sh --flag" for index in range(14)]
    detail = "\n".join(
        [
            "On 12 hosts: lab-00, lab-01, lab-02, lab-03, lab-04, lab-05, lab-06, lab-07 and 4 more",
            "Scripts (14):",
            *scripts,
            "Rollout: all hosts at once; the first failure stops the hosts not yet started",
        ]
    )
    await assert_fits(
        ConfirmScreen(
            "Run deployment 'api' now?", detail, yes_label="Run (y)", no_label="Cancel (n)",
            classes="wide",
        ),
        (80, 24),
        ["Run deployment 'api' now?", "On 12 hosts: lab-00"],
    )
