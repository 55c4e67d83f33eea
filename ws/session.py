"""One websocket connection from handshake to close, for every endpoint.

:func:`serve` checks the origin, registers the connection against the
per-token limit, closes it when its token expires or it stays idle, and
turns each text frame into a validated request for the endpoint. Every
request is answered with what the endpoint returns (an ``ack``) or an
``error`` with a stable code; a refused message changes nothing. Each
connection leaves one canonical log line when it closes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import asyncpg
from aiohttp import WSMsgType, web
from redis.exceptions import RedisError

from dispatch.errors import (
    ForbiddenError,
    HomecareError,
    UnavailableError,
    ValidationError,
)
from dispatch.http import AUTHENTICATOR, actor_of, bearer_token
from dispatch.node import Node
from ws.fanout import ProviderFanout
from ws.protocol import (
    IdleTimeoutError,
    LimitError,
    RateLimitedError,
    ServerMessage,
    TokenExpiredError,
    close_code,
    decode_request,
    error_message,
    message_id_of,
)
from ws.registry import Connection, Limits, Registry, token_key

__all__ = ["ACQUIRE_TIMEOUT_S", "Edge", "Endpoint", "serve"]

logger = logging.getLogger(__name__)

#: Longest wait for a PostgreSQL connection of the node's pool, in seconds.
ACQUIRE_TIMEOUT_S = 10.0


@dataclass(slots=True)
class Edge:
    """What every endpoint of one node's realtime edge shares.

    Attributes:
        node: The node's stores and commands.
        fanout: The histories in Redis.
        registry: This node's open connections.
        limits: The limits in force.
        origins: Browser origins allowed besides the service's own.
        tasks: Background tasks of the edge (kept so none is lost).
    """

    node: Node
    fanout: ProviderFanout
    registry: Registry
    limits: Limits
    origins: frozenset[str] = frozenset()
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def spawn(self, coro: Any) -> None:
        """Run a short background job, keeping a reference until it ends."""
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


class Endpoint(Protocol):
    """What an endpoint adds to :func:`serve`."""

    name: str
    schema: object
    #: The client only listens (the console feed): the idle timeout does not
    #: apply, and the heartbeat alone closes a link that went dead.
    listens: bool

    async def opened(self, connection: Connection, request: web.Request) -> None:
        """The connection was accepted; may send a first message."""

    async def handle(
        self, connection: Connection, message: Any
    ) -> ServerMessage | None:
        """Carry out one request; returns the ack, or None when it answered."""

    async def closed(self, connection: Connection) -> None:
        """The connection closed."""


def check_origin(request: web.Request, allowed: frozenset[str]) -> None:
    """Refuse a browser page from another origin than ours or the allowed ones.

    Clients that are not browsers send no ``Origin`` and pass.

    Raises:
        ForbiddenError: The origin is neither ours nor allowed.
    """
    origin = request.headers.get("Origin")
    if origin is None or origin in allowed or urlsplit(origin).netloc == request.host:
        return
    raise ForbiddenError("this origin may not open websockets here", origin=origin)


async def serve(
    request: web.Request, edge: Edge, endpoint: Endpoint
) -> web.StreamResponse:
    """Run one websocket connection of ``endpoint`` until it closes.

    Raises:
        ForbiddenError: Before the upgrade, for an origin not allowed.
        AuthError: Before the upgrade, for a token that expired meanwhile.
    """
    check_origin(request, edge.origins)
    token = bearer_token(request)
    claims = request.app[AUTHENTICATOR].verify(token)
    limits = edge.limits
    ws = web.WebSocketResponse(
        heartbeat=limits.heartbeat_s,
        max_msg_size=limits.hard_max_message_bytes,
        compress=False,  # a deflate context costs ~100 KiB per connection
        decode_text=False,  # UTF-8 is checked by the protocol, not the reader
        autoping=False,  # a client's keepalive ping counts as activity
    )
    await ws.prepare(request)
    connection = Connection(
        ws,
        actor_of(request),
        endpoint.name,
        token_key(token),
        limits,
        edge.fanout,
        request.transport,
    )
    connection.token_expires_at = claims.expires_at
    try:
        edge.registry.open(connection, limits.connections_per_token)
    except LimitError as error:
        await _refuse(connection, error)
        _log_close(connection, ws, "refused")
        return ws

    loop = asyncio.get_running_loop()
    left_s = (claims.expires_at - edge.node.clock.now()).total_seconds()
    expiry = loop.call_later(
        max(left_s, 0.0),
        lambda: edge.spawn(
            _refuse(connection, TokenExpiredError("the token expired; reconnect"))
        ),
    )
    status = "closed"

    def idle() -> None:
        nonlocal status
        status = IdleTimeoutError.code
        error = IdleTimeoutError(
            "nothing received for too long", idle_timeout_s=limits.idle_timeout_s
        )
        edge.spawn(_refuse(connection, error))

    watch = _IdleWatch(loop, limits.idle_timeout_s, idle, watching=not endpoint.listens)
    try:
        await endpoint.opened(connection, request)
        while not ws.closed:
            # no timeout on the read itself: a timeout per message is a
            # timer and a context per message, most of the cost of a read
            frame = await ws.receive()
            if frame.type is WSMsgType.PONG:
                continue  # our heartbeat answered: the link lives, nothing more
            watch.last = loop.time()
            if frame.type is WSMsgType.TEXT:
                await _answer(connection, endpoint, frame.data, limits)
            elif frame.type is WSMsgType.PING:
                await ws.pong(frame.data)
            elif frame.type is WSMsgType.BINARY:
                await _refuse_frame(
                    connection,
                    ValidationError(
                        "binary frames are not part of the protocol",
                        code="binary_frame",
                    ),
                )
            elif frame.type is WSMsgType.ERROR:
                status = "error"
                break
            else:
                break
    except LimitError as error:
        status = error.code
        await _refuse(connection, error)
    except (ConnectionResetError, TimeoutError):
        status = "gone"
    finally:
        expiry.cancel()
        watch.cancel()
        await connection.stop()
        edge.registry.close(connection)
        await endpoint.closed(connection)
        _log_close(connection, ws, status)
    return ws


class _IdleWatch:
    """Calls ``expire`` once nothing was received for ``timeout_s``.

    Readers set :attr:`last` on every frame the client sent of its own
    accord (a message or a keepalive ping); the one timer is moved only
    when it fires, so a connection costs a timer per idle period, not one
    per message. With ``watching`` false it never fires.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        timeout_s: float,
        expire: Callable[[], None],
        *,
        watching: bool = True,
    ) -> None:
        self.last = loop.time()
        self._loop = loop
        self._timeout_s = timeout_s
        self._expire = expire
        self._timer: asyncio.TimerHandle | None = (
            loop.call_at(self.last + timeout_s, self._check) if watching else None
        )

    def _check(self) -> None:
        due = self.last + self._timeout_s
        if self._loop.time() < due:
            self._timer = self._loop.call_at(due, self._check)
            return
        self._timer = None
        self._expire()

    def cancel(self) -> None:
        """Stop watching."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


async def _answer(
    connection: Connection, endpoint: Endpoint, data: bytes, limits: Limits
) -> None:
    re: str | None = None
    try:
        connection.count()
        message = decode_request(
            data,
            endpoint.schema,
            max_bytes=limits.max_message_bytes,
            max_depth=limits.max_depth,
        )
        re = message.id
        connection.remember(message.id)
        reply = await endpoint.handle(connection, message)
    except ConnectionResetError:
        raise  # the client is gone; nobody to answer
    except RateLimitedError as error:
        if connection.refused > limits.burst:
            raise
        await _refuse_frame(connection, error, message_id_of(data))
    except HomecareError as error:
        if re is None and error.code not in ("too_large", "too_deep"):
            re = message_id_of(data)
        await _refuse_frame(connection, error, re)
    except (asyncpg.PostgresError, RedisError, OSError, TimeoutError) as exc:
        logger.warning(
            "request failed on a store",
            extra={"endpoint": endpoint.name, "error": type(exc).__name__},
        )
        await _refuse_frame(
            connection, UnavailableError("a store did not answer; retry"), re
        )
    else:
        if reply is not None:
            await connection.send_message(reply)


async def _refuse_frame(
    connection: Connection, error: HomecareError, re: str | None = None
) -> None:
    await connection.send_message(error_message(error, re, connection.cursor))


async def _refuse(connection: Connection, error: HomecareError) -> None:
    """Say why, then close with the error's close code."""
    ws = connection.ws
    if ws.closed:
        return
    try:
        async with asyncio.timeout(1.0):
            await connection.send_message(error_message(error, None, connection.cursor))
    except (TimeoutError, ConnectionResetError):
        pass
    await ws.close(code=close_code(error), message=error.code.encode())


def _log_close(connection: Connection, ws: web.WebSocketResponse, status: str) -> None:
    logger.info(
        "connection closed",
        extra={
            "endpoint": connection.endpoint,
            "role": str(connection.actor.role),
            "actor_id": connection.actor.actor_id,
            "received": connection.received,
            "sent": connection.sent,
            "duration_s": round(time.monotonic() - connection.opened, 3),
            "close_code": ws.close_code,
            "status": status,
        },
    )
