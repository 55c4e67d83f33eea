"""Two dispatcher nodes as real processes on one database (DESIGN.md 9).

Each ``homecare serve --roles dispatcher`` claims its share of the regions;
one is killed with SIGKILL, and the other takes its regions once their
leases expire and offers the orders booked there.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from db.directory import load_caregivers, load_elders, load_regions, load_shifts
from db.orders import OrderStore
from dispatch.clock import WallClock
from dispatch.directory import CaregiverProfile, ElderProfile, Region, Shift
from dispatch.domain import Actor, ActorRole, BookingRequest, GeoPoint, TimeWindow
from dispatch.lifecycle import Trigger
from tests.conftest import Backing
from tests.test_service_process import Service

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REGIONS = ("proc-a", "proc-b")
_TTL_S = 3


def _place(n: int) -> GeoPoint:
    return GeoPoint(43.85 + n * 0.02, 125.30)


@pytest.fixture
async def regions_on_shift(clean: asyncpg.Pool) -> AsyncIterator[None]:
    """Two more regions, each with an elder and a caregiver on shift now."""
    now = datetime.now(UTC)
    async with clean.acquire() as conn:
        await load_regions(
            conn,
            [Region(r, r, r, "220102", _place(n)) for n, r in enumerate(REGIONS)],
        )
        await load_elders(
            conn,
            [
                ElderProfile(f"el-{r}", r, f"老人{n}", f"1380000010{n}", _place(n))
                for n, r in enumerate(REGIONS)
            ],
        )
        await load_caregivers(
            conn,
            [
                CaregiverProfile(
                    f"cg-{r}",
                    r,
                    f"护理员{n}",
                    f"1390000010{n}",
                    _place(n),
                    frozenset({"care", "nursing"}),
                )
                for n, r in enumerate(REGIONS)
            ],
        )
        await load_shifts(
            conn,
            [
                Shift(
                    f"cg-{r}",
                    now - timedelta(hours=1),
                    now + timedelta(hours=8),
                    _place(n),
                    _place(n),
                )
                for n, r in enumerate(REGIONS)
            ],
        )
    yield
    await clean.execute(
        'truncate "order", order_event, offer, region_lease, dispatcher_node cascade'
    )
    for table, column, prefix in (
        ("shift", "caregiver_id", "cg-"),
        ("caregiver", "caregiver_id", "cg-"),
        ("elder", "elder_id", "el-"),
        ("region", "region_id", ""),
    ):
        await clean.execute(
            f"delete from {table} where {column} = any($1::text[])",  # noqa: S608  # fixed names
            [prefix + r for r in REGIONS],
        )


async def _held(pool: asyncpg.Pool, service: Service) -> set[str]:
    rows = await pool.fetch(
        "select region_id from region_lease where holder like '%/' || $1::text"
        " || '/%' and expires_at > clock_timestamp()",
        str(service.process.pid),
    )
    return {row["region_id"] for row in rows}


async def _until_held(
    pool: asyncpg.Pool, service: Service, regions: set[str], timeout_s: float = 20
) -> None:
    async with asyncio.timeout(timeout_s):
        while await _held(pool, service) != regions:  # noqa: ASYNC110  # polls PostgreSQL
            await asyncio.sleep(0.1)


async def _split(pool: asyncpg.Pool, one: Service, other: Service) -> bool:
    """Whether both hold regions and none is held twice."""
    mine, theirs = await _held(pool, one), await _held(pool, other)
    return bool(mine) and bool(theirs) and not mine & theirs


async def _book_and_wait_for_offer(store: OrderStore, region_id: str, key: str) -> str:
    now = datetime.now(UTC)
    booking = await store.create(
        BookingRequest(
            f"el-{region_id}",
            "bp_glucose_check",
            TimeWindow(now, now + timedelta(hours=2)),
        ),
        Actor(ActorRole.OPERATOR, "op-1"),
        key,
    )
    order_id = booking.order.order_id
    async with asyncio.timeout(30):
        while (await store.get(order_id)).offer_provider_id is None:  # noqa: ASYNC110  # polls PostgreSQL
            await asyncio.sleep(0.1)
    return order_id


async def test_a_killed_dispatcher_nodes_regions_pass_to_the_other(
    backing: Backing, clean: asyncpg.Pool, regions_on_shift: None, tmp_path: Path
) -> None:
    env = {
        "HOMECARE_DATABASE_URL": backing.database_url,
        "HOMECARE_REDIS_URL": backing.redis_url,
        "HOMECARE_TOKEN_SECRET": "test-secret-of-at-least-16-bytes",
        "HOMECARE_LEASE_TTL_S": str(_TTL_S),
    }
    every = set(await clean.fetchval("select array_agg(region_id) from region"))
    store = OrderStore(clean, WallClock())
    first = Service(tmp_path / "a", env, ("--roles", "dispatcher"))
    second: Service | None = None
    try:
        await _until_held(clean, first, every)
        second = Service(tmp_path / "b", env, ("--roles", "dispatcher"))
        async with asyncio.timeout(30):
            while not await _split(clean, first, second):  # noqa: ASYNC110  # polls PostgreSQL
                await asyncio.sleep(0.1)
        moved = await _held(clean, first)
        assert moved | await _held(clean, second) == every
        victim_region = sorted(moved & set(REGIONS))[0]
        fence_before = await clean.fetchval(
            "select fence from region_lease where region_id = $1", victim_region
        )

        first.process.send_signal(signal.SIGKILL)
        first.wait()
        await _until_held(clean, second, every, timeout_s=_TTL_S * 5)
        order_id = await _book_and_wait_for_offer(store, victim_region, "after-kill")

        order = await store.get(order_id)
        assert order.offer_provider_id == f"cg-{victim_region}"
        assert [e.trigger for e in await store.events(order_id)] == [
            Trigger.BOOK,
            Trigger.OFFER,
        ]
        assert (
            await clean.fetchval(
                "select fence from region_lease where region_id = $1", victim_region
            )
            > fence_before
        )
    finally:
        for service in (first, second):
            if service is not None and service.process.poll() is None:
                service.process.send_signal(signal.SIGTERM)
                service.wait()
