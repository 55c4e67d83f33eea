"""Wiring of one service process: backing stores, connections and stores.

:func:`backing_stores` runs on the main thread before the event loop (the
embedded servers are asked to die with the thread that started them);
:func:`open_node` then raises the open-file limit, tunes the garbage
collector, connects, migrates and builds the stores.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import resource
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from aiohttp import web
from redis.asyncio import BlockingConnectionPool, Redis

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

__all__ = [
    "GC_THRESHOLDS",
    "NODE",
    "Node",
    "backing_stores",
    "connect_redis",
    "open_node",
    "raise_open_files_limit",
    "tune_collector",
]

logger = logging.getLogger(__name__)

_REDIS_TIMEOUT_S = 5.0
_REDIS_CONNECTIONS = 100
# the kernel's ceiling of a process's open-file limit
_NR_OPEN = Path("/proc/sys/fs/nr_open")

#: The collector's thresholds in a node (CPython's defaults: 700, 10, 10).
GC_THRESHOLDS = (50_000, 20, 10)


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


def raise_open_files_limit() -> tuple[int, int]:
    """Raise this process's open-file limit as far as it is allowed to go.

    Every websocket holds a descriptor, so the limit caps the connections a
    node can hold. The soft limit always goes up to the hard one; the hard
    one goes up to the kernel's ceiling (``/proc/sys/fs/nr_open``) only
    with ``CAP_SYS_RESOURCE`` (root), and stays where it was otherwise.
    Logs the limits it got at ``info``.

    Returns:
        The soft and hard limits now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        ceiling = int(_NR_OPEN.read_text())
    except (OSError, ValueError):
        ceiling = hard
    if hard != resource.RLIM_INFINITY and ceiling > hard:
        # refused without CAP_SYS_RESOURCE: the hard limit stays as it is
        with contextlib.suppress(OSError, ValueError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, ceiling))
    soft_before = soft
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    logger.info(
        "open-file limit",
        extra={"soft_before": soft_before, "soft": soft, "hard": hard},
    )
    return soft, hard


def tune_collector() -> None:
    """Make the collector's pauses rare where thousands of connections live.

    Each message of a phone leaves objects that live for seconds (the
    waiter of the next read, timers, a batched location). Under CPython's
    default thresholds a young collection runs every 700 allocations, so
    those objects reach the oldest generation by the thousand a second,
    and every time they add up to a quarter of it the collector walks
    every object of every connection: with 5,000 phones reporting every
    5 s, five full collections in a minute, the longest 4.3 s on a loaded
    machine (``benchmarks/gateway.py`` times them). With 50,000
    allocations between young collections such objects die young, and the
    oldest generation is walked far more rarely. Call it once at start-up;
    :func:`gc.freeze` the start-up heap after it.
    """
    gc.set_threshold(*GC_THRESHOLDS)
    logger.info("collector thresholds", extra={"thresholds": GC_THRESHOLDS})


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


def connect_redis(redis_url: str, timeout_s: float = _REDIS_TIMEOUT_S) -> Redis:
    """A client of Redis whose commands wait for a free pooled connection.

    Redis-py's default pool fails a command with "Too many connections"
    once 100 are in use; a burst (a plan sent to a region's caregivers, a
    batch of placements) waits for one instead, up to ``timeout_s``.
    """
    return Redis.from_pool(
        BlockingConnectionPool.from_url(
            redis_url,
            max_connections=_REDIS_CONNECTIONS,
            timeout=timeout_s,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
        )
    )


@asynccontextmanager
async def open_node(
    settings: Settings,
    database_url: str,
    redis_url: str,
    clock: Clock | None = None,
) -> AsyncIterator[Node]:
    """Connect to the stores, migrate the schema and seed the catalogue.

    The process's open-file limit is raised first
    (:func:`raise_open_files_limit`): one node holds thousands of
    websockets. The collector is tuned for them (:func:`tune_collector`).
    """
    raise_open_files_limit()
    tune_collector()
    pool = await connect_pool(database_url, size=settings.db_pool_size)
    redis = connect_redis(redis_url)
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
