"""Wiring of one service process: backing stores, connections and stores.

:func:`backing_stores` runs on the main thread before the event loop (the
embedded servers are asked to die with the thread that started them);
:func:`open_node` then connects, migrates and builds the stores.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass

import asyncpg
from aiohttp import web
from redis.asyncio import Redis

from db.directory import upsert_services
from db.embedded import EmbeddedServers
from db.live import LiveState
from db.migrate import migrate
from db.orders import OrderStore
from db.pool import connect_pool
from dispatch.catalogue import SEED_SERVICES
from dispatch.clock import Clock, WallClock
from dispatch.commands import Commands
from dispatch.settings import Settings
from dispatch.tokens import TokenSigner, load_secret

__all__ = ["NODE", "Node", "backing_stores", "open_node"]

logger = logging.getLogger(__name__)

_REDIS_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class Node:
    """Everything one service process shares between its roles."""

    settings: Settings
    clock: Clock
    pool: asyncpg.Pool
    redis: Redis
    orders: OrderStore
    commands: Commands
    live: LiveState
    signer: TokenSigner


@contextmanager
def backing_stores(settings: Settings) -> Iterator[tuple[str, str]]:
    """PostgreSQL and Redis URLs, starting embedded servers where none is set.

    Must run on the main thread; stops what it started on exit.
    """
    servers = EmbeddedServers(settings.data_dir)
    servers.start(postgres=not settings.database_url, redis=not settings.redis_url)
    try:
        yield (
            settings.database_url or servers.database_url,
            settings.redis_url or servers.redis_url,
        )
    finally:
        servers.stop()


@asynccontextmanager
async def open_node(
    settings: Settings,
    database_url: str,
    redis_url: str,
    clock: Clock | None = None,
) -> AsyncIterator[Node]:
    """Connect to the stores, migrate the schema and seed the catalogue."""
    pool = await connect_pool(database_url, size=settings.db_pool_size)
    redis: Redis = Redis.from_url(
        redis_url,
        socket_timeout=_REDIS_TIMEOUT_S,
        socket_connect_timeout=_REDIS_TIMEOUT_S,
    )
    try:
        async with pool.acquire() as conn:
            await migrate(conn)
            await upsert_services(conn, SEED_SERVICES)
        await redis.ping()
        the_clock = clock or WallClock()
        orders = OrderStore(pool, the_clock, max_notes_chars=settings.max_notes_chars)
        yield Node(
            settings=settings,
            clock=the_clock,
            pool=pool,
            redis=redis,
            orders=orders,
            commands=Commands(orders, checkin_radius_m=settings.checkin_radius_m),
            live=LiveState(redis),
            signer=TokenSigner(load_secret(settings.token_secret, settings.data_dir)),
        )
    finally:
        await redis.aclose()
        await pool.close()


#: Where an aiohttp application keeps its node.
NODE = web.AppKey("node", Node)
