"""Proactive visits on a real PostgreSQL: due rows, bookings, coverage."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta

import asyncpg
import pytest

from db.directory import load_elders, load_regions
from db.orders import OrderStore
from db.proactive import (
    PROACTIVE_ACTOR,
    ProactiveVisits,
    coverage,
    generate_due_visits,
)
from dispatch.city import CHINA_TZ
from dispatch.clock import SimulatedClock
from dispatch.directory import ElderProfile, KeyPopulation, Region
from dispatch.domain import Actor, ActorRole, GeoPoint, TimeWindow
from dispatch.lifecycle import Trigger
from dispatch.proactive import (
    Period,
    ProactiveRule,
    booking_request,
    parse_rule,
    period_of,
    visit_day,
    visit_window,
)

pytestmark = pytest.mark.integration

#: Monday 2026-11-30, local midnight: the start of a weekly period.
MONDAY = datetime(2026, 11, 30, tzinfo=CHINA_TZ)
WEEKLY = parse_rule("weekly_80_alone", "FREQ=WEEKLY;ALL=aged_80_plus,living_alone")
WEEKLY_80 = parse_rule("weekly_80", "FREQ=WEEKLY;ANY=aged_80_plus")
AGED_ALONE = frozenset({KeyPopulation.AGED_80_PLUS, KeyPopulation.LIVING_ALONE})
CG = Actor(ActorRole.CAREGIVER, "cg-1")
SYSTEM = Actor(ActorRole.SYSTEM, "dispatcher")

REGIONS = (
    Region("px-a", "测试甲", "Test A", "220102", GeoPoint(43.89, 125.33)),
    Region("px-b", "测试乙", "Test B", "220102", GeoPoint(43.90, 125.34)),
)
#: Three elders the weekly rule covers in px-a, two in px-b, and one in
#: px-a aged 80 and over who does not live alone.
ELDERS = (*(("px-a1", "px-a2", "px-a3"), ("px-b1", "px-b2"))[0],)
COVERED = {"px-a": ("px-a1", "px-a2", "px-a3"), "px-b": ("px-b1", "px-b2")}


def _elder(
    elder_id: str, region_id: str, categories: frozenset[KeyPopulation]
) -> ElderProfile:
    return ElderProfile(
        elder_id=elder_id,
        region_id=region_id,
        name="测试",
        phone="13800000000",
        home=GeoPoint(43.89, 125.33),
        categories=categories,
    )


@pytest.fixture
async def directory(clean: asyncpg.Pool) -> AsyncIterator[asyncpg.Pool]:
    """Two regions of our own with six elders; removed afterwards."""
    elders = [
        _elder(elder_id, region_id, AGED_ALONE)
        for region_id, ids in COVERED.items()
        for elder_id in ids
    ]
    elders.append(_elder("px-a4", "px-a", frozenset({KeyPopulation.AGED_80_PLUS})))
    async with clean.acquire() as conn:
        await load_regions(conn, REGIONS)
        await load_elders(conn, elders)
    yield clean
    await clean.execute(
        'truncate "order", order_event, offer, idempotency_key, audit_log cascade'
    )
    await clean.execute("delete from elder where elder_id like 'px-%'")
    await clean.execute("delete from region where region_id like 'px-%'")


def _day(elder_id: str, period: Period) -> date:
    day = visit_day(WEEKLY, elder_id, period)
    assert day is not None
    return day


def _store(pool: asyncpg.Pool, clock: SimulatedClock) -> OrderStore:
    return OrderStore(pool, clock)


async def _proactive_orders(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return await pool.fetch(
        "select elder_id, earliest, latest, priority, channel, created_by_id"
        ' from "order" where service_code = $1 order by elder_id',
        "proactive_visit",
    )


async def _due_rows(pool: asyncpg.Pool) -> dict[str, int]:
    rows = await pool.fetch(
        "select status, count(*) from proactive_visit_due group by status"
    )
    return {r["status"]: r["count"] for r in rows}


async def test_generating_twice_books_each_visit_once(directory: asyncpg.Pool) -> None:
    """A second run finds every visit booked and books nothing."""
    clock = SimulatedClock(MONDAY)
    store = _store(directory, clock)
    week = timedelta(days=7)

    first = await generate_due_visits(directory, store, clock, [WEEKLY], lead=week)
    second = await generate_due_visits(directory, store, clock, [WEEKLY], lead=week)

    assert (first.prepared, first.booked, first.linked) == (5, 5, 0)
    assert (second.prepared, second.booked, second.linked) == (0, 0, 0)
    orders = await _proactive_orders(directory)
    assert [o["elder_id"] for o in orders] == [
        "px-a1",
        "px-a2",
        "px-a3",
        "px-b1",
        "px-b2",
    ]
    assert {(o["priority"], o["channel"], o["created_by_id"]) for o in orders} == {
        ("routine", "proactive", "proactive")
    }
    assert await _due_rows(directory) == {"booked": 5}


async def test_each_visit_is_booked_on_the_elder_visit_day(
    directory: asyncpg.Pool,
) -> None:
    """The order's window is the rule's hours on the elder's visit day."""
    clock = SimulatedClock(MONDAY)
    await generate_due_visits(
        directory, _store(directory, clock), clock, [WEEKLY], lead=timedelta(days=7)
    )
    period = period_of(WEEKLY, MONDAY)
    for order in await _proactive_orders(directory):
        day = visit_day(WEEKLY, order["elder_id"], period)
        assert day is not None
        window = visit_window(WEEKLY, day)
        assert (order["earliest"], order["latest"]) == (window.earliest, window.latest)


async def test_run_that_crashed_before_marking_rows_books_nothing_again(
    directory: asyncpg.Pool,
) -> None:
    """Orders booked but rows left pending are found and linked, not rebooked."""
    clock = SimulatedClock(MONDAY)
    store = _store(directory, clock)
    await generate_due_visits(directory, store, clock, [WEEKLY], lead=timedelta(days=7))
    await directory.execute(
        "update proactive_visit_due set status = 'pending', order_id = null,"
        " settled_at = null"
    )

    again = await generate_due_visits(
        directory, store, clock, [WEEKLY], lead=timedelta(days=7)
    )

    assert (again.booked, again.linked) == (0, 5)
    assert len(await _proactive_orders(directory)) == 5
    assert await _due_rows(directory) == {"booked": 5}


async def test_racing_runs_book_each_visit_once(directory: asyncpg.Pool) -> None:
    """Two nodes generating at once still book one order per visit."""
    clock = SimulatedClock(MONDAY)
    store = _store(directory, clock)
    runs = [
        ProactiveVisits(directory, store, clock, [WEEKLY], lead=timedelta(days=7))
        for _ in range(3)
    ]

    await asyncio.gather(*(run.generate() for run in runs))
    for run in runs:
        await run.generate()

    assert len(await _proactive_orders(directory)) == 5
    keys = await directory.fetchval(
        "select count(*) from idempotency_key where scope = $1", str(PROACTIVE_ACTOR)
    )
    assert keys == 5
    assert await _due_rows(directory) == {"booked": 5}


async def test_only_visits_within_lead_are_booked(directory: asyncpg.Pool) -> None:
    """With no lead, nothing is booked before the visiting hours of the day."""
    clock = SimulatedClock(MONDAY)
    report = await generate_due_visits(
        directory, _store(directory, clock), clock, [WEEKLY], lead=timedelta(0)
    )
    assert (report.prepared, report.booked) == (5, 0)
    assert await _due_rows(directory) == {"pending": 5}


async def test_visits_that_fell_due_while_down_are_booked_after_restart(
    directory: asyncpg.Pool,
) -> None:
    """Rows written on Monday and missed till Thursday night are booked later."""
    clock = SimulatedClock(MONDAY)
    store = _store(directory, clock)
    await generate_due_visits(directory, store, clock, [WEEKLY], lead=timedelta(0))
    clock.advance(timedelta(days=3, hours=20).total_seconds())  # Thursday 20:00

    restarted = ProactiveVisits(directory, store, clock, [WEEKLY], lead=timedelta(0))
    report = await restarted.generate()

    period = period_of(WEEKLY, MONDAY)
    missed = sorted(
        elder_id
        for ids in COVERED.values()
        for elder_id in ids
        if visit_window(WEEKLY, _day(elder_id, period)).latest <= clock.now()
    )
    assert missed
    assert report.booked == len(missed)
    rest_of_week = {
        visit_window(WEEKLY, (MONDAY + timedelta(days=d)).date()) for d in (4, 5, 6)
    }
    orders = await _proactive_orders(directory)
    assert [o["elder_id"] for o in orders] == missed
    assert {TimeWindow(o["earliest"], o["latest"]) for o in orders} <= rest_of_week


async def test_visits_not_booked_by_period_end_lapse(directory: asyncpg.Pool) -> None:
    """A period that ended with rows pending lapses them; the next one starts."""
    clock = SimulatedClock(MONDAY)
    store = _store(directory, clock)
    await generate_due_visits(directory, store, clock, [WEEKLY], lead=timedelta(0))
    clock.advance(timedelta(days=7, hours=1).total_seconds())

    report = await generate_due_visits(
        directory, store, clock, [WEEKLY], lead=timedelta(0)
    )

    assert (report.lapsed, report.prepared) == (5, 5)
    assert await _due_rows(directory) == {"lapsed": 5, "pending": 5}


async def test_elder_who_left_the_category_is_dropped(
    directory: asyncpg.Pool,
) -> None:
    """A due row of an elder the rule no longer covers books nothing."""
    clock = SimulatedClock(MONDAY)
    store = _store(directory, clock)
    await generate_due_visits(directory, store, clock, [WEEKLY], lead=timedelta(0))
    await directory.execute(
        "update elder set living_alone = false where elder_id = 'px-b2'"
    )

    report = await generate_due_visits(
        directory, store, clock, [WEEKLY], lead=timedelta(days=7)
    )

    assert (report.booked, report.dropped) == (4, 1)
    assert "px-b2" not in {o["elder_id"] for o in await _proactive_orders(directory)}


async def test_overlapping_rules_share_one_visit(directory: asyncpg.Pool) -> None:
    """An elder owed visits by two rules in one week gets one order for both."""
    clock = SimulatedClock(MONDAY)
    report = await generate_due_visits(
        directory,
        _store(directory, clock),
        clock,
        [WEEKLY, WEEKLY_80],
        lead=timedelta(days=7),
    )
    # weekly_80 covers all six (px-a4 is aged 80+); weekly the five alone.
    assert (report.prepared, report.booked, report.linked) == (11, 6, 5)
    orders = await _proactive_orders(directory)
    assert len(orders) == len({o["elder_id"] for o in orders}) == 6
    assert await _due_rows(directory) == {"booked": 11}


async def test_rules_run_on_default_rules_without_error(
    directory: asyncpg.Pool,
) -> None:
    """The default rules prepare and book the elders they cover."""
    clock = SimulatedClock(MONDAY)
    visits = ProactiveVisits(
        directory, _store(directory, clock), clock, lead=timedelta(days=31)
    )
    report = await visits.generate(limit=1000)
    assert report.booked >= 6
    assert report.failed == 0
    assert not report.more


async def test_limit_books_the_soonest_and_says_more_wait(
    directory: asyncpg.Pool,
) -> None:
    """A run books at most ``limit`` visits; the next runs book the rest."""
    clock = SimulatedClock(MONDAY)
    visits = ProactiveVisits(
        directory, _store(directory, clock), clock, [WEEKLY], lead=timedelta(days=7)
    )

    runs = [await visits.generate(limit=2) for _ in range(3)]

    assert [(r.booked, r.more) for r in runs] == [(2, True), (2, True), (1, False)]
    orders = await _proactive_orders(directory)
    first_two = sorted(orders, key=lambda o: (o["earliest"], o["elder_id"]))[:2]
    assert len(orders) == 5
    assert max(o["earliest"] for o in first_two) <= min(
        o["earliest"] for o in orders if o not in first_two
    )


async def test_elder_joining_a_category_is_prepared_at_the_next_rescan(
    directory: asyncpg.Pool,
) -> None:
    """A long-lived generator rescans the elders every ``rescan``, not each run."""
    clock = SimulatedClock(MONDAY)
    visits = ProactiveVisits(
        directory,
        _store(directory, clock),
        clock,
        [WEEKLY],
        lead=timedelta(0),
        rescan=timedelta(hours=1),
    )
    await visits.generate()
    await directory.execute(
        "update elder set living_alone = true where elder_id = 'px-a4'"
    )

    soon = await visits.generate()
    clock.advance(timedelta(hours=1).total_seconds())
    later = await visits.generate()

    assert (soon.prepared, later.prepared) == (0, 1)


async def _serve(store: OrderStore, order_id: str, *, close: bool = False) -> None:
    """Take an order from booked to completed (and closed) as cg-1."""
    await store.transition(
        order_id,
        Trigger.OFFER,
        SYSTEM,
        payload={"provider_id": "cg-1", "expires_at": "2100-01-01T00:00:00+00:00"},
    )
    for trigger in (Trigger.ACCEPT, Trigger.DEPART, Trigger.CHECK_IN, Trigger.START):
        await store.transition(order_id, trigger, CG)
    await store.transition(
        order_id, Trigger.COMPLETE, CG, payload={"record": {"tasks": ["talk"]}}
    )
    if close:
        await store.transition(order_id, Trigger.CLOSE, SYSTEM)


async def _order_of(pool: asyncpg.Pool, elder_id: str) -> str:
    found = await pool.fetchval(
        'select order_id from "order" where elder_id = $1'
        " order by created_at desc limit 1",
        elder_id,
    )
    return str(found)


async def test_coverage_counts_due_visited_and_overdue_per_region(
    directory: asyncpg.Pool,
) -> None:
    """Once the week is over: exact counts and overdue ids by region."""
    clock = SimulatedClock(MONDAY)
    store = _store(directory, clock)
    await generate_due_visits(directory, store, clock, [WEEKLY], lead=timedelta(days=7))
    clock.advance(timedelta(days=2).total_seconds())
    await _serve(store, await _order_of(directory, "px-a1"))
    await _serve(store, await _order_of(directory, "px-b1"), close=True)
    await store.transition(
        await _order_of(directory, "px-b2"), Trigger.CANCEL, SYSTEM, reason="away"
    )

    next_monday = MONDAY + timedelta(days=7, hours=3)
    report = await coverage(directory, [WEEKLY], next_monday, finished=True)

    (rule,) = report.rules
    assert rule.period == period_of(WEEKLY, MONDAY)
    assert [
        (r.region_id, r.due, r.visited, r.overdue_elder_ids) for r in rule.regions
    ] == [
        ("px-a", 3, 1, ("px-a2", "px-a3")),
        ("px-b", 2, 1, ("px-b2",)),
    ]
    assert (rule.due, rule.visited, rule.overdue) == (5, 2, 3)
    assert (report.due, report.visited, report.overdue) == (5, 2, 3)
    body = report.to_dict()
    assert body["rules"][0]["regions"][1]["overdue_elder_ids"] == ["px-b2"]


async def test_coverage_mid_period_counts_only_visit_days_that_ended(
    directory: asyncpg.Pool,
) -> None:
    """Mid-week, elders whose visit day is still ahead are pending, not overdue."""
    at = MONDAY + timedelta(days=3, hours=12)
    period = period_of(WEEKLY, MONDAY)
    ended = sorted(
        elder_id
        for ids in COVERED.values()
        for elder_id in ids
        if _day(elder_id, period) < at.date()
    )

    report = await coverage(directory, [WEEKLY], at)

    (rule,) = report.rules
    assert rule.visited == 0
    assert sorted(i for r in rule.regions for i in r.overdue_elder_ids) == ended
    assert sum(r.pending for r in rule.regions) == 5 - len(ended)


async def test_visit_completed_in_the_previous_period_does_not_count(
    directory: asyncpg.Pool,
) -> None:
    """Only completions inside the period make an elder visited."""
    clock = SimulatedClock(MONDAY - timedelta(days=2))
    store = _store(directory, clock)
    booking = await store.create(
        booking_request(WEEKLY, "px-a1", visit_window(WEEKLY, clock.now().date())),
        Actor(ActorRole.OPERATOR, "op-1"),
        str(uuid.uuid4()),
    )
    await _serve(store, booking.order.order_id)

    report = await coverage(directory, [WEEKLY], MONDAY + timedelta(days=6))

    assert report.rules[0].visited == 0
    earlier = await coverage(directory, [WEEKLY], MONDAY, finished=True)
    assert earlier.rules[0].period.end == MONDAY
    assert earlier.rules[0].visited == 1


def test_rules_with_one_id_are_refused() -> None:
    """Two rules sharing an id would share idempotency keys: refused."""
    clock = SimulatedClock(MONDAY)
    twin = ProactiveRule(WEEKLY.rule_id, WEEKLY.freq, any_of=WEEKLY.all_of)
    with pytest.raises(ValueError, match="share an id"):
        ProactiveVisits(None, None, clock, [WEEKLY, twin])  # type: ignore[arg-type]
