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
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from redis.asyncio import Redis

from db.directory import upsert_services
from db.embedded import EmbeddedServers
from db.migrate import migrate
from db.pool import connect_pool
from dispatch.catalogue import SEED_SERVICES
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
        'truncate "order", order_event, offer, idempotency_key, audit_log cascade'
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


@pytest.fixture
def now() -> datetime:
    """A fixed moment for tests that need one."""
    return datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
