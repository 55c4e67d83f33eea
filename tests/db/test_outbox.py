"""Following the event log in commit order."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from db.orders import OrderStore
from db.outbox import OutboxEvent, OutboxReader
from dispatch.clock import SimulatedClock
from dispatch.domain import Actor, ActorRole, BookingRequest, TimeWindow
from dispatch.lifecycle import Trigger

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
OPERATOR = Actor(ActorRole.OPERATOR, "op-1")


def _request() -> BookingRequest:
    return BookingRequest("el-1", "meal_help", TimeWindow(T0, T0 + timedelta(hours=1)))


async def _take(reader: OutboxReader, count: int) -> list[OutboxEvent]:
    seen: list[OutboxEvent] = []
    async with asyncio.timeout(10):
        async for batch in reader.batches():
            seen.extend(batch)
            await reader.commit()
            if len(seen) >= count:
                break
    return seen


async def test_reader_sees_each_event_once_in_order(clean: asyncpg.Pool) -> None:
    """Bookings and transitions come out once each, by order then seq."""
    await clean.execute("delete from outbox_cursor")
    store = OrderStore(clean, SimulatedClock(T0))
    booking = await store.create(_request(), OPERATOR, "a")
    await store.transition(
        booking.order.order_id,
        Trigger.OFFER,
        Actor(ActorRole.SYSTEM, "d"),
        payload={"provider_id": "cg-1", "expires_at": T0.isoformat()},
    )
    events = await _take(OutboxReader(clean, "test"), 2)
    assert [(e.trigger, e.seq) for e in events] == [("book", 1), ("offer", 2)]
    assert events[1].provider_ids == ("cg-1",)
    assert events[1].region_id == "220102-01"


async def test_reader_resumes_after_its_saved_cursor(clean: asyncpg.Pool) -> None:
    """A new reader with the same name starts after the last commit."""
    await clean.execute("delete from outbox_cursor")
    store = OrderStore(clean, SimulatedClock(T0))
    await store.create(_request(), OPERATOR, "a")
    assert len(await _take(OutboxReader(clean, "resume"), 1)) == 1
    await store.create(_request(), OPERATOR, "b")
    again = await _take(OutboxReader(clean, "resume"), 1)
    assert [e.seq for e in again] == [1]
    assert len(again) == 1


async def test_event_of_a_slow_transaction_is_not_skipped(clean: asyncpg.Pool) -> None:
    """An event committed after a later one is still delivered."""
    await clean.execute("delete from outbox_cursor")
    store = OrderStore(clean, SimulatedClock(T0))
    reader = OutboxReader(clean, "slow")
    seen: list[OutboxEvent] = []
    arrived = asyncio.Event()

    async def follow() -> None:
        async for batch in reader.batches():
            seen.extend(batch)
            arrived.set()
            await reader.commit()

    task = asyncio.create_task(follow())
    try:
        async with clean.acquire() as slow, slow.transaction():
            # the slow transaction takes its id first, then waits
            await slow.execute("select pg_current_xact_id()")
            await store.create(_request(), OPERATOR, "fast")
            await asyncio.sleep(0.8)
            assert seen == [], "read past a transaction still running"
            await slow.execute("insert into outbox_cursor (name) values ('marker')")
        async with asyncio.timeout(5):
            await arrived.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert [e.trigger for e in seen] == ["book"]


async def test_a_reader_from_now_misses_no_commit_of_a_running_transaction(
    clean: asyncpg.Pool,
) -> None:
    """Prepared at the end of the log, it reads everything committed later.

    That includes the event of a transaction already running when the
    cursor was made, committed behind an event of a later transaction.
    """
    await clean.execute("delete from outbox_cursor")
    store = OrderStore(clean, SimulatedClock(T0))
    first = (await store.create(_request(), OPERATOR, "first")).order.order_id
    async with clean.acquire() as slow, slow.transaction():
        await store.transition_on(
            slow,
            first,
            Trigger.OFFER,
            Actor(ActorRole.SYSTEM, "d"),
            payload={"provider_id": "cg-1", "expires_at": T0.isoformat()},
        )
        await store.create(_request(), OPERATOR, "middle")
        reader = OutboxReader(clean, "from-now", from_now=True)
        await reader.prepare()
    last = (await store.create(_request(), OPERATOR, "last")).order.order_id

    events = await _take(reader, 3)
    seen = {(e.order_id, e.trigger) for e in events}
    assert (first, "offer") in seen
    assert (last, "book") in seen
    assert (first, "book") not in seen
