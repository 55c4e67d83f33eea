"""The orders API over real HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from dispatch.domain import ActorRole
from dispatch.node import Node
from tests.conftest import token_for

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
BODY = {
    "elder_id": "el-1",
    "service_code": "meal_help",
    "earliest": T0.isoformat(),
    "latest": (T0 + timedelta(hours=2)).isoformat(),
}


def _auth(
    node: Node, role: ActorRole = ActorRole.OPERATOR, who: str = "op-1"
) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(node, role, who)}"}


async def test_booking_needs_an_idempotency_key(server: str, node: Node) -> None:
    """Without the header the booking is refused with 400."""
    async with aiohttp.ClientSession(headers=_auth(node)) as http:
        async with http.post(f"{server}/v1/orders", json=BODY) as response:
            assert response.status == 400
            assert (await response.json())["code"] == "missing_idempotency_key"


async def test_repeated_booking_returns_the_first_response(
    server: str, node: Node
) -> None:
    """The same key and body give the same order, marked as replayed."""
    async with aiohttp.ClientSession(headers=_auth(node)) as http:
        headers = {"Idempotency-Key": "call-1"}
        async with http.post(f"{server}/v1/orders", json=BODY, headers=headers) as r1:
            first = await r1.json()
            assert r1.status == 201
        async with http.post(f"{server}/v1/orders", json=BODY, headers=headers) as r2:
            assert r2.status == 201
            assert r2.headers["Idempotent-Replayed"] == "true"
            assert await r2.json() == first
        changed = BODY | {"notes": "different"}
        async with http.post(
            f"{server}/v1/orders", json=changed, headers=headers
        ) as r3:
            assert r3.status == 422
            assert (await r3.json())["code"] == "idempotency_mismatch"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (BODY | {"service_code": "nope"}, "unknown_service"),
        (BODY | {"latest": (T0 - timedelta(hours=1)).isoformat()}, "bad_window"),
        (BODY | {"earliest": "2026-12-03T09:00:00"}, "invalid"),
        (BODY | {"surprise": 1}, "invalid"),
        ([1, 2], "invalid"),
    ],
)
async def test_bad_bookings_get_stable_codes(
    server: str, node: Node, body: object, code: str
) -> None:
    """Each kind of bad input gets its own stable code and a 400."""
    async with aiohttp.ClientSession(headers=_auth(node)) as http:
        async with http.post(
            f"{server}/v1/orders", json=body, headers={"Idempotency-Key": "bad"}
        ) as response:
            assert response.status == 400
            assert (await response.json())["code"] == code
    assert await node.pool.fetchval('select count(*) from "order"') == 0


async def test_missing_or_forged_token_is_401(server: str) -> None:
    """Without a valid token nothing is served."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server}/v1/orders/x") as response:
            assert response.status == 401
        headers = {"Authorization": "Bearer abc.def"}
        async with http.get(f"{server}/v1/orders/x", headers=headers) as response:
            assert response.status == 401


async def test_other_caregiver_cannot_see_an_order(server: str, node: Node) -> None:
    """An order not offered or assigned to a caregiver is not found for them."""
    async with aiohttp.ClientSession(headers=_auth(node)) as http:
        async with http.post(
            f"{server}/v1/orders", json=BODY, headers={"Idempotency-Key": "k"}
        ) as response:
            order_id = (await response.json())["order_id"]
    headers = _auth(node, ActorRole.CAREGIVER, "cg-9")
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(f"{server}/v1/orders/{order_id}") as response:
            assert response.status == 404


async def test_timeline_lists_the_booking(server: str, node: Node) -> None:
    """The events endpoint shows the book event first."""
    async with aiohttp.ClientSession(headers=_auth(node)) as http:
        async with http.post(
            f"{server}/v1/orders", json=BODY, headers={"Idempotency-Key": "k"}
        ) as response:
            order_id = (await response.json())["order_id"]
        async with http.get(f"{server}/v1/orders/{order_id}/events") as response:
            events = await response.json()
    assert [e["trigger"] for e in events] == ["book"]


async def test_readyz_reports_both_stores(server: str) -> None:
    """Readiness checks PostgreSQL and Redis."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server}/readyz") as response:
            assert response.status == 200
            assert (await response.json())["checks"] == {
                "postgresql": "ok",
                "redis": "ok",
            }
