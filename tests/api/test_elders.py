"""Elders, directory, alerts, tokens and reports over real HTTP."""

from __future__ import annotations

import aiohttp
import pytest

from db.alerts import AlertDraft, AlertKind, Severity, raise_alert
from dispatch.domain import Actor, ActorRole
from dispatch.lifecycle import Trigger
from dispatch.node import Node
from tests.api.conftest import OPERATOR, bearer, book

pytestmark = pytest.mark.integration

SYSTEM = Actor(ActorRole.SYSTEM, "dispatcher")


async def test_hotline_finds_an_elder_by_phone_and_the_read_is_audited(
    server: str, node: Node
) -> None:
    """A search by the end of a phone number finds the elder and is logged."""
    async with aiohttp.ClientSession(headers=OPERATOR) as http:
        async with http.get(f"{server}/v1/elders?phone=00000001") as r:
            hits = await r.json()
        async with http.get(f"{server}/v1/elders?name=测试") as r:
            by_name = await r.json()
        async with http.get(f"{server}/v1/elders") as r:
            assert r.status == 400
    assert [h["elder_id"] for h in hits] == ["el-1"]
    assert hits[0]["phone"] == "13800000001"
    assert len(by_name) == 3
    rows = await node.pool.fetch(
        "select actor_id, action, subject_id from audit_log order by audit_id"
    )
    assert [(r["actor_id"], r["action"]) for r in rows][:1] == [("op-1", "search")]
    assert sorted(r["subject_id"] for r in rows) == ["el-1", "el-1", "el-2", "el-3"]


async def test_contact_goes_only_to_the_caregiver_at_work(
    server: str, node: Node
) -> None:
    """A caregiver sees an elder only while holding an accepted order of theirs."""
    url = f"{server}/v1/elders/el-1"
    async with aiohttp.ClientSession(headers=OPERATOR) as http:
        order_id = (await book(http, server))["order_id"]
    caregiver = bearer(ActorRole.CAREGIVER, "cg-1")
    async with aiohttp.ClientSession(headers=caregiver) as http:
        async with http.get(url) as r:
            assert r.status == 404
        await node.orders.transition(
            order_id,
            Trigger.OFFER,
            SYSTEM,
            payload={"provider_id": "cg-1", "expires_at": "2099-01-01T00:00:00Z"},
        )
        async with http.get(url) as r:
            assert r.status == 404, "an offer alone does not open the record"
        await node.commands.act(
            Actor(ActorRole.CAREGIVER, "cg-1"), order_id, Trigger.ACCEPT
        )
        async with http.get(url) as r:
            body = await r.json()
            assert r.status == 200
        assert body["contact"]["phone"] == "13800000001"
        await node.orders.transition(
            order_id, Trigger.CANCEL, Actor(ActorRole.OPERATOR, "op-1"), reason="x"
        )
        async with http.get(url) as r:
            assert r.status == 404
    audited = await node.pool.fetchval(
        "select count(*) from audit_log where actor_role = 'caregiver'"
    )
    assert audited == 0


async def test_admin_issues_tokens_for_known_providers_only(
    server: str, node: Node
) -> None:
    """A caregiver token works at once; an unknown vendor is refused."""
    admin = bearer(ActorRole.ADMIN, "ad-1")
    async with aiohttp.ClientSession(headers=admin) as http:
        body = {"role": "caregiver", "actor_id": "cg-2", "ttl_hours": 1}
        async with http.post(f"{server}/v1/tokens", json=body) as r:
            issued = await r.json()
            assert r.status == 201
        bad = {"role": "vendor", "actor_id": "vd-nobody"}
        async with http.post(f"{server}/v1/tokens", json=bad) as r:
            assert (await r.json())["code"] == "unknown_actor"
        admin_token = {"role": "admin", "actor_id": "x"}
        async with http.post(f"{server}/v1/tokens", json=admin_token) as r:
            assert r.status == 400
    headers = {"Authorization": f"Bearer {issued['token']}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(f"{server}/v1/caregivers/cg-2") as r:
            own = await r.json()
        assert (own["caregiver_id"], own["open_orders"]) == ("cg-2", 0)
        async with http.get(f"{server}/v1/caregivers/cg-1") as r:
            assert r.status == 404
    assert issued["token"] not in str(
        await node.pool.fetch("select detail from audit_log")
    )


async def test_report_counts_todays_orders_by_state(server: str, node: Node) -> None:
    """The summary counts the orders booked today, by where they stand."""
    async with aiohttp.ClientSession(headers=OPERATOR) as http:
        for _ in range(2):
            await book(http, server)
        await book(
            http, server, priority="emergency", service_code="emergency_response"
        )
        async with http.get(f"{server}/v1/reports/summary") as r:
            report = await r.json()
    assert report["orders_by_status"] == {"booked": 3}
    assert report["emergencies"] == 1
    assert report["on_time_rate"] is None


async def test_device_alarms_list_device_bookings(server: str, node: Node) -> None:
    """Orders booked by a device appear as alarms naming the device."""
    device = bearer(ActorRole.DEVICE, "sos-9")
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{server}/v1/orders",
            json={
                "elder_id": "el-2",
                "service_code": "emergency_response",
                "earliest": "2026-12-03T09:00:00Z",
                "latest": "2026-12-03T09:30:00Z",
                "priority": "emergency",
            },
            headers=device | {"Idempotency-Key": "sos"},
        ) as r:
            assert r.status == 201
        await book(http, server)
        async with http.get(f"{server}/v1/device-alarms", headers=OPERATOR) as r:
            alarms = await r.json()
    assert [(a["device_id"], a["elder_id"]) for a in alarms] == [("sos-9", "el-2")]


async def test_operator_acknowledges_an_alert_once(server: str, node: Node) -> None:
    """Open alerts are listed; the first acknowledgement wins, the second is 409."""
    async with node.pool.acquire() as conn:
        alert, _ = await raise_alert(
            conn,
            AlertDraft(
                AlertKind.SOS,
                Severity.CRITICAL,
                "sos from cg-2",
                "sos:test",
                node.clock.now(),
                caregiver_id="cg-2",
            ),
        )
    async with aiohttp.ClientSession(headers=OPERATOR) as http:
        async with http.get(f"{server}/v1/alerts") as r:
            assert [a["alert_id"] for a in await r.json()] == [alert.alert_id]
        url = f"{server}/v1/alerts/{alert.alert_id}/ack"
        async with http.post(url) as r:
            assert (await r.json())["acknowledged_by"] == "operator:op-1"
        async with http.post(url) as r:
            assert r.status == 409
        async with http.post(f"{server}/v1/alerts/abc/ack") as r:
            assert r.status == 404
        async with http.get(f"{server}/v1/alerts") as r:
            assert await r.json() == []
