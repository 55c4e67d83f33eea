"""The pure order lifecycle: who may do what from which state."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dispatch.domain import (
    Actor,
    ActorRole,
    Channel,
    GeoPoint,
    Priority,
    ProviderKind,
    TimeWindow,
)
from dispatch.errors import (
    ForbiddenError,
    IllegalTransitionError,
    StaleVersionError,
    ValidationError,
)
from dispatch.lifecycle import (
    ASSIGNED_STATES,
    TERMINAL_STATES,
    TRANSITIONS,
    Order,
    OrderStatus,
    Trigger,
    apply,
    book,
    replay,
)

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
SYSTEM = Actor(ActorRole.SYSTEM, "dispatcher")
OPERATOR = Actor(ActorRole.OPERATOR, "op-1")
CG1 = Actor(ActorRole.CAREGIVER, "cg-1")
CG2 = Actor(ActorRole.CAREGIVER, "cg-2")


def _order(kind: ProviderKind = ProviderKind.CAREGIVER) -> Order:
    return Order(
        order_id="00000000-0000-0000-0000-000000000001",
        elder_id="el-1",
        service_code="meal_help",
        provider_kind=kind,
        region_id="r1",
        priority=Priority.ROUTINE,
        window=TimeWindow(T0, T0 + timedelta(hours=2)),
        duration_min=45,
        location=GeoPoint(43.89, 125.33),
        channel=Channel.HOTLINE,
        created_by=OPERATOR,
        created_at=T0,
        updated_at=T0,
    )


def _offer(order: Order, provider: str = "cg-1") -> Order:
    offered, _ = apply(
        order,
        Trigger.OFFER,
        SYSTEM,
        T0,
        payload={
            "provider_id": provider,
            "expires_at": (T0 + timedelta(minutes=1)).isoformat(),
        },
    )
    return offered


def test_offer_then_accept_assigns_the_offered_caregiver() -> None:
    """Accepting an offer makes the offered caregiver the assignment."""
    accepted, event = apply(_offer(_order()), Trigger.ACCEPT, CG1, T0)
    assert accepted.status is OrderStatus.ACCEPTED
    assert accepted.provider_id == "cg-1"
    assert accepted.offer_provider_id is None
    assert (event.seq, event.from_status, event.to_status) == (
        3,
        OrderStatus.OFFERED,
        OrderStatus.ACCEPTED,
    )


def test_accept_by_another_caregiver_is_forbidden() -> None:
    """Only the caregiver holding the offer may accept it."""
    with pytest.raises(ForbiddenError):
        apply(_offer(_order()), Trigger.ACCEPT, CG2, T0)


def test_decline_returns_to_booked_and_excludes_the_caregiver() -> None:
    """A declined offer books the order again and never re-offers to them."""
    declined, _ = apply(_offer(_order()), Trigger.DECLINE, CG1, T0)
    assert declined.status is OrderStatus.BOOKED
    assert declined.excluded_provider_ids == {"cg-1"}
    with pytest.raises(ValidationError) as refused:
        _offer(declined, "cg-1")
    assert refused.value.code == "provider_excluded"


def test_withdrawn_offer_does_not_exclude_the_caregiver() -> None:
    """A withdrawal is the dispatcher's choice, not the caregiver's refusal."""
    withdrawn, _ = apply(_offer(_order()), Trigger.WITHDRAW, SYSTEM, T0)
    assert withdrawn.excluded_provider_ids == frozenset()


def test_give_back_needs_a_reason() -> None:
    """A caregiver giving back an order must say why."""
    accepted, _ = apply(_offer(_order()), Trigger.ACCEPT, CG1, T0)
    with pytest.raises(ValidationError):
        apply(accepted, Trigger.GIVE_BACK, CG1, T0)
    back, event = apply(accepted, Trigger.GIVE_BACK, CG1, T0, reason="sick")
    assert back.status is OrderStatus.BOOKED
    assert back.provider_id is None
    assert event.reason == "sick"


def test_give_back_after_arrival_is_illegal() -> None:
    """Once at the door, the order cannot be given back."""
    order, _ = apply(_offer(_order()), Trigger.ACCEPT, CG1, T0)
    order, _ = apply(order, Trigger.DEPART, CG1, T0)
    order, _ = apply(order, Trigger.CHECK_IN, CG1, T0, payload={"distance_m": 12})
    with pytest.raises(IllegalTransitionError):
        apply(order, Trigger.GIVE_BACK, CG1, T0, reason="late")


def test_stale_version_is_refused() -> None:
    """A transition based on an old version changes nothing."""
    order = _offer(_order())
    with pytest.raises(StaleVersionError):
        apply(order, Trigger.ACCEPT, CG1, T0, expected_version=1)


@pytest.mark.parametrize("terminal", sorted(TERMINAL_STATES))
def test_nothing_leaves_a_terminal_state(terminal: OrderStatus) -> None:
    """Closed and cancelled orders accept no trigger at all."""
    order = replace(_order(), status=terminal)
    for trigger in Trigger:
        with pytest.raises((IllegalTransitionError, ValidationError)):
            apply(order, trigger, Actor(ActorRole.ADMIN, "a"), T0, reason="x")


def test_deliver_is_for_vendor_orders_only() -> None:
    """A caregiver's visit cannot be 'delivered'; it must be checked in."""
    order, _ = apply(_offer(_order()), Trigger.ACCEPT, CG1, T0)
    order, _ = apply(order, Trigger.DEPART, CG1, T0)
    with pytest.raises(IllegalTransitionError):
        apply(order, Trigger.DELIVER, CG1, T0, payload={"record": {}})


def test_vendor_delivers_out_for_delivery_order() -> None:
    """A vendor order goes from out for delivery to completed."""
    vendor = Actor(ActorRole.VENDOR, "vd-1")
    order, _ = apply(
        _offer(_order(ProviderKind.VENDOR), "vd-1"), Trigger.ACCEPT, vendor, T0
    )
    order, _ = apply(order, Trigger.DEPART, vendor, T0)
    order, _ = apply(
        order, Trigger.DELIVER, vendor, T0, payload={"record": {"ok": True}}
    )
    assert order.status is OrderStatus.COMPLETED


def test_close_checks_rating_and_settlement() -> None:
    """Ratings are 1 to 5 and settlements are non-negative cents."""
    order = replace(_order(), status=OrderStatus.COMPLETED, provider_id="cg-1")
    with pytest.raises(ValidationError):
        apply(order, Trigger.CLOSE, OPERATOR, T0, payload={"rating": 6})
    with pytest.raises(ValidationError):
        apply(order, Trigger.CLOSE, OPERATOR, T0, payload={"settlement_cents": -1})
    closed, _ = apply(
        order,
        Trigger.CLOSE,
        OPERATOR,
        T0,
        payload={"rating": 5, "settlement_cents": 2500},
    )
    assert closed.status is OrderStatus.CLOSED


def test_replay_rebuilds_the_order_through_its_whole_life() -> None:
    """Folding the events from the booking gives the same order."""
    order = _order()
    events = [book(order)]
    steps: list[tuple[Trigger, Actor, dict[str, Any], str]] = [
        (
            Trigger.OFFER,
            SYSTEM,
            {"provider_id": "cg-1", "expires_at": T0.isoformat()},
            "",
        ),
        (Trigger.DECLINE, CG1, {}, ""),
        (
            Trigger.OFFER,
            SYSTEM,
            {"provider_id": "cg-2", "expires_at": T0.isoformat()},
            "",
        ),
        (Trigger.ACCEPT, CG2, {}, ""),
        (Trigger.DEPART, CG2, {}, ""),
        (Trigger.CHECK_IN, CG2, {"distance_m": 20}, ""),
        (Trigger.START, CG2, {}, ""),
        (Trigger.COMPLETE, CG2, {"record": {"tasks": ["meal"]}}, ""),
        (Trigger.CLOSE, OPERATOR, {"rating": 4}, ""),
    ]
    for trigger, actor, payload, reason in steps:
        order, event = apply(order, trigger, actor, T0, payload=payload, reason=reason)
        events.append(event)
    assert replay(events) == order
    assert order.status is OrderStatus.CLOSED
    assert order.provider_id == "cg-2"


def test_assignment_is_set_exactly_in_assigned_states() -> None:
    """The table's targets agree with the assignment invariant."""
    for trigger, rule in TRANSITIONS.items():
        if trigger is Trigger.ACCEPT:
            assert rule.target in ASSIGNED_STATES
        if rule.target is OrderStatus.BOOKED:
            assert rule.target not in ASSIGNED_STATES


def test_device_may_not_close_orders() -> None:
    """Roles outside the rule are refused."""
    order = replace(_order(), status=OrderStatus.COMPLETED, provider_id="cg-1")
    with pytest.raises(ForbiddenError):
        apply(order, Trigger.CLOSE, Actor(ActorRole.DEVICE, "d-1"), T0)


def test_creator_may_cancel_its_own_booking() -> None:
    """A partner may cancel what it booked, with a reason."""
    partner = Actor(ActorRole.PARTNER, "p-1")
    order = replace(_order(), created_by=partner)
    cancelled, _ = apply(order, Trigger.CANCEL, partner, T0, reason="elder in hospital")
    assert cancelled.status is OrderStatus.CANCELLED
    with pytest.raises(ForbiddenError):
        apply(order, Trigger.CANCEL, Actor(ActorRole.PARTNER, "p-2"), T0, reason="x")
