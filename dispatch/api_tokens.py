"""``POST /v1/tokens``: an admin issues tokens for providers and integrations.

Tokens for caregivers and vendors must name one that exists; devices and
partners are not in the directory, so any id is accepted. Operators and
admins get theirs from ``homecare token`` on the server. The token is shown
once and never stored or logged.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from aiohttp import web

from dispatch.domain import Actor, ActorRole
from dispatch.errors import ValidationError
from dispatch.http import actor_of, allow, json_response
from dispatch.node import NODE
from dispatch.openapi import describe
from dispatch.schemas import TokenIssued, TokenRequest, decode

__all__ = ["routes"]

logger = logging.getLogger(__name__)

_DIRECTORY = {
    "caregiver": "select exists (select 1 from caregiver where caregiver_id = $1)",
    "vendor": "select exists (select 1 from vendor where vendor_id = $1)",
}

routes = web.RouteTableDef()


@routes.post("/v1/tokens")
@allow(ActorRole.ADMIN)
@describe(body=TokenRequest, response=TokenIssued, status=201)
async def issue_token(request: web.Request) -> web.Response:
    """Issue a token for a caregiver, vendor, device or partner."""
    body = decode(await request.read(), TokenRequest)
    node = request.app[NODE]
    check = _DIRECTORY.get(body.role)
    if check is not None and not await node.pool.fetchval(check, body.actor_id):
        raise ValidationError(
            f"no {body.role} {body.actor_id}", code="unknown_actor", field="actor_id"
        )
    actor = Actor(ActorRole(body.role), body.actor_id)
    now = node.clock.now()
    ttl = timedelta(hours=body.ttl_hours)
    token = node.signer.issue(actor, now, ttl)
    await node.pool.execute(
        "insert into audit_log (actor_role, actor_id, action, subject_kind,"
        " subject_id, detail) values ($1, $2, 'issue_token', $3, $4, $5)",
        "admin",
        actor_of(request).actor_id,
        body.role,
        body.actor_id,
        {"ttl_hours": body.ttl_hours},
    )
    logger.info(
        "token issued",
        extra={
            "role": body.role,
            "actor_id": body.actor_id,
            "by": str(actor_of(request)),
        },
    )
    return json_response(
        TokenIssued(token, body.role, body.actor_id, now + ttl), status=201
    )
