"""``homecare simulate``: one day replayed under several policies.

Each policy replays the same seeded day in a fresh database: ``greedy``
(nearest available caregiver, no re-optimisation: what most deployed
systems do), ``ours`` (cheapest insertion, explanations, periodic
re-optimisation), and ``hindsight`` (every order known in advance, one
long solve per region: a bound no online policy can beat). The figures are
printed side by side and written as JSON and a plot.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import secrets
from concurrent.futures import ProcessPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
from redis.asyncio import Redis

from db.directory import (
    load_caregivers,
    load_elders,
    load_regions,
    load_shifts,
    load_vendors,
    upsert_services,
)
from db.live import LiveState
from db.migrate import migrate
from db.pool import connect_pool
from dispatch.catalogue import SEED_SERVICES
from dispatch.clock import SimulatedClock
from dispatch.dispatcher import DispatchPolicy
from dispatch.kpis import hindsight, measure
from dispatch.node import connect_redis
from dispatch.simday import DaySpec, SimulatedDay, plan_day
from dispatch.simulation import Simulation

__all__ = ["POLICIES", "format_report", "replay", "write_outputs"]

logger = logging.getLogger(__name__)

POLICIES = ("greedy", "ours", "hindsight")
_SIM_DATABASE = "homecare_sim"


def _policy(name: str, commit_ahead: timedelta | None) -> DispatchPolicy:
    if name == "greedy":
        return DispatchPolicy(nearest_first=True, reoptimise_every=None)
    # Re-optimisation every 5 simulated minutes: at the simulator's speed a
    # 10 s interval would ask for more solves than two cores can run.
    return DispatchPolicy(
        reoptimise_every=timedelta(minutes=5),
        solve_time_limit_s=0.5,
        commit_ahead=commit_ahead,
    )


def _database_url(server_url: str, name: str) -> str:
    base, _, _ = server_url.rpartition("/")
    return f"{base}/{name}"


async def _fresh_database(server_url: str, day: SimulatedDay) -> asyncpg.Pool:
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f"drop database if exists {_SIM_DATABASE} with (force)")
        await admin.execute(f"create database {_SIM_DATABASE}")
    finally:
        await admin.close()
    pool = await connect_pool(_database_url(server_url, _SIM_DATABASE), size=24)
    async with pool.acquire() as conn:
        await migrate(conn)
        await upsert_services(conn, SEED_SERVICES)
        await load_regions(conn, day.city.regions)
        await load_caregivers(conn, day.city.caregivers)
        await load_elders(conn, day.city.elders)
        await load_vendors(conn, day.city.vendors)
        await load_shifts(conn, day.city.shifts(day.spec.day))
    return pool


async def _replay_one(
    name: str,
    day: SimulatedDay,
    server_url: str,
    redis: Redis,
    speed: float,
    commit_ahead: timedelta | None,
) -> dict[str, Any]:
    pool = await _fresh_database(server_url, day)
    prefix = f"sim:{secrets.token_hex(3)}:"
    executor = ProcessPoolExecutor(
        max_workers=1, mp_context=multiprocessing.get_context("spawn")
    )
    try:
        clock = SimulatedClock(day.start, speed=speed)
        live = LiveState(redis, presence_s=86_400, prefix=prefix)
        policy = _policy(name, commit_ahead)
        simulation = Simulation(day, pool, live, clock, policy, executor)
        logger.info("replaying the day", extra={"policy": name, "speed": speed})
        wall_s = await simulation.run()
        figures = await measure(pool, day, simulation.stats, wall_s)
        figures["solves"] = simulation.dispatcher.stats["solves"]
        return figures
    finally:
        executor.shutdown(cancel_futures=True)
        keys = [k async for k in redis.scan_iter(match=prefix + "*")]
        if keys:
            await redis.delete(*keys)
        await pool.close()


async def replay(
    server_url: str,
    redis_url: str,
    spec: DaySpec,
    *,
    policies: tuple[str, ...] = POLICIES,
    speed: float = 200.0,
    hindsight_limit_s: float = 20.0,
    commit_ahead: timedelta | None = None,
) -> dict[str, Any]:
    """Replay the day of ``spec`` under ``policies`` and report the figures.

    ``server_url`` names any database on the PostgreSQL server; the replay
    creates (and recreates) its own database ``homecare_sim`` there.
    """
    day = plan_day(spec)
    redis = connect_redis(redis_url, timeout_s=10)
    results: dict[str, Any] = {}
    try:
        for name in policies:
            if name == "hindsight":
                loop = asyncio.get_running_loop()
                results[name] = await loop.run_in_executor(
                    None, hindsight, day, hindsight_limit_s
                )
            else:
                results[name] = await _replay_one(
                    name, day, server_url, redis, speed, commit_ahead
                )
    finally:
        await redis.aclose()
    report = {
        "day": {
            "date": spec.day.isoformat(),
            "caregivers": spec.caregivers,
            "orders": spec.orders,
            "emergency_share": spec.emergency_share,
            "seed": spec.seed,
            "speed": speed,
            "commit_ahead_min": (
                commit_ahead.total_seconds() / 60 if commit_ahead else None
            ),
        },
        "policies": results,
        "comparison": _compare(results),
    }
    return report


def write_outputs(
    report: dict[str, Any], json_path: Path | None, plot_path: Path | None
) -> None:
    """Write the report as JSON and its plot, where asked."""
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=2))
    if plot_path is not None:
        _plot(report["policies"], plot_path)


def _compare(results: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    ours, greedy, bound = (results.get(k) for k in ("ours", "greedy", "hindsight"))
    if (
        ours
        and greedy
        and ours["travel_km_per_visit"]
        and greedy["travel_km_per_visit"]
    ):
        found["travel_saving_vs_greedy_pct"] = round(
            100 * (1 - ours["travel_km_per_visit"] / greedy["travel_km_per_visit"]), 2
        )
        found["served_delta_vs_greedy"] = (
            ours["served_in_window"] - greedy["served_in_window"]
        )
    if ours and bound and ours["travel_km_per_visit"] and bound["travel_km_per_visit"]:
        found["travel_over_hindsight_pct"] = round(
            100 * (ours["travel_km_per_visit"] / bound["travel_km_per_visit"] - 1), 2
        )
    return found


def format_report(report: dict[str, Any]) -> str:
    """The figures of every policy side by side, as a text table."""
    results = report["policies"]
    names = list(results)
    keys = sorted({k for r in results.values() for k in r})
    width = max(len(k) for k in keys)
    lines = [f"{'':<{width}}  " + "  ".join(f"{n:>12}" for n in names)]
    for key in keys:
        cells = "  ".join(f"{_cell(results[n].get(key)):>12}" for n in names)
        lines.append(f"{key:<{width}}  {cells}")
    for key, value in report["comparison"].items():
        lines.append(f"{key}: {value}")
    return "\n".join(lines)


def _cell(value: object) -> str:
    return "-" if value is None else str(value)


def _plot(results: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib  # optional, only for the picture

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed; no plot written")
        return
    figures = (
        ("served_in_window_pct", "served in window (%)"),
        ("travel_km_per_visit", "travel per visit (km)"),
        ("lateness_min_p95", "lateness p95 (min)"),
        ("emergency_booked_to_accepted_s_p95", "emergency booked→accepted p95 (s)"),
    )
    fig, axes = plt.subplots(1, len(figures), figsize=(4 * len(figures), 3.2))
    names = list(results)
    for ax, (key, title) in zip(axes, figures, strict=True):
        values = [results[n].get(key) or 0 for n in names]
        ax.bar(names, values, color=["#c0504d", "#4f81bd", "#9bbb59"][: len(names)])
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
