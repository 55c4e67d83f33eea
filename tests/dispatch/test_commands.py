"""People's actions on orders: check-in radius and reassignment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from db.orders import OrderStore
from dispatch.clock import SimulatedClock
from dispatch.commands import Commands
from dispatch.domain import Actor, ActorRole, BookingRequest, GeoPoint, TimeWindow
from dispatch.errors import IllegalTransitionError, ValidationError
from dispatch.lifecycle import OrderStatus, Trigger

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
OPERATOR = Actor(ActorRole.OPERATOR, "op-1")
CG1 = Actor(ActorRole.CAREGIVER, "cg-1")
HOME_OF_EL1 = GeoPoint(43.8912, 125.3372)


@pytest.fixture
def store(clean: asyncpg.Pool) -> OrderStore:
    return OrderStore(clean, SimulatedClock(T0))


@pytest.fixture
def commands(store: OrderStore) -> Commands:
    return Commands(store, checkin_radius_m=200)


async def _en_route(store: OrderStore, commands: Commands) -> str:
    booking = await store.create(
        BookingRequest("el-1", "meal_help", TimeWindow(T0, T0 + timedelta(hours=1))),
        OPERATOR,
        "k",
    )
    order_id = booking.order.order_id
    await commands.reassign(OPERATOR, order_id, "cg-1", "hotline choice", T0)
    await commands.act(CG1, order_id, Trigger.ACCEPT)
    await commands.act(CG1, order_id, Trigger.DEPART)
    return order_id


async def test_check_in_at_the_door_is_accepted(
    store: OrderStore, commands: Commands
) -> None:
    """A check-in a few metres from home moves the order to arrived."""
    order_id = await _en_route(store, commands)
    order, event = await commands.check_in(CG1, order_id, HOME_OF_EL1)
    assert order.status is OrderStatus.ARRIVED
    assert event.payload["flagged"] is False
    assert event.payload["distance_m"] < 5


async def test_check_in_far_away_is_refused_and_changes_nothing(
    store: OrderStore, commands: Commands
) -> None:
    """Outside the radius the check-in is refused with its stable code."""
    order_id = await _en_route(store, commands)
    far = GeoPoint(HOME_OF_EL1.lat + 0.01, HOME_OF_EL1.lon)
    with pytest.raises(ValidationError) as refused:
        await commands.check_in(CG1, order_id, far)
    assert refused.value.code == "checkin_too_far"
    assert (await store.get(order_id)).status is OrderStatus.EN_ROUTE


async def test_flagged_check_in_far_away_is_accepted_and_marked(
    store: OrderStore, commands: Commands
) -> None:
    """A flagged check-in outside the radius is kept, marked for review."""
    order_id = await _en_route(store, commands)
    far = GeoPoint(HOME_OF_EL1.lat + 0.01, HOME_OF_EL1.lon)
    order, event = await commands.check_in(CG1, order_id, far, flagged=True)
    assert order.status is OrderStatus.ARRIVED
    assert event.payload["flagged"] is True


async def test_reassign_moves_an_accepted_order_to_another_caregiver(
    store: OrderStore, commands: Commands
) -> None:
    """Give-back and new offer commit together; the old caregiver is excluded."""
    order_id = await _en_route(store, commands)
    order = await commands.reassign(OPERATOR, order_id, "cg-2", "cg-1 is delayed", T0)
    assert order.status is OrderStatus.OFFERED
    assert order.offer_provider_id == "cg-2"
    assert "cg-1" in order.excluded_provider_ids
    events = await store.events(order_id)
    assert [e.trigger for e in events][-2:] == [Trigger.GIVE_BACK, Trigger.OFFER]


async def test_reassign_to_an_excluded_caregiver_writes_nothing(
    store: OrderStore, commands: Commands
) -> None:
    """When the new offer is refused, the give-back is rolled back too."""
    order_id = await _en_route(store, commands)
    await commands.reassign(OPERATOR, order_id, "cg-2", "first move", T0)
    before = await store.events(order_id)
    with pytest.raises(ValidationError):
        await commands.reassign(OPERATOR, order_id, "cg-1", "back again", T0)
    assert await store.events(order_id) == before


async def test_reassign_after_arrival_is_illegal(
    store: OrderStore, commands: Commands
) -> None:
    """Once the caregiver is at the door the order stays with them."""
    order_id = await _en_route(store, commands)
    await commands.check_in(CG1, order_id, HOME_OF_EL1)
    with pytest.raises(IllegalTransitionError):
        await commands.reassign(OPERATOR, order_id, "cg-2", "too late", T0)
