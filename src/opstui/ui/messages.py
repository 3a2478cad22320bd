"""App-wide messages, named as past-tense facts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from opstui.store import Store, StoreEvent


class StoreOpened(Message):
    """The store is signed in, has an identity and is loading the active team."""

    def __init__(self, store: Store) -> None:
        super().__init__()
        self.store = store


class StoreEventArrived(Message):
    """Something changed in the store (a page, a row, the connection, the team)."""

    def __init__(self, event: StoreEvent) -> None:
        super().__init__()
        self.event = event


class SignInNeeded(Message):
    """No stored session: the user must sign in."""


class ConnectionFailed(Message):
    """Starting or signing in failed; `reason` is one line for the screen."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


class WriteFailed(Message):
    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


class RunLaunched(Message):
    """A deployment run was queued (a launch or a retry); `run_id` is the new run."""

    def __init__(self, run_id: str, label: str) -> None:
        super().__init__()
        self.run_id = run_id
        self.label = label
