"""Host keys are never trusted silently: the two dialogs the SSH layer needs.

`HostKeyScreen` answers the SSH layer's `decide(target, unknown)` for a key in
no known_hosts file: trust once (o), trust and remember (r), refuse (escape).

`HostKeyChangedScreen` is the loud refusal for a key that differs from the
recorded one: old and new fingerprints, and nothing is trusted from here. The
only way on is deliberate: press `f` (forget the recorded key), then type the
host's address to confirm. The caller then forgets the old key; the next
connection asks about the new key as unknown, so the user verifies it again.
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from opstui.ssh.errors import HostKeyChanged, HostKeyUnknown
from opstui.ssh.target import SshTarget


class HostKeyScreen(ModalScreen[str]):
    """Unknown host key: dismisses with 'once', 'remember' or 'refuse'."""

    BINDINGS = [
        Binding("o", "answer('once')", "Trust once", id="hostkey.once"),
        Binding("r", "answer('remember')", "Trust and remember", id="hostkey.remember"),
        Binding("escape", "answer('refuse')", "Refuse", id="hostkey.refuse"),
    ]

    def __init__(self, target: SshTarget, unknown: HostKeyUnknown) -> None:
        super().__init__()
        self.target = target
        self.unknown = unknown

    def compose(self) -> ComposeResult:
        with Vertical(id="hostkey-dialog"):
            yield Label("Unknown host key", id="hostkey-title")
            yield Static(
                f"host         {self.target.label}\n"
                f"key type     {self.unknown.key_type}\n"
                f"fingerprint  {self.unknown.fingerprint}",
                id="hostkey-facts",
            )
            yield Label(
                "This key is in neither ~/.ssh/known_hosts nor opstui's known_hosts. "
                "Compare the fingerprint with the host's own (ssh-keygen -lf "
                "/etc/ssh/ssh_host_*_key.pub) before trusting it.",
                id="hostkey-advice",
            )
            with Horizontal(id="hostkey-buttons"):
                yield Button("Trust once (o)", id="once")
                yield Button("Trust and remember (r)", variant="primary", id="remember")
                yield Button("Refuse (esc)", variant="error", id="refuse")

    def on_mount(self) -> None:
        self.query_one("#refuse", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id or "refuse")

    def action_answer(self, decision: str) -> None:
        self.dismiss(decision)


class HostKeyChangedScreen(ModalScreen[bool]):
    """A changed host key: refused. Dismisses True only after the deliberate confirm."""

    BINDINGS = [
        Binding("escape", "close", "Keep refusing", id="hostkey_changed.close"),
        Binding("f", "forget", "Forget the old key…", id="hostkey_changed.forget"),
    ]

    def __init__(self, target: SshTarget, changed: HostKeyChanged) -> None:
        super().__init__()
        self.target = target
        self.changed = changed

    def compose(self) -> ComposeResult:
        with Vertical(id="hostkey-changed-dialog"):
            yield Label("HOST KEY CHANGED: CONNECTION REFUSED", id="hostkey-changed-title")
            yield Static(
                f"host             {self.target.label}\n"
                f"key type         {self.changed.key_type}\n"
                f"recorded (old)   {self.changed.old_fingerprint}\n"
                f"presented (new)  {self.changed.new_fingerprint}",
                id="hostkey-changed-facts",
            )
            yield Label(
                "Someone may be intercepting this connection, or the host was reinstalled. "
                "Check with whoever runs the host before going on.",
                id="hostkey-changed-advice",
            )
            yield Input(
                placeholder=f"type {self.target.host} to forget the recorded key",
                id="hostkey-confirm",
                classes="hidden",
            )
            with Horizontal(id="hostkey-changed-buttons"):
                yield Button("Forget the old key… (f)", variant="warning", id="forget")
                yield Button("Keep refusing (esc)", variant="primary", id="close")

    def on_mount(self) -> None:
        self.query_one("#close", Button).focus()

    @on(Button.Pressed, "#close")
    def action_close(self) -> None:
        self.dismiss(False)

    @on(Button.Pressed, "#forget")
    def action_forget(self) -> None:
        box = self.query_one("#hostkey-confirm", Input)
        box.remove_class("hidden")
        box.focus()

    @on(Input.Submitted, "#hostkey-confirm")
    def _confirmed(self, event: Input.Submitted) -> None:
        if event.value.strip() == self.target.host:
            self.dismiss(True)
        else:
            event.input.value = ""
            self.notify(
                f"Type {self.target.host} exactly to forget the old key.", severity="warning"
            )
