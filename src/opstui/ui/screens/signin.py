"""Email and password for a configured profile; errors stay on screen, typing is kept."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Button, Footer, Input, Label


class SignInScreen(Screen):
    BINDINGS = [Binding("ctrl+q", "app.quit", "Quit", id="signin.quit")]

    def __init__(self, target_label: str, email: str | None = None) -> None:
        super().__init__()
        self.target_label = target_label
        self.email = email or ""
        self.probed = False  # the reachability check has answered

    def compose(self) -> ComposeResult:
        with Vertical(id="signin"):
            yield Label(f"Sign in to {self.target_label}", id="signin-title")
            yield Input(value=self.email, placeholder="email", id="email")
            yield Input(placeholder="password", password=True, id="password")
            yield Label("", id="signin-error")
            yield Button("Sign in", variant="primary", id="submit")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#password" if self.email else "#email", Input).focus()
        self.check_reachable()

    @work(exclusive=True, group="signin-probe", exit_on_error=False)
    async def check_reachable(self) -> None:
        """Say a URL is wrong now, not after a password was typed."""
        problem = await self.app.connector.check_reachable()
        if problem is not None:
            self.show_error(problem)
        self.probed = True

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "email":
            self.query_one("#password", Input).focus()
        else:
            self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self._submit()

    def _submit(self) -> None:
        email = self.query_one("#email", Input).value.strip()
        password = self.query_one("#password", Input).value
        if not email or not password:
            self.show_error("enter your email and password")
            return
        self.query_one("#signin-error", Label).update("signing in…")
        self.app.sign_in(email, password)

    def show_error(self, reason: str) -> None:
        self.query_one("#signin-error", Label).update(f"✕ {reason}")
