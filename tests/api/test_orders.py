"""Order endpoints beyond booking: lists, explanation, reassign, close."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from dispatch import openapi
from dispatch.app import build_app
from dispatch.domain import Actor, ActorRole
from dispatch.lifecycle import Trigger
from dispatch.metrics import BOOKED_TO_OFFER, OFFER_TO_ACCEPT, OFFERS
from dispatch.node import Node
from tests.api.conftest import OPERATOR, bearer, book

pytestmark = pytest.mark.integration

SYSTEM = Actor(ActorRole.SYSTEM, "dispatcher")
CG1 = Actor(ActorRole.CAREGIVER, "cg-1")


async def _offer(node: Node, order_id: str, caregiver_id: str = "cg-1") -> None:
    await node.orders.transition(
        order_id,
        Trigger.OFFER,
        SYSTEM,
        payload={
            "provider_id": caregiver_id,
            "expires_at": "2099-01-01T00:00:00+00:00",
            "explanation": {"travel_min": 4.5, "skills_matched": ["care"]},
        },
    )


async def test_list_filters_and_pages_newest_first(server: str, node: Node) -> None:
    """Filters narrow the list; cursors walk it without repeats."""
    async with aiohttp.ClientSession(headers=OPERATOR) as http:
        ids = [(await book(http, server))["order_id"] for _ in range(5)]
        urgent = await book(http, server, priority="urgent")
        async with http.get(f"{server}/v1/orders?priority=urgent") as r:
            page = await r.json()
        assert [o["order_id"] for o in page["orders"]] == [urgent["order_id"]]
        seen: list[str] = []
        cursor = ""
        while True:
            query = "?limit=2&status=booked" + (f"&cursor={cursor}" if cursor else "")
            async with http.get(f"{server}/v1/orders{query}") as r:
                page = await r.json()
            seen += [o["order_id"] for o in page["orders"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert seen == [urgent["order_id"], *reversed(ids)]
        other = await book(http, server, elder_id="el-3")
        async with http.get(f"{server}/v1/orders?elder_id=el-3") as r:
            assert [o["order_id"] for o in (await r.json())["orders"]] == [
                other["order_id"]
            ]
        async with http.get(f"{server}/v1/orders?status=offered,accepted") as r:
            assert (await r.json())["orders"] == []
        async with http.get(f"{server}/v1/orders?cursor=zzz") as r:
            assert r.status == 400
        async with http.get(f"{server}/v1/orders?limit=0") as r:
            assert r.status == 400


async def test_provider_lists_only_its_orders(server: str, node: Node) -> None:
    """A caregiver's list holds only the order offered to them."""
    async with aiohttp.ClientSession(headers=OPERATOR) as http:
        mine = await book(http, server)
        await book(http, server)
    await _offer(node, mine["order_id"])
    headers = bearer(ActorRole.CAREGIVER, "cg-1")
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(f"{server}/v1/orders") as r:
            listed = [o["order_id"] for o in (await r.json())["orders"]]
    assert listed == [mine["order_id"]]


async def test_explanation_is_the_latest_offers(server: str, node: Node) -> None:
    """The explanation endpoint shows what the dispatcher recorded."""
    async with aiohttp.ClientSession(headers=OPERATOR) as http:
        order = await book(http, server)
        url = f"{server}/v1/orders/{order['order_id']}/explanation"
        async with http.get(url) as r:
            assert (await r.json())["explanation"] is None
        await _offer(node, order["order_id"])
        async with http.get(url) as r:
            body = await r.json()
    assert body["provider_id"] == "cg-1"
    assert body["offered_by"] == "system:dispatcher"
    assert body["explanation"]["travel_min"] == 4.5


async def test_reassign_offers_to_the_named_caregiver(server: str, node: Node) -> None:
    """Reassigning an accepted order gives it back and offers it to another."""
    async with aiohttp.ClientSession(headers=OPERATOR) as http:
        order = await book(http, server)
        order_id = order["order_id"]
        await _offer(node, order_id)
        await node.commands.act(CG1, order_id, Trigger.ACCEPT)
        url = f"{server}/v1/orders/{order_id}/reassign"
        async with http.post(url, json={"caregiver_id": "cg-2"}) as r:
            assert r.status == 400
        async with http.post(url, json={"reason": "x", "caregiver_id": "nobody"}) as r:
            assert (await r.json())["code"] == "unknown_caregiver"
        async with http.post(
            url, json={"reason": "family asked", "caregiver_id": "cg-2"}
        ) as r:
            body = await r.json()
            assert r.status == 200, body
    assert body["status"] == "offered"
    assert body["offer_provider_id"] == "cg-2"
    triggers = [e.trigger for e in await node.orders.events(order_id)]
    assert triggers[-2:] == [Trigger.GIVE_BACK, Trigger.OFFER]


async def test_close_records_the_review(server: str, node: Node) -> None:
    """Closing a completed order keeps rating, follow-up and settlement."""
    async with aiohttp.ClientSession(headers=OPERATOR) as http:
        order_id = (await book(http, server))["order_id"]
        await _offer(node, order_id)
        for trigger in (Trigger.ACCEPT, Trigger.DEPART):
            await node.commands.act(CG1, order_id, trigger)
        current = await node.orders.get(order_id)
        await node.commands.check_in(CG1, order_id, current.location)
        await node.commands.act(CG1, order_id, Trigger.START)
        await node.commands.act(
            CG1, order_id, Trigger.COMPLETE, payload={"record": {"tasks": ["meal"]}}
        )
        close = {"record_ok": True, "settlement_cents": 2500, "rating": 5}
        url = f"{server}/v1/orders/{order_id}/close"
        async with http.post(url, json=close | {"rating": 9}) as r:
            assert r.status == 400
        async with http.post(url, json=close | {"follow_up": "call in a week"}) as r:
            body = await r.json()
            assert r.status == 200, body
        async with http.post(url, json=close) as r:
            assert (await r.json())["code"] == "illegal_transition"
    assert body["status"] == "closed"
    record = (await node.orders.get(order_id)).record["close"]
    assert record["settlement_cents"] == 2500
    assert record["follow_up"] == "call in a week"


async def test_committed_openapi_document_matches_the_code(node: Node) -> None:
    """docs/openapi.json is what the code generates (run python -m dispatch.openapi)."""
    app = build_app(node)
    generated = openapi.dumps(openapi.document(openapi.app_routes(app)))
    committed = Path(__file__).parents[2] / "docs" / "openapi.json"
    assert committed.read_text(encoding="utf-8") == generated


async def test_openapi_is_served(server: str) -> None:
    """The document is served at /v1/openapi.json without a token."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server}/v1/openapi.json") as r:
            doc = await r.json()
    assert doc["openapi"] == "3.1.0"
    assert "/v1/orders/{order_id}/reassign" in doc["paths"]


async def test_metrics_use_route_templates_and_no_ids(server: str, node: Node) -> None:
    """Request latency is labelled by route template, never by an order id."""
    async with aiohttp.ClientSession(headers=OPERATOR) as http:
        order = await book(http, server)
        async with http.get(f"{server}/v1/orders/{order['order_id']}") as r:
            assert r.status == 200
        async with http.get(f"{server}/metrics") as r:
            text = await r.text()
            assert r.content_type == "text/plain"
    assert 'route="/v1/orders/{order_id}"' in text
    assert order["order_id"] not in text
    assert "# TYPE homecare_http_request_duration_seconds histogram" in text
    assert "# TYPE homecare_offers_total counter" in text


async def test_metrics_follow_offers_and_acceptances(server: str, node: Node) -> None:
    """Offers, booked-to-offer and offer-to-accept come from the committed log."""
    async with aiohttp.ClientSession(headers=OPERATOR) as http:
        async with http.get(f"{server}/metrics") as r:
            assert r.status == 200  # the first scrape starts at the log's end
        offers = OFFERS.value("urgent")
        waits = BOOKED_TO_OFFER.count("urgent")
        accepts = OFFER_TO_ACCEPT.count("urgent")
        order_id = (await book(http, server, priority="urgent"))["order_id"]
        await _offer(node, order_id)
        await node.commands.act(CG1, order_id, Trigger.ACCEPT)
        async with http.get(f"{server}/metrics") as r:
            text = await r.text()
    assert OFFERS.value("urgent") == offers + 1
    assert BOOKED_TO_OFFER.count("urgent") == waits + 1
    assert OFFER_TO_ACCEPT.count("urgent") == accepts + 1
    assert 'homecare_offer_to_accept_seconds_count{priority="urgent"}' in text


async def test_concurrent_retries_book_once(server: str, node: Node) -> None:
    """Twenty simultaneous retries make one order; the rest replay it or get 409."""
    headers = OPERATOR | {"Idempotency-Key": "burst"}
    body = {
        "elder_id": "el-2",
        "service_code": "meal_help",
        "earliest": "2026-12-03T09:00:00+00:00",
        "latest": "2026-12-03T11:00:00+00:00",
    }
    async with aiohttp.ClientSession(headers=headers) as http:

        async def one() -> tuple[int, str, str]:
            async with http.post(f"{server}/v1/orders", json=body) as r:
                answer = await r.json()
                replayed = r.headers.get("Idempotent-Replayed", "")
                return r.status, answer.get("order_id", answer.get("code")), replayed

        results = await asyncio.gather(*(one() for _ in range(20)))
    assert {status for status, _, _ in results} <= {201, 409}
    created = [r for r in results if r[0] == 201 and not r[2]]
    assert len(created) == 1
    assert {r[1] for r in results if r[0] == 201} == {created[0][1]}
    assert {r[1] for r in results if r[0] == 409} <= {"idempotency_in_progress"}
    assert await node.pool.fetchval('select count(*) from "order"') == 1
