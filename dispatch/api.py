"""The ``/v1`` HTTP endpoints for orders.

Who may see an order: operators and admins see every order; a provider
sees the orders offered or assigned to it; whoever booked an order sees it.
Anyone else is told the order does not exist.
"""

from __future__ import annotations

from aiohttp import web

from db import queries
from dispatch.domain import Actor, ActorRole, BookingRequest, Channel, TimeWindow
from dispatch.errors import NotFoundError, ValidationError
from dispatch.http import actor_of, allow, json_response
from dispatch.lifecycle import Order, OrderStatus, Trigger
from dispatch.node import NODE
from dispatch.openapi import describe
from dispatch.schemas import (
    Close,
    EventView,
    Explanation,
    OrderCreate,
    OrderPage,
    OrderQuery,
    OrderView,
    Reason,
    Reassign,
    decode,
    decode_query,
)

__all__ = ["STAFF", "routes", "visible"]

R = ActorRole

_CHANNEL = {
    R.OPERATOR: Channel.HOTLINE,
    R.ADMIN: Channel.HOTLINE,
    R.PARTNER: Channel.PARTNER,
    R.DEVICE: Channel.DEVICE,
    R.CAREGIVER: Channel.CAREGIVER,
}
STAFF = frozenset({R.OPERATOR, R.ADMIN})
_STAFF = STAFF
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


_KEY_HEADER = (
    (
        "Idempotency-Key",
        True,
        "one key per booking; a retry with the same key and body returns the"
        " first order",
    ),
)


@routes.post("/v1/orders")
@allow(R.OPERATOR, R.ADMIN, R.PARTNER, R.DEVICE, R.CAREGIVER)
@describe(body=OrderCreate, response=OrderView, status=201, headers=_KEY_HEADER)
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


@routes.get("/v1/orders")
@allow(*_EVERY_ROLE)
@describe(query=OrderQuery, response=OrderPage)
async def list_orders(request: web.Request) -> web.Response:
    """Orders newest first, filtered; each role sees only what it may.

    Staff see every order; providers the orders offered or assigned to
    them; anyone the orders they booked.
    """
    query = decode_query(request.query, OrderQuery, lists=("status",))
    actor = actor_of(request)
    where = queries.OrderFilter(
        statuses=[str(s) for s in query.status or ()],
        region_id=query.region_id,
        elder_id=query.elder_id,
        priority=str(query.priority) if query.priority else None,
        since=query.since,
        until=query.until,
        seen_by=None if actor.role in STAFF else actor,
    )
    async with request.app[NODE].pool.acquire() as conn:
        orders, cursor = await queries.list_orders(
            conn, where, limit=query.limit, cursor=query.cursor
        )
    return json_response(OrderPage([OrderView.of(o) for o in orders], cursor))


@routes.get("/v1/orders/{order_id}")
@allow(*_EVERY_ROLE)
@describe(response=OrderView)
async def get_order(request: web.Request) -> web.Response:
    """One order as it stands."""
    return json_response(OrderView.of(await _visible_order(request)))


@routes.get("/v1/orders/{order_id}/events")
@allow(*_EVERY_ROLE)
@describe(response=list[EventView])
async def get_order_events(request: web.Request) -> web.Response:
    """The order's timeline: every event, oldest first."""
    order = await _visible_order(request)
    events = await request.app[NODE].orders.events(order.order_id)
    return json_response([EventView.of(e) for e in events])


@routes.get("/v1/orders/{order_id}/explanation")
@allow(*_EVERY_ROLE)
@describe(response=Explanation)
async def get_explanation(request: web.Request) -> web.Response:
    """Why the latest offer of the order went to its provider."""
    order = await _visible_order(request)
    async with request.app[NODE].pool.acquire() as conn:
        row = await queries.latest_offer(conn, order.order_id)
    if row is None:
        return json_response(Explanation(order.order_id, None, None, None, None))
    payload = row["payload"]
    explanation = payload.get("explanation")
    return json_response(
        Explanation(
            order_id=order.order_id,
            provider_id=payload.get("provider_id"),
            offered_at=row["at"],
            offered_by=f"{row['actor_role']}:{row['actor_id']}",
            explanation=explanation if isinstance(explanation, dict) else None,
        )
    )


@routes.post("/v1/orders/{order_id}/reassign")
@allow(R.OPERATOR, R.ADMIN)
@describe(body=Reassign, response=OrderView)
async def reassign_order(request: web.Request) -> web.Response:
    """Take the order from its provider; offer it to a caregiver or the dispatcher.

    An escalated order is first put back to booked (redispatch).
    """
    order = await _visible_order(request)
    body = decode(await request.read(), Reassign)
    node = request.app[NODE]
    actor = actor_of(request)
    if body.caregiver_id is not None:
        found = await node.pool.fetchval(
            "select exists (select 1 from caregiver where caregiver_id = $1)",
            body.caregiver_id,
        )
        if not found:
            raise ValidationError(
                f"no caregiver {body.caregiver_id}",
                code="unknown_caregiver",
                field="caregiver_id",
            )
    if order.status is OrderStatus.ESCALATED:
        # Two commits: should the offer below be refused, the order stays
        # booked for the dispatcher, which is where redispatch puts it anyway.
        await node.orders.transition(
            order.order_id, Trigger.REDISPATCH, actor, reason=body.reason
        )
    changed = await node.commands.reassign(
        actor, order.order_id, body.caregiver_id, body.reason, node.clock.now()
    )
    return json_response(OrderView.of(changed))


@routes.post("/v1/orders/{order_id}/close")
@allow(R.OPERATOR, R.ADMIN)
@describe(body=Close, response=OrderView)
async def close_order(request: web.Request) -> web.Response:
    """Close a completed order: record review, rating, follow-up, settlement."""
    order = await _visible_order(request)
    body = decode(await request.read(), Close)
    payload = {
        "record_ok": body.record_ok,
        "rating": body.rating,
        "follow_up": body.follow_up,
        "review_notes": body.review_notes,
        "settlement_cents": body.settlement_cents,
    }
    changed, _ = await request.app[NODE].orders.transition(
        order.order_id,
        Trigger.CLOSE,
        actor_of(request),
        expected_version=body.version,
        payload=payload,
    )
    return json_response(OrderView.of(changed))


@routes.post("/v1/orders/{order_id}/cancel")
@allow(R.OPERATOR, R.ADMIN, R.PARTNER, R.DEVICE, R.CAREGIVER)
@describe(body=Reason, response=OrderView)
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
