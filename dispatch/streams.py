"""The demo's order streams and its operator, as network clients.

:class:`OrderStreams` books a seeded mix of orders the way each source
does in production: hotline operators and the web portal over
``POST /v1/orders``, a partner system and a hub of smart devices over the
``/v1/intake`` websocket (orders and alarms: falls and SOS buttons become
emergencies). Arrivals follow a Poisson process on the simulation's clock,
and each booking runs on its own, so a slow answer never delays the next
arrival.

:class:`Operator` does what the console's operator does with finished
work: reviews completed orders and closes them with a rating and a
settlement, and sends escalated routine orders back to dispatch once.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

import aiohttp

from dispatch.city import CHINA_TZ, City
from dispatch.clock import Clock
from dispatch.domain import Actor, ActorRole
from ws.client import ProtocolError, Session

__all__ = ["Operator", "OrderStreams", "StreamCounts"]

logger = logging.getLogger(__name__)

_HTTP_TIMEOUT_S = 15.0
_AHEAD_CONCURRENCY = 8
_OPERATOR_POLL_S = 2.0
_CAREGIVER_SERVICES = (
    ("meal_help", 5),
    ("companionship", 3),
    ("bp_glucose_check", 5),
    ("medication", 3),
    ("consult_home", 1),
)
_VENDOR_SERVICES = (("pharmacy_delivery", 3), ("grocery_delivery", 3))
_URGENT_SERVICES = (("bp_glucose_check", 2), ("medication", 2), ("meal_help", 1))
_WIDTHS_MIN = (60, 120, 120, 180, 240)


@dataclass
class StreamCounts:
    """Orders booked per stream, the operator's work and every error met."""

    booked: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    closed: int = 0
    redispatched: int = 0


class OrderStreams:
    """Every source of orders of the demo city.

    Args:
        base_url: The service's ``http://host:port``.
        token_for: Issues the token of an actor.
        clock: The simulation's clock.
        city: The city (its elders are the ones who ask).
        seed: Seed of the mix and of the arrival times.
    """

    def __init__(
        self,
        base_url: str,
        token_for: Callable[[Actor], str],
        clock: Clock,
        city: City,
        *,
        seed: int = 7,
    ) -> None:
        self._base = base_url
        self._ws_base = "ws" + base_url.removeprefix("http")
        self._clock = clock
        self._elders = [e.elder_id for e in city.elders]
        self._rng = random.Random(seed)
        self._keys = itertools.count(1)
        self._run_id = f"{seed}-{int(clock.now().timestamp())}"
        self._tokens = {
            "hotline": token_for(Actor(ActorRole.OPERATOR, "hotline-1")),
            "portal": token_for(Actor(ActorRole.PARTNER, "web-portal")),
            "partner": token_for(Actor(ActorRole.PARTNER, "partner-yiyang")),
            "device": token_for(Actor(ActorRole.DEVICE, "device-hub")),
        }
        self._sessions: dict[str, Session] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.counts = StreamCounts()

    async def run(
        self,
        orders_per_hour: float,
        ahead_orders: int,
        ahead_span_min: float = 570,
        settled: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Book ``ahead_orders`` for today at once, then stream until cancelled.

        The windows of the orders booked ahead open between 08:30 and
        ``ahead_span_min`` minutes later. ``settled``, when given, is
        awaited between the two: the dispatcher takes orders in the order
        they were booked, so an alarm raised behind hundreds of them would
        wait its turn.
        """
        timeout = aiohttp.ClientTimeout(total=_HTTP_TIMEOUT_S)
        async with aiohttp.ClientSession(self._base, timeout=timeout) as http:
            try:
                await self._book_ahead(http, ahead_orders, ahead_span_min)
                if settled is not None:
                    await settled()
                while True:
                    await self._clock.sleep(
                        self._rng.expovariate(orders_per_hour / 3600.0)
                    )
                    self._spawn(self._book_one(http))
            finally:
                for task in list(self._tasks):
                    task.cancel()
                for session in self._sessions.values():
                    await session.close()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _key(self) -> str:
        return f"demo-{self._run_id}-{next(self._keys)}"

    def _weighted(self, table: tuple[tuple[str, int], ...]) -> str:
        return self._rng.choices([n for n, _ in table], [w for _, w in table])[0]

    async def _book_ahead(
        self, http: aiohttp.ClientSession, count: int, span_min: float
    ) -> None:
        """Orders the portal took yesterday evening, for windows today."""
        day = self._clock.now().astimezone(CHINA_TZ).date()
        opening = datetime.combine(day, time(8, 30), CHINA_TZ)
        gate = asyncio.Semaphore(_AHEAD_CONCURRENCY)

        async def book(body: dict[str, Any]) -> None:
            async with gate:
                await self._post(http, "portal", body)

        bodies = []
        for _ in range(count):
            earliest = opening + timedelta(minutes=self._rng.uniform(0, span_min))
            vendor = self._rng.random() < 0.25
            service = self._weighted(
                _VENDOR_SERVICES if vendor else _CAREGIVER_SERVICES
            )
            bodies.append(self._body(service, "routine", earliest))
        await asyncio.gather(*(book(b) for b in bodies))

    def _body(self, service: str, priority: str, earliest: datetime) -> dict[str, Any]:
        earliest = earliest.replace(second=0, microsecond=0)
        latest = earliest + timedelta(minutes=self._rng.choice(_WIDTHS_MIN))
        return {
            "elder_id": self._rng.choice(self._elders),
            "service_code": service,
            "priority": priority,
            "earliest": earliest.isoformat(),
            "latest": latest.isoformat(),
        }

    async def _book_one(self, http: aiohttp.ClientSession) -> None:
        """One same-day arrival from a source drawn by the mix."""
        now = self._clock.now()
        draw = self._rng.random()
        if draw < 0.02:
            kind = self._rng.choice(("fall", "sos_button"))
            await self._alarm(kind, now)
        elif draw < 0.07:
            await self._alarm("abnormal_vitals", now)
        elif draw < 0.12:
            await self._post(
                http,
                "hotline",
                self._body(self._weighted(_URGENT_SERVICES), "urgent", now),
            )
        elif draw < 0.14:
            await self._alarm("battery_low", now)
        else:
            vendor = self._rng.random() < 0.25
            service = self._weighted(
                _VENDOR_SERVICES if vendor else _CAREGIVER_SERVICES
            )
            earliest = now + timedelta(minutes=self._rng.uniform(30, 150))
            body = self._body(service, "routine", earliest)
            source = self._rng.choices(("hotline", "portal", "partner"), (4, 3, 3))[0]
            if source == "partner":
                await self._intake("partner", "order", key=self._key(), **body)
            else:
                await self._post(http, source, body)

    async def _post(
        self, http: aiohttp.ClientSession, source: str, body: dict[str, Any]
    ) -> None:
        headers = {
            "Authorization": f"Bearer {self._tokens[source]}",
            "Idempotency-Key": self._key(),
        }
        try:
            async with http.post("/v1/orders", json=body, headers=headers) as reply:
                if reply.status == 201:
                    self.counts.booked[source] += 1
                else:
                    self.counts.errors[f"{source}_http_{reply.status}"] += 1
                    logger.warning(
                        "demo booking refused",
                        extra={"source": source, "status": reply.status},
                    )
        except (aiohttp.ClientError, TimeoutError) as lost:
            self.counts.errors[f"{source}_{type(lost).__name__}"] += 1

    async def _alarm(self, kind: str, at: datetime) -> None:
        await self._intake(
            "device",
            "alarm",
            key=self._key(),
            elder_id=self._rng.choice(self._elders),
            kind=kind,
            at=at.isoformat(),
            readings={"systolic_mmhg": 182.0} if kind == "abnormal_vitals" else {},
        )

    async def _intake(self, source: str, message_type: str, **fields: Any) -> None:
        """Send one intake message, reconnecting the sender's stream if needed."""
        label = source if message_type == "order" else f"device_{fields['kind']}"
        try:
            session = self._sessions.get(source)
            if session is None or session.connection.close_code is not None:
                session = await Session.open(
                    f"{self._ws_base}/v1/intake", self._tokens[source]
                )
                self._sessions[source] = session
            await session.request(message_type, timeout_s=_HTTP_TIMEOUT_S, **fields)
            self.counts.booked[label] += 1
        except ProtocolError as refused:
            self.counts.errors[f"{source}_{refused.code}"] += 1
            logger.warning(
                "demo intake refused", extra={"source": source, "code": refused.code}
            )
        except (OSError, TimeoutError) as lost:
            self.counts.errors[f"{source}_{type(lost).__name__}"] += 1
            self._sessions.pop(source, None)


class Operator:
    """The console operator's routine, over the HTTP API.

    Args:
        base_url: The service's ``http://host:port``.
        token: An operator's token.
        counts: Where closures, re-dispatches and errors are counted.
    """

    def __init__(self, base_url: str, token: str, counts: StreamCounts) -> None:
        self._base = base_url
        self._headers = {"Authorization": f"Bearer {token}"}
        self._counts = counts
        self._sent_back: set[str] = set()
        self._rng = random.Random(3)

    async def run(self) -> None:
        """Close completed orders and re-dispatch escalations, until cancelled."""
        timeout = aiohttp.ClientTimeout(total=_HTTP_TIMEOUT_S)
        async with aiohttp.ClientSession(
            self._base, timeout=timeout, headers=self._headers
        ) as http:
            while True:
                try:
                    await self._round(http)
                except (aiohttp.ClientError, TimeoutError) as lost:
                    self._counts.errors[f"operator_{type(lost).__name__}"] += 1
                await asyncio.sleep(_OPERATOR_POLL_S)

    async def _orders(self, http: aiohttp.ClientSession, status: str) -> list[Any]:
        async with http.get(
            "/v1/orders", params={"status": status, "limit": "100"}
        ) as reply:
            reply.raise_for_status()
            page = await reply.json()
        return list(page["orders"])

    async def _round(self, http: aiohttp.ClientSession) -> None:
        for order in await self._orders(http, "completed"):
            body = {
                "record_ok": True,
                "rating": self._rng.choice((4, 5, 5)),
                "settlement_cents": 3000 + 1000 * self._rng.randrange(4),
                "version": order["version"],
            }
            await self._post(http, order["order_id"], "close", body)
        for order in await self._orders(http, "escalated"):
            order_id = order["order_id"]
            if order["priority"] == "emergency" or order_id in self._sent_back:
                continue  # an emergency is for a person to phone around
            self._sent_back.add(order_id)
            body = {"reason": "operator sent it back to dispatch"}
            await self._post(http, order_id, "reassign", body)

    async def _post(
        self, http: aiohttp.ClientSession, order_id: str, action: str, body: Any
    ) -> None:
        async with http.post(f"/v1/orders/{order_id}/{action}", json=body) as reply:
            if reply.status == 200:
                if action == "close":
                    self._counts.closed += 1
                else:
                    self._counts.redispatched += 1
            elif reply.status != 409:  # a race with a phone is not an error
                self._counts.errors[f"operator_{action}_http_{reply.status}"] += 1
