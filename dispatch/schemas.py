"""Payload schemas of the HTTP API, version 1.

These structs are the public contract of ``/v1``: requests are decoded and
validated by them (unknown fields are refused), responses are encoded from
them, and the OpenAPI document is generated from them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, TypeVar

import msgspec

from dispatch.domain import Priority
from dispatch.errors import ValidationError
from dispatch.lifecycle import Order, OrderEvent

__all__ = [
    "EventView",
    "OrderCreate",
    "OrderView",
    "Reason",
    "decode",
]

_T = TypeVar("_T")
AwareTime = Annotated[datetime, msgspec.Meta(tz=True)]
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class OrderCreate(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Body of ``POST /v1/orders``."""

    elder_id: Id
    service_code: Id
    earliest: AwareTime
    latest: AwareTime
    priority: Priority = Priority.ROUTINE
    notes: str = ""
    duration_min: Annotated[int, msgspec.Meta(ge=1, le=1440)] | None = None


class Reason(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Body of actions that need a reason, such as cancel."""

    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
    version: int | None = None


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
