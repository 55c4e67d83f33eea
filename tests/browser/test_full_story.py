"""The whole hotline story on a whole node: API, realtime edge, dispatcher.

Nothing is driven behind the console's back: the dispatcher makes the
offers, simulated phones of the three caregivers (the protocol's client
side, :mod:`ws.client`) accept them and walk the visit, and the console
follows everything through ``/v1/console/stream``. The node runs on a
simulated clock at the test shifts' morning, at real speed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from dispatch.app import ROLES, build_app
from dispatch.clock import SimulatedClock
from dispatch.domain import ActorRole
from dispatch.node import Node, open_node
from tests.browser.test_console import ARGS, ARTIFACTS, CHROMIUM
from tests.conftest import Backing, settings_for, token_for
from tests.fixtures import CAREGIVERS, ELDERS
from ws.client import Session

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.slow]

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


@dataclass
class Whole:
    """A node with every role, its URL and the caregivers' phones."""

    node: Node
    url: str
    phones: dict[str, Session]

    async def offered(self, order_id: str, timeout_s: float = 10.0) -> str:
        """Wait until a phone is offered ``order_id``; returns its caregiver."""
        async with asyncio.timeout(timeout_s):
            while True:
                order = await self.node.orders.get(order_id)
                holder = order.offer_provider_id
                if holder in self.phones:
                    return holder
                await asyncio.sleep(0.05)


@pytest.fixture
async def whole(backing: Backing, clean: asyncpg.Pool) -> AsyncIterator[Whole]:
    """Every role of a node on a loopback port, with three caregivers online."""
    clock = SimulatedClock(T0, speed=1.0)
    settings = settings_for(backing)
    async with open_node(
        settings, backing.database_url, backing.redis_url, clock=clock
    ) as node:
        runner = web.AppRunner(build_app(node, roles=ROLES))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        phones = {}
        for caregiver in CAREGIVERS:
            token = token_for(node, ActorRole.CAREGIVER, caregiver.caregiver_id)
            session = await Session.open(f"ws://{host}:{port}/v1/caregiver", token)
            await session.request("hello")
            await session.request(
                "location", lat=caregiver.home.lat, lon=caregiver.home.lon
            )
            phones[caregiver.caregiver_id] = session
        try:
            yield Whole(node, f"http://{host}:{port}", phones)
        finally:
            for session in phones.values():
                await session.close()
            await runner.cleanup()


@pytest.fixture
async def console(whole: Whole) -> AsyncIterator[Any]:
    """The console open as op-1, in UTC, live on the console stream."""
    from playwright.async_api import async_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    token = token_for(whole.node, ActorRole.OPERATOR, "op-1")
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = await browser.new_context(
            timezone_id="UTC", viewport={"width": 1400, "height": 1000}
        )
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        await page.goto(f"{whole.url}/console/#token={token}")
        await page.wait_for_selector("body[data-ready=true]", timeout=10_000)
        await page.wait_for_selector("#live.on", timeout=10_000)
        yield page
        await browser.close()
    assert errors == []


async def _status(page: Any, status: str, timeout_ms: int = 10_000) -> None:
    await page.wait_for_function(
        "s => document.getElementById('o-status').textContent === s",
        arg=status,
        timeout=timeout_ms,
    )


async def test_hotline_story_on_a_whole_node(console: Any, whole: Whole) -> None:
    """Find by phone, book, offered and accepted live, reassign, close."""
    page = console
    # the map draws the three caregivers from their phones' locations
    await page.wait_for_selector("#map[data-caregivers='3']", timeout=10_000)
    await page.fill("#phone", ELDERS[0].phone)
    await page.click("#find button")
    await page.wait_for_selector("#book:not([hidden])")
    await page.select_option("#service", "bp_glucose_check")
    await page.fill("#earliest", "2026-12-03T09:00")
    await page.fill("#latest", "2026-12-03T11:00")
    await page.click("#book button[type=submit]")
    await page.wait_for_selector("#order:not([hidden])", timeout=5_000)
    order_id = await page.get_attribute("#order", "data-order-id")
    assert order_id

    first = await whole.offered(order_id)
    await _status(page, "offered")
    await whole.phones[first].request("accept", order_id=order_id)
    await _status(page, "accepted")
    await page.wait_for_selector("#o-timeline li[data-trigger=accept]")
    explanation = await page.text_content("#o-explanation") or ""
    assert first in explanation
    assert "增加路程" in explanation
    assert "匹配技能" in explanation
    await page.screenshot(path=ARTIFACTS / "whole-01-accepted.png")
    # 09:00 on the node's clock: the visit due by 11:00 is not late
    assert await page.locator("#q-late li").count() == 0

    other = next(c for c in whole.phones if c != first)
    await page.fill("#r-caregiver", other)
    await page.fill("#r-reason", "the elder asked for another caregiver")
    await page.click("#reassign button")
    await page.wait_for_function(
        "c => document.getElementById('o-provider').textContent === c",
        arg=other,
        timeout=10_000,
    )
    phone = whole.phones[other]
    home = ELDERS[0].home
    for step, fields in (
        ("accept", {}),
        ("en_route", {}),
        ("check_in", {"lat": home.lat, "lon": home.lon}),
        ("start", {}),
        ("complete", {"record": {"tasks": [{"task": "check", "outcome": "done"}]}}),
    ):
        await phone.request(step, order_id=order_id, **fields)
    await _status(page, "completed")
    await page.fill("#cl-settlement", "2000")
    await page.click("#close button")
    await _status(page, "closed")
    await page.screenshot(path=ARTIFACTS / "whole-02-closed.png")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{whole.url}/metrics") as r:
            metrics = await r.text()
    assert 'homecare_websocket_connections{kind="caregiver"} 3' in metrics
    assert 'homecare_websocket_connections{kind="console"} 1' in metrics


async def test_emergency_alert_within_a_second_on_a_whole_node(
    console: Any, whole: Whole
) -> None:
    """A device's emergency flashes the open console in under a second."""
    token = token_for(whole.node, ActorRole.DEVICE, "sos-3")
    body = {
        "elder_id": ELDERS[1].elder_id,
        "service_code": "emergency_response",
        "priority": "emergency",
        "earliest": T0.isoformat(),
        "latest": (T0 + timedelta(minutes=30)).isoformat(),
    }
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "sos-whole"}
    async with aiohttp.ClientSession(headers=headers) as http:
        started = time.perf_counter()
        async with http.post(f"{whole.url}/v1/orders", json=body) as r:
            assert r.status == 201
    await console.wait_for_selector("#alert.loud:not([hidden])", timeout=3_000)
    elapsed_s = time.perf_counter() - started
    await console.screenshot(path=ARTIFACTS / "whole-03-emergency.png")
    (ARTIFACTS / "alert-latency-whole.txt").write_text(f"{elapsed_s:.3f} s\n")
    assert elapsed_s < 1.0, f"alert after {elapsed_s:.2f} s"
