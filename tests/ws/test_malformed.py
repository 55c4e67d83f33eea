"""A corpus of malformed and unauthorised input: each refused, nothing changed.

Before and after each bad message the whole PostgreSQL record (orders,
events, offers, keys, alerts) and every Redis key are fingerprinted; the
phone holds a live offer, so a message that slipped through would show.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest
from redis.asyncio import Redis
from websockets.exceptions import InvalidStatus

from dispatch.domain import ActorRole
from tests.ws.conftest import Gateway, book, offer
from ws.client import ProtocolError, Session

pytestmark = pytest.mark.integration

_TABLES = ("order", "order_event", "offer", "idempotency_key", "alert", "audit_log")


async def _fingerprint(pool: asyncpg.Pool, redis: Redis) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for table in _TABLES:
        query = (
            "select md5(coalesce(string_agg(t::text, '|' order by t::text), ''))"  # noqa: S608  # table names are constants
            f' from "{table}" t'
        )
        state[table] = await pool.fetchval(query)
    async for key in redis.scan_iter(match="*", count=1000):
        state[f"redis:{key!r}"] = await redis.dump(key)
    return state


def _deep(levels: int) -> str:
    return "[" * levels + "]" * levels


# (kind, frame builder taking the order ids, expected error code)
CORPUS: list[tuple[str, Any, str]] = [
    (
        "invalid_utf8",
        lambda o: b'{"type":"sos","id":"c1","message":"\xff\xfe"}',
        "bad_utf8",
    ),
    ("not_json", lambda o: '{"type": "accept", "id": "c2", ', "bad_json"),
    ("empty_frame", lambda o: "", "bad_json"),
    ("not_an_object", lambda o: '["accept", "c3"]', "not_object"),
    ("null", lambda o: "null", "not_object"),
    ("unknown_type", lambda o: '{"type":"teleport","id":"c4"}', "unknown_type"),
    ("missing_field", lambda o: '{"type":"accept","id":"c5"}', "missing_field"),
    ("missing_type", lambda o: '{"id":"c5b","order_id":"x"}', "missing_field"),
    (
        "wrong_type",
        lambda o: json.dumps({"type": "accept", "id": "c6", "order_id": 42}),
        "wrong_type",
    ),
    (
        "out_of_range",
        lambda o: json.dumps({"type": "location", "id": "c7", "lat": 123.0, "lon": 0}),
        "out_of_range",
    ),
    (
        "unknown_extra_field",
        lambda o: json.dumps(
            {"type": "accept", "id": "c8", "order_id": o["mine"], "tip": 5}
        ),
        "unknown_field",
    ),
    (
        "deep_nesting",
        lambda o: (
            '{"type":"complete","id":"c9","order_id":"'
            + o["mine"]
            + '","record":{"vitals":'
            + _deep(64)
            + "}}"
        ),
        "too_deep",
    ),
    (
        "oversize",
        lambda o: json.dumps({"type": "sos", "id": "c10", "message": "a" * 70_000}),
        "too_large",
    ),
    ("binary_frame", lambda o: b'{"type":"sos","id":"c11"}', "binary_frame"),
    (
        "replayed_message_id",
        lambda o: json.dumps({"type": "accept", "id": "seen-1", "order_id": o["mine"]}),
        "duplicate_id",
    ),
    (
        "another_caregivers_order",
        lambda o: json.dumps({"type": "accept", "id": "c13", "order_id": o["theirs"]}),
        "forbidden",
    ),
    (
        "unsupported_version",
        lambda o: json.dumps(
            {"type": "accept", "id": "c14", "v": 2, "order_id": o["mine"]}
        ),
        "unsupported_version",
    ),
    (
        "unknown_order",
        lambda o: json.dumps(
            {
                "type": "accept",
                "id": "c15",
                "order_id": "00000000-0000-0000-0000-000000000000",
            }
        ),
        "not_found",
    ),
]


@pytest.mark.parametrize(
    ("kind", "frame", "code"),
    [pytest.param(kind, build, code, id=kind) for kind, build, code in CORPUS],
)
async def test_malformed_message_is_refused_and_changes_nothing(
    gateway: Gateway, kind: str, frame: Any, code: str
) -> None:
    """The error names the fault; PostgreSQL and Redis are as before."""
    node = gateway.node
    session, _ = await gateway.phone("cg-1")
    other, _ = await gateway.phone("cg-2")
    mine = await book(node)
    await offer(node, mine.order_id, "cg-1")
    theirs = await book(node, elder_id="el-2")
    await offer(node, theirs.order_id, "cg-2")
    await session.next("offer")  # the relay has published everything
    await other.next("offer")
    # a refused hello remembers its id, which one case replays
    with pytest.raises(ProtocolError) as again:
        await session.request("hello", id="seen-1")
    assert again.value.code == "out_of_place"
    before = await _fingerprint(node.pool, node.redis)

    data = frame({"mine": mine.order_id, "theirs": theirs.order_id})
    await session.send_raw(data, text=kind != "binary_frame")
    error = await session.next("error")

    assert error["code"] == code
    assert error["message"]
    after = await _fingerprint(node.pool, node.redis)
    assert after == before
    # the connection stays usable after a refused message
    assert (await session.request("accept", order_id=mine.order_id))["status"] == (
        "accepted"
    )
    await session.close()
    await other.close()


async def test_corpus_covers_the_kinds_the_issue_names() -> None:
    """At least twelve kinds, including each one the issue lists."""
    kinds = {kind for kind, _, _ in CORPUS}
    assert len(kinds) >= 12
    assert {
        "invalid_utf8",
        "not_json",
        "not_an_object",
        "unknown_type",
        "missing_field",
        "wrong_type",
        "out_of_range",
        "unknown_extra_field",
        "deep_nesting",
        "oversize",
        "binary_frame",
        "replayed_message_id",
        "another_caregivers_order",
    } <= kinds


async def test_refused_handshakes_change_nothing(gateway: Gateway) -> None:
    """No token, a wrong role and a foreign origin are refused at the upgrade."""
    before = await _fingerprint(gateway.node.pool, gateway.node.redis)
    with pytest.raises(InvalidStatus) as no_token:
        await Session.open(gateway.phone_url, None)
    assert no_token.value.response.status_code == 401
    with pytest.raises(InvalidStatus) as wrong_role:
        await Session.open(gateway.phone_url, gateway.token(ActorRole.OPERATOR, "op-1"))
    assert wrong_role.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as foreign:
        await Session.open(
            gateway.phone_url,
            gateway.token(ActorRole.CAREGIVER, "cg-1"),
            origin="https://evil.example",
        )
    assert foreign.value.response.status_code == 403
    assert await _fingerprint(gateway.node.pool, gateway.node.redis) == before
