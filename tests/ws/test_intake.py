"""The intake stream: orders and device alarms, acked after commit, idempotent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from dispatch.domain import ActorRole
from dispatch.errors import SettingsError
from tests.ws.conftest import Gateway
from ws.client import ProtocolError, Session
from ws.intake import DEFAULT_ALARM_RULES, load_alarm_rules
from ws.protocol import AlarmKind

pytestmark = pytest.mark.integration


async def _sender(gateway: Gateway, role: ActorRole, actor_id: str) -> Session:
    return await Session.open(gateway.intake_url, gateway.token(role, actor_id))


NOW = datetime.now(UTC).replace(microsecond=0)


def _order(gateway: Gateway, key: str, **changes: Any) -> dict[str, Any]:
    del gateway
    now = NOW
    body: dict[str, Any] = {
        "key": key,
        "elder_id": "el-1",
        "service_code": "meal_help",
        "earliest": now.isoformat(),
        "latest": (now + timedelta(hours=2)).isoformat(),
    }
    return body | changes


async def test_order_is_acked_after_commit_and_idempotent_by_key(
    gateway: Gateway,
) -> None:
    """A retry with the same key returns the first order; another body is refused."""
    partner = await _sender(gateway, ActorRole.PARTNER, "pt-1")
    first = await partner.request("order", **_order(gateway, "k-1"))
    assert first["created"] is True
    stored = await gateway.node.orders.get(first["order_id"])
    assert stored.channel == "partner"

    retry = await partner.request("order", **_order(gateway, "k-1"))
    assert (retry["order_id"], retry["created"]) == (first["order_id"], False)
    with pytest.raises(ProtocolError) as mismatch:
        await partner.request("order", **_order(gateway, "k-1", notes="other"))
    assert mismatch.value.code == "idempotency_mismatch"
    await partner.close()


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"elder_id": "el-404"}, "unknown_elder"),
        ({"service_code": "juggling"}, "unknown_service"),
        ({"latest": "2020-01-01T00:00:00+00:00"}, "bad_window"),
        ({"earliest": "2026-12-03T09:00:00"}, "out_of_range"),
    ],
)
async def test_bad_order_is_refused_with_its_code(
    gateway: Gateway, changes: dict[str, Any], code: str
) -> None:
    """Booking faults keep the HTTP API's stable codes."""
    operator = await _sender(gateway, ActorRole.OPERATOR, "op-1")
    with pytest.raises(ProtocolError) as refused:
        await operator.request("order", **_order(gateway, "k-bad", **changes))
    assert refused.value.code == code
    assert await gateway.node.pool.fetchval('select count(*) from "order"') == 0
    await operator.close()


async def test_fall_alarm_books_an_emergency_and_alerts_once(
    gateway: Gateway,
) -> None:
    """A fall becomes an emergency order and one device alarm, even when retried."""
    console = await Session.open(
        gateway.console_url, gateway.token(ActorRole.OPERATOR, "op-1")
    )
    await console.next("snapshot")
    device = await _sender(gateway, ActorRole.DEVICE, "dev-7")
    alarm: dict[str, Any] = {
        "key": "fall-1",
        "elder_id": "el-2",
        "kind": "fall",
        "at": gateway.node.clock.now().isoformat(),
        "readings": {"impact_g": 3.2},
    }
    ack = await device.request("alarm", **alarm)
    order = await gateway.node.orders.get(ack["order_id"])
    assert (order.priority, order.service_code) == ("emergency", "emergency_response")
    assert order.channel == "device"

    again = await device.request("alarm", **alarm)
    assert (again["order_id"], again["alert_id"]) == (ack["order_id"], ack["alert_id"])
    assert again["created"] is False
    alert = await console.next("alert")
    assert (alert["kind"], alert["alert_id"]) == ("device_alarm", ack["alert_id"])
    assert await gateway.node.pool.fetchval("select count(*) from alert") == 1
    await device.close()
    await console.close()


async def test_partners_send_no_alarms_and_caregivers_no_intake(
    gateway: Gateway,
) -> None:
    """Alarms come from devices and staff; phones are refused at the upgrade."""
    partner = await _sender(gateway, ActorRole.PARTNER, "pt-1")
    with pytest.raises(ProtocolError) as refused:
        await partner.request(
            "alarm",
            key="a",
            elder_id="el-1",
            kind="battery_low",
            at=gateway.node.clock.now().isoformat(),
        )
    assert refused.value.code == "forbidden"
    await partner.close()
    with pytest.raises(InvalidStatus) as upgrade:
        await _sender(gateway, ActorRole.CAREGIVER, "cg-1")
    assert upgrade.value.response.status_code == 403


def test_alarm_rules_load_over_the_defaults() -> None:
    """Named kinds change; the others keep their default."""
    rules = load_alarm_rules(
        '{"battery_low": {"service_code": "consult_phone", "priority": "routine",'
        ' "window_min": 60, "severity": "low"}}'
    )
    assert rules[AlarmKind.BATTERY_LOW].service_code == "consult_phone"
    assert rules[AlarmKind.FALL] == DEFAULT_ALARM_RULES[AlarmKind.FALL]


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        '{"meteor": {}}',
        '{"fall": {"service_code": "x", "priority": "soon", "window_min": 5,'
        ' "severity": "low"}}',
        '{"fall": {"service_code": "x", "priority": "urgent", "window_min": 0,'
        ' "severity": "low"}}',
    ],
)
def test_bad_alarm_rules_are_refused(text: str) -> None:
    """A malformed rule file stops the start with a clear message."""
    with pytest.raises(SettingsError, match="bad alarm rules"):
        load_alarm_rules(text)
