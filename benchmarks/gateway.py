"""Gateway load benchmark: thousands of phones reporting while offers flow.

Run it as::

    python -m benchmarks.gateway --phones 5000 --duration 60
        --json benchmarks/results/gateway-5000.json   (one command line)

The benchmark starts PostgreSQL and Redis (embedded unless
``HOMECARE_DATABASE_URL`` and ``HOMECARE_REDIS_URL`` are set), runs one
service process with the ``api`` and ``gateway`` roles on uvloop, and
opens ``--phones`` websocket clients (:mod:`ws.client`, on the
``websockets`` library) spread over ``--workers`` generator processes, so
that no single generator loop is what makes a reply late. Each phone says
hello, then sends a ``location`` every ``--interval`` seconds (at a random
phase) and accepts every offer it receives. Meanwhile orders are booked
and offered to random phones at ``--offers-per-s`` through the order store,
so offers travel the real path: commit, outbox, relay, Redis stream,
gateway, phone.

Every location has an intended send time on a fixed schedule; its latency
runs from that time to its ack, so a generator or service that stalls is
counted, not hidden (no coordinated omission). An accept is timed from the
moment its offer arrived, an offer from the return of the committing call
to its arrival on the phone (one monotonic clock serves every process).
Reports sent in the window and never acknowledged are counted apart.

Reported as JSON: the server's CPU over the measured window (percent of one
core: user plus system time of the service process divided by wall time),
the generators' CPU, the latency percentiles, the lateness of the service's
and the generators' event-loop timers and their collectors' pauses in the
window (what the tail is made of), and the service process's resident
memory per connection (growth of RSS from before the phones connected to
after, divided by the phones).

The phones ping every 20 s as the ``websockets`` library does by default
(``--phone-pings 0`` for none: at 5,000 phones that made no difference
measurable on the shared machine). The generators run under
``SCHED_BATCH`` (``--no-generators-batch`` to leave them as they are): on
the reference machine they share two cores with the service, and a
generator woken by an ack would otherwise take the core from the loop that
sent it, where real phones would be elsewhere. With 5,000 phones on a
machine already at a load of 10 to 12 (and no phone pings), that cut the
time the service waited for a core from 63-75% of the window to 37-47%,
and its p99 location ack from 289-409 ms to 82-149 ms. The time each
process waited for a core is reported, so the figures say how busy the
machine was.

Limitation: the generators, the service, PostgreSQL and Redis share the
same machine (on the reference machine, two cores), so the figures depend
on what else runs there; the load average at start and end is recorded.
The phones do not move realistically and no dispatcher runs; offers are
made directly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import platform
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import psutil  # type: ignore[import-untyped]  # no stubs installed; used for its figures only
import uvloop
from aiohttp import web
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import WebSocketException
from websockets.protocol import State

from db.directory import load_elders, load_regions
from db.orders import OrderStore
from db.pool import connect_pool
from dispatch import logs
from dispatch.app import build_app
from dispatch.clock import WallClock
from dispatch.directory import ElderProfile, Region
from dispatch.domain import Actor, ActorRole, BookingRequest, GeoPoint, TimeWindow
from dispatch.lifecycle import Trigger
from dispatch.node import GC_THRESHOLDS, backing_stores, open_node
from dispatch.settings import Settings
from dispatch.tokens import TokenSigner
from ws.client import ProtocolError, Session

__all__ = [
    "LoopWatch",
    "Service",
    "Window",
    "Workers",
    "bench_env",
    "main",
    "percentiles",
    "run_delay_s",
    "seed",
]

_CENTER = GeoPoint(43.8902, 125.3372)
_REGION = Region("bench-01", "基准社区", "Benchmark community", "220102", _CENTER)
_ELDERS = 50
_CONNECT_CONCURRENCY = 50  # per generator process
_OPERATOR = Actor(ActorRole.OPERATOR, "bench-operator")
_SYSTEM = Actor(ActorRole.SYSTEM, "bench-dispatcher")
# how long after the window the phones wait for the last acks
_GRACE_S = 5.0
_LAG_TICK_S = 0.02


def percentiles(values: Sequence[float]) -> dict[str, float | int]:
    """Count, p50, p90, p99 and max of milliseconds (nearest rank)."""
    if not values:
        return {"count": 0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {
        "count": len(ordered),
        "p50_ms": at(0.50),
        "p90_ms": at(0.90),
        "p99_ms": at(0.99),
        "p999_ms": at(0.999),
        "max_ms": round(ordered[-1], 2),
    }


def run_delay_s(pid: int) -> float:
    """Seconds a process's threads waited on a run queue for a core so far.

    Read from ``/proc/<pid>/task/*/schedstat`` (Linux with schedstats);
    NaN where it cannot be read. A loop that waits here is late however
    little work it has: the figure tells a busy machine from a slow loop.
    """
    total_ns = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            total_ns += int((task / "schedstat").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return math.nan
    return total_ns / 1e9


class LoopWatch:
    """Lateness of an event loop's timers and its collector's pauses.

    A timer that should fire every 20 ms records how late it fired: a
    loop busy with a long step, waiting for a core or stopped by a full
    collection shows here. Collector pauses are timed by ``gc.callbacks``.
    Both carry their monotonic start, so a window can be cut out later.
    Call :meth:`install` once, then run :meth:`run` as a task.
    """

    def __init__(self) -> None:
        self.lags: list[tuple[float, float]] = []
        self.pauses: list[tuple[float, int, float]] = []
        self._gc_started = 0.0

    def install(self) -> None:
        """Start timing the collector's pauses."""
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.monotonic()
        else:
            elapsed_ms = (time.monotonic() - self._gc_started) * 1000
            self.pauses.append((self._gc_started, info["generation"], elapsed_ms))

    async def run(self) -> None:
        """Record the timer's lateness until cancelled."""
        while True:
            before = time.monotonic()
            await asyncio.sleep(_LAG_TICK_S)
            late_ms = (time.monotonic() - before - _LAG_TICK_S) * 1000
            self.lags.append((before, late_ms))

    def dump(self) -> dict[str, Any]:
        """Everything recorded, for another process to cut its window."""
        return {"lags": self.lags, "pauses": self.pauses}

    @staticmethod
    def summary(dumps: Sequence[dict[str, Any]], start: float, end: float) -> Any:
        """Timer lateness and collector pauses of ``dumps`` inside the window."""
        lags = [late for d in dumps for at, late in d["lags"] if start <= at < end]
        by_generation: dict[str, dict[str, float]] = {}
        for d in dumps:
            for at, generation, pause_ms in d["pauses"]:
                if not start <= at < end:
                    continue
                figures = by_generation.setdefault(
                    str(generation), {"count": 0, "total_ms": 0.0, "max_ms": 0.0}
                )
                figures["count"] += 1
                figures["total_ms"] = round(figures["total_ms"] + pause_ms, 2)
                figures["max_ms"] = round(max(figures["max_ms"], pause_ms), 2)
        return {
            "timer_late": percentiles(lags),
            "gc_pauses_by_generation": by_generation,
        }


class _Reply(msgspec.Struct):
    type: str
    re: str | None = None
    order_id: str | None = None
    code: str | None = None


_DECODER = msgspec.json.Decoder(_Reply)


@dataclass
class Window:
    """The measured window on the shared monotonic clock."""

    start: float
    end: float

    def __contains__(self, at: float) -> bool:
        return self.start <= at < self.end


@dataclass
class _Seen:
    """What the phones of one generator process observed."""

    location_ms: list[float] = field(default_factory=list)
    accept_ms: list[float] = field(default_factory=list)
    offers: dict[str, float] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)


class _BenchPhone:
    """One simulated phone: locations on a fixed schedule, accepts every offer.

    One task sends, one reads; acks are matched to their intended send time
    by id. Only messages meant to be sent inside the window are timed.
    """

    def __init__(self, connection: ClientConnection, seen: _Seen) -> None:
        self.connection = connection
        self.seen = seen
        lat = _CENTER.lat + random.uniform(-0.02, 0.02)
        lon = _CENTER.lon + random.uniform(-0.02, 0.02)
        self._location = (
            '{"type":"location","id":"l%d","v":1,'
            + f'"lat":{lat:.6f},"lon":{lon:.6f}}}'
        )
        self._accept = '{"type":"accept","id":"a%d","order_id":"%s"}'
        #: message id -> intended send time, for the timed messages
        self.pending: dict[str, float] = {}
        self._count = 0

    async def report(self, first_at: float, interval_s: float, window: Window) -> None:
        intended = first_at
        while intended < window.end:
            delay = intended - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self._count += 1
            if intended in window:
                self.pending[f"l{self._count}"] = intended
            await self.connection.send(self._location % self._count)
            intended += interval_s

    async def read(self, window: Window) -> None:
        seen = self.seen
        async for raw in self.connection:
            now = time.monotonic()
            reply = _DECODER.decode(raw)
            if reply.type == "ack" or reply.type == "error":
                intended = self.pending.pop(reply.re or "", None)
                if reply.type == "error":
                    code = str(reply.code)
                    seen.errors[code] = seen.errors.get(code, 0) + 1
                elif intended is not None:
                    target = seen.location_ms
                    if reply.re and reply.re[0] == "a":
                        target = seen.accept_ms
                    target.append((now - intended) * 1000)
            elif reply.type == "offer" and reply.order_id is not None:
                seen.offers[reply.order_id] = now
                self._count += 1
                if now in window:
                    self.pending[f"a{self._count}"] = now
                await self.connection.send(self._accept % (self._count, reply.order_id))


async def _connect(
    url: str, signer: TokenSigner, caregiver_id: str, ping_interval_s: float | None
) -> ClientConnection:
    token = signer.issue(
        Actor(ActorRole.CAREGIVER, caregiver_id), WallClock().now(), timedelta(hours=2)
    )
    session = await Session.open(
        url, token, timeout_s=120, ping_interval_s=ping_interval_s
    )
    await session.request("hello", timeout_s=120)
    return await session.detach()


def _caregiver_id(index: int) -> str:
    return f"cg-bench-{index:05d}"


def _say(line: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


async def _worker(spec: dict[str, Any]) -> None:
    """One generator process: connect its phones, run them, say what it saw.

    Talks to the parent in JSON lines: writes ``connected``, reads the
    window, writes the results.
    """
    if spec["batch"]:
        # a woken generator does not preempt the service on its core: on
        # the reference machine they share two cores, where the phones
        # would be elsewhere
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    signer = TokenSigner(os.environ["HOMECARE_TOKEN_SECRET"].encode())
    gate = asyncio.Semaphore(_CONNECT_CONCURRENCY)
    failed: dict[str, int] = {}
    # nothing is timed before the parent sends the window
    window = Window(math.inf, math.inf)
    seen = _Seen()
    interval_s = spec["interval_s"]
    tasks: list[asyncio.Task[None]] = []

    async def connect(index: int) -> _BenchPhone | None:
        async with gate:
            try:
                connection = await _connect(
                    spec["url"], signer, _caregiver_id(index), spec["ping_interval_s"]
                )
            except (OSError, TimeoutError, WebSocketException, ProtocolError) as exc:
                name = type(exc).__name__
                failed[name] = failed.get(name, 0) + 1
                return None
        phone = _BenchPhone(connection, seen)
        # read from the start: an unread queue stops the heartbeat's pongs
        tasks.append(asyncio.create_task(phone.read(window)))
        if spec["mode"] == "hold":
            # a phone held through a long connect phase still reports now
            # and then, or the idle timeout would close it
            first_at = time.monotonic() + random.uniform(0, interval_s)
            tasks.append(
                asyncio.create_task(phone.report(first_at, interval_s, window))
            )
        return phone

    started = time.monotonic()
    first = spec["first"]
    opened = await asyncio.gather(
        *(connect(i) for i in range(first, first + spec["count"]))
    )
    phones = [p for p in opened if p is not None]
    _say(
        {
            "connected": len(phones),
            "connect_s": round(time.monotonic() - started, 1),
            "failed": failed,
        }
    )
    # the generator's own full collections over its connections would show
    # as latency; its long-lived objects are kept out of them, and it runs
    # with the node's thresholds
    gc.set_threshold(*GC_THRESHOLDS)
    gc.collect()
    gc.freeze()

    line = await asyncio.to_thread(sys.stdin.readline)
    go = json.loads(line)
    window.start, window.end = go["start"], go["end"]
    watch = LoopWatch()
    watch.install()
    tasks.append(asyncio.create_task(watch.run()))
    if spec["mode"] == "report":
        tasks += [
            asyncio.create_task(
                p.report(go["go"] + random.uniform(0, interval_s), interval_s, window)
            )
            for p in phones
        ]

    await asyncio.sleep(max(0.0, window.start - time.monotonic()))
    cpu_start = time.process_time()
    await asyncio.sleep(max(0.0, window.end - time.monotonic()))
    cpu_s = time.process_time() - cpu_start
    await asyncio.sleep(_GRACE_S)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

    _say(
        {
            "open_at_end": sum(1 for p in phones if p.connection.state is State.OPEN),
            "cpu_s": cpu_s,
            "location_ms": seen.location_ms,
            "accept_ms": seen.accept_ms,
            "unanswered": sum(len(p.pending) for p in phones),
            "offers": seen.offers,
            "errors": seen.errors,
            "watch": watch.dump(),
        }
    )

    async def close(connection: ClientConnection) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await connection.close()

    await asyncio.gather(*(close(p.connection) for p in phones))


class Workers:
    """Generator processes sharing ``phones`` phones between them.

    Args:
        url: The gateway's websocket URL.
        phones: Phones in all (caregivers ``cg-bench-00000``...).
        workers: Generator processes.
        mode: ``report`` (locations and accepts) or ``hold`` (hello only).
        interval_s: Seconds between two locations of a phone.
        ping_interval_s: Keepalive pings of each phone; None for none.
        batch: Run the generators under ``SCHED_BATCH``, so that a woken
            generator does not take the core from the service.
    """

    def __init__(
        self,
        url: str,
        phones: int,
        workers: int,
        mode: str,
        interval_s: float,
        *,
        ping_interval_s: float | None = 20.0,
        batch: bool = False,
    ) -> None:
        self._specs = []
        share, extra = divmod(phones, workers)
        first = 0
        for i in range(workers):
            count = share + (1 if i < extra else 0)
            self._specs.append(
                {
                    "url": url,
                    "first": first,
                    "count": count,
                    "mode": mode,
                    "interval_s": interval_s,
                    "ping_interval_s": ping_interval_s,
                    "batch": batch,
                }
            )
            first += count
        self._processes: list[asyncio.subprocess.Process] = []

    async def connect(self) -> list[dict[str, Any]]:
        """Start the processes; returns once every phone is connected or failed."""
        for spec in self._specs:
            self._processes.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "benchmarks.gateway",
                    "--worker",
                    json.dumps(spec),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    limit=2**30,
                )
            )
        return [await self._read(p) for p in self._processes]

    def pids(self) -> list[int]:
        """Process ids of the generators."""
        return [p.pid for p in self._processes]

    def start(self, go: float, window: Window) -> None:
        """Let the phones go at ``go``; they are timed inside ``window``."""
        line = json.dumps({"go": go, "start": window.start, "end": window.end})
        for process in self._processes:
            assert process.stdin is not None
            process.stdin.write(line.encode() + b"\n")

    async def results(self) -> list[dict[str, Any]]:
        """What each process saw, once the window and its grace are over."""
        found = [await self._read(p) for p in self._processes]
        for process in self._processes:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(30):
                    await process.wait()
            if process.returncode is None:
                process.kill()
        return found

    @staticmethod
    async def _read(process: asyncio.subprocess.Process) -> dict[str, Any]:
        assert process.stdout is not None
        line = await process.stdout.readline()
        if not line:
            raise RuntimeError("a generator process ended early")
        found: dict[str, Any] = json.loads(line)
        return found


async def _make_offers(
    store: OrderStore,
    phones: int,
    rate_per_s: float,
    window: Window,
    made: dict[str, float],
) -> None:
    now = WallClock().now()
    slot = TimeWindow(now, now + timedelta(hours=4))
    next_at = time.monotonic()
    while time.monotonic() < window.end:
        booking = await store.create(
            BookingRequest(f"bench-el-{random.randrange(_ELDERS)}", "meal_help", slot),
            _OPERATOR,
            uuid.uuid4().hex,
        )
        order_id = booking.order.order_id
        expires = WallClock().now() + timedelta(minutes=5)
        await store.transition(
            order_id,
            Trigger.OFFER,
            _SYSTEM,
            payload={
                "provider_id": _caregiver_id(random.randrange(phones)),
                "expires_at": expires.isoformat(),
            },
        )
        committed = time.monotonic()
        if committed in window:
            made[order_id] = committed
        next_at += 1 / rate_per_s
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))


async def seed(database_url: str) -> None:
    """Load the benchmark's region and elders, once."""
    pool = await connect_pool(database_url, size=1)
    try:
        async with pool.acquire() as conn:
            if not await conn.fetchval(
                "select exists (select 1 from region where region_id = $1)",
                _REGION.region_id,
            ):
                await load_regions(conn, [_REGION])
                await load_elders(
                    conn,
                    [
                        ElderProfile(
                            elder_id=f"bench-el-{i}",
                            region_id=_REGION.region_id,
                            name="基准",
                            phone="00000000000",
                            home=GeoPoint(_CENTER.lat + i * 1e-4, _CENTER.lon),
                        )
                        for i in range(_ELDERS)
                    ],
                )
    finally:
        await pool.close()


async def _load(
    args: argparse.Namespace, service: Service, database_url: str
) -> dict[str, Any]:
    server = service.process
    rss_before = server.memory_info().rss
    workers = Workers(
        service.url,
        args.phones,
        args.workers,
        "report",
        args.interval,
        ping_interval_s=args.phone_pings or None,
        batch=args.generators_batch,
    )
    connect_started = time.monotonic()
    connected = await workers.connect()
    connect_s = time.monotonic() - connect_started
    await asyncio.sleep(2.0)
    rss_connected = server.memory_info().rss

    pool = await connect_pool(database_url, size=4)
    store = OrderStore(pool, WallClock())
    go = time.monotonic() + 0.5
    # every phone reports once before the window opens
    window = Window(go + args.interval, go + args.interval + args.duration)
    workers.start(go, window)
    made: dict[str, float] = {}
    offers = asyncio.create_task(
        _make_offers(store, args.phones, args.offers_per_s, window, made)
    )
    load_start = os.getloadavg()
    await asyncio.sleep(max(0.0, window.start - time.monotonic()))
    cpu_start = server.cpu_times()
    waited_start = run_delay_s(server.pid)
    generators_waited_start = sum(run_delay_s(pid) for pid in workers.pids())
    await asyncio.sleep(max(0.0, window.end - time.monotonic()))
    cpu_end = server.cpu_times()
    waited_s = run_delay_s(server.pid) - waited_start
    generators_waited_s = (
        sum(run_delay_s(pid) for pid in workers.pids()) - generators_waited_start
    )
    wall_s = window.end - window.start
    load_end = os.getloadavg()
    found = await workers.results()
    await offers
    await pool.close()

    received: dict[str, float] = {}
    for part in found:
        received.update(part["offers"])
    offer_ms = [
        (received[order_id] - at) * 1000
        for order_id, at in made.items()
        if order_id in received
    ]
    errors: dict[str, int] = {}
    for part in found:
        for code, n in part["errors"].items():
            errors[code] = errors.get(code, 0) + n
    cpu_s = (cpu_end.user - cpu_start.user) + (cpu_end.system - cpu_start.system)
    service_watch = await service.stop()
    return {
        "phones": args.phones,
        "connected": sum(part["connected"] for part in connected),
        "generator_processes": args.workers,
        "generators_sched_batch": args.generators_batch,
        "phone_ping_interval_s": args.phone_pings or None,
        "interval_s": args.interval,
        "offers_per_s": args.offers_per_s,
        "measured_s": round(wall_s, 1),
        "latency_from": "intended send time (locations), offer arrival "
        "(accepts), return of the committing call (offers)",
        "connect_all_s": round(connect_s, 1),
        "server_cpu_percent_of_one_core": round(100 * cpu_s / wall_s, 1),
        # system time is mostly the loopback TCP stack, sends and receives
        "server_system_cpu_percent_of_one_core": round(
            100 * (cpu_end.system - cpu_start.system) / wall_s, 1
        ),
        "generators_cpu_percent_of_one_core": round(
            100 * sum(part["cpu_s"] for part in found) / wall_s, 1
        ),
        # time runnable but not running: waiting for one of the shared cores
        "server_waited_for_core_percent_of_window": round(100 * waited_s / wall_s, 1),
        "generators_waited_for_core_percent_of_window": round(
            100 * generators_waited_s / wall_s, 1
        ),
        "load_average_1min": {"start": load_start[0], "end": load_end[0]},
        "server_rss_mib_before": round(rss_before / 2**20, 1),
        "server_rss_mib_connected": round(rss_connected / 2**20, 1),
        "memory_per_connection_kib": round(
            (rss_connected - rss_before) / args.phones / 1024, 1
        ),
        "location_ack": percentiles([v for p in found for v in p["location_ms"]]),
        "accept_ack": percentiles([v for p in found for v in p["accept_ms"]]),
        "offer_commit_to_phone": percentiles(offer_ms),
        "offers_made_in_window": len(made),
        "offers_not_received": sum(1 for o in made if o not in received),
        "unanswered_in_window": sum(part["unanswered"] for part in found),
        "errors": errors,
        "server_loop": LoopWatch.summary([service_watch], window.start, window.end),
        "generator_loops": LoopWatch.summary(
            [part["watch"] for part in found], window.start, window.end
        ),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "note": "generators, service, PostgreSQL and Redis share the cores",
        },
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def _serve(port: int, db_pool_size: int | None) -> None:
    settings = Settings.from_env()
    if db_pool_size is not None:
        settings = Settings.from_env(
            dict(os.environ) | {"HOMECARE_DB_POOL_SIZE": str(db_pool_size)}
        )
    logs.configure("warning", "text")
    watch = LoopWatch()
    async with open_node(settings, settings.database_url, settings.redis_url) as node:
        app = build_app(node, roles=frozenset({"api", "gateway"}))
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
        gc.collect()
        gc.freeze()
        watch.install()
        lag = asyncio.create_task(watch.run())
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        _say({"ready": True})
        await stop.wait()
        lag.cancel()
        _say(watch.dump())
        await runner.cleanup()


class Service:
    """The service under test in its own process, on backing stores.

    Args:
        database_url: PostgreSQL of the service.
        redis_url: Redis of the service.
        env: Environment of the process (with its token secret).
        db_pool_size: PostgreSQL connections of the service, when not the
            settings' default.
    """

    def __init__(
        self,
        database_url: str,
        redis_url: str,
        env: dict[str, str],
        db_pool_size: int | None = None,
    ) -> None:
        port = _free_port()
        env = env | {
            "HOMECARE_DATABASE_URL": database_url,
            "HOMECARE_REDIS_URL": redis_url,
        }
        command = [sys.executable, "-m", "benchmarks.gateway", "--serve", str(port)]
        if db_pool_size is not None:
            command += ["--db-pool-size", str(db_pool_size)]
        self._popen = subprocess.Popen(command, env=env, stdout=subprocess.PIPE)
        assert self._popen.stdout is not None
        if not self._popen.stdout.readline().strip():
            raise RuntimeError("the service did not start")
        self.process = psutil.Process(self._popen.pid)
        self.url = f"ws://127.0.0.1:{port}/v1/caregiver"

    async def stop(self) -> dict[str, Any]:
        """Stop the service; returns its :meth:`LoopWatch.dump`."""
        self._popen.send_signal(signal.SIGTERM)
        assert self._popen.stdout is not None
        line = await asyncio.to_thread(self._popen.stdout.readline)
        self.close()
        found: dict[str, Any] = json.loads(line) if line else {}
        return found

    def close(self) -> None:
        """End the process if it still runs."""
        if self._popen.poll() is None:
            self._popen.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._popen.wait(timeout=30)
        if self._popen.poll() is None:
            self._popen.kill()


def bench_env(data_dir: Path) -> tuple[Settings, dict[str, str]]:
    """Settings of the run and the environment of its processes.

    Sets a fresh token secret in this process's environment too, where the
    generators inherit it.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOMECARE_")}
    env["HOMECARE_DATA_DIR"] = str(data_dir)
    env["HOMECARE_TOKEN_SECRET"] = secrets.token_urlsafe(24)
    settings = Settings.from_env(
        {k: v for k, v in os.environ.items() if k.startswith("HOMECARE_")}
        | {"HOMECARE_DATA_DIR": str(data_dir)}
    )
    os.environ["HOMECARE_TOKEN_SECRET"] = env["HOMECARE_TOKEN_SECRET"]
    return settings, env


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gateway", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--phones", type=int, default=1000)
    parser.add_argument(
        "--workers", type=int, default=4, help="generator processes sharing the phones"
    )
    parser.add_argument("--duration", type=float, default=60.0, help="seconds")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds")
    parser.add_argument("--offers-per-s", type=float, default=20.0)
    parser.add_argument(
        "--phone-pings",
        type=float,
        default=20.0,
        help="seconds between a phone's keepalive pings; 0 for none",
    )
    parser.add_argument(
        "--generators-batch",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the generators under SCHED_BATCH, so they do not preempt the "
        "service (default: yes)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write results here")
    parser.add_argument("--serve", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument(
        "--db-pool-size", type=int, default=None, help=argparse.SUPPRESS
    )
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
    return parser


def child(args: argparse.Namespace) -> bool:
    """Run the service or a generator when this process is one; False if not."""
    if args.serve:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_serve(args.serve, args.db_pool_size))
        return True
    if args.worker:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_worker(json.loads(args.worker)))
        return True
    return False


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; prints the figures as JSON."""
    args = _parser().parse_args(argv)
    if child(args):
        return 0

    data_dir = Path(tempfile.mkdtemp(prefix="homecare-bench-"))
    settings, env = bench_env(data_dir)
    with backing_stores(settings) as (database_url, redis_url):
        service = Service(database_url, redis_url, env)
        try:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(seed(database_url))
                results = runner.run(_load(args, service, database_url))
        finally:
            service.close()
    text = json.dumps(results, indent=2)
    print(text)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
