"""The caregiver gateway with real websocket clients over loopback."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from aiohttp import web

import ws
from db.live import Duty, LiveState
from dispatch.app import build_app
from dispatch.domain import Actor, ActorRole
from dispatch.lifecycle import Trigger
from dispatch.node import Node
from tests.conftest import token_for
from tests.fixtures import ELDERS, VENDOR
from tests.ws.conftest import SYSTEM, Gateway, book, drop_keys, offer, start_gateway
from ws.client import ProtocolError, Session
from ws.fanout import ProviderFanout

pytestmark = pytest.mark.integration

HOME = ELDERS[0].home


async def test_gateway_role_of_build_app_serves_the_caregiver_endpoint(
    node: Node,
) -> None:
    """A node built with the gateway role answers a phone's hello."""
    runner = web.AppRunner(build_app(node, roles=frozenset({"api", "gateway"})))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        token = token_for(node, ActorRole.CAREGIVER, "cg-3")
        session = await Session.open(f"ws://{host}:{port}/v1/caregiver", token)
        welcome = await session.request("hello")
        assert welcome["type"] == "welcome"
        assert welcome["resumed"] is False
        await session.close()
    finally:
        await runner.cleanup()


async def test_first_hello_gets_a_snapshot_of_offers_and_orders(
    gateway: Gateway,
) -> None:
    """Offers and active orders made before the phone connected are in the welcome."""
    offered = await book(gateway.node)
    await offer(gateway.node, offered.order_id, "cg-1")
    accepted = await book(gateway.node, elder_id="el-2")
    await offer(gateway.node, accepted.order_id, "cg-1")
    await gateway.node.commands.act(
        Actor(ActorRole.CAREGIVER, "cg-1"), accepted.order_id, Trigger.ACCEPT
    )

    session, welcome = await gateway.phone("cg-1")

    snapshot = welcome["snapshot"]
    assert welcome["resumed"] is False
    assert welcome["history_lost"] is False
    assert [o["order_id"] for o in snapshot["offers"]] == [offered.order_id]
    assert snapshot["offers"][0]["elder"] is None
    assert [o["order_id"] for o in snapshot["orders"]] == [accepted.order_id]
    assert snapshot["orders"][0]["elder"]["phone"] == ELDERS[1].phone
    await session.close()


async def test_offer_then_accept_then_visit_through_to_completion(
    gateway: Gateway,
) -> None:
    """Every step of a visit is acked after commit and streamed back in order."""
    session, _ = await gateway.phone("cg-1")
    order = await book(gateway.node)
    await offer(gateway.node, order.order_id, "cg-1")

    offered = await session.next("offer")
    assert offered["order_id"] == order.order_id
    assert offered["notes"] == "ring twice"
    assert "elder" not in offered

    ack = await session.request("accept", order_id=order.order_id)
    assert (ack["status"], ack["version"]) == ("accepted", 3)
    update = await session.next("order_update")
    assert update["status"] == "accepted"
    assert update["order"]["elder"]["phone"] == ELDERS[0].phone

    assert (await session.request("en_route", order_id=order.order_id))[
        "status"
    ] == "en_route"
    ack = await session.request(
        "check_in", order_id=order.order_id, lat=HOME.lat, lon=HOME.lon
    )
    assert ack["status"] == "arrived"
    assert (await session.request("start", order_id=order.order_id))[
        "status"
    ] == "in_service"
    ack = await session.request(
        "complete",
        order_id=order.order_id,
        record={
            "tasks": [{"task": "meal", "outcome": "done"}],
            "notes": "ate well",
            "vitals": {"systolic_mmhg": 128},
        },
    )
    assert ack["status"] == "completed"
    statuses = [(await session.next("order_update"))["status"] for _ in range(4)]
    assert statuses == ["en_route", "arrived", "in_service", "completed"]
    stored = await gateway.node.orders.get(order.order_id)
    assert stored.record["complete"]["record"]["vitals"] == {"systolic_mmhg": 128.0}
    await session.close()


async def test_check_in_far_from_home_is_refused_unless_flagged(
    gateway: Gateway,
) -> None:
    """Outside the radius a check-in is refused; flagged it is accepted."""
    session, _ = await gateway.phone("cg-1")
    order = await book(gateway.node)
    await offer(gateway.node, order.order_id, "cg-1")
    await session.request("accept", order_id=order.order_id)
    await session.request("en_route", order_id=order.order_id)

    with pytest.raises(ProtocolError) as refused:
        await session.request(
            "check_in", order_id=order.order_id, lat=HOME.lat + 0.02, lon=HOME.lon
        )
    assert refused.value.code == "checkin_too_far"
    ack = await session.request(
        "check_in",
        order_id=order.order_id,
        lat=HOME.lat + 0.02,
        lon=HOME.lon,
        flagged=True,
    )
    assert ack["status"] == "arrived"
    await session.close()


@pytest.mark.parametrize(
    ("trigger", "reason"),
    [(Trigger.EXPIRE, "expire"), (Trigger.WITHDRAW, "withdraw")],
)
async def test_offer_ended_by_the_system_is_withdrawn_from_the_phone(
    gateway: Gateway, trigger: Trigger, reason: str
) -> None:
    """Expiry and withdrawal reach the phone as offer_withdrawn."""
    session, _ = await gateway.phone("cg-1")
    order = await book(gateway.node)
    await offer(gateway.node, order.order_id, "cg-1")
    await session.next("offer")
    await gateway.node.orders.transition(order.order_id, trigger, SYSTEM)
    withdrawn = await session.next("offer_withdrawn")
    assert (withdrawn["order_id"], withdrawn["reason"]) == (order.order_id, reason)
    await session.close()


async def test_decline_is_acked_and_withdraws_the_offer(gateway: Gateway) -> None:
    """A declined offer returns the order to booked and the phone drops it."""
    session, _ = await gateway.phone("cg-1")
    order = await book(gateway.node)
    await offer(gateway.node, order.order_id, "cg-1")
    ack = await session.request("decline", order_id=order.order_id, reason="too far")
    assert ack["status"] == "booked"
    assert (await session.next("offer_withdrawn"))["reason"] == "decline"
    await session.close()


async def test_give_back_and_no_show_are_order_updates(gateway: Gateway) -> None:
    """A give-back leaves the phone's list; a no-show is recorded."""
    session, _ = await gateway.phone("cg-1")
    first = await book(gateway.node)
    await offer(gateway.node, first.order_id, "cg-1")
    await session.request("accept", order_id=first.order_id)
    ack = await session.request("give_back", order_id=first.order_id, reason="ill")
    assert ack["status"] == "booked"

    second = await book(gateway.node, elder_id="el-2")
    await offer(gateway.node, second.order_id, "cg-1")
    await session.request("accept", order_id=second.order_id)
    await session.request("en_route", order_id=second.order_id)
    ack = await session.request(
        "no_show", order_id=second.order_id, reason="nobody home"
    )
    assert ack["status"] == "no_show"

    updates = [await session.next("order_update") for _ in range(4)]
    assert [(u["order_id"], u["status"]) for u in updates] == [
        (first.order_id, "accepted"),
        (first.order_id, "booked"),
        (second.order_id, "accepted"),
        (second.order_id, "en_route"),
    ]
    given_back = updates[1]
    assert given_back["order"] is None
    assert (await session.next("order_update"))["status"] == "no_show"
    await session.close()


async def test_vendor_terminal_accepts_and_delivers(gateway: Gateway) -> None:
    """A vendor takes its offer through out-for-delivery to delivered."""
    session, _ = await gateway.phone(VENDOR.vendor_id, ActorRole.VENDOR)
    order = await book(gateway.node, service_code="pharmacy_delivery")
    await offer(gateway.node, order.order_id, VENDOR.vendor_id)
    assert (await session.next("offer"))["order_id"] == order.order_id
    await session.request("accept", order_id=order.order_id)
    await session.request("en_route", order_id=order.order_id)
    ack = await session.request(
        "deliver",
        order_id=order.order_id,
        record={"tasks": [{"task": "handover", "outcome": "done"}]},
    )
    assert ack["status"] == "completed"
    with pytest.raises(ProtocolError) as refused:
        await session.request("location", lat=HOME.lat, lon=HOME.lon)
    assert refused.value.code == "forbidden"
    await session.close()


async def test_plan_reaches_the_phone_and_its_next_snapshot(
    gateway: Gateway,
) -> None:
    """A plan sent by the dispatcher arrives live and is in a later welcome."""
    session, _ = await gateway.phone("cg-1")
    now = gateway.node.clock.now()
    visits = [
        {
            "order_id": "o-1",
            "planned_arrival": now.isoformat(),
            "planned_start": now.isoformat(),
            "planned_end": (now + timedelta(minutes=45)).isoformat(),
        }
    ]
    fanout = ProviderFanout(gateway.node.redis, prefix=gateway.prefix)
    await fanout.send_to_provider(
        "cg-1", "plan", {"visits": visits, "computed_at": now.isoformat()}
    )
    plan = await session.next("plan")
    assert [v["order_id"] for v in plan["visits"]] == ["o-1"]
    await session.close()

    again = await Session.open(
        gateway.phone_url, gateway.token(ActorRole.CAREGIVER, "cg-1")
    )
    welcome = await again.request("hello")
    assert welcome["snapshot"]["plan"][0]["order_id"] == "o-1"
    await again.close()


async def test_send_to_provider_refuses_a_body_off_the_schema(
    gateway: Gateway,
) -> None:
    """The dispatcher's plan call validates its body."""
    fanout = ProviderFanout(gateway.node.redis, prefix=gateway.prefix)
    with pytest.raises(ValueError, match="bad plan body"):
        await fanout.send_to_provider("cg-1", "plan", {"visits": "soon"})
    with pytest.raises(ValueError, match="no provider message type"):
        await fanout.send_to_provider("cg-1", "welcome", {})


async def test_locations_reach_redis_in_batches(gateway: Gateway) -> None:
    """Many phones' locations are acked at once and written in few round trips."""
    sessions = []
    for i in range(1, 4):
        session, _ = await gateway.phone(f"cg-{i}")
        sessions.append(session)
    for step in range(5):
        for i, session in enumerate(sessions):
            ack = await session.request(
                "location", lat=HOME.lat + step * 1e-4, lon=HOME.lon + i * 1e-3
            )
            assert ack["type"] == "ack"
    live = LiveState(gateway.node.redis, prefix=gateway.prefix)
    for _ in range(50):
        found = await live.locations(["cg-1", "cg-2", "cg-3"], gateway.node.clock.now())
        if len(found) == 3 and found["cg-1"].lat > HOME.lat + 3e-4:
            break
        await asyncio.sleep(0.05)
    assert len(found) == 3
    assert found["cg-1"].lat == pytest.approx(HOME.lat + 4e-4, abs=1e-5)
    for session in sessions:
        await session.close()


async def test_duty_is_stored(gateway: Gateway) -> None:
    """A duty report is acked after Redis has it."""
    session, _ = await gateway.phone("cg-2")
    await session.request("duty", duty="break")
    live = LiveState(gateway.node.redis, prefix=gateway.prefix)
    assert await live.duties(["cg-2"]) == {"cg-2": Duty.BREAK}
    await session.close()


async def test_two_nodes_deliver_to_a_phone_on_the_other_node(
    node: Node, key_prefix: str
) -> None:
    """An offer relayed on one node reaches a phone connected to another."""
    first = await start_gateway(node, key_prefix)
    second = await start_gateway(node, key_prefix, relay=False)
    try:
        session, _ = await second.phone("cg-1")
        order = await book(node)
        await offer(node, order.order_id, "cg-1")
        assert (await session.next("offer"))["order_id"] == order.order_id
        await session.close()
    finally:
        await second.runner.cleanup()
        await first.runner.cleanup()
        await drop_keys(node.redis, key_prefix)


def test_install_returns_the_edge_kept_on_the_app(node: Node) -> None:
    """The edge is reachable from the application (benchmarks read it)."""
    app = web.Application()
    edge = ws.install(app, node)
    assert app[ws.EDGE] is edge
