"""The relay: committed order events become messages for phones and consoles.

An :class:`~db.outbox.OutboxReader` named ``relay`` follows the event log in
commit order. For each event the relay publishes, through
:class:`~ws.fanout.ProviderFanout`:

- ``offer`` to the offered provider (trigger ``offer``);
- ``offer_withdrawn`` to the provider whose open offer ended without an
  acceptance (decline, expire, withdraw, cancel, escalate);
- ``order_update`` to the provider the order is or was assigned to, with
  the order and the elder's contact while the assignment holds;
- ``order_event`` to the console, and an ``alert`` when an emergency is
  booked or an order escalated (raised once per event in PostgreSQL).

Messages are identified by the event (``e<event_id>``), so the replay of a
batch after a crash publishes nothing twice. One relay runs at a time: it
holds a PostgreSQL advisory lock, and the relays of other nodes wait.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import datetime

import asyncpg
from redis.exceptions import RedisError

from db.alerts import AlertDraft, AlertKind, Severity, raise_alert
from db.orders import order_from_row
from db.outbox import OutboxEvent, OutboxReader
from dispatch.lifecycle import ASSIGNED_STATES, OrderStatus, Trigger
from dispatch.schemas import OrderView
from ws.fanout import CONSOLE, ProviderFanout, provider_history
from ws.protocol import (
    EventBody,
    Offer,
    OfferWithdrawn,
    OrderEventMessage,
    OrderUpdate,
    encode,
)
from ws.views import alert_message, assigned_order, orders_by_id

__all__ = ["RELAY", "Relay"]

logger = logging.getLogger(__name__)

#: The relay's cursor and lock name.
RELAY = "relay"

_LOCK_WAIT_S = 2.0
_RETRY_S = 1.0
_ACQUIRE_TIMEOUT_S = 10.0

Item = tuple[str, str, bytes]


def _provider_items(event: OutboxEvent, row: asyncpg.Record | None) -> list[Item]:
    message_id = f"e{event.event_id}"
    if event.trigger == Trigger.OFFER:
        if row is None:
            return []
        offer = Offer(
            id=message_id,
            order_id=event.order_id,
            version=event.seq,
            service_code=row["service_code"],
            priority=row["priority"],
            earliest=row["earliest"],
            latest=row["latest"],
            duration_min=row["duration_min"],
            lat=row["lat"],
            lon=row["lon"],
            notes=row["notes"],
            expires_at=datetime.fromisoformat(event.payload["expires_at"]),
        )
        history = provider_history(str(event.payload["provider_id"]))
        return [(history, message_id, encode(offer))]
    if event.from_status == OrderStatus.OFFERED and event.trigger != Trigger.ACCEPT:
        withdrawn = encode(
            OfferWithdrawn(
                id=message_id,
                order_id=event.order_id,
                version=event.seq,
                reason=event.trigger,
            )
        )
        return [
            (provider_history(p), message_id, withdrawn) for p in event.provider_ids
        ]
    items = []
    for provider_id in event.provider_ids:
        holds = (
            row is not None
            and row["provider_id"] == provider_id
            and event.to_status in ASSIGNED_STATES
        )
        update = OrderUpdate(
            id=message_id,
            order_id=event.order_id,
            version=event.seq,
            status=event.to_status,
            trigger=event.trigger,
            order=assigned_order(row, contact=True) if holds and row else None,
        )
        items.append((provider_history(provider_id), message_id, encode(update)))
    return items


def _console_item(event: OutboxEvent, row: asyncpg.Record | None) -> Item:
    message = OrderEventMessage(
        id=f"e{event.event_id}",
        event=EventBody(
            event_id=event.event_id,
            order_id=event.order_id,
            seq=event.seq,
            trigger=event.trigger,
            from_status=event.from_status,
            to_status=event.to_status,
            actor_role=event.actor_role,
            actor_id=event.actor_id,
            at=event.at,
            reason=event.reason,
            region_id=event.region_id,
        ),
        order=OrderView.of(order_from_row(row)) if row is not None else None,
    )
    return (CONSOLE, message.id, encode(message))


def _alert_draft(event: OutboxEvent) -> AlertDraft | None:
    # an alarm's emergency is announced by the intake as a device alarm
    if (
        event.trigger == Trigger.BOOK
        and event.payload.get("priority") == "emergency"
        and event.payload.get("channel") != "device"
    ):
        return AlertDraft(
            kind=AlertKind.EMERGENCY,
            severity=Severity.CRITICAL,
            message=f"emergency booked: {event.payload.get('service_code', '')}",
            source_key=f"event:{event.event_id}",
            at=event.at,
            order_id=event.order_id,
            region_id=event.region_id,
        )
    if event.trigger == Trigger.ESCALATE:
        return AlertDraft(
            kind=AlertKind.ESCALATED,
            severity=Severity.HIGH,
            message=f"order escalated: {event.reason or 'no provider took it'}"[:500],
            source_key=f"event:{event.event_id}",
            at=event.at,
            order_id=event.order_id,
            region_id=event.region_id,
        )
    return None


class Relay:
    """Follows the outbox and publishes what each committed event means.

    Args:
        pool: Connections to the order database.
        fanout: Where messages are published.
        name: The outbox cursor (and advisory lock) name.
    """

    def __init__(
        self, pool: asyncpg.Pool, fanout: ProviderFanout, *, name: str = RELAY
    ) -> None:
        self._pool = pool
        self._fanout = fanout
        self._name = name
        self.published = 0

    async def run(self) -> None:
        """Relay events until cancelled, taking over when another relay stops."""
        while True:
            try:
                async with self._pool.acquire(timeout=_ACQUIRE_TIMEOUT_S) as lock:
                    key = f"homecare:outbox:{self._name}"
                    while True:
                        if await lock.fetchval(
                            "select pg_try_advisory_lock(hashtextextended($1, 0))", key
                        ):
                            break
                        # another node's relay holds the log; wait to take over
                        await asyncio.sleep(_LOCK_WAIT_S)
                    logger.info("relay started", extra={"cursor": self._name})
                    try:
                        await self._follow()
                    finally:
                        await lock.execute(
                            "select pg_advisory_unlock(hashtextextended($1, 0))", key
                        )
            except (asyncpg.PostgresError, OSError, RedisError, TimeoutError) as exc:
                logger.warning("relay interrupted", extra={"error": type(exc).__name__})
                await asyncio.sleep(_RETRY_S)

    async def _follow(self) -> None:
        reader = OutboxReader(self._pool, self._name, from_now=True)
        async for batch in reader.batches():
            started = time.perf_counter()
            await self.handle(batch)
            await reader.commit()
            logger.debug(
                "relay batch",
                extra={
                    "events": len(batch),
                    "elapsed_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )

    async def handle(self, batch: Sequence[OutboxEvent]) -> None:
        """Publish the messages of one batch of events (at least once)."""
        async with self._pool.acquire(timeout=_ACQUIRE_TIMEOUT_S) as conn:
            rows = await orders_by_id(conn, (e.order_id for e in batch))
            items: list[Item] = []
            for event in batch:
                row = rows.get(event.order_id)
                items.extend(_provider_items(event, row))
                items.append(_console_item(event, row))
                draft = _alert_draft(event)
                if draft is not None:
                    alert, _ = await raise_alert(conn, draft)
                    message = alert_message(alert)
                    items.append((CONSOLE, message.id, encode(message)))
                    # the alert itself is the operators' call to act; the log
                    # records it (an escalated emergency is also logged at
                    # error by the dispatcher, as the level policy asks)
                    logger.warning(
                        "alert raised",
                        extra={
                            "alert_id": alert.alert_id,
                            "kind": str(alert.kind),
                            "order_id": event.order_id,
                        },
                    )
        results = await self._fanout.publish_many(items)
        self.published += sum(1 for seq in results if seq)
