"""The ``/v1/elders`` endpoints: hotline search and the elder's record.

Personal data (name, phone, address, health notes) goes to staff and to a
provider at work on one of the elder's orders, nobody else; every read of it
by staff is written to the audit log, one row per elder shown. Anyone else
is told the elder does not exist.
"""

from __future__ import annotations

from aiohttp import web

from db import queries
from dispatch.api import STAFF
from dispatch.domain import ActorRole
from dispatch.errors import NotFoundError
from dispatch.http import actor_of, allow, json_response
from dispatch.node import NODE
from dispatch.openapi import describe
from dispatch.schemas import (
    ElderContact,
    ElderQuery,
    ElderSummary,
    ElderView,
    decode_query,
)

__all__ = ["routes"]

R = ActorRole

routes = web.RouteTableDef()


@routes.get("/v1/elders")
@allow(R.OPERATOR, R.ADMIN)
@describe(query=ElderQuery, response=list[ElderSummary])
async def search_elders(request: web.Request) -> web.Response:
    """Find elders by the end of their phone number or the start of their name.

    For hotline intake; every hit shown is written to the audit log.
    """
    query = decode_query(request.query, ElderQuery)
    actor = actor_of(request)
    async with request.app[NODE].pool.acquire() as conn, conn.transaction():
        rows = await queries.search_elders(
            conn, phone=query.phone, name=query.name, limit=query.limit
        )
        await queries.audit(
            conn, actor, "search", "elder", [r["elder_id"] for r in rows]
        )
    return json_response(
        [
            ElderSummary(
                elder_id=r["elder_id"],
                region_id=r["region_id"],
                name=r["name"],
                phone=r["phone"],
                address=r["address"],
                care_level=r["care_level"],
            )
            for r in rows
        ]
    )


@routes.get("/v1/elders/{elder_id}")
@allow(R.OPERATOR, R.ADMIN, R.CAREGIVER, R.VENDOR)
@describe(response=ElderView)
async def get_elder(request: web.Request) -> web.Response:
    """One elder; contact and health notes only for staff and serving providers."""
    elder_id = request.match_info["elder_id"]
    actor = actor_of(request)
    staff = actor.role in STAFF
    async with request.app[NODE].pool.acquire() as conn, conn.transaction():
        row = await queries.elder(conn, elder_id)
        serving = row is not None and (
            staff or await queries.serves_elder(conn, actor, elder_id)
        )
        if row is None or not serving:
            raise NotFoundError("elder", elder_id)
        if staff:
            await queries.audit(conn, actor, "read", "elder", [elder_id])
    return json_response(
        ElderView(
            elder_id=row["elder_id"],
            region_id=row["region_id"],
            lat=row["home_lat"],
            lon=row["home_lon"],
            care_level=row["care_level"],
            categories=queries.categories_of(row),
            preferred_caregiver_ids=list(row["preferred_caregiver_ids"]),
            contact=ElderContact(
                name=row["name"],
                phone=row["phone"],
                address=row["address"],
                health_notes=row["health_notes"],
            ),
        )
    )
