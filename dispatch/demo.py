"""The live demo: a seeded city at work on a simulated clock.

:func:`run_demo` starts the service with every role (API, gateway,
dispatcher) on a :class:`~dispatch.clock.SimulatedClock` that starts at
08:00 local time today and runs ``speed`` times faster than real time,
loads the Changchun city of :class:`~dispatch.city.CitySpec` with today's
shifts, and lets the city live over real network connections:

- caregivers' phones and vendors' terminals are websocket clients
  (:mod:`dispatch.phones`), in this process, over loopback;
- the order streams are :mod:`dispatch.streams`: hotline operators over
  HTTP, the web portal over HTTP, a partner system and smart devices over
  the intake websocket;
- an operator closes completed orders (review, rating, settlement) and
  sends escalated ones back to dispatch, over HTTP;
- proactive visits are booked by :mod:`db.proactive` when it is present.

It prints the console URL with an operator token at start and a summary
at the end (:class:`DemoSummary`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import logging
import signal
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

from aiohttp import web

from dispatch.app import build_app
from dispatch.city import CHINA_TZ, City, CitySpec, build_city
from dispatch.clock import SimulatedClock, WallClock
from dispatch.domain import Actor, ActorRole
from dispatch.node import Node, open_node
from dispatch.phones import Crew, PhoneProfile
from dispatch.roles import DISPATCHING, Dispatching
from dispatch.seeding import seed_city
from dispatch.settings import Settings
from dispatch.streams import Operator, OrderStreams, StreamCounts

__all__ = ["DemoOptions", "DemoSummary", "ErrorCounter", "format_summary", "run_demo"]

logger = logging.getLogger(__name__)

#: Every state an order passes through on its way to closure.
LIFECYCLE = (
    "booked",
    "offered",
    "accepted",
    "en_route",
    "arrived",
    "in_service",
    "completed",
    "closed",
)
_TOKEN_TTL = timedelta(days=30)
_PROGRESS_S = 10.0
_STOP_NUDGE_S = 5.0
_CATCH_UP_ROUNDS = 240
_CATCH_UP_PAUSE_S = 0.5


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """How the demo runs.

    Attributes:
        duration_s: Real seconds to run; ``None`` runs until a signal.
        speed: Simulated seconds per real second.
        phones: Caregivers carrying a simulated phone (the first ones of
            the city); ``None`` gives every caregiver one. Vendors'
            terminals are always connected.
        city: The city to load (when the database holds none).
        orders_per_hour: Same-day orders booked per simulated hour.
        ahead_orders: Orders booked the evening before for today, sent at
            start.
        ahead_span_min: Their windows open between 08:30 and this many
            minutes later.
        start: Simulated start; ``None`` is 08:00 local time today.
        seed: Seed of the orders and of the phones' choices.
        progress: Print a progress line every ten real seconds.
    """

    duration_s: float | None = None
    speed: float = 10.0
    phones: int | None = None
    city: CitySpec = field(default_factory=CitySpec)
    orders_per_hour: float = 300.0
    ahead_orders: int = 600
    ahead_span_min: float = 570.0
    start: datetime | None = None
    seed: int = 7
    progress: bool = True


@dataclass
class DemoSummary:
    """What the demo did, from the database and the clients' counts."""

    simulated_from: datetime
    simulated_to: datetime
    orders_by_state: dict[str, int]
    orders_by_channel: dict[str, int]
    states_reached: list[str]
    served: int
    escalations: int
    emergencies: int
    emergency_offer_s: list[float]
    emergency_accept_s: list[float]
    emergency_arrival_s: list[float]
    phones: int
    phones_connected: int
    streams: StreamCounts
    phone_requests: dict[str, int]
    phone_refusals: dict[str, int]
    phone_failures: dict[str, int]
    error_logs: int
    warning_logs: int

    @property
    def every_state_reached(self) -> bool:
        """Whether orders went through every state from booked to closed."""
        return set(LIFECYCLE) <= set(self.states_reached)


class ErrorCounter(logging.Handler):
    """Counts log records of warning and error level (the demo's health)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.levels: Counter[str] = Counter()
        self.first_errors: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Count one record; remember the first few errors' messages."""
        self.levels[record.levelname] += 1
        if record.levelno >= logging.ERROR and len(self.first_errors) < 5:
            self.first_errors.append(f"{record.name}: {record.getMessage()}")


def demo_start(now: datetime | None = None) -> datetime:
    """08:00 local time (China) on today's date."""
    today = (now or WallClock().now()).astimezone(CHINA_TZ).date()
    return datetime.combine(today, time(8), CHINA_TZ)


async def run_demo(
    settings: Settings,
    database_url: str,
    redis_url: str,
    options: DemoOptions,
    say: Callable[[str], None],
) -> DemoSummary:
    """Run the live demo until ``duration_s`` or SIGINT/SIGTERM.

    Args:
        settings: The service's settings (host and port are used as given).
        database_url: PostgreSQL to use.
        redis_url: Redis to use.
        options: How to run.
        say: Where the console URL, progress and summary lines go.
    """
    start = options.start or demo_start()
    clock = SimulatedClock(start, options.speed)
    errors = ErrorCounter()
    logging.getLogger().addHandler(errors)
    try:
        async with open_node(settings, database_url, redis_url, clock=clock) as node:
            day = start.astimezone(CHINA_TZ).date()
            async with node.pool.acquire() as conn:
                await seed_city(conn, options.city, day)
            city = await asyncio.to_thread(build_city, options.city)
            return await _live(node, clock, city, options, errors, say)
    finally:
        logging.getLogger().removeHandler(errors)


async def _live(
    node: Node,
    clock: SimulatedClock,
    city: City,
    options: DemoOptions,
    errors: ErrorCounter,
    say: Callable[[str], None],
) -> DemoSummary:
    settings = node.settings
    app = build_app(node)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    host, port = runner.addresses[0][:2]
    base = f"http://{host}:{port}"

    def token_for(actor: Actor) -> str:
        return node.signer.issue(actor, clock.now(), _TOKEN_TTL)

    operator_token = token_for(Actor(ActorRole.OPERATOR, "demo-operator"))
    say(f"homecare: demo city serving on {base} (simulated clock {options.speed:g}x)")
    say(f"homecare: console {base}/console/#token={operator_token}")

    profiles = _profiles(city, clock.now().astimezone(CHINA_TZ).date(), options)
    crew = Crew(
        f"ws://{host}:{port}/v1/caregiver",
        token_for,
        clock,
        profiles,
        speed=options.speed,
        seed=options.seed,
    )
    streams = OrderStreams(base, token_for, clock, city, seed=options.seed)
    operator = Operator(base, operator_token, streams.counts)
    # Everything loaded so far lives for the whole run: keep it out of the
    # collector's generations so full collections stay short (DESIGN.md 12).
    gc.collect()
    gc.freeze()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    simulated_from = clock.now()
    try:
        async with asyncio.TaskGroup() as group:
            jobs = [
                group.create_task(crew.run()),
                group.create_task(
                    streams.run(
                        options.orders_per_hour,
                        options.ahead_orders,
                        options.ahead_span_min,
                        settled=lambda: _caught_up(node, app[DISPATCHING]),
                    )
                ),
                group.create_task(operator.run()),
                group.create_task(_proactive(node, clock)),
            ]
            if options.progress:
                jobs.append(group.create_task(_progress(node, clock, crew, say)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=options.duration_s)
            say("homecare: stopping")
            connected = crew.connected()
            for job in jobs:
                job.cancel()
        simulated_to = clock.now()
        summary = await _summary(node, simulated_from, simulated_to, crew, streams)
        summary.phones_connected = connected
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await _stop(runner)
    summary.error_logs = errors.levels["ERROR"] + errors.levels["CRITICAL"]
    summary.warning_logs = errors.levels["WARNING"]
    for line in errors.first_errors:
        say(f"homecare: error logged: {line}")
    return summary


async def _caught_up(node: Node, dispatching: Dispatching) -> None:
    """Wait until the dispatcher has taken in every event committed so far."""
    async with node.pool.acquire() as conn:
        last = await conn.fetchval("select coalesce(max(event_id), 0) from order_event")
    for _ in range(_CATCH_UP_ROUNDS):
        current = dispatching.current
        if current is not None and await node.pool.fetchval(
            "select not exists (select 1 from order_event e"
            " join outbox_cursor c on c.name = $2"
            " where e.event_id <= $1 and (e.tx, e.event_id) > (c.tx, c.event_id))"
            " and exists (select 1 from outbox_cursor where name = $2)",
            last,
            current.cursors[0],
        ):
            return
        await asyncio.sleep(_CATCH_UP_PAUSE_S)
    logger.warning(
        "dispatcher still behind the night's orders", extra={"event_id": last}
    )


async def _stop(runner: web.AppRunner) -> None:
    """Stop the service, asking again any task that outlives its cancellation.

    A cancellation can be lost on Python 3.11 when it lands while a wait
    is already ending (the dispatcher's re-optimisation has shown it at
    shutdown); asking such a task once more lets the stop finish.
    """
    cleanup = asyncio.create_task(runner.cleanup())
    while True:
        done, _ = await asyncio.wait([cleanup], timeout=_STOP_NUDGE_S)
        if done:
            return
        stuck = [
            task
            for task in asyncio.all_tasks()
            if task is not cleanup and not task.done() and task.cancelling()
        ]
        logger.warning("service slow to stop", extra={"cancelling": len(stuck)})
        for task in stuck:
            task.cancel()


def _profiles(city: City, day: Any, options: DemoOptions) -> list[PhoneProfile]:
    shifts = {s.caregiver_id: s for s in city.shifts(day, options.city.seed)}
    caregivers = city.caregivers[: options.phones]
    return [
        PhoneProfile(
            Actor(ActorRole.CAREGIVER, c.caregiver_id),
            c.home,
            shifts[c.caregiver_id].starts_at,
            shifts[c.caregiver_id].ends_at,
        )
        for c in caregivers
        if c.caregiver_id in shifts
    ] + [
        PhoneProfile(Actor(ActorRole.VENDOR, v.vendor_id), v.location)
        for v in city.vendors
    ]


async def _proactive(node: Node, clock: SimulatedClock) -> None:
    """Book due proactive visits every few simulated minutes, when available."""
    try:
        module = importlib.import_module("db.proactive")
    except ImportError:
        return
    visits: Any = module.ProactiveVisits(node.pool, node.orders, clock)
    while True:
        try:
            await visits.generate(limit=20)
        except Exception:  # a failed round is retried next time
            logger.warning("proactive round failed", exc_info=True)
        await clock.sleep(300)


async def _progress(
    node: Node, clock: SimulatedClock, crew: Crew, say: Callable[[str], None]
) -> None:
    while True:
        await asyncio.sleep(_PROGRESS_S)
        rows = await node.pool.fetch(
            'select status, count(*) as n from "order" group by status'
        )
        states = {r["status"]: r["n"] for r in rows}
        now = clock.now().astimezone(CHINA_TZ)
        say(
            f"homecare: {now:%H:%M} orders {sum(states.values())}"
            f" open {sum(n for s, n in states.items() if s not in _ENDED)}"
            f" closed {states.get('closed', 0)}"
            f" escalated {states.get('escalated', 0)}"
            f" phones {crew.connected()}"
        )


_ENDED = frozenset({"completed", "closed", "cancelled", "no_show", "escalated"})


async def _summary(
    node: Node,
    simulated_from: datetime,
    simulated_to: datetime,
    crew: Crew,
    streams: OrderStreams,
) -> DemoSummary:
    async with node.pool.acquire() as conn:
        by_state = {
            r["status"]: r["n"]
            for r in await conn.fetch(
                'select status, count(*) as n from "order" group by status'
            )
        }
        by_channel = {
            r["channel"]: r["n"]
            for r in await conn.fetch(
                'select channel, count(*) as n from "order" group by channel'
            )
        }
        reached = [
            r["to_status"]
            for r in await conn.fetch("select distinct to_status from order_event")
        ]
        escalations = await conn.fetchval(
            "select count(*) from order_event where to_status = 'escalated'"
        )
        emergencies = await conn.fetch(
            """
            select o.created_at,
                   min(e.at) filter (where e.to_status = 'offered') as offered,
                   min(e.at) filter (where e.to_status = 'accepted') as accepted,
                   min(e.at) filter (where e.to_status = 'arrived') as arrived
            from "order" o join order_event e using (order_id)
            where o.priority = 'emergency'
            group by o.order_id, o.created_at
            """
        )

    def since_booking(column: str) -> list[float]:
        return sorted(
            (r[column] - r["created_at"]).total_seconds()
            for r in emergencies
            if r[column] is not None
        )

    counts = crew.counts
    return DemoSummary(
        simulated_from=simulated_from,
        simulated_to=simulated_to,
        orders_by_state=by_state,
        orders_by_channel=by_channel,
        states_reached=sorted(reached),
        served=by_state.get("completed", 0) + by_state.get("closed", 0),
        escalations=int(escalations),
        emergencies=len(emergencies),
        emergency_offer_s=since_booking("offered"),
        emergency_accept_s=since_booking("accepted"),
        emergency_arrival_s=since_booking("arrived"),
        phones=crew.phones,
        phones_connected=crew.connected(),
        streams=streams.counts,
        phone_requests=dict(counts.requests),
        phone_refusals=dict(counts.refused),
        phone_failures=dict(counts.failed),
        error_logs=0,
        warning_logs=0,
    )


def _spread(values: list[float]) -> str:
    if not values:
        return "none"
    p50 = values[len(values) // 2]
    p90 = values[min(len(values) - 1, int(len(values) * 0.9))]
    return f"p50 {p50:.0f} s, p90 {p90:.0f} s, max {values[-1]:.0f} s"


def format_summary(summary: DemoSummary) -> str:
    """The summary as printed at the end of the demo."""
    local = CHINA_TZ
    states = ", ".join(
        f"{state} {summary.orders_by_state.get(state, 0)}"
        for state in (*LIFECYCLE, "cancelled", "no_show", "escalated")
    )
    missing = [s for s in LIFECYCLE if s not in summary.states_reached]
    streams = summary.streams
    lines = [
        "homecare: demo summary",
        f"  simulated {summary.simulated_from.astimezone(local):%H:%M}"
        f" to {summary.simulated_to.astimezone(local):%H:%M} local time",
        f"  orders {sum(summary.orders_by_state.values())} by state: {states}",
        "  every state from booked to closed reached: "
        + ("yes" if not missing else f"no (missing {', '.join(missing)})"),
        f"  served (completed or closed) {summary.served}",
        f"  escalations {summary.escalations}",
        f"  emergencies {summary.emergencies}; from booking (simulated time) to"
        f" offer {_spread(summary.emergency_offer_s)};"
        f" to accept {_spread(summary.emergency_accept_s)};"
        f" to arrival {_spread(summary.emergency_arrival_s)}",
        f"  orders by channel: {dict(sorted(summary.orders_by_channel.items()))};"
        f" booked by stream: {dict(sorted(streams.booked.items()))}",
        f"  closed by the operator {streams.closed},"
        f" sent back to dispatch {streams.redispatched}",
        f"  phones {summary.phones_connected} of {summary.phones} connected;"
        f" requests {sum(summary.phone_requests.values())},"
        f" refused (expected races) {dict(sorted(summary.phone_refusals.items()))}",
        f"  errors: {summary.error_logs} error log lines,"
        f" {summary.warning_logs} warnings, stream errors"
        f" {dict(sorted(streams.errors.items()))}, phone request failures"
        f" {dict(sorted(summary.phone_failures.items()))}",
    ]
    return "\n".join(lines)
