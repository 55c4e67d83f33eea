"""The dispatcher on a simulated clock against the real store.

The clock stands still unless a test advances it, so offer expiries and
the emergency bound are stepped through exactly.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from db.orders import OrderStore
from dispatch.clock import SimulatedClock
from dispatch.dispatcher import Dispatcher, DispatchPolicy
from dispatch.domain import Actor, ActorRole, BookingRequest, Priority, TimeWindow
from dispatch.lifecycle import Order, OrderStatus, Trigger
from solver import Plan, Problem, SolveOptions, solve

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
OPERATOR = Actor(ActorRole.OPERATOR, "op-1")
REGION = "220102-01"
_KEYS = itertools.count()
_READERS_STARTED = (
    "select count(*) from outbox_cursor"
    " where name in ('dispatcher', 'dispatcher-emergency')"
)


def caregiver(n: int) -> Actor:
    return Actor(ActorRole.CAREGIVER, f"cg-{n}")


class Harness:
    """A dispatcher, its store and its frozen clock."""

    def __init__(self, pool: asyncpg.Pool, **policy: object) -> None:
        self.clock = SimulatedClock(T0)
        self.store = OrderStore(pool, self.clock)
        self.policy = DispatchPolicy(solve_time_limit_s=1.0, **policy)  # type: ignore[arg-type]
        self.pool = pool
        self.dispatcher = Dispatcher(pool, self.store, self.clock, policy=self.policy)

    async def book(
        self,
        elder_id: str = "el-1",
        *,
        service: str = "bp_glucose_check",
        priority: Priority = Priority.ROUTINE,
        start_min: int = 0,
        width_min: int = 120,
    ) -> str:
        earliest = T0 + timedelta(minutes=start_min)
        booking = await self.store.create(
            BookingRequest(
                elder_id,
                service,
                TimeWindow(earliest, earliest + timedelta(minutes=width_min)),
                priority=priority,
            ),
            OPERATOR,
            f"k{next(_KEYS)}",
        )
        await self.dispatcher.on_events([booking.order.order_id])
        return booking.order.order_id

    async def act(
        self, n: int, order_id: str, trigger: Trigger, reason: str = ""
    ) -> None:
        await self.store.transition(order_id, trigger, caregiver(n), reason=reason)
        await self.dispatcher.on_events([order_id])

    async def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        await self.dispatcher.check_deadlines()

    async def holder(self, order_id: str) -> str | None:
        order = await self.store.get(order_id)
        return order.offer_provider_id or order.provider_id


@pytest.fixture
async def harness(clean: asyncpg.Pool) -> Harness:
    h = Harness(clean)
    await h.dispatcher.start()
    return h


async def test_new_order_is_offered_to_the_nearest_caregiver_with_explanation(
    harness: Harness,
) -> None:
    """The fast path offers at once and records why."""
    order_id = await harness.book()
    order = await harness.store.get(order_id)
    assert order.status is OrderStatus.OFFERED
    assert order.offer_provider_id == "cg-1"
    offer = (await harness.store.events(order_id))[-1]
    explanation = offer.payload["explanation"]
    assert explanation["caregiver_id"] == "cg-1"
    assert explanation["skills_matched"] == ["nursing"]
    assert [a["caregiver_id"] for a in explanation["alternatives"]] == ["cg-2", "cg-3"]
    assert order.offer_expires_at == T0 + timedelta(seconds=60)


async def test_expired_offer_goes_to_the_next_candidate(harness: Harness) -> None:
    """After the expiry the order is offered to the next best caregiver."""
    order_id = await harness.book()
    await harness.advance(59)
    assert await harness.holder(order_id) == "cg-1"
    await harness.advance(2)
    assert await harness.holder(order_id) == "cg-2"
    triggers = [e.trigger for e in await harness.store.events(order_id)]
    assert triggers == [Trigger.BOOK, Trigger.OFFER, Trigger.EXPIRE, Trigger.OFFER]


async def test_decline_excludes_that_caregiver(harness: Harness) -> None:
    """Declines walk down the candidates and never come back to a decliner."""
    order_id = await harness.book()
    await harness.act(1, order_id, Trigger.DECLINE)
    assert await harness.holder(order_id) == "cg-2"
    await harness.act(2, order_id, Trigger.DECLINE)
    assert await harness.holder(order_id) == "cg-3"
    await harness.act(3, order_id, Trigger.DECLINE)
    order = await harness.store.get(order_id)
    assert order.status is OrderStatus.BOOKED
    assert order.excluded_provider_ids == {"cg-1", "cg-2", "cg-3"}


async def test_ladder_escalates_an_unanswered_emergency_on_time(
    harness: Harness,
) -> None:
    """Offers walk the ladder with a short expiry; at the bound, escalation."""
    order_id = await harness.book(priority=Priority.EMERGENCY)
    order = await harness.store.get(order_id)
    assert order.offer_provider_id == "cg-1"
    assert order.offer_expires_at == T0 + timedelta(seconds=20)
    await harness.advance(21)
    assert await harness.holder(order_id) == "cg-2"
    await harness.advance(21)
    assert await harness.holder(order_id) == "cg-3"
    await harness.advance(17)  # 59 s after booking
    assert (await harness.store.get(order_id)).status is OrderStatus.OFFERED
    await harness.advance(2)  # 61 s
    order = await harness.store.get(order_id)
    assert order.status is OrderStatus.ESCALATED
    escalation = (await harness.store.events(order_id))[-1]
    assert "emergency" in escalation.reason


async def test_order_whose_window_passed_is_escalated(harness: Harness) -> None:
    """An order nobody could take before its window closed goes to operators."""
    order_id = await harness.book(width_min=10)
    for n in (1, 2, 3):
        await harness.act(n, order_id, Trigger.DECLINE)
    await harness.advance(11 * 60)
    assert (await harness.store.get(order_id)).status is OrderStatus.ESCALATED


async def test_reoptimisation_never_moves_an_accepted_visit(
    clean: asyncpg.Pool,
) -> None:
    """Accepted visits are pinned: the new plan keeps them with their caregiver."""
    harness = Harness(clean)
    await harness.dispatcher.start()
    accepted = await harness.book("el-1", start_min=60)
    await harness.act(1, accepted, Trigger.ACCEPT)
    batching = Harness(clean, fast_path=False)
    await batching.dispatcher.start()
    harness = batching
    others = [await harness.book(f"el-{n}", start_min=30) for n in (2, 3)]
    assert [await harness.holder(o) for o in others] == [None, None]
    plan = await harness.dispatcher.reoptimise(REGION)
    assert plan is not None
    route_of = {v.visit_id: r.caregiver_id for r in plan.routes for v in r.visits}
    assert route_of[accepted] == "cg-1"
    assert [await harness.holder(o) for o in others] == [route_of[o] for o in others]
    order = await harness.store.get(accepted)
    assert (order.status, order.provider_id) == (OrderStatus.ACCEPTED, "cg-1")


async def test_emergency_is_offered_while_a_solve_hangs(clean: asyncpg.Pool) -> None:
    """The ladder never waits for the optimiser."""
    release = threading.Event()

    def hanging_solve(problem: Problem, options: SolveOptions) -> Plan:
        release.wait(timeout=30)
        return solve(problem, options)

    h = Harness(clean, fast_path=False)
    h.dispatcher = Dispatcher(
        clean, h.store, h.clock, policy=h.policy, solve_fn=hanging_solve
    )
    await h.dispatcher.start()
    await h.book("el-2")
    solving = asyncio.create_task(h.dispatcher.reoptimise(REGION))
    await asyncio.sleep(0.05)
    assert not solving.done()
    try:
        started = time.perf_counter()
        emergency = await h.book("el-1", priority=Priority.EMERGENCY)
        elapsed = time.perf_counter() - started
        assert (await h.store.get(emergency)).status is OrderStatus.OFFERED
        assert elapsed < 0.1, f"emergency took {elapsed * 1000:.0f} ms to be offered"
        assert not solving.done()
    finally:
        release.set()
        await solving


async def test_preempted_routine_visit_is_dispatched_again(harness: Harness) -> None:
    """An accepted emergency pushes out a visit that no longer fits."""
    routine = await harness.book("el-3", start_min=10, width_min=10)
    assert await harness.holder(routine) == "cg-1"
    await harness.act(1, routine, Trigger.ACCEPT)
    emergency = await harness.book("el-2", priority=Priority.EMERGENCY)
    assert await harness.holder(emergency) == "cg-1"
    await harness.act(1, emergency, Trigger.ACCEPT)
    order = await harness.store.get(routine)
    assert order.status is OrderStatus.OFFERED
    assert order.offer_provider_id in ("cg-2", "cg-3")
    give_back = [
        e for e in await harness.store.events(routine) if e.trigger is Trigger.GIVE_BACK
    ]
    assert [(e.actor.role, e.reason) for e in give_back] == [
        (ActorRole.SYSTEM, "pre-empted by an emergency")
    ]


async def test_caregiver_answering_an_emergency_gets_no_new_routine_visit(
    harness: Harness,
) -> None:
    """A routine order at the same door goes past the emergency's responder."""
    emergency = await harness.book("el-1", priority=Priority.EMERGENCY)
    responder = await harness.holder(emergency)
    assert responder == "cg-1"
    routine = await harness.book("el-1", width_min=240)
    holder = await harness.holder(routine)
    assert holder is not None
    assert holder != responder


async def test_vendor_order_is_offered_to_a_covering_vendor(harness: Harness) -> None:
    """A pharmacy delivery goes to the pharmacy covering the elder's region."""
    order_id = await harness.book(service="pharmacy_delivery")
    order = await harness.store.get(order_id)
    assert (order.status, order.offer_provider_id) == (OrderStatus.OFFERED, "vd-1")


async def test_restarted_dispatcher_acts_on_deadlines_that_passed(
    clean: asyncpg.Pool,
) -> None:
    """Deadlines are rows: a new dispatcher expires an offer due while it was down."""
    first = Harness(clean)
    await first.dispatcher.start()
    order_id = await first.book()
    second = Harness(clean)
    second.clock.advance(120)
    await second.dispatcher.start()
    await second.dispatcher.check_deadlines()
    events = await second.store.events(order_id)
    assert [e.trigger for e in events][2:] == [Trigger.EXPIRE, Trigger.OFFER]


async def test_order_beyond_the_commit_horizon_waits_then_goes_to_its_planned_caregiver(
    clean: asyncpg.Pool,
) -> None:
    """Planned but not offered until its window comes within the horizon."""
    h = Harness(clean, commit_ahead=timedelta(hours=1))
    await h.dispatcher.start()
    later = await h.book("el-2", start_min=180)
    assert await h.holder(later) is None
    plan = await h.dispatcher.reoptimise(REGION)
    assert plan is not None
    planned = {v.visit_id: r.caregiver_id for r in plan.routes for v in r.visits}
    await h.dispatcher.commit_due()
    assert await h.holder(later) is None
    h.clock.advance(2 * 3600 + 60)
    await h.dispatcher.commit_due()
    assert await h.holder(later) == planned[later]


async def test_ladder_prefers_a_free_caregiver_over_a_busy_one_nearby(
    harness: Harness,
) -> None:
    """An emergency goes to whoever can be at the door first."""
    visit = await harness.book("el-2", width_min=60)
    assert await harness.holder(visit) == "cg-1"
    await harness.act(1, visit, Trigger.ACCEPT)
    await harness.act(1, visit, Trigger.DEPART)
    await harness.store.transition(
        visit, Trigger.CHECK_IN, caregiver(1), payload={"distance_m": 0}
    )
    await harness.act(1, visit, Trigger.START)
    emergency = await harness.book("el-1", priority=Priority.EMERGENCY)
    order = await harness.store.get(emergency)
    assert order.offer_provider_id == "cg-2"
    explanation = (await harness.store.events(emergency))[-1].payload["explanation"]
    assert "cg-1" in [a["caregiver_id"] for a in explanation["alternatives"]]


async def test_each_solve_reports_its_wall_time(clean: asyncpg.Pool) -> None:
    """The solver-time metric hears of every re-optimisation."""
    seen: list[float] = []
    h = Harness(clean, fast_path=False)
    h.dispatcher = Dispatcher(
        clean, h.store, h.clock, policy=h.policy, on_solve=seen.append
    )
    await h.dispatcher.start()
    await h.book("el-2")
    await h.dispatcher.reoptimise(REGION)
    assert len(seen) == 1
    assert seen[0] > 0


async def test_emergency_is_offered_while_the_main_reader_is_held_in_a_batch(
    clean: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An emergency booked while bookings hold the main reader is still offered."""
    clock = SimulatedClock(T0)
    store = OrderStore(clean, clock)
    dispatcher = Dispatcher(
        clean, store, clock, policy=DispatchPolicy(reoptimise_every=None)
    )
    held, gate = asyncio.Event(), asyncio.Event()
    fast_path = dispatcher._fast_path

    async def held_fast_path(order: Order) -> None:
        # the main reader stops here, inside its batch, until the gate opens
        held.set()
        await gate.wait()
        await fast_path(order)

    monkeypatch.setattr(dispatcher, "_fast_path", held_fast_path)
    running = asyncio.create_task(dispatcher.run())
    try:
        async with asyncio.timeout(10):
            # each reader starts at the end of the log once its cursor exists
            while await clean.fetchval(_READERS_STARTED) < 2:  # noqa: ASYNC110  # polls PostgreSQL
                await asyncio.sleep(0.01)
        window = TimeWindow(T0, T0 + timedelta(hours=8))
        for n in range(50):
            await store.create(
                BookingRequest(f"el-{n % 3 + 1}", "bp_glucose_check", window),
                OPERATOR,
                f"queue-{n}",
            )
        async with asyncio.timeout(10):
            await held.wait()
        emergency = await store.create(
            BookingRequest(
                "el-1", "bp_glucose_check", window, priority=Priority.EMERGENCY
            ),
            OPERATOR,
            "queue-emergency",
        )
        order_id = emergency.order.order_id
        async with asyncio.timeout(10):
            while (await store.get(order_id)).status is OrderStatus.BOOKED:  # noqa: ASYNC110  # polls PostgreSQL
                await asyncio.sleep(0.01)
        assert not gate.is_set()
        assert (await store.get(order_id)).status is OrderStatus.OFFERED
        offered = await clean.fetchval(
            "select count(*) from \"order\" where status = 'offered'"
        )
        assert offered == 1, "a booking of the held batch was offered too"
    finally:
        gate.set()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def _book_quietly(harness: Harness, elder_id: str, window: TimeWindow) -> str:
    """Book without telling the dispatcher, as a batch of the log would."""
    booking = await harness.store.create(
        BookingRequest(elder_id, "bp_glucose_check", window),
        OPERATOR,
        f"k{next(_KEYS)}",
    )
    return booking.order.order_id


async def test_orders_of_one_batch_are_placed_in_turn_and_offered_together(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each placement sees the places taken before it; the offers commit at once."""
    # a 30-minute check starting within 15 minutes: one per caregiver
    window = TimeWindow(T0 + timedelta(minutes=30), T0 + timedelta(minutes=45))
    order_ids = [
        await _book_quietly(harness, elder_id, window)
        for elder_id in ("el-1", "el-2", "el-3", "el-1")
    ]
    in_flight = peak = 0
    transition = harness.store.transition

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            return await transition(*args, **kwargs)
        finally:
            in_flight -= 1

    monkeypatch.setattr(harness.store, "transition", counted)
    await harness.dispatcher.on_events(order_ids)
    holders = [await harness.holder(o) for o in order_ids]
    assert sorted(h for h in holders if h is not None) == ["cg-1", "cg-2", "cg-3"]
    assert holders.count(None) == 1
    assert peak == 3


async def test_a_refused_offer_gives_its_place_back(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An order cancelled while its offer commits leaves its caregiver free."""
    window = TimeWindow(T0 + timedelta(minutes=30), T0 + timedelta(minutes=45))
    cancelled = await _book_quietly(harness, "el-1", window)
    transition = harness.store.transition

    async def cancelled_first(
        order_id: str, trigger: Trigger, *a: Any, **k: Any
    ) -> Any:
        if order_id == cancelled and trigger is Trigger.OFFER:
            await transition(order_id, Trigger.CANCEL, OPERATOR, reason="not needed")
        return await transition(order_id, trigger, *a, **k)

    monkeypatch.setattr(harness.store, "transition", cancelled_first)
    await harness.dispatcher.on_events([cancelled])
    assert (await harness.store.get(cancelled)).status is OrderStatus.CANCELLED
    monkeypatch.undo()
    later = [
        await _book_quietly(harness, elder_id, window)
        for elder_id in ("el-1", "el-2", "el-3")
    ]
    await harness.dispatcher.on_events(later)
    holders = [await harness.holder(o) for o in later]
    assert sorted(h or "" for h in holders) == ["cg-1", "cg-2", "cg-3"]


async def test_the_loop_turns_between_placements_of_one_batch(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Intake and phones are heard between placements, not after a whole batch."""
    window = TimeWindow(T0 + timedelta(minutes=30), T0 + timedelta(minutes=45))
    order_ids = [
        await _book_quietly(harness, elder_id, window)
        for elder_id in ("el-1", "el-2", "el-3")
    ]
    turns = 0

    async def count_turns() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    seen: list[int] = []
    offer_in_place = harness.dispatcher._offer_in_place

    async def noted(*args: Any, **kwargs: Any) -> Any:
        seen.append(turns)
        return await offer_in_place(*args, **kwargs)

    monkeypatch.setattr(harness.dispatcher, "_offer_in_place", noted)
    counter = asyncio.create_task(count_turns())
    try:
        await harness.dispatcher.on_events(order_ids)
    finally:
        counter.cancel()
    assert len(seen) == 3
    assert seen[0] < seen[1] < seen[2]
