"""Two dispatcher nodes share the regions through leases (DESIGN.md 9).

Both run in this process on one database, each with its own holder name,
leases, event-log cursors and fence, as two nodes would.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import asyncpg
import pytest

from db.directory import load_caregivers, load_elders, load_regions, load_shifts
from dispatch import metrics
from dispatch.clock import SimulatedClock
from dispatch.directory import CaregiverProfile, ElderProfile, Region, Shift
from dispatch.domain import Actor, ActorRole, BookingRequest, GeoPoint, TimeWindow
from dispatch.lifecycle import Trigger
from dispatch.node import Node, open_node
from dispatch.roles import Dispatching
from tests.conftest import Backing, settings_for
from tests.fixtures import REGION, SHIFT_DAY

pytestmark = pytest.mark.integration

T0 = SHIFT_DAY + timedelta(hours=9)
RENEW = timedelta(milliseconds=100)
SECOND = Region(
    "220102-02",
    "南关区第2社区",
    "Nanguan community 2",
    "220102",
    GeoPoint(43.9002, 125.3572),
)
SECOND_ELDER = ElderProfile(
    elder_id="el-b1",
    region_id=SECOND.region_id,
    name="测试乙",
    phone="13800000099",
    home=GeoPoint(43.9002, 125.3572),
)
SECOND_CAREGIVER = CaregiverProfile(
    caregiver_id="cg-b1",
    region_id=SECOND.region_id,
    name="护理员乙",
    phone="13900000099",
    home=GeoPoint(43.9012, 125.3572),
    skills=frozenset({"care", "nursing"}),
)


@pytest.fixture
async def second_region(clean: asyncpg.Pool) -> AsyncIterator[None]:
    """A second region with one elder and one caregiver on shift."""
    async with clean.acquire() as conn:
        await load_regions(conn, [SECOND])
        await load_elders(conn, [SECOND_ELDER])
        await load_caregivers(conn, [SECOND_CAREGIVER])
        await load_shifts(
            conn,
            [
                Shift(
                    caregiver_id="cg-b1",
                    starts_at=SHIFT_DAY + timedelta(hours=8),
                    ends_at=SHIFT_DAY + timedelta(hours=18),
                    start=SECOND_CAREGIVER.home,
                    end=SECOND_CAREGIVER.home,
                )
            ],
        )
    yield
    await clean.execute(
        'truncate "order", order_event, offer, region_lease, dispatcher_node cascade'
    )
    await clean.execute("delete from shift where caregiver_id = 'cg-b1'")
    await clean.execute("delete from caregiver where caregiver_id = 'cg-b1'")
    await clean.execute("delete from elder where elder_id = 'el-b1'")
    await clean.execute("delete from region where region_id = $1", SECOND.region_id)


async def _until(ready: Callable[[], bool], what: str, timeout_s: float = 10) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            while not ready():  # noqa: ASYNC110  # the leases change in other tasks
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out waiting until {what}") from None


def _serving(dispatching: Dispatching, *regions: str) -> Callable[[], bool]:
    def ready() -> bool:
        current = dispatching.current
        return current is not None and set(dispatching.shards.fences) == set(regions)

    return ready


async def _cursors_ready(pool: asyncpg.Pool, *nodes: Dispatching) -> None:
    names = [n for node in nodes if node.current for n in node.current.cursors]
    query = "select count(*) from outbox_cursor where name = any($1::text[])"
    async with asyncio.timeout(10):
        while await pool.fetchval(query, names) < 2 * len(nodes):  # noqa: ASYNC110  # polls PostgreSQL
            await asyncio.sleep(0.02)


async def _book(node: Node, elder_id: str, key: str) -> str:
    booking = await node.orders.create(
        BookingRequest(
            elder_id, "bp_glucose_check", TimeWindow(T0, T0 + timedelta(hours=2))
        ),
        Actor(ActorRole.OPERATOR, "op-1"),
        key,
    )
    return booking.order.order_id


async def _offered_to(node: Node, order_id: str) -> str:
    async with asyncio.timeout(10):
        while (order := await node.orders.get(order_id)).offer_provider_id is None:  # noqa: ASYNC110  # polls PostgreSQL
            await asyncio.sleep(0.02)
    assert order.offer_provider_id is not None
    return order.offer_provider_id


async def _triggers(node: Node, order_id: str) -> list[Trigger]:
    return [e.trigger for e in await node.orders.events(order_id)]


async def test_two_nodes_split_the_regions_and_offer_each_order_once(
    backing: Backing, second_region: None
) -> None:
    clock = SimulatedClock(T0, speed=1.0)
    async with open_node(
        settings_for(backing), backing.database_url, backing.redis_url, clock=clock
    ) as node:
        first = Dispatching(node, None, "node-a", renew_every=RENEW)
        second = Dispatching(node, None, "node-b", renew_every=RENEW)
        running = [asyncio.create_task(first.shards.run())]
        try:
            await _until(
                _serving(first, REGION.region_id, SECOND.region_id),
                "the lone node serves both regions",
            )
            running.append(asyncio.create_task(second.shards.run()))
            await _until(_serving(first, REGION.region_id), "node-a gives one up")
            await _until(_serving(second, SECOND.region_id), "node-b takes it")
            assert second.shards.fences[SECOND.region_id] == 2
            assert metrics.REGIONS_HELD.value("node-a") == 1
            assert metrics.REGIONS_HELD.value("node-b") == 1
            await _cursors_ready(node.pool, first, second)

            near_first = await _book(node, "el-1", "two-nodes-1")
            near_second = await _book(node, "el-b1", "two-nodes-2")
            assert await _offered_to(node, near_first) in {"cg-1", "cg-2", "cg-3"}
            assert await _offered_to(node, near_second) == "cg-b1"
            await asyncio.sleep(0.5)  # room for a second offer, were one made
            assert await _triggers(node, near_first) == [Trigger.BOOK, Trigger.OFFER]
            assert await _triggers(node, near_second) == [Trigger.BOOK, Trigger.OFFER]
            assert first.current is not None
            assert second.current is not None
            assert first.current.stats["offers"] == 1
            assert second.current.stats["offers"] == 1

            # node-b stops; its region passes back with the next fence
            running.pop().cancel()
            await _until(
                _serving(first, REGION.region_id, SECOND.region_id),
                "node-a takes the region back",
            )
            assert first.shards.fences[SECOND.region_id] == 3
            assert metrics.REGIONS_HELD.value("node-a") == 2
            assert metrics.REGIONS_HELD.value("node-b") == 0
            assert metrics.REGION_HANDOVERS.value("node-a") == 3
            await _cursors_ready(node.pool, first)
            later = await _book(node, "el-b1", "two-nodes-3")
            assert await _offered_to(node, later) == "cg-b1"
            assert first.current is not None
            assert first.current.stats["offers"] == 1
        finally:
            for task in running:
                task.cancel()
            for task in running:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
