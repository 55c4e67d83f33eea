"""The aiohttp application: API, health checks and (later) realtime edge."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

import ws
from dispatch import (
    api,
    api_alerts,
    api_console,
    api_directory,
    api_elders,
    api_reports,
    api_tokens,
    metrics,
    openapi,
)
from dispatch.http import AUTHENTICATOR, PUBLIC, Authenticator, allow, middlewares
from dispatch.node import NODE, Node
from dispatch.roles import dispatcher_role

__all__ = ["ROLES", "build_app", "route_tables"]

logger = logging.getLogger(__name__)

_PROBE_TIMEOUT_S = 2.0
_MAX_BODY_BYTES = 256 * 1024

health = web.RouteTableDef()


@health.get("/healthz")
@allow(*PUBLIC)
@openapi.describe(response=dict[str, str])
async def healthz(request: web.Request) -> web.Response:
    """The process is up and serving."""
    del request
    return web.json_response({"status": "ok"})


@health.get("/readyz")
@allow(*PUBLIC)
@openapi.describe(response=dict[str, Any])
async def readyz(request: web.Request) -> web.Response:
    """PostgreSQL and Redis both answer within two seconds."""
    node = request.app[NODE]
    checks: dict[str, str] = {}
    try:
        async with asyncio.timeout(_PROBE_TIMEOUT_S):
            await node.pool.fetchval("select 1")
        checks["postgresql"] = "ok"
    except Exception as exc:  # noqa: BLE001  # readiness reports any failure
        checks["postgresql"] = type(exc).__name__
    try:
        async with asyncio.timeout(_PROBE_TIMEOUT_S):
            await node.redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:  # noqa: BLE001  # readiness reports any failure
        checks["redis"] = type(exc).__name__
    ready = all(v == "ok" for v in checks.values())
    return web.json_response(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status=200 if ready else 503,
    )


#: Every role a node can run; see DESIGN.md section 9.
ROLES = frozenset({"api", "gateway", "dispatcher"})


def build_app(node: Node, roles: frozenset[str] = ROLES) -> web.Application:
    """The application serving one node's roles.

    ``api`` serves the HTTP API and console, ``gateway`` the websocket
    endpoints, ``dispatcher`` runs the dispatch loops in the background.
    Health checks are always served.

    Raises:
        ValueError: An unknown role is asked for.
    """
    if unknown := roles - ROLES:
        raise ValueError(f"unknown roles {sorted(unknown)}")
    app = web.Application(
        middlewares=[metrics.middleware, *middlewares()],
        client_max_size=_MAX_BODY_BYTES,
    )
    app[NODE] = node
    app[AUTHENTICATOR] = Authenticator(node.signer, node.clock)
    for table in route_tables(roles):
        app.add_routes(table)
    if "api" in roles:
        app[metrics.LOG_METRICS] = metrics.LogMetrics(node.pool)
    if "gateway" in roles:
        ws.install(app, node)
    if "dispatcher" in roles:
        app.cleanup_ctx.append(dispatcher_role)
    return app


def route_tables(roles: frozenset[str]) -> list[web.RouteTableDef]:
    """The HTTP routes a node with ``roles`` serves (health checks always)."""
    tables = [health, metrics.routes]
    if "api" in roles:
        tables += [
            api.routes,
            api_elders.routes,
            api_alerts.routes,
            api_directory.routes,
            api_reports.routes,
            api_tokens.routes,
            openapi.routes,
            api_console.routes,
        ]
    return tables
