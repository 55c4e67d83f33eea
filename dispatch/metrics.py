"""Prometheus metrics in the text exposition format, served at ``/metrics``.

A small registry of counters, gauges and histograms written by hand (the
format is plain text, version 0.0.4). Names follow the Prometheus
conventions: ``homecare_`` prefix, base units (seconds), ``_total`` on
counters. Labels are low-cardinality facts (method, route, status,
priority, kind), never a person's id.

What the API node measures itself: request latency. What follows from the
committed order log (:class:`LogMetrics`, on the API node): offers and
escalations by priority, booked-to-offer and offer-to-accept latency by
priority. Open websocket connections by endpoint (:data:`CONNECTIONS`) are
read from the realtime edge's registry at each scrape; the dispatcher is to
observe :data:`SOLVE_SECONDS` (it is here so that there is one registry).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
from aiohttp import web

from db.outbox import OutboxEvent, OutboxReader
from dispatch.http import Handler, allow
from dispatch.openapi import TEXT, describe
from ws import EDGE

__all__ = [
    "BOOKED_TO_OFFER",
    "CONNECTIONS",
    "ESCALATIONS",
    "OFFERS",
    "OFFER_TO_ACCEPT",
    "REGISTRY",
    "REQUEST_SECONDS",
    "SOLVE_SECONDS",
    "Counter",
    "Gauge",
    "Histogram",
    "LogMetrics",
    "Registry",
    "log_metrics",
    "middleware",
    "routes",
]

logger = logging.getLogger(__name__)

_LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_DISPATCH_BUCKETS_S = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)

Labels = tuple[str, ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _format_labels(names: Sequence[str], values: Labels, extra: str = "") -> str:
    pairs = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        pairs.append(extra)
    return "{" + ",".join(pairs) + "}" if pairs else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class _Metric:
    kind = ""

    def __init__(self, name: str, doc: str, labels: Sequence[str] = ()) -> None:
        self.name = name
        self.doc = doc
        self.label_names = tuple(labels)

    def _key(self, labels: Sequence[str]) -> Labels:
        if len(labels) != len(self.label_names):
            raise ValueError(f"{self.name} takes labels {self.label_names}")
        return tuple(str(v) for v in labels)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.doc}", f"# TYPE {self.name} {self.kind}"]

    def samples(self) -> list[str]:
        raise NotImplementedError


class Counter(_Metric):
    """A count that only goes up."""

    kind = "counter"

    def __init__(self, name: str, doc: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, doc, labels)
        self._values: dict[Labels, float] = {}

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        """Add ``amount`` (not negative) to the series of ``labels``."""
        key = self._key(labels)
        self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, *labels: str) -> float:
        """The current value of one series."""
        return self._values.get(self._key(labels), 0.0)

    def samples(self) -> list[str]:
        """Exposition lines of every series."""
        return [
            f"{self.name}{_format_labels(self.label_names, k)} {_number(v)}"
            for k, v in sorted(self._values.items())
        ]


class Gauge(_Metric):
    """A value that goes up and down."""

    kind = "gauge"

    def __init__(self, name: str, doc: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, doc, labels)
        self._values: dict[Labels, float] = {}

    def set(self, value: float, *labels: str) -> None:
        """Set the series of ``labels`` to ``value``."""
        self._values[self._key(labels)] = value

    def add(self, amount: float, *labels: str) -> None:
        """Add ``amount`` (may be negative) to the series of ``labels``."""
        key = self._key(labels)
        self._values[key] = self._values.get(key, 0.0) + amount

    def samples(self) -> list[str]:
        """Exposition lines of every series."""
        return [
            f"{self.name}{_format_labels(self.label_names, k)} {_number(v)}"
            for k, v in sorted(self._values.items())
        ]


class Histogram(_Metric):
    """Observations counted into cumulative buckets, with their sum."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        doc: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = _LATENCY_BUCKETS_S,
    ) -> None:
        super().__init__(name, doc, labels)
        self.buckets = (*sorted(buckets), math.inf)
        self._series: dict[Labels, tuple[list[int], list[float]]] = {}

    def observe(self, value: float, *labels: str) -> None:
        """Count one observation into the series of ``labels``."""
        key = self._key(labels)
        counts, total = self._series.setdefault(key, ([0] * len(self.buckets), [0.0]))
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                counts[i] += 1
        total[0] += value

    def count(self, *labels: str) -> int:
        """How many observations one series has."""
        series = self._series.get(self._key(labels))
        return series[0][-1] if series else 0

    def samples(self) -> list[str]:
        """Exposition lines: buckets, sum and count of every series."""
        lines = []
        for key, (counts, total) in sorted(self._series.items()):
            for bound, n in zip(self.buckets, counts, strict=True):
                le = f'le="{_number(bound)}"'
                labels = _format_labels(self.label_names, key, le)
                lines.append(f"{self.name}_bucket{labels} {n}")
            labels = _format_labels(self.label_names, key)
            lines.append(f"{self.name}_sum{labels} {_number(total[0])}")
            lines.append(f"{self.name}_count{labels} {counts[-1]}")
        return lines


class Registry:
    """The metrics of one process, rendered in registration order."""

    def __init__(self) -> None:
        self._metrics: list[_Metric] = []

    def register(self, metric: Any) -> Any:
        """Add ``metric`` and return it."""
        if any(m.name == metric.name for m in self._metrics):
            raise ValueError(f"metric {metric.name} is registered twice")
        self._metrics.append(metric)
        return metric

    def render(self) -> str:
        """The text exposition of every metric."""
        lines: list[str] = []
        for metric in self._metrics:
            lines.extend(metric.header())
            lines.extend(metric.samples())
        return "\n".join(lines) + "\n"


REGISTRY = Registry()
REQUEST_SECONDS: Histogram = REGISTRY.register(
    Histogram(
        "homecare_http_request_duration_seconds",
        "Time to answer an HTTP request.",
        ("method", "route", "status"),
    )
)
BOOKED_TO_OFFER: Histogram = REGISTRY.register(
    Histogram(
        "homecare_booked_to_offer_seconds",
        "Time from booking an order to its first offer.",
        ("priority",),
        _DISPATCH_BUCKETS_S,
    )
)
OFFER_TO_ACCEPT: Histogram = REGISTRY.register(
    Histogram(
        "homecare_offer_to_accept_seconds",
        "Time from an offer to its acceptance.",
        ("priority",),
        _DISPATCH_BUCKETS_S,
    )
)
OFFERS: Counter = REGISTRY.register(
    Counter("homecare_offers_total", "Offers made to providers.", ("priority",))
)
ESCALATIONS: Counter = REGISTRY.register(
    Counter(
        "homecare_escalations_total", "Orders escalated to operators.", ("priority",)
    )
)
CONNECTIONS: Gauge = REGISTRY.register(
    Gauge("homecare_websocket_connections", "Open websocket connections.", ("kind",))
)
SOLVE_SECONDS: Histogram = REGISTRY.register(
    Histogram(
        "homecare_solver_duration_seconds",
        "Wall time of one re-optimisation solve.",
        (),
        (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
    )
)


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Time every request under its route's template (never its raw path)."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        REQUEST_SECONDS.observe(
            time.perf_counter() - started, request.method, route, str(status)
        )


class LogMetrics:
    """Follows the committed order log and turns events into metrics.

    Args:
        pool: The order database.
        name: Cursor name of this follower; removed again at stop.
    """

    def __init__(self, pool: asyncpg.Pool, name: str) -> None:
        self._pool = pool
        self._name = name

    async def run(self) -> None:
        """Follow the log until cancelled."""
        reader = OutboxReader(self._pool, self._name, from_now=True)
        async for batch in reader.batches():
            await self._count(batch)
            await reader.commit()

    async def forget(self) -> None:
        """Remove this follower's cursor."""
        await self._pool.execute(
            "delete from outbox_cursor where name = $1", self._name
        )

    async def _count(self, batch: Sequence[OutboxEvent]) -> None:
        wanted = [e for e in batch if e.trigger in ("offer", "accept", "escalate")]
        if not wanted:
            return
        ids = list({uuid.UUID(e.order_id) for e in wanted})
        rows = await self._pool.fetch(
            'select order_id, priority, created_at from "order"'
            " where order_id = any($1)",
            ids,
        )
        orders = {str(r["order_id"]): r for r in rows}
        offers = {
            str(r["order_id"]): r["offered_at"]
            for r in await self._pool.fetch(
                "select distinct on (order_id) order_id, offered_at from offer"
                " where order_id = any($1) and outcome = 'accept'"
                " order by order_id, offered_at desc",
                ids,
            )
        }
        for event in wanted:
            order = orders.get(event.order_id)
            if order is None:
                continue
            priority = order["priority"]
            if event.trigger == "offer":
                OFFERS.inc(priority)
                if event.from_status == "booked" and event.seq == 2:
                    waited = (event.at - order["created_at"]).total_seconds()
                    BOOKED_TO_OFFER.observe(max(waited, 0.0), priority)
            elif event.trigger == "escalate":
                ESCALATIONS.inc(priority)
            elif event.order_id in offers:
                waited = (event.at - offers[event.order_id]).total_seconds()
                OFFER_TO_ACCEPT.observe(max(waited, 0.0), priority)


async def _follow(follower: LogMetrics) -> None:
    while True:
        try:
            await follower.run()
        except asyncio.CancelledError:
            raise
        except Exception:  # metrics must never stop the node
            logger.warning("metrics follower failed", exc_info=True)
            await asyncio.sleep(1.0)


def log_metrics(pool_of: Any) -> Any:
    """An aiohttp cleanup context running a :class:`LogMetrics` follower.

    Args:
        pool_of: Returns the order database pool of an application.
    """

    async def context(app: web.Application) -> AsyncIterator[None]:
        follower = LogMetrics(pool_of(app), f"metrics-{secrets.token_hex(6)}")
        task = asyncio.create_task(_follow(follower))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with contextlib.suppress(Exception):
            await follower.forget()

    return context


_ENDPOINTS = ("caregiver", "intake", "console")


def _count_connections(app: web.Application) -> None:
    """Read the realtime edge's open connections, when this node serves it."""
    edge = app.get(EDGE)
    if edge is None:
        return
    counts = dict.fromkeys(_ENDPOINTS, 0)
    for connection in list(edge.registry.connections):
        counts[connection.endpoint] = counts.get(connection.endpoint, 0) + 1
    for endpoint, n in counts.items():
        CONNECTIONS.set(n, endpoint)


routes = web.RouteTableDef()


@routes.get("/metrics")
@allow()
@describe(content_type=TEXT)
async def metrics(request: web.Request) -> web.Response:
    """Prometheus metrics of this process (text format 0.0.4)."""
    _count_connections(request.app)
    return web.Response(
        text=REGISTRY.render(),
        content_type="text/plain",
        headers={"X-Content-Type-Options": "nosniff"},
        charset="utf-8",
    )
