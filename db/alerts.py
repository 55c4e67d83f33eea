"""Alerts for operators: raised once per source, kept until acknowledged.

Kinds: ``emergency`` (an emergency order was booked), ``escalated`` (no
provider took an order; a person must act), ``sos`` (a caregiver is in
danger) and ``device_alarm`` (an elder's device raised an alarm). Each alert
names what raised it in ``source_key``; raising again with the same key
returns the first alert, so the at-least-once relay and retried intake
messages never raise an alert twice.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import asyncpg

from db.pool import Connection
from dispatch.domain import Actor
from dispatch.errors import ConflictError, NotFoundError

__all__ = [
    "Alert",
    "AlertDraft",
    "AlertKind",
    "Severity",
    "acknowledge",
    "open_alerts",
    "raise_alert",
]


class AlertKind(StrEnum):
    """What an alert is about."""

    EMERGENCY = "emergency"
    ESCALATED = "escalated"
    SOS = "sos"
    DEVICE_ALARM = "device_alarm"


class Severity(StrEnum):
    """How urgently an operator must look."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


@dataclass(frozen=True, slots=True)
class AlertDraft:
    """An alert about to be raised.

    ``message`` is shown to operators; it never holds names, phone numbers,
    addresses or health notes (ids only).
    """

    kind: AlertKind
    severity: Severity
    message: str
    source_key: str
    at: datetime
    order_id: str | None = None
    caregiver_id: str | None = None
    region_id: str = ""


@dataclass(frozen=True, slots=True)
class Alert:
    """A stored alert."""

    alert_id: int
    kind: AlertKind
    severity: Severity
    message: str
    at: datetime
    order_id: str | None
    caregiver_id: str | None
    region_id: str
    acknowledged_at: datetime | None
    acknowledged_by: str | None


def _alert(row: asyncpg.Record) -> Alert:
    return Alert(
        alert_id=row["alert_id"],
        kind=AlertKind(row["kind"]),
        severity=Severity(row["severity"]),
        message=row["message"],
        at=row["at"],
        order_id=str(row["order_id"]) if row["order_id"] else None,
        caregiver_id=row["caregiver_id"],
        region_id=row["region_id"],
        acknowledged_at=row["acknowledged_at"],
        acknowledged_by=row["acknowledged_by"],
    )


async def raise_alert(conn: Connection, draft: AlertDraft) -> tuple[Alert, bool]:
    """Store an alert once per source key.

    Returns:
        The alert, and whether this call raised it (false when an alert
        with the same ``source_key`` existed).
    """
    row = await conn.fetchrow(
        """
        insert into alert (kind, severity, order_id, caregiver_id, region_id,
                           message, source_key, at)
        values ($1, $2, $3, $4, $5, $6, $7, $8)
        on conflict (source_key) do nothing
        returning *
        """,
        str(draft.kind),
        str(draft.severity),
        uuid.UUID(draft.order_id) if draft.order_id else None,
        draft.caregiver_id,
        draft.region_id,
        draft.message,
        draft.source_key,
        draft.at,
    )
    if row is not None:
        return _alert(row), True
    row = await conn.fetchrow(
        "select * from alert where source_key = $1", draft.source_key
    )
    assert row is not None  # the conflict proves the row exists
    return _alert(row), False


async def open_alerts(conn: Connection, *, limit: int = 200) -> list[Alert]:
    """Alerts nobody acknowledged yet, newest first."""
    rows = await conn.fetch(
        "select * from alert where acknowledged_at is null"
        " order by at desc, alert_id desc limit $1",
        limit,
    )
    return [_alert(row) for row in rows]


async def acknowledge(
    conn: Connection, alert_id: int, actor: Actor, now: datetime
) -> Alert:
    """Mark an alert as seen and handled by an operator.

    Raises:
        NotFoundError: No such alert.
        ConflictError: It was acknowledged before.
    """
    row = await conn.fetchrow(
        """
        update alert set acknowledged_at = $2, acknowledged_by = $3
        where alert_id = $1 and acknowledged_at is null
        returning *
        """,
        alert_id,
        now,
        str(actor),
    )
    if row is not None:
        return _alert(row)
    if await conn.fetchval("select 1 from alert where alert_id = $1", alert_id):
        raise ConflictError("the alert was acknowledged before", alert_id=alert_id)
    raise NotFoundError("alert", str(alert_id))
