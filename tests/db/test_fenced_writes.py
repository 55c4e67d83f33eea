"""A dispatcher's transitions commit only under the lease it holds."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from db.leases import Fence, RegionLeases
from db.orders import OrderStore
from dispatch.clock import SimulatedClock
from dispatch.domain import Actor, ActorRole, BookingRequest, TimeWindow
from dispatch.errors import LeaseLostError
from dispatch.lifecycle import OrderStatus, Trigger

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
REGION = "220102-01"
SYSTEM = Actor(ActorRole.SYSTEM, "dispatcher")
TTL = timedelta(seconds=30)


async def _book(store: OrderStore, key: str) -> str:
    booking = await store.create(
        BookingRequest(
            "el-1", "bp_glucose_check", TimeWindow(T0, T0 + timedelta(hours=2))
        ),
        Actor(ActorRole.OPERATOR, "op-1"),
        key,
    )
    return booking.order.order_id


def _offer(provider_id: str) -> dict[str, str]:
    expires = T0 + timedelta(minutes=1)
    return {"provider_id": provider_id, "expires_at": expires.isoformat()}


async def test_a_write_under_the_held_fence_commits(clean: asyncpg.Pool) -> None:
    store = OrderStore(clean, SimulatedClock(T0))
    [lease] = (await RegionLeases(clean, "node-a", TTL).claim()).values()
    order_id = await _book(store, "fenced-1")

    order, _ = await store.transition(
        order_id,
        Trigger.OFFER,
        SYSTEM,
        payload=_offer("cg-1"),
        fence=Fence("node-a", {REGION: lease.fence}),
    )

    assert order.status is OrderStatus.OFFERED


async def test_a_write_under_a_superseded_fence_changes_nothing(
    clean: asyncpg.Pool,
) -> None:
    """After a takeover the old holder's write is refused, the new one's not."""
    store = OrderStore(clean, SimulatedClock(T0))
    [old] = (await RegionLeases(clean, "node-a", TTL).claim()).values()
    await clean.execute(
        "update region_lease set expires_at = clock_timestamp() - interval '1 s'"
    )
    await clean.execute("delete from dispatcher_node where holder = 'node-a'")
    [new] = (await RegionLeases(clean, "node-b", TTL).claim()).values()
    assert new.fence == old.fence + 1
    order_id = await _book(store, "fenced-2")

    stale = Fence("node-a", {REGION: old.fence})
    with pytest.raises(LeaseLostError) as refused:
        await store.transition(
            order_id, Trigger.OFFER, SYSTEM, payload=_offer("cg-1"), fence=stale
        )
    assert refused.value.code == "lease_lost"
    assert (await store.get(order_id)).status is OrderStatus.BOOKED
    assert [e.trigger for e in await store.events(order_id)] == [Trigger.BOOK]

    order, _ = await store.transition(
        order_id,
        Trigger.OFFER,
        SYSTEM,
        payload=_offer("cg-2"),
        fence=Fence("node-b", {REGION: new.fence}),
    )
    assert order.offer_provider_id == "cg-2"


async def test_a_region_outside_the_fence_is_refused(clean: asyncpg.Pool) -> None:
    store = OrderStore(clean, SimulatedClock(T0))
    await RegionLeases(clean, "node-a", TTL).claim()
    order_id = await _book(store, "fenced-3")

    with pytest.raises(LeaseLostError):
        await store.transition(
            order_id,
            Trigger.OFFER,
            SYSTEM,
            payload=_offer("cg-1"),
            fence=Fence("node-a", {"another-region": 1}),
        )
    assert (await store.get(order_id)).status is OrderStatus.BOOKED


async def test_in_one_group_only_the_stale_writes_are_refused(
    clean: asyncpg.Pool,
) -> None:
    """Group commit keeps each change's own answer: fenced or not."""
    store = OrderStore(clean, SimulatedClock(T0))
    [lease] = (await RegionLeases(clean, "node-a", TTL).claim()).values()
    orders = [await _book(store, f"fenced-group-{i}") for i in range(6)]
    held = Fence("node-a", {REGION: lease.fence})
    stale = Fence("node-a", {REGION: lease.fence - 1})

    outcomes = await asyncio.gather(
        *(
            store.transition(
                order_id,
                Trigger.OFFER,
                SYSTEM,
                payload=_offer("cg-1"),
                fence=held if i % 2 == 0 else stale,
            )
            for i, order_id in enumerate(orders)
        ),
        return_exceptions=True,
    )

    for i, outcome in enumerate(outcomes):
        if i % 2 == 0:
            assert not isinstance(outcome, BaseException)
        else:
            assert isinstance(outcome, LeaseLostError)
    statuses = [(await store.get(o)).status for o in orders]
    assert statuses == [OrderStatus.OFFERED, OrderStatus.BOOKED] * 3
