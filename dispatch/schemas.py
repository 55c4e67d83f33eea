"""Payload schemas of the HTTP API, version 1.

These structs are the public contract of ``/v1``: requests are decoded and
validated by them (unknown fields are refused), query strings are converted
by them, responses are encoded from them, and the OpenAPI document
(:mod:`dispatch.openapi`) is generated from them. Times are ISO 8601 with a
time zone; durations carry their unit in the name.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Annotated, Any, Literal, TypeVar

import msgspec

from dispatch.domain import Priority
from dispatch.errors import ValidationError
from dispatch.lifecycle import Order, OrderEvent, OrderStatus

__all__ = [
    "AlarmView",
    "AlertView",
    "CaregiverView",
    "Close",
    "DemandCell",
    "DemandQuery",
    "DemandRow",
    "DemandView",
    "ElderContact",
    "ElderQuery",
    "ElderSummary",
    "ElderView",
    "ErrorBody",
    "EventView",
    "Explanation",
    "ListQuery",
    "OrderCreate",
    "OrderPage",
    "OrderQuery",
    "OrderView",
    "Reason",
    "Reassign",
    "RegionView",
    "ReportQuery",
    "ReportView",
    "ServiceView",
    "TokenIssued",
    "TokenRequest",
    "VendorView",
    "decode",
    "decode_query",
]

_T = TypeVar("_T")
AwareTime = Annotated[datetime, msgspec.Meta(tz=True)]
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Limit = Annotated[int, msgspec.Meta(ge=1, le=500)]
Text = Annotated[str, msgspec.Meta(max_length=2000)]


class _Body(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A request body: unknown fields are refused."""


class _Query(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A query string: unknown parameters are refused."""


class ErrorBody(msgspec.Struct, frozen=True):
    """Every error response: a stable code, a message and safe details."""

    code: str
    message: str
    details: dict[str, Any] | None = None


# Orders


class OrderCreate(_Body, frozen=True):
    """Body of ``POST /v1/orders``."""

    elder_id: Id
    service_code: Id
    earliest: AwareTime
    latest: AwareTime
    priority: Priority = Priority.ROUTINE
    notes: str = ""
    duration_min: Annotated[int, msgspec.Meta(ge=1, le=1440)] | None = None


class Reason(_Body, frozen=True):
    """Body of actions that need a reason, such as cancel."""

    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
    version: int | None = None


class Reassign(_Body, frozen=True):
    """Body of ``POST /v1/orders/{order_id}/reassign``.

    Without ``caregiver_id`` the order goes back to the dispatcher.
    """

    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
    caregiver_id: Id | None = None


class Close(_Body, frozen=True):
    """Body of ``POST /v1/orders/{order_id}/close``: the operator's review.

    Attributes:
        record_ok: Whether the service record was reviewed and found right.
        rating: The elder's rating, 1 to 5, when one was given.
        follow_up: What happens next (a new visit, a call back), if anything.
        settlement_cents: The amount settled, in cents of CNY.
        review_notes: The operator's notes on the service record.
    """

    record_ok: bool
    settlement_cents: Annotated[int, msgspec.Meta(ge=0, le=100_000_000)]
    rating: Annotated[int, msgspec.Meta(ge=1, le=5)] | None = None
    follow_up: Text = ""
    review_notes: Text = ""
    version: int | None = None


class OrderQuery(_Query, frozen=True):
    """Filters of ``GET /v1/orders``; ``since``/``until`` bound ``created_at``.

    Pages are ordered newest first; pass the ``next_cursor`` of a page as
    ``cursor`` to get the next one.
    """

    status: list[OrderStatus] | None = None
    region_id: Id | None = None
    elder_id: Id | None = None
    priority: Priority | None = None
    since: AwareTime | None = None
    until: AwareTime | None = None
    limit: Limit = 50
    cursor: Annotated[str, msgspec.Meta(max_length=200)] | None = None


class EventView(msgspec.Struct, frozen=True):
    """One event of an order's timeline."""

    seq: int
    trigger: str
    from_status: str | None
    to_status: str
    actor_role: str
    actor_id: str
    at: datetime
    reason: str
    payload: dict[str, Any]

    @classmethod
    def of(cls, event: OrderEvent) -> EventView:
        """The view of one event."""
        return cls(
            seq=event.seq,
            trigger=str(event.trigger),
            from_status=str(event.from_status) if event.from_status else None,
            to_status=str(event.to_status),
            actor_role=str(event.actor.role),
            actor_id=event.actor.actor_id,
            at=event.at,
            reason=event.reason,
            payload=dict(event.payload),
        )


class OrderView(msgspec.Struct, frozen=True):
    """An order as the API shows it."""

    order_id: str
    elder_id: str
    service_code: str
    provider_kind: str
    region_id: str
    priority: str
    status: str
    version: int
    earliest: datetime
    latest: datetime
    duration_min: int
    lat: float
    lon: float
    channel: str
    notes: str
    provider_id: str | None
    offer_provider_id: str | None
    offer_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime | None

    @classmethod
    def of(cls, order: Order) -> OrderView:
        """The view of one order."""
        return cls(
            order_id=order.order_id,
            elder_id=order.elder_id,
            service_code=order.service_code,
            provider_kind=str(order.provider_kind),
            region_id=order.region_id,
            priority=str(order.priority),
            status=str(order.status),
            version=order.version,
            earliest=order.window.earliest,
            latest=order.window.latest,
            duration_min=order.duration_min,
            lat=order.location.lat,
            lon=order.location.lon,
            channel=str(order.channel),
            notes=order.notes,
            provider_id=order.provider_id,
            offer_provider_id=order.offer_provider_id,
            offer_expires_at=order.offer_expires_at,
            created_at=order.created_at,
            updated_at=order.updated_at,
        )


class OrderPage(msgspec.Struct, frozen=True):
    """One page of orders, newest first; ``next_cursor`` is null at the end."""

    orders: list[OrderView]
    next_cursor: str | None


class Explanation(msgspec.Struct, frozen=True):
    """Why the order's current or last offer went to its provider.

    ``explanation`` is what the dispatcher recorded with the offer (travel
    time, skills matched, continuity, load, alternatives and why they lost);
    everything is null when the order was never offered.
    """

    order_id: str
    provider_id: str | None
    offered_at: datetime | None
    offered_by: str | None
    explanation: dict[str, Any] | None


# Elders


class ElderQuery(_Query, frozen=True):
    """Search of ``GET /v1/elders``: by phone (exact digits) or name prefix."""

    phone: Annotated[str, msgspec.Meta(min_length=3, max_length=32)] | None = None
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=50)] = 20


class ElderContact(msgspec.Struct, frozen=True):
    """An elder's personal data: only for those who serve them."""

    name: str
    phone: str
    address: str
    health_notes: str


class ElderSummary(msgspec.Struct, frozen=True):
    """A search hit for hotline intake."""

    elder_id: str
    region_id: str
    name: str
    phone: str
    address: str
    care_level: int


class ElderView(msgspec.Struct, frozen=True):
    """One elder; ``contact`` is null for those who do not serve them."""

    elder_id: str
    region_id: str
    lat: float
    lon: float
    care_level: int
    categories: list[str]
    preferred_caregiver_ids: list[str]
    contact: ElderContact | None


# Directory


class ListQuery(_Query, frozen=True):
    """Paging of the directory lists."""

    region_id: Id | None = None
    limit: Limit = 100
    offset: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 0


class CaregiverView(msgspec.Struct, frozen=True):
    """A caregiver with their live state (null when not reporting)."""

    caregiver_id: str
    region_id: str
    name: str
    skills: list[str]
    active: bool
    duty: str | None
    lat: float | None
    lon: float | None
    open_orders: int


class VendorView(msgspec.Struct, frozen=True):
    """A vendor and where it serves."""

    vendor_id: str
    name: str
    category: str
    service_codes: list[str]
    coverage_region_ids: list[str]
    lat: float
    lon: float
    open_order_capacity: int
    merit_score: float
    active: bool


class ServiceView(msgspec.Struct, frozen=True):
    """An entry of the catalogue."""

    service_code: str
    family: str
    name_zh: str
    name_en: str
    skills: list[str]
    duration_min: int
    fulfilled_by: str
    price_cents: int
    max_lateness_min: int


class RegionView(msgspec.Struct, frozen=True):
    """A community."""

    region_id: str
    name_zh: str
    name_en: str
    district_code: str
    center_lat: float
    center_lon: float


class AlarmView(msgspec.Struct, frozen=True):
    """A device alarm: an order a smart device booked, and where it stands."""

    order_id: str
    device_id: str
    elder_id: str
    region_id: str
    service_code: str
    priority: str
    status: str
    raised_at: datetime
    lat: float
    lon: float


class AlertView(msgspec.Struct, frozen=True):
    """An alert for operators; the message holds ids only."""

    alert_id: int
    kind: str
    severity: str
    message: str
    at: datetime
    order_id: str | None
    caregiver_id: str | None
    region_id: str
    acknowledged_at: datetime | None
    acknowledged_by: str | None


# Tokens


class TokenRequest(_Body, frozen=True):
    """Body of ``POST /v1/tokens``: who the token speaks for, for how long."""

    role: Literal["caregiver", "vendor", "device", "partner"]
    actor_id: Id
    ttl_hours: Annotated[float, msgspec.Meta(gt=0, le=24 * 366)] = 24.0


class TokenIssued(msgspec.Struct, frozen=True):
    """A fresh token; shown once, never stored."""

    token: str
    role: str
    actor_id: str
    expires_at: datetime


# Reports


class ReportQuery(_Query, frozen=True):
    """The day (local to the city) and optional region of a report."""

    day: date | None = None
    region_id: Id | None = None


class ReportView(msgspec.Struct, frozen=True):
    """Key figures of one day.

    Attributes:
        orders_by_status: Orders booked that day, by where they stand now.
        on_time_rate: Share of visits checked in (or delivered) no later
            than the window's latest start plus the service's tolerance;
            null when none arrived.
        emergency_accept_s: Median and 90th percentile seconds from booking
            to acceptance of emergencies; null when none.
        emergency_arrive_s: The same from booking to check-in.
        generated_at: The node's time when the report was made (consoles
            judge lateness by it, not by their own clock).
    """

    day: date
    region_id: str | None
    orders_by_status: dict[str, int]
    arrived: int
    on_time: int
    on_time_rate: float | None
    emergencies: int
    emergency_accept_s: dict[str, float] | None
    emergency_arrive_s: dict[str, float] | None
    generated_at: datetime


class DemandQuery(_Query, frozen=True):
    """The vendor and the weeks of a demand view.

    ``weeks`` counts back from the ISO week holding ``until`` (today when
    absent). A vendor may only ask about itself.
    """

    vendor_id: Id | None = None
    weeks: Annotated[int, msgspec.Meta(ge=1, le=26)] = 4
    until: date | None = None


class DemandCell(msgspec.Struct, frozen=True):
    """One count; ``count`` is null where it is suppressed."""

    key: str
    count: int | None


class DemandRow(msgspec.Struct, frozen=True):
    """One community and week: elders by category, orders by service family.

    ``elders`` counts distinct elders with orders that week (null when
    suppressed); an elder may be in several categories, so categories do
    not add up to it. ``orders`` is the sum of ``orders_by_family`` (null
    when suppressed).
    """

    region_id: str
    week: str
    elders: int | None
    elders_by_category: list[DemandCell]
    orders: int | None
    orders_by_family: list[DemandCell]


class DemandView(msgspec.Struct, frozen=True):
    """De-identified demand in the communities a vendor covers."""

    vendor_id: str
    suppressed_below: int
    rows: list[DemandRow]


def decode(body: bytes, schema: type[_T]) -> _T:
    """Decode and validate a JSON body.

    Raises:
        ValidationError: ``bad_json`` for syntax, ``invalid`` for a schema
            violation, naming the path of the offending field.
    """
    try:
        return msgspec.json.decode(body, type=schema)
    except msgspec.ValidationError as exc:
        raise ValidationError(str(exc), code="invalid") from None
    except msgspec.DecodeError as exc:
        raise ValidationError(
            f"body is not valid JSON: {exc}", code="bad_json"
        ) from None


def decode_query(query: Mapping[str, str], schema: type[_T], *, lists: Any = ()) -> _T:
    """Convert a query string into ``schema``, strings into numbers and times.

    Args:
        query: The request's query (a multidict: repeated keys allowed).
        schema: The target struct.
        lists: Parameters that may repeat and are converted to lists; a
            single value may also hold comma-separated items.

    Raises:
        ValidationError: ``invalid`` for an unknown, repeated or bad value.
    """
    raw: dict[str, Any] = {}
    for key in {str(k) for k in query}:
        values: list[str] = query.getall(key)  # type: ignore[attr-defined]  # multidict
        if key in lists:
            raw[key] = [item for v in values for item in v.split(",") if item]
        elif len(values) > 1:
            raise ValidationError(f"{key} is given more than once", code="invalid")
        else:
            raw[key] = values[0]
    try:
        return msgspec.convert(raw, type=schema, strict=False)
    except msgspec.ValidationError as exc:
        raise ValidationError(str(exc), code="invalid") from None
