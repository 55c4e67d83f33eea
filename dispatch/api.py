"""The ``/v1`` HTTP endpoints for orders.

Who may see an order: operators and admins see every order; a provider
sees the orders offered or assigned to it; whoever booked an order sees it.
Anyone else is told the order does not exist.
"""

from __future__ import annotations

from aiohttp import web

from dispatch.domain import Actor, ActorRole, BookingRequest, Channel, TimeWindow
from dispatch.errors import NotFoundError, ValidationError
from dispatch.http import actor_of, allow, json_response
from dispatch.lifecycle import Order, Trigger
from dispatch.node import NODE
from dispatch.schemas import EventView, OrderCreate, OrderView, Reason, decode

__all__ = ["routes", "visible"]

R = ActorRole

_CHANNEL = {
    R.OPERATOR: Channel.HOTLINE,
    R.ADMIN: Channel.HOTLINE,
    R.PARTNER: Channel.PARTNER,
    R.DEVICE: Channel.DEVICE,
    R.CAREGIVER: Channel.CAREGIVER,
}
_STAFF = frozenset({R.OPERATOR, R.ADMIN})
_EVERY_ROLE = (R.OPERATOR, R.ADMIN, R.CAREGIVER, R.VENDOR, R.PARTNER, R.DEVICE)

routes = web.RouteTableDef()


def visible(order: Order, actor: Actor) -> bool:
    """Whether ``actor`` may see ``order`` at all."""
    return (
        actor.role in _STAFF
        or actor == order.created_by
        or (
            actor.role in (R.CAREGIVER, R.VENDOR)
            and actor.actor_id in (order.provider_id, order.offer_provider_id)
        )
    )


async def _visible_order(request: web.Request) -> Order:
    order_id = request.match_info["order_id"]
    order = await request.app[NODE].orders.get(order_id)
    if not visible(order, actor_of(request)):
        raise NotFoundError("order", order_id)
    return order


@routes.post("/v1/orders")
@allow(R.OPERATOR, R.ADMIN, R.PARTNER, R.DEVICE, R.CAREGIVER)
async def create_order(request: web.Request) -> web.Response:
    """Book an order; idempotent by the ``Idempotency-Key`` header."""
    key = request.headers.get("Idempotency-Key", "")
    if not key:
        raise ValidationError(
            "send an Idempotency-Key header", code="missing_idempotency_key"
        )
    body = decode(await request.read(), OrderCreate)
    actor = actor_of(request)
    booking = await request.app[NODE].orders.create(
        BookingRequest(
            elder_id=body.elder_id,
            service_code=body.service_code,
            window=TimeWindow(body.earliest, body.latest),
            priority=body.priority,
            channel=_CHANNEL[actor.role],
            notes=body.notes,
            duration_min=body.duration_min,
        ),
        actor,
        key,
    )
    response = json_response(OrderView.of(booking.order), 201)
    if not booking.created:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@routes.get("/v1/orders/{order_id}")
@allow(*_EVERY_ROLE)
async def get_order(request: web.Request) -> web.Response:
    """One order as it stands."""
    return json_response(OrderView.of(await _visible_order(request)))


@routes.get("/v1/orders/{order_id}/events")
@allow(*_EVERY_ROLE)
async def get_order_events(request: web.Request) -> web.Response:
    """The order's timeline: every event, oldest first."""
    order = await _visible_order(request)
    events = await request.app[NODE].orders.events(order.order_id)
    return json_response([EventView.of(e) for e in events])


@routes.post("/v1/orders/{order_id}/cancel")
@allow(R.OPERATOR, R.ADMIN, R.PARTNER, R.DEVICE, R.CAREGIVER)
async def cancel_order(request: web.Request) -> web.Response:
    """Cancel an order that has not reached the elder's door."""
    order = await _visible_order(request)
    body = decode(await request.read(), Reason)
    changed, _ = await request.app[NODE].orders.transition(
        order.order_id,
        Trigger.CANCEL,
        actor_of(request),
        expected_version=body.version,
        reason=body.reason,
    )
    return json_response(OrderView.of(changed))
