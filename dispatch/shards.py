"""Dispatching the regions this node holds leases on (DESIGN.md section 9).

:class:`RegionShards` claims region leases (:mod:`db.leases`) every few
seconds and keeps one dispatcher running for exactly the regions it holds.
When the held set changes (a region was gained, lost, or came back with a
new fence because another node held it meanwhile) the dispatcher is stopped
and started again on the new set: it rebuilds its state from PostgreSQL, so
nothing another node wrote in between is missed. A node that cannot renew
its leases for as long as they last stops dispatching, since other nodes
may by then have taken its regions; the fence check on every write covers
the moments in between.

Lease time is wall time on the database server, not the dispatching clock:
leases are about which node is alive, and a simulated clock running at 200x
must not expire them.

Limitation: a handover restarts the node's dispatcher for all its regions,
not only the one that moved; rebuilding a city's regions takes about a
second, during which new offers wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from datetime import timedelta
from typing import Any

import asyncpg

from db.leases import Lease, RegionLeases

__all__ = ["RegionShards", "Serve"]

logger = logging.getLogger(__name__)

#: Runs dispatching for the given leases until cancelled.
Serve = Callable[[Mapping[str, Lease]], Coroutine[Any, Any, None]]

# The share of a lease's time to live between two claims: three tries
# before a lease lapses.
_RENEW_FRACTION = 3
# What a claim raises when the database cannot answer it.
_UNREACHABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)


class RegionShards:
    """Keeps this node dispatching the regions it holds; see the module.

    Args:
        leases: This node's leases.
        serve: Started with the leases held; cancelled when they change.
        renew_every: Time between claims; default a third of the leases'
            time to live.
    """

    def __init__(
        self,
        leases: RegionLeases,
        serve: Serve,
        *,
        renew_every: timedelta | None = None,
    ) -> None:
        self._leases = leases
        self._serve = serve
        self._renew_every = renew_every or leases.ttl / _RENEW_FRACTION
        self._fences: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def fences(self) -> Mapping[str, int]:
        """The regions served now, with the fence each write checks."""
        return dict(self._fences)

    async def run(self) -> None:
        """Claim, serve and renew until cancelled; then give the regions up."""
        renewed = time.monotonic()
        try:
            while True:
                try:
                    async with asyncio.timeout(self._renew_every.total_seconds()):
                        held = await self._leases.claim()
                    renewed = time.monotonic()
                except _UNREACHABLE as error:
                    lapsed = time.monotonic() - renewed
                    logger.warning(
                        "region leases not renewed",
                        extra={"holder": self._leases.holder, "error": repr(error)},
                    )
                    if lapsed < self._leases.ttl.total_seconds():
                        await asyncio.sleep(self._renew_every.total_seconds())
                        continue
                    held = {}
                await self._follow(held)
                await asyncio.sleep(self._renew_every.total_seconds())
        finally:
            await self._stop()
            with contextlib.suppress(*_UNREACHABLE):
                async with asyncio.timeout(self._renew_every.total_seconds()):
                    await self._leases.release_all()

    async def _follow(self, held: Mapping[str, Lease]) -> None:
        """Restart dispatching when the regions or their fences changed."""
        fences = {region_id: lease.fence for region_id, lease in held.items()}
        task_died = self._task is not None and self._task.done()
        if fences == self._fences and not task_died:
            return

        gained = sorted(fences.keys() - self._fences.keys())
        lost = sorted(self._fences.keys() - fences.keys())
        logger.info(
            "region leases changed",
            extra={
                "holder": self._leases.holder,
                "regions": len(fences),
                "gained": gained,
                "lost": lost,
            },
        )
        await self._stop()
        self._fences = fences
        if fences:
            self._task = asyncio.create_task(self._serve(dict(held)))

    async def _stop(self) -> None:
        task, self._task = self._task, None
        self._fences = {}
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        except Exception:
            logger.exception(
                "dispatching of leased regions failed",
                extra={"holder": self._leases.holder},
            )
