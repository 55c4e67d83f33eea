"""Read models of the API: order lists, elder search, directory, reports.

Everything here reads; the only write is :func:`audit`, which records a
read of personal data. Visibility is decided by the caller and passed in as
plain filters, so the SQL stays the one place that says what a list holds.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import asyncpg

from db.orders import order_from_row
from db.pool import Connection
from dispatch.directory import KeyPopulation
from dispatch.domain import Actor, ActorRole
from dispatch.errors import ValidationError
from dispatch.lifecycle import Order

__all__ = [
    "DemandCounts",
    "OrderFilter",
    "audit",
    "caregivers",
    "categories_of",
    "demand_counts",
    "device_alarms",
    "elder",
    "latest_offer",
    "list_orders",
    "regions",
    "report",
    "search_elders",
    "serves_elder",
    "services",
    "vendor",
    "vendors",
]

#: Statuses in which a provider is at work for an elder and needs the
#: elder's contact details and health notes.
SERVING_STATES = ("accepted", "en_route", "arrived", "in_service")


@dataclass(frozen=True, slots=True)
class OrderFilter:
    """What a list of orders holds.

    ``seen_by`` narrows the list to what that actor may see: its own
    bookings, and for providers the orders offered or assigned to it;
    ``None`` means every order (staff).
    """

    statuses: Sequence[str] = ()
    region_id: str | None = None
    elder_id: str | None = None
    priority: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    seen_by: Actor | None = None


def _cursor_of(order: Order) -> str:
    raw = f"{order.created_at.isoformat()}|{order.order_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _parse_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, _, order_id = raw.partition("|")
        parsed = datetime.fromisoformat(at)
        if parsed.tzinfo is None:
            raise ValueError("naive")
        return parsed, uuid.UUID(order_id)
    except (ValueError, UnicodeDecodeError):
        raise ValidationError(
            "cursor is not one this API gave", code="bad_cursor"
        ) from None


async def list_orders(
    conn: Connection, where: OrderFilter, *, limit: int, cursor: str | None = None
) -> tuple[list[Order], str | None]:
    """A page of orders, newest first, and the cursor of the next page.

    Raises:
        ValidationError: ``bad_cursor`` for a cursor this API did not give.
    """
    clauses: list[str] = []
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if where.statuses:
        clauses.append(f"status = any({arg(list(where.statuses))})")
    if where.region_id is not None:
        clauses.append(f"region_id = {arg(where.region_id)}")
    if where.elder_id is not None:
        clauses.append(f"elder_id = {arg(where.elder_id)}")
    if where.priority is not None:
        clauses.append(f"priority = {arg(where.priority)}")
    if where.since is not None:
        clauses.append(f"created_at >= {arg(where.since)}")
    if where.until is not None:
        clauses.append(f"created_at < {arg(where.until)}")
    actor = where.seen_by
    if actor is not None:
        own = (
            f"(created_by_role = {arg(str(actor.role))}"
            f" and created_by_id = {arg(actor.actor_id)})"
        )
        if actor.role in (ActorRole.CAREGIVER, ActorRole.VENDOR):
            kind = "caregiver" if actor.role is ActorRole.CAREGIVER else "vendor"
            ident = arg(actor.actor_id)
            own += (
                f" or (provider_kind = {arg(kind)}"
                f" and (provider_id = {ident} or offer_provider_id = {ident}))"
            )
        clauses.append(f"({own})")
    if cursor:
        at, order_id = _parse_cursor(cursor)
        clauses.append(f"(created_at, order_id) < ({arg(at)}, {arg(order_id)})")
    sql = 'select * from "order"'
    if clauses:
        sql += " where " + " and ".join(clauses)
    sql += f" order by created_at desc, order_id desc limit {arg(limit + 1)}"
    rows = await conn.fetch(sql, *args)
    orders = [order_from_row(row) for row in rows[:limit]]
    following = _cursor_of(orders[-1]) if len(rows) > limit else None
    return orders, following


async def latest_offer(conn: Connection, order_id: str) -> asyncpg.Record | None:
    """The latest ``offer`` event of an order, or ``None``."""
    return await conn.fetchrow(
        "select at, actor_role, actor_id, payload from order_event"
        " where order_id = $1 and trigger = 'offer' order by seq desc limit 1",
        uuid.UUID(order_id),
    )


# Elders


async def search_elders(
    conn: Connection, *, phone: str | None, name: str | None, limit: int
) -> list[asyncpg.Record]:
    """Elders whose phone ends with ``phone`` or whose name starts with ``name``.

    Raises:
        ValidationError: ``missing_field`` when neither is given.
    """
    if not phone and not name:
        raise ValidationError("search by phone or by name", code="missing_field")
    clauses: list[str] = []
    args: list[Any] = []
    if phone:
        digits = "".join(ch for ch in phone if ch.isdigit())
        if len(digits) < 3:
            raise ValidationError("give at least 3 digits of the phone", code="invalid")
        # a suffix is a prefix of the reversed number (index in 0005)
        args.append(digits[::-1] + "%")
        clauses.append(f"reverse(phone) like ${len(args)}")
    if name:
        escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        args.append(escaped + "%")
        clauses.append(f"name like ${len(args)}")
    args.append(limit)
    return await conn.fetch(
        # constant fragments only; every value is a bind parameter
        "select elder_id, region_id, name, phone, address, care_level from elder"  # noqa: S608
        f" where {' and '.join(clauses)} order by elder_id limit ${len(args)}",
        *args,
    )


async def elder(conn: Connection, elder_id: str) -> asyncpg.Record | None:
    """One elder's row, or ``None``."""
    return await conn.fetchrow("select * from elder where elder_id = $1", elder_id)


def categories_of(row: asyncpg.Record) -> list[str]:
    """The key-population categories an elder's row has."""
    return [str(c) for c in KeyPopulation if row[str(c)]]


async def serves_elder(conn: Connection, actor: Actor, elder_id: str) -> bool:
    """Whether ``actor`` is a provider at work on an order of the elder."""
    if actor.role not in (ActorRole.CAREGIVER, ActorRole.VENDOR):
        return False
    kind = "caregiver" if actor.role is ActorRole.CAREGIVER else "vendor"
    found = await conn.fetchval(
        'select exists (select 1 from "order" where elder_id = $1'
        " and provider_kind = $2 and provider_id = $3 and status = any($4))",
        elder_id,
        kind,
        actor.actor_id,
        list(SERVING_STATES),
    )
    return bool(found)


async def audit(
    conn: Connection,
    actor: Actor,
    action: str,
    subject_kind: str,
    subject_ids: Sequence[str],
    detail: dict[str, Any] | None = None,
) -> None:
    """Record that ``actor`` read personal data of each subject."""
    if not subject_ids:
        return
    await conn.executemany(
        "insert into audit_log (actor_role, actor_id, action, subject_kind,"
        " subject_id, detail) values ($1, $2, $3, $4, $5, $6)",
        [
            (str(actor.role), actor.actor_id, action, subject_kind, s, detail or {})
            for s in subject_ids
        ],
    )


# Directory


async def caregivers(
    conn: Connection,
    *,
    region_id: str | None,
    limit: int,
    offset: int,
    caregiver_id: str | None = None,
) -> list[asyncpg.Record]:
    """Caregivers by id (or just one), with how many open orders each holds."""
    return await conn.fetch(
        """
        select c.caregiver_id, c.region_id, c.name, c.skills, c.active,
            (select count(*) from "order" o where o.provider_kind = 'caregiver'
               and o.provider_id = c.caregiver_id
               and o.status = any($4)) as open_orders
        from caregiver c
        where ($1::text is null or c.region_id = $1)
          and ($5::text is null or c.caregiver_id = $5)
        order by c.caregiver_id limit $2 offset $3
        """,
        region_id,
        limit,
        offset,
        list(SERVING_STATES),
        caregiver_id,
    )


async def vendors(
    conn: Connection,
    *,
    region_id: str | None,
    limit: int,
    offset: int,
    vendor_id: str | None = None,
) -> list[asyncpg.Record]:
    """Vendors by id, optionally those covering a region, or just one."""
    return await conn.fetch(
        "select * from vendor where ($1::text is null or $1 = any(coverage_region_ids))"
        " and ($4::text is null or vendor_id = $4)"
        " order by vendor_id limit $2 offset $3",
        region_id,
        limit,
        offset,
        vendor_id,
    )


async def vendor(conn: Connection, vendor_id: str) -> asyncpg.Record | None:
    """One vendor's row, or ``None``."""
    return await conn.fetchrow("select * from vendor where vendor_id = $1", vendor_id)


async def services(conn: Connection) -> list[asyncpg.Record]:
    """The whole catalogue by code."""
    return await conn.fetch("select * from service order by service_code")


async def regions(conn: Connection, *, limit: int, offset: int) -> list[asyncpg.Record]:
    """Regions by id."""
    return await conn.fetch(
        "select * from region order by region_id limit $1 offset $2", limit, offset
    )


async def device_alarms(
    conn: Connection, *, region_id: str | None, limit: int, offset: int
) -> list[asyncpg.Record]:
    """Orders booked by devices, newest first."""
    return await conn.fetch(
        "select * from \"order\" where channel = 'device'"
        " and ($1::text is null or region_id = $1)"
        " order by created_at desc, order_id desc limit $2 offset $3",
        region_id,
        limit,
        offset,
    )


# Reports


async def report(
    conn: Connection, start: datetime, end: datetime, region_id: str | None
) -> dict[str, Any]:
    """Figures of the orders booked in ``[start, end)``; see ``ReportView``."""
    by_status = await conn.fetch(
        'select status, count(*) as n from "order" where created_at >= $1'
        " and created_at < $2 and ($3::text is null or region_id = $3)"
        " group by status",
        start,
        end,
        region_id,
    )
    timing = await conn.fetchrow(
        """
        with booked as (
            select o.order_id, o.priority, o.created_at, o.latest,
                s.max_lateness_min
            from "order" o join service s using (service_code)
            where o.created_at >= $1 and o.created_at < $2
              and ($3::text is null or o.region_id = $3)
        ), reached as (
            select b.*, (select min(e.at) from order_event e
                         where e.order_id = b.order_id
                           and e.trigger in ('check_in', 'deliver')) as arrived_at,
                        (select min(e.at) from order_event e
                         where e.order_id = b.order_id
                           and e.trigger = 'accept') as accepted_at
            from booked b
        )
        select
            count(arrived_at) as arrived,
            count(*) filter (where arrived_at <= latest
                + make_interval(mins => max_lateness_min)) as on_time,
            count(*) filter (where priority = 'emergency') as emergencies,
            percentile_cont(0.5) within group (order by extract(epoch from
                accepted_at - created_at)) filter (where priority = 'emergency')
                as accept_p50,
            percentile_cont(0.9) within group (order by extract(epoch from
                accepted_at - created_at)) filter (where priority = 'emergency')
                as accept_p90,
            percentile_cont(0.5) within group (order by extract(epoch from
                arrived_at - created_at)) filter (where priority = 'emergency')
                as arrive_p50,
            percentile_cont(0.9) within group (order by extract(epoch from
                arrived_at - created_at)) filter (where priority = 'emergency')
                as arrive_p90
        from reached
        """,
        start,
        end,
        region_id,
    )
    assert timing is not None
    return {"by_status": {r["status"]: r["n"] for r in by_status}, **dict(timing)}


@dataclass(frozen=True, slots=True)
class DemandCounts:
    """Raw counts of one community and ISO week, before suppression."""

    region_id: str
    week: date
    elders: int
    elders_by_category: dict[str, int]
    orders_by_family: dict[str, int]


async def demand_counts(
    conn: Connection,
    region_ids: Sequence[str],
    first_week: date,
    weeks: int,
    utc_offset: timedelta,
) -> list[DemandCounts]:
    """Counts per community and week, every pair present (zeros included).

    Weeks start on Monday in the city's local time (``utc_offset``).
    """
    start = datetime.combine(first_week, datetime.min.time())
    flags = [str(c) for c in KeyPopulation]
    # an interval argument keeps the ISO sign (east of UTC is positive); the
    # queries below join constant fragments only, every value is bound
    local_week = "date_trunc('week', o.created_at at time zone $1::interval)::date"
    window = (
        " where o.region_id = any($2)"
        " and o.created_at at time zone $1::interval >= $3"
        " and o.created_at at time zone $1::interval < $3 + make_interval(weeks => $4)"
    )
    families = await conn.fetch(
        f"select o.region_id, {local_week} as week, s.family, count(*) as n"  # noqa: S608
        ' from "order" o join service s using (service_code)'
        + window
        + " group by 1, 2, 3",
        utc_offset,
        list(region_ids),
        start,
        weeks,
    )
    category_columns = ", ".join(
        f"count(distinct o.elder_id) filter (where e.{f}) as {f}" for f in flags
    )
    elders = await conn.fetch(
        f"select o.region_id, {local_week} as week,"  # noqa: S608
        f" count(distinct o.elder_id) as elders, {category_columns}"
        ' from "order" o join elder e using (elder_id)' + window + " group by 1, 2",
        utc_offset,
        list(region_ids),
        start,
        weeks,
    )
    family_names = sorted(
        r["family"] for r in await conn.fetch("select distinct family from service")
    )
    cells: dict[tuple[str, date], DemandCounts] = {}
    for region_id in sorted(region_ids):
        for i in range(weeks):
            week = first_week + timedelta(weeks=i)
            cells[region_id, week] = DemandCounts(
                region_id,
                week,
                0,
                dict.fromkeys(flags, 0),
                dict.fromkeys(family_names, 0),
            )
    for row in families:
        cell = cells.get((row["region_id"], row["week"]))
        if cell is not None:
            cell.orders_by_family[row["family"]] = row["n"]
    for row in elders:
        cell = cells.get((row["region_id"], row["week"]))
        if cell is not None:
            cells[row["region_id"], row["week"]] = DemandCounts(
                cell.region_id,
                cell.week,
                row["elders"],
                {f: row[f] for f in flags},
                cell.orders_by_family,
            )
    return list(cells.values())
