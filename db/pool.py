"""PostgreSQL connection pools with the codecs the stores rely on."""

from __future__ import annotations

import json
from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

__all__ = ["Connection", "connect_pool", "init_connection"]

#: A connection of our own or one borrowed from a pool.
Connection: TypeAlias = (
    "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"
)

_CONNECT_TIMEOUT_S = 10.0
_COMMAND_TIMEOUT_S = 30.0


async def init_connection(conn: asyncpg.Connection) -> None:
    """Decode ``json`` and ``jsonb`` columns to Python objects."""
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name,
            encoder=lambda value: json.dumps(value, ensure_ascii=False),
            decoder=json.loads,
            schema="pg_catalog",
        )


async def connect_pool(url: str, *, size: int = 16, **kwargs: Any) -> asyncpg.Pool:
    """A pool of ``size`` connections to ``url``, ready for the stores.

    Raises:
        OSError, asyncpg.PostgresError: The database cannot be reached.
    """
    pool: asyncpg.Pool = await asyncpg.create_pool(
        url,
        min_size=min(2, size),
        max_size=size,
        init=init_connection,
        timeout=_CONNECT_TIMEOUT_S,
        command_timeout=_COMMAND_TIMEOUT_S,
        **kwargs,
    )
    return pool
