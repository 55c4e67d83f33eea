"""Load benchmark: phones over websockets and orders over HTTP on one node.

Run it against a service it starts itself (embedded PostgreSQL and Redis
in a temporary folder, a seeded city whose caregivers are all on shift
now, ``homecare serve`` in a child process with every role)::

    python -m benchmarks.load --spawn --phones 10000 --rate 500 --duration 60

or against a running service that serves the seeded city (caregivers
``cg-00001``..., elders ``el-000001``...)::

    python -m benchmarks.load --url http://127.0.0.1:8080
        --token-secret "$HOMECARE_TOKEN_SECRET" --phones 600 --rate 20
        (one command line)

Each phone says hello, reports its location every ``--location-every``
seconds and accepts the offers it receives. Orders (emergency, urgent,
same-day routine and booked ahead, see :class:`benchmarks.loadgen.Mix`)
are booked at ``--rate`` a second, open loop, over HTTP by an operator or
(``--orders-over intake``) over the intake streams of ``--intake-senders``
partners, one connection each, round robin. Latencies are measured from
each message's intended send time and kept in HdrHistograms: order ack,
booked-to-offer-received on the phone (routine and urgent apart from
emergencies; orders booked ahead are offered only near their window and
are not timed), location ack. ``--find-capacity`` runs steps of rising
rate and reports the highest whose p99 order ack stayed under 100 ms.
With ``--spawn`` the run also samples the CPU and memory of the service,
PostgreSQL and Redis, and measures the raw ceilings of the machine
(:mod:`benchmarks.ceilings`) to compare with.

Limitation: the generator, the service, PostgreSQL and Redis share the
machine, so the generator's own CPU is taken from the service's, and its
scheduling delays are part of every latency.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import uvloop

from benchmarks.ceilings import (
    durable_inserts_per_s,
    echo_messages_per_s,
    store_offers_per_s,
)
from benchmarks.loadgen import (
    IntakeFeed,
    Mix,
    OrderFeed,
    PhoneFleet,
    Recorder,
    Sampler,
    Tracker,
)
from db.directory import (
    load_caregivers,
    load_elders,
    load_regions,
    load_shifts,
    load_vendors,
    upsert_services,
)
from db.embedded import EmbeddedServers, free_port
from db.migrate import migrate
from db.pool import Connection, connect_pool
from dispatch.catalogue import SEED_SERVICES
from dispatch.city import City, CitySpec, build_city
from dispatch.directory import Shift
from dispatch.domain import Actor, ActorRole
from dispatch.tokens import TokenSigner
from ws.client import Session

__all__ = ["main"]

_ACK_BUDGET_MS = 100.0
_DRAIN_S = 5.0
# offers in flight in the grouped ceiling (what one batch of new orders could make)
_OFFERS_AT_ONCE = 50


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--spawn", action="store_true", help="start a service")
    where.add_argument("--url", help="a running service, http://host:port")
    parser.add_argument("--token-secret", default="", help="the service's secret")
    parser.add_argument("--phones", type=int, default=1000)
    parser.add_argument("--elders", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=50.0, help="orders a second")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds")
    parser.add_argument("--location-every", type=float, default=10.0)
    parser.add_argument("--connect-rate", type=float, default=400.0)
    parser.add_argument(
        "--orders-over",
        choices=("http", "intake"),
        default="http",
        help="book over POST /v1/orders, or over partners' /v1/intake streams",
    )
    parser.add_argument(
        "--intake-senders",
        type=int,
        default=64,
        help="partners streaming orders, one connection each (--orders-over intake)",
    )
    parser.add_argument("--find-capacity", action="store_true")
    parser.add_argument("--start-rate", type=float, default=50.0)
    parser.add_argument("--step", type=float, default=50.0)
    parser.add_argument("--max-rate", type=float, default=1000.0)
    parser.add_argument("--step-duration", type=float, default=20.0)
    parser.add_argument("--no-ceilings", action="store_true")
    parser.add_argument(
        "--ceiling-seconds", type=float, default=5.0, help="length of each ceiling"
    )
    parser.add_argument("--service-log-level", default="warning")
    parser.add_argument(
        "--json", type=Path, default=Path("benchmarks/results/load.json")
    )
    parser.add_argument("--plot", type=Path, default=None)
    return parser


def _shifts(caregivers: Any, now: datetime) -> list[Shift]:
    return [
        Shift(
            c.caregiver_id,
            now - timedelta(hours=1),
            now + timedelta(hours=11),
            c.home,
            c.home,
        )
        for c in caregivers
    ]


async def _seed(database_url: str, spec: CitySpec) -> None:
    city = build_city(spec)
    pool = await connect_pool(database_url, size=1)
    try:
        async with pool.acquire() as conn:
            await _load(conn, city)
    finally:
        await pool.close()


async def _load(conn: Connection, city: City) -> None:
    await migrate(conn)
    await upsert_services(conn, SEED_SERVICES)
    async with conn.transaction():
        await load_regions(conn, city.regions)
        await load_caregivers(conn, city.caregivers)
        await load_elders(conn, city.elders)
        await load_vendors(conn, city.vendors)
        await load_shifts(conn, _shifts(city.caregivers, datetime.now(UTC)))


def _start_service(
    folder: Path, database_url: str, redis_url: str, secret: str, level: str
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HOMECARE_")},
        "HOMECARE_DATA_DIR": str(folder),
        "HOMECARE_DATABASE_URL": database_url,
        "HOMECARE_REDIS_URL": redis_url,
        "HOMECARE_TOKEN_SECRET": secret,
        "HOMECARE_PORT": str(port),
        "HOMECARE_LOG_LEVEL": level,
    }
    log = (folder / "service.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "dispatch", "serve"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    return process, f"http://127.0.0.1:{port}"


async def _wait_ready(url: str, process: subprocess.Popen[bytes] | None) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(600):
            if process is not None and process.poll() is not None:
                raise SystemExit("load: the service exited at start; see service.log")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with http.get(f"{url}/readyz") as reply:
                    if reply.status == 200:
                        return
            await asyncio.sleep(0.5)
    raise SystemExit("load: the service did not become ready")


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 1) if values else None


async def _step(
    rate: float,
    duration_s: float,
    fleet: PhoneFleet,
    senders: aiohttp.ClientSession | Sequence[Session],
    token: str,
    elders: Sequence[str],
    sampler: Sampler | None,
) -> dict[str, Any]:
    recorder = Recorder()
    tracker = Tracker(recorder)
    fleet.recorder, fleet.tracker = recorder, tracker
    first = len(sampler.samples) if sampler else 0
    feed = (
        OrderFeed(senders, token, elders, tracker, Mix())
        if isinstance(senders, aiohttp.ClientSession)
        else IntakeFeed(senders, elders, tracker, Mix())
    )
    await feed.run(rate, duration_s)
    await asyncio.sleep(_DRAIN_S)
    recorder.ended = time.perf_counter()
    summary = recorder.summary()
    summary["rate_per_s"] = rate
    summary["duration_s"] = duration_s
    acked = summary["counts"].get("orders_acked", 0)
    summary["order_throughput_per_s"] = round(acked / duration_s, 1)
    summary["offers_pending_at_end"] = len(tracker.by_order)
    if sampler is not None:
        window = sampler.samples[first:]
        summary["server"] = (
            {
                key: _mean([s[key] for s in window])
                for key in window[0]
                if key.endswith("_pct") or key.endswith("_mb") or key.startswith("load")
            }
            if window
            else {}
        )
        summary["cpu_ms_per_order"] = _cpu_per_order(window, acked)
    return summary


def _cpu_per_order(window: Sequence[dict[str, Any]], acked: int) -> dict[str, float]:
    """CPU milliseconds each process spent over the step, per order acked.

    CPU time is what the work took whoever else ran on the cores, so it
    compares runs on a shared machine better than latencies do. It counts
    everything the process did in the step (phones, solver, a backlog of
    offers still being made), not only the bookings.
    """
    if not window or not acked:
        return {}
    names = [k.removesuffix("_cpu_pct") for k in window[0] if k.endswith("_cpu_pct")]
    return {
        name: round(
            sum(s[f"{name}_cpu_pct"] * s["span_s"] for s in window) * 10 / acked, 3
        )
        for name in names
    }


def _passes(step: dict[str, Any]) -> bool:
    p99 = step["latency_ms"]["order_ack"]["p99"]
    acked = step["counts"].get("orders_acked", 0)
    wanted = step["rate_per_s"] * step["duration_s"]
    return p99 is not None and p99 <= _ACK_BUDGET_MS and acked >= 0.99 * wanted


async def _run(
    args: argparse.Namespace, url: str, secret: str, extra: dict[str, Any]
) -> dict[str, Any]:
    signer = TokenSigner(secret.encode())
    now = datetime.now(UTC)
    ttl = timedelta(hours=12)
    operator = signer.issue(Actor(ActorRole.OPERATOR, "load-operator"), now, ttl)
    tokens = [
        signer.issue(Actor(ActorRole.CAREGIVER, f"cg-{k + 1:05d}"), now, ttl)
        for k in range(args.phones)
    ]
    elders = [f"el-{k + 1:06d}" for k in range(args.elders)]
    pids: dict[str, int] = extra.pop("pids", {})
    sampler = Sampler(pids) if pids else None
    report: dict[str, Any] = {"started_at": now.isoformat(), **extra}

    sampling = asyncio.create_task(sampler.run()) if sampler else None
    fleet = PhoneFleet(
        "ws" + url.removeprefix("http") + "/v1/caregiver",
        tokens,
        location_every_s=args.location_every,
    )
    rss_before = sampler.rss_mb("service") if sampler else None
    started = time.perf_counter()
    connected = await fleet.connect(per_second=args.connect_rate)
    connect_s = time.perf_counter() - started
    await asyncio.sleep(2.0)
    rss_after = sampler.rss_mb("service") if sampler else None
    report["connections"] = {
        "phones": args.phones,
        "connected": connected,
        "connect_s": round(connect_s, 1),
        "errors": dict(fleet.connect_errors),
        "service_rss_mb_before": rss_before,
        "service_rss_mb_after": rss_after,
        "rss_per_connection_kib": (
            round((rss_after - rss_before) * 1024 / connected, 1)
            if rss_before is not None and rss_after is not None and connected
            else None
        ),
    }
    print(f"load: {connected} phones connected in {connect_s:.1f} s", flush=True)
    fleet.start_reporting()
    await asyncio.sleep(min(args.location_every, 10.0))

    steps: list[dict[str, Any]] = []
    connector = aiohttp.TCPConnector(limit=512)
    timeout = aiohttp.ClientTimeout(total=30)
    intake: list[Session] = []
    if args.orders_over == "intake":
        intake = await _open_intake(url, signer, args.intake_senders, now, ttl)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as http:
        senders: aiohttp.ClientSession | list[Session] = intake or http
        if args.find_capacity:
            rate = args.start_rate
            while rate <= args.max_rate:
                step = await _step(
                    rate, args.step_duration, fleet, senders, operator, elders, sampler
                )
                steps.append(step)
                _say_step(step)
                if not _passes(step):
                    break
                rate += args.step
        else:
            step = await _step(
                args.rate, args.duration, fleet, senders, operator, elders, sampler
            )
            steps.append(step)
            _say_step(step)
    await asyncio.gather(*(s.close() for s in intake))
    await fleet.close()
    if sampling is not None:
        sampling.cancel()
    report["steps"] = steps
    passing = [s for s in steps if _passes(s)]
    report["capacity"] = (
        {
            "rate_per_s": passing[-1]["rate_per_s"],
            "p99_order_ack_ms": passing[-1]["latency_ms"]["order_ack"]["p99"],
        }
        if passing
        else None
    )
    return report


async def _open_intake(
    url: str, signer: TokenSigner, count: int, now: datetime, ttl: timedelta
) -> list[Session]:
    """One intake connection for each of ``count`` partners."""
    if count < 1:
        raise SystemExit("load: --intake-senders must be at least 1")
    tokens = [
        signer.issue(Actor(ActorRole.PARTNER, f"pt-load-{k + 1:03d}"), now, ttl)
        for k in range(count)
    ]
    intake_url = "ws" + url.removeprefix("http") + "/v1/intake"
    sessions = await asyncio.gather(
        *(Session.open(intake_url, t, timeout_s=30.0) for t in tokens)
    )
    print(f"load: {len(sessions)} intake senders connected", flush=True)
    return list(sessions)


def _say_step(step: dict[str, Any]) -> None:
    lat = step["latency_ms"]
    print(
        f"load: rate {step['rate_per_s']:g}/s acked {step['order_throughput_per_s']}/s"
        f" ack p50 {lat['order_ack']['p50']} p99 {lat['order_ack']['p99']} ms;"
        f" offer p99 routine {lat['offer_routine']['p99']}"
        f" emergency {lat['offer_emergency']['p99']} ms;"
        f" location p99 {lat['location_ack']['p99']} ms;"
        f" errors {step['errors']}; server {step.get('server', {})}",
        flush=True,
    )


async def _ceilings(database_url: str, report: dict[str, Any], seconds: float) -> None:
    inserts = await durable_inserts_per_s(database_url, seconds)
    one_by_one = await store_offers_per_s(database_url, seconds, at_once=1)
    grouped = await store_offers_per_s(database_url, seconds, at_once=_OFFERS_AT_ONCE)
    echoes = await echo_messages_per_s(seconds=seconds)
    report["ceilings"] = {
        "asyncpg_durable_inserts_per_s": round(inserts, 1),
        "store_offers_one_at_a_time_per_s": round(one_by_one, 1),
        f"store_offers_{_OFFERS_AT_ONCE}_at_once_per_s": round(grouped, 1),
        "websockets_echo_messages_per_s": round(echoes, 1),
    }
    best = max(
        (s for s in report["steps"] if _passes(s)),
        key=lambda s: s["order_throughput_per_s"],
        default=None,
    )
    step = best or report["steps"][-1]
    messages = step["counts"].get("location_acks", 0) + step["counts"].get("accepts", 0)
    ws_rate = messages / step["elapsed_s"] if step["elapsed_s"] else 0.0
    report["ratios"] = {
        "orders_per_s_to_durable_inserts": round(
            step["order_throughput_per_s"] / inserts, 3
        ),
        "phone_messages_per_s": round(ws_rate, 1),
        "phone_messages_to_echo": round(ws_rate / echoes, 3),
    }
    print(f"load: ceilings {report['ceilings']}; ratios {report['ratios']}", flush=True)


def _plot(report: dict[str, Any], path: Path) -> None:
    matplotlib = importlib.import_module("matplotlib")
    matplotlib.use("Agg")
    pyplot = importlib.import_module("matplotlib.pyplot")
    steps = report["steps"]
    rates = [s["rate_per_s"] for s in steps]
    figure, (top, bottom) = pyplot.subplots(2, 1, figsize=(8, 7), sharex=True)
    for name, colour in (
        ("order_ack", "tab:blue"),
        ("offer_emergency", "tab:red"),
        ("offer_routine", "tab:orange"),
        ("location_ack", "tab:green"),
    ):
        for quantile, style in (("p50", ":"), ("p99", "-")):
            values = [s["latency_ms"][name][quantile] for s in steps]
            top.plot(
                rates,
                values,
                style,
                color=colour,
                marker="o",
                label=f"{name} {quantile}",
            )
    top.axhline(_ACK_BUDGET_MS, color="grey", linewidth=0.8)
    top.set_yscale("log")
    top.set_ylabel("latency from intended send (ms)")
    top.legend(fontsize=7, ncol=2)
    for key, colour in (
        ("service_cpu_pct", "tab:blue"),
        ("postgres_cpu_pct", "tab:purple"),
        ("redis_cpu_pct", "tab:red"),
        ("solver_cpu_pct", "tab:olive"),
        ("generator_cpu_pct", "tab:grey"),
    ):
        values = [s.get("server", {}).get(key) for s in steps]
        bottom.plot(rates, values, marker="o", color=colour, label=key)
    bottom.set_xlabel("orders booked per second (offered rate)")
    bottom.set_ylabel("CPU (% of one core)")
    bottom.legend(fontsize=7)
    figure.suptitle(
        f"one node, {report['connections']['phones']} phones, 2 shared cores"
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)


def _machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_avg_at_start": os.getloadavg(),
        "shared": "load generator, service, PostgreSQL and Redis on the same cores",
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns the exit status."""
    args = _parser().parse_args(argv)
    report_extra: dict[str, Any] = {
        "machine": _machine(),
        "config": vars(args) | {"json": str(args.json), "plot": str(args.plot)},
    }
    if args.url:
        if not args.token_secret:
            raise SystemExit("load: --url needs --token-secret")
        report = uvloop.run(_run(args, args.url, args.token_secret, report_extra))
        return _finish(report, args)

    folder = Path(tempfile.mkdtemp(prefix="homecare-load-"))
    servers = EmbeddedServers(folder)
    servers.start()
    service: subprocess.Popen[bytes] | None = None
    try:
        secret = secrets.token_urlsafe(32)
        spec = CitySpec(caregivers=max(args.phones, 600), elders=args.elders)
        uvloop.run(_seed(servers.database_url, spec))
        service, url = _start_service(
            folder,
            servers.database_url,
            servers.redis_url,
            secret,
            args.service_log_level,
        )
        pg_pid, redis_pid = servers.pids
        report_extra["pids"] = {
            "service": service.pid,
            "postgres": pg_pid,
            "redis": redis_pid,
        }

        async def everything() -> dict[str, Any]:
            await _wait_ready(url, service)
            return await _run(args, url, secret, report_extra)

        report = uvloop.run(everything())
        # the ceilings write orders of their own: stop the service first, or
        # its dispatcher would offer them too
        _stop(service)
        if not args.no_ceilings:
            uvloop.run(_ceilings(servers.database_url, report, args.ceiling_seconds))
    finally:
        if service is not None:
            _stop(service)
        servers.stop()
        shutil.rmtree(folder, ignore_errors=True)
    return _finish(report, args)


def _stop(service: subprocess.Popen[bytes]) -> None:
    if service.poll() is None:
        service.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            service.wait(30)


def _finish(report: dict[str, Any], args: argparse.Namespace) -> int:
    report["machine"]["load_avg_at_end"] = os.getloadavg()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"load: wrote {args.json}")
    if args.plot is not None:
        _plot(report, args.plot)
        print(f"load: wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
