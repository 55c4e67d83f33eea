"""What the dispatcher reads: shifts, open orders and passed deadlines.

Deadlines are rows, not timers: an open offer carries ``expires_at``, an
emergency's escalation falls due a fixed time after ``created_at``, and an
order whose window has closed is overdue. A dispatcher that restarts finds
every passed deadline with these queries and acts on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from db.orders import order_from_row
from db.pool import Connection
from dispatch.domain import GeoPoint
from dispatch.lifecycle import Order

__all__ = [
    "CaregiverOnShift",
    "DueOffer",
    "ElderPreferences",
    "VendorRow",
    "active_vendors",
    "caregivers_on_shift",
    "due_offers",
    "elder_preferences",
    "fetch_orders",
    "open_orders",
    "overdue_orders",
    "service_lateness",
]

_OPEN = ("booked", "offered", "accepted", "en_route", "arrived", "in_service")


@dataclass(frozen=True, slots=True)
class CaregiverOnShift:
    """A caregiver with the shift that covers a moment."""

    caregiver_id: str
    region_id: str
    skills: frozenset[str]
    max_visits: int
    shift_start: datetime
    shift_end: datetime
    start: GeoPoint
    end: GeoPoint


@dataclass(frozen=True, slots=True)
class DueOffer:
    """An open offer whose expiry has passed."""

    order_id: str
    provider_id: str
    version: int


async def caregivers_on_shift(
    conn: Connection, at: datetime, until: datetime, region_ids: Sequence[str] | None
) -> list[CaregiverOnShift]:
    """Active caregivers whose shift overlaps ``[at, until]``.

    A caregiver with several such shifts appears once, with the earliest.
    """
    rows = await conn.fetch(
        """
        select distinct on (c.caregiver_id)
            c.caregiver_id, c.region_id, c.skills, c.max_visits_per_shift,
            s.starts_at, s.ends_at, s.start_lat, s.start_lon, s.end_lat, s.end_lon
        from caregiver c join shift s using (caregiver_id)
        where c.active and s.ends_at > $1 and s.starts_at < $2
          and ($3::text[] is null or c.region_id = any($3))
        order by c.caregiver_id, s.starts_at
        """,
        at,
        until,
        list(region_ids) if region_ids is not None else None,
    )
    return [
        CaregiverOnShift(
            caregiver_id=r["caregiver_id"],
            region_id=r["region_id"],
            skills=frozenset(r["skills"]),
            max_visits=r["max_visits_per_shift"],
            shift_start=r["starts_at"],
            shift_end=r["ends_at"],
            start=GeoPoint(r["start_lat"], r["start_lon"]),
            end=GeoPoint(r["end_lat"], r["end_lon"]),
        )
        for r in rows
    ]


async def open_orders(
    conn: Connection, region_ids: Sequence[str] | None
) -> list[Order]:
    """Orders the dispatcher must still act on or plan around."""
    rows = await conn.fetch(
        'select * from "order" where status = any($1::text[])'
        " and ($2::text[] is null or region_id = any($2))",
        list(_OPEN),
        list(region_ids) if region_ids is not None else None,
    )
    return [order_from_row(r) for r in rows]


async def fetch_orders(conn: Connection, order_ids: Sequence[str]) -> list[Order]:
    """The orders with these ids, as committed (missing ids are skipped)."""
    rows = await conn.fetch(
        'select * from "order" where order_id = any($1::uuid[])', list(order_ids)
    )
    return [order_from_row(r) for r in rows]


async def due_offers(conn: Connection, now: datetime) -> list[DueOffer]:
    """Open offers whose expiry is at or before ``now``."""
    rows = await conn.fetch(
        """
        select f.order_id, f.provider_id, o.version
        from offer f join "order" o using (order_id)
        where f.outcome is null and f.expires_at <= $1
        order by f.expires_at
        limit 500
        """,
        now,
    )
    return [DueOffer(str(r["order_id"]), r["provider_id"], r["version"]) for r in rows]


async def overdue_orders(
    conn: Connection, now: datetime, emergency_bound: timedelta
) -> list[tuple[Order, str]]:
    """Unaccepted orders past a deadline, with the reason for each.

    An emergency is overdue ``emergency_bound`` after it was booked; any
    order is overdue once its window's latest start has passed.
    """
    rows = await conn.fetch(
        """
        select * from "order"
        where status in ('booked', 'offered')
          and (latest <= $1 or (priority = 'emergency' and created_at <= $2))
        order by created_at
        limit 500
        """,
        now,
        now - emergency_bound,
    )
    found = []
    for row in rows:
        order = order_from_row(row)
        if order.window.latest <= now:
            reason = "no caregiver could serve it within its time window"
        else:
            reason = "no caregiver accepted the emergency in time"
        found.append((order, reason))
    return found


@dataclass(frozen=True, slots=True)
class ElderPreferences:
    """Continuity of care for one elder: who they prefer, who never."""

    preferred: frozenset[str]
    blocked: frozenset[str]


async def elder_preferences(
    conn: Connection, elder_ids: Sequence[str]
) -> dict[str, ElderPreferences]:
    """Preferred and blocked caregivers of each elder.

    The preferred set holds the elder's chosen caregivers and whoever last
    completed a visit for them (the usual caregiver).
    """
    rows = await conn.fetch(
        """
        select e.elder_id, e.preferred_caregiver_ids, e.blocked_caregiver_ids,
            (select o.provider_id from "order" o
             where o.elder_id = e.elder_id and o.provider_kind = 'caregiver'
               and o.status in ('completed', 'closed')
             order by o.updated_at desc limit 1) as usual
        from elder e where e.elder_id = any($1)
        """,
        list(elder_ids),
    )
    return {
        r["elder_id"]: ElderPreferences(
            preferred=frozenset(r["preferred_caregiver_ids"])
            | ({r["usual"]} if r["usual"] else set()),
            blocked=frozenset(r["blocked_caregiver_ids"]),
        )
        for r in rows
    }


async def service_lateness(conn: Connection) -> dict[str, int]:
    """Tolerated lateness of each service, in minutes."""
    rows = await conn.fetch("select service_code, max_lateness_min from service")
    return {r["service_code"]: r["max_lateness_min"] for r in rows}


@dataclass(frozen=True, slots=True)
class VendorRow:
    """A vendor with what matching needs, and its open orders now."""

    vendor_id: str
    service_codes: frozenset[str]
    coverage_region_ids: frozenset[str]
    location: GeoPoint
    opening_hours: dict[str, list[list[str]]]
    capacity: int
    merit: float
    open_orders: int


async def active_vendors(conn: Connection) -> list[VendorRow]:
    """Every active vendor with its count of open orders."""
    rows = await conn.fetch(
        """
        select v.*, (select count(*) from "order" o
                     where o.provider_id = v.vendor_id
                       and o.status in ('accepted', 'en_route', 'arrived',
                                        'in_service')) as open_orders
        from vendor v where v.active
        """
    )
    return [
        VendorRow(
            vendor_id=r["vendor_id"],
            service_codes=frozenset(r["service_codes"]),
            coverage_region_ids=frozenset(r["coverage_region_ids"]),
            location=GeoPoint(r["lat"], r["lon"]),
            opening_hours=r["opening_hours"],
            capacity=r["open_order_capacity"],
            merit=r["merit_score"],
            open_orders=r["open_orders"],
        )
        for r in rows
    ]
