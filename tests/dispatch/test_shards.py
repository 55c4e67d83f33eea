"""Dispatching follows the region leases as nodes come and go."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import timedelta

import asyncpg
import pytest

from db.leases import Lease, RegionLeases
from db.pool import connect_pool
from dispatch.shards import RegionShards
from tests.conftest import Backing

pytestmark = pytest.mark.integration

EXTRA_REGIONS = [f"shard-test-{i}" for i in range(3)]
TTL = timedelta(seconds=2)
RENEW = timedelta(milliseconds=100)


@pytest.fixture
async def regions(pool: asyncpg.Pool) -> AsyncIterator[frozenset[str]]:
    """Every region of the database, three of them added for this test."""
    await pool.execute("delete from region_lease; delete from dispatcher_node")
    await pool.executemany(
        "insert into region (region_id, name_zh, name_en, district_code,"
        " center_lat, center_lon) values ($1, $1, $1, '220102', 43.88, 125.32)",
        [(r,) for r in EXTRA_REGIONS],
    )
    yield frozenset(await pool.fetchval("select array_agg(region_id) from region"))
    await pool.execute("delete from region_lease; delete from dispatcher_node")
    await pool.execute("delete from region where region_id = any($1)", EXTRA_REGIONS)


class Served:
    """What each node is dispatching now, as its serve function saw it."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.now: dict[str, frozenset[str]] = {}
        self.starts: dict[str, int] = {}

    def serve_as(self, holder: str, pool: asyncpg.Pool | None = None) -> RegionShards:
        async def serve(held: Mapping[str, Lease]) -> None:
            self.now[holder] = frozenset(held)
            self.starts[holder] = self.starts.get(holder, 0) + 1
            try:
                await asyncio.Event().wait()
            finally:
                self.now[holder] = frozenset()

        return RegionShards(
            RegionLeases(pool or self.pool, holder, TTL), serve, renew_every=RENEW
        )


async def _until(condition: Callable[[], object], timeout_s: float = 10.0) -> None:
    """Poll until ``condition`` holds: the nodes change it in their own tasks."""
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110  # no event to wait on
            await asyncio.sleep(0.02)


async def test_regions_move_to_a_new_node_and_back(
    pool: asyncpg.Pool, regions: frozenset[str]
) -> None:
    """One node serves all; two split them; after a clean stop one serves all."""
    served = Served(pool)
    a = asyncio.create_task(served.serve_as("node-a").run())
    await _until(lambda: served.now.get("node-a") == regions)

    b = asyncio.create_task(served.serve_as("node-b").run())
    await _until(
        lambda: (
            served.now.get("node-b")
            and served.now["node-a"] | served.now["node-b"] == regions
        )
    )
    assert not served.now["node-a"] & served.now["node-b"]
    assert abs(len(served.now["node-a"]) - len(served.now["node-b"])) <= 1

    a.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await a
    await _until(lambda: served.now.get("node-b") == regions)
    b.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await b
    assert (
        await pool.fetchval(
            "select count(*) from region_lease where expires_at > clock_timestamp()"
        )
        == 0
    )


async def test_a_region_taken_elsewhere_stops_being_dispatched_here(
    pool: asyncpg.Pool, regions: frozenset[str]
) -> None:
    """A region whose lease another node holds is dropped; the rest go on."""
    served = Served(pool)
    a = served.serve_as("node-a")
    task = asyncio.create_task(a.run())
    await _until(lambda: served.now.get("node-a") == regions)

    # another node takes one region behind node-a's back
    region = sorted(regions)[0]
    await pool.execute(
        "update region_lease set holder = 'node-z', fence = fence + 1"
        " where region_id = $1",
        region,
    )
    await _until(lambda: served.now.get("node-a") == regions - {region})

    assert a.fences.keys() == regions - {region}
    assert served.starts["node-a"] == 2
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_a_node_cut_off_from_the_database_stops_when_leases_lapse(
    pool: asyncpg.Pool, regions: frozenset[str], backing: Backing
) -> None:
    """No renewal for as long as a lease lasts: the node stops dispatching."""
    own_pool = await connect_pool(backing.database_url, size=2)
    served = Served(pool)
    task = asyncio.create_task(served.serve_as("node-a", own_pool).run())
    await _until(lambda: served.now.get("node-a") == regions)

    await own_pool.close()  # every claim fails from now on
    await asyncio.sleep(TTL.total_seconds() / 2)
    assert served.now["node-a"] == regions  # not yet: the leases still stand
    await _until(lambda: served.now["node-a"] == frozenset())

    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
