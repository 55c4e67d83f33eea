"""A fresh database and Redis database for each demo run."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest
from redis.asyncio import Redis

from tests.conftest import Backing


@dataclass(frozen=True)
class Stores:
    """URLs of an empty database and a Redis database of the demo's own."""

    database_url: str
    redis_url: str


@pytest.fixture
async def stores(backing: Backing) -> AsyncIterator[Stores]:
    """An empty database on the session's server, and Redis database 9."""
    base, _, _ = backing.database_url.rpartition("/")
    name = f"homecare_demo_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(backing.database_url)
    try:
        await admin.execute(f'create database "{name}"')
    finally:
        await admin.close()
    redis_base, _, _ = backing.redis_url.rpartition("/")
    redis_url = f"{redis_base}/9"
    client: Redis = Redis.from_url(redis_url, socket_timeout=5)
    await client.flushdb()
    await client.aclose()
    yield Stores(f"{base}/{name}", redis_url)
    admin = await asyncpg.connect(backing.database_url)
    try:
        await admin.execute(f'drop database if exists "{name}" with (force)')
    finally:
        await admin.close()
