"""A node's realtime edge on a loopback port, and helpers to drive it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web
from redis.asyncio import Redis

import ws
from dispatch.app import build_app
from dispatch.domain import Actor, ActorRole, BookingRequest, Priority, TimeWindow
from dispatch.lifecycle import Order, Trigger
from dispatch.node import Node
from tests.conftest import token_for
from ws.client import Session
from ws.registry import Limits
from ws.session import Edge

SYSTEM = Actor(ActorRole.SYSTEM, "dispatcher")
OPERATOR = Actor(ActorRole.OPERATOR, "op-1")

#: Limits of the tests' gateways: the defaults but a short idle timeout.
TEST_LIMITS = Limits(idle_timeout_s=30.0)


@dataclass
class Gateway:
    """A running edge: its URLs, node and state."""

    base: str
    node: Node
    edge: Edge
    prefix: str
    runner: web.AppRunner

    @property
    def phone_url(self) -> str:
        """The caregiver gateway."""
        return f"{self.base}/v1/caregiver"

    @property
    def intake_url(self) -> str:
        """The intake stream."""
        return f"{self.base}/v1/intake"

    @property
    def console_url(self) -> str:
        """The console feed."""
        return f"{self.base}/v1/console/stream"

    def token(self, role: ActorRole, actor_id: str) -> str:
        """A token valid for an hour."""
        return token_for(self.node, role, actor_id)

    async def phone(
        self, provider_id: str = "cg-1", role: ActorRole = ActorRole.CAREGIVER
    ) -> tuple[Session, dict[str, Any]]:
        """A connected phone that said hello, and its welcome."""
        session = await Session.open(self.phone_url, self.token(role, provider_id))
        welcome = await session.request("hello")
        return session, welcome


async def start_gateway(
    node: Node,
    prefix: str,
    limits: Limits = TEST_LIMITS,
    *,
    port: int = 0,
    **options: Any,
) -> Gateway:
    """An API and edge app on a loopback port (a free one by default)."""
    app = build_app(node, roles=frozenset({"api"}))
    edge = ws.install(app, node, limits=limits, prefix=prefix, **options)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    host, port = runner.addresses[0][:2]
    return Gateway(f"ws://{host}:{port}", node, edge, prefix, runner)


async def drop_keys(redis: Redis, prefix: str) -> None:
    """Delete every Redis key under ``prefix``."""
    keys = [key async for key in redis.scan_iter(match=f"{prefix}*", count=1000)]
    if keys:
        await redis.delete(*keys)


@pytest.fixture
async def gateway(node: Node, key_prefix: str) -> AsyncIterator[Gateway]:
    """The edge of a fresh node, with Redis keys of this test alone."""
    running = await start_gateway(node, key_prefix)
    yield running
    await running.runner.cleanup()
    await drop_keys(node.redis, key_prefix)


async def book(
    node: Node,
    *,
    elder_id: str = "el-1",
    service_code: str = "meal_help",
    priority: Priority = Priority.ROUTINE,
) -> Order:
    """A booked order, due within the next hours."""
    now = node.clock.now()
    booking = await node.orders.create(
        BookingRequest(
            elder_id,
            service_code,
            TimeWindow(now, now + timedelta(hours=2)),
            priority=priority,
            notes="ring twice",
        ),
        OPERATOR,
        uuid.uuid4().hex,
    )
    return booking.order


async def offer(node: Node, order_id: str, provider_id: str) -> Order:
    """Offer an order as the dispatcher does."""
    order, _ = await node.orders.transition(
        order_id,
        Trigger.OFFER,
        SYSTEM,
        payload={
            "provider_id": provider_id,
            "expires_at": (node.clock.now() + timedelta(minutes=5)).isoformat(),
        },
    )
    return order
