"""The dispatcher role inside a running node: HTTP booking to offer."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from dispatch.app import build_app
from dispatch.clock import SimulatedClock
from dispatch.domain import ActorRole
from dispatch.node import open_node
from dispatch.roles import DISPATCHING
from tests.conftest import Backing, settings_for, token_for

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


async def test_booked_order_is_offered_by_the_running_dispatcher(
    backing: Backing, clean: asyncpg.Pool
) -> None:
    """An order booked over HTTP is offered through the event log in time."""
    settings = settings_for(backing)
    clock = SimulatedClock(T0, speed=1.0)
    async with open_node(
        settings, backing.database_url, backing.redis_url, clock=clock
    ) as node:
        app = build_app(node, roles=frozenset({"api", "dispatcher"}))
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        headers = {
            "Authorization": f"Bearer {token_for(node, ActorRole.OPERATOR, 'op-1')}",
            "Idempotency-Key": "role-test",
        }
        body = {
            "elder_id": "el-1",
            "service_code": "bp_glucose_check",
            "earliest": T0.isoformat(),
            "latest": (T0 + timedelta(hours=2)).isoformat(),
        }
        try:
            async with aiohttp.ClientSession() as http:
                async with http.post(
                    f"http://{host}:{port}/v1/orders", json=body, headers=headers
                ) as response:
                    assert response.status == 201
                    order_id = (await response.json())["order_id"]
                async with asyncio.timeout(10):
                    while (await node.orders.get(order_id)).offer_provider_id is None:  # noqa: ASYNC110  # polls PostgreSQL
                        await asyncio.sleep(0.02)
            assert (await node.orders.get(order_id)).offer_provider_id == "cg-1"
            dispatcher = app[DISPATCHING].current
            assert dispatcher is not None
            assert dispatcher.stats["offers"] == 1
        finally:
            await runner.cleanup()
