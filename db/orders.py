"""The order store: orders, their event log, offers and idempotency keys.

Every change is one transaction that locks the order's row, checks the
transition with the pure rules of :mod:`dispatch.lifecycle`, updates the
order and appends exactly one event. A caller learns of an order only
after that transaction has committed.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg

from db.outbox import CHANNEL as OUTBOX_CHANNEL
from db.pool import Connection
from dispatch import lifecycle
from dispatch.clock import Clock
from dispatch.domain import (
    Actor,
    ActorRole,
    BookingRequest,
    Channel,
    GeoPoint,
    Priority,
    ProviderKind,
    TimeWindow,
)
from dispatch.errors import (
    IdempotencyInProgressError,
    IdempotencyMismatchError,
    NotFoundError,
    ValidationError,
)
from dispatch.lifecycle import Order, OrderEvent, OrderStatus, Trigger

__all__ = ["Booking", "OrderStore"]

_MAX_KEY_CHARS = 200
_MAX_DURATION_MIN = 24 * 60


@dataclass(frozen=True, slots=True)
class Booking:
    """The outcome of a booking: the order, and whether this call made it."""

    order: Order
    created: bool


class OrderStore:
    """Orders and their events in PostgreSQL.

    Args:
        pool: Connections made by :func:`db.pool.connect_pool`.
        clock: Where event times come from.
        max_notes_chars: Longest notes accepted on a booking.
    """

    def __init__(
        self, pool: asyncpg.Pool, clock: Clock, *, max_notes_chars: int = 4000
    ) -> None:
        self._pool = pool
        self._clock = clock
        self._max_notes_chars = max_notes_chars

    async def create(
        self, request: BookingRequest, actor: Actor, idempotency_key: str
    ) -> Booking:
        """Book an order, once per idempotency key of this actor.

        The same key with the same request returns the first order with
        ``created`` false; keys are scoped by actor, so two partners may use
        the same key for different orders.

        Raises:
            ValidationError: Bad input (``unknown_elder``, ``unknown_service``,
                ``too_long``, ``bad_idempotency_key``, ``out_of_range``).
            IdempotencyMismatchError: The key was used with another request.
            IdempotencyInProgressError: The first request with the key is
                still running.
            ForbiddenError: The actor's role may not book orders.
        """
        self._validate(request, idempotency_key)
        scope = str(actor)
        fingerprint = request.fingerprint()
        async with self._pool.acquire() as conn, conn.transaction():
            locked = await conn.fetchval(
                "select pg_try_advisory_xact_lock(hashtextextended($1, 0))",
                f"{scope}\x1f{idempotency_key}",
            )
            if not locked:
                raise IdempotencyInProgressError(
                    "a request with this idempotency key is still running"
                )
            first = await conn.fetchrow(
                "select request_hash, order_id from idempotency_key"
                " where scope = $1 and key = $2",
                scope,
                idempotency_key,
            )
            if first is not None:
                if first["request_hash"] != fingerprint:
                    raise IdempotencyMismatchError(
                        "this idempotency key was used for a different request"
                    )
                return Booking(await _fetch_order(conn, first["order_id"]), False)

            order = await self._new_order(conn, request, actor)
            event = lifecycle.book(order)
            await _insert_order(conn, order)
            await _insert_event(conn, event, order, order)
            await conn.execute(
                "insert into idempotency_key (scope, key, request_hash, order_id)"
                " values ($1, $2, $3, $4)",
                scope,
                idempotency_key,
                fingerprint,
                uuid.UUID(order.order_id),
            )
        return Booking(order, True)

    async def transition(
        self,
        order_id: str,
        trigger: Trigger,
        actor: Actor,
        *,
        expected_version: int | None = None,
        reason: str = "",
        payload: Mapping[str, Any] | None = None,
    ) -> tuple[Order, OrderEvent]:
        """Apply one transition in its own transaction.

        Raises:
            NotFoundError: No such order.
            StaleVersionError, IllegalTransitionError, ForbiddenError,
            ValidationError: As :func:`dispatch.lifecycle.apply`; nothing is
                written.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            return await self.transition_on(
                conn,
                order_id,
                trigger,
                actor,
                expected_version=expected_version,
                reason=reason,
                payload=payload,
            )

    async def transition_on(
        self,
        conn: Connection,
        order_id: str,
        trigger: Trigger,
        actor: Actor,
        *,
        expected_version: int | None = None,
        reason: str = "",
        payload: Mapping[str, Any] | None = None,
    ) -> tuple[Order, OrderEvent]:
        """Like :meth:`transition`, inside a transaction the caller holds.

        Lets callers write several transitions in one commit (group commit).
        """
        order = await _fetch_order(conn, _order_uuid(order_id), lock=True)
        changed, event = lifecycle.apply(
            order,
            trigger,
            actor,
            self._clock.now(),
            expected_version=expected_version,
            reason=reason,
            payload=payload,
        )
        await _update_order(conn, changed)
        await _insert_event(conn, event, order, changed)
        await _record_offer(conn, order, changed, event)
        return changed, event

    def transaction(self) -> AbstractAsyncContextManager[Connection]:
        """A connection in a transaction, for several writes in one commit."""
        return _in_transaction(self._pool)

    async def get_on(
        self, conn: Connection, order_id: str, *, lock: bool = False
    ) -> Order:
        """The order as seen inside the caller's transaction.

        Raises:
            NotFoundError: No such order.
        """
        return await _fetch_order(conn, _order_uuid(order_id), lock=lock)

    async def get(self, order_id: str) -> Order:
        """The order as last committed.

        Raises:
            NotFoundError: No such order.
        """
        async with self._pool.acquire() as conn:
            return await _fetch_order(conn, _order_uuid(order_id))

    async def events(self, order_id: str) -> list[OrderEvent]:
        """Every event of the order, oldest first.

        Raises:
            NotFoundError: No such order.
        """
        key = _order_uuid(order_id)
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "select * from order_event where order_id = $1 order by seq", key
            )
        if not rows:
            raise NotFoundError("order", order_id)
        return [_event_from_row(row) for row in rows]

    def _validate(self, request: BookingRequest, idempotency_key: str) -> None:
        if not 1 <= len(idempotency_key) <= _MAX_KEY_CHARS:
            raise ValidationError(
                f"an idempotency key has 1 to {_MAX_KEY_CHARS} characters",
                code="bad_idempotency_key",
            )
        if len(request.notes) > self._max_notes_chars:
            raise ValidationError(
                f"notes are longer than {self._max_notes_chars} characters",
                code="too_long",
                field="notes",
            )
        duration = request.duration_min
        if duration is not None and not 1 <= duration <= _MAX_DURATION_MIN:
            raise ValidationError(
                "duration_min is out of range",
                code="out_of_range",
                field="duration_min",
            )

    async def _new_order(
        self, conn: Connection, request: BookingRequest, actor: Actor
    ) -> Order:
        elder = await conn.fetchrow(
            "select region_id, home_lat, home_lon from elder where elder_id = $1",
            request.elder_id,
        )
        if elder is None:
            raise ValidationError(
                f"no elder {request.elder_id}", code="unknown_elder", field="elder_id"
            )
        service = await conn.fetchrow(
            "select skills, duration_min, fulfilled_by from service"
            " where service_code = $1",
            request.service_code,
        )
        if service is None:
            raise ValidationError(
                f"no service {request.service_code}",
                code="unknown_service",
                field="service_code",
            )
        now = self._clock.now()
        return Order(
            order_id=str(uuid.uuid4()),
            elder_id=request.elder_id,
            service_code=request.service_code,
            provider_kind=ProviderKind(service["fulfilled_by"]),
            region_id=elder["region_id"],
            priority=request.priority,
            window=request.window,
            duration_min=request.duration_min or service["duration_min"],
            location=GeoPoint(elder["home_lat"], elder["home_lon"]),
            channel=request.channel,
            created_by=actor,
            created_at=now,
            updated_at=now,
            notes=request.notes,
            skills=frozenset(service["skills"]),
        )


@asynccontextmanager
async def _in_transaction(pool: asyncpg.Pool) -> AsyncIterator[Connection]:
    async with pool.acquire() as conn, conn.transaction():
        yield conn


def _order_uuid(order_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(order_id)
    except (ValueError, TypeError, AttributeError):
        raise NotFoundError("order", str(order_id)) from None


async def _fetch_order(
    conn: Connection, order_id: uuid.UUID, *, lock: bool = False
) -> Order:
    query = 'select * from "order" where order_id = $1'
    row = await conn.fetchrow(query + (" for update" if lock else ""), order_id)
    if row is None:
        raise NotFoundError("order", str(order_id))
    return order_from_row(row)


def order_from_row(row: asyncpg.Record) -> Order:
    """An :class:`Order` from a row of the ``order`` table."""
    return Order(
        order_id=str(row["order_id"]),
        elder_id=row["elder_id"],
        service_code=row["service_code"],
        provider_kind=ProviderKind(row["provider_kind"]),
        region_id=row["region_id"],
        priority=Priority(row["priority"]),
        window=TimeWindow(row["earliest"], row["latest"]),
        duration_min=row["duration_min"],
        location=GeoPoint(row["lat"], row["lon"]),
        channel=Channel(row["channel"]),
        created_by=Actor(ActorRole(row["created_by_role"]), row["created_by_id"]),
        created_at=row["created_at"],
        notes=row["notes"],
        skills=frozenset(row["skills"]),
        status=OrderStatus(row["status"]),
        version=row["version"],
        updated_at=row["updated_at"],
        provider_id=row["provider_id"],
        offer_provider_id=row["offer_provider_id"],
        offer_expires_at=row["offer_expires_at"],
        excluded_provider_ids=frozenset(row["excluded_provider_ids"]),
        record=row["record"],
    )


def _event_from_row(row: asyncpg.Record) -> OrderEvent:
    return OrderEvent(
        order_id=str(row["order_id"]),
        seq=row["seq"],
        trigger=Trigger(row["trigger"]),
        from_status=OrderStatus(row["from_status"]) if row["from_status"] else None,
        to_status=OrderStatus(row["to_status"]),
        actor=Actor(ActorRole(row["actor_role"]), row["actor_id"]),
        at=row["at"],
        reason=row["reason"],
        payload=row["payload"],
    )


async def _insert_order(conn: Connection, order: Order) -> None:
    await conn.execute(
        """
        insert into "order" (
            order_id, elder_id, service_code, provider_kind, region_id, priority,
            status, version, earliest, latest, duration_min, lat, lon, channel,
            notes, skills, created_by_role, created_by_id, created_at, updated_at
        ) values (
            $1, $2, $3, $4, $5, $6, $7, $8, $9, $10,
            $11, $12, $13, $14, $15, $16, $17, $18, $19, $20
        )
        """,
        uuid.UUID(order.order_id),
        order.elder_id,
        order.service_code,
        str(order.provider_kind),
        order.region_id,
        str(order.priority),
        str(order.status),
        order.version,
        order.window.earliest,
        order.window.latest,
        order.duration_min,
        order.location.lat,
        order.location.lon,
        str(order.channel),
        order.notes,
        sorted(order.skills),
        str(order.created_by.role),
        order.created_by.actor_id,
        order.created_at,
        order.updated_at or order.created_at,
    )


async def _update_order(conn: Connection, order: Order) -> None:
    await conn.execute(
        """
        update "order" set
            status = $2, version = $3, updated_at = $4, provider_id = $5,
            offer_provider_id = $6, offer_expires_at = $7,
            excluded_provider_ids = $8, record = $9
        where order_id = $1
        """,
        uuid.UUID(order.order_id),
        str(order.status),
        order.version,
        order.updated_at,
        order.provider_id,
        order.offer_provider_id,
        order.offer_expires_at,
        sorted(order.excluded_provider_ids),
        dict(order.record),
    )


async def _insert_event(
    conn: Connection, event: OrderEvent, before: Order, after: Order
) -> None:
    """Append the event with its routing facts; wake outbox readers at commit."""
    providers = {
        before.offer_provider_id,
        before.provider_id,
        after.offer_provider_id,
        after.provider_id,
    } - {None}
    await conn.execute(
        """
        insert into order_event (
            order_id, seq, trigger, from_status, to_status, actor_role, actor_id,
            at, reason, payload, region_id, provider_ids
        ) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
        """,
        uuid.UUID(event.order_id),
        event.seq,
        str(event.trigger),
        str(event.from_status) if event.from_status else None,
        str(event.to_status),
        str(event.actor.role),
        event.actor.actor_id,
        event.at,
        event.reason,
        dict(event.payload),
        after.region_id,
        sorted(p for p in providers if p),
    )
    await conn.execute("select pg_notify($1, '')", OUTBOX_CHANNEL)


async def _record_offer(
    conn: Connection, before: Order, after: Order, event: OrderEvent
) -> None:
    """Keep the ``offer`` table in step: one row per offer, closed once."""
    key = uuid.UUID(after.order_id)
    if event.trigger is Trigger.OFFER:
        await conn.execute(
            "insert into offer (order_id, provider_kind, provider_id, offered_at,"
            " expires_at) values ($1, $2, $3, $4, $5)",
            key,
            str(after.provider_kind),
            after.offer_provider_id,
            event.at,
            after.offer_expires_at,
        )
    elif before.offer_provider_id is not None and after.offer_provider_id is None:
        await conn.execute(
            "update offer set outcome = $2, closed_at = $3"
            " where order_id = $1 and outcome is null",
            key,
            str(event.trigger),
            event.at,
        )
