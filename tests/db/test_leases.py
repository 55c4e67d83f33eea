"""Region leases: fair shares, takeover with a higher fence, fenced writes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest

from db.leases import RegionLeases, check_fence
from dispatch.errors import LeaseLostError

pytestmark = pytest.mark.integration

EXTRA_REGIONS = [f"lease-test-{i}" for i in range(5)]
LONG = timedelta(minutes=5)


@pytest.fixture
async def regions(pool: asyncpg.Pool) -> AsyncIterator[list[str]]:
    """Every region of the database, five of them added for this test."""
    await pool.execute("delete from region_lease; delete from dispatcher_node")
    await pool.executemany(
        "insert into region (region_id, name_zh, name_en, district_code,"
        " center_lat, center_lon) values ($1, $1, $1, '220102', 43.88, 125.32)",
        [(r,) for r in EXTRA_REGIONS],
    )
    yield sorted(await pool.fetchval("select array_agg(region_id) from region"))
    await pool.execute("delete from region_lease; delete from dispatcher_node")
    await pool.execute("delete from region where region_id = any($1)", EXTRA_REGIONS)


async def _expire(pool: asyncpg.Pool, region_ids: list[str]) -> None:
    """Let these leases lapse, as if their holder had stopped renewing."""
    await pool.execute(
        "update region_lease set expires_at = clock_timestamp() - interval '1 s'"
        " where region_id = any($1)",
        region_ids,
    )


async def test_a_lone_node_takes_every_region(
    pool: asyncpg.Pool, regions: list[str]
) -> None:
    """The first lease of a region has fence 1; renewing keeps the fence."""
    node = RegionLeases(pool, "node-a", LONG)

    first = await node.claim()
    again = await node.claim()

    assert sorted(first) == regions
    assert {lease.fence for lease in first.values()} == {1}
    assert {r: lease.fence for r, lease in again.items()} == {r: 1 for r in regions}
    assert all(again[r].expires_at >= first[r].expires_at for r in regions)


async def test_a_joining_node_gets_its_fair_share(
    pool: asyncpg.Pool, regions: list[str]
) -> None:
    """The old node gives up the surplus; the new one takes it, fenced anew."""
    a = RegionLeases(pool, "node-a", LONG)
    b = RegionLeases(pool, "node-b", LONG)
    await a.claim()

    assert await b.claim() == {}  # nothing is free yet
    held_a = await a.claim()  # sees two nodes, keeps its share
    held_b = await b.claim()

    share = -(-len(regions) // 2)
    assert len(held_a) == share
    assert set(held_a) | set(held_b) == set(regions)
    assert not set(held_a) & set(held_b)
    assert {lease.fence for lease in held_b.values()} == {2}


async def test_an_expired_lease_passes_with_a_higher_fence(
    pool: asyncpg.Pool, regions: list[str]
) -> None:
    """After a takeover the old holder's writes are refused, the new one's pass."""
    a = RegionLeases(pool, "node-a", LONG)
    held_a = await a.claim()
    region = regions[0]
    await pool.execute("delete from dispatcher_node where holder = 'node-a'")
    await _expire(pool, regions)

    held_b = await RegionLeases(pool, "node-b", LONG).claim()

    assert held_b[region].fence == held_a[region].fence + 1
    async with pool.acquire() as conn, conn.transaction():
        await check_fence(conn, region, "node-b", held_b[region].fence)
        with pytest.raises(LeaseLostError) as lost:
            await check_fence(conn, region, "node-a", held_a[region].fence)
    assert lost.value.code == "lease_lost"
    assert lost.value.details == {"region_id": region, "fence": 1}


async def test_an_expired_lease_refuses_writes_before_anyone_takes_it(
    pool: asyncpg.Pool, regions: list[str]
) -> None:
    """A holder that stalled past its lease writes nothing, even unopposed."""
    held = await RegionLeases(pool, "node-a", LONG).claim()
    await _expire(pool, regions)

    async with pool.acquire() as conn:
        with pytest.raises(LeaseLostError):
            await check_fence(conn, regions[0], "node-a", held[regions[0]].fence)


async def test_a_takeover_waits_for_a_write_in_flight(
    pool: asyncpg.Pool, regions: list[str]
) -> None:
    """A write that checked its fence commits before the region can move."""
    a = RegionLeases(pool, "node-a", LONG)
    region = regions[0]
    fence = (await a.claim())[region].fence
    await pool.execute("delete from dispatcher_node where holder = 'node-a'")
    b = RegionLeases(pool, "node-b", LONG)

    await pool.execute(
        "update region_lease set expires_at = clock_timestamp() + interval '0.3 s'"
        " where region_id = $1",
        region,
    )

    async with pool.acquire() as conn, conn.transaction():
        await check_fence(conn, region, "node-a", fence)
        await asyncio.sleep(0.5)  # the lease lapses while the write is open
        during = await b.claim()  # the row is locked: skipped, not waited for
    after = await b.claim()

    assert region not in during
    assert after[region].fence == fence + 1


async def test_release_hands_regions_over_at_once(
    pool: asyncpg.Pool, regions: list[str]
) -> None:
    """A clean stop lets the next node take everything on its next claim."""
    a = RegionLeases(pool, "node-a", LONG)
    await a.claim()

    await a.release_all()
    held_b = await RegionLeases(pool, "node-b", LONG).claim()

    assert sorted(held_b) == regions


async def test_racing_claims_never_share_a_region(
    pool: asyncpg.Pool, regions: list[str]
) -> None:
    """Three nodes claiming at once: each region has at most one holder."""
    nodes = [RegionLeases(pool, f"node-{i}", LONG) for i in range(3)]
    for _ in range(3):
        rounds = await asyncio.gather(*(node.claim() for node in nodes))
        taken = [region for held in rounds for region in held]
        assert len(taken) == len(set(taken))

    holders = await pool.fetch(
        "select region_id, holder from region_lease"
        " where expires_at > clock_timestamp()"
    )
    assert len(holders) == len(regions)
    assert max(len(held) for held in rounds) <= -(-len(regions) // 3)


def test_a_lease_must_last() -> None:
    """A zero time to live is a configuration error, caught at once."""
    with pytest.raises(ValueError, match="longer than zero"):
        RegionLeases(None, "node-a", timedelta(0))  # type: ignore[arg-type]  # never used
