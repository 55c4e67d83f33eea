"""Time, read by every piece of logic from one clock object.

Production uses :class:`WallClock`. Simulations and tests use
:class:`SimulatedClock`, which runs at a chosen multiple of real time (or
only when advanced by hand) so that a whole day replays in minutes with the
same code.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = ["Clock", "SimulatedClock", "WallClock"]


class Clock(Protocol):
    """Where the service reads the time and waits for it to pass."""

    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait until ``seconds`` of this clock's time have passed."""
        ...


class WallClock:
    """The real time."""

    def now(self) -> datetime:
        """The current UTC time."""
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of real time."""
        await asyncio.sleep(seconds)


class SimulatedClock:
    """A clock that starts at a given time and runs ``speed`` times faster.

    With ``speed`` 0 the clock stands still until :meth:`advance` moves it,
    which lets tests step through offer expiries exactly.

    Args:
        start: The simulated time at creation, timezone-aware.
        speed: Simulated seconds per real second; 0 freezes the clock.
    """

    def __init__(self, start: datetime, speed: float = 0.0) -> None:
        if start.tzinfo is None:
            raise ValueError("the simulated clock needs a timezone-aware start")
        if speed < 0:
            raise ValueError("speed must not be negative")
        self._origin = start
        self._offset = timedelta()
        self._speed = speed
        self._real_origin = time.monotonic()
        self._moved = asyncio.Event()

    @property
    def speed(self) -> float:
        """Simulated seconds per real second."""
        return self._speed

    def now(self) -> datetime:
        """The simulated time."""
        real = time.monotonic() - self._real_origin
        return self._origin + self._offset + timedelta(seconds=real * self._speed)

    def advance(self, seconds: float) -> None:
        """Jump the clock forward and wake everything sleeping on it."""
        if seconds < 0:
            raise ValueError("a clock only moves forward")
        self._offset += timedelta(seconds=seconds)
        self._moved.set()
        self._moved = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        """Wait until ``seconds`` of simulated time have passed."""
        deadline = self.now() + timedelta(seconds=seconds)
        while (left := (deadline - self.now()).total_seconds()) > 0:
            moved = self._moved
            real_wait = left / self._speed if self._speed else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(moved.wait(), timeout=real_wait)
