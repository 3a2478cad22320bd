"""Failed password sign-ins, counted per email and per client address.

GoTrue limits `/token` per client address (a token bucket: a burst of 30, then
`GOTRUE_RATE_LIMIT_TOKEN_REFRESH`, 150 per 5 minutes). The gateway counts only
*failed* password checks, so a real user signing in again and again is never
slowed, and it counts them per email as well, so a guesser spread over several
addresses is stopped too. Both are sliding windows: once the oldest failure in
the window ages out, the next attempt goes through, so no one is locked out
for good.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

# GoTrue's burst per address; per email fewer, as one account is the usual target.
FAILURES_PER_ADDRESS = 30
FAILURES_PER_EMAIL = 10
WINDOW_SECONDS = 300.0
# Keys remembered at most, so a flood of made-up emails cannot grow memory unbounded.
MAX_KEYS = 10_000


@dataclass
class _Window:
    limit: int
    seconds: float
    failures: dict[str, deque[float]] = field(default_factory=dict)

    def retry_after(self, key: str, now: float) -> float:
        """Seconds until `key` may try again; 0 if it may now."""
        times = self.failures.get(key)
        if not times:
            return 0.0
        while times and times[0] <= now - self.seconds:
            times.popleft()
        if not times:
            del self.failures[key]
            return 0.0
        if len(times) < self.limit:
            return 0.0
        return times[0] + self.seconds - now

    def record(self, key: str, now: float) -> None:
        times = self.failures.pop(key, None) or deque()
        times.append(now)
        while len(times) > self.limit:
            times.popleft()  # only the newest `limit` failures decide anything
        self.failures[key] = times  # re-inserted: the dict stays oldest-used first
        if len(self.failures) > MAX_KEYS:
            self._forget_oldest(now)

    def forget(self, key: str, stamp: float) -> None:
        times = self.failures.get(key)
        if times is not None and stamp in times:
            times.remove(stamp)

    def _forget_oldest(self, now: float) -> None:
        # Keys are in order of their latest failure, so the stale ones lead.
        while self.failures:
            oldest = next(iter(self.failures))
            times = self.failures[oldest]
            if len(self.failures) <= MAX_KEYS and times and times[-1] > now - self.seconds:
                break
            del self.failures[oldest]


@dataclass
class SignInThrottle:
    """Set as `ctx.extras["sign_in_throttle"]`; tests give it a small window."""

    per_email: int = FAILURES_PER_EMAIL
    per_address: int = FAILURES_PER_ADDRESS
    window_seconds: float = WINDOW_SECONDS
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self._emails = _Window(self.per_email, self.window_seconds)
        self._addresses = _Window(self.per_address, self.window_seconds)

    def begin(self, email: str, address: str) -> float | None:
        """Admit one password check: its ticket, or None if it must wait (see retry_after).

        The attempt counts as a failure from the start, so fifty guesses sent at
        once cannot all slip past the count while their hashes are being checked;
        `succeeded()` takes it back.
        """
        now = self.clock()
        if self.retry_after(email, address, now=now) > 0:
            return None
        self._emails.record(email.lower(), now)
        self._addresses.record(address, now)
        return now

    def succeeded(self, email: str, address: str, ticket: float) -> None:
        """The password was right: the attempt is not a failure after all."""
        self._emails.forget(email.lower(), ticket)
        self._addresses.forget(address, ticket)

    def retry_after(self, email: str, address: str, *, now: float | None = None) -> float:
        """Seconds to wait before this email may be tried from this address; 0 if now."""
        now = self.clock() if now is None else now
        return max(
            self._emails.retry_after(email.lower(), now),
            self._addresses.retry_after(address, now),
        )
