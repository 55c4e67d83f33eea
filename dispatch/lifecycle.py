"""The order lifecycle: states, the transition table, and its pure rules.

Every change of an order is one :class:`OrderEvent`, produced by
:func:`apply` and folded into the order by the same code that
:func:`replay` uses, so an order rebuilt from its events is always the
order that was stored.

Transitions (trigger: from -> to; who may trigger it)::

    book        (none)            -> booked      operator partner device
                                                 caregiver admin system
    offer       booked            -> offered     system operator admin
    accept      offered           -> accepted    offered provider, staff
    decline     offered           -> booked      offered provider, staff
    expire      offered           -> booked      system
    withdraw    offered           -> booked      system, staff
    give_back   accepted en_route -> booked      assigned provider, system,
                                                 staff
    depart      accepted          -> en_route    assigned provider
    check_in    en_route          -> arrived     assigned provider
    start       arrived           -> in_service  assigned provider
    complete    in_service        -> completed   assigned provider
    deliver     en_route          -> completed   assigned vendor (vendor
                                                 orders only)
    no_show     en_route arrived  -> no_show     assigned provider, staff
    close       completed no_show -> closed      system, staff
    cancel      booked offered accepted en_route escalated
                                  -> cancelled   system, staff, or whoever
                                                 booked it
    escalate    booked offered    -> escalated   system, staff
    redispatch  escalated         -> booked      staff

"Staff" is the operator and admin roles.

A declined or expired offer, and a give-back by anyone but the system,
exclude that provider from being offered the same order again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

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

__all__ = [
    "ASSIGNED_STATES",
    "OPEN_STATES",
    "TERMINAL_STATES",
    "TRANSITIONS",
    "Order",
    "OrderEvent",
    "OrderStatus",
    "Rule",
    "Trigger",
    "apply",
    "book",
    "replay",
]

logger = logging.getLogger(__name__)


class OrderStatus(StrEnum):
    """Where an order stands; see the module docstring for the transitions."""

    BOOKED = "booked"
    OFFERED = "offered"
    ACCEPTED = "accepted"
    EN_ROUTE = "en_route"
    ARRIVED = "arrived"
    IN_SERVICE = "in_service"
    COMPLETED = "completed"
    CLOSED = "closed"
    CANCELLED = "cancelled"
    NO_SHOW = "no_show"
    ESCALATED = "escalated"


class Trigger(StrEnum):
    """What happened to cause a transition."""

    BOOK = "book"
    OFFER = "offer"
    ACCEPT = "accept"
    DECLINE = "decline"
    EXPIRE = "expire"
    WITHDRAW = "withdraw"
    GIVE_BACK = "give_back"
    DEPART = "depart"
    CHECK_IN = "check_in"
    START = "start"
    COMPLETE = "complete"
    DELIVER = "deliver"
    NO_SHOW = "no_show"
    CLOSE = "close"
    CANCEL = "cancel"
    ESCALATE = "escalate"
    REDISPATCH = "redispatch"


S = OrderStatus
R = ActorRole

#: States in which an order has a provider responsible for it.
ASSIGNED_STATES = frozenset(
    {S.ACCEPTED, S.EN_ROUTE, S.ARRIVED, S.IN_SERVICE, S.COMPLETED, S.NO_SHOW, S.CLOSED}
)
#: States nothing can leave.
TERMINAL_STATES = frozenset({S.CLOSED, S.CANCELLED})
#: States the dispatcher still has to act on or watch.
OPEN_STATES = frozenset(S) - TERMINAL_STATES - {S.COMPLETED, S.NO_SHOW}


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of the transition table.

    Attributes:
        sources: States the trigger may start from.
        target: State the order ends in.
        roles: Roles that may trigger it for any order.
        provider: Who among providers may trigger it: ``offered`` (the
            provider holding the open offer), ``assigned`` (the provider
            holding the assignment) or ``""`` (no provider).
        creator: Whether the actor who booked the order may trigger it.
    """

    sources: frozenset[OrderStatus]
    target: OrderStatus
    roles: frozenset[ActorRole]
    provider: str = ""
    creator: bool = False


def _rule(
    sources: Iterable[OrderStatus],
    target: OrderStatus,
    roles: Iterable[ActorRole] = (),
    *,
    provider: str = "",
    creator: bool = False,
) -> Rule:
    return Rule(frozenset(sources), target, frozenset(roles), provider, creator)


_STAFF = (R.OPERATOR, R.ADMIN)

TRANSITIONS: Mapping[Trigger, Rule] = {
    Trigger.OFFER: _rule([S.BOOKED], S.OFFERED, [R.SYSTEM, *_STAFF]),
    Trigger.ACCEPT: _rule([S.OFFERED], S.ACCEPTED, _STAFF, provider="offered"),
    Trigger.DECLINE: _rule([S.OFFERED], S.BOOKED, _STAFF, provider="offered"),
    Trigger.EXPIRE: _rule([S.OFFERED], S.BOOKED, [R.SYSTEM]),
    Trigger.WITHDRAW: _rule([S.OFFERED], S.BOOKED, [R.SYSTEM, *_STAFF]),
    Trigger.GIVE_BACK: _rule(
        [S.ACCEPTED, S.EN_ROUTE], S.BOOKED, [R.SYSTEM, *_STAFF], provider="assigned"
    ),
    Trigger.DEPART: _rule([S.ACCEPTED], S.EN_ROUTE, provider="assigned"),
    Trigger.CHECK_IN: _rule([S.EN_ROUTE], S.ARRIVED, provider="assigned"),
    Trigger.START: _rule([S.ARRIVED], S.IN_SERVICE, provider="assigned"),
    Trigger.COMPLETE: _rule([S.IN_SERVICE], S.COMPLETED, provider="assigned"),
    Trigger.DELIVER: _rule([S.EN_ROUTE], S.COMPLETED, provider="assigned"),
    Trigger.NO_SHOW: _rule(
        [S.EN_ROUTE, S.ARRIVED], S.NO_SHOW, _STAFF, provider="assigned"
    ),
    Trigger.CLOSE: _rule([S.COMPLETED, S.NO_SHOW], S.CLOSED, [R.SYSTEM, *_STAFF]),
    Trigger.CANCEL: _rule(
        [S.BOOKED, S.OFFERED, S.ACCEPTED, S.EN_ROUTE, S.ESCALATED],
        S.CANCELLED,
        [R.SYSTEM, *_STAFF],
        creator=True,
    ),
    Trigger.ESCALATE: _rule([S.BOOKED, S.OFFERED], S.ESCALATED, [R.SYSTEM, *_STAFF]),
    Trigger.REDISPATCH: _rule([S.ESCALATED], S.BOOKED, _STAFF),
}

_BOOKING_ROLES = frozenset(
    {R.OPERATOR, R.PARTNER, R.DEVICE, R.CAREGIVER, R.ADMIN, R.SYSTEM}
)
_PROVIDER_ROLE = {ProviderKind.CAREGIVER: R.CAREGIVER, ProviderKind.VENDOR: R.VENDOR}


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """One recorded change of an order; immutable once written.

    ``seq`` is gapless per order and starts at 1 with the ``book`` event,
    whose payload holds the whole booking so that :func:`replay` can
    rebuild the order from its events alone.
    """

    order_id: str
    seq: int
    trigger: Trigger
    from_status: OrderStatus | None
    to_status: OrderStatus
    actor: Actor
    at: datetime
    reason: str = ""
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Order:
    """One request for one service for one elder, as it stands now.

    ``version`` equals the ``seq`` of the last event applied. The
    assignment (``provider_id``) is set exactly in :data:`ASSIGNED_STATES`;
    an open offer (``offer_provider_id``) exists exactly in ``offered``.
    """

    order_id: str
    elder_id: str
    service_code: str
    provider_kind: ProviderKind
    region_id: str
    priority: Priority
    window: TimeWindow
    duration_min: int
    location: GeoPoint
    channel: Channel
    created_by: Actor
    created_at: datetime
    notes: str = ""
    skills: frozenset[str] = frozenset()
    status: OrderStatus = OrderStatus.BOOKED
    version: int = 1
    updated_at: datetime | None = None
    provider_id: str | None = None
    offer_provider_id: str | None = None
    offer_expires_at: datetime | None = None
    excluded_provider_ids: frozenset[str] = frozenset()
    record: Mapping[str, Any] = field(default_factory=dict)


def book(order: Order) -> OrderEvent:
    """The first event of a new order, carrying the whole booking.

    Raises:
        ForbiddenError: The creator's role may not book orders.
        ValidationError: The order does not start as a fresh booking.
    """
    if order.created_by.role not in _BOOKING_ROLES:
        raise ForbiddenError(f"{order.created_by.role} may not book orders")
    if order.status is not S.BOOKED or order.version != 1:
        raise ValidationError("a new order starts booked at version 1")
    return OrderEvent(
        order_id=order.order_id,
        seq=1,
        trigger=Trigger.BOOK,
        from_status=None,
        to_status=S.BOOKED,
        actor=order.created_by,
        at=order.created_at,
        payload=_booking_payload(order),
    )


def apply(
    order: Order,
    trigger: Trigger,
    actor: Actor,
    at: datetime,
    *,
    expected_version: int | None = None,
    reason: str = "",
    payload: Mapping[str, Any] | None = None,
) -> tuple[Order, OrderEvent]:
    """Check one transition and return the changed order and its event.

    Args:
        order: The order as last stored.
        trigger: What happened.
        actor: Who makes it happen.
        at: When, timezone-aware.
        expected_version: The version the actor saw; ``None`` skips the check
            (the system acting on what it just read under a row lock).
        reason: Free-text reason, required for ``give_back`` and ``cancel``.
        payload: Trigger-specific data (see :func:`_check_payload`).

    Raises:
        StaleVersionError: ``expected_version`` is not the current version.
        IllegalTransitionError: The trigger is not allowed from this state.
        ForbiddenError: The actor may not trigger it on this order.
        ValidationError: The payload is missing or malformed.
    """
    if expected_version is not None and expected_version != order.version:
        raise StaleVersionError(
            "the order changed since it was read",
            order_id=order.order_id,
            expected_version=expected_version,
            version=order.version,
        )
    rule = TRANSITIONS.get(trigger)
    vendor_only = trigger is Trigger.DELIVER
    if (
        rule is None
        or order.status not in rule.sources
        or (vendor_only and order.provider_kind is not ProviderKind.VENDOR)
    ):
        raise IllegalTransitionError(
            f"cannot {trigger} an order that is {order.status}",
            order_id=order.order_id,
            status=str(order.status),
            trigger=str(trigger),
        )
    _check_actor(order, rule, actor)
    body = dict(payload or {})
    _check_payload(order, trigger, reason, body)

    event = OrderEvent(
        order_id=order.order_id,
        seq=order.version + 1,
        trigger=trigger,
        from_status=order.status,
        to_status=rule.target,
        actor=actor,
        at=at,
        reason=reason,
        payload=body,
    )
    changed = _fold(order, event)
    logger.debug(
        "order transition",
        extra={
            "order_id": order.order_id,
            "trigger": str(trigger),
            "from": str(order.status),
            "to": str(changed.status),
            "actor": str(actor),
        },
    )
    return changed, event


def replay(events: Iterable[OrderEvent]) -> Order:
    """Rebuild an order from its events, oldest first.

    Raises:
        ValueError: The events do not start with ``book`` or have a gap.
    """
    order: Order | None = None
    for event in events:
        if order is None:
            if event.trigger is not Trigger.BOOK or event.seq != 1:
                raise ValueError("an order's events start with book at seq 1")
            order = _order_from_booking(event)
        elif event.seq != order.version + 1:
            raise ValueError(f"event seq {event.seq} after version {order.version}")
        else:
            order = _fold(order, event)
    if order is None:
        raise ValueError("no events to replay")
    return order


def _check_actor(order: Order, rule: Rule, actor: Actor) -> None:
    if actor.role in rule.roles:
        return
    if rule.creator and actor == order.created_by:
        return
    if rule.provider and actor.role is _PROVIDER_ROLE[order.provider_kind]:
        holder = (
            order.offer_provider_id if rule.provider == "offered" else order.provider_id
        )
        if actor.actor_id == holder:
            return
    raise ForbiddenError(
        f"{actor.role} {actor.actor_id} may not act on this order",
        order_id=order.order_id,
    )


def _check_payload(
    order: Order, trigger: Trigger, reason: str, payload: Mapping[str, Any]
) -> None:
    if trigger is Trigger.OFFER:
        provider_id = payload.get("provider_id")
        expires_at = payload.get("expires_at")
        if not isinstance(provider_id, str) or not provider_id:
            raise ValidationError("an offer names its provider", code="missing_field")
        if not isinstance(expires_at, str):
            raise ValidationError("an offer has an expiry", code="missing_field")
        _parse_time(expires_at, "expires_at")
        if provider_id in order.excluded_provider_ids:
            raise ValidationError(
                "this provider declined or gave back the order before",
                code="provider_excluded",
                provider_id=provider_id,
            )
    elif trigger in (Trigger.GIVE_BACK, Trigger.CANCEL) and not reason.strip():
        raise ValidationError(f"{trigger} needs a reason", code="missing_field")
    elif trigger in (Trigger.COMPLETE, Trigger.DELIVER) and not isinstance(
        payload.get("record"), Mapping
    ):
        raise ValidationError(
            f"{trigger} carries a service record", code="missing_field"
        )
    elif trigger is Trigger.CLOSE:
        rating = payload.get("rating")
        settlement = payload.get("settlement_cents", 0)
        if rating is not None and (
            not isinstance(rating, int)
            or isinstance(rating, bool)
            or not 1 <= rating <= 5
        ):
            raise ValidationError(
                "rating is a whole number from 1 to 5", code="out_of_range"
            )
        if (
            not isinstance(settlement, int)
            or isinstance(settlement, bool)
            or settlement < 0
        ):
            raise ValidationError(
                "settlement_cents is a whole number of cents, not negative",
                code="out_of_range",
            )


def _fold(order: Order, event: OrderEvent) -> Order:
    """The order after one event; shared by :func:`apply` and :func:`replay`."""
    p = event.payload
    changes: dict[str, Any] = {
        "status": event.to_status,
        "version": event.seq,
        "updated_at": event.at,
    }
    excluded = order.excluded_provider_ids
    match event.trigger:
        case Trigger.OFFER:
            changes["offer_provider_id"] = p["provider_id"]
            changes["offer_expires_at"] = _parse_time(p["expires_at"], "expires_at")
        case Trigger.ACCEPT:
            changes["provider_id"] = order.offer_provider_id
            changes |= {"offer_provider_id": None, "offer_expires_at": None}
        case Trigger.DECLINE | Trigger.EXPIRE | Trigger.WITHDRAW:
            if event.trigger is not Trigger.WITHDRAW and order.offer_provider_id:
                excluded = excluded | {order.offer_provider_id}
            changes |= {"offer_provider_id": None, "offer_expires_at": None}
        case Trigger.GIVE_BACK:
            if event.actor.role is not ActorRole.SYSTEM and order.provider_id:
                excluded = excluded | {order.provider_id}
            changes["provider_id"] = None
        case Trigger.CANCEL | Trigger.ESCALATE:
            changes |= {
                "provider_id": None,
                "offer_provider_id": None,
                "offer_expires_at": None,
            }
        case Trigger.CHECK_IN | Trigger.COMPLETE | Trigger.DELIVER | Trigger.CLOSE:
            changes["record"] = {**order.record, str(event.trigger): dict(p)}
        case _:
            pass
    changes["excluded_provider_ids"] = excluded
    return replace(order, **changes)


def _parse_time(raw: str, name: str) -> datetime:
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ValidationError(
            f"{name} is not an ISO 8601 time", code="bad_time"
        ) from None
    if value.tzinfo is None:
        raise ValidationError(f"{name} needs a time zone", code="bad_time")
    return value


def _booking_payload(order: Order) -> dict[str, Any]:
    return {
        "elder_id": order.elder_id,
        "service_code": order.service_code,
        "provider_kind": str(order.provider_kind),
        "region_id": order.region_id,
        "priority": str(order.priority),
        "earliest": order.window.earliest.isoformat(),
        "latest": order.window.latest.isoformat(),
        "duration_min": order.duration_min,
        "lat": order.location.lat,
        "lon": order.location.lon,
        "channel": str(order.channel),
        "notes": order.notes,
        "skills": sorted(order.skills),
    }


def _order_from_booking(event: OrderEvent) -> Order:
    p = event.payload
    return Order(
        order_id=event.order_id,
        elder_id=p["elder_id"],
        service_code=p["service_code"],
        provider_kind=ProviderKind(p["provider_kind"]),
        region_id=p["region_id"],
        priority=Priority(p["priority"]),
        window=TimeWindow(
            _parse_time(p["earliest"], "earliest"), _parse_time(p["latest"], "latest")
        ),
        duration_min=p["duration_min"],
        location=GeoPoint(p["lat"], p["lon"]),
        channel=Channel(p["channel"]),
        created_by=event.actor,
        created_at=event.at,
        notes=p["notes"],
        skills=frozenset(p["skills"]),
        updated_at=event.at,
    )
