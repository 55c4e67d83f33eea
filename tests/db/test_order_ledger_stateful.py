"""Random sequences of bookings and transitions through the real store.

A hypothesis state machine drives legal and illegal transitions, stale
versions and repeated idempotent bookings, and after every step checks the
invariants of DESIGN.md section 4 against what PostgreSQL holds.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import asyncpg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import event as event_note
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from db.directory import upsert_services
from db.migrate import migrate
from db.orders import OrderStore
from db.pool import connect_pool
from dispatch.catalogue import SEED_SERVICES
from dispatch.clock import SimulatedClock
from dispatch.domain import Actor, ActorRole, BookingRequest, ProviderKind, TimeWindow
from dispatch.errors import HomecareError, IdempotencyMismatchError
from dispatch.lifecycle import (
    ASSIGNED_STATES,
    TERMINAL_STATES,
    TRANSITIONS,
    Order,
    OrderStatus,
    Trigger,
    apply,
    replay,
)
from tests.conftest import Backing
from tests.fixtures import load_small_directory

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
_T = TypeVar("_T")

ACTORS = [
    Actor(ActorRole.SYSTEM, "dispatcher"),
    Actor(ActorRole.OPERATOR, "op-1"),
    Actor(ActorRole.CAREGIVER, "cg-1"),
    Actor(ActorRole.CAREGIVER, "cg-2"),
    Actor(ActorRole.VENDOR, "vd-1"),
    Actor(ActorRole.PARTNER, "p-1"),
]
SERVICES = ["meal_help", "pharmacy_delivery"]
_FORWARD = frozenset(
    {
        Trigger.OFFER,
        Trigger.ACCEPT,
        Trigger.DEPART,
        Trigger.CHECK_IN,
        Trigger.START,
        Trigger.COMPLETE,
        Trigger.DELIVER,
        Trigger.CLOSE,
    }
)


def _payload(trigger: Trigger, provider: str) -> dict[str, Any]:
    if trigger is Trigger.OFFER:
        expires = (T0 + timedelta(minutes=1)).isoformat()
        return {"provider_id": provider, "expires_at": expires}
    if trigger in (Trigger.COMPLETE, Trigger.DELIVER):
        return {"record": {"tasks": ["done"]}}
    if trigger is Trigger.CLOSE:
        return {"rating": 5, "settlement_cents": 100}
    return {}


def _allows(order: Order, trigger: Trigger, actor: Actor, provider: str) -> bool:
    try:
        apply(
            order,
            trigger,
            actor,
            T0,
            reason="checked",
            payload=_payload(trigger, provider),
        )
    except HomecareError:
        return False
    return True


class OrderLedger(RuleBasedStateMachine):
    """The store must agree with the pure lifecycle, step by step."""

    orders = Bundle("orders")
    # Set by the test before hypothesis builds machines: one loop and pool
    # for the whole run, since each machine is built by hypothesis itself.
    loop: asyncio.AbstractEventLoop
    pool: asyncpg.Pool

    def __init__(self) -> None:
        super().__init__()
        self.store = OrderStore(self.pool, SimulatedClock(T0))
        self.model: dict[str, Order] = {}
        self.keys: dict[tuple[str, str], tuple[BookingRequest, str]] = {}

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        return self.loop.run_until_complete(coro)

    @initialize()
    def empty(self) -> None:
        self.run(
            self.pool.execute(
                'truncate "order", order_event, offer, idempotency_key cascade'
            )
        )

    @rule(
        target=orders,
        key=st.sampled_from(["a", "b", "c"]),
        service=st.sampled_from(SERVICES),
        actor=st.sampled_from([ACTORS[1], ACTORS[5]]),
    )
    def book(self, key: str, service: str, actor: Actor) -> str:
        request = BookingRequest(
            elder_id="el-1",
            service_code=service,
            window=TimeWindow(T0, T0 + timedelta(hours=2)),
        )
        first = self.keys.get((str(actor), key))
        if first is not None and first[0] != request:
            with pytest.raises(IdempotencyMismatchError):
                self.run(self.store.create(request, actor, key))
            return first[1]
        booking = self.run(self.store.create(request, actor, key))
        if first is not None:
            assert not booking.created
            assert booking.order.order_id == first[1]
        else:
            assert booking.created
            self.keys[(str(actor), key)] = (request, booking.order.order_id)
            self.model[booking.order.order_id] = booking.order
        return booking.order.order_id

    @rule(
        order_id=orders,
        trigger=st.sampled_from(list(Trigger)),
        actor=st.sampled_from(ACTORS),
        provider=st.sampled_from(["cg-1", "cg-2", "vd-1"]),
        stale=st.booleans(),
        reason=st.sampled_from(["", "elder asked"]),
    )
    def transition(
        self,
        order_id: str,
        trigger: Trigger,
        actor: Actor,
        provider: str,
        stale: bool,
        reason: str,
    ) -> None:
        before = self.model[order_id]
        version = before.version - 1 if stale else before.version
        payload = _payload(trigger, provider)
        try:
            expected, _ = apply(
                before,
                trigger,
                actor,
                T0,
                expected_version=version,
                reason=reason,
                payload=payload,
            )
        except HomecareError as refused:
            with pytest.raises(type(refused)):
                self.run(
                    self.store.transition(
                        order_id,
                        trigger,
                        actor,
                        expected_version=version,
                        reason=reason,
                        payload=payload,
                    )
                )
            return
        stored, event = self.run(
            self.store.transition(
                order_id,
                trigger,
                actor,
                expected_version=version,
                reason=reason,
                payload=payload,
            )
        )
        assert stored == expected
        assert event.seq == before.version + 1
        event_note(f"reached {stored.status}")
        self.model[order_id] = stored

    @rule(order_id=orders, data=st.data())
    def legal_step(self, order_id: str, data: st.DataObject) -> None:
        """Walk deeper: a trigger allowed from the state, by a fitting actor."""
        order = self.model[order_id]
        triggers = [t for t, r in TRANSITIONS.items() if order.status in r.sources]
        if not triggers:
            return
        # forward steps weigh more, so orders get deep into their lives
        forward = [t for t in triggers if t in _FORWARD] * 12
        trigger = data.draw(st.sampled_from(forward + triggers))
        holder = order.offer_provider_id or order.provider_id
        role = (
            ActorRole.VENDOR
            if order.provider_kind is ProviderKind.VENDOR
            else ActorRole.CAREGIVER
        )
        provider = "vd-1" if role is ActorRole.VENDOR else "cg-1"
        candidates = [ACTORS[0], ACTORS[1]]
        if holder:
            candidates.append(Actor(role, holder))
        allowed = [a for a in candidates if _allows(order, trigger, a, provider)]
        actor = data.draw(st.sampled_from(allowed or candidates))
        self.transition(order_id, trigger, actor, provider, False, "checked")

    @invariant()
    def store_matches_model_and_invariants_hold(self) -> None:
        for order_id, model in self.model.items():
            stored = self.run(self.store.get(order_id))
            events = self.run(self.store.events(order_id))
            open_offers = self.run(
                self.pool.fetchval(
                    "select count(*) from offer"
                    " where order_id = $1 and outcome is null",
                    uuid.UUID(order_id),
                )
            )
            assert stored == model
            assert [e.seq for e in events] == list(range(1, stored.version + 1))
            assert replay(events) == stored
            assert (stored.provider_id is not None) == (
                stored.status in ASSIGNED_STATES
            )
            assert open_offers == (1 if stored.status is OrderStatus.OFFERED else 0)
            if events[-1].from_status in TERMINAL_STATES:
                raise AssertionError("an event left a terminal state")


def test_order_ledger_state_machine(backing: Backing) -> None:
    """Random legal and illegal steps keep the ledger consistent."""
    loop = asyncio.new_event_loop()
    try:
        database = backing.database_url.rsplit("/", 1)[0] + "/homecare_stateful"

        async def prepare() -> asyncpg.Pool:
            admin = await asyncpg.connect(backing.database_url)
            try:
                await admin.execute("drop database if exists homecare_stateful")
                await admin.execute("create database homecare_stateful")
            finally:
                await admin.close()
            pool = await connect_pool(database, size=4)
            async with pool.acquire() as conn:
                await migrate(conn)
                await upsert_services(conn, SEED_SERVICES)
                await load_small_directory(conn)
            return pool

        pool = loop.run_until_complete(prepare())
        OrderLedger.loop, OrderLedger.pool = loop, pool
        try:
            runner = settings(
                max_examples=25,
                stateful_step_count=40,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            )(OrderLedger)
            runner.TestCase().runTest()
        finally:
            loop.run_until_complete(pool.close())
    finally:
        loop.close()
