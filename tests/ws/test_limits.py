"""Limits, conflicts and the remaining error codes of the caregiver gateway."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from dispatch.domain import Actor, ActorRole
from dispatch.node import Node
from tests.ws.conftest import Gateway, book, drop_keys, offer, start_gateway
from ws.client import ProtocolError, Session
from ws.registry import Limits

pytestmark = pytest.mark.integration

CG1 = Actor(ActorRole.CAREGIVER, "cg-1")


async def _code(session: Session, kind: str, **fields: Any) -> str:
    with pytest.raises(ProtocolError) as refused:
        await session.request(kind, **fields)
    return refused.value.code


async def test_anything_before_hello_and_a_second_hello_are_out_of_place(
    gateway: Gateway,
) -> None:
    """The session starts with exactly one hello."""
    session = await Session.open(
        gateway.phone_url, gateway.token(ActorRole.CAREGIVER, "cg-1")
    )
    assert await _code(session, "duty", duty="on_shift") == "out_of_place"
    await session.request("hello")
    assert await _code(session, "hello") == "out_of_place"
    await session.close()


async def test_stale_version_and_illegal_transition_are_refused(
    gateway: Gateway,
) -> None:
    """A request on an old version or from the wrong state changes nothing."""
    session, _ = await gateway.phone("cg-1")
    order = await book(gateway.node)
    await offer(gateway.node, order.order_id, "cg-1")
    assert (
        await _code(session, "accept", order_id=order.order_id, version=1)
        == "stale_version"
    )
    assert await _code(session, "start", order_id=order.order_id) == (
        "illegal_transition"
    )
    assert (await gateway.node.orders.get(order.order_id)).status == "offered"
    await session.close()


async def test_store_failure_is_reported_as_unavailable(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store that does not answer gives unavailable, not a dropped connection."""
    session, _ = await gateway.phone("cg-1")

    async def down(*args: object, **kwargs: object) -> None:
        raise ConnectionRefusedError("postgresql is down")

    monkeypatch.setattr(gateway.node.commands, "act", down)
    order_id = "00000000-0000-0000-0000-000000000001"
    assert await _code(session, "accept", order_id=order_id) == "unavailable"
    assert (await session.request("duty", duty="on_shift"))["type"] == "ack"
    await session.close()


async def test_rate_limit_refuses_the_excess_then_closes_a_flood(
    node: Node, key_prefix: str
) -> None:
    """Above the burst messages are refused; a flood closes with 4429."""
    # a rate so low that no token comes back during the test, however slow
    running = await start_gateway(node, key_prefix, Limits(rate_per_s=0.01, burst=3))
    try:
        session, _ = await running.phone("cg-1")  # hello takes one token
        codes = []
        for _ in range(3):
            try:
                await session.request("duty", duty="on_shift")
                codes.append("ack")
            except ProtocolError as error:
                codes.append(error.code)
        assert codes[:2] == ["ack", "ack"]
        assert codes[2] == "rate_limited"
        for i in range(10):
            await session.send_raw(f'{{"type":"duty","id":"f{i}","duty":"break"}}')
        code, reason = await session.closed()
        assert (code, reason) == (4429, "rate_limited")
        await session.close()
    finally:
        await running.runner.cleanup()
        await drop_keys(node.redis, key_prefix)


async def test_a_token_may_hold_only_so_many_connections(
    node: Node, key_prefix: str
) -> None:
    """The connection beyond the limit is told why and closed with 4429."""
    running = await start_gateway(node, key_prefix, Limits(connections_per_token=2))
    token = running.token(ActorRole.CAREGIVER, "cg-1")
    try:
        held = [await Session.open(running.phone_url, token) for _ in range(2)]
        extra = await Session.open(running.phone_url, token)
        error = await extra.next("error")
        assert error["code"] == "too_many_connections"
        assert (await extra.closed())[0] == 4429
        await held[0].close()
        await asyncio.sleep(0.1)
        again = await Session.open(running.phone_url, token)
        assert (await again.request("hello"))["type"] == "welcome"
        for session in [*held, extra, again]:
            await session.close()
    finally:
        await running.runner.cleanup()
        await drop_keys(node.redis, key_prefix)


async def test_frame_beyond_the_hard_limit_closes_the_connection(
    gateway: Gateway,
) -> None:
    """A frame too big to read at all closes with 1009 (RFC 6455 7.4.1)."""
    session, _ = await gateway.phone("cg-1")
    await session.send_raw("x" * (300 * 1024))
    code, _ = await session.closed()
    assert code == 1009
    await session.close()


async def test_idle_connection_is_closed(node: Node, key_prefix: str) -> None:
    """Nothing sent for the idle timeout closes with idle_timeout (4408)."""
    running = await start_gateway(node, key_prefix, Limits(idle_timeout_s=0.3))
    try:
        session, _ = await running.phone("cg-1")
        error = await session.next("error")
        assert error["code"] == "idle_timeout"
        assert await session.closed() == (4408, "idle_timeout")
        await session.close()
    finally:
        await running.runner.cleanup()
        await drop_keys(node.redis, key_prefix)


async def test_keepalive_pings_keep_a_quiet_phone_connected(
    node: Node, key_prefix: str
) -> None:
    """A phone that only listens but pings stays past the idle timeout."""
    running = await start_gateway(node, key_prefix, Limits(idle_timeout_s=0.4))
    try:
        session = await Session.open(
            running.phone_url,
            running.token(ActorRole.CAREGIVER, "cg-1"),
            ping_interval_s=0.1,
        )
        await session.request("hello")
        await asyncio.sleep(1.2)
        ack = await session.request("duty", duty="on_shift")
        assert ack["type"] == "ack"
        await session.close()
    finally:
        await running.runner.cleanup()
        await drop_keys(node.redis, key_prefix)


async def test_console_feed_listens_past_the_idle_timeout(
    node: Node, key_prefix: str
) -> None:
    """The operators' feed takes no messages, so silence does not close it."""
    running = await start_gateway(node, key_prefix, Limits(idle_timeout_s=0.3))
    try:
        console = await Session.open(
            running.console_url,
            running.token(ActorRole.OPERATOR, "op-1"),
            ping_interval_s=None,  # as a browser: it can only answer pings
        )
        await console.next("snapshot")
        await asyncio.sleep(1.0)
        order = await book(node)
        event = await console.next("order_event", timeout_s=2.0)
        assert event["event"]["order_id"] == order.order_id
        await console.close()
    finally:
        await running.runner.cleanup()
        await drop_keys(node.redis, key_prefix)


async def test_expiring_token_closes_the_connection(gateway: Gateway) -> None:
    """When the token expires the phone is told and disconnected (4401)."""
    node = gateway.node
    token = node.signer.issue(CG1, node.clock.now(), timedelta(seconds=2))
    session = await Session.open(gateway.phone_url, token)
    await session.request("hello")
    error = await session.next("error", timeout_s=5)
    assert error["code"] == "token_expired"
    assert await session.closed() == (4401, "token_expired")
    await session.close()


async def test_token_in_query_and_an_allowed_origin_are_accepted(
    node: Node, key_prefix: str
) -> None:
    """Browsers pass the token as access_token from an allowed origin."""
    running = await start_gateway(
        node, key_prefix, origins=frozenset({"https://console.example"})
    )
    try:
        session = await Session.open(
            running.phone_url,
            running.token(ActorRole.CAREGIVER, "cg-1"),
            query_token=True,
            origin="https://console.example",
        )
        assert (await session.request("hello"))["type"] == "welcome"
        await session.close()
    finally:
        await running.runner.cleanup()
        await drop_keys(node.redis, key_prefix)


async def test_reconnect_resumes_with_what_was_missed(gateway: Gateway) -> None:
    """A phone that says its last seq gets exactly the messages after it."""
    session, welcome = await gateway.phone("cg-1")
    first = await book(gateway.node)
    await offer(gateway.node, first.order_id, "cg-1")
    seen = await session.next("offer")
    await session.close()

    second = await book(gateway.node, elder_id="el-2")
    await offer(gateway.node, second.order_id, "cg-1")
    await asyncio.sleep(0.3)  # the relay publishes while the phone is away
    again = await Session.open(
        gateway.phone_url, gateway.token(ActorRole.CAREGIVER, "cg-1")
    )
    resumed = await again.request("hello", last_seq=seen["seq"])
    assert resumed["resumed"] is True
    assert resumed["snapshot"] is None
    missed = await again.next("offer")
    assert (missed["order_id"], missed["seq"]) == (second.order_id, seen["seq"] + 1)
    assert welcome["seq"] < seen["seq"]
    await again.close()


async def test_resume_from_a_lost_history_gets_a_flagged_snapshot(
    gateway: Gateway,
) -> None:
    """When the history is gone the phone starts over, and is told so."""
    order = await book(gateway.node)
    await offer(gateway.node, order.order_id, "cg-1")
    session = await Session.open(
        gateway.phone_url, gateway.token(ActorRole.CAREGIVER, "cg-1")
    )
    welcome = await session.request("hello", last_seq=10**15)
    assert welcome["resumed"] is False
    assert welcome["history_lost"] is True
    assert [o["order_id"] for o in welcome["snapshot"]["offers"]] == [order.order_id]
    await session.close()


async def test_client_that_stops_answering_pings_is_dropped(
    node: Node, key_prefix: str
) -> None:
    """A heartbeat without a pong ends the connection well before the idle timeout."""
    running = await start_gateway(
        node, key_prefix, Limits(heartbeat_s=0.4, idle_timeout_s=30.0)
    )
    host, port = running.base.removeprefix("ws://").split(":")
    token = running.token(ActorRole.CAREGIVER, "cg-1")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        # a bare upgrade, then silence: this client never answers a ping
        writer.write(
            (
                "GET /v1/caregiver HTTP/1.1\r\n"
                f"Host: {host}:{port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\n"
                f"Authorization: Bearer {token}\r\n\r\n"
            ).encode()
        )
        status = await asyncio.wait_for(reader.readline(), 5)
        assert status.startswith(b"HTTP/1.1 101")
        started = asyncio.get_running_loop().time()
        async with asyncio.timeout(5):
            while await reader.read(1024):
                pass
        assert asyncio.get_running_loop().time() - started < 3.0
    finally:
        writer.close()
        await running.runner.cleanup()
        await drop_keys(node.redis, key_prefix)


async def test_phone_dropped_before_its_first_message_resumes(
    gateway: Gateway,
) -> None:
    """A welcome's position on a new history is one a resume can start from."""
    session, welcome = await gateway.phone("cg-3")
    await session.close()
    order = await book(gateway.node)
    await offer(gateway.node, order.order_id, "cg-3")
    await asyncio.sleep(0.3)
    again = await Session.open(
        gateway.phone_url, gateway.token(ActorRole.CAREGIVER, "cg-3")
    )
    resumed = await again.request("hello", last_seq=welcome["seq"])
    assert resumed["resumed"] is True
    missed = await again.next("offer")
    assert missed["seq"] == welcome["seq"] + 1
    await again.close()
