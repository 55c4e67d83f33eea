"""The dispatcher: turns booked orders into offers and keeps plans good.

One :class:`Dispatcher` serves a set of regions. It learns of every change
from the committed event log (:class:`db.outbox.OutboxReader`), keeps the
open orders and each caregiver's planned route in memory, and acts:

- **Fast path**: a booked order is placed where it costs least in a
  caregiver's current route (:mod:`solver.insertion`) and offered at once,
  with an expiry and an explanation of the choice.
- **Emergency ladder**: an emergency skips the plans; the nearest capable
  caregivers on duty are offered it one at a time with a short expiry. If
  nobody has accepted it within the bound, it is escalated, loudly. An
  accepted emergency pushes out routine visits of that caregiver that no
  longer fit; they go back into dispatch.
- **Vendors**: vendor orders are matched by category, coverage, opening
  hours, capacity, distance and merit, and offered the same way.
- **Deadlines**: expired offers and orders past their deadline are found by
  querying PostgreSQL, so a restarted dispatcher acts on every deadline
  that passed while it was down.
- **Re-optimisation**: every few seconds the region is solved again in a
  worker process, warm-started, accepted visits pinned; booked orders that
  found a place become offers, and caregivers get their new plans.

On a node running the dispatcher role, the regions are those the node
holds leases on (:mod:`dispatch.shards`), and every transition is written
under their fences, so a dispatcher whose lease has passed to another node
changes nothing.

Limitation: the emergency ladder offers one caregiver at a time (DESIGN.md
keeps at most one open offer per order); it does not yet offer the best K
in parallel.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

import asyncpg

from db.leases import Fence
from db.live import Duty, LiveState
from db.orders import OrderStore
from db.outbox import OutboxReader
from db.roster import (
    ElderPreferences,
    caregivers_on_shift,
    due_offers,
    elder_preferences,
    fetch_orders,
    open_orders,
    overdue_orders,
    service_lateness,
)
from dispatch.clock import Clock
from dispatch.domain import Actor, ActorRole, Priority, ProviderKind, distance_m
from dispatch.errors import HomecareError, LeaseLostError
from dispatch.lifecycle import TERMINAL_STATES, Order, OrderStatus, Trigger
from dispatch.planning import (
    AT_THE_DOOR,
    RegionProblem,
    Shift,
    TravelTimes,
    explain,
    order_visit,
    route_of,
    solve_region,
)
from dispatch.vendors import VendorMatcher
from solver import Plan, Problem, SolveOptions, Visit, solve
from solver.insertion import CurrentRoute, InsertionIndex, InsertionResult

__all__ = ["DispatchPolicy", "Dispatcher", "PlanSink", "SolveFn"]

logger = logging.getLogger(__name__)

SYSTEM = Actor(ActorRole.SYSTEM, "dispatcher")
_DONE = TERMINAL_STATES | {OrderStatus.COMPLETED, OrderStatus.NO_SHOW}
_HOLDING = frozenset({OrderStatus.OFFERED, OrderStatus.ACCEPTED, OrderStatus.EN_ROUTE})
# door-to-door seconds per metre of straight line: detour 1.3 at 4.2 m/s
_SECONDS_PER_M = 1.3 / 4.2

#: Most offers a dispatcher commits side by side.
_PLACED_TOGETHER = 64

#: Most plans a dispatcher sends side by side (each reads and writes Redis).
_SENT_TOGETHER = 16

SolveFn = Callable[[Problem, SolveOptions], Plan]

_T = TypeVar("_T")


class PlanSink(Protocol):
    """Where new plans of caregivers go (the realtime edge, or nowhere)."""

    async def send_plan(self, caregiver_id: str, body: dict[str, Any]) -> None:
        """Deliver ``body`` as the caregiver's current plan."""
        ...


@dataclass(frozen=True, slots=True)
class DispatchPolicy:
    """The dispatcher's knobs.

    Attributes:
        offer_timeout: How long a routine or urgent offer stays open.
        emergency_offer_timeout: How long an emergency offer stays open.
        emergency_bound: Escalate an emergency not accepted this long
            after booking.
        emergency_radius_m: Farthest caregiver the ladder asks, in metres.
        reoptimise_every: Time between re-optimisations of a region;
            ``None`` turns re-optimisation off (the greedy policy).
        solve_time_limit_s: Budget of each re-optimisation, in seconds.
        horizon: Orders whose window opens further ahead wait.
        tick: How often deadlines are checked.
        nearest_first: Offer to the nearest capable caregiver instead of
            the cheapest insertion (the greedy baseline of the simulator).
        fast_path: Offer new routine and urgent orders at once; when false
            they wait for the next re-optimisation (batching).
        commit_ahead: With re-optimisation on, an order whose window opens
            further ahead than this is planned but not yet offered: it stays
            free to move between caregivers as later orders arrive, and is
            offered to its planned caregiver once its window comes this
            close. ``None`` offers every order at once. On the simulated day
            two hours served more orders in window with less travel than
            offering everything at once.
        seed: Seed of every solve.
    """

    offer_timeout: timedelta = timedelta(seconds=60)
    emergency_offer_timeout: timedelta = timedelta(seconds=20)
    emergency_bound: timedelta = timedelta(seconds=60)
    emergency_radius_m: float = 8_000.0
    reoptimise_every: timedelta | None = timedelta(seconds=10)
    solve_time_limit_s: float = 2.0
    horizon: timedelta = timedelta(hours=12)
    tick: timedelta = timedelta(milliseconds=250)
    nearest_first: bool = False
    fast_path: bool = True
    commit_ahead: timedelta | None = timedelta(hours=2)
    seed: int = 0


@dataclass
class _State:
    """What the dispatcher knows; rebuilt from PostgreSQL at start."""

    origin: datetime
    travel: TravelTimes = field(default_factory=TravelTimes)
    shifts: dict[str, Shift] = field(default_factory=dict)
    orders: dict[str, Order] = field(default_factory=dict)
    routes: dict[str, list[str]] = field(default_factory=dict)
    preferences: dict[str, ElderPreferences] = field(default_factory=dict)
    lateness_min: dict[str, int] = field(default_factory=dict)
    plans: dict[str, Plan] = field(default_factory=dict)
    tentative: dict[str, str] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)


class Dispatcher:
    """Dispatches the orders of some regions; see the module docstring.

    Call :meth:`run` in a task; cancel it to stop. :meth:`start` loads the
    state and may be awaited alone by tests that drive steps by hand.

    Args:
        pool: Connections to the order database.
        orders: The order store (all writes go through it).
        clock: The time the dispatcher lives by.
        live: Live caregiver locations and duty; ``None`` uses shift starts.
        policy: The knobs.
        plan_sink: Where plans go; ``None`` keeps them here.
        regions: Region ids to serve; ``None`` serves all.
        executor: Where solves run (a worker process); ``None`` runs them in
            a thread of this process (tests).
        solve_fn: The solver entry point (tests may slow it down).
        on_solve: Told the wall time of every solve, in seconds (metrics).
        fence: The region leases this dispatcher writes under; every
            transition it makes is refused once a lease has passed on.
            ``None`` writes unfenced (one dispatcher for all regions).
        name: Names its cursors in the event log; unique among the
            dispatchers sharing a database.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        orders: OrderStore,
        clock: Clock,
        *,
        live: LiveState | None = None,
        policy: DispatchPolicy | None = None,
        plan_sink: PlanSink | None = None,
        regions: Sequence[str] | None = None,
        executor: Executor | None = None,
        solve_fn: SolveFn = solve,
        on_solve: Callable[[float], None] | None = None,
        fence: Fence | None = None,
        name: str = "dispatcher",
    ) -> None:
        self._pool = pool
        self._fence = fence
        self.name = name
        #: The names of its cursors in the event log.
        self.cursors = (name, f"{name}-emergency")
        self._orders = orders
        self._clock = clock
        self._live = live
        self.policy = policy or DispatchPolicy()
        self._sink = plan_sink
        self._regions = list(regions) if regions is not None else None
        self._executor = executor
        self._solve = solve_fn
        self._on_solve = on_solve
        self._state = _State(origin=clock.now())
        self._busy: set[str] = set()
        self._touched: set[str] = set()
        self._seen_live: dict[str, tuple[Any, Duty | None]] | None = None
        self._vendors = VendorMatcher(pool)
        self.stats: dict[str, int] = {"offers": 0, "escalations": 0, "solves": 0}

    # -- running ---------------------------------------------------------

    async def start(self) -> None:
        """Load shifts, open orders and preferences; dispatch what waits."""
        now = self._clock.now()
        self._state = _State(
            origin=now.replace(hour=0, minute=0, second=0, microsecond=0)
        )
        await self.refresh_roster()
        async with self._pool.acquire() as conn:
            self._state.lateness_min = await service_lateness(conn)
            found = await open_orders(conn, self._regions)
        await self._learn_preferences(found)
        for order in found:
            self._absorb(order)
        logger.info(
            "dispatcher started",
            extra={"orders": len(found), "caregivers": len(self._state.shifts)},
        )
        for order in found:
            if order.status is OrderStatus.BOOKED:
                await self.dispatch(order.order_id)

    async def run(self) -> None:
        """Follow the event log, watch deadlines and re-optimise, forever."""
        main, emergencies = (
            OutboxReader(self._pool, name, from_now=True) for name in self.cursors
        )
        # Readers placed before the state is loaded miss no event after it.
        await main.prepare()
        await emergencies.prepare()
        await self.start()
        async with asyncio.TaskGroup() as group:
            group.create_task(self._follow(main))
            group.create_task(self._follow_emergencies(emergencies))
            group.create_task(self._watch_deadlines())
            group.create_task(self._refresh_roster_hourly())
            if self.policy.reoptimise_every is not None:
                group.create_task(self._reoptimise_forever())

    async def refresh_roster(self) -> None:
        """Reload the caregivers whose shift overlaps now and the horizon."""
        now = self._clock.now()
        async with self._pool.acquire() as conn:
            rows = await caregivers_on_shift(
                conn, now, now + self.policy.horizon, self._regions
            )
        self._state.shifts = {
            r.caregiver_id: Shift(
                r.caregiver_id,
                r.region_id,
                r.skills,
                r.max_visits,
                r.shift_start,
                r.shift_end,
                r.start,
                r.end,
            )
            for r in rows
        }
        for caregiver_id in self._state.shifts:
            self._state.routes.setdefault(caregiver_id, [])

    async def _refresh_roster_hourly(self) -> None:
        while True:
            await self._clock.sleep(3600)
            await self.refresh_roster()

    async def _follow(self, reader: OutboxReader) -> None:
        async for batch in reader.batches():
            await self.on_events([e.order_id for e in batch])
            await reader.commit()

    async def _follow_emergencies(self, reader: OutboxReader) -> None:
        """Emergencies skip the queue.

        A second reader of the log takes only emergencies that became booked
        (new, declined, given back) or accepted, so a burst of thousands of
        bookings ahead of one never delays its ladder.
        """
        async for batch in reader.batches():
            wanted = [
                e.order_id for e in batch if e.to_status in ("booked", "accepted")
            ]
            if wanted:
                await self.on_events(wanted, emergencies_only=True)
            await reader.commit()

    async def on_events(
        self, order_ids: Sequence[str], *, emergencies_only: bool = False
    ) -> None:
        """Take in the orders that changed and react to what is new."""
        unique = list(dict.fromkeys(order_ids))
        async with self._pool.acquire() as conn:
            changed = await fetch_orders(conn, unique)
        if emergencies_only:
            changed = [o for o in changed if o.priority is Priority.EMERGENCY]
            if not changed:
                return
        await self._learn_preferences(changed)
        # emergencies first: nothing in a batch may delay them
        changed.sort(key=lambda o: o.priority is not Priority.EMERGENCY)
        self._seen_live = {}
        try:
            await self._react_all(changed)
        finally:
            self._seen_live = None
        touched, self._touched = self._touched, set()
        await self._send_routes(sorted(touched))

    async def _react_all(self, changed: Sequence[Order]) -> None:
        placing: list[Order] = []
        for order in changed:
            if self._regions is not None and order.region_id not in self._regions:
                continue
            known = self._state.orders.get(order.order_id)
            if known is not None and known.version >= order.version:
                continue
            if _placed_alongside(order):
                placing.append(order)
            else:
                await self._react_safely(order)
        # Each placement takes its place in memory before its offer commits,
        # so routine orders are placed one after another but their offers
        # commit together, in one group (db.groupcommit). The loop turns
        # between placements, so intake and phones are heard meanwhile.
        for chunk in _chunks(placing, _PLACED_TOGETHER):
            async with asyncio.TaskGroup() as group:
                for order in chunk:
                    group.create_task(self._react_safely(order))
                    await asyncio.sleep(0)

    async def _react_safely(self, order: Order) -> None:
        try:
            await self._react(order)
        except Exception:
            # one order's trouble must not stop dispatching the others
            logger.exception(
                "reaction to an order change failed",
                extra={"order_id": order.order_id},
            )

    async def _react(self, order: Order) -> None:
        self._absorb(order)
        if order.status is OrderStatus.BOOKED:
            await self.dispatch(order.order_id)
        elif (
            order.status is OrderStatus.ACCEPTED
            and order.priority is Priority.EMERGENCY
            and order.provider_id
        ):
            await self._make_room(order.provider_id)

    async def _watch_deadlines(self) -> None:
        while True:
            try:
                await self.check_deadlines()
            except Exception:
                logger.exception("deadline check failed")
            await self._clock.sleep(self.policy.tick.total_seconds())

    async def check_deadlines(self) -> None:
        """Expire due offers and escalate overdue orders."""
        now = self._clock.now()
        async with self._pool.acquire() as conn:
            offers = await due_offers(conn, now)
            overdue = await overdue_orders(conn, now, self.policy.emergency_bound)
        for offer in offers:
            order = await self._transition(
                offer.order_id, Trigger.EXPIRE, version=offer.version, reason="expired"
            )
            if order is not None:
                logger.info(
                    "offer expired",
                    extra={
                        "order_id": offer.order_id,
                        "provider_id": offer.provider_id,
                    },
                )
                self._absorb(order)
                await self.dispatch(order.order_id)
        for order, reason in overdue:
            await self._escalate(order, reason)

    # -- placing one order -----------------------------------------------

    async def dispatch(self, order_id: str) -> None:
        """Find a provider for one booked order and offer it to them."""
        order = self._state.orders.get(order_id)
        if order is None or order.status is not OrderStatus.BOOKED:
            return
        if order_id in self._busy:
            return
        self._busy.add(order_id)
        try:
            if order.provider_kind is ProviderKind.VENDOR:
                await self._offer_vendor(order)
            elif order.priority is Priority.EMERGENCY:
                await self._climb_ladder(order)
            else:
                await self._fast_path(order)
        finally:
            self._busy.discard(order_id)

    async def _fast_path(self, order: Order) -> None:
        now = self._clock.now()
        ahead = self.policy.commit_ahead
        planned_later = (
            self.policy.reoptimise_every is not None
            and ahead is not None
            and order.window.earliest > now + ahead
        )
        if (
            not self.policy.fast_path
            or planned_later
            or order.window.earliest > now + self.policy.horizon
        ):
            self._state.dirty.add(order.region_id)
            return
        routes = self._free(await self._routes(order.region_id, now))
        visit = self._visit(order)
        result = InsertionIndex(self._state.travel.matrix, routes).rank(visit)
        overrides_plan = not result.insertions and bool(self._state.tentative)
        if overrides_plan:
            # Where every place would break a planned-ahead visit, take one
            # anyway: the order is due sooner, and commit_due re-places the
            # planned visits it pushes out.
            routes = self._free(
                await self._routes(order.region_id, now, tentative=False)
            )
            result = InsertionIndex(self._state.travel.matrix, routes).rank(visit)
        if self.policy.nearest_first:
            result = self._nearest_first(result, visit, routes)
        if not result.insertions:
            # orders left waiting are what call for a new solve of their region
            self._state.dirty.add(order.region_id)
            logger.info(
                "no caregiver can take the order now",
                extra={"order_id": order.order_id, "caregivers": len(routes)},
            )
            return
        best = result.insertions[0]
        route = self._state.routes.setdefault(best.caregiver_id, [])
        body = explain(
            result,
            best,
            self._state.origin,
            load=len(route),
            skills=order.skills,
        )
        if overrides_plan:
            route[:] = [
                o
                for o in route
                if o in self._state.orders
                and self._state.orders[o].status is not OrderStatus.BOOKED
            ]
        await self._offer_in_place(order, best.caregiver_id, best.position, body)

    async def _offer_in_place(
        self, order: Order, caregiver_id: str, position: int, body: dict[str, Any]
    ) -> Order | None:
        """Offer ``order`` at ``position`` of a caregiver's route.

        The place is taken in memory before the offer commits, so orders
        placed while it commits are placed around it; it is given up again
        if the offer is refused.
        """
        state = self._state
        _take_out(state.routes, order.order_id)
        route = state.routes.setdefault(caregiver_id, [])
        planned = [o for o in route if o in state.orders]
        route.insert(_position_among(position, planned, state.orders), order.order_id)
        offered = await self._offer(
            order, caregiver_id, body, self.policy.offer_timeout
        )
        if offered is None:
            current = state.orders.get(order.order_id)
            holder = (
                current.offer_provider_id or current.provider_id if current else None
            )
            if holder != caregiver_id and order.order_id in route:
                route.remove(order.order_id)
        return offered

    def _nearest_first(
        self, result: InsertionResult, visit: Visit, routes: Sequence[CurrentRoute]
    ) -> InsertionResult:
        """Re-rank feasible insertions by the caregiver's distance only."""
        travel = self._state.travel
        start = {r.caregiver.caregiver_id: r.caregiver.start_location for r in routes}
        ranked = sorted(
            result.insertions,
            key=lambda i: travel.seconds(start[i.caregiver_id], visit.location),
        )
        return InsertionResult(result.visit_id, tuple(ranked), result.rejections)

    async def _climb_ladder(self, order: Order) -> None:
        """Offer an emergency to the nearest capable caregiver on duty."""
        now = self._clock.now()
        candidates = await self._nearest_capable(order, now)
        if not candidates:
            logger.warning(
                "no caregiver on duty can take the emergency",
                extra={"order_id": order.order_id},
            )
            return
        caregiver_id, metres, eta_s = candidates[0]
        body = {
            "caregiver_id": caregiver_id,
            "ladder": True,
            "distance_m": round(metres),
            "eta_min": round(eta_s / 60, 1),
            "travel_added_min": round(metres * _SECONDS_PER_M / 60, 1),
            "skills_matched": sorted(order.skills),
            "alternatives": [
                {
                    "caregiver_id": cid,
                    "distance_m": round(m),
                    "eta_min": round(eta / 60, 1),
                    "why_lost": "would arrive later",
                }
                for cid, m, eta in candidates[1:4]
            ],
            "candidates": len(candidates),
        }
        offered = await self._offer(
            order, caregiver_id, body, self.policy.emergency_offer_timeout
        )
        if offered is not None:
            _take_out(self._state.routes, order.order_id)
            self._state.routes.setdefault(caregiver_id, []).insert(0, order.order_id)
            elapsed = (now - order.created_at).total_seconds()
            logger.info(
                "emergency offered",
                extra={
                    "order_id": order.order_id,
                    "caregiver_id": caregiver_id,
                    "since_booking_s": round(elapsed, 3),
                },
            )

    async def _nearest_capable(
        self, order: Order, now: datetime
    ) -> list[tuple[str, float, float]]:
        """Capable caregivers on duty by soonest arrival at the elder's door.

        Returns ``(caregiver_id, distance_m, eta_s)``: a caregiver in the
        middle of a visit is counted from when that visit ends and from
        that elder's home, so a free caregiver a little farther away wins
        over a busy one next door.
        """
        state = self._state
        capable = {
            cid: shift
            for cid, shift in state.shifts.items()
            if order.skills <= shift.skills
            and cid not in order.excluded_provider_ids
            and shift.starts_at <= now < shift.ends_at
        }
        view = await self._live_view(list(capable), now)
        found = []
        for cid, shift in capable.items():
            here, duty = view[cid]
            if duty not in (None, Duty.ON_SHIFT) or self._busy_with_emergency(cid):
                continue
            place, free_at = here or shift.start, now
            for other_id in state.routes.get(cid, []):
                other = state.orders.get(other_id)
                if other is not None and other.status in AT_THE_DOOR:
                    place = other.location
                    started = other.updated_at or now
                    free_at = max(now, started + timedelta(minutes=other.duration_min))
            metres = distance_m(place, order.location)
            if metres > self.policy.emergency_radius_m:
                continue
            eta_s = (free_at - now).total_seconds() + metres * _SECONDS_PER_M
            found.append((cid, metres, eta_s))
        found.sort(key=lambda item: item[2])
        return found

    def _free(self, routes: list[CurrentRoute]) -> list[CurrentRoute]:
        """The routes of caregivers not answering an emergency.

        An emergency goes first; a routine visit slipped in ahead of it
        would delay it, so such caregivers get new visits once it is done.
        """
        return [
            r for r in routes if not self._busy_with_emergency(r.caregiver.caregiver_id)
        ]

    def _busy_with_emergency(self, caregiver_id: str) -> bool:
        for order_id in self._state.routes.get(caregiver_id, []):
            order = self._state.orders.get(order_id)
            if order is not None and order.priority is Priority.EMERGENCY:
                return True
        return False

    async def _make_room(self, caregiver_id: str) -> None:
        """Give back routine visits an accepted emergency pushed out."""
        now = self._clock.now()
        route = [
            o
            for o in self._state.routes.get(caregiver_id, [])
            if o in self._state.orders
            and self._state.orders[o].status is not OrderStatus.BOOKED
        ]
        shift = self._state.shifts.get(caregiver_id)
        if shift is None:
            return
        emergency = [o for o in route if self._priority(o) is Priority.EMERGENCY]
        others = [o for o in route if o not in emergency]
        planned = [self._state.orders[o] for o in emergency + others]
        visits = {o.order_id: self._visit(o) for o in planned}
        here = await self._location(caregiver_id, now)
        kept: list[str] = list(emergency)
        for order in planned[len(emergency) :]:
            trial = [self._state.orders[o] for o in [*kept, order.order_id]]
            current = route_of(
                shift, here, now, trial, visits, self._state.travel, self._state.origin
            )
            if _feasible(current, self._state.travel):
                kept.append(order.order_id)
                continue
            if order.status in (OrderStatus.ACCEPTED, OrderStatus.EN_ROUTE):
                trigger, reason = Trigger.GIVE_BACK, "pre-empted by an emergency"
            else:
                trigger, reason = Trigger.WITHDRAW, "pre-empted by an emergency"
            changed = await self._transition(order.order_id, trigger, reason=reason)
            if changed is not None:
                logger.info(
                    "visit pre-empted by an emergency",
                    extra={"order_id": order.order_id, "caregiver_id": caregiver_id},
                )
                self._absorb(changed)
                await self.dispatch(order.order_id)
        self._state.routes[caregiver_id] = [o for o in kept if o in self._state.orders]

    async def _offer_vendor(self, order: Order) -> None:
        choice = await self._vendors.choose(order, self._clock.now())
        if choice.vendor_id is None:
            logger.info(
                "no vendor can take the order now",
                extra={"order_id": order.order_id, "reason": choice.reason},
            )
            return
        await self._offer(
            order, choice.vendor_id, choice.explanation, self.policy.offer_timeout
        )

    async def _offer(
        self,
        order: Order,
        provider_id: str,
        explanation: dict[str, Any],
        expiry: timedelta,
    ) -> Order | None:
        expires = self._clock.now() + expiry
        changed = await self._transition(
            order.order_id,
            Trigger.OFFER,
            version=order.version,
            payload={
                "provider_id": provider_id,
                "expires_at": expires.isoformat(),
                "explanation": explanation,
            },
        )
        if changed is not None:
            self.stats["offers"] += 1
            self._absorb(changed)
        return changed

    async def _escalate(self, order: Order, reason: str) -> None:
        changed = await self._transition(
            order.order_id, Trigger.ESCALATE, reason=reason
        )
        if changed is None:
            return
        self.stats["escalations"] += 1
        self._absorb(changed)
        if order.priority is Priority.EMERGENCY:
            logger.error(
                "emergency escalated to operators",
                extra={"order_id": order.order_id, "reason": reason},
            )
        else:
            logger.warning(
                "order escalated to operators",
                extra={"order_id": order.order_id, "reason": reason},
            )

    async def _transition(
        self,
        order_id: str,
        trigger: Trigger,
        *,
        version: int | None = None,
        reason: str = "",
        payload: dict[str, Any] | None = None,
    ) -> Order | None:
        """One transition as the system; a lost race is not an error."""
        try:
            order, _ = await self._orders.transition(
                order_id,
                trigger,
                SYSTEM,
                expected_version=version,
                reason=reason,
                payload=payload,
                fence=self._fence,
            )
        except LeaseLostError as lost:
            logger.warning(
                "dispatcher write refused: region lease lost",
                extra={"order_id": order_id, "trigger": str(trigger), **lost.details},
            )
            return None
        except HomecareError as refused:
            logger.debug(
                "dispatcher transition refused",
                extra={
                    "order_id": order_id,
                    "trigger": str(trigger),
                    "code": refused.code,
                },
            )
            return None
        return order

    # -- state ------------------------------------------------------------

    def _absorb(self, order: Order) -> None:
        """Take in an order as committed and keep routes consistent."""
        state = self._state
        before = state.orders.get(order.order_id)
        if order.status is not OrderStatus.BOOKED:
            state.tentative.pop(order.order_id, None)
        for holder_id in (before.provider_id if before else None, order.provider_id):
            if holder_id is not None and order.provider_kind is ProviderKind.CAREGIVER:
                self._touched.add(holder_id)
        if order.status in _DONE:
            state.orders.pop(order.order_id, None)
        else:
            state.orders[order.order_id] = order
        holder = order.offer_provider_id or order.provider_id
        if order.status not in _HOLDING | AT_THE_DOOR:
            holder = None
        for caregiver_id, route in state.routes.items():
            if caregiver_id != holder and order.order_id in route:
                route.remove(order.order_id)
        if holder is not None and order.provider_kind is ProviderKind.CAREGIVER:
            route = state.routes.setdefault(holder, [])
            if order.order_id not in route:
                route.insert(_by_window(route, order, state.orders), order.order_id)

    async def _learn_preferences(self, orders: Sequence[Order]) -> None:
        missing = list({o.elder_id for o in orders} - set(self._state.preferences))
        if missing:
            async with self._pool.acquire() as conn:
                self._state.preferences.update(await elder_preferences(conn, missing))

    def _visit(self, order: Order) -> Visit:
        prefs = self._state.preferences.get(order.elder_id)
        return order_visit(
            order,
            self._state.travel,
            self._state.origin,
            preferred=prefs.preferred if prefs else (),
            blocked=prefs.blocked if prefs else (),
            max_lateness_min=self._state.lateness_min.get(order.service_code, 0),
        )

    def _priority(self, order_id: str) -> Priority | None:
        order = self._state.orders.get(order_id)
        return order.priority if order else None

    async def _location(self, caregiver_id: str, now: datetime) -> Any:
        if self._live is None:
            return None
        found = await self._live.locations([caregiver_id], now)
        return found.get(caregiver_id)

    async def _live_view(
        self, caregiver_ids: Sequence[str], now: datetime
    ) -> dict[str, tuple[Any, Duty | None]]:
        """Location and duty of caregivers, read once per batch of events."""
        cache = self._seen_live
        wanted = [c for c in caregiver_ids if cache is None or c not in cache]
        found: dict[str, tuple[Any, Duty | None]] = {}
        if self._live is not None and wanted:
            where = await self._live.locations(wanted, now)
            duty = await self._live.duties(wanted)
            found = {c: (where.get(c), duty.get(c)) for c in wanted}
        else:
            found = {c: (None, None) for c in wanted}
        if cache is None:
            return found
        cache.update(found)
        return {c: cache[c] for c in caregiver_ids}

    async def _routes(
        self,
        region_id: str,
        now: datetime,
        *,
        tentative: bool = True,
        leave_out: str | None = None,
    ) -> list[CurrentRoute]:
        """Current routes of the region's caregivers still on shift.

        Args:
            region_id: The region.
            now: The time the routes start from.
            tentative: Keep the visits the last plan gave a caregiver beyond
                the commit horizon, so a new order is placed around them;
                false leaves only the visits offered or held.
            leave_out: An order to take out of every route (the one being
                placed).
        """
        state = self._state
        eligible = [
            s
            for s in state.shifts.values()
            if s.region_id == region_id and s.ends_at > now
        ]
        view = await self._live_view([s.caregiver_id for s in eligible], now)
        routes = []
        for shift in eligible:
            here, duty = view[shift.caregiver_id]
            if duty is Duty.OFF_SHIFT:
                continue
            planned = [
                state.orders[o]
                for o in state.routes.get(shift.caregiver_id, [])
                if o in state.orders
                and o != leave_out
                and (tentative or state.orders[o].status is not OrderStatus.BOOKED)
            ]
            visits = {p.order_id: self._visit(p) for p in planned}
            routes.append(
                route_of(shift, here, now, planned, visits, state.travel, state.origin)
            )
        return routes

    async def _send_routes(self, caregiver_ids: Sequence[str]) -> None:
        """Send several caregivers their routes, a few side by side."""
        for chunk in _chunks(caregiver_ids, _SENT_TOGETHER):
            results = await asyncio.gather(
                *(self.send_route(c) for c in chunk), return_exceptions=True
            )
            for caregiver_id, result in zip(chunk, results, strict=True):
                if isinstance(result, Exception):
                    logger.error(
                        "plan not sent",
                        exc_info=result,
                        extra={"caregiver_id": caregiver_id},
                    )

    async def send_route(self, caregiver_id: str) -> None:
        """Send a caregiver the visits they hold, in order, with planned times."""
        shift = self._state.shifts.get(caregiver_id)
        if self._sink is None or shift is None:
            return
        state = self._state
        now = self._clock.now()
        planned = [
            state.orders[o]
            for o in state.routes.get(caregiver_id, [])
            if o in state.orders and state.orders[o].provider_id == caregiver_id
        ]
        visits = {o.order_id: self._visit(o) for o in planned}
        here = await self._location(caregiver_id, now)
        route = route_of(shift, here, now, planned, visits, state.travel, state.origin)
        body_visits = []
        clock_s, place = route.caregiver.shift_start_s, route.caregiver.start_location
        for visit in route.visits:
            arrival_s = clock_s + state.travel.seconds(place, visit.location)
            start_s = max(arrival_s, visit.earliest_s)
            clock_s, place = start_s + visit.duration_s, visit.location
            body_visits.append(
                {
                    "order_id": visit.visit_id,
                    "planned_arrival": _at(state.origin, arrival_s),
                    "planned_start": _at(state.origin, start_s),
                    "planned_end": _at(state.origin, clock_s),
                }
            )
        await self._sink.send_plan(
            caregiver_id, {"computed_at": now.isoformat(), "visits": body_visits}
        )

    # -- re-optimisation ----------------------------------------------------

    async def _reoptimise_forever(self) -> None:
        every = self.policy.reoptimise_every
        assert every is not None
        while True:
            await self._clock.sleep(every.total_seconds())
            try:
                await self.commit_due()
            except Exception:
                logger.exception("committing planned orders failed")
            dirty, self._state.dirty = sorted(self._state.dirty), set()
            for region_id in dirty:
                try:
                    await self.reoptimise(region_id)
                except Exception:
                    logger.exception(
                        "re-optimisation failed", extra={"region_id": region_id}
                    )

    async def commit_due(self) -> None:
        """Offer planned orders whose window is now within the commit horizon.

        Each goes to the caregiver the last plan gave it to when it still
        fits that caregiver's route; otherwise the fast path places it.
        """
        now = self._clock.now()
        state = self._state
        due = [
            (state.orders[o], c)
            for o, c in list(state.tentative.items())
            if o in state.orders
            and state.orders[o].status is OrderStatus.BOOKED
            and state.orders[o].window.earliest
            <= now + (self.policy.commit_ahead or timedelta())
        ]
        for chunk in _chunks(due, _PLACED_TOGETHER):
            await asyncio.gather(*(self._commit_planned(o, c, now) for o, c in chunk))

    async def _commit_planned(
        self, order: Order, caregiver_id: str, now: datetime
    ) -> None:
        """Offer a planned order to its planned caregiver, or place it anew."""
        state = self._state
        state.tentative.pop(order.order_id, None)
        _take_out(state.routes, order.order_id)
        routes = [
            r
            for r in self._free(await self._routes(order.region_id, now))
            if r.caregiver.caregiver_id == caregiver_id
        ]
        result = InsertionIndex(state.travel.matrix, routes).rank(self._visit(order))
        if not result.insertions:
            await self.dispatch(order.order_id)
            return
        best = result.insertions[0]
        body = explain(
            result,
            best,
            state.origin,
            load=len(state.routes.get(caregiver_id, [])),
            skills=order.skills,
        )
        body["re_optimised"] = True
        await self._offer_in_place(order, caregiver_id, best.position, body)

    async def reoptimise(self, region_id: str) -> Plan | None:
        """Solve one region again and turn the differences into offers.

        Every order of the region not yet started is planned: offered and
        accepted ones stay with their caregiver (pinned) but may be
        re-sequenced; booked ones go where the plan puts them, offered at
        once when their window is within the commit horizon and kept as
        tentative otherwise. Caregivers get their new plans.
        """
        now = self._clock.now()
        state = self._state
        orders = [
            o
            for o in state.orders.values()
            if o.region_id == region_id
            and o.provider_kind is ProviderKind.CAREGIVER
            and o.priority is not Priority.EMERGENCY
            and o.status in (OrderStatus.BOOKED, *_HOLDING)
            and o.window.earliest <= now + self.policy.horizon
        ]
        if not orders:
            return None
        # An order out on offer is held by its caregiver like an accepted one,
        # so re-planning never takes it away behind the caregiver's back.
        pins = {
            o.order_id: o.offer_provider_id or o.provider_id
            for o in orders
            if o.status in _HOLDING
        }
        routes = await self._routes(region_id, now)
        if not routes:
            return None
        problem = _problem(routes, orders, pins, self._visit, state)
        started = time.perf_counter()
        options = SolveOptions(
            time_limit_s=self.policy.solve_time_limit_s,
            seed=self.policy.seed,
            warm_start=state.plans.get(region_id),
        )
        loop = asyncio.get_running_loop()
        plan = await loop.run_in_executor(
            self._executor, solve_region, problem, options, self._solve
        )
        self.stats["solves"] += 1
        elapsed_s = time.perf_counter() - started
        if self._on_solve is not None:
            self._on_solve(elapsed_s)
        logger.info(
            "region re-optimised",
            extra={
                "region_id": region_id,
                "visits": len(problem.visits),
                "caregivers": len(problem.caregivers),
                "unassigned": len(plan.unassigned),
                "elapsed_s": round(elapsed_s, 3),
            },
        )
        state.plans[region_id] = plan
        booked = {o.order_id for o in orders if o.status is OrderStatus.BOOKED}
        await self._apply_plan(plan, booked)
        return plan

    async def _apply_plan(self, plan: Plan, booked: set[str]) -> None:
        state = self._state
        now = self._clock.now()
        for order_id in booked:
            state.tentative.pop(order_id, None)
        offers: list[tuple[Order, str, dict[str, Any]]] = []
        for route in plan.routes:
            sequence = [v.visit_id for v in route.visits]
            for position, visit in enumerate(route.visits):
                order = state.orders.get(visit.visit_id)
                if (
                    visit.visit_id not in booked
                    or order is None
                    or order.status is not OrderStatus.BOOKED
                ):
                    continue
                ahead = self.policy.commit_ahead
                if ahead is not None and order.window.earliest > now + ahead:
                    state.tentative[order.order_id] = route.caregiver_id
                    continue
                explanation = {
                    "caregiver_id": route.caregiver_id,
                    "re_optimised": True,
                    "planned_start": _at(state.origin, visit.start_s),
                    "position": position,
                    "skills_matched": sorted(order.skills),
                    "load": len(sequence),
                }
                offers.append((order, route.caregiver_id, explanation))
        timeout = self.policy.offer_timeout
        for chunk in _chunks(offers, _PLACED_TOGETHER):
            await asyncio.gather(*(self._offer(*offer, timeout) for offer in chunk))
        for route in plan.routes:
            # Visits planned beyond the commit horizon stay in the route, so
            # the fast path places new orders around them.
            kept = [v.visit_id for v in route.visits if v.visit_id in state.orders]
            holder_route = state.routes.setdefault(route.caregiver_id, [])
            extra = [
                o
                for o in holder_route
                if o not in kept
                and o in state.orders
                and state.orders[o].status is not OrderStatus.BOOKED
            ]
            state.routes[route.caregiver_id] = kept + extra
        await self._send_routes([route.caregiver_id for route in plan.routes])
        for caregiver_id, held in state.routes.items():
            held[:] = [
                o
                for o in held
                if o not in state.orders
                or state.orders[o].status is not OrderStatus.BOOKED
                or state.tentative.get(o) == caregiver_id
            ]


def _at(origin: datetime, seconds: int) -> str:
    return (origin + timedelta(seconds=seconds)).isoformat()


def _position_among(position: int, planned: list[str], orders: dict[str, Order]) -> int:
    """Where an insertion's position lands in the stored route.

    The insertion counts only visits still ahead; visits under way sit at
    the front of the stored route.
    """
    at_door = sum(1 for o in planned if orders[o].status in AT_THE_DOOR)
    return min(len(planned), position + at_door)


def _chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    """``items`` in consecutive slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _placed_alongside(order: Order) -> bool:
    """Whether an order's change is a routine placement by the fast path.

    Those may be placed while others' offers commit; emergencies, vendors
    and everything else are handled one at a time, before them.
    """
    return (
        order.status is OrderStatus.BOOKED
        and order.priority is not Priority.EMERGENCY
        and order.provider_kind is ProviderKind.CAREGIVER
    )


def _take_out(routes: dict[str, list[str]], order_id: str) -> None:
    for route in routes.values():
        if order_id in route:
            route.remove(order_id)


def _by_window(route: list[str], order: Order, orders: dict[str, Order]) -> int:
    for k, other_id in enumerate(route):
        other = orders.get(other_id)
        if other is not None and other.window.earliest > order.window.earliest:
            return k
    return len(route)


def _feasible(route: CurrentRoute, travel: TravelTimes) -> bool:
    clock_s = route.caregiver.shift_start_s
    here = route.caregiver.start_location
    for visit in route.visits:
        clock_s = max(clock_s + travel.seconds(here, visit.location), visit.earliest_s)
        if clock_s > visit.latest_with_lateness_s:
            return False
        clock_s += visit.duration_s
        here = visit.location
    return True


def _problem(
    routes: Sequence[CurrentRoute],
    orders: Sequence[Order],
    pins: dict[str, str | None],
    visit_of: Callable[[Order], Visit],
    state: _State,
) -> RegionProblem:
    """A region's solve, with its places as coordinates.

    Locations are renumbered densely; the worker computes the travel
    matrix, so the event loop never spends time on it.
    """
    caregiver_ids = {r.caregiver.caregiver_id for r in routes}
    places: dict[int, int] = {}

    def place(index: int) -> int:
        return places.setdefault(index, len(places))

    caregivers = tuple(
        replace(
            r.caregiver,
            start_location=place(r.caregiver.start_location),
            end_location=place(r.caregiver.end_location),
        )
        for r in routes
    )
    visits = []
    for order in orders:
        pinned = pins.get(order.order_id)
        if pinned is not None and pinned not in caregiver_ids:
            continue
        visit = visit_of(order)
        visits.append(
            replace(visit, location=place(visit.location), pinned_caregiver_id=pinned)
        )
    indices = sorted(places, key=places.__getitem__)
    return RegionProblem(
        points=tuple(state.travel.point(i) for i in indices),
        caregivers=caregivers,
        visits=tuple(visits),
    )
