"""Replaying a synthetic city day through the real dispatcher and store.

:class:`Simulation` books the day's orders at their times, runs the real
:class:`~dispatch.dispatcher.Dispatcher` on a simulated clock, and plays
the caregivers and vendors: they answer offers (mostly accepting, some
declining, each choice fixed by the order and the provider so every policy
meets the same moods), travel at e-bike speed, sometimes run late, check
in at the door, serve and complete with a service record. Nothing goes over
a network; everything goes through PostgreSQL and Redis as in production.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sys
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import asyncpg

from db.live import LiveState, Sighting
from db.orders import OrderStore, order_from_row
from db.outbox import OutboxReader
from dispatch.clock import SimulatedClock
from dispatch.commands import Commands
from dispatch.dispatcher import Dispatcher, DispatchPolicy
from dispatch.domain import (
    Actor,
    ActorRole,
    BookingRequest,
    Channel,
    GeoPoint,
    Priority,
    TimeWindow,
    distance_m,
)
from dispatch.errors import HomecareError
from dispatch.lifecycle import Order, OrderStatus, Trigger
from dispatch.simday import PlannedOrder, SimulatedDay, decision

__all__ = ["CrewStats", "Simulation"]

logger = logging.getLogger(__name__)

_DETOUR = 1.3
_SPEED_M_PER_S = 4.2
_HOTLINE = Actor(ActorRole.OPERATOR, "sim-hotline")
_DEVICE = Actor(ActorRole.DEVICE, "sim-device")
_CLOSER = Actor(ActorRole.SYSTEM, "sim-closer")
# callers booking at once, at most: a dozen hotline operators and devices
_BOOKING_CALLERS = 16


@dataclass
class CrewStats:
    """What the simulated providers did, measured by the simulator."""

    travelled_m: dict[str, float] = field(default_factory=dict)
    service_s: dict[str, float] = field(default_factory=dict)
    accepts: int = 0
    declines: int = 0
    late_arrivals: int = 0
    #: Simulated seconds from each order's planned booking time to its
    #: committed booking: how far the replay fell behind its own clock.
    booking_lag_s: list[float] = field(default_factory=list)


class Simulation:
    """One policy's replay of a simulated day.

    Args:
        day: The day to replay.
        pool: A database holding the day's city and shifts, and no orders.
        live: Live state in Redis (a prefix of its own).
        clock: A simulated clock starting at ``day.start``.
        policy: The dispatcher's knobs for this replay.
        executor: Where the dispatcher's solves run.
    """

    def __init__(
        self,
        day: SimulatedDay,
        pool: asyncpg.Pool,
        live: LiveState,
        clock: SimulatedClock,
        policy: DispatchPolicy,
        executor: Any = None,
    ) -> None:
        self.day = day
        self._pool = pool
        self._live = live
        self._clock = clock
        self.store = OrderStore(pool, clock)
        self._commands = Commands(self.store, checkin_radius_m=200)
        self.dispatcher = Dispatcher(
            pool,
            self.store,
            clock,
            live=live,
            policy=policy,
            executor=executor,
            plan_sink=self,  # plans reach the simulated phones
        )
        self.stats = CrewStats()
        self._keys: dict[str, str] = {}
        self._plans: dict[str, list[str]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._shifts = {s.caregiver_id: s for s in day.city.shifts(day.spec.day)}
        self._late_rate = day.spec.late_rate
        self._decline_rate = day.spec.decline_rate
        self._seed = day.spec.seed
        self.booked = 0

    # -- the plan sink ---------------------------------------------------

    async def send_plan(self, caregiver_id: str, body: dict[str, Any]) -> None:
        """Keep the caregiver's plan, as their phone would."""
        self._plans[caregiver_id] = [v["order_id"] for v in body["visits"]]
        self._wake_up(caregiver_id)

    # -- running ----------------------------------------------------------

    async def run(self, *, progress: bool = True) -> float:
        """Replay the day; returns the wall-clock seconds it took."""
        started = time.perf_counter()
        await self._live.report(
            [
                Sighting(cid, shift.start, self._clock.now())
                for cid, shift in self._shifts.items()
            ]
        )
        await self.dispatcher.start()
        async with asyncio.TaskGroup() as group:
            workers = [
                group.create_task(self.dispatcher.run()),
                group.create_task(self._answer_offers()),
                group.create_task(self._book_orders()),
                *(group.create_task(self._work(cid)) for cid in self._shifts),
            ]
            if progress:
                workers.append(group.create_task(self._progress()))
            await self._clock.sleep((self.day.end - self._clock.now()).total_seconds())
            for task in workers + list(self._tasks):
                task.cancel()
        if progress:
            sys.stderr.write("\n")
        return time.perf_counter() - started

    def order_keys(self) -> dict[str, str]:
        """The day's order key of each booked order id."""
        return dict(self._keys)

    async def _progress(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = self._clock.now().astimezone(self.day.start.tzinfo)
            done = await self._pool.fetchval(
                "select count(*) from \"order\" where status in ('completed', 'closed')"
            )
            span = (self.day.end - self.day.start).total_seconds()
            share = (now - self.day.start).total_seconds() / span
            bar = "#" * int(30 * share)
            sys.stderr.write(
                f"\r[{bar:<30}] {now:%H:%M} booked {self.booked}"
                f" served {done} offers {self.dispatcher.stats['offers']}"
                f" escalated {self.dispatcher.stats['escalations']}   "
            )
            sys.stderr.flush()

    async def _book_orders(self) -> None:
        # Orders due together are booked side by side, as many callers would:
        # one at a time, the burst booked the evening before (a thousand
        # orders in four simulated minutes) kept the replay over an hour
        # behind its clock at 200x.
        slots = asyncio.Semaphore(_BOOKING_CALLERS)
        async with asyncio.TaskGroup() as group:
            for planned in self.day.orders:
                wait_s = (planned.booked_at - self._clock.now()).total_seconds()
                if wait_s > 0:
                    await self._clock.sleep(wait_s)
                await slots.acquire()
                group.create_task(self._book(planned, slots))

    async def _book(self, planned: PlannedOrder, slots: asyncio.Semaphore) -> None:
        emergency = planned.priority is Priority.EMERGENCY
        try:
            booking = await self.store.create(
                BookingRequest(
                    elder_id=planned.elder_id,
                    service_code=planned.service_code,
                    window=TimeWindow(planned.earliest, planned.latest),
                    priority=planned.priority,
                    channel=Channel.DEVICE if emergency else Channel.HOTLINE,
                ),
                _DEVICE if emergency else _HOTLINE,
                planned.key,
            )
        except HomecareError:
            logger.exception("simulated booking refused", extra={"key": planned.key})
            return
        finally:
            slots.release()
        self._keys[booking.order.order_id] = planned.key
        self.booked += 1
        lag = self._clock.now() - planned.booked_at
        self.stats.booking_lag_s.append(max(0.0, lag.total_seconds()))

    async def _answer_offers(self) -> None:
        reader = OutboxReader(self._pool, "sim-crew")
        async for batch in reader.batches():
            for event in batch:
                if event.trigger == "offer":
                    provider_id = str(event.payload["provider_id"])
                    self._spawn(self._answer(event.order_id, provider_id))
            await reader.commit()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, order_id: str, provider_id: str) -> None:
        key = self._keys.get(order_id, order_id)
        mood = decision(self._seed, key, provider_id)
        order = await self.store.get(order_id)
        vendor = provider_id.startswith("vd-")
        role = ActorRole.VENDOR if vendor else ActorRole.CAREGIVER
        actor = Actor(role, provider_id)
        emergency = order.priority is Priority.EMERGENCY
        await self._clock.sleep((5 + 10 * mood) if emergency else (10 + 30 * mood))
        declines = mood < (self._decline_rate / 2 if emergency else self._decline_rate)
        trigger = Trigger.DECLINE if declines and not vendor else Trigger.ACCEPT
        try:
            await self._commands.act(actor, order_id, trigger, version=order.version)
        except HomecareError:
            return  # the offer expired or was withdrawn meanwhile
        if trigger is Trigger.DECLINE:
            self.stats.declines += 1
            return
        self.stats.accepts += 1
        if vendor:
            self._spawn(self._deliver(actor, order_id, mood))
        else:
            self._wake_up(provider_id)

    async def _deliver(self, vendor: Actor, order_id: str, mood: float) -> None:
        order = await self.store.get(order_id)
        ready = max(self._clock.now(), order.window.earliest - timedelta(minutes=20))
        await self._clock.sleep((ready - self._clock.now()).total_seconds())
        try:
            await self._commands.act(vendor, order_id, Trigger.DEPART)
            await self._clock.sleep(900 + 900 * mood)
            await self._commands.act(
                vendor,
                order_id,
                Trigger.DELIVER,
                payload={"record": {"delivered": True}},
            )
            await self._commands.act(_CLOSER, order_id, Trigger.CLOSE)
        except HomecareError:
            return

    # -- caregivers at work -------------------------------------------------

    def _wake_up(self, caregiver_id: str) -> None:
        event = self._wake.get(caregiver_id)
        if event is not None:
            event.set()

    async def _held(self, caregiver_id: str) -> list[Order]:
        rows = await self._pool.fetch(
            'select * from "order"'
            " where provider_id = $1 and status in ('accepted', 'en_route')",
            caregiver_id,
        )
        held = [order_from_row(r) for r in rows]
        plan = self._plans.get(caregiver_id, [])
        rank = {order_id: k for k, order_id in enumerate(plan)}
        held.sort(
            key=lambda o: (
                o.priority is not Priority.EMERGENCY,
                rank.get(o.order_id, len(rank)),
                o.window.latest,
            )
        )
        return held

    async def _work(self, caregiver_id: str) -> None:
        shift = self._shifts[caregiver_id]
        wake = self._wake.setdefault(caregiver_id, asyncio.Event())
        await self._clock.sleep((shift.starts_at - self._clock.now()).total_seconds())
        here = shift.start
        actor = Actor(ActorRole.CAREGIVER, caregiver_id)
        while self._clock.now() < shift.ends_at + timedelta(hours=1):
            held = await self._held(caregiver_id)
            if not held:
                wake.clear()
                await self._nap(wake, 300)
                continue
            order = held[0]
            travel_s = _travel_s(here, order.location)
            leave_at = order.window.earliest - timedelta(seconds=travel_s)
            gap_s = (leave_at - self._clock.now()).total_seconds()
            if gap_s > 30 and order.priority is not Priority.EMERGENCY:
                wake.clear()
                await self._nap(wake, min(gap_s, 300))
                continue
            here = await self._visit(actor, order, here, travel_s)
        if here != shift.end:
            self._count_travel(caregiver_id, here, shift.end)

    async def _nap(self, wake: asyncio.Event, seconds: float) -> None:
        waiting = asyncio.ensure_future(wake.wait())
        try:
            await asyncio.wait(
                [waiting, asyncio.ensure_future(self._clock.sleep(seconds))],
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            waiting.cancel()

    async def _visit(
        self, actor: Actor, order: Order, here: GeoPoint, travel_s: float
    ) -> GeoPoint:
        caregiver_id = actor.actor_id
        key = self._keys.get(order.order_id, order.order_id)
        try:
            if order.status is OrderStatus.ACCEPTED:
                await self._commands.act(actor, order.order_id, Trigger.DEPART)
            late = decision(self._seed, key + "|late", caregiver_id) < self._late_rate
            if late:
                self.stats.late_arrivals += 1
                travel_s += 600
            await self._clock.sleep(travel_s)
            self._count_travel(caregiver_id, here, order.location)
            here = order.location
            await self._live.report([Sighting(caregiver_id, here, self._clock.now())])
            await self._commands.check_in(actor, order.order_id, order.location)
            wait_s = (order.window.earliest - self._clock.now()).total_seconds()
            if wait_s > 0:
                await self._clock.sleep(wait_s)
            await self._commands.act(actor, order.order_id, Trigger.START)
            await self._clock.sleep(order.duration_min * 60)
            self.stats.service_s[caregiver_id] = (
                self.stats.service_s.get(caregiver_id, 0.0) + order.duration_min * 60
            )
            await self._commands.act(
                actor,
                order.order_id,
                Trigger.COMPLETE,
                payload={"record": {"tasks": [order.service_code], "outcome": "done"}},
            )
            await self._commands.act(_CLOSER, order.order_id, Trigger.CLOSE)
        except HomecareError as refused:
            logger.debug(
                "simulated visit stopped",
                extra={"order_id": order.order_id, "code": refused.code},
            )
        return here

    def _count_travel(self, caregiver_id: str, a: GeoPoint, b: GeoPoint) -> None:
        self.stats.travelled_m[caregiver_id] = (
            self.stats.travelled_m.get(caregiver_id, 0.0) + distance_m(a, b) * _DETOUR
        )


def _travel_s(a: GeoPoint, b: GeoPoint) -> float:
    return math.ceil(distance_m(a, b) * _DETOUR / _SPEED_M_PER_S)
