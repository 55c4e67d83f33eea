"""The order store: orders, their event log, offers and idempotency keys.

Every change is one transaction that locks the order's row, checks the
transition with the pure rules of :mod:`dispatch.lifecycle`, updates the
order and appends exactly one event. A caller learns of an order only
after that transaction has committed.

Bookings and transitions are committed in groups (:mod:`db.groupcommit`,
DESIGN.md section 8): concurrent calls of :meth:`OrderStore.create` or
:meth:`OrderStore.transition` share transactions whose statements are per
group, each caller still answered only after the commit that holds its
change, and a change refused for its own reasons (unknown elder, reused
key, illegal transition, stale version) refused alone.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg

from db.groupcommit import GroupCommit
from db.leases import Fence, fence_holds
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
    HomecareError,
    IdempotencyInProgressError,
    IdempotencyMismatchError,
    LeaseLostError,
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


@dataclass(frozen=True, slots=True)
class _NewBooking:
    """A booking waiting for its group's commit."""

    request: BookingRequest
    actor: Actor
    scope: str
    key: str
    fingerprint: str

    @property
    def lock_key(self) -> str:
        return f"{self.scope}\x1f{self.key}"


@dataclass(frozen=True, slots=True)
class _Change:
    """A transition waiting for its group's commit."""

    order_id: uuid.UUID
    trigger: Trigger
    actor: Actor
    expected_version: int | None
    reason: str
    payload: Mapping[str, Any] | None
    fence: Fence | None = None


class OrderStore:
    """Orders and their events in PostgreSQL.

    Args:
        pool: Connections made by :func:`db.pool.connect_pool`.
        clock: Where event times come from.
        max_notes_chars: Longest notes accepted on a booking.
        max_group: Most bookings, or transitions, committed in one
            transaction.
        max_commits: Most groups of bookings, and of transitions,
            committing at once (each on its own connection).
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        clock: Clock,
        *,
        max_notes_chars: int = 4000,
        max_group: int = 200,
        max_commits: int = 2,
    ) -> None:
        self._pool = pool
        self._clock = clock
        self._max_notes_chars = max_notes_chars
        self._bookings = GroupCommit[_NewBooking, Booking](
            pool,
            self._book_group,
            lambda b: b.lock_key,
            name="bookings",
            max_group=max_group,
            max_commits=max_commits,
        )
        self._changes = GroupCommit[_Change, tuple[Order, OrderEvent]](
            pool,
            self._change_group,
            lambda c: c.order_id,
            name="transitions",
            max_group=max_group,
            max_commits=max_commits,
        )

    async def create(
        self, request: BookingRequest, actor: Actor, idempotency_key: str
    ) -> Booking:
        """Book an order, once per idempotency key of this actor.

        The same key with the same request returns the first order with
        ``created`` false; keys are scoped by actor, so two partners may use
        the same key for different orders. The call returns once the
        booking's group has committed (see the module's docstring).

        Raises:
            ValidationError: Bad input (``unknown_elder``, ``unknown_service``,
                ``too_long``, ``bad_idempotency_key``, ``out_of_range``).
            IdempotencyMismatchError: The key was used with another request.
            IdempotencyInProgressError: The first request with the key is
                still running.
            ForbiddenError: The actor's role may not book orders.
        """
        self._validate(request, idempotency_key)
        return await self._bookings.submit(
            _NewBooking(
                request=request,
                actor=actor,
                scope=str(actor),
                key=idempotency_key,
                fingerprint=request.fingerprint(),
            )
        )

    async def _book_group(
        self, conn: Connection, group: Sequence[_NewBooking]
    ) -> list[Booking | HomecareError]:
        """Write a group of bookings in the caller's transaction.

        The statements are per group: one to lock every key, one to read
        the keys already used, one each for the elders and services named,
        and one per table written.
        """
        locked = await conn.fetch(
            "select pg_try_advisory_xact_lock(hashtextextended(k, 0)) as locked"
            " from unnest($1::text[]) with ordinality as t(k, n) order by n",
            [w.lock_key for w in group],
        )
        used = {
            (row["scope"], row["key"]): row
            for row in await conn.fetch(
                "select scope, key, request_hash, order_id from idempotency_key"
                " where (scope, key) in (select * from unnest($1::text[], $2::text[]))",
                [w.scope for w in group],
                [w.key for w in group],
            )
        }
        elders = {
            row["elder_id"]: row
            for row in await conn.fetch(
                "select elder_id, region_id, home_lat, home_lon from elder"
                " where elder_id = any($1::text[])",
                list({w.request.elder_id for w in group}),
            )
        }
        services = {
            row["service_code"]: row
            for row in await conn.fetch(
                "select service_code, skills, duration_min, fulfilled_by from service"
                " where service_code = any($1::text[])",
                list({w.request.service_code for w in group}),
            )
        }

        outcomes: list[Booking | HomecareError | uuid.UUID] = []
        made: list[tuple[_NewBooking, Order, OrderEvent]] = []
        for waiting, lock in zip(group, locked, strict=True):
            first = used.get((waiting.scope, waiting.key))
            try:
                if not lock["locked"]:
                    raise IdempotencyInProgressError(
                        "a request with this idempotency key is still running"
                    )
                if first is not None:
                    if first["request_hash"] != waiting.fingerprint:
                        raise IdempotencyMismatchError(
                            "this idempotency key was used for a different request"
                        )
                    outcomes.append(first["order_id"])
                    continue
                order = self._new_order(waiting, elders, services)
                event = lifecycle.book(order)
            except HomecareError as refused:
                outcomes.append(refused)
                continue
            made.append((waiting, order, event))
            outcomes.append(Booking(order, True))

        if made:
            writes = _Writes()
            _insert_orders(writes, [order for _, order, _ in made])
            _insert_events(writes, [(event, order, order) for _, order, event in made])
            _insert_keys(writes, [(w, order) for w, order, _ in made])
            await _write(conn, writes)
        replayed = await _fetch_orders(
            conn, [o for o in outcomes if isinstance(o, uuid.UUID)]
        )
        return [
            Booking(replayed[o], False) if isinstance(o, uuid.UUID) else o
            for o in outcomes
        ]

    async def transition(
        self,
        order_id: str,
        trigger: Trigger,
        actor: Actor,
        *,
        expected_version: int | None = None,
        reason: str = "",
        payload: Mapping[str, Any] | None = None,
        fence: Fence | None = None,
    ) -> tuple[Order, OrderEvent]:
        """Apply one transition; returns once its group has committed.

        With a ``fence`` (a dispatcher's leases) the transition commits only
        while that dispatcher holds the lease on the order's region with
        the same fencing number (DESIGN.md section 9).

        Raises:
            NotFoundError: No such order.
            LeaseLostError: ``fence`` no longer holds for the order's region;
                nothing is written.
            StaleVersionError, IllegalTransitionError, ForbiddenError,
            ValidationError: As :func:`dispatch.lifecycle.apply`; nothing is
                written.
        """
        return await self._changes.submit(
            _Change(
                _order_uuid(order_id),
                trigger,
                actor,
                expected_version,
                reason,
                payload,
                fence,
            )
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

        Lets callers write several transitions of one order in one commit.
        """
        change = _Change(
            _order_uuid(order_id), trigger, actor, expected_version, reason, payload
        )
        [outcome] = await self._change_group(conn, [change])
        if isinstance(outcome, HomecareError):
            raise outcome
        return outcome

    async def _change_group(
        self, conn: Connection, group: Sequence[_Change]
    ) -> list[tuple[Order, OrderEvent] | HomecareError]:
        """Write a group of transitions, each of another order.

        The orders are locked in one statement in the order of their ids,
        so two groups never wait for each other in a cycle.
        """
        rows = await conn.fetch(
            'select * from "order" where order_id = any($1::uuid[])'
            " order by order_id for update",
            [c.order_id for c in group],
        )
        orders = {row["order_id"]: order_from_row(row) for row in rows}

        outcomes: list[tuple[Order, OrderEvent] | HomecareError] = []
        made: list[tuple[OrderEvent, Order, Order]] = []
        fences_held: dict[tuple[str, str, int], bool] = {}
        for change in group:
            order = orders.get(change.order_id)
            try:
                if order is None:
                    raise NotFoundError("order", str(change.order_id))
                if change.fence is not None:
                    await _check_fence(conn, order.region_id, change.fence, fences_held)
                changed, event = lifecycle.apply(
                    order,
                    change.trigger,
                    change.actor,
                    self._clock.now(),
                    expected_version=change.expected_version,
                    reason=change.reason,
                    payload=change.payload,
                )
            except HomecareError as refused:
                outcomes.append(refused)
                continue
            made.append((event, order, changed))
            outcomes.append((changed, event))

        if made:
            writes = _Writes()
            _update_orders(writes, [after for _, _, after in made])
            _insert_events(writes, made)
            _record_offers(writes, made)
            await _write(conn, writes)
        return outcomes

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

    def _new_order(
        self,
        waiting: _NewBooking,
        elders: Mapping[str, asyncpg.Record],
        services: Mapping[str, asyncpg.Record],
    ) -> Order:
        request = waiting.request
        elder = elders.get(request.elder_id)
        if elder is None:
            raise ValidationError(
                f"no elder {request.elder_id}", code="unknown_elder", field="elder_id"
            )
        service = services.get(request.service_code)
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
            created_by=waiting.actor,
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


async def _fetch_orders(
    conn: Connection, order_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Order]:
    """Orders by id; ids of no order are left out."""
    if not order_ids:
        return {}
    rows = await conn.fetch(
        'select * from "order" where order_id = any($1::uuid[])', list(order_ids)
    )
    return {row["order_id"]: order_from_row(row) for row in rows}


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


class _Writes:
    """Several writes of a group sent as one statement, then one wake-up.

    Each write takes its rows as one array per column (``unnest``), so a
    group of any size costs one round trip instead of one per table, and
    PostgreSQL plans each write once for all its rows. The statement ends
    with the outbox's ``pg_notify``, which is delivered at commit.

    Column types are PostgreSQL's; ``list`` marks a ``text[]`` column, whose
    values are sent as JSON text since arrays of unequal arrays cannot be.
    """

    def __init__(self) -> None:
        self._writes: list[str] = []
        self._args: list[Any] = []

    def _rows(
        self, columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]]
    ) -> str:
        arrays = []
        for k, (_, kind) in enumerate(columns):
            wire = "text" if kind == "list" else kind
            self._args.append(
                [json.dumps(row[k]) if kind == "list" else row[k] for row in rows]
            )
            arrays.append(f"${len(self._args)}::{wire}[]")
        names = ", ".join(name for name, _ in columns)
        return f"unnest({', '.join(arrays)}) with ordinality as r({names}, n)"

    def insert(
        self,
        table: str,
        columns: Sequence[tuple[str, str]],
        rows: Sequence[Sequence[Any]],
    ) -> None:
        """Insert ``rows`` (one value per column) into ``table``, in order."""
        if not rows:
            return
        names = ", ".join(name for name, _ in columns)
        values = ", ".join(_value(name, kind) for name, kind in columns)
        source = self._rows(columns, rows)
        self._writes.append(
            f"insert into {table} ({names}) select {values} from {source} order by n"  # noqa: S608  # names are constants; values are parameters
        )

    def update(
        self,
        table: str,
        key: str,
        columns: Sequence[tuple[str, str]],
        rows: Sequence[Sequence[Any]],
        *,
        where: str = "",
    ) -> None:
        """Set the columns after the first of the rows whose ``key`` matches."""
        if not rows:
            return
        sets = ", ".join(f"{name} = {_value(name, kind)}" for name, kind in columns[1:])
        source = self._rows(columns, rows)
        self._writes.append(
            f"update {table} as t set {sets} from {source}"  # noqa: S608  # as above
            f" where t.{key} = r.{columns[0][0]}{where}"
        )

    async def run(self, conn: Connection) -> None:
        """Send every write and the outbox's wake-up as one statement."""
        writes = ", ".join(f"w{k} as ({w})" for k, w in enumerate(self._writes))
        self._args.append(OUTBOX_CHANNEL)
        wake = f"select pg_notify(${len(self._args)}, '')"
        await conn.execute(f"with {writes} {wake}" if writes else wake, *self._args)


def _value(name: str, kind: str) -> str:
    if kind == "list":
        return f"array(select jsonb_array_elements_text(r.{name}::jsonb))"
    return f"r.{name}"


_ORDER_COLUMNS = (
    ("order_id", "uuid"),
    ("elder_id", "text"),
    ("service_code", "text"),
    ("provider_kind", "text"),
    ("region_id", "text"),
    ("priority", "text"),
    ("status", "text"),
    ("version", "int"),
    ("earliest", "timestamptz"),
    ("latest", "timestamptz"),
    ("duration_min", "int"),
    ("lat", "float8"),
    ("lon", "float8"),
    ("channel", "text"),
    ("notes", "text"),
    ("skills", "list"),
    ("created_by_role", "text"),
    ("created_by_id", "text"),
    ("created_at", "timestamptz"),
    ("updated_at", "timestamptz"),
)


def _insert_orders(writes: _Writes, orders: Sequence[Order]) -> None:
    writes.insert(
        '"order"',
        _ORDER_COLUMNS,
        [
            (
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
            for order in orders
        ],
    )


_CHANGED_COLUMNS = (
    ("order_id", "uuid"),
    ("status", "text"),
    ("version", "int"),
    ("updated_at", "timestamptz"),
    ("provider_id", "text"),
    ("offer_provider_id", "text"),
    ("offer_expires_at", "timestamptz"),
    ("excluded_provider_ids", "list"),
    ("record", "jsonb"),
)


def _update_orders(writes: _Writes, orders: Sequence[Order]) -> None:
    writes.update(
        '"order"',
        "order_id",
        _CHANGED_COLUMNS,
        [
            (
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
            for order in orders
        ],
    )


_EVENT_COLUMNS = (
    ("order_id", "uuid"),
    ("seq", "int"),
    ("trigger", "text"),
    ("from_status", "text"),
    ("to_status", "text"),
    ("actor_role", "text"),
    ("actor_id", "text"),
    ("at", "timestamptz"),
    ("reason", "text"),
    ("payload", "jsonb"),
    ("region_id", "text"),
    ("provider_ids", "list"),
)


def _event_args(event: OrderEvent, before: Order, after: Order) -> tuple[Any, ...]:
    """The row of an event with its routing facts: region, providers concerned."""
    providers = {
        before.offer_provider_id,
        before.provider_id,
        after.offer_provider_id,
        after.provider_id,
    } - {None}
    return (
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


def _insert_events(
    writes: _Writes, events: Sequence[tuple[OrderEvent, Order, Order]]
) -> None:
    """Append events, each with its order before and after."""
    writes.insert("order_event", _EVENT_COLUMNS, [_event_args(*e) for e in events])


def _insert_keys(writes: _Writes, made: Sequence[tuple[_NewBooking, Order]]) -> None:
    writes.insert(
        "idempotency_key",
        (
            ("scope", "text"),
            ("key", "text"),
            ("request_hash", "text"),
            ("order_id", "uuid"),
        ),
        [
            (w.scope, w.key, w.fingerprint, uuid.UUID(order.order_id))
            for w, order in made
        ],
    )


def _record_offers(
    writes: _Writes, changes: Sequence[tuple[OrderEvent, Order, Order]]
) -> None:
    """Keep the ``offer`` table in step: one row per offer, closed once.

    Args:
        writes: The statement of the transaction that writes the changes.
        changes: Each event with its order before and after.
    """
    opened = []
    closed = []
    for event, before, after in changes:
        key = uuid.UUID(after.order_id)
        if event.trigger is Trigger.OFFER:
            opened.append(
                (
                    key,
                    str(after.provider_kind),
                    after.offer_provider_id,
                    event.at,
                    after.offer_expires_at,
                )
            )
        elif before.offer_provider_id is not None and after.offer_provider_id is None:
            closed.append((key, str(event.trigger), event.at))
    # a change either opens an offer or closes one, so the two writes of
    # one statement never touch the same order's offers
    writes.update(
        "offer",
        "order_id",
        (("order_id", "uuid"), ("outcome", "text"), ("closed_at", "timestamptz")),
        closed,
        where=" and t.outcome is null",
    )
    writes.insert(
        "offer",
        (
            ("order_id", "uuid"),
            ("provider_kind", "text"),
            ("provider_id", "text"),
            ("offered_at", "timestamptz"),
            ("expires_at", "timestamptz"),
        ),
        opened,
    )


async def _write(conn: Connection, writes: _Writes) -> None:
    """Send a group's writes (kept apart so tests can lose the connection)."""
    await writes.run(conn)


async def _check_fence(
    conn: Connection,
    region_id: str,
    fence: Fence,
    checked: dict[tuple[str, str, int], bool],
) -> None:
    """Refuse a fenced change unless its lease holds; once per region a group.

    Raises:
        LeaseLostError: The fence does not cover the region, or the lease
            has passed on or expired.
    """
    number = fence.fences.get(region_id)
    if number is None:
        raise LeaseLostError(region_id, 0)
    key = (region_id, fence.holder, number)
    if key not in checked:
        checked[key] = await fence_holds(conn, region_id, fence.holder, number)
    if not checked[key]:
        raise LeaseLostError(region_id, number)
