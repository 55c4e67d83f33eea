"""The operators' feed, ``/v1/console/stream``: orders, caregivers, alerts.

On connect the feed sends a ``snapshot`` (open orders, present caregivers,
open alerts), or, when the URL carries ``last_seq``, what the console
missed since then followed by every present caregiver; when that history
is gone it sends a snapshot flagged ``history_lost``. Then committed order
events (``order_event``) and alerts (``alert``) stream from the console's
history in Redis, and caregivers whose location or duty changed come in a
``caregivers`` batch every two seconds. Those batches are state, not
history: they carry the position of the last history message and are not
replayed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import asyncpg
from aiohttp import web
from redis.exceptions import RedisError

from db.live import LiveState
from dispatch.errors import ValidationError
from ws.fanout import CONSOLE
from ws.protocol import (
    Caregivers,
    CaregiverState,
    ConsoleRequest,
    OutOfPlaceError,
    ServerMessage,
    Snapshot,
    error_message,
)
from ws.registry import Connection
from ws.session import ACQUIRE_TIMEOUT_S, Edge
from ws.views import caregiver_states, console_alerts, open_orders

__all__ = ["ConsoleFeed"]

logger = logging.getLogger(__name__)

_DIRECTORY_REFRESH_S = 60.0


class ConsoleFeed:
    """The ``/v1/console/stream`` endpoint (roles operator and admin).

    Args:
        edge: What the node's endpoints share.
        live: Caregivers' locations and duty.
        interval_s: Time between two ``caregivers`` batches.
    """

    name = "console"
    schema: object = ConsoleRequest
    listens = True  # operators watch; the browser cannot send pings

    def __init__(self, edge: Edge, live: LiveState, *, interval_s: float = 2.0):
        self._edge = edge
        self._live = live
        self._interval_s = interval_s
        self._caregiver_ids: list[str] = []
        self._directory_at = float("-inf")
        self._last_sent: dict[str, CaregiverState] = {}

    async def opened(self, connection: Connection, request: web.Request) -> None:
        """Send the snapshot, or resume after ``last_seq``."""
        last: int | None = None
        raw = request.query.get("last_seq")
        if raw is not None:
            try:
                last = int(raw)
                if last < 0:
                    raise ValueError(raw)
            except ValueError:
                error = ValidationError(
                    "last_seq is a whole number, not negative", code="out_of_range"
                )
                await connection.send_message(error_message(error, None, 0))
        fanout = self._edge.fanout
        async with connection.lock:
            resumed = last is not None and await fanout.can_resume(CONSOLE, last)
            if resumed and last is not None:
                connection.follow(CONSOLE, last)
            else:
                await self._start_over(connection, history_lost=last is not None)
            connection.on_gap = lambda: self._start_over(connection, history_lost=True)
            self._edge.registry.attach(connection)
            if resumed:
                await connection.deliver()
                states = await self._all_caregivers()
                await connection.send_message(
                    Caregivers(id=f"c{time.time_ns()}", caregivers=states)
                )
        connection.wake()

    async def closed(self, connection: Connection) -> None:
        """Nothing to release beyond the registry."""
        del connection

    async def handle(
        self, connection: Connection, message: Any
    ) -> ServerMessage | None:
        """The feed takes no requests.

        Raises:
            OutOfPlaceError: Always; resume with the ``last_seq`` parameter.
        """
        del connection, message
        raise OutOfPlaceError(
            "the console feed takes no messages; resume with ?last_seq="
        )

    async def _start_over(self, connection: Connection, *, history_lost: bool) -> None:
        position = await self._edge.fanout.start(CONSOLE)
        async with self._edge.node.pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
            orders = await open_orders(conn)
            alerts = await console_alerts(conn)
        caregivers = await self._all_caregivers()
        connection.follow(CONSOLE, position)
        await connection.send_message(
            Snapshot(
                id=f"s{position}",
                orders=orders,
                caregivers=caregivers,
                alerts=alerts,
                history_lost=history_lost,
            )
        )

    async def _all_caregivers(self) -> list[CaregiverState]:
        if time.monotonic() - self._directory_at > _DIRECTORY_REFRESH_S:
            async with self._edge.node.pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
                rows = await conn.fetch(
                    "select caregiver_id from caregiver where active order by 1"
                )
            self._caregiver_ids = [row["caregiver_id"] for row in rows]
            self._directory_at = time.monotonic()
        return await caregiver_states(
            self._live, self._caregiver_ids, self._edge.node.clock.now()
        )

    async def run(self) -> None:
        """Send changed caregivers to this node's consoles, until cancelled."""
        while True:
            await asyncio.sleep(self._interval_s)
            consoles = list(self._edge.registry.followers(CONSOLE))
            if not consoles:
                continue
            try:
                states = await self._all_caregivers()
            except (RedisError, OSError, asyncpg.PostgresError) as exc:
                logger.warning(
                    "caregiver batch skipped", extra={"error": type(exc).__name__}
                )
                continue
            changed = [s for s in states if self._last_sent.get(s.caregiver_id) != s]
            self._last_sent = {s.caregiver_id: s for s in states}
            if not changed:
                continue
            batch = Caregivers(id=f"c{time.time_ns()}", caregivers=changed)
            for connection in consoles:
                self._edge.spawn(_send_quietly(connection, batch))


async def _send_quietly(connection: Connection, message: ServerMessage) -> None:
    try:
        await connection.send_message(message)
    except (TimeoutError, ConnectionResetError):
        await connection.ws.close(code=1013, message=b"slow_client")
