"""The ``homecare`` command.

``homecare demo`` runs the live demo city (:mod:`dispatch.demo`) on fresh
embedded servers; ``homecare serve`` runs it on whatever the settings name;
``homecare db migrate`` brings the schema up to date; ``homecare token``
issues an access token.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import logging
import shutil
import signal
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import uvloop
from aiohttp import web

from db.migrate import migrate
from db.pool import connect_pool
from dispatch import logs
from dispatch.app import ROLES, build_app
from dispatch.city import CHINA_TZ, CitySpec
from dispatch.clock import WallClock
from dispatch.demo import DemoOptions, format_summary, run_demo
from dispatch.domain import Actor, ActorRole
from dispatch.errors import HomecareError
from dispatch.node import backing_stores, open_node
from dispatch.replay import POLICIES, format_report, replay, write_outputs
from dispatch.seeding import seed_city
from dispatch.settings import Settings
from dispatch.simday import DaySpec
from dispatch.tokens import TokenSigner, load_secret

__all__ = ["main"]

logger = logging.getLogger(__name__)

_DAY = DaySpec()


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


async def _serve(
    settings: Settings,
    database_url: str,
    redis_url: str,
    *,
    duration_s: float | None,
    city: CitySpec | None,
    roles: frozenset[str] = ROLES,
) -> None:
    async with open_node(settings, database_url, redis_url) as node:
        if city is not None:
            async with node.pool.acquire() as conn:
                await seed_city(
                    conn, city, node.clock.now().astimezone(CHINA_TZ).date()
                )
        runner = web.AppRunner(
            build_app(node, roles), access_log=None, handle_signals=False
        )
        await runner.setup()
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        host, port = runner.addresses[0][:2]
        token = node.signer.issue(
            Actor(ActorRole.OPERATOR, "demo-operator"),
            node.clock.now(),
            timedelta(hours=12),
        )
        _say(f"homecare: serving on http://{host}:{port}")
        _say(f"homecare: operator token {token}")
        # Everything loaded so far lives for the whole run: keep it out of
        # the collector's generations so full collections stay short.
        gc.collect()
        gc.freeze()

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=duration_s)
        _say("homecare: stopping")
        await runner.cleanup()


async def _migrate(database_url: str) -> list[int]:
    pool = await connect_pool(database_url, size=1)
    try:
        async with pool.acquire() as conn:
            return await migrate(conn)
    finally:
        await pool.close()


def _simulate(
    runner: asyncio.Runner, args: argparse.Namespace, database_url: str, redis_url: str
) -> None:
    policies = tuple(p.strip() for p in args.policies.split(",") if p.strip())
    if unknown := set(policies) - set(POLICIES):
        raise SystemExit(f"homecare: unknown policies {sorted(unknown)}")
    spec = DaySpec(
        caregivers=args.caregivers,
        orders=args.orders,
        emergency_share=args.emergency_share,
        seed=args.seed,
        elders=max(2_000, args.orders * 3),
        communities=max(2, args.caregivers // 10),
    )
    report = runner.run(
        replay(
            database_url,
            redis_url,
            spec,
            policies=policies,
            speed=args.speed,
            hindsight_limit_s=args.hindsight_limit,
            commit_ahead=(
                timedelta(minutes=args.commit_ahead_min)
                if args.commit_ahead_min
                else None
            ),
        )
    )
    write_outputs(report, args.json, args.plot)
    _say(format_report(report))
    _say(f"homecare: wrote {args.json} and {args.plot}")


def _demo(runner: asyncio.Runner, args: argparse.Namespace, settings: Settings) -> int:
    if not (settings.database_url or settings.redis_url):
        # every demo starts from a fresh city in a folder of its own
        folder = settings.data_dir / "demo"
        shutil.rmtree(folder, ignore_errors=True)
        settings = dataclasses.replace(settings, data_dir=folder)
    options = DemoOptions(
        duration_s=args.duration, speed=args.speed, phones=args.phones
    )
    with backing_stores(settings) as (database_url, redis_url):
        summary = runner.run(run_demo(settings, database_url, redis_url, options, _say))
    _say(format_summary(summary))
    return 1 if summary.error_logs else 0


def _roles(text: str) -> frozenset[str]:
    roles = frozenset(r.strip() for r in text.split(",") if r.strip())
    if unknown := roles - ROLES:
        raise SystemExit(f"homecare: unknown roles {sorted(unknown)}")
    return roles


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="homecare", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("demo", "run the service with a seeded demo city (embedded by default)"),
        ("serve", "run the service"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument(
            "--duration", type=float, default=None, help="stop after this many seconds"
        )
        if name == "serve":
            command.add_argument(
                "--roles",
                default=",".join(sorted(ROLES)),
                help="comma-separated roles of this node: " + ", ".join(sorted(ROLES)),
            )
        if name == "demo":
            command.add_argument(
                "--speed", type=float, default=10.0, help="simulated seconds per second"
            )
            command.add_argument(
                "--phones",
                type=int,
                default=None,
                help="caregivers with a simulated phone (default: all)",
            )
    simulate = commands.add_parser(
        "simulate", help="replay a synthetic city day under several policies"
    )
    simulate.add_argument(
        "--policies",
        default=",".join(POLICIES),
        help="comma-separated: " + ", ".join(POLICIES),
    )
    simulate.add_argument("--caregivers", type=int, default=_DAY.caregivers)
    simulate.add_argument("--orders", type=int, default=_DAY.orders)
    simulate.add_argument("--emergency-share", type=float, default=_DAY.emergency_share)
    simulate.add_argument("--seed", type=int, default=_DAY.seed)
    simulate.add_argument(
        "--speed", type=float, default=200.0, help="simulated seconds per real second"
    )
    simulate.add_argument(
        "--hindsight-limit", type=float, default=20.0, help="seconds per region"
    )
    simulate.add_argument(
        "--commit-ahead-min",
        type=float,
        default=120.0,
        help="plan orders this far ahead without offering them yet (ours; 0: off)",
    )
    simulate.add_argument(
        "--json", type=Path, default=Path("benchmarks/results/simulate.json")
    )
    simulate.add_argument(
        "--plot", type=Path, default=Path("benchmarks/results/simulate.png")
    )
    db = commands.add_parser("db", help="database maintenance")
    db.add_argument("action", choices=["migrate"])
    token = commands.add_parser("token", help="issue an access token")
    token.add_argument(
        "--role",
        required=True,
        choices=[r.value for r in ActorRole if r is not ActorRole.SYSTEM],
    )
    token.add_argument("--id", required=True, dest="actor_id")
    token.add_argument("--ttl-hours", type=float, default=12.0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``homecare`` command; returns the process exit status."""
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except HomecareError as error:
        _say(f"homecare: {error.message}")
        return 2
    logs.configure(settings.log_level, settings.log_format)

    if args.command == "token":
        signer = TokenSigner(load_secret(settings.token_secret, settings.data_dir))
        actor = Actor(ActorRole(args.role), args.actor_id)
        _say(signer.issue(actor, WallClock().now(), timedelta(hours=args.ttl_hours)))
        return 0

    if args.command == "demo":
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return _demo(runner, args, settings)
    roles = _roles(args.roles) if args.command == "serve" else ROLES
    with (
        backing_stores(settings) as (database_url, redis_url),
        asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner,
    ):
        if args.command == "db":
            applied = runner.run(_migrate(database_url))
            _say(f"homecare: applied migrations {applied or 'none'}")
        elif args.command == "simulate":
            _simulate(runner, args, database_url, redis_url)
        else:
            runner.run(
                _serve(
                    settings,
                    database_url,
                    redis_url,
                    duration_s=args.duration,
                    city=None,
                    roles=roles,
                )
            )
    return 0
