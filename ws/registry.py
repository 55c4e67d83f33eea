"""Open connections of one node, and how new history reaches them.

A :class:`Connection` follows at most one history (a provider's or the
console's) from its ``cursor``: when woken it reads the entries after the
cursor from Redis and sends them in order, one reader at a time. The
:class:`Registry` knows every open connection of the node by history and by
token; :func:`follow_wakes` wakes connections when Redis announces that a
history grew, and compares every followed history with its connections'
cursors when a wake-up was lost (its number skipped), after subscribing, and
once in a long while in any case.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import WSMsgType, web
from redis.asyncio import Redis
from redis.exceptions import RedisError

from dispatch.domain import Actor
from ws.fanout import ProviderFanout, parse_wake
from ws.protocol import (
    DuplicateMessageError,
    RateLimitedError,
    ServerMessage,
    TooManyConnectionsError,
    encode,
    with_seq,
)

__all__ = [
    "Connection",
    "Limits",
    "Registry",
    "WakeNumbers",
    "follow_wakes",
    "token_key",
]

logger = logging.getLogger(__name__)

_READ_COUNT = 200
# how often the count of wake-ups published is read, to find one lost at the
# end of a burst (no later wake-up shows its number skipped)
_CHECK_S = 2.0
# every history is polled this often even when no wake-up was found lost
_SWEEP_S = 60.0
_WAKE_TIMEOUT_S = 1.0
_RETRY_S = 1.0
# positions read from Redis per round trip of the poll; between two the
# loop serves phones, so a poll over thousands of histories never stalls it
_POLL_CHUNK = 500
# a frame this small written to an empty transport buffer cannot fill it
# past its high-water mark (64 KiB), so its send never waits
_UNTIMED_FRAME_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """Limits of the realtime edge.

    Attributes:
        max_message_bytes: Largest message accepted; larger ones are
            refused with ``too_large``.
        hard_max_message_bytes: Frames beyond this close the connection
            (1009) without being read.
        max_depth: Deepest nesting of JSON objects and arrays accepted.
        rate_per_s: Messages per second a connection may send, sustained.
        burst: Messages a connection may send at once above the rate.
        connections_per_token: Open connections one token may hold per node.
        heartbeat_s: Interval of websocket pings; no pong in half of it
            closes the connection.
        idle_timeout_s: A connection that sends nothing this long is closed.
        send_timeout_s: A send that takes longer closes the connection
            (the client is not reading).
        recent_ids: Message ids remembered per connection to refuse replays.
    """

    max_message_bytes: int = 64 * 1024
    hard_max_message_bytes: int = 256 * 1024
    max_depth: int = 16
    rate_per_s: float = 20.0
    burst: int = 40
    connections_per_token: int = 4
    heartbeat_s: float = 20.0
    idle_timeout_s: float = 120.0
    send_timeout_s: float = 5.0
    recent_ids: int = 256


def token_key(token: str) -> str:
    """A short digest naming a token without keeping the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


class _Bucket:
    """A token bucket: ``rate`` per second, up to ``burst`` at once."""

    def __init__(self, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._level = float(burst)
        self._at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._level = min(self._burst, self._level + (now - self._at) * self._rate)
        self._at = now
        if self._level < 1.0:
            return False
        self._level -= 1.0
        return True


class Connection:
    """One open websocket of a phone, terminal, intake sender or console.

    Call order: :meth:`count` and :meth:`remember` each incoming message,
    :meth:`follow` once the session knows its history and position, then
    :meth:`wake` whenever the history may have grown; :meth:`send` any time.

    Args:
        ws: The prepared websocket.
        actor: Who the token speaks for.
        endpoint: ``caregiver``, ``intake`` or ``console``, for the logs.
        token: Digest of the token (see :func:`token_key`).
        limits: The limits in force.
        fanout: Where histories are read.
        transport: The connection's transport, to tell when a send cannot
            wait (then it is sent without a timer).
    """

    def __init__(
        self,
        ws: web.WebSocketResponse,
        actor: Actor,
        endpoint: str,
        token: str,
        limits: Limits,
        fanout: ProviderFanout,
        transport: asyncio.Transport | None = None,
    ) -> None:
        self.ws = ws
        self._transport = transport
        self.actor = actor
        self.endpoint = endpoint
        self.token = token
        self.history: str | None = None
        self.cursor = 0
        self.received = 0
        self.sent = 0
        self.refused = 0
        self.opened = time.monotonic()
        #: When the token expires; set by the session at the handshake.
        self.token_expires_at = datetime.max.replace(tzinfo=UTC)
        #: Called under the read lock when the history lost entries this
        #: connection had not seen; must send a fresh snapshot and move
        #: :attr:`cursor`.
        self.on_gap: Callable[[], Awaitable[None]] | None = None
        self._limits = limits
        self._fanout = fanout
        self._bucket = _Bucket(limits.rate_per_s, limits.burst)
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._lock = asyncio.Lock()
        self._dirty = False
        self._reader: asyncio.Task[None] | None = None

    def count(self) -> None:
        """Count one incoming frame against the connection's rate.

        Raises:
            RateLimitedError: Faster than the rate; :attr:`refused` counts
                the refusals in a row.
        """
        self.received += 1
        if not self._bucket.take():
            self.refused += 1
            raise RateLimitedError(
                "too many messages; slow down", rate_per_s=self._limits.rate_per_s
            )
        self.refused = 0

    def remember(self, message_id: str) -> None:
        """Refuse a message id used recently on this connection.

        Raises:
            DuplicateMessageError: The id was used recently.
        """
        if message_id in self._recent:
            raise DuplicateMessageError(
                "this message id was used before on this connection", id=message_id
            )
        self._recent[message_id] = None
        if len(self._recent) > self._limits.recent_ids:
            self._recent.popitem(last=False)

    @property
    def lock(self) -> asyncio.Lock:
        """Held while the history is read or the position moved."""
        return self._lock

    async def send(self, frame: bytes) -> None:
        """Send one encoded message.

        Raises:
            TimeoutError: The client did not take it within the send timeout.
            ConnectionResetError: The connection is gone.
        """
        transport = self._transport
        if (
            transport is not None
            and len(frame) < _UNTIMED_FRAME_BYTES
            and not transport.get_write_buffer_size()
        ):
            # with nothing buffered a small frame goes out at once and the
            # send cannot wait, so it needs no timeout (one per message
            # would be a timer and a context for nothing)
            await self.ws.send_frame(frame, WSMsgType.TEXT)
        else:
            async with asyncio.timeout(self._limits.send_timeout_s):
                await self.ws.send_frame(frame, WSMsgType.TEXT)
        self.sent += 1

    async def send_message(self, message: ServerMessage) -> None:
        """Send a message that is not part of the history, at the cursor."""
        await self.send(with_seq(encode(message), self.cursor))

    def follow(self, history: str, cursor: int) -> None:
        """Start following ``history`` after ``cursor``; call under :attr:`lock`."""
        self.history = history
        self.cursor = cursor

    def wake(self) -> None:
        """Deliver what the history gained, in the background."""
        if self.history is None or self.ws.closed:
            return
        if self._reader is not None and not self._reader.done():
            self._dirty = True
            return
        self._reader = asyncio.create_task(self._catch_up())

    async def stop(self) -> None:
        """Stop delivering; waits for a running delivery to end."""
        reader, self._reader = self._reader, None
        if reader is not None and not reader.done():
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def _catch_up(self) -> None:
        try:
            while True:
                self._dirty = False
                async with self._lock:
                    await self.deliver()
                if not self._dirty:
                    return
        except (TimeoutError, ConnectionResetError):
            logger.info("slow or gone client closed", extra={"history": self.history})
            await self.ws.close(code=1013, message=b"slow_client")
        except (RedisError, OSError) as exc:
            # tried again shortly; the phone loses nothing
            logger.warning(
                "history read failed",
                extra={"history": self.history, "error": type(exc).__name__},
            )
            asyncio.get_running_loop().call_later(_RETRY_S, self.wake)

    async def deliver(self) -> None:
        """Send every entry after the cursor; call under :attr:`lock`."""
        history = self.history
        assert history is not None
        while True:
            entries = await self._fanout.read(history, self.cursor, _READ_COUNT)
            gap = bool(entries) and self.cursor > 0 and entries[0][0] > self.cursor + 1
            if gap and self.on_gap is not None:
                # entries were trimmed (or Redis lost) before this connection
                # read them; a cursor of 0 stood before an empty history
                await self.on_gap()
                continue
            for seq, frame in entries:
                if seq <= self.cursor:
                    continue
                await self.send(with_seq(frame, seq))
                self.cursor = seq
            if len(entries) < _READ_COUNT:
                return


class Registry:
    """Every open connection of this node, by history and by token."""

    def __init__(self) -> None:
        self._by_history: dict[str, set[Connection]] = {}
        self._by_token: dict[str, int] = {}
        self.connections: set[Connection] = set()

    def open(self, connection: Connection, per_token: int) -> None:
        """Register a new connection.

        Raises:
            TooManyConnectionsError: Its token already holds ``per_token``.
        """
        held = self._by_token.get(connection.token, 0)
        if held >= per_token:
            raise TooManyConnectionsError(
                f"this token already holds {held} connections", limit=per_token
            )
        self._by_token[connection.token] = held + 1
        self.connections.add(connection)

    def attach(self, connection: Connection) -> None:
        """Index a connection under the history it now follows."""
        if connection.history is not None:
            self._by_history.setdefault(connection.history, set()).add(connection)

    def close(self, connection: Connection) -> None:
        """Forget a closed connection."""
        if connection not in self.connections:
            return
        self.connections.discard(connection)
        held = self._by_token.get(connection.token, 1) - 1
        if held:
            self._by_token[connection.token] = held
        else:
            self._by_token.pop(connection.token, None)
        if connection.history is not None:
            followers = self._by_history.get(connection.history)
            if followers is not None:
                followers.discard(connection)
                if not followers:
                    del self._by_history[connection.history]

    def followers(self, history: str) -> set[Connection]:
        """Connections following ``history`` (a live view; copy to iterate)."""
        return self._by_history.get(history, set())

    def histories(self) -> list[str]:
        """Histories followed by at least one connection."""
        return list(self._by_history)

    def wake(self, history: str) -> None:
        """Wake every connection following ``history``."""
        for connection in list(self._by_history.get(history, ())):
            connection.wake()

    async def close_all(self, code: int, reason: bytes) -> None:
        """Close every connection at once (shutdown), each within a second."""

        async def close(connection: Connection) -> None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await connection.ws.close(code=code, message=reason)

        await asyncio.gather(*(close(c) for c in list(self.connections)))


class WakeNumbers:
    """Tells from the numbers of wake-ups when one was lost.

    Wake-ups arrive in the order of their numbers; a number skipped is a
    wake-up lost. One lost at the end of a burst shows in no later number,
    so the count published is read every few seconds too: what it said at
    the last check must have arrived by now. Redis losing its data starts
    the numbers again, which is taken as a loss as well.

    Args:
        published: The count published when the subscription started;
            wake-ups up to it may or may not arrive.
    """

    def __init__(self, published: int) -> None:
        self.last = published
        self._checked = published

    def seen(self, number: int | None) -> bool:
        """Take one wake-up's number; True when one before it was lost."""
        if number is None or number <= self.last:
            # unnumbered, or published before the subscription started
            return False
        lost = number > self.last + 1
        self.last = number
        return lost

    def check(self, published: int) -> bool:
        """Take the count published now; True when a wake-up was lost."""
        lost = self.last < self._checked or published < self.last
        if lost:
            # the poll that follows covers every wake-up up to now
            self.last = published
        self._checked = published
        return lost


async def follow_wakes(
    redis: Redis, fanout: ProviderFanout, registry: Registry
) -> None:
    """Wake connections as histories grow, until cancelled.

    Pub/sub tells which history grew. Because it may drop messages, the
    positions of all followed histories are compared with the connections'
    cursors after subscribing, when :class:`WakeNumbers` finds a wake-up
    lost, and every ``_SWEEP_S`` in any case; with thousands of phones that
    comparison is the costliest step of the edge, so it runs only then.
    """
    while True:
        try:
            async with redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                await pubsub.subscribe(fanout.wake_channel)
                # wake-ups published before the subscription are not seen
                numbers = WakeNumbers(await fanout.wake_count())
                await _poll(fanout, registry)
                next_check = time.monotonic() + _CHECK_S
                next_sweep = time.monotonic() + _SWEEP_S
                while True:
                    message = await pubsub.get_message(timeout=_WAKE_TIMEOUT_S)
                    lost = False
                    if message is not None:
                        number, history = parse_wake(message["data"])
                        registry.wake(history)
                        lost = numbers.seen(number)
                    now = time.monotonic()
                    if now >= next_check:
                        next_check = now + _CHECK_S
                        lost = numbers.check(await fanout.wake_count()) or lost
                    if lost or now >= next_sweep:
                        if lost:
                            logger.info("wake-up lost", extra={"last": numbers.last})
                        next_sweep = now + _SWEEP_S
                        await _poll(fanout, registry)
        except (RedisError, OSError) as exc:
            logger.warning(
                "wake-up follower lost redis", extra={"error": type(exc).__name__}
            )
            await asyncio.sleep(_RETRY_S)


async def _poll(fanout: ProviderFanout, registry: Registry) -> None:
    histories = registry.histories()
    for first in range(0, len(histories), _POLL_CHUNK):
        chunk = histories[first : first + _POLL_CHUNK]
        positions = await fanout.positions(chunk)
        for history, position in zip(chunk, positions, strict=True):
            for connection in list(registry.followers(history)):
                if connection.cursor < position:
                    connection.wake()
