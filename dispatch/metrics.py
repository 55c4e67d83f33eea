"""Prometheus metrics in the text exposition format, served at ``/metrics``.

A small registry of counters, gauges and histograms written by hand (the
format is plain text, version 0.0.4). Names follow the Prometheus
conventions: ``homecare_`` prefix, base units (seconds), ``_total`` on
counters. Labels are low-cardinality facts (method, route, status,
priority, kind), never a person's id.

What the API node measures itself: request latency. What follows from the
committed order log (:class:`LogMetrics`, caught up at each scrape): offers and
escalations by priority, booked-to-offer and offer-to-accept latency by
priority. Open websocket connections by endpoint (:data:`CONNECTIONS`) are
read from the realtime edge's registry at each scrape; the dispatcher is to
observe :data:`SOLVE_SECONDS` (it is here so that there is one registry).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import asyncpg
from aiohttp import web

from dispatch.http import Handler, allow
from dispatch.openapi import TEXT, describe
from ws import EDGE

__all__ = [
    "BOOKED_TO_OFFER",
    "CONNECTIONS",
    "ESCALATIONS",
    "LOG_METRICS",
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

    def value(self, *labels: str) -> float:
        """The series of ``labels`` now (0 when never set)."""
        return self._values.get(self._key(labels), 0.0)

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
REGIONS_HELD: Gauge = REGISTRY.register(
    Gauge(
        "homecare_regions_held",
        "Regions this node's dispatcher holds leases on and dispatches.",
        ("holder",),
    )
)
REGION_HANDOVERS: Counter = REGISTRY.register(
    Counter(
        "homecare_region_handovers_total",
        "Times this node's set of leased regions changed (dispatcher restarted).",
        ("holder",),
    )
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
    """Turns committed order events into metrics, caught up at each scrape.

    Reads the event log below the oldest running transaction, in commit
    order (as :mod:`db.outbox` does), from where the last scrape stopped;
    the first scrape starts at the end of the log. Holds no connection and
    runs no task between scrapes.

    Args:
        pool: The order database.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._position: tuple[int, int] | None = None
        self._lock = asyncio.Lock()

    async def catch_up(self) -> None:
        """Count every event committed since the last call."""
        async with self._lock, self._pool.acquire() as conn:
            if self._position is None:
                row = await conn.fetchrow(
                    "select coalesce(max(tx), '0')::text as tx,"
                    " coalesce(max(event_id), 0) as event_id from order_event"
                )
                assert row is not None
                self._position = (int(row["tx"]), row["event_id"])
                return
            for _ in range(_MAX_BATCHES):
                tx, event_id = self._position
                rows = await conn.fetch(_NEW_EVENTS, str(tx), event_id, _BATCH)
                if not rows:
                    return
                self._position = (int(rows[-1]["tx"]), rows[-1]["event_id"])
                await self._count(conn, rows)
                if len(rows) < _BATCH:
                    return

    async def _count(self, conn: Any, rows: Sequence[asyncpg.Record]) -> None:
        wanted = [r for r in rows if r["trigger"] in ("offer", "accept", "escalate")]
        if not wanted:
            return
        ids = list({r["order_id"] for r in wanted})
        orders = {
            r["order_id"]: r
            for r in await conn.fetch(
                'select order_id, priority, created_at from "order"'
                " where order_id = any($1)",
                ids,
            )
        }
        offered_at = {
            r["order_id"]: r["offered_at"]
            for r in await conn.fetch(
                "select distinct on (order_id) order_id, offered_at from offer"
                " where order_id = any($1) and outcome = 'accept'"
                " order by order_id, offered_at desc",
                ids,
            )
        }
        for event in wanted:
            order = orders.get(event["order_id"])
            if order is None:
                continue
            priority = order["priority"]
            if event["trigger"] == "offer":
                OFFERS.inc(priority)
                if event["from_status"] == "booked" and event["seq"] == 2:
                    waited = (event["at"] - order["created_at"]).total_seconds()
                    BOOKED_TO_OFFER.observe(max(waited, 0.0), priority)
            elif event["trigger"] == "escalate":
                ESCALATIONS.inc(priority)
            elif event["order_id"] in offered_at:
                waited = (event["at"] - offered_at[event["order_id"]]).total_seconds()
                OFFER_TO_ACCEPT.observe(max(waited, 0.0), priority)


_BATCH = 5000
_MAX_BATCHES = 20
# below the oldest running transaction nothing new can appear (db.outbox)
_NEW_EVENTS = """
    select tx::text as tx, event_id, order_id, seq, trigger, from_status, at
    from order_event
    where (tx, event_id) > ($1::text::xid8, $2)
      and tx < pg_snapshot_xmin(pg_current_snapshot())
    order by tx, event_id
    limit $3
"""
LOG_METRICS = web.AppKey("log_metrics", LogMetrics)


_ENDPOINTS = ("caregiver", "intake", "console")
_CATCH_UP_TIMEOUT_S = 5.0


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
    follower = request.app.get(LOG_METRICS)
    if follower is not None:
        try:
            async with asyncio.timeout(_CATCH_UP_TIMEOUT_S):
                await follower.catch_up()
        except Exception:  # a scrape still answers with what it has
            logger.warning("metrics catch-up failed", exc_info=True)
    return web.Response(
        text=REGISTRY.render(),
        content_type="text/plain",
        headers={"X-Content-Type-Options": "nosniff"},
        charset="utf-8",
    )
