"""The load generator's parts: phones, the order feed, histograms, sampling.

Latencies are measured from the *intended* send time of each message, not
from when it actually left: when the generator or the service falls
behind, the wait counts (no coordinated omission). They are recorded in
microseconds in HdrHistograms (the ``hdrhistogram`` package, imported
when a :class:`Recorder` is made).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import itertools
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from ws.client import ProtocolError, Session

__all__ = [
    "HISTOGRAMS",
    "IntakeFeed",
    "OrderFeed",
    "PhoneFleet",
    "Recorder",
    "Sampler",
]

#: What is measured, each in its own histogram.
HISTOGRAMS = (
    "order_ack",
    "offer_routine",
    "offer_emergency",
    "location_ack",
)
_MAX_US = 120_000_000
_SERVICES = ("meal_help", "companionship", "bp_glucose_check", "medication")
_TIMEOUT_S = 30.0


class Recorder:
    """Histograms and counters of one measured step."""

    def __init__(self) -> None:
        histogram = importlib.import_module("hdrh.histogram").HdrHistogram
        self.histograms: dict[str, Any] = {
            name: histogram(1, _MAX_US, 3) for name in HISTOGRAMS
        }
        self.counts: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.started = time.perf_counter()
        self.ended: float | None = None

    def record(self, name: str, seconds: float) -> None:
        """Add one latency, in seconds (clamped to the histogram's range)."""
        micros = min(_MAX_US, max(1, int(seconds * 1e6)))
        self.histograms[name].record_value(micros)

    def summary(self) -> dict[str, Any]:
        """Percentiles in milliseconds, counts and errors."""
        elapsed = (self.ended or time.perf_counter()) - self.started
        latencies = {}
        for name, histogram in self.histograms.items():
            count = histogram.get_total_count()
            latencies[name] = {
                "count": count,
                **{
                    f"p{label}": (
                        round(histogram.get_value_at_percentile(p) / 1000, 3)
                        if count
                        else None
                    )
                    for label, p in (
                        ("50", 50),
                        ("90", 90),
                        ("99", 99),
                        ("999", 99.9),
                    )
                },
                "max": round(histogram.get_max_value() / 1000, 3) if count else None,
            }
        return {
            "elapsed_s": round(elapsed, 3),
            "latency_ms": latencies,
            "counts": dict(self.counts),
            "errors": dict(self.errors),
        }


@dataclass
class _Pending:
    """When an order was meant to be booked, and its offer if seen first."""

    intended: float
    kind: str
    offered_at: float | None = None


@dataclass
class Tracker:
    """Matches offers seen on phones with the orders that were booked."""

    recorder: Recorder
    by_order: dict[str, _Pending] = field(default_factory=dict)
    early: dict[str, float] = field(default_factory=dict)

    def booked(self, order_id: str, intended: float, kind: str) -> None:
        """An order was acknowledged; its offer may already have arrived."""
        seen = self.early.pop(order_id, None)
        if seen is not None:
            self._offered(kind, seen - intended)
        else:
            self.by_order[order_id] = _Pending(intended, kind)

    def offered(self, order_id: str, at: float) -> None:
        """A phone received an offer of ``order_id`` at ``at``."""
        pending = self.by_order.pop(order_id, None)
        if pending is None:
            self.early[order_id] = at
            return
        self._offered(pending.kind, at - pending.intended)

    def _offered(self, kind: str, seconds: float) -> None:
        self.recorder.counts[f"offered_{kind}"] += 1
        if kind == "emergency":
            self.recorder.record("offer_emergency", seconds)
        elif kind in ("routine", "urgent"):
            self.recorder.record("offer_routine", seconds)


class PhoneFleet:
    """Caregiver phones over real websockets: report locations, accept offers.

    Args:
        url: The gateway URL (``ws://host:port/v1/caregiver``).
        tokens: One token per phone.
        location_every_s: Seconds between two location reports of a phone.
        accept: Whether phones accept the offers they receive.
    """

    def __init__(
        self,
        url: str,
        tokens: Sequence[str],
        *,
        location_every_s: float = 10.0,
        accept: bool = True,
    ) -> None:
        self._url = url
        self._tokens = tokens
        self._every_s = location_every_s
        self._accept = accept
        self.sessions: list[Session] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.recorder: Recorder | None = None
        self.tracker: Tracker | None = None
        self.reporting = False
        self.connect_errors: Counter[str] = Counter()

    async def connect(self, *, per_second: float = 500.0) -> int:
        """Open every phone's connection and say hello; returns how many did."""
        gate = asyncio.Semaphore(64)

        async def one(token: str, due: float) -> None:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            async with gate:
                try:
                    session = await Session.open(self._url, token, timeout_s=_TIMEOUT_S)
                    await session.request("hello", timeout_s=_TIMEOUT_S)
                except (OSError, TimeoutError, ProtocolError) as lost:
                    self.connect_errors[type(lost).__name__] += 1
                    return
                except Exception as other:  # noqa: BLE001  # handshake refusals
                    self.connect_errors[type(other).__name__] += 1
                    return
            self.sessions.append(session)
            self._spawn(self._listen(session))

        start = time.perf_counter()
        await asyncio.gather(
            *(one(t, start + k / per_second) for k, t in enumerate(self._tokens))
        )
        return len(self.sessions)

    def start_reporting(self) -> None:
        """Every phone reports its location every ``location_every_s``."""
        self.reporting = True
        rng = random.Random(5)
        for session in self.sessions:
            self._spawn(self._report(session, rng.uniform(0, self._every_s)))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _report(self, session: Session, phase_s: float) -> None:
        lat, lon = 43.88 + random.uniform(-0.1, 0.1), 125.32 + random.uniform(-0.1, 0.1)
        intended = time.perf_counter() + phase_s
        while True:
            await asyncio.sleep(max(0.0, intended - time.perf_counter()))
            recorder = self.recorder
            try:
                await session.request(
                    "location", lat=lat, lon=lon, timeout_s=_TIMEOUT_S
                )
                if recorder is not None:
                    recorder.record("location_ack", time.perf_counter() - intended)
                    recorder.counts["location_acks"] += 1
            except ProtocolError as refused:
                if recorder is not None:
                    recorder.errors[f"location_{refused.code}"] += 1
            except (OSError, TimeoutError) as lost:
                if recorder is not None:
                    recorder.errors[f"location_{type(lost).__name__}"] += 1
                return
            intended += self._every_s

    async def _listen(self, session: Session) -> None:
        with contextlib.suppress(ConnectionError, TimeoutError):
            while True:
                message = await session.next(timeout_s=3600.0)
                if message["type"] != "offer":
                    continue
                at = time.perf_counter()
                if self.tracker is not None:
                    self.tracker.offered(message["order_id"], at)
                if self._accept:
                    self._spawn(self._answer(session, message))

    async def _answer(self, session: Session, offer: dict[str, Any]) -> None:
        recorder = self.recorder
        try:
            await session.request(
                "accept",
                order_id=offer["order_id"],
                version=offer["version"],
                timeout_s=_TIMEOUT_S,
            )
            if recorder is not None:
                recorder.counts["accepts"] += 1
        except ProtocolError as refused:
            if recorder is not None:
                recorder.counts[f"accept_refused_{refused.code}"] += 1
        except (OSError, TimeoutError) as lost:
            if recorder is not None:
                recorder.errors[f"accept_{type(lost).__name__}"] += 1

    async def close(self) -> None:
        """Stop every phone and close its connection."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*(s.close() for s in self.sessions))
        self.sessions.clear()


@dataclass(frozen=True, slots=True)
class Mix:
    """Shares of the order kinds (the rest are same-day routine orders)."""

    emergency: float = 0.02
    urgent: float = 0.10
    ahead: float = 0.40


class _Feed:
    """Books orders at a fixed rate, open loop; subclasses say how one is sent.

    Args:
        elders: Elder ids to book for.
        tracker: Where acknowledged orders are matched with offers.
        mix: Shares of the kinds of order.
        now: The wall clock the windows are set from.
    """

    def __init__(
        self,
        elders: Sequence[str],
        tracker: Tracker,
        mix: Mix = Mix(),
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._elders = elders
        self._tracker = tracker
        self._mix = mix
        self._now = now
        self._rng = random.Random(11)
        self._keys = itertools.count()
        self._run = f"{int(time.time())}-{random.randrange(10**6)}"
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, rate_per_s: float, duration_s: float) -> None:
        """Send ``rate_per_s`` orders a second for ``duration_s``, then wait acks."""
        start = time.perf_counter()
        total = int(rate_per_s * duration_s)
        for k in range(total):
            intended = start + k / rate_per_s
            delay = intended - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(self._book(intended))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=_TIMEOUT_S + 5)

    def _kind(self) -> str:
        draw = self._rng.random()
        mix = self._mix
        if draw < mix.emergency:
            return "emergency"
        if draw < mix.emergency + mix.urgent:
            return "urgent"
        if draw < mix.emergency + mix.urgent + mix.ahead:
            return "ahead"
        return "routine"

    def _body(self, kind: str) -> dict[str, Any]:
        now = self._now().replace(second=0, microsecond=0)
        if kind == "emergency":
            service, earliest, width = "emergency_response", now, 30
        elif kind == "urgent":
            service, earliest, width = self._rng.choice(_SERVICES), now, 120
        elif kind == "ahead":
            service = self._rng.choice(_SERVICES)
            earliest = now + timedelta(hours=self._rng.uniform(3, 8))
            width = 120
        else:
            service = self._rng.choice(_SERVICES)
            earliest = now + timedelta(minutes=self._rng.uniform(30, 120))
            width = 120
        earliest = earliest.replace(second=0, microsecond=0)
        return {
            "elder_id": self._rng.choice(self._elders),
            "service_code": service,
            "priority": kind if kind in ("emergency", "urgent") else "routine",
            "earliest": earliest.isoformat(),
            "latest": (earliest + timedelta(minutes=width)).isoformat(),
        }

    async def _book(self, intended: float) -> None:
        recorder = self._tracker.recorder
        kind = self._kind()
        key = f"load-{self._run}-{next(self._keys)}"
        order_id = await self._send(self._body(kind), key, recorder)
        if order_id is None:
            return
        recorder.record("order_ack", time.perf_counter() - intended)
        recorder.counts["orders_acked"] += 1
        recorder.counts[f"orders_{kind}"] += 1
        self._tracker.booked(order_id, intended, kind)

    async def _send(
        self, body: dict[str, Any], key: str, recorder: Recorder
    ) -> str | None:
        """Book one order; its id, or None when it failed (counted)."""
        raise NotImplementedError


class OrderFeed(_Feed):
    """Books orders over HTTP (``POST /v1/orders``) at a fixed rate, open loop.

    Args:
        http: A session on the service's base URL.
        token: An operator's token.
        elders: Elder ids to book for.
        tracker: Where acknowledged orders are matched with offers.
        mix: Shares of the kinds of order.
    """

    def __init__(
        self,
        http: aiohttp.ClientSession,
        token: str,
        elders: Sequence[str],
        tracker: Tracker,
        mix: Mix = Mix(),
    ) -> None:
        super().__init__(elders, tracker, mix)
        self._http = http
        self._headers = {"Authorization": f"Bearer {token}"}

    async def _send(
        self, body: dict[str, Any], key: str, recorder: Recorder
    ) -> str | None:
        """Book one order over ``POST /v1/orders``; its id, or None on failure."""
        headers = {**self._headers, "Idempotency-Key": key}
        try:
            async with self._http.post(
                "/v1/orders", json=body, headers=headers
            ) as reply:
                answer = await reply.json()
                if reply.status != 201:
                    recorder.errors[f"order_http_{reply.status}"] += 1
                    return None
        except (aiohttp.ClientError, TimeoutError) as lost:
            recorder.errors[f"order_{type(lost).__name__}"] += 1
            return None
        return str(answer["order_id"])


class IntakeFeed(_Feed):
    """Books orders over intake streams (``/v1/intake``) at a fixed rate.

    Partner systems keep a connection open and stream orders over it; the
    token is checked once at the handshake, not per order. The service
    answers the messages of one connection in turn, and limits each
    connection's rate (:class:`ws.registry.Limits`), so orders are spread
    round-robin over several senders' connections.

    Args:
        sessions: Open intake connections, one per sender.
        elders: Elder ids to book for.
        tracker: Where acknowledged orders are matched with offers.
        mix: Shares of the kinds of order.
    """

    def __init__(
        self,
        sessions: Sequence[Session],
        elders: Sequence[str],
        tracker: Tracker,
        mix: Mix = Mix(),
    ) -> None:
        if not sessions:
            raise ValueError("an intake feed needs at least one connection")
        super().__init__(elders, tracker, mix)
        self._sessions = itertools.cycle(sessions)

    async def _send(
        self, body: dict[str, Any], key: str, recorder: Recorder
    ) -> str | None:
        """Book one order as an intake ``order`` message; its id, or None."""
        session = next(self._sessions)
        try:
            ack = await session.request("order", key=key, timeout_s=_TIMEOUT_S, **body)
        except ProtocolError as refused:
            recorder.errors[f"order_{refused.code}"] += 1
            return None
        except (OSError, TimeoutError) as lost:
            recorder.errors[f"order_{type(lost).__name__}"] += 1
            return None
        return str(ack["order_id"])


class Sampler:
    """Samples CPU and memory of the service and the stores once a second.

    Args:
        pids: Process ids by name (``service``, ``postgres``, ``redis``);
            a process's children are counted with it.
    """

    def __init__(self, pids: dict[str, int]) -> None:
        self._psutil = importlib.import_module("psutil")
        self._roots = {name: self._psutil.Process(pid) for name, pid in pids.items()}
        self.samples: list[dict[str, Any]] = []

    def _family(self, root: Any) -> list[Any]:
        with contextlib.suppress(self._psutil.Error):
            return [root, *root.children(recursive=True)]
        return []

    def _cpu_s(self) -> dict[str, float]:
        """CPU seconds so far of each named process and of its children.

        The service's children (the dispatcher's solver process) are kept
        apart as ``solver``, so the event loop's own share shows.
        """
        totals: dict[str, float] = {}
        for name, root in self._roots.items():
            own, children = 0.0, 0.0
            for k, process in enumerate(self._family(root)):
                with contextlib.suppress(self._psutil.Error):
                    times = process.cpu_times()
                    if k == 0:
                        own = times.user + times.system
                    else:
                        children += times.user + times.system
            if name == "service":
                totals[name], totals["solver"] = own, children
            else:
                totals[name] = own + children
        return totals

    def rss_mb(self, name: str) -> float:
        """Resident memory of one process (without children), in MiB."""
        return float(self._roots[name].memory_info().rss) / 2**20

    async def run(self) -> None:
        """Sample until cancelled."""
        own = self._psutil.Process()
        before, mine, at = self._cpu_s(), own.cpu_times(), time.perf_counter()
        while True:
            await asyncio.sleep(1.0)
            now_cpu, now_mine, now = self._cpu_s(), own.cpu_times(), time.perf_counter()
            span = now - at
            sample: dict[str, Any] = {
                f"{name}_cpu_pct": round(
                    100 * max(0.0, now_cpu[name] - before.get(name, 0.0)) / span, 1
                )
                for name in now_cpu
            }
            sample["generator_cpu_pct"] = round(
                100
                * (now_mine.user + now_mine.system - mine.user - mine.system)
                / span,
                1,
            )
            sample["service_rss_mb"] = round(self.rss_mb("service"), 1)
            sample["span_s"] = span
            sample["load_avg_1m"] = self._psutil.getloadavg()[0]
            self.samples.append(sample)
            before, mine, at = now_cpu, now_mine, now
