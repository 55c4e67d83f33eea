"""``/v1/alerts``: what operators must look at, and their acknowledgement.

Alerts (emergencies booked, escalated orders, caregivers' SOS, device
alarms) are raised by the realtime edge and the dispatcher
(:mod:`db.alerts`) and stream to the console; here staff list the open ones
and acknowledge them. Messages hold ids only, never personal data.
"""

from __future__ import annotations

from aiohttp import web

from db import alerts
from dispatch.domain import ActorRole
from dispatch.errors import NotFoundError
from dispatch.http import actor_of, allow, json_response
from dispatch.node import NODE
from dispatch.openapi import describe
from dispatch.schemas import AlertView

__all__ = ["routes"]

R = ActorRole

routes = web.RouteTableDef()


def _view(alert: alerts.Alert) -> AlertView:
    return AlertView(
        alert_id=alert.alert_id,
        kind=str(alert.kind),
        severity=str(alert.severity),
        message=alert.message,
        at=alert.at,
        order_id=alert.order_id,
        caregiver_id=alert.caregiver_id,
        region_id=alert.region_id,
        acknowledged_at=alert.acknowledged_at,
        acknowledged_by=alert.acknowledged_by,
    )


@routes.get("/v1/alerts")
@allow(R.OPERATOR, R.ADMIN)
@describe(response=list[AlertView])
async def list_alerts(request: web.Request) -> web.Response:
    """Alerts nobody has acknowledged yet, newest first."""
    async with request.app[NODE].pool.acquire() as conn:
        found = await alerts.open_alerts(conn)
    return json_response([_view(a) for a in found])


@routes.post("/v1/alerts/{alert_id}/ack")
@allow(R.OPERATOR, R.ADMIN)
@describe(response=AlertView)
async def acknowledge_alert(request: web.Request) -> web.Response:
    """Mark an alert as seen and handled; a second acknowledgement is 409."""
    raw = request.match_info["alert_id"]
    if not raw.isdigit() or len(raw) > 18:
        raise NotFoundError("alert", raw)
    node = request.app[NODE]
    async with node.pool.acquire() as conn:
        alert = await alerts.acknowledge(
            conn, int(raw), actor_of(request), node.clock.now()
        )
    return json_response(_view(alert))
