"""The background roles of a node, as aiohttp cleanup contexts.

The dispatcher role also books proactive care visits as they fall due
(:mod:`db.proactive`), once a minute.

Each role starts with the application and stops with it; a role that fails
is logged and started again after a pause, so one bad moment does not stop
dispatching for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from datetime import timedelta
from typing import Any

from aiohttp import web

from db.proactive import ProactiveVisits
from dispatch import metrics
from dispatch.dispatcher import Dispatcher, DispatchPolicy
from dispatch.node import NODE
from dispatch.settings import Settings
from ws.fanout import ProviderFanout

__all__ = ["DISPATCHER", "dispatcher_role", "policy_from", "supervise"]

logger = logging.getLogger(__name__)

DISPATCHER = web.AppKey("dispatcher", Dispatcher)
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


async def dispatcher_role(app: web.Application) -> AsyncIterator[None]:
    """Run the dispatcher of every region, solving in a worker process."""
    node = app[NODE]
    # spawn: a fresh interpreter, not a fork of a process running a loop
    executor = ProcessPoolExecutor(
        max_workers=1, mp_context=multiprocessing.get_context("spawn")
    )
    dispatcher = Dispatcher(
        node.pool,
        node.orders,
        node.clock,
        live=node.live,
        policy=policy_from(node.settings),
        plan_sink=_FanoutPlans(ProviderFanout(node.redis)),
        executor=executor,
        on_solve=metrics.SOLVE_SECONDS.observe,
    )
    app[DISPATCHER] = dispatcher
    proactive = ProactiveVisits(node.pool, node.orders, node.clock)

    async def book_proactive_visits() -> None:
        while True:
            report = await proactive.generate()
            if not report.more:
                await node.clock.sleep(_PROACTIVE_EVERY_S)

    tasks = [
        asyncio.create_task(supervise("dispatcher", dispatcher.run)),
        asyncio.create_task(supervise("proactive visits", book_proactive_visits)),
    ]
    yield
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    executor.shutdown(wait=False, cancel_futures=True)
