"""Schema migrations: once each, in order, even when runners race."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import asyncpg
import pytest

from db.migrate import available, migrate
from tests.conftest import Backing

pytestmark = pytest.mark.integration


@pytest.fixture
async def empty_database(backing: Backing) -> AsyncIterator[str]:
    """The URL of a brand-new database, dropped afterwards."""
    name = f"homecare_migrate_{secrets.token_hex(3)}"
    admin = await asyncpg.connect(backing.database_url)
    try:
        await admin.execute(f"create database {name}")
        yield backing.database_url.rsplit("/", 1)[0] + "/" + name
        await admin.execute(f"drop database {name} with (force)")
    finally:
        await admin.close()


def test_migrations_are_numbered_once_each() -> None:
    """Every shipped migration has its own number, in order."""
    versions = [m.version for m in available()]
    assert versions == sorted(set(versions))
    assert versions[0] == 1


async def test_second_run_is_a_no_op(empty_database: str) -> None:
    """The first run applies everything; the second applies nothing."""
    conn = await asyncpg.connect(empty_database)
    try:
        first = await migrate(conn)
        second = await migrate(conn)
    finally:
        await conn.close()
    assert first == [m.version for m in available()]
    assert second == []


async def test_racing_runners_apply_each_migration_once(empty_database: str) -> None:
    """Four processes starting at once share the work without a clash."""
    conns = [await asyncpg.connect(empty_database) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in conns))
        recorded = await conns[0].fetch("select version from schema_migration")
    finally:
        for conn in conns:
            await conn.close()
    applied = sorted(v for result in results for v in result)
    assert applied == [m.version for m in available()]
    assert sorted(r["version"] for r in recorded) == applied
