"""Raw ceilings of the machine, measured in the same run as the load.

- **Durable inserts**: one asyncpg connection inserting one row per
  transaction into an ordinary (logged) table, each commit flushed to the
  write-ahead log (``synchronous_commit`` as the server has it, on by
  default): the cost an order's acknowledgement cannot avoid without
  batching.
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
from typing import Any

import asyncpg
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

__all__ = ["durable_inserts_per_s", "echo_messages_per_s"]

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
