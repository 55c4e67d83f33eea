"""Caregiver locations reach Redis in batches, never one call per message.

One multi-member ``GEOADD`` takes tens of thousands of members per second
where single commands take a few thousand, so phones' reports are gathered
and flushed every ``interval_s`` or as soon as ``max_batch`` are waiting.
Only the latest report of each caregiver in a batch is kept.
"""

from __future__ import annotations

import asyncio
import logging

from redis.exceptions import RedisError

from db.live import LiveState, Sighting

__all__ = ["LocationBatcher"]

logger = logging.getLogger(__name__)


class LocationBatcher:
    """Gathers location reports and writes them with :meth:`LiveState.report`.

    Call :meth:`add` from any handler; run :meth:`run` as one background
    task; :meth:`flush` writes what is waiting (also at shutdown).

    Args:
        live: Where locations are stored.
        interval_s: Longest wait of a report before it is written.
        max_batch: Reports that trigger a write at once.
    """

    def __init__(
        self, live: LiveState, *, interval_s: float = 0.2, max_batch: int = 500
    ) -> None:
        self._live = live
        self._interval_s = interval_s
        self._max_batch = max_batch
        self._waiting: dict[str, Sighting] = {}
        self._full = asyncio.Event()
        self.flushes = 0
        self.written = 0

    def add(self, sighting: Sighting) -> None:
        """Queue one report; a newer report of the same caregiver replaces it."""
        self._waiting[sighting.caregiver_id] = sighting
        if len(self._waiting) >= self._max_batch:
            self._full.set()

    async def flush(self) -> None:
        """Write every waiting report in one round trip."""
        if not self._waiting:
            return
        batch, self._waiting = list(self._waiting.values()), {}
        self._full.clear()
        await self._live.report(batch)
        self.flushes += 1
        self.written += len(batch)

    async def run(self) -> None:
        """Flush on every interval or full batch, until cancelled."""
        while True:
            try:
                async with asyncio.timeout(self._interval_s):
                    await self._full.wait()
            except TimeoutError:
                pass
            try:
                await self.flush()
            except (RedisError, OSError) as exc:
                # locations are rebuilt by the next reports within seconds
                logger.warning(
                    "location batch lost", extra={"error": type(exc).__name__}
                )
