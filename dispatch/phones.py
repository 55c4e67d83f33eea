"""Simulated caregiver phones and vendor terminals, over real websockets.

Each phone is a :class:`ws.client.Phone` connected to ``/v1/caregiver``
with its own token, as a real phone would be: it learns of offers, order
updates and plans only from its history, and acts only by protocol
requests (accept, decline, en route, check-in, start, complete, deliver,
location, duty). Nothing reads the database or calls the dispatcher.

A caregiver's phone goes on duty at the start of the shift, answers
offers after a moment (accepting most, declining some, emergencies at
once), works through its held orders in plan order (emergencies first),
rides an e-bike to the elder's door reporting its location along the way,
checks in at the door, serves, and completes with a service record. A
vendor's terminal accepts its offers, leaves with the delivery a little
before the window opens and delivers.

Every phone is a few light coroutines in the process that runs them (the
demo runs them next to the service, in the same event loop); they keep
time by the simulation's clock, like phones whose clock is the city's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from websockets.exceptions import ConnectionClosed

from dispatch.clock import Clock
from dispatch.domain import Actor, ActorRole, GeoPoint, distance_m
from dispatch.simday import decision
from ws.client import Phone, ProtocolError

__all__ = ["Crew", "CrewCounts", "PhoneProfile"]

logger = logging.getLogger(__name__)

_DETOUR = 1.3
_SPEED_M_PER_S = 4.2
_REQUEST_TIMEOUT_S = 15.0
_READY_TIMEOUT_S = 30.0
_HELD = frozenset({"accepted", "en_route", "arrived", "in_service"})
_VITALS = {"systolic_mmhg": 132.0, "diastolic_mmhg": 84.0, "glucose_mmol_l": 6.1}


@dataclass(frozen=True, slots=True)
class PhoneProfile:
    """Who carries a phone and where their day starts.

    Attributes:
        actor: The caregiver or vendor the phone speaks for.
        home: Where the caregiver starts and ends the shift (a vendor's shop).
        shift_start: Start of today's shift; ``None`` for vendors.
        shift_end: End of today's shift; ``None`` for vendors.
    """

    actor: Actor
    home: GeoPoint
    shift_start: datetime | None = None
    shift_end: datetime | None = None


@dataclass
class CrewCounts:
    """What the phones did and met, counted on the phones' side."""

    requests: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    offers: int = 0
    emergency_offers: int = 0
    reconnects: int = 0


@dataclass
class _Held:
    """An order as the phone knows it."""

    order_id: str
    version: int
    status: str
    priority: str
    service_code: str
    earliest: datetime
    duration_min: int
    place: GeoPoint


class _SimPhone(Phone):
    """A phone that also hands its device every fresh snapshot."""

    def __init__(self, device: _Device, url: str, token: str) -> None:
        super().__init__(url, token, on_message=device.on_message)
        self._device = device

    def apply(self, message: Mapping[str, Any]) -> None:
        """Apply a server message; a welcome with a snapshot restarts the device."""
        if message["type"] == "welcome" and message.get("snapshot") is not None:
            self._device.restart(message["snapshot"])
        super().apply(message)


class _Device:
    """One phone or terminal: its connection, what it holds, how it acts."""

    def __init__(self, crew: Crew, profile: PhoneProfile, token: str) -> None:
        self.crew = crew
        self.profile = profile
        self.provider_id = profile.actor.actor_id
        self.here = profile.home
        self.held: dict[str, _Held] = {}
        self.offers: dict[str, dict[str, Any]] = {}
        self.plan: list[str] = []
        self.wake = asyncio.Event()
        self.phone = _SimPhone(self, crew.url, token)

    # -- what arrives ---------------------------------------------------------

    def restart(self, snapshot: Mapping[str, Any]) -> None:
        """Take a fresh snapshot as the whole truth (first hello, lost history)."""
        if self.phone.connects > 1:
            self.crew.counts.reconnects += 1
        self.held = {
            o["order_id"]: _held(o) for o in snapshot["orders"] if o["status"] in _HELD
        }
        self.plan = [v["order_id"] for v in snapshot.get("plan") or []]
        self.offers = {}
        for offer in snapshot["offers"]:
            self.on_message({"type": "offer", **offer, "expires_at": None})
        self.wake.set()

    def on_message(self, message: dict[str, Any]) -> None:
        """Apply one history message (called by the phone, in order)."""
        kind = message["type"]
        if kind == "offer":
            order_id = message["order_id"]
            if order_id in self.offers:
                return
            self.offers[order_id] = message
            self.crew.counts.offers += 1
            if message["priority"] == "emergency":
                self.crew.counts.emergency_offers += 1
            self.crew.spawn(self._answer(message))
        elif kind == "offer_withdrawn":
            self.offers.pop(message["order_id"], None)
        elif kind == "order_update":
            body = message.get("order")
            if body is not None and body["status"] in _HELD:
                self.held[message["order_id"]] = _held(body)
            else:
                self.held.pop(message["order_id"], None)
            self.wake.set()
        elif kind == "plan":
            self.plan = [v["order_id"] for v in message["visits"]]
            self.wake.set()

    # -- what it sends ----------------------------------------------------------

    async def request(self, message_type: str, **fields: Any) -> dict[str, Any] | None:
        """Send one request once connected; ``None`` when it was refused or lost.

        A refusal is an expected outcome here (the offer expired, the order
        was taken back meanwhile); it is counted by its code.
        """
        counts = self.crew.counts
        counts.requests[message_type] += 1
        try:
            async with asyncio.timeout(_READY_TIMEOUT_S):
                await self.phone.ready.wait()
            session = self.phone.session
            if session is None:
                raise ConnectionError("not connected")
            return await session.request(
                message_type, timeout_s=_REQUEST_TIMEOUT_S, **fields
            )
        except ProtocolError as refused:
            counts.refused[refused.code] += 1
            logger.debug(
                "phone request refused",
                extra={"provider_id": self.provider_id, "code": refused.code},
            )
        except (TimeoutError, ConnectionError, ConnectionClosed) as lost:
            counts.failed[type(lost).__name__] += 1
        return None

    async def report_location(self, point: GeoPoint) -> None:
        """Say where the caregiver is."""
        self.here = point
        await self.request("location", lat=point.lat, lon=point.lon, accuracy_m=15.0)

    async def _answer(self, offer: Mapping[str, Any]) -> None:
        crew = self.crew
        order_id = offer["order_id"]
        mood = decision(crew.seed, order_id, self.provider_id)
        emergency = offer["priority"] == "emergency"
        vendor = self.profile.actor.role is ActorRole.VENDOR
        await crew.clock.sleep((5 + 10 * mood) if emergency else (10 + 30 * mood))
        if order_id not in self.offers:
            return  # withdrawn or expired while thinking
        rate = crew.decline_rate / 4 if emergency else crew.decline_rate
        if not vendor and mood < rate:
            self.offers.pop(order_id, None)
            await self.request(
                "decline",
                order_id=order_id,
                reason="busy with another elder",
                version=offer["version"],
            )
            return
        ack = await self.request("accept", order_id=order_id, version=offer["version"])
        offered = self.offers.pop(order_id, None)
        if ack is None or offered is None:
            return
        self.held.setdefault(
            order_id,
            _held({**offered, "status": ack["status"], "version": ack["version"]}),
        )
        if vendor:
            crew.spawn(self._deliver(order_id, mood))
        self.wake.set()

    async def _deliver(self, order_id: str, mood: float) -> None:
        clock = self.crew.clock
        held = self.held.get(order_id)
        if held is None:
            return
        ready = held.earliest - timedelta(minutes=20)
        await clock.sleep((ready - clock.now()).total_seconds())
        if await self.request("en_route", order_id=order_id) is None:
            return
        await clock.sleep(900 + 900 * mood)
        record = {
            "tasks": [{"task": held.service_code, "outcome": "done"}],
            "notes": "handed over at the door",
        }
        await self.request("deliver", order_id=order_id, record=record)
        self.held.pop(order_id, None)

    # -- a caregiver's day ------------------------------------------------------

    async def work(self) -> None:
        """Go on duty, serve held orders in plan order, go off duty."""
        profile, clock = self.profile, self.crew.clock
        if profile.shift_start is None or profile.shift_end is None:
            return
        await clock.sleep((profile.shift_start - clock.now()).total_seconds())
        await self.request("duty", duty="on_shift")
        await self.report_location(self.here)
        while clock.now() < profile.shift_end + timedelta(hours=1):
            order = self._next()
            if order is None:
                if clock.now() >= profile.shift_end:
                    break
                await self._nap(self.crew.idle_s)
                await self.report_location(self.here)
                continue
            travel_s = _travel_s(self.here, order.place)
            leave_at = order.earliest - timedelta(seconds=travel_s)
            gap_s = (leave_at - clock.now()).total_seconds()
            if gap_s > 30 and order.priority != "emergency":
                await self._nap(min(gap_s, self.crew.idle_s))
                await self.report_location(self.here)
                continue
            await self._visit(order, travel_s)
        await self.request("duty", duty="off_shift")

    def _next(self) -> _Held | None:
        rank = {order_id: k for k, order_id in enumerate(self.plan)}
        held = sorted(
            self.held.values(),
            key=lambda o: (
                o.priority != "emergency",
                rank.get(o.order_id, len(rank)),
                o.earliest,
            ),
        )
        return held[0] if held else None

    async def _nap(self, seconds: float) -> None:
        self.wake.clear()
        nap = asyncio.ensure_future(self.crew.clock.sleep(seconds))
        woken = asyncio.ensure_future(self.wake.wait())
        try:
            await asyncio.wait([nap, woken], return_when=asyncio.FIRST_COMPLETED)
        finally:
            nap.cancel()
            woken.cancel()

    async def _visit(self, order: _Held, travel_s: float) -> None:
        crew, clock, order_id = self.crew, self.crew.clock, order.order_id
        mood = decision(crew.seed, order_id + "|late", self.provider_id)
        if order.status == "accepted":
            if await self.request("en_route", order_id=order_id) is None:
                self.held.pop(order_id, None)
                return
            order.status = "en_route"
        if order.status == "en_route":
            late_s = 600.0 if mood < crew.late_rate else 0.0
            await self._ride(order.place, travel_s + late_s)
            ack = await self.request(
                "check_in", order_id=order_id, lat=order.place.lat, lon=order.place.lon
            )
            if ack is None:
                self.held.pop(order_id, None)
                return
            order.status = "arrived"
        if order.status == "arrived":
            await clock.sleep((order.earliest - clock.now()).total_seconds())
            if await self.request("start", order_id=order_id) is None:
                self.held.pop(order_id, None)
                return
            order.status = "in_service"
        await clock.sleep(order.duration_min * 60)
        record: dict[str, Any] = {
            "tasks": [{"task": order.service_code, "outcome": "done"}],
            "notes": "visit went as planned",
        }
        if order.service_code == "bp_glucose_check":
            record["vitals"] = _VITALS
        await self.request("complete", order_id=order_id, record=record)
        self.held.pop(order_id, None)

    async def _ride(self, to: GeoPoint, seconds: float) -> None:
        """Travel to ``to`` in ``seconds``, reporting the location on the way."""
        start, step_s = self.here, self.crew.report_every_s
        steps = max(1, math.ceil(seconds / step_s))
        for k in range(1, steps + 1):
            await self.crew.clock.sleep(seconds / steps)
            share = k / steps
            await self.report_location(
                GeoPoint(
                    round(start.lat + (to.lat - start.lat) * share, 6),
                    round(start.lon + (to.lon - start.lon) * share, 6),
                )
            )


class Crew:
    """Every simulated phone and terminal of a demo.

    Run :meth:`run` as a task and cancel it to stop; :attr:`counts` and
    :meth:`connected` may be read at any time.

    Args:
        url: The gateway's websocket URL (``ws://host:port/v1/caregiver``).
        token_for: Issues the token of an actor.
        clock: The simulation's clock.
        profiles: The phones to run.
        speed: Simulated seconds per real second (paces keep-alive reports).
        seed: Seed of every choice the phones make.
        decline_rate: Share of routine offers declined (a quarter of it for
            emergencies).
        late_rate: Share of visits reached ten minutes late.
    """

    def __init__(
        self,
        url: str,
        token_for: Callable[[Actor], str],
        clock: Clock,
        profiles: Sequence[PhoneProfile],
        *,
        speed: float,
        seed: int = 7,
        decline_rate: float = 0.1,
        late_rate: float = 0.1,
    ) -> None:
        self.url = url
        self.clock = clock
        self.seed = seed
        self.decline_rate = decline_rate
        self.late_rate = late_rate
        # the gateway closes a connection silent for two minutes of real time
        self.idle_s = min(300.0, 30.0 * max(speed, 0.01))
        self.report_every_s = max(60.0, 2.0 * speed)
        self.counts = CrewCounts()
        self._devices = [_Device(self, p, token_for(p.actor)) for p in profiles]
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def phones(self) -> int:
        """Phones and terminals run."""
        return len(self._devices)

    def connected(self) -> int:
        """Phones connected and past their hello now."""
        return sum(d.phone.ready.is_set() for d in self._devices)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a short job of a phone, keeping a reference until it ends."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            self.counts.failed[type(error).__name__] += 1
            logger.warning("phone job failed", extra={"error": type(error).__name__})

    async def run(self, *, stagger_s: float = 5.0) -> None:
        """Connect every phone (spread over ``stagger_s``) and work the day.

        Runs until cancelled; then every phone closes its connection.
        """
        pause = stagger_s / max(1, len(self._devices))
        try:
            async with asyncio.TaskGroup() as group:
                for device in self._devices:
                    group.create_task(device.phone.run())
                    group.create_task(self._work(device))
                    await asyncio.sleep(pause)
        finally:
            for task in list(self._tasks):
                task.cancel()
            for device in self._devices:
                session = device.phone.session
                if session is not None:
                    with contextlib.suppress(Exception):
                        await session.close()

    async def _work(self, device: _Device) -> None:
        try:
            await device.work()
        except (TimeoutError, ConnectionError, ConnectionClosed) as lost:
            self.counts.failed[type(lost).__name__] += 1
        # the phone stays connected after the shift (it may still be asked)
        await asyncio.Event().wait()


def _held(body: Mapping[str, Any]) -> _Held:
    return _Held(
        order_id=body["order_id"],
        version=int(body["version"]),
        status=body["status"],
        priority=body["priority"],
        service_code=body["service_code"],
        earliest=_time(body["earliest"]),
        duration_min=int(body["duration_min"]),
        place=GeoPoint(float(body["lat"]), float(body["lon"])),
    )


def _time(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def _travel_s(a: GeoPoint, b: GeoPoint) -> float:
    return math.ceil(distance_m(a, b) * _DETOUR / _SPEED_M_PER_S)
