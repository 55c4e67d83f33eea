"""The background roles of a node, as aiohttp cleanup contexts.

The dispatcher role dispatches the regions this node holds leases on
(:mod:`dispatch.shards`): one :class:`Dispatcher` for the held regions,
writing under their fences and started again whenever they change. It also
books proactive care visits as they fall due (:mod:`db.proactive`), once a
minute; that is safe on several nodes at once.

Each role starts with the application and stops with it; a role that fails
is logged and started again after a pause, so one bad moment does not stop
dispatching for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from concurrent.futures import Executor, ProcessPoolExecutor
from datetime import timedelta
from typing import Any

from aiohttp import web

from db.leases import Fence, Lease, RegionLeases
from db.outbox import drop_cursors
from db.proactive import ProactiveVisits
from dispatch import metrics
from dispatch.dispatcher import Dispatcher, DispatchPolicy
from dispatch.node import NODE, Node
from dispatch.settings import Settings
from dispatch.shards import RegionShards
from ws.fanout import ProviderFanout

__all__ = ["DISPATCHING", "Dispatching", "dispatcher_role", "policy_from", "supervise"]

logger = logging.getLogger(__name__)
_RESTART_PAUSE_S = 1.0
_PROACTIVE_EVERY_S = 60.0


def policy_from(settings: Settings) -> DispatchPolicy:
    """The dispatcher's knobs as the settings give them."""
    return DispatchPolicy(
        offer_timeout=timedelta(seconds=settings.offer_timeout_s),
        emergency_offer_timeout=timedelta(seconds=settings.emergency_offer_timeout_s),
        emergency_bound=timedelta(seconds=settings.emergency_bound_s),
        reoptimise_every=(
            timedelta(seconds=settings.reoptimise_s) if settings.reoptimise_s else None
        ),
        solve_time_limit_s=float(settings.solve_limit_s),
        commit_ahead=(
            timedelta(minutes=settings.commit_ahead_min)
            if settings.commit_ahead_min
            else None
        ),
    )


async def supervise(name: str, run: Callable[[], Awaitable[None]]) -> None:
    """Run ``run`` until cancelled, starting it again whenever it fails."""
    while True:
        try:
            await run()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("role failed, restarting", extra={"role": name})
            await asyncio.sleep(_RESTART_PAUSE_S)
        else:
            return


class _FanoutPlans:
    """Sends plans to caregivers' phones through the realtime edge."""

    def __init__(self, fanout: ProviderFanout) -> None:
        self._fanout = fanout

    async def send_plan(self, caregiver_id: str, body: dict[str, Any]) -> None:
        await self._fanout.send_to_provider(caregiver_id, "plan", body)


class Dispatching:
    """This node's dispatching: its leases and the dispatcher serving them.

    Args:
        node: The node's connections and settings.
        executor: Where the dispatcher's solves run; ``None`` runs them in a
            thread (tests).
        holder: This node's name on its leases; unique among the nodes.
        renew_every: Time between lease claims; default a third of the
            leases' time to live.
    """

    def __init__(
        self,
        node: Node,
        executor: Executor | None,
        holder: str,
        *,
        renew_every: timedelta | None = None,
    ) -> None:
        self._node = node
        self._executor = executor
        self.holder = holder
        self.shards = RegionShards(
            RegionLeases(
                node.pool, holder, timedelta(seconds=node.settings.lease_ttl_s)
            ),
            self._serve,
            renew_every=renew_every,
        )
        #: The dispatcher running now; ``None`` while no region is held.
        self.current: Dispatcher | None = None

    async def _serve(self, held: Mapping[str, Lease]) -> None:
        node = self._node
        fence = Fence(self.holder, {r: lease.fence for r, lease in held.items()})
        dispatcher = Dispatcher(
            node.pool,
            node.orders,
            node.clock,
            live=node.live,
            policy=policy_from(node.settings),
            plan_sink=_FanoutPlans(ProviderFanout(node.redis)),
            regions=sorted(held),
            executor=self._executor,
            on_solve=metrics.SOLVE_SECONDS.observe,
            fence=fence,
            name=f"dispatcher:{self.holder}",
        )
        self.current = dispatcher
        metrics.REGIONS_HELD.set(len(held), self.holder)
        metrics.REGION_HANDOVERS.inc(self.holder)
        try:
            await supervise("dispatcher", dispatcher.run)
        finally:
            self.current = None
            metrics.REGIONS_HELD.set(0, self.holder)
            with contextlib.suppress(Exception):
                await drop_cursors(node.pool, dispatcher.cursors)


DISPATCHING = web.AppKey("dispatching", Dispatching)


def _holder() -> str:
    """A name for this node's leases: host, process and a fresh token."""
    return f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(3)}"


async def dispatcher_role(app: web.Application) -> AsyncIterator[None]:
    """Dispatch the regions this node leases, solving in a worker process."""
    node = app[NODE]
    # spawn: a fresh interpreter, not a fork of a process running a loop
    executor = ProcessPoolExecutor(
        max_workers=1, mp_context=multiprocessing.get_context("spawn")
    )
    dispatching = Dispatching(node, executor, _holder())
    app[DISPATCHING] = dispatching
    proactive = ProactiveVisits(node.pool, node.orders, node.clock)

    async def book_proactive_visits() -> None:
        while True:
            report = await proactive.generate()
            if not report.more:
                await node.clock.sleep(_PROACTIVE_EVERY_S)

    tasks = [
        asyncio.create_task(supervise("region leases", dispatching.shards.run)),
        asyncio.create_task(supervise("proactive visits", book_proactive_visits)),
    ]
    yield
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    executor.shutdown(wait=False, cancel_futures=True)
