"""The directory endpoints: caregivers, vendors, services, regions, alarms.

Staff see the whole directory; a caregiver or a vendor sees its own entry;
the catalogue and the regions are open to every role. A caregiver's live
state (duty and location) comes from Redis and is null when they are not
reporting.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from db import queries
from dispatch.api import STAFF
from dispatch.domain import ActorRole
from dispatch.errors import NotFoundError
from dispatch.http import actor_of, allow, json_response
from dispatch.node import NODE
from dispatch.openapi import describe
from dispatch.schemas import (
    AlarmView,
    CaregiverView,
    ListQuery,
    RegionView,
    ServiceView,
    VendorView,
    decode_query,
)

__all__ = ["routes"]

R = ActorRole
_EVERY_ROLE = (R.OPERATOR, R.ADMIN, R.CAREGIVER, R.VENDOR, R.PARTNER, R.DEVICE)

routes = web.RouteTableDef()


async def _caregiver_views(
    request: web.Request, rows: list[Any]
) -> list[CaregiverView]:
    node = request.app[NODE]
    ids = [r["caregiver_id"] for r in rows]
    duties = await node.live.duties(ids)
    where = await node.live.locations(ids, node.clock.now())
    return [
        CaregiverView(
            caregiver_id=r["caregiver_id"],
            region_id=r["region_id"],
            name=r["name"],
            skills=list(r["skills"]),
            active=r["active"],
            duty=str(duties[r["caregiver_id"]])
            if r["caregiver_id"] in duties
            else None,
            lat=where[r["caregiver_id"]].lat if r["caregiver_id"] in where else None,
            lon=where[r["caregiver_id"]].lon if r["caregiver_id"] in where else None,
            open_orders=r["open_orders"],
        )
        for r in rows
    ]


@routes.get("/v1/caregivers")
@allow(R.OPERATOR, R.ADMIN)
@describe(query=ListQuery, response=list[CaregiverView])
async def list_caregivers(request: web.Request) -> web.Response:
    """Caregivers with their live duty, location and open orders."""
    query = decode_query(request.query, ListQuery)
    async with request.app[NODE].pool.acquire() as conn:
        rows = await queries.caregivers(
            conn, region_id=query.region_id, limit=query.limit, offset=query.offset
        )
    return json_response(await _caregiver_views(request, rows))


@routes.get("/v1/caregivers/{caregiver_id}")
@allow(R.OPERATOR, R.ADMIN, R.CAREGIVER)
@describe(response=CaregiverView)
async def get_caregiver(request: web.Request) -> web.Response:
    """One caregiver; a caregiver may read only their own entry."""
    caregiver_id = request.match_info["caregiver_id"]
    actor = actor_of(request)
    if actor.role not in STAFF and actor.actor_id != caregiver_id:
        raise NotFoundError("caregiver", caregiver_id)
    async with request.app[NODE].pool.acquire() as conn:
        rows = await queries.caregivers(
            conn, region_id=None, limit=1, offset=0, caregiver_id=caregiver_id
        )
    if not rows:
        raise NotFoundError("caregiver", caregiver_id)
    return json_response((await _caregiver_views(request, list(rows)))[0])


def _vendor_view(r: Any) -> VendorView:
    return VendorView(
        vendor_id=r["vendor_id"],
        name=r["name"],
        category=r["category"],
        service_codes=list(r["service_codes"]),
        coverage_region_ids=list(r["coverage_region_ids"]),
        lat=r["lat"],
        lon=r["lon"],
        open_order_capacity=r["open_order_capacity"],
        merit_score=round(float(r["merit_score"]), 4),
        active=r["active"],
    )


@routes.get("/v1/vendors")
@allow(R.OPERATOR, R.ADMIN)
@describe(query=ListQuery, response=list[VendorView])
async def list_vendors(request: web.Request) -> web.Response:
    """Vendors, optionally those covering one region."""
    query = decode_query(request.query, ListQuery)
    async with request.app[NODE].pool.acquire() as conn:
        rows = await queries.vendors(
            conn, region_id=query.region_id, limit=query.limit, offset=query.offset
        )
    return json_response([_vendor_view(r) for r in rows])


@routes.get("/v1/vendors/{vendor_id}")
@allow(R.OPERATOR, R.ADMIN, R.VENDOR)
@describe(response=VendorView)
async def get_vendor(request: web.Request) -> web.Response:
    """One vendor; a vendor may read only its own entry."""
    vendor_id = request.match_info["vendor_id"]
    actor = actor_of(request)
    if actor.role not in STAFF and actor.actor_id != vendor_id:
        raise NotFoundError("vendor", vendor_id)
    async with request.app[NODE].pool.acquire() as conn:
        row = await queries.vendor(conn, vendor_id)
    if row is None:
        raise NotFoundError("vendor", vendor_id)
    return json_response(_vendor_view(row))


@routes.get("/v1/services")
@allow(*_EVERY_ROLE)
@describe(response=list[ServiceView])
async def list_services(request: web.Request) -> web.Response:
    """The service catalogue."""
    async with request.app[NODE].pool.acquire() as conn:
        rows = await queries.services(conn)
    return json_response(
        [
            ServiceView(
                service_code=r["service_code"],
                family=r["family"],
                name_zh=r["name_zh"],
                name_en=r["name_en"],
                skills=list(r["skills"]),
                duration_min=r["duration_min"],
                fulfilled_by=r["fulfilled_by"],
                price_cents=r["price_cents"],
                max_lateness_min=r["max_lateness_min"],
            )
            for r in rows
        ]
    )


@routes.get("/v1/regions")
@allow(*_EVERY_ROLE)
@describe(query=ListQuery, response=list[RegionView])
async def list_regions(request: web.Request) -> web.Response:
    """The communities (regions) with their centres."""
    query = decode_query(request.query, ListQuery)
    async with request.app[NODE].pool.acquire() as conn:
        rows = await queries.regions(conn, limit=query.limit, offset=query.offset)
    return json_response(
        [
            RegionView(
                region_id=r["region_id"],
                name_zh=r["name_zh"],
                name_en=r["name_en"],
                district_code=r["district_code"],
                center_lat=r["center_lat"],
                center_lon=r["center_lon"],
            )
            for r in rows
        ]
    )


@routes.get("/v1/device-alarms")
@allow(R.OPERATOR, R.ADMIN)
@describe(query=ListQuery, response=list[AlarmView])
async def list_device_alarms(request: web.Request) -> web.Response:
    """Alarms raised by smart devices (each books an order), newest first."""
    query = decode_query(request.query, ListQuery)
    async with request.app[NODE].pool.acquire() as conn:
        rows = await queries.device_alarms(
            conn, region_id=query.region_id, limit=query.limit, offset=query.offset
        )
    return json_response(
        [
            AlarmView(
                order_id=str(r["order_id"]),
                device_id=r["created_by_id"],
                elder_id=r["elder_id"],
                region_id=r["region_id"],
                service_code=r["service_code"],
                priority=r["priority"],
                status=r["status"],
                raised_at=r["created_at"],
                lat=r["lat"],
                lon=r["lon"],
            )
            for r in rows
        ]
    )
