"""The order store on a real PostgreSQL: bookings, transitions, conflicts."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from db.orders import OrderStore
from dispatch.clock import SimulatedClock
from dispatch.domain import Actor, ActorRole, BookingRequest, Priority, TimeWindow
from dispatch.errors import (
    ConflictError,
    HomecareError,
    IdempotencyInProgressError,
    IdempotencyMismatchError,
    NotFoundError,
    StaleVersionError,
    ValidationError,
)
from dispatch.lifecycle import OrderStatus, Trigger, replay

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
OPERATOR = Actor(ActorRole.OPERATOR, "op-1")
SYSTEM = Actor(ActorRole.SYSTEM, "dispatcher")
CG1 = Actor(ActorRole.CAREGIVER, "cg-1")


def _request(**changes: object) -> BookingRequest:
    base: dict[str, object] = {
        "elder_id": "el-1",
        "service_code": "meal_help",
        "window": TimeWindow(T0, T0 + timedelta(hours=2)),
    }
    base.update(changes)
    return BookingRequest(**base)  # type: ignore[arg-type]


@pytest.fixture
def store(clean: asyncpg.Pool) -> OrderStore:
    return OrderStore(clean, SimulatedClock(T0), max_notes_chars=100)


async def _counts(pool: asyncpg.Pool) -> tuple[int, ...]:
    row = await pool.fetchrow(
        'select (select count(*) from "order"), (select count(*) from order_event),'
        " (select count(*) from offer), (select count(*) from idempotency_key)"
    )
    assert row is not None
    return tuple(row)


async def test_booking_writes_order_event_and_key(
    store: OrderStore, clean: asyncpg.Pool
) -> None:
    """A booking is one order, one book event and one idempotency record."""
    booking = await store.create(_request(), OPERATOR, "k1")
    assert booking.created
    assert booking.order.status is OrderStatus.BOOKED
    assert booking.order.region_id == "220102-01"
    assert booking.order.duration_min == 45
    assert await _counts(clean) == (1, 1, 0, 1)
    assert await store.get(booking.order.order_id) == booking.order


async def test_same_key_same_body_returns_the_first_order(store: OrderStore) -> None:
    """A retried booking returns the first order and books nothing new."""
    first = await store.create(_request(), OPERATOR, "k1")
    again = await store.create(_request(), OPERATOR, "k1")
    assert not again.created
    assert again.order == first.order


async def test_same_key_other_body_is_refused(
    store: OrderStore, clean: asyncpg.Pool
) -> None:
    """Reusing a key for a different request is a conflict and writes nothing."""
    await store.create(_request(), OPERATOR, "k1")
    with pytest.raises(IdempotencyMismatchError):
        await store.create(_request(notes="other"), OPERATOR, "k1")
    assert await _counts(clean) == (1, 1, 0, 1)


async def test_keys_are_scoped_by_caller(store: OrderStore) -> None:
    """Two callers may use the same key for different orders."""
    a = await store.create(_request(), OPERATOR, "k1")
    b = await store.create(_request(), Actor(ActorRole.PARTNER, "p-1"), "k1")
    assert a.order.order_id != b.order.order_id


async def test_concurrent_same_key_books_once(
    store: OrderStore, clean: asyncpg.Pool
) -> None:
    """Racing retries either return the one order or say it is in progress."""
    results = await asyncio.gather(
        *(store.create(_request(), OPERATOR, "race") for _ in range(10)),
        return_exceptions=True,
    )
    orders = {r.order.order_id for r in results if not isinstance(r, BaseException)}
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(orders) == 1
    assert all(isinstance(e, IdempotencyInProgressError) for e in errors)
    assert await _counts(clean) == (1, 1, 0, 1)


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"service_code": "no_such_service"}, "unknown_service"),
        ({"elder_id": "el-404"}, "unknown_elder"),
        ({"notes": "x" * 101}, "too_long"),
        ({"duration_min": 0}, "out_of_range"),
    ],
)
async def test_bad_booking_is_refused_and_writes_nothing(
    store: OrderStore, clean: asyncpg.Pool, changes: dict[str, object], code: str
) -> None:
    """Bad input gets its stable code and leaves the database untouched."""
    with pytest.raises(ValidationError) as refused:
        await store.create(_request(**changes), OPERATOR, "bad")
    assert refused.value.code == code
    assert await _counts(clean) == (0, 0, 0, 0)


def test_window_ending_before_it_starts_is_refused() -> None:
    """A window that ends before it starts cannot even be built."""
    with pytest.raises(ValidationError) as refused:
        TimeWindow(T0, T0 - timedelta(minutes=1))
    assert refused.value.code == "bad_window"


async def test_unknown_or_malformed_order_id_is_not_found(store: OrderStore) -> None:
    """Looking up an order that does not exist is a clear not-found."""
    with pytest.raises(NotFoundError):
        await store.get("not-a-uuid")
    with pytest.raises(NotFoundError):
        await store.get("00000000-0000-0000-0000-000000000000")


async def _offered(store: OrderStore) -> str:
    booking = await store.create(_request(), OPERATOR, "k-offer")
    await store.transition(
        booking.order.order_id,
        Trigger.OFFER,
        SYSTEM,
        payload={
            "provider_id": "cg-1",
            "expires_at": (T0 + timedelta(minutes=1)).isoformat(),
        },
    )
    return booking.order.order_id


async def test_fifty_concurrent_accepts_one_wins(
    store: OrderStore, clean: asyncpg.Pool
) -> None:
    """Of 50 simultaneous accepts of one offer, exactly one succeeds."""
    order_id = await _offered(store)
    results = await asyncio.gather(
        *(
            store.transition(order_id, Trigger.ACCEPT, CG1, expected_version=2)
            for _ in range(50)
        ),
        return_exceptions=True,
    )
    wins = [r for r in results if not isinstance(r, BaseException)]
    losses = [r for r in results if isinstance(r, BaseException)]
    assert len(wins) == 1
    assert len(losses) == 49
    assert all(isinstance(e, StaleVersionError) for e in losses)
    accept_events = await clean.fetchval(
        "select count(*) from order_event where order_id = $1 and trigger = 'accept'",
        uuid.UUID(order_id),
    )
    assert accept_events == 1
    assert (await store.get(order_id)).provider_id == "cg-1"


async def test_offer_rows_follow_the_order(
    store: OrderStore, clean: asyncpg.Pool
) -> None:
    """An offer row opens with the offer and closes with its outcome."""
    order_id = await _offered(store)
    await store.transition(order_id, Trigger.DECLINE, CG1)
    rows = await clean.fetch("select provider_id, outcome from offer")
    assert [tuple(r) for r in rows] == [("cg-1", "decline")]


async def test_failed_transition_changes_nothing(
    store: OrderStore, clean: asyncpg.Pool
) -> None:
    """A refused transition leaves order, events and offers as they were."""
    order_id = await _offered(store)
    before = await _counts(clean)
    with pytest.raises(HomecareError):
        await store.transition(order_id, Trigger.START, CG1)
    with pytest.raises(ConflictError):
        await store.transition(order_id, Trigger.ACCEPT, CG1, expected_version=1)
    assert await _counts(clean) == before
    assert (await store.get(order_id)).version == 2


async def test_events_replay_to_the_stored_order(store: OrderStore) -> None:
    """The event log rebuilds exactly the order the store returns."""
    order_id = await _offered(store)
    await store.transition(order_id, Trigger.ACCEPT, CG1)
    await store.transition(order_id, Trigger.GIVE_BACK, CG1, reason="sick")
    assert replay(await store.events(order_id)) == await store.get(order_id)


async def test_emergency_priority_is_kept(store: OrderStore) -> None:
    """The priority asked for is the priority stored."""
    booking = await store.create(_request(priority=Priority.EMERGENCY), OPERATOR, "e")
    assert (await store.get(booking.order.order_id)).priority is Priority.EMERGENCY
