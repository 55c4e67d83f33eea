"""Helpers of the API tests: tokens, a booking, and a server in a thread.

Synchronous clients (schemathesis, which uses ``requests``) cannot talk to
a server on the test's own event loop while the test blocks it, so
:func:`threaded_server` runs a whole node on a loop of its own thread.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from dispatch.app import build_app
from dispatch.domain import Actor, ActorRole
from dispatch.node import Node, open_node
from dispatch.tokens import TokenSigner
from tests.conftest import Backing, settings_for

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
BODY = {
    "elder_id": "el-1",
    "service_code": "meal_help",
    "earliest": T0.isoformat(),
    "latest": (T0 + timedelta(hours=2)).isoformat(),
}
_KEYS = itertools.count()
_SECRET = b"test-secret-of-at-least-16-bytes"


def bearer(role: ActorRole, actor_id: str) -> dict[str, str]:
    """An Authorization header for ``role`` and ``actor_id``."""
    token = TokenSigner(_SECRET).issue(
        Actor(role, actor_id), datetime.now(UTC), timedelta(hours=1)
    )
    return {"Authorization": f"Bearer {token}"}


OPERATOR = bearer(ActorRole.OPERATOR, "op-1")


async def book(http: aiohttp.ClientSession, url: str, **changes: Any) -> dict[str, Any]:
    """Book an order as operator ``op-1``; returns the order view."""
    async with http.post(
        f"{url}/v1/orders",
        json=BODY | changes,
        headers=OPERATOR | {"Idempotency-Key": f"key-{next(_KEYS)}"},
    ) as response:
        assert response.status == 201, await response.text()
        body: dict[str, Any] = await response.json()
        return body


@dataclass
class ThreadedServer:
    """A node serving HTTP from its own thread and event loop."""

    url: str = ""
    node: Node | None = None
    loop: asyncio.AbstractEventLoop | None = None

    def run(self, coro: Any, timeout_s: float = 30.0) -> Any:
        """Run ``coro`` on the server's loop and wait for its result."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)


@pytest.fixture
def threaded_server(backing: Backing, clean: asyncpg.Pool) -> Iterator[ThreadedServer]:
    """The API of a node on a loopback port, served from another thread."""
    server = ThreadedServer()
    ready = threading.Event()
    stop: list[asyncio.Event] = []

    async def main() -> None:
        settings = settings_for(backing)
        async with open_node(settings, backing.database_url, backing.redis_url) as node:
            runner = web.AppRunner(build_app(node, roles=frozenset({"api"})))
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            host, port = runner.addresses[0][:2]
            server.url, server.node = f"http://{host}:{port}", node
            server.loop = asyncio.get_running_loop()
            stop.append(asyncio.Event())
            ready.set()
            try:
                await stop[0].wait()
            finally:
                await runner.cleanup()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(60), "the threaded server did not start"
    yield server
    assert server.loop is not None
    server.loop.call_soon_threadsafe(stop[0].set)
    thread.join(30)
