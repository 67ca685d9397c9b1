"""A clock a test moves by hand, instead of sleeping."""

from __future__ import annotations

import time


class MovableClock:
    """Stands still at `start` (default: now, in whole seconds) until the test moves it.

    Call it for the time, as `time.time` is called: hand the same clock to the fake issuer (it
    stamps `iat` and `exp`) and to the verifier under test (joserfc's `now=`, cachetools' `timer=`),
    and expiry, leeway and cache lifetimes are tested without a sleep."""

    def __init__(self, start: float | None = None) -> None:
        self.now = float(int(time.time()) if start is None else start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        """Move forward (or back, with a negative number); returns the new time."""
        self.now += seconds
        return self.now

    def set(self, when: float) -> None:
        self.now = float(when)
