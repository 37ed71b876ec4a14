"""Injectable clocks for code that paces audio in real time.

I/O code (the downlink sender) takes a `Clock` instead of calling `time.monotonic()` and
`asyncio.sleep()` directly, so tests can run a 10-second schedule in microseconds with
`FakeClock`, deterministically.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "FakeClock", "MonotonicClock"]


@runtime_checkable
class Clock(Protocol):
    """A monotonic time source in seconds plus a matching async sleep."""

    def now(self) -> float:
        """Return the current monotonic time in seconds (arbitrary epoch)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Suspend the calling task for `seconds` (≤ 0 just yields)."""
        ...


class MonotonicClock:
    """The real clock: `time.monotonic()` and `asyncio.sleep()`."""

    def now(self) -> float:
        """Return `time.monotonic()`."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """`asyncio.sleep(max(0, seconds))`."""
        await asyncio.sleep(max(0.0, seconds))


class FakeClock:
    """A manual clock for tests: time moves only when told to.

    `sleep(s)` advances the clock by `s` at once (then yields to the event loop once), so
    paced code runs at full speed while observing the exact virtual timestamps. Every
    sleep is recorded in `sleeps`.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self.sleeps: list[float] = []

    def now(self) -> float:
        """Return the current virtual time in seconds."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by `seconds` (must be ≥ 0)."""
        if seconds < 0:
            raise ValueError(f"cannot move a clock backwards ({seconds} s)")
        self._now += seconds

    def set(self, when: float) -> None:
        """Jump to absolute time `when` (must not be in the past)."""
        if when < self._now:
            raise ValueError(f"cannot move a clock backwards ({when} < {self._now})")
        self._now = float(when)

    async def sleep(self, seconds: float) -> None:
        """Advance virtual time by `max(0, seconds)` instantly, then yield once."""
        seconds = max(0.0, seconds)
        self.sleeps.append(seconds)
        self._now += seconds
        await asyncio.sleep(0)
