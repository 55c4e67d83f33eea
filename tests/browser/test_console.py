"""The operator console in headless Chromium (Debian's package, via Playwright).

The hotline story: find the elder by phone, book, watch the order offered
and accepted without reloading, read the timeline and the explanation,
reassign, close; and an emergency raises a loud alert within a second.
Screenshots go to ``test-artifacts/``.

The node here runs the API role only, so the test plays the dispatcher and
the caregiver's phone through the same store calls they use (an offer by
the system actor, an accept by the caregiver); the console follows them
through its live feed, or by polling when the websocket edge is absent.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from dispatch.domain import Actor, ActorRole
from dispatch.lifecycle import Trigger
from dispatch.node import Node
from tests.api.conftest import BODY, bearer
from tests.conftest import token_for

pytestmark = [pytest.mark.browser, pytest.mark.integration]

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parents[2] / "test-artifacts" / "browser"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SYSTEM = Actor(ActorRole.SYSTEM, "dispatcher")


@pytest.fixture
async def page(server: str, node: Node) -> AsyncIterator[Any]:
    """The console open in headless Chromium as operator op-1."""
    if not shutil.which(CHROMIUM):
        pytest.fail("Debian's chromium is missing: apt-get install chromium")
    from playwright.async_api import async_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    token = token_for(node, ActorRole.OPERATOR, "op-1")
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        tab = await browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        tab.on("pageerror", lambda e: errors.append(str(e)))
        await tab.goto(f"{server}/console/#token={token}")
        await tab.wait_for_selector("body[data-ready=true]", timeout=10_000)
        yield tab
        await browser.close()
    assert errors == []


async def _offer(node: Node, order_id: str, caregiver_id: str) -> None:
    await node.orders.transition(
        order_id,
        Trigger.OFFER,
        SYSTEM,
        payload={
            "provider_id": caregiver_id,
            "expires_at": "2099-01-01T00:00:00+00:00",
            "explanation": {
                "travel_added_min": 6.0,
                "skills_matched": ["care"],
                "continuity": False,
                "alternatives": [
                    {
                        "caregiver_id": "cg-3",
                        "travel_added_min": 9.5,
                        "why_lost": "farther",
                    }
                ],
            },
        },
    )


async def _status(page: Any, status: str) -> None:
    await page.wait_for_function(
        "s => document.getElementById('o-status').textContent === s",
        arg=status,
        timeout=5_000,
    )


async def test_operator_books_watches_reassigns_and_closes(
    page: Any, node: Node
) -> None:
    """The whole hotline story, without reloading the page."""
    await page.screenshot(path=ARTIFACTS / "01-console.png")
    await page.fill("#phone", "13800000001")
    await page.click("#find button")
    await page.wait_for_selector("#book:not([hidden])")
    await page.select_option("#service", "meal_help")
    await page.click("#book button[type=submit]")
    await page.wait_for_selector("#order:not([hidden])", timeout=5_000)
    order_id = await page.get_attribute("#order", "data-order-id")
    assert order_id
    await _status(page, "booked")
    await page.screenshot(path=ARTIFACTS / "02-booked.png")

    await _offer(node, order_id, "cg-1")
    await _status(page, "offered")
    await node.commands.act(
        Actor(ActorRole.CAREGIVER, "cg-1"), order_id, Trigger.ACCEPT
    )
    await _status(page, "accepted")
    await page.wait_for_selector("#o-timeline li[data-trigger=accept]", timeout=5_000)
    explanation = await page.text_content("#o-explanation") or ""
    assert "增加路程: 6 min" in explanation or "增加路程: 6.0 min" in explanation
    assert "cg-3 (+9.5 min): farther" in explanation
    await page.screenshot(path=ARTIFACTS / "03-accepted.png")

    await page.fill("#r-caregiver", "cg-2")
    await page.fill("#r-reason", "elder asked for cg-2")
    await page.click("#reassign button")
    await _status(page, "offered")
    assert await page.text_content("#o-provider") == "cg-2"

    cg2 = Actor(ActorRole.CAREGIVER, "cg-2")
    for trigger in (Trigger.ACCEPT, Trigger.DEPART):
        await node.commands.act(cg2, order_id, trigger)
    order = await node.orders.get(order_id)
    await node.commands.check_in(cg2, order_id, order.location)
    await node.commands.act(cg2, order_id, Trigger.START)
    await node.commands.act(
        cg2, order_id, Trigger.COMPLETE, payload={"record": {"tasks": ["meal"]}}
    )
    await _status(page, "completed")
    await page.fill("#cl-settlement", "2500")
    await page.fill("#cl-follow", "call back next week")
    await page.click("#close button")
    await _status(page, "closed")
    await page.screenshot(path=ARTIFACTS / "04-closed.png")
    closed = await node.orders.get(order_id)
    assert closed.record["close"]["settlement_cents"] == 2500


async def test_emergency_raises_an_alert_within_a_second(
    page: Any, server: str
) -> None:
    """A device's emergency booking flashes the alert banner in under 1 s."""
    body = BODY | {"priority": "emergency", "service_code": "emergency_response"}
    headers = bearer(ActorRole.DEVICE, "sos-7") | {"Idempotency-Key": "sos-1"}
    async with aiohttp.ClientSession(headers=headers) as http:
        started = time.perf_counter()
        async with http.post(f"{server}/v1/orders", json=body) as r:
            assert r.status == 201
    await page.wait_for_selector("#alert.loud:not([hidden])", timeout=2_000)
    elapsed_s = time.perf_counter() - started
    await page.screenshot(path=ARTIFACTS / "05-emergency.png")
    (ARTIFACTS / "alert-latency-polling.txt").write_text(f"{elapsed_s:.3f} s\n")
    assert elapsed_s < 1.0, f"alert after {elapsed_s:.2f} s"


async def test_english_switch_translates_the_page(page: Any) -> None:
    """The language switch turns the Chinese console into English."""
    assert await page.text_content("h1") == "居家养老调度台"
    await page.click("#lang")
    assert await page.text_content("h1") == "Home-care dispatch console"
