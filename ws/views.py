"""What phones and consoles are shown of orders, read from PostgreSQL in batches.

Elder contact details and health notes go only to the provider an order is
assigned to; an offered provider sees the service, the window, the home
location and the order's notes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime

import asyncpg

from db.alerts import Alert, open_alerts
from db.live import LiveState
from db.orders import order_from_row
from db.pool import Connection
from dispatch.lifecycle import OrderStatus
from dispatch.schemas import OrderView
from ws.protocol import (
    AlertMessage,
    AssignedOrder,
    CaregiverState,
    ElderContact,
    PhoneSnapshot,
)

__all__ = [
    "ACTIVE_STATES",
    "alert_message",
    "assigned_order",
    "caregiver_states",
    "open_orders",
    "orders_by_id",
    "phone_orders",
]

#: States in which an assigned order is still on the provider's list.
ACTIVE_STATES = (
    OrderStatus.ACCEPTED,
    OrderStatus.EN_ROUTE,
    OrderStatus.ARRIVED,
    OrderStatus.IN_SERVICE,
)

_BY_ID = """
    select o.*, e.name as elder_name, e.phone as elder_phone,
           e.address as elder_address, e.health_notes as elder_health_notes
    from "order" o join elder e using (elder_id)
    where o.order_id = any($1::uuid[])
"""
_PHONE_ORDERS = """
    select o.*, e.name as elder_name, e.phone as elder_phone,
           e.address as elder_address, e.health_notes as elder_health_notes
    from "order" o join elder e using (elder_id)
    where o.order_id in (
        select order_id from offer where provider_id = $1 and outcome is null
    ) and o.status = 'offered' and o.offer_provider_id = $1
    union all
    select o.*, e.name as elder_name, e.phone as elder_phone,
           e.address as elder_address, e.health_notes as elder_health_notes
    from "order" o join elder e using (elder_id)
    where o.provider_id = $1 and o.status = any($2::text[])
    order by earliest
"""
_MAX_OPEN_ORDERS = 5000


async def orders_by_id(
    conn: Connection, order_ids: Iterable[str]
) -> dict[str, asyncpg.Record]:
    """Orders with their elder's contact, by order id, in one query."""
    keys = sorted({uuid.UUID(order_id) for order_id in order_ids})
    if not keys:
        return {}
    rows = await conn.fetch(_BY_ID, keys)
    return {str(row["order_id"]): row for row in rows}


def assigned_order(row: asyncpg.Record, *, contact: bool) -> AssignedOrder:
    """The provider's view of an order; ``contact`` only for its assignee."""
    return AssignedOrder(
        order_id=str(row["order_id"]),
        version=row["version"],
        status=row["status"],
        service_code=row["service_code"],
        priority=row["priority"],
        earliest=row["earliest"],
        latest=row["latest"],
        duration_min=row["duration_min"],
        lat=row["lat"],
        lon=row["lon"],
        notes=row["notes"],
        offer_expires_at=row["offer_expires_at"],
        elder=ElderContact(
            elder_id=row["elder_id"],
            name=row["elder_name"],
            phone=row["elder_phone"],
            address=row["elder_address"],
            health_notes=row["elder_health_notes"],
        )
        if contact
        else None,
    )


async def phone_orders(conn: Connection, provider_id: str) -> PhoneSnapshot:
    """A provider's open offers and active orders (without the plan)."""
    rows = await conn.fetch(
        _PHONE_ORDERS,
        provider_id,
        [str(s) for s in ACTIVE_STATES],
    )
    offers = [
        assigned_order(r, contact=False) for r in rows if r["status"] == "offered"
    ]
    orders = [assigned_order(r, contact=True) for r in rows if r["status"] != "offered"]
    return PhoneSnapshot(offers=offers, orders=orders)


async def open_orders(conn: Connection) -> list[OrderView]:
    """Orders still open, newest first, for the console."""
    rows = await conn.fetch(
        """
        select * from "order"
        where status not in ('closed', 'cancelled', 'completed', 'no_show')
        order by created_at desc limit $1
        """,
        _MAX_OPEN_ORDERS,
    )
    return [OrderView.of(order_from_row(row)) for row in rows]


def alert_message(alert: Alert) -> AlertMessage:
    """The console message of an alert."""
    return AlertMessage(
        id=f"a{alert.alert_id}",
        alert_id=alert.alert_id,
        kind=str(alert.kind),
        severity=str(alert.severity),
        message=alert.message,
        at=alert.at,
        order_id=alert.order_id,
        caregiver_id=alert.caregiver_id,
    )


async def console_alerts(conn: Connection) -> list[AlertMessage]:
    """Unacknowledged alerts for the console snapshot."""
    return [alert_message(a) for a in await open_alerts(conn)]


async def caregiver_states(
    live: LiveState, caregiver_ids: Sequence[str], now: datetime
) -> list[CaregiverState]:
    """Present caregivers among ``caregiver_ids`` with location and duty."""
    located = await live.locations(caregiver_ids, now)
    duties = await live.duties(list(located))
    return [
        CaregiverState(
            caregiver_id=cid,
            lat=point.lat,
            lon=point.lon,
            duty=str(duties[cid]) if cid in duties else None,
        )
        for cid, point in located.items()
    ]
