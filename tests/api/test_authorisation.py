"""The authorisation matrix: every operation, every role, objects not its own.

Operations come from the OpenAPI document the app serves; a route the app
serves without an ``@allow`` rule fails :func:`test_every_route_has_a_rule`.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from dispatch.app import build_app
from dispatch.domain import Actor, ActorRole
from dispatch.http import allowed_roles, middlewares
from dispatch.lifecycle import Trigger
from dispatch.node import Node
from tests.api.conftest import OPERATOR, bearer, book
from tests.fixtures import CAREGIVERS, ELDERS, VENDOR

pytestmark = pytest.mark.integration

R = ActorRole
STAFF = {R.OPERATOR, R.ADMIN}
# Actors that own nothing in the test directory: no order offered to them,
# none booked by them.
STRANGERS = {
    R.OPERATOR: "op-stranger",
    R.ADMIN: "ad-stranger",
    R.CAREGIVER: "cg-3",
    R.VENDOR: "vd-stranger",
    R.PARTNER: "pt-stranger",
    R.DEVICE: "dv-stranger",
}
# Bodies that would change something if the call were let through.
BODIES: dict[str, Any] = {
    "/v1/orders": {
        "elder_id": "el-1",
        "service_code": "meal_help",
        "earliest": "2026-12-03T09:00:00+00:00",
        "latest": "2026-12-03T11:00:00+00:00",
    },
    "/v1/orders/{order_id}/cancel": {"reason": "not mine"},
    "/v1/orders/{order_id}/reassign": {"reason": "not mine", "caregiver_id": "cg-3"},
    "/v1/orders/{order_id}/close": {"record_ok": True, "settlement_cents": 1},
    "/v1/tokens": {"role": "caregiver", "actor_id": "cg-1"},
}
# Operations open to a role by their nature, where "not its own" means an
# empty or narrowed answer rather than a refusal.
OPEN = {
    ("get", "/v1/orders"),  # lists only what the caller may see
    ("get", "/v1/services"),  # the public catalogue
    ("get", "/v1/regions"),  # the communities
    ("post", "/v1/orders"),  # booking creates an object of one's own
}
PUBLIC = {"/healthz", "/readyz", "/metrics", "/v1/openapi.json"}


def _secrets(order_id: str) -> list[str]:
    return [
        order_id,
        *(e.name for e in ELDERS),
        *(e.phone for e in ELDERS),
        *(c.name for c in CAREGIVERS),
        *(c.phone for c in CAREGIVERS),
        VENDOR.name,
    ]


async def test_every_route_has_a_rule(node: Node) -> None:
    """Each route of the full application declares who may call it."""
    app = build_app(node)
    missing = [
        f"{r.method} {r.resource.canonical if r.resource else '?'}"
        for r in app.router.routes()
        if allowed_roles(r.handler) is None
    ]
    assert missing == []


async def test_undeclared_handler_is_refused_to_everyone() -> None:
    """The route walk finds a handler without a rule, and it is refused with 403."""

    async def forgotten(request: web.Request) -> web.Response:
        del request
        return web.Response(text="secret")

    app = web.Application(middlewares=middlewares())
    app.router.add_get("/v1/forgotten", forgotten)
    assert [r.method for r in app.router.routes() if allowed_roles(r.handler) is None]
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        async with aiohttp.ClientSession(headers=OPERATOR) as http:
            async with http.get(f"http://{host}:{port}/v1/forgotten") as r:
                assert r.status == 403
                assert "secret" not in await r.text()
    finally:
        await runner.cleanup()


async def test_no_role_reaches_objects_it_does_not_own(server: str, node: Node) -> None:
    """Every documented operation refuses strangers (403/404) and leaks nothing."""
    async with aiohttp.ClientSession(headers=OPERATOR) as http:
        order = await book(http, server)
        async with http.get(f"{server}/v1/openapi.json") as r:
            doc = await r.json()
    order_id = order["order_id"]
    await node.orders.transition(
        order_id,
        Trigger.OFFER,
        Actor(R.SYSTEM, "dispatcher"),
        payload={"provider_id": "cg-1", "expires_at": "2099-01-01T00:00:00+00:00"},
    )
    await node.commands.act(Actor(R.CAREGIVER, "cg-1"), order_id, Trigger.ACCEPT)
    before = await node.orders.get(order_id)
    ids = {
        "order_id": order_id,
        "elder_id": "el-1",
        "caregiver_id": "cg-1",
        "vendor_id": VENDOR.vendor_id,
        "alert_id": "1",
    }
    # a 404 names the id the caller sent: only personal data counts as a leak
    secrets = _secrets(order_id)[1:]
    checked = 0
    failures: list[str] = []
    for path, methods in doc["paths"].items():
        if path in PUBLIC:
            continue
        url = server + path.format(**ids)
        if path == "/v1/demand":
            url += f"?vendor_id={VENDOR.vendor_id}"
        for method, op in methods.items():
            allowed = set(op["x-roles"])
            for role, stranger in STRANGERS.items():
                owns_all = role in STAFF and str(role) in allowed
                if owns_all or ((method, path) in OPEN and str(role) in allowed):
                    continue
                headers = bearer(role, stranger) | {"Idempotency-Key": "matrix"}
                async with aiohttp.ClientSession(headers=headers) as http:
                    async with http.request(method, url, json=BODIES.get(path)) as r:
                        text = await r.text()
                        status = r.status
                checked += 1
                leaked = [s for s in secrets if s in text]
                if status not in (403, 404) or leaked:
                    failures.append(f"{role} {method} {path}: {status} {leaked}")
    assert failures == []
    assert checked > 40
    after = await node.orders.get(order_id)
    assert after.version == before.version


async def test_open_operations_leak_nothing_to_strangers(
    server: str, node: Node
) -> None:
    """Lists a stranger may call hold none of the order and no personal data."""
    async with aiohttp.ClientSession(headers=OPERATOR) as http:
        order = await book(http, server)
    secrets = _secrets(order["order_id"])
    for role, stranger in STRANGERS.items():
        if role in STAFF:
            continue
        async with aiohttp.ClientSession(headers=bearer(role, stranger)) as http:
            for path in ("/v1/orders", "/v1/services", "/v1/regions"):
                async with http.get(server + path) as r:
                    text = await r.text()
                    assert r.status == 200, (role, path)
                    assert not [s for s in secrets if s in text], (role, path)
                    json.loads(text)
