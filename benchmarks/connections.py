"""How many phone connections one service process holds, and their memory.

Run it as::

    python -m benchmarks.connections --connections 20000
        --json benchmarks/results/connections-20000.json   (one command line)

The benchmark starts PostgreSQL and Redis (embedded unless
``HOMECARE_DATABASE_URL`` and ``HOMECARE_REDIS_URL`` are set) and one
service process with the ``api`` and ``gateway`` roles on uvloop, the same
as :mod:`benchmarks.gateway`. The phones are spread over ``--workers``
generator processes, so that none of them needs more descriptors than its
own open-file limit allows. Each phone connects with its own token, says
``hello`` and gets its ``welcome``, and from then on reports its location
every ``--location-every`` seconds (or the idle timeout would close the
first ones during a long connect phase); once all are connected they stay
for ``--hold`` seconds and the generators count how many are still open.

Reported as JSON: connections asked, connected and still open at the end,
failures by kind, the service's open-file limit and descriptors in use,
and its resident memory before and with the phones connected (per
connection: the growth divided by the connections held).

Limitation: the service raises its own open-file limit at start-up
(:func:`dispatch.node.raise_open_files_limit`), but only as far as the
machine allows; where the hard limit cannot be raised, the connections one
process can hold are that limit less the descriptors the service needs for
itself (listening socket, PostgreSQL and Redis connections, the loop's own).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]  # no stubs installed; used for its figures only
import uvloop

from benchmarks.gateway import (
    Service,
    Window,
    Workers,
    bench_env,
    percentiles,
    seed,
)
from dispatch.node import backing_stores

__all__ = ["main"]

# the service settles (buffers, pools) before its memory is read
_SETTLE_S = 5.0


async def _hold(args: argparse.Namespace, service: Service) -> dict[str, Any]:
    server = service.process
    rss_before = server.memory_info().rss
    fds_before = server.num_fds()
    soft, hard = server.rlimit(psutil.RLIMIT_NOFILE)
    load_start = os.getloadavg()

    workers = Workers(
        service.url, args.connections, args.workers, "hold", args.location_every
    )
    started = time.monotonic()
    connected = await workers.connect()
    connect_s = time.monotonic() - started
    await asyncio.sleep(_SETTLE_S)
    rss_connected = server.memory_info().rss
    fds_connected = server.num_fds()
    held = sum(part["connected"] for part in connected)

    go = time.monotonic() + 0.5
    workers.start(go, Window(go, go + args.hold))
    found = await workers.results()
    load_end = os.getloadavg()
    await service.stop()

    failed: dict[str, int] = {}
    for part in connected:
        for kind, n in part["failed"].items():
            failed[kind] = failed.get(kind, 0) + n
    return {
        "connections_asked": args.connections,
        "connected": held,
        "open_after_hold": sum(part["open_at_end"] for part in found),
        "hold_s": args.hold,
        "location_every_s": args.location_every,
        "location_ack_in_hold": percentiles(
            [v for part in found for v in part["location_ms"]]
        ),
        "unanswered_in_hold": sum(part["unanswered"] for part in found),
        "failed": failed,
        "generator_processes": args.workers,
        "connect_all_s": round(connect_s, 1),
        "server_open_files_limit": {"soft": soft, "hard": hard},
        "server_descriptors": {"before": fds_before, "connected": fds_connected},
        "server_rss_mib_before": round(rss_before / 2**20, 1),
        "server_rss_mib_connected": round(rss_connected / 2**20, 1),
        "memory_per_connection_kib": round(
            (rss_connected - rss_before) / max(held, 1) / 1024, 1
        ),
        "load_average_1min": {"start": load_start[0], "end": load_end[0]},
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "note": "generators, service, PostgreSQL and Redis share the cores",
        },
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.connections", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--connections", type=int, default=20_000)
    parser.add_argument(
        "--workers", type=int, default=4, help="generator processes sharing them"
    )
    parser.add_argument(
        "--hold", type=float, default=30.0, help="seconds all stay connected"
    )
    parser.add_argument(
        "--location-every",
        type=float,
        default=60.0,
        help="seconds between two locations of a phone (from its connect on)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write results here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; prints the figures as JSON."""
    args = _parser().parse_args(argv)
    data_dir = Path(tempfile.mkdtemp(prefix="homecare-bench-"))
    settings, env = bench_env(data_dir)
    with backing_stores(settings) as (database_url, redis_url):
        service = Service(database_url, redis_url, env)
        try:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(seed(database_url))
                results = runner.run(_hold(args, service))
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
