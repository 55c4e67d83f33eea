"""Actions of people on orders, in one place for every edge.

The caregiver gateway, the vendor terminals and the HTTP API all turn what
a person asked for into store transitions through :class:`Commands`, so the
rules that go beyond the transition table (the check-in radius, how a
reassignment is made) are written once.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from db.orders import OrderStore
from dispatch.domain import Actor, GeoPoint, distance_m
from dispatch.errors import ValidationError
from dispatch.lifecycle import Order, OrderEvent, OrderStatus, Trigger

__all__ = ["Commands"]


class Commands:
    """What people may do to orders, checked and written.

    Args:
        orders: The order store.
        checkin_radius_m: How far from the elder's home a check-in may be.
        offer_timeout: Expiry of offers made by an operator's reassignment.
    """

    def __init__(
        self,
        orders: OrderStore,
        *,
        checkin_radius_m: float,
        offer_timeout: timedelta = timedelta(seconds=60),
    ) -> None:
        self._orders = orders
        self._radius_m = checkin_radius_m
        self._offer_timeout = offer_timeout

    async def act(
        self,
        actor: Actor,
        order_id: str,
        trigger: Trigger,
        *,
        version: int | None = None,
        reason: str = "",
        payload: Mapping[str, Any] | None = None,
    ) -> tuple[Order, OrderEvent]:
        """Apply a plain transition (accept, decline, depart, start, ...).

        Raises:
            HomecareError: As :meth:`db.orders.OrderStore.transition`.
        """
        return await self._orders.transition(
            order_id,
            trigger,
            actor,
            expected_version=version,
            reason=reason,
            payload=payload,
        )

    async def check_in(
        self,
        actor: Actor,
        order_id: str,
        point: GeoPoint,
        *,
        flagged: bool = False,
        version: int | None = None,
    ) -> tuple[Order, OrderEvent]:
        """Check in at the elder's door (electronic visit verification).

        A check-in farther than the radius from the elder's home is refused
        with ``checkin_too_far``, unless ``flagged``: then it is accepted and
        marked for an operator to review.

        Raises:
            ValidationError: ``checkin_too_far`` as above.
            HomecareError: As :meth:`db.orders.OrderStore.transition`.
        """
        order = await self._orders.get(order_id)
        distance = distance_m(point, order.location)
        outside = distance > self._radius_m
        if outside and not flagged:
            raise ValidationError(
                f"check-in is {distance:.0f} m from the elder's home,"
                f" more than {self._radius_m:.0f} m",
                code="checkin_too_far",
                distance_m=round(distance),
                radius_m=self._radius_m,
            )
        return await self.act(
            actor,
            order_id,
            Trigger.CHECK_IN,
            version=version,
            payload={
                "lat": point.lat,
                "lon": point.lon,
                "distance_m": round(distance),
                "flagged": outside,
            },
        )

    async def reassign(
        self,
        actor: Actor,
        order_id: str,
        caregiver_id: str | None,
        reason: str,
        now: datetime,
    ) -> Order:
        """Take an order from its provider and offer it to another.

        An open offer is withdrawn, an accepted order is given back (before
        arrival only); then, when ``caregiver_id`` is given, it is offered
        to that caregiver at once; otherwise it waits for the dispatcher.
        All of it commits together or not at all.

        Raises:
            ValidationError: ``missing_field`` without a reason.
            HomecareError: As :meth:`db.orders.OrderStore.transition`.
        """
        if not reason.strip():
            raise ValidationError("a reassignment needs a reason", code="missing_field")
        async with self._orders.transaction() as conn:
            order = await self._orders.get_on(conn, order_id, lock=True)
            if order.status is OrderStatus.OFFERED:
                order, _ = await self._orders.transition_on(
                    conn, order_id, Trigger.WITHDRAW, actor, reason=reason
                )
            elif order.status in (OrderStatus.ACCEPTED, OrderStatus.EN_ROUTE):
                order, _ = await self._orders.transition_on(
                    conn, order_id, Trigger.GIVE_BACK, actor, reason=reason
                )
            if caregiver_id is not None:
                order, _ = await self._orders.transition_on(
                    conn,
                    order_id,
                    Trigger.OFFER,
                    actor,
                    reason=reason,
                    payload={
                        "provider_id": caregiver_id,
                        "expires_at": (now + self._offer_timeout).isoformat(),
                        "explanation": {"chosen_by": str(actor), "reason": reason},
                    },
                )
        return order
