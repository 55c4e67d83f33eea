"""The intake stream, ``/v1/intake``: orders and device alarms streaming in.

Operators, partner systems and devices send ``order`` and ``alarm``
messages. Each is acknowledged after its commit with the order id, and is
idempotent by the sender's ``key`` (scoped by the sender, as the HTTP
booking is): a retry gets the first order back with ``created`` false.

A device alarm becomes an order by the :class:`AlarmRule` of its kind
(service, priority, how soon) and raises a ``device_alarm`` alert for the
operators. The rules are configurable: pass others to :func:`ws.install`,
or load them from JSON with :func:`load_alarm_rules`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from aiohttp import web

from db.alerts import AlertDraft, AlertKind, Severity, raise_alert
from dispatch.domain import ActorRole, BookingRequest, Channel, Priority, TimeWindow
from dispatch.errors import ForbiddenError, SettingsError
from ws.fanout import CONSOLE
from ws.protocol import Ack, Alarm, AlarmKind, IntakeOrder, IntakeRequest, encode
from ws.registry import Connection
from ws.session import ACQUIRE_TIMEOUT_S, Edge
from ws.views import alert_message

__all__ = ["DEFAULT_ALARM_RULES", "AlarmRule", "Intake", "load_alarm_rules"]

logger = logging.getLogger(__name__)

_CHANNEL = {
    ActorRole.OPERATOR: Channel.HOTLINE,
    ActorRole.ADMIN: Channel.HOTLINE,
    ActorRole.PARTNER: Channel.PARTNER,
    ActorRole.DEVICE: Channel.DEVICE,
}


@dataclass(frozen=True, slots=True)
class AlarmRule:
    """What order a device alarm of one kind becomes.

    Attributes:
        service_code: The service booked.
        priority: Its priority.
        window_min: Minutes from the alarm within which the visit should
            start.
        severity: Severity of the operators' alert.
    """

    service_code: str
    priority: Priority
    window_min: int
    severity: Severity


#: Falls and SOS buttons are emergencies; a silent device or a low battery
#: is a routine check within the day.
DEFAULT_ALARM_RULES: Mapping[AlarmKind, AlarmRule] = {
    AlarmKind.SOS_BUTTON: AlarmRule(
        "emergency_response", Priority.EMERGENCY, 30, Severity.CRITICAL
    ),
    AlarmKind.FALL: AlarmRule(
        "emergency_response", Priority.EMERGENCY, 30, Severity.CRITICAL
    ),
    AlarmKind.ABNORMAL_VITALS: AlarmRule(
        "bp_glucose_check", Priority.URGENT, 120, Severity.HIGH
    ),
    AlarmKind.INACTIVITY: AlarmRule(
        "proactive_visit", Priority.URGENT, 240, Severity.MEDIUM
    ),
    AlarmKind.DEVICE_SILENT: AlarmRule(
        "proactive_visit", Priority.ROUTINE, 24 * 60, Severity.LOW
    ),
    AlarmKind.BATTERY_LOW: AlarmRule(
        "proactive_visit", Priority.ROUTINE, 24 * 60, Severity.LOW
    ),
}


def load_alarm_rules(text: str) -> dict[AlarmKind, AlarmRule]:
    """Alarm rules from JSON, over the defaults.

    The JSON maps an alarm kind to ``{"service_code", "priority",
    "window_min", "severity"}``; kinds not named keep their default.

    Raises:
        SettingsError: Malformed JSON, an unknown kind or a bad rule.
    """
    rules = dict(DEFAULT_ALARM_RULES)
    try:
        raw: dict[str, Any] = json.loads(text)
        for kind, rule in raw.items():
            window_min = int(rule["window_min"])
            if window_min < 1:
                raise ValueError("window_min must be at least 1")
            rules[AlarmKind(kind)] = AlarmRule(
                service_code=str(rule["service_code"]),
                priority=Priority(rule["priority"]),
                window_min=window_min,
                severity=Severity(rule["severity"]),
            )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SettingsError(f"bad alarm rules: {exc}") from None
    return rules


class Intake:
    """The ``/v1/intake`` endpoint (roles operator, partner, device).

    Args:
        edge: What the node's endpoints share.
        rules: Alarm kind to order rules.
    """

    name = "intake"
    schema: object = IntakeRequest
    listens = False

    def __init__(
        self, edge: Edge, rules: Mapping[AlarmKind, AlarmRule] = DEFAULT_ALARM_RULES
    ) -> None:
        self._edge = edge
        self._rules = rules

    async def opened(self, connection: Connection, request: web.Request) -> None:
        """Senders start sending at once; nothing is said first."""
        del connection, request

    async def closed(self, connection: Connection) -> None:
        """Nothing to release beyond the registry."""
        del connection

    async def handle(self, connection: Connection, message: Any) -> Ack:
        """Book the order of a message and acknowledge it after commit.

        Raises:
            ForbiddenError: An alarm from a sender that is not a device,
                operator or admin.
            HomecareError: As :meth:`db.orders.OrderStore.create`.
        """
        if isinstance(message, IntakeOrder):
            return await self._order(connection, message)
        assert isinstance(message, Alarm)
        return await self._alarm(connection, message)

    async def _order(self, connection: Connection, message: IntakeOrder) -> Ack:
        actor = connection.actor
        booking = await self._edge.node.orders.create(
            BookingRequest(
                elder_id=message.elder_id,
                service_code=message.service_code,
                window=TimeWindow(message.earliest, message.latest),
                priority=message.priority,
                channel=_CHANNEL[actor.role],
                notes=message.notes,
                duration_min=message.duration_min,
            ),
            actor,
            message.key,
        )
        order = booking.order
        return Ack(
            id=f"ack-{message.id}",
            re=message.id,
            order_id=order.order_id,
            version=order.version,
            status=str(order.status),
            created=booking.created,
        )

    async def _alarm(self, connection: Connection, message: Alarm) -> Ack:
        actor = connection.actor
        if actor.role is ActorRole.PARTNER:
            raise ForbiddenError("partners send orders, not device alarms")
        rule = self._rules[message.kind]
        readings = ", ".join(f"{k}={v:g}" for k, v in sorted(message.readings.items()))
        booking = await self._edge.node.orders.create(
            BookingRequest(
                elder_id=message.elder_id,
                service_code=rule.service_code,
                window=TimeWindow(
                    message.at, message.at + timedelta(minutes=rule.window_min)
                ),
                priority=rule.priority,
                channel=Channel.DEVICE,
                notes=f"device alarm: {message.kind}"
                + (f" ({readings})" if readings else ""),
            ),
            actor,
            message.key,
        )
        order = booking.order
        draft = AlertDraft(
            kind=AlertKind.DEVICE_ALARM,
            severity=rule.severity,
            message=f"device alarm: {message.kind}",
            source_key=f"alarm:{actor}:{message.key}",
            at=message.at,
            order_id=order.order_id,
            region_id=order.region_id,
        )
        async with self._edge.node.pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
            alert, created = await raise_alert(conn, draft)
        alert_body = alert_message(alert)
        await self._edge.fanout.publish(CONSOLE, alert_body.id, encode(alert_body))
        if created:
            logger.warning(
                "device alarm",
                extra={
                    "alert_id": alert.alert_id,
                    "order_id": order.order_id,
                    "kind": str(message.kind),
                },
            )
        return Ack(
            id=f"ack-{message.id}",
            re=message.id,
            order_id=order.order_id,
            version=order.version,
            status=str(order.status),
            created=booking.created,
            alert_id=alert.alert_id,
        )
