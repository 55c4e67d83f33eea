"""Reports for operators and the de-identified demand view for vendors.

The demand view counts, per community and ISO week, distinct elders with
orders by key-population category and orders by service family, in the
communities a vendor covers, with small counts suppressed
(:mod:`dispatch.suppression`). It names no elder and no order; a vendor can
ask only about itself.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from aiohttp import web

from db import queries
from dispatch.api import STAFF
from dispatch.city import CHINA_TZ
from dispatch.domain import ActorRole
from dispatch.errors import NotFoundError, ValidationError
from dispatch.http import actor_of, allow, json_response
from dispatch.node import NODE
from dispatch.openapi import describe
from dispatch.schemas import (
    DemandCell,
    DemandQuery,
    DemandRow,
    DemandView,
    ReportQuery,
    ReportView,
    decode_query,
)
from dispatch.suppression import SMALL_MAX, suppress_additive, suppress_each

__all__ = ["routes"]

R = ActorRole

routes = web.RouteTableDef()


def _today(request: web.Request) -> date:
    return request.app[NODE].clock.now().astimezone(CHINA_TZ).date()


def _spread(p50: float | None, p90: float | None) -> dict[str, float] | None:
    if p50 is None or p90 is None:
        return None
    return {"p50": round(float(p50), 1), "p90": round(float(p90), 1)}


@routes.get("/v1/reports/summary")
@allow(R.OPERATOR, R.ADMIN)
@describe(query=ReportQuery, response=ReportView)
async def report_summary(request: web.Request) -> web.Response:
    """Key figures of one local day: orders by state, on-time rate, emergencies."""
    query = decode_query(request.query, ReportQuery)
    day = query.day or _today(request)
    start = datetime.combine(day, datetime.min.time(), CHINA_TZ)
    async with request.app[NODE].pool.acquire() as conn:
        figures = await queries.report(
            conn, start, start + timedelta(days=1), query.region_id
        )
    arrived = figures["arrived"]
    return json_response(
        ReportView(
            day=day,
            region_id=query.region_id,
            orders_by_status=figures["by_status"],
            arrived=arrived,
            on_time=figures["on_time"],
            on_time_rate=round(figures["on_time"] / arrived, 4) if arrived else None,
            emergencies=figures["emergencies"],
            emergency_accept_s=_spread(figures["accept_p50"], figures["accept_p90"]),
            emergency_arrive_s=_spread(figures["arrive_p50"], figures["arrive_p90"]),
            generated_at=request.app[NODE].clock.now(),
        )
    )


@routes.get("/v1/demand")
@allow(R.OPERATOR, R.ADMIN, R.VENDOR)
@describe(query=DemandQuery, response=DemandView)
async def vendor_demand(request: web.Request) -> web.Response:
    """De-identified weekly demand in a vendor's communities, small counts hidden.

    A vendor sees only its own view (``vendor_id`` defaults to itself);
    staff name the vendor.
    """
    query = decode_query(request.query, DemandQuery)
    actor = actor_of(request)
    vendor_id = query.vendor_id
    if actor.role not in STAFF:
        if vendor_id not in (None, actor.actor_id):
            raise NotFoundError("vendor", str(vendor_id))
        vendor_id = actor.actor_id
    if vendor_id is None:
        raise ValidationError("name the vendor_id", code="missing_field")
    until = query.until or _today(request)
    last_week = until - timedelta(days=until.weekday())
    first_week = last_week - timedelta(weeks=query.weeks - 1)
    async with request.app[NODE].pool.acquire() as conn:
        row = await queries.vendor(conn, vendor_id)
        if row is None:
            raise NotFoundError("vendor", vendor_id)
        counts = await queries.demand_counts(
            conn,
            list(row["coverage_region_ids"]),
            first_week,
            query.weeks,
            CHINA_TZ.utcoffset(None) or timedelta(),
        )
    rows = []
    for c in counts:
        elders = suppress_each(c.elders_by_category, c.elders)
        orders = suppress_additive(c.orders_by_family)
        iso = c.week.isocalendar()
        rows.append(
            DemandRow(
                region_id=c.region_id,
                week=f"{iso.year}-W{iso.week:02d}",
                elders=elders.total,
                elders_by_category=[DemandCell(k, v) for k, v in elders.cells.items()],
                orders=orders.total,
                orders_by_family=[DemandCell(k, v) for k, v in orders.cells.items()],
            )
        )
    return json_response(DemandView(vendor_id, SMALL_MAX + 1, rows))
