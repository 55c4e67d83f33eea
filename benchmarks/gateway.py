"""Gateway load benchmark: thousands of phones reporting while offers flow.

Run it as::

    python -m benchmarks.gateway --phones 5000 --duration 60
        --json benchmarks/results/gateway-5000.json   (one command line)

The benchmark starts PostgreSQL and Redis (embedded unless
``HOMECARE_DATABASE_URL`` and ``HOMECARE_REDIS_URL`` are set), runs one
service process with the ``api`` and ``gateway`` roles on uvloop, and, in
its own process, opens ``--phones`` websocket clients (:mod:`ws.client`,
on the ``websockets`` library). Each phone says hello, then sends a
``location`` every ``--interval`` seconds (at a random phase) and accepts
every offer it receives. Meanwhile orders are booked and offered to random
phones at ``--offers-per-s`` through the order store, so offers travel the
real path: commit, outbox, relay, Redis stream, gateway, phone.

Reported as JSON: the server's CPU over the measured window (percent of one
core: user plus system time of the service process divided by wall time),
ack latency percentiles of locations and accepts as seen by the phones
(send to ack), offer latency (commit to the phone), and the service
process's resident memory per connection (growth of RSS from before the
phones connected to after, divided by the phones).

Limitation: the load generator, the service, PostgreSQL and Redis share
the same machine (on the reference machine, two cores), so the client's
own scheduling delay is part of every latency figure and the server's CPU
share is bounded by what the generator leaves. The phones do not move
realistically and no dispatcher runs; offers are made directly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
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

from db.directory import load_elders, load_regions
from db.orders import OrderStore
from db.pool import connect_pool
from dispatch import logs
from dispatch.app import build_app
from dispatch.clock import WallClock
from dispatch.directory import ElderProfile, Region
from dispatch.domain import Actor, ActorRole, BookingRequest, GeoPoint, TimeWindow
from dispatch.lifecycle import Trigger
from dispatch.node import backing_stores, open_node
from dispatch.settings import Settings
from dispatch.tokens import TokenSigner
from ws.client import Session

__all__ = ["main"]

_CENTER = GeoPoint(43.8902, 125.3372)
_REGION = Region("bench-01", "基准社区", "Benchmark community", "220102", _CENTER)
_ELDERS = 50
_CONNECT_CONCURRENCY = 100
_OPERATOR = Actor(ActorRole.OPERATOR, "bench-operator")
_SYSTEM = Actor(ActorRole.SYSTEM, "bench-dispatcher")


def _percentiles(values: Sequence[float]) -> dict[str, float | int]:
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
        "max_ms": round(ordered[-1], 2),
    }


@dataclass
class _Figures:
    """What the phones observed."""

    location_ms: list[float] = field(default_factory=list)
    accept_ms: list[float] = field(default_factory=list)
    offer_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    offers_made: dict[str, float] = field(default_factory=dict)
    measuring: bool = False


class _BenchPhone:
    """One simulated phone: locations on a timer, accepts every offer.

    It pipelines: one task sends, one reads, and acks are matched to their
    send time by id, so the generator spends as little as it can per
    message.
    """

    def __init__(
        self, caregiver_id: str, connection: ClientConnection, figures: _Figures
    ) -> None:
        self.caregiver_id = caregiver_id
        self.connection = connection
        self.figures = figures
        lat = _CENTER.lat + random.uniform(-0.02, 0.02)
        lon = _CENTER.lon + random.uniform(-0.02, 0.02)
        self._location = (
            '{"type":"location","id":"l%d","v":1,'
            + f'"lat":{lat:.6f},"lon":{lon:.6f}}}'
        )
        self._sent: dict[str, tuple[str, float]] = {}
        self._count = 0

    async def report(self, interval_s: float) -> None:
        await asyncio.sleep(random.uniform(0, interval_s))
        while True:
            self._count += 1
            self._sent[f"l{self._count}"] = ("location", time.perf_counter())
            await self.connection.send(self._location % self._count)
            await asyncio.sleep(interval_s)

    async def read(self) -> None:
        figures = self.figures
        async for raw in self.connection:
            message = _DECODER.decode(raw)
            kind = message.get("type")
            if kind in ("ack", "error"):
                sent = self._sent.pop(str(message.get("re")), None)
                if kind == "error":
                    code = str(message.get("code"))
                    figures.errors[code] = figures.errors.get(code, 0) + 1
                elif sent is not None and figures.measuring:
                    elapsed_ms = (time.perf_counter() - sent[1]) * 1000
                    target = figures.location_ms
                    if sent[0] == "accept":
                        target = figures.accept_ms
                    target.append(elapsed_ms)
            elif kind == "offer":
                order_id = message["order_id"]
                made = figures.offers_made.pop(order_id, None)
                if made is not None and figures.measuring:
                    figures.offer_ms.append((time.perf_counter() - made) * 1000)
                self._count += 1
                message_id = f"a{self._count}"
                self._sent[message_id] = ("accept", time.perf_counter())
                await self.connection.send(
                    json.dumps(
                        {"type": "accept", "id": message_id, "order_id": order_id}
                    )
                )


_DECODER = msgspec.json.Decoder(dict[str, Any])


async def _connect(
    url: str, signer: TokenSigner, caregiver_id: str, figures: _Figures
) -> _BenchPhone:
    token = signer.issue(
        Actor(ActorRole.CAREGIVER, caregiver_id), WallClock().now(), timedelta(hours=2)
    )
    session = await Session.open(url, token, timeout_s=60)
    await session.request("hello", timeout_s=60)
    return _BenchPhone(caregiver_id, await session.detach(), figures)


async def _make_offers(
    store: OrderStore, phone_ids: Sequence[str], rate_per_s: float, figures: _Figures
) -> None:
    now = WallClock().now()
    window = TimeWindow(now, now + timedelta(hours=4))
    while True:
        started = time.perf_counter()
        booking = await store.create(
            BookingRequest(
                f"bench-el-{random.randrange(_ELDERS)}", "meal_help", window
            ),
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
                "provider_id": random.choice(phone_ids),
                "expires_at": expires.isoformat(),
            },
        )
        figures.offers_made[order_id] = time.perf_counter()
        await asyncio.sleep(max(0.0, 1 / rate_per_s - (time.perf_counter() - started)))


async def _seed(database_url: str) -> None:
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
    args: argparse.Namespace, url: str, database_url: str, server: psutil.Process
) -> dict[str, Any]:
    signer = TokenSigner(os.environ["HOMECARE_TOKEN_SECRET"].encode())
    figures = _Figures()
    rss_before = server.memory_info().rss

    connect_started = time.perf_counter()
    gate = asyncio.Semaphore(_CONNECT_CONCURRENCY)

    async def connect(i: int) -> _BenchPhone:
        async with gate:
            return await _connect(url, signer, f"cg-bench-{i:05d}", figures)

    phones = await asyncio.gather(*(connect(i) for i in range(args.phones)))
    connect_s = time.perf_counter() - connect_started
    await asyncio.sleep(2.0)
    rss_connected = server.memory_info().rss
    # the generator's own full collections over 5,000 connections would
    # show as ack latency; keep its long-lived objects out of them
    gc.collect()
    gc.freeze()

    pool = await connect_pool(database_url, size=4)
    store = OrderStore(pool, WallClock())
    tasks = [asyncio.create_task(p.report(args.interval)) for p in phones]
    tasks += [asyncio.create_task(p.read()) for p in phones]
    ids = [p.caregiver_id for p in phones]
    tasks.append(
        asyncio.create_task(_make_offers(store, ids, args.offers_per_s, figures))
    )
    await asyncio.sleep(args.interval)  # every phone has reported once
    figures.measuring = True
    cpu_start = server.cpu_times()
    own_start = time.process_time()
    wall_start = time.perf_counter()
    await asyncio.sleep(args.duration)
    cpu_end = server.cpu_times()
    own_cpu_s = time.process_time() - own_start
    wall_s = time.perf_counter() - wall_start
    figures.measuring = False

    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for phone in phones:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await phone.connection.close()
    await pool.close()

    cpu_s = (cpu_end.user - cpu_start.user) + (cpu_end.system - cpu_start.system)
    return {
        "phones": args.phones,
        "interval_s": args.interval,
        "offers_per_s": args.offers_per_s,
        "measured_s": round(wall_s, 1),
        "connect_all_s": round(connect_s, 1),
        "server_cpu_percent_of_one_core": round(100 * cpu_s / wall_s, 1),
        "load_generator_cpu_percent_of_one_core": round(100 * own_cpu_s / wall_s, 1),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "server_rss_mib_before": round(rss_before / 2**20, 1),
        "server_rss_mib_connected": round(rss_connected / 2**20, 1),
        "memory_per_connection_kib": round(
            (rss_connected - rss_before) / args.phones / 1024, 1
        ),
        "location_ack": _percentiles(figures.location_ms),
        "accept_ack": _percentiles(figures.accept_ms),
        "offer_commit_to_phone": _percentiles(figures.offer_ms),
        "errors": figures.errors,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "note": "load generator, service, PostgreSQL and Redis share the cores",
        },
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def _serve(port: int) -> None:
    settings = Settings.from_env()
    logs.configure("warning", "text")
    async with open_node(settings, settings.database_url, settings.redis_url) as node:
        app = build_app(node, roles=frozenset({"api", "gateway"}))
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
        gc.collect()
        gc.freeze()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        await stop.wait()
        await runner.cleanup()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gateway", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--phones", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds")
    parser.add_argument("--offers-per-s", type=float, default=20.0)
    parser.add_argument("--json", type=Path, default=None, help="write results here")
    parser.add_argument("--serve", type=int, default=0, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; prints the figures as JSON."""
    args = _parser().parse_args(argv)
    if args.serve:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_serve(args.serve))
        return 0

    data_dir = Path(tempfile.mkdtemp(prefix="homecare-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOMECARE_")}
    env["HOMECARE_DATA_DIR"] = str(data_dir)
    env["HOMECARE_TOKEN_SECRET"] = secrets.token_urlsafe(24)
    settings = Settings.from_env(
        {k: v for k, v in os.environ.items() if k.startswith("HOMECARE_")}
        | {"HOMECARE_DATA_DIR": str(data_dir)}
    )
    os.environ["HOMECARE_TOKEN_SECRET"] = env["HOMECARE_TOKEN_SECRET"]
    with backing_stores(settings) as (database_url, redis_url):
        env["HOMECARE_DATABASE_URL"] = database_url
        env["HOMECARE_REDIS_URL"] = redis_url
        port = _free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.gateway", "--serve", str(port)],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None
            if server.stdout.readline().strip() != "ready":
                raise RuntimeError("the service did not start")
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(_seed(database_url))
                results = runner.run(
                    _load(
                        args,
                        f"ws://127.0.0.1:{port}/v1/caregiver",
                        database_url,
                        psutil.Process(server.pid),
                    )
                )
        finally:
            server.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(timeout=30)
            if server.poll() is None:
                server.kill()
    text = json.dumps(results, indent=2)
    print(text)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
