"""Raw ceilings of the machine, measured in the same run as the load.

- **Durable inserts**: one asyncpg connection inserting one row per
  transaction into an ordinary (logged) table, each commit flushed to the
  write-ahead log (``synchronous_commit`` as the server has it, on by
  default): the cost an order's acknowledgement cannot avoid without
  batching.
- **Offers through the order store**: booked orders offered through
  :meth:`db.orders.OrderStore.transition`, once one at a time (each
  awaited before the next, as the dispatcher makes them) and once many
  at a time, which group commit writes in shared transactions.
- **Websocket echo**: a ``websockets`` server in another process echoing
  small text frames to clients in this process, each client waiting for
  its echo before the next send: what a request-and-ack exchange costs
  with no work behind it.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from db.orders import OrderStore
from db.pool import connect_pool
from dispatch.clock import WallClock
from dispatch.domain import Actor, ActorRole, BookingRequest, TimeWindow
from dispatch.lifecycle import Trigger

__all__ = ["durable_inserts_per_s", "echo_messages_per_s", "store_offers_per_s"]

_TABLE = "bench_ceiling"
_INSERT = "insert into bench_ceiling (id, body) values ($1, $2)"


async def durable_inserts_per_s(database_url: str, seconds: float = 5.0) -> float:
    """Single-row durable inserts a second on one connection."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            f"create table if not exists {_TABLE} (id bigint primary key, body text)"
        )
        await conn.execute(f"truncate {_TABLE}")
        done = 0
        started = time.perf_counter()
        deadline = started + seconds
        while time.perf_counter() < deadline:
            await conn.execute(_INSERT, done, "x" * 64)
            done += 1
        elapsed = time.perf_counter() - started
        await conn.execute(f"drop table {_TABLE}")
    finally:
        await conn.close()
    return done / elapsed


async def store_offers_per_s(
    database_url: str, seconds: float = 5.0, *, at_once: int = 1
) -> float:
    """Offers a second through the order store, ``at_once`` in flight.

    Books orders for the seeded elders first (not timed), then offers them
    to one caregiver for ``seconds``. Run it with no dispatcher on the
    database: the orders it books would be dispatched too.
    """
    pool = await connect_pool(database_url, size=4)
    try:
        store = OrderStore(pool, WallClock())
        elders = [
            r["elder_id"]
            for r in await pool.fetch("select elder_id from elder limit 50")
        ]
        operator = Actor(ActorRole.OPERATOR, "ceiling")
        system = Actor(ActorRole.SYSTEM, "ceiling")
        now = datetime.now(UTC)
        window = TimeWindow(now + timedelta(hours=1), now + timedelta(hours=3))
        run = f"{time.time_ns()}-{at_once}"
        offered, offering_s = 0, 0.0
        while offering_s < seconds:
            bookings = await asyncio.gather(
                *(
                    store.create(
                        BookingRequest(elders[k % len(elders)], "meal_help", window),
                        operator,
                        f"ceiling-{run}-{offered + k}",
                    )
                    for k in range(at_once)
                )
            )
            began = time.perf_counter()
            await asyncio.gather(
                *(
                    store.transition(
                        b.order.order_id,
                        Trigger.OFFER,
                        system,
                        payload={
                            "provider_id": "cg-00001",
                            "expires_at": (now + timedelta(minutes=1)).isoformat(),
                        },
                    )
                    for b in bookings
                )
            )
            offering_s += time.perf_counter() - began
            offered += at_once
    finally:
        await pool.close()
    return offered / offering_s


async def _echo(connection: ServerConnection) -> None:
    async for message in connection:
        await connection.send(message)


def _serve_echo(port: int, ready: Any) -> None:
    import uvloop

    async def main() -> None:
        async with serve(_echo, "127.0.0.1", port, compression=None):
            ready.set()
            await asyncio.Future()

    uvloop.run(main())


async def echo_messages_per_s(clients: int = 16, seconds: float = 5.0) -> float:
    """Echoed small messages a second, ``clients`` connections in parallel."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    server = context.Process(target=_serve_echo, args=(port, ready), daemon=True)
    server.start()
    try:
        await asyncio.to_thread(ready.wait, 30)
        counts = [0] * clients
        deadline = time.perf_counter() + seconds
        frame = '{"type":"location","id":"m1","v":1,"lat":43.88,"lon":125.32}'

        async def client(k: int) -> None:
            async with connect(f"ws://127.0.0.1:{port}", compression=None) as ws:
                while time.perf_counter() < deadline:
                    await ws.send(frame)
                    await ws.recv()
                    counts[k] += 1

        started = time.perf_counter()
        await asyncio.gather(*(client(k) for k in range(clients)))
        elapsed = time.perf_counter() - started
    finally:
        server.terminate()
        server.join(5)
    return sum(counts) / elapsed
