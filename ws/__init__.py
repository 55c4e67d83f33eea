"""The realtime edge: caregiver gateway, intake stream and console feed.

:func:`install` adds the three websocket endpoints to a node's aiohttp
application, with the background tasks they need: the relay of committed
order events, the follower of Redis wake-ups, the location batcher and the
console's caregiver batches. The protocol is in :mod:`ws.protocol` and
``docs/protocol.md``; its client side, on the ``websockets`` library, is in
:mod:`ws.client`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

from aiohttp import web
from redis.asyncio import BlockingConnectionPool, Redis

from db.live import LiveState
from dispatch.domain import ActorRole
from dispatch.http import allow
from dispatch.node import Node
from ws.console_feed import ConsoleFeed
from ws.fanout import ProviderFanout
from ws.gateway import Gateway
from ws.intake import DEFAULT_ALARM_RULES, AlarmRule, Intake
from ws.locations import LocationBatcher
from ws.protocol import AlarmKind
from ws.registry import Limits, Registry, follow_wakes
from ws.relay import RELAY, Relay
from ws.session import Edge, Endpoint, serve

__all__ = ["EDGE", "Limits", "ProviderFanout", "install"]

logger = logging.getLogger(__name__)

#: Where an application keeps its edge (tests and benchmarks look inside).
EDGE = web.AppKey("edge", Edge)

_SHUTDOWN_TIMEOUT_S = 5.0
_REDIS_WAIT_S = 5.0

R = ActorRole


def _route(
    edge: Edge, endpoint: Endpoint, *roles: ActorRole
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    @allow(*roles)
    async def handler(request: web.Request) -> web.StreamResponse:
        return await serve(request, edge, endpoint)

    handler.__doc__ = f"The {endpoint.name} websocket."
    return handler


# what a client of the node's Redis is opened with, beyond its pool's extras
_REDIS_OPTIONS = frozenset(
    {
        "host",
        "port",
        "path",
        "db",
        "username",
        "password",
        "socket_timeout",
        "socket_connect_timeout",
        "ssl_keyfile",
        "ssl_certfile",
        "ssl_cert_reqs",
        "ssl_ca_certs",
        "ssl_check_hostname",
    }
)


def _edge_redis(redis: Redis, connections: int) -> Redis:
    """A client of the node's Redis whose pool waits when all are in use."""
    base = redis.connection_pool
    options = {k: v for k, v in base.connection_kwargs.items() if k in _REDIS_OPTIONS}
    pool = BlockingConnectionPool(
        max_connections=connections,
        timeout=_REDIS_WAIT_S,
        connection_class=base.connection_class,
        **options,
    )
    return Redis.from_pool(pool)  # closing the client closes its pool


def install(
    app: web.Application,
    node: Node,
    *,
    limits: Limits | None = None,
    prefix: str = "",
    origins: frozenset[str] = frozenset(),
    alarm_rules: Mapping[AlarmKind, AlarmRule] = DEFAULT_ALARM_RULES,
    relay: bool = True,
    redis_connections: int = 64,
) -> Edge:
    """Add the realtime edge to ``app``.

    Args:
        app: The node's application, not yet started.
        node: The node's stores.
        limits: Limits of the edge; the defaults of :class:`Limits`.
        prefix: Redis key prefix of the edge's keys and of live state.
        origins: Browser origins allowed besides the service's own.
        alarm_rules: How device alarms become orders.
        relay: Whether this node may run the relay (one runs at a time
            across nodes in any case).
        redis_connections: Redis connections of the edge; a burst of
            reconnecting phones waits for one instead of failing.

    Returns:
        The edge, also kept as ``app[EDGE]``.
    """
    redis = _edge_redis(node.redis, redis_connections)
    fanout = ProviderFanout(redis, prefix=prefix)
    live = LiveState(redis, prefix=prefix)
    edge = Edge(node, fanout, Registry(), limits or Limits(), origins)
    locations = LocationBatcher(live)
    console = ConsoleFeed(edge, live)
    app[EDGE] = edge
    app.router.add_get(
        "/v1/caregiver",
        _route(edge, Gateway(edge, locations, live), R.CAREGIVER, R.VENDOR),
    )
    app.router.add_get(
        "/v1/intake",
        _route(
            edge, Intake(edge, alarm_rules), R.OPERATOR, R.ADMIN, R.PARTNER, R.DEVICE
        ),
    )
    app.router.add_get("/v1/console/stream", _route(edge, console, R.OPERATOR, R.ADMIN))

    async def background(app: web.Application) -> AsyncIterator[None]:
        del app
        jobs = [
            follow_wakes(redis, fanout, edge.registry),
            locations.run(),
            console.run(),
        ]
        if relay:
            jobs.append(Relay(node.pool, fanout, name=RELAY).run())
        running = [asyncio.create_task(job) for job in jobs]
        yield
        for task in running + list(edge.tasks):
            task.cancel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_SHUTDOWN_TIMEOUT_S):
                await asyncio.gather(*running, *edge.tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(_SHUTDOWN_TIMEOUT_S):
                await locations.flush()
        await redis.aclose()

    async def going_away(app: web.Application) -> None:
        # websocket handlers end only when their connection closes, and the
        # runner waits for handlers before it runs the cleanup contexts
        del app
        await edge.registry.close_all(1001, b"going_away")

    app.on_shutdown.append(going_away)
    app.cleanup_ctx.append(background)
    return edge
