"""Shared fixtures: real PostgreSQL and Redis for the whole session.

By default the session starts the embedded servers in a temporary folder,
as the service does on a fresh machine. With ``HOMECARE_DATABASE_URL`` set,
a fresh database is created on that server for the session and dropped at
the end; with ``HOMECARE_REDIS_URL`` set, that Redis is used (keys are
namespaced per session).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from aiohttp import web
from redis.asyncio import Redis

from db.directory import upsert_services
from db.embedded import EmbeddedServers
from db.migrate import migrate
from db.pool import connect_pool
from dispatch.app import build_app
from dispatch.catalogue import SEED_SERVICES
from dispatch.domain import Actor, ActorRole
from dispatch.node import Node, open_node
from dispatch.settings import Settings
from tests.fixtures import load_small_directory


@dataclass(frozen=True)
class Backing:
    """Where the session's PostgreSQL and Redis are."""

    database_url: str
    redis_url: str
    data_dir: Path


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


def _admin(url: str, sql: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.fixture(scope="session")
def backing() -> Iterator[Backing]:
    """Real servers for the session: embedded, or those the environment names."""
    data_dir = Path(tempfile.mkdtemp(prefix="homecare-test-"))
    external_db = os.environ.get("HOMECARE_DATABASE_URL", "")
    external_redis = os.environ.get("HOMECARE_REDIS_URL", "")
    servers = EmbeddedServers(data_dir)
    servers.start(postgres=not external_db, redis=not external_redis)
    database_url = servers.database_url
    created = f"homecare_test_{secrets.token_hex(4)}" if external_db else ""
    if created:
        _admin(external_db, f'create database "{created}"')
        database_url = _with_database(external_db, created)
    try:
        yield Backing(database_url, external_redis or servers.redis_url, data_dir)
    finally:
        if created:
            _admin(external_db, f'drop database if exists "{created}" with (force)')
        servers.stop()


@pytest.fixture(scope="session")
async def pool(backing: Backing) -> AsyncIterator[asyncpg.Pool]:
    """A migrated database with the catalogue and a small directory."""
    pool = await connect_pool(backing.database_url, size=60)
    async with pool.acquire() as conn:
        await migrate(conn)
        await upsert_services(conn, SEED_SERVICES)
        await load_small_directory(conn)
    yield pool
    await pool.close()


@pytest.fixture
async def clean(pool: asyncpg.Pool) -> asyncpg.Pool:
    """The session database with no orders, events, offers or keys."""
    await pool.execute(
        'truncate "order", order_event, offer, idempotency_key, audit_log,'
        " region_lease, dispatcher_node cascade"
    )
    return pool


@pytest.fixture(scope="session")
async def redis(backing: Backing) -> AsyncIterator[Redis]:
    """A client of the session's Redis."""
    client: Redis = Redis.from_url(backing.redis_url, socket_timeout=5)
    yield client
    await client.aclose()


@pytest.fixture
def key_prefix() -> str:
    """A Redis key prefix of this test alone (the Redis may be shared)."""
    return f"test:{secrets.token_hex(4)}:"


def settings_for(backing: Backing) -> Settings:
    """Service settings pointing at the session's servers."""
    return Settings.from_env(
        {
            "HOMECARE_DATA_DIR": str(backing.data_dir),
            "HOMECARE_DATABASE_URL": backing.database_url,
            "HOMECARE_REDIS_URL": backing.redis_url,
            "HOMECARE_TOKEN_SECRET": "test-secret-of-at-least-16-bytes",
            "HOMECARE_DB_POOL_SIZE": "8",
        }
    )


@pytest.fixture
async def node(backing: Backing, clean: asyncpg.Pool) -> AsyncIterator[Node]:
    """A whole node (stores, commands, live state) on a clean database."""
    settings = settings_for(backing)
    async with open_node(settings, backing.database_url, backing.redis_url) as node:
        yield node


@pytest.fixture
async def server(node: Node) -> AsyncIterator[str]:
    """The node's HTTP application on a free loopback port; yields its URL.

    Only the API role runs here; tests that need the realtime edge or the
    dispatcher build their own app with those roles.
    """
    runner = web.AppRunner(build_app(node, roles=frozenset({"api"})))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}"
    await runner.cleanup()


def token_for(node: Node, role: ActorRole, actor_id: str) -> str:
    """A valid token for ``role`` and ``actor_id``, good for an hour."""
    return node.signer.issue(
        Actor(role, actor_id), node.clock.now(), timedelta(hours=1)
    )


@pytest.fixture
def now() -> datetime:
    """A fixed moment for tests that need one."""
    return datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
