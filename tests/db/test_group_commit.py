"""Group commit of bookings and transitions: few transactions, own answers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

import db.orders
from db.groupcommit import GroupCommit
from db.orders import Booking, OrderStore
from db.pool import Connection
from dispatch.clock import SimulatedClock
from dispatch.domain import Actor, ActorRole, BookingRequest, TimeWindow
from dispatch.errors import (
    HomecareError,
    IdempotencyInProgressError,
    IdempotencyMismatchError,
    IllegalTransitionError,
    NotFoundError,
    StaleVersionError,
    ValidationError,
)
from dispatch.lifecycle import OrderStatus, Trigger

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
OPERATOR = Actor(ActorRole.OPERATOR, "op-1")
SYSTEM = Actor(ActorRole.SYSTEM, "dispatcher")


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
    return OrderStore(clean, SimulatedClock(T0))


async def _orders(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval('select count(*) from "order"')
    return count


@pytest.fixture
async def poison(clean: asyncpg.Pool) -> AsyncIterator[None]:
    """PostgreSQL itself refuses orders noted ``poison`` and offers to it."""
    await clean.execute(
        """
        create function refuse_poison() returns trigger language plpgsql as $$
        begin
            if to_jsonb(new) ->> 'notes' = 'poison'
                    or to_jsonb(new) ->> 'provider_id' = 'poison' then
                raise exception 'poisoned' using errcode = 'check_violation';
            end if;
            return new;
        end $$;
        create trigger refuse_poison before insert on "order"
            for each row execute function refuse_poison();
        create trigger refuse_poison before insert on offer
            for each row execute function refuse_poison();
        """
    )
    try:
        yield
    finally:
        await clean.execute(
            'drop trigger refuse_poison on "order";'
            " drop trigger refuse_poison on offer; drop function refuse_poison();"
        )


async def test_concurrent_bookings_share_commits_and_keep_their_own_ids(
    store: OrderStore, clean: asyncpg.Pool
) -> None:
    """A hundred concurrent bookings are each durable, with their own order."""
    bookings = await asyncio.gather(
        *(
            store.create(_request(elder_id=f"el-{k % 3 + 1}"), OPERATOR, f"k{k}")
            for k in range(100)
        )
    )

    assert all(b.created for b in bookings)
    assert len({b.order.order_id for b in bookings}) == 100
    for k, booking in enumerate(bookings):
        assert booking.order.elder_id == f"el-{k % 3 + 1}"
        assert await store.get(booking.order.order_id) == booking.order
    rows = await clean.fetch(
        "select count(*) as events, count(distinct tx) as commits from order_event"
    )
    assert rows[0]["events"] == 100
    assert rows[0]["commits"] < 100
    assert await clean.fetchval("select count(*) from idempotency_key") == 100


async def test_bad_booking_in_a_group_is_refused_alone(
    store: OrderStore, clean: asyncpg.Pool
) -> None:
    """Unknown elders and services get their codes; the rest of the group commits."""
    results = await asyncio.gather(
        store.create(_request(), OPERATOR, "good-1"),
        store.create(_request(elder_id="el-404"), OPERATOR, "bad-elder"),
        store.create(_request(), OPERATOR, "good-2"),
        store.create(_request(service_code="nope"), OPERATOR, "bad-service"),
        store.create(_request(), OPERATOR, "good-3"),
        return_exceptions=True,
    )

    assert [type(r) for r in results] == [
        Booking,
        ValidationError,
        Booking,
        ValidationError,
        Booking,
    ]
    assert [r.code for r in results if isinstance(r, ValidationError)] == [
        "unknown_elder",
        "unknown_service",
    ]
    assert await _orders(clean) == 3
    keys = await clean.fetch("select key from idempotency_key order by key")
    assert [k["key"] for k in keys] == ["good-1", "good-2", "good-3"]


@pytest.mark.usefixtures("poison")
async def test_group_refused_by_postgres_is_booked_one_by_one(
    store: OrderStore, clean: asyncpg.Pool
) -> None:
    """When PostgreSQL refuses one booking, only that caller gets the error."""
    results = await asyncio.gather(
        *(
            store.create(_request(notes="poison" if k == 2 else ""), OPERATOR, f"k{k}")
            for k in range(5)
        ),
        return_exceptions=True,
    )

    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(refused) == 1
    assert isinstance(results[2], asyncpg.CheckViolationError)
    assert await _orders(clean) == 4
    assert await clean.fetchval("select count(*) from order_event") == 4


async def test_retries_in_and_across_groups_return_the_first_order(
    store: OrderStore, clean: asyncpg.Pool
) -> None:
    """A retry of a committed key, or a key twice in one group, books once."""
    first = await store.create(_request(), OPERATOR, "again")

    results = await asyncio.gather(
        store.create(_request(), OPERATOR, "again"),
        store.create(_request(), OPERATOR, "twice"),
        store.create(_request(), OPERATOR, "twice"),
        store.create(_request(notes="other"), OPERATOR, "again"),
        return_exceptions=True,
    )

    retry, twice_a, twice_b, reused = results
    assert isinstance(retry, Booking)
    assert not retry.created
    assert retry.order == first.order
    assert isinstance(twice_a, Booking)
    assert twice_a.created
    assert isinstance(twice_b, Booking)
    assert not twice_b.created
    assert twice_b.order == twice_a.order
    assert isinstance(reused, IdempotencyMismatchError)
    assert await _orders(clean) == 2


async def test_key_held_elsewhere_is_in_progress_and_others_commit(
    store: OrderStore, clean: asyncpg.Pool
) -> None:
    """A key locked by another session's booking is refused alone."""
    async with clean.acquire() as other, other.transaction():
        await other.execute(
            "select pg_advisory_xact_lock(hashtextextended($1, 0))",
            f"{OPERATOR}\x1fbusy",
        )
        results = await asyncio.gather(
            store.create(_request(), OPERATOR, "busy"),
            store.create(_request(), OPERATOR, "free"),
            return_exceptions=True,
        )

    busy, free = results
    assert isinstance(busy, IdempotencyInProgressError)
    assert isinstance(free, Booking)
    assert free.created
    assert await _orders(clean) == 1


async def test_failed_commit_acks_nobody_and_a_retry_books_once(
    store: OrderStore, clean: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A group lost before its commit answers every caller with the failure.

    Nothing of it is written, so the callers' retries with the same keys
    book each order exactly once.
    """
    real = db.orders._write

    async def lost(*args: object) -> None:
        raise ConnectionResetError("connection lost before commit")

    monkeypatch.setattr(db.orders, "_write", lost)
    results = await asyncio.gather(
        *(store.create(_request(), OPERATOR, f"k{k}") for k in range(5)),
        return_exceptions=True,
    )
    assert all(isinstance(r, ConnectionResetError) for r in results)
    assert await _orders(clean) == 0
    assert await clean.fetchval("select count(*) from idempotency_key") == 0

    monkeypatch.setattr(db.orders, "_write", real)
    retried = await asyncio.gather(
        *(store.create(_request(), OPERATOR, f"k{k}") for k in range(5))
    )
    again = await asyncio.gather(
        *(store.create(_request(), OPERATOR, f"k{k}") for k in range(5))
    )
    assert all(r.created for r in retried)
    assert [a.order for a in again] == [r.order for r in retried]
    assert not any(a.created for a in again)
    assert await _orders(clean) == 5


async def test_groups_never_exceed_their_size(clean: asyncpg.Pool) -> None:
    """Bookings beyond ``max_group`` wait for a later commit, all acknowledged."""
    store = OrderStore(clean, SimulatedClock(T0), max_group=4, max_commits=1)
    bookings = await asyncio.gather(
        *(store.create(_request(), OPERATOR, f"k{k}") for k in range(10))
    )

    assert all(b.order.status is OrderStatus.BOOKED for b in bookings)
    sizes = await clean.fetch(
        "select count(*) as n from order_event group by tx order by min(event_id)"
    )
    assert [s["n"] for s in sizes] == [4, 4, 2]


async def test_validation_errors_are_raised_before_queueing(
    store: OrderStore, clean: asyncpg.Pool
) -> None:
    """Input that is bad on its face is refused at once and writes nothing."""
    with pytest.raises(ValidationError) as refused:
        await store.create(_request(duration_min=0), OPERATOR, "k")
    assert refused.value.code == "out_of_range"
    assert await _orders(clean) == 0


def _offer(provider_id: str = "cg-1") -> dict[str, str]:
    return {
        "provider_id": provider_id,
        "expires_at": (T0 + timedelta(minutes=1)).isoformat(),
    }


async def _booked(store: OrderStore, count: int) -> list[str]:
    bookings = await asyncio.gather(
        *(store.create(_request(), OPERATOR, f"b{k}") for k in range(count))
    )
    return [b.order.order_id for b in bookings]


async def test_concurrent_transitions_share_commits(
    store: OrderStore, clean: asyncpg.Pool
) -> None:
    """Offers of fifty orders made at once are each written, in few commits."""
    order_ids = await _booked(store, 50)

    results = await asyncio.gather(
        *(
            store.transition(o, Trigger.OFFER, SYSTEM, payload=_offer())
            for o in order_ids
        )
    )

    assert [order.order_id for order, _ in results] == order_ids
    assert all(order.status is OrderStatus.OFFERED for order, _ in results)
    for order, event in results:
        assert await store.get(order.order_id) == order
        assert (await store.events(order.order_id))[-1] == event
    assert (
        await clean.fetchval("select count(*) from offer where outcome is null") == 50
    )
    commits = await clean.fetchval(
        "select count(distinct tx) from order_event where trigger = 'offer'"
    )
    assert commits < 50


async def test_refused_transition_in_a_group_changes_only_itself(
    store: OrderStore, clean: asyncpg.Pool
) -> None:
    """An illegal, stale or unknown transition is refused; the others commit."""
    first, second, third = await _booked(store, 3)

    results = await asyncio.gather(
        store.transition(first, Trigger.OFFER, SYSTEM, payload=_offer()),
        store.transition(second, Trigger.ACCEPT, SYSTEM),
        store.transition(
            third, Trigger.OFFER, SYSTEM, expected_version=7, payload=_offer()
        ),
        store.transition(str(uuid.uuid4()), Trigger.CANCEL, OPERATOR),
        return_exceptions=True,
    )

    assert isinstance(results[0], tuple)
    assert isinstance(results[1], IllegalTransitionError)
    assert isinstance(results[2], StaleVersionError)
    assert isinstance(results[3], NotFoundError)
    statuses = [(await store.get(o)).status for o in (first, second, third)]
    assert statuses == [OrderStatus.OFFERED, OrderStatus.BOOKED, OrderStatus.BOOKED]
    assert await clean.fetchval("select count(*) from order_event") == 4


@pytest.mark.usefixtures("poison")
async def test_transition_refused_by_postgres_fails_alone(
    store: OrderStore, clean: asyncpg.Pool
) -> None:
    """An offer PostgreSQL refuses fails alone; the group's others commit."""
    order_ids = await _booked(store, 4)

    results = await asyncio.gather(
        *(
            store.transition(
                o, Trigger.OFFER, SYSTEM, payload=_offer("poison" if k == 1 else "cg-1")
            )
            for k, o in enumerate(order_ids)
        ),
        return_exceptions=True,
    )

    assert isinstance(results[1], asyncpg.CheckViolationError)
    assert sum(isinstance(r, tuple) for r in results) == 3
    assert (await store.get(order_ids[1])).status is OrderStatus.BOOKED
    assert await clean.fetchval("select count(*) from offer") == 3


async def test_transitions_of_one_order_apply_one_after_the_other(
    store: OrderStore,
) -> None:
    """Two changes of one order submitted together never share a group."""
    [order_id] = await _booked(store, 1)

    offered, withdrawn = await asyncio.gather(
        store.transition(order_id, Trigger.OFFER, SYSTEM, payload=_offer()),
        store.transition(order_id, Trigger.WITHDRAW, OPERATOR, reason="mistake"),
    )

    assert offered[0].version == 2
    assert withdrawn[0].version == 3
    assert withdrawn[0].status is OrderStatus.BOOKED
    assert [e.seq for e in await store.events(order_id)] == [1, 2, 3]


class _CountingPool:
    """A pool that counts the connections taken from it."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.acquired = 0

    def acquire(self) -> Any:
        self.acquired += 1
        return self._pool.acquire()


async def _where_committed(
    conn: Connection, writes: Sequence[int]
) -> list[tuple[int, int] | HomecareError]:
    """Each write's transaction id and the backend that committed it."""
    row = await conn.fetchrow("select txid_current() as tx, pg_backend_pid() as pid")
    assert row is not None
    return [(row["tx"], row["pid"]) for _ in writes]


async def test_groups_back_to_back_share_one_connection(clean: asyncpg.Pool) -> None:
    """Groups queued behind each other commit apart on one connection taken once."""
    pool = _CountingPool(clean)
    commits = GroupCommit[int, tuple[int, int]](
        pool,  # type: ignore[arg-type]  # only acquire() is used
        _where_committed,
        lambda k: k,
        name="tests",
        max_group=4,
        max_commits=1,
    )

    results = await asyncio.gather(*(commits.submit(k) for k in range(10)))

    assert len({tx for tx, _ in results}) == 3
    assert len({pid for _, pid in results}) == 1
    assert pool.acquired == 1


async def test_group_after_a_lost_connection_commits_on_a_new_one(
    clean: asyncpg.Pool,
) -> None:
    """The group whose connection dies fails; the groups behind it still commit."""
    lost: list[int] = []

    async def dies_once(
        conn: Connection, writes: Sequence[int]
    ) -> list[tuple[int, int] | HomecareError]:
        if not lost:
            lost.append(await conn.fetchval("select pg_backend_pid()"))
            conn.terminate()
        return await _where_committed(conn, writes)

    commits = GroupCommit[int, tuple[int, int]](
        clean, dies_once, lambda k: k, name="tests", max_group=4, max_commits=1
    )

    results = await asyncio.gather(
        *(commits.submit(k) for k in range(10)), return_exceptions=True
    )

    assert all(isinstance(r, Exception) for r in results[:4])
    later = results[4:]
    assert all(isinstance(r, tuple) for r in later)
    assert lost[0] not in {r[1] for r in later if isinstance(r, tuple)}


async def test_groups_keep_each_orders_lists_and_offers_apart(
    store: OrderStore, clean: asyncpg.Pool
) -> None:
    """Offers and declines of several orders at once keep each one's own lists."""
    first, second, third = await _booked(store, 3)
    cg1, cg2 = Actor(ActorRole.CAREGIVER, "cg-1"), Actor(ActorRole.CAREGIVER, "cg-2")

    for o in (first, second, third):
        await store.transition(o, Trigger.OFFER, SYSTEM, payload=_offer("cg-1"))
    await asyncio.gather(
        *(store.transition(o, Trigger.DECLINE, cg1) for o in (first, second, third))
    )
    await asyncio.gather(
        *(
            store.transition(o, Trigger.OFFER, SYSTEM, payload=_offer("cg-2"))
            for o in (first, second)
        )
    )
    await store.transition(first, Trigger.DECLINE, cg2)

    stored = [await store.get(o) for o in (first, second, third)]
    assert [o.excluded_provider_ids for o in stored] == [
        {"cg-1", "cg-2"},
        {"cg-1"},
        {"cg-1"},
    ]
    assert [o.offer_provider_id for o in stored] == [None, "cg-2", None]
    offers = await clean.fetch(
        "select order_id::text as order_id, provider_id, outcome from offer"
        " order by order_id, offer_id"
    )
    assert sorted((r["order_id"], r["provider_id"], r["outcome"]) for r in offers) == (
        sorted(
            [
                (first, "cg-1", "decline"),
                (first, "cg-2", "decline"),
                (second, "cg-1", "decline"),
                (second, "cg-2", None),
                (third, "cg-1", "decline"),
            ]
        )
    )
    providers = await clean.fetch(
        "select provider_ids from order_event where order_id = $1 order by seq",
        uuid.UUID(first),
    )
    assert [list(r["provider_ids"]) for r in providers] == [
        [],
        ["cg-1"],
        ["cg-1"],
        ["cg-2"],
        ["cg-2"],
    ]


async def test_a_write_queued_while_the_connection_goes_back_is_committed(
    clean: asyncpg.Pool,
) -> None:
    """One writer at a time: each write arrives as the last commit hands back.

    The commit answers its caller before it gives its connection back to the
    pool, so the caller's next write lands while that commit still counts
    as running; it must not be left waiting for a commit that has ended.
    """
    commits = GroupCommit[int, tuple[int, int]](
        clean, _where_committed, lambda k: k, name="tests", max_commits=1
    )

    async with asyncio.timeout(10):
        for k in range(20):
            await commits.submit(k)
