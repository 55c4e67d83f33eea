"""The caregiver gateway, ``/v1/caregiver``: phones and vendor terminals.

A session starts with ``hello``. The server answers ``welcome``: either it
resumes after the phone's ``last_seq`` and then sends what the phone
missed, or it sends a fresh snapshot (open offers, active orders, plan),
flagged ``history_lost`` when the phone asked to resume and could not.
From then on the provider's history (offers, withdrawals, order updates,
plans) streams in order, and every request is answered with ``ack`` or
``error``. People's actions become store transitions through
:class:`dispatch.commands.Commands`, so a provider can act only on offers
and orders that are theirs.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from aiohttp import web

from db.alerts import AlertDraft, AlertKind, Severity, raise_alert
from db.live import LiveState, Sighting
from dispatch.domain import ActorRole, GeoPoint
from dispatch.errors import ForbiddenError
from dispatch.lifecycle import Order, Trigger
from ws.fanout import CONSOLE, provider_history
from ws.locations import LocationBatcher
from ws.protocol import (
    Accept,
    Ack,
    CheckIn,
    Complete,
    Decline,
    Deliver,
    DutyReport,
    EnRoute,
    GiveBack,
    Hello,
    Location,
    NoShow,
    OutOfPlaceError,
    PhoneRequest,
    PhoneSnapshot,
    ServerMessage,
    Sos,
    Start,
    Welcome,
    encode,
)
from ws.registry import Connection
from ws.session import ACQUIRE_TIMEOUT_S, Edge
from ws.views import alert_message, phone_orders

__all__ = ["Gateway"]

logger = logging.getLogger(__name__)

_PLAIN: dict[type[Any], Trigger] = {
    Accept: Trigger.ACCEPT,
    Decline: Trigger.DECLINE,
    GiveBack: Trigger.GIVE_BACK,
    EnRoute: Trigger.DEPART,
    Start: Trigger.START,
    NoShow: Trigger.NO_SHOW,
    Complete: Trigger.COMPLETE,
    Deliver: Trigger.DELIVER,
}


class Gateway:
    """The ``/v1/caregiver`` endpoint (roles caregiver and vendor).

    Args:
        edge: What the node's endpoints share.
        locations: Where location reports are gathered.
        live: Where duty is stored.
    """

    name = "caregiver"
    schema: object = PhoneRequest
    listens = False

    def __init__(self, edge: Edge, locations: LocationBatcher, live: LiveState):
        self._edge = edge
        self._locations = locations
        self._live = live

    async def opened(self, connection: Connection, request: web.Request) -> None:
        """Nothing is sent before the phone's hello."""
        del connection, request

    async def closed(self, connection: Connection) -> None:
        """Nothing to release beyond the registry."""
        del connection

    async def handle(
        self, connection: Connection, message: Any
    ) -> ServerMessage | None:
        """Carry out one request of a phone or terminal.

        Raises:
            OutOfPlaceError: Anything but hello before hello, or hello twice.
            ForbiddenError: A vendor reporting a location, duty or SOS.
            HomecareError: As :class:`dispatch.commands.Commands`.
        """
        if isinstance(message, Hello):
            await self._hello(connection, message)
            return None
        if connection.history is None:
            raise OutOfPlaceError("say hello first")
        actor = connection.actor
        now = self._edge.node.clock.now()
        if isinstance(message, Location | DutyReport | Sos):
            if actor.role is not ActorRole.CAREGIVER:
                raise ForbiddenError(f"{actor.role} terminals do not send this")
            if isinstance(message, Location):
                point = GeoPoint(message.lat, message.lon)
                self._locations.add(Sighting(actor.actor_id, point, now))
                return Ack(id=f"ack-{message.id}", re=message.id)
            if isinstance(message, DutyReport):
                await self._live.set_duty(actor.actor_id, message.duty)
                return Ack(id=f"ack-{message.id}", re=message.id)
            return await self._sos(connection, message)
        order = await self._act(connection, message)
        return Ack(
            id=f"ack-{message.id}",
            re=message.id,
            order_id=order.order_id,
            version=order.version,
            status=str(order.status),
        )

    async def _act(self, connection: Connection, message: Any) -> Order:
        commands = self._edge.node.commands
        actor = connection.actor
        if isinstance(message, CheckIn):
            order, _ = await commands.check_in(
                actor,
                message.order_id,
                GeoPoint(message.lat, message.lon),
                flagged=message.flagged,
                version=message.version,
            )
            return order
        trigger = _PLAIN[type(message)]
        record = getattr(message, "record", None)
        order, _ = await commands.act(
            actor,
            message.order_id,
            trigger,
            version=message.version,
            reason=getattr(message, "reason", ""),
            payload={"record": msgspec.to_builtins(record)} if record else None,
        )
        return order

    async def _hello(self, connection: Connection, hello: Hello) -> None:
        if connection.history is not None:
            raise OutOfPlaceError("hello was said already on this connection")
        fanout = self._edge.fanout
        history = provider_history(connection.actor.actor_id)
        async with connection.lock:
            last = hello.last_seq
            if last is not None and await fanout.can_resume(history, last):
                connection.follow(history, last)
                snapshot = None
            else:
                # the position is read before the snapshot, so nothing that
                # happens between the two is missed (it may come twice)
                position = await fanout.start(history)
                snapshot = await self._snapshot(connection.actor.actor_id)
                connection.follow(history, position)
            await connection.send_message(
                Welcome(
                    id=f"w{connection.cursor}",
                    re=hello.id,
                    resumed=snapshot is None,
                    history_lost=snapshot is not None and last is not None,
                    snapshot=snapshot,
                    token_expires_at=connection.token_expires_at,
                )
            )
            connection.on_gap = lambda: self._start_over(connection)
            self._edge.registry.attach(connection)
        connection.wake()

    async def _start_over(self, connection: Connection) -> None:
        """Replace lost history by a fresh snapshot; runs under the lock."""
        assert connection.history is not None
        position = await self._edge.fanout.start(connection.history)
        snapshot = await self._snapshot(connection.actor.actor_id)
        connection.follow(connection.history, position)
        await connection.send_message(
            Welcome(
                id=f"w{position}",
                re=None,
                resumed=False,
                history_lost=True,
                snapshot=snapshot,
                token_expires_at=connection.token_expires_at,
            )
        )

    async def _snapshot(self, provider_id: str) -> PhoneSnapshot:
        async with self._edge.node.pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
            orders = await phone_orders(conn, provider_id)
        plan = await self._edge.fanout.latest_plan(provider_id)
        if plan is None:
            return orders
        return PhoneSnapshot(
            offers=orders.offers,
            orders=orders.orders,
            plan=plan.visits,
            plan_computed_at=plan.computed_at,
        )

    async def _sos(self, connection: Connection, sos: Sos) -> Ack:
        actor = connection.actor
        where = (
            f" at {sos.lat:.5f},{sos.lon:.5f}"
            if sos.lat is not None and sos.lon is not None
            else ""
        )
        draft = AlertDraft(
            kind=AlertKind.SOS,
            severity=Severity.CRITICAL,
            message=f"caregiver sos{where}: {sos.message}"[:500],
            source_key=f"sos:{actor}:{sos.id}",
            at=self._edge.node.clock.now(),
            caregiver_id=actor.actor_id,
        )
        async with self._edge.node.pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
            alert, created = await raise_alert(conn, draft)
        message = alert_message(alert)
        await self._edge.fanout.publish(CONSOLE, message.id, encode(message))
        if created:
            logger.error(
                "caregiver sos",
                extra={"alert_id": alert.alert_id, "caregiver_id": actor.actor_id},
            )
        return Ack(id=f"ack-{sos.id}", re=sos.id, alert_id=alert.alert_id)
