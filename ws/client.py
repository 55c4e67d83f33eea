"""The protocol's client side, on the ``websockets`` library.

A second, independent implementation of the protocol: the demo's simulated
phones, the gateway benchmark and the protocol tests speak through it.

:class:`Session` is one connection: it matches replies to requests by
``re``, queues everything else, and remembers the last history position it
saw (``last_seq``). :class:`Phone` keeps a phone connected: it reconnects
with jittered exponential backoff, resumes after ``last_seq``, and applies
each history message exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
from collections.abc import Callable, Mapping
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

__all__ = ["HISTORY_TYPES", "Phone", "ProtocolError", "Session"]

logger = logging.getLogger(__name__)

#: Server messages that are part of a history and carry a new ``seq``.
HISTORY_TYPES = frozenset(
    {"offer", "offer_withdrawn", "order_update", "plan", "order_event", "alert"}
)
#: Server messages that (re)start a history position.
_START_TYPES = frozenset({"welcome", "snapshot"})

_TIMEOUT_S = 10.0
# the websockets library's default keepalive
_PING_INTERVAL_S = 20.0
# put in the inbox when the connection closes, so waiting readers wake up
_CLOSED: dict[str, Any] = {"type": "closed"}


class ProtocolError(Exception):
    """The server answered a request with ``error``.

    Attributes:
        code: The stable error code.
        message: The server's human message.
        details: Structured context, when given.
    """

    def __init__(self, body: Mapping[str, Any]) -> None:
        super().__init__(f"{body.get('code')}: {body.get('message')}")
        self.code: str = str(body.get("code"))
        self.message: str = str(body.get("message"))
        self.details: Mapping[str, Any] = body.get("details") or {}


class Session:
    """One websocket connection speaking the protocol.

    Open with :meth:`open`; :meth:`request` sends a request and waits for
    its ``ack`` (raising :class:`ProtocolError` on ``error``);
    :meth:`next` takes the next other message. Close with :meth:`close`.
    """

    _ids = itertools.count(1)

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.last_seq: int | None = None
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(
        cls,
        url: str,
        token: str | None,
        *,
        query_token: bool = False,
        origin: str | None = None,
        timeout_s: float = _TIMEOUT_S,
        ping_interval_s: float | None = _PING_INTERVAL_S,
    ) -> Session:
        """Connect to ``url`` with ``token`` (header, or query when asked).

        ``ping_interval_s`` is the interval of the client's keepalive pings;
        None sends none (the server's heartbeat still checks the link, and
        a phone that reports every few seconds learns from its acks).

        Raises:
            websockets.exceptions.InvalidStatus: The server refused the
                upgrade (401 without a valid token, 403 for a role or
                origin not allowed).
        """
        headers: dict[str, str] = {}
        if token and query_token:
            url += ("&" if "?" in url else "?") + f"access_token={token}"
        elif token:
            headers["Authorization"] = f"Bearer {token}"
        connection = await connect(
            url,
            additional_headers=headers,
            origin=origin,  # type: ignore[arg-type]  # Origin is a str NewType
            compression=None,
            open_timeout=timeout_s,
            ping_interval=ping_interval_s,
            max_size=None,
            proxy=None,
        )
        return cls(connection)

    @staticmethod
    def next_id() -> str:
        """A message id unique in this process."""
        return f"m{next(Session._ids)}"

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in self.connection:
                message: dict[str, Any] = json.loads(raw)
                kind = message.get("type")
                if kind in _START_TYPES or kind in HISTORY_TYPES:
                    self.last_seq = message["seq"]
                waiter = None
                if kind in ("ack", "error", "welcome"):
                    waiter = self._waiting.pop(str(message.get("re")), None)
                if waiter is None:
                    await self.inbox.put(message)
                elif not waiter.done():  # the requester may have given up
                    waiter.set_result(message)
        for waiter in self._waiting.values():
            if not waiter.done():
                waiter.set_exception(ConnectionError("connection closed"))
        await self.inbox.put(_CLOSED)

    async def send_raw(self, data: str | bytes, *, text: bool | None = None) -> None:
        """Send a frame as given (malformed-input tests)."""
        await self.connection.send(data, text=text)

    async def request(
        self, message_type: str, /, timeout_s: float = _TIMEOUT_S, **fields: Any
    ) -> dict[str, Any]:
        """Send a request and return its ``ack`` (``welcome`` for hello).

        Raises:
            ProtocolError: The server answered ``error``.
            TimeoutError: No answer within ``timeout_s``.
        """
        message_id = str(fields.pop("id", None) or self.next_id())
        reply = await self.exchange(
            {"type": message_type, "id": message_id, "v": 1, **fields}, timeout_s
        )
        if reply["type"] == "error":
            raise ProtocolError(reply)
        return reply

    async def exchange(
        self, message: Mapping[str, Any], timeout_s: float = _TIMEOUT_S
    ) -> dict[str, Any]:
        """Send one message with an ``id`` and return the reply to it."""
        future: asyncio.Future[dict[str, Any]] = (
            asyncio.get_running_loop().create_future()
        )
        message_id = str(message["id"])
        self._waiting[message_id] = future
        try:
            await self.connection.send(json.dumps(message))
            async with asyncio.timeout(timeout_s):
                return await future
        finally:
            self._waiting.pop(message_id, None)
            if future.done() and not future.cancelled():
                # the reader may have failed it as the connection closed
                # while the send was raising: the caller has that error
                future.exception()

    async def next(
        self, kind: str | None = None, timeout_s: float = _TIMEOUT_S
    ) -> dict[str, Any]:
        """The next queued message (of ``kind``, skipping others).

        Raises:
            ConnectionError: The connection closed first.
            TimeoutError: Nothing came within ``timeout_s``.
        """
        async with asyncio.timeout(timeout_s):
            while True:
                message = await self.inbox.get()
                if message is _CLOSED:
                    self.inbox.put_nowait(_CLOSED)  # for the next caller too
                    raise ConnectionError("connection closed")
                if kind is None or message["type"] == kind:
                    return message

    async def closed(self, timeout_s: float = _TIMEOUT_S) -> tuple[int | None, str]:
        """Wait for the server to close; returns its close code and reason."""
        async with asyncio.timeout(timeout_s):
            await self.connection.wait_closed()
        return self.connection.close_code, self.connection.close_reason or ""

    async def detach(self) -> ClientConnection:
        """Stop reading and hand the bare connection over (load generators).

        Messages already queued stay in :attr:`inbox`.
        """
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        return self.connection

    async def close(self) -> None:
        """Close the connection and stop reading."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(_TIMEOUT_S):
                await self.connection.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


class Phone:
    """A phone that stays connected and applies its history exactly once.

    Run :meth:`run` as a task; cancel it to stop. Each history message is
    applied (appended to :attr:`applied`) only when its ``seq`` is the
    next one; a duplicate is counted in :attr:`duplicates` and a jump in
    :attr:`gaps` (after which a fresh ``welcome`` snapshot restarts it).

    Args:
        url: The gateway's ``/v1/caregiver`` URL.
        token: The caregiver's or vendor's token.
        base_delay_s: First reconnection delay; doubles up to ``max_delay_s``,
            each wait drawn uniformly from zero to the delay (full jitter).
        on_message: Called with every history message applied.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        base_delay_s: float = 0.05,
        max_delay_s: float = 2.0,
        on_message: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self._url = url
        self._token = token
        self._base_delay_s = base_delay_s
        self._max_delay_s = max_delay_s
        self._on_message = on_message
        self.last_seq: int | None = None
        self.applied: list[int] = []
        self.duplicates = 0
        self.gaps = 0
        self.connects = 0
        self.snapshots = 0
        self.session: Session | None = None
        self.ready = asyncio.Event()

    async def run(self) -> None:
        """Stay connected until cancelled."""
        failures = 0
        while True:
            try:
                self.session = await Session.open(self._url, self._token)
                self.connects += 1
                await self._follow(self.session)
                failures = 0
            except (OSError, ConnectionClosed, InvalidHandshake, TimeoutError):
                failures += 1
            finally:
                self.ready.clear()
                if self.session is not None:
                    await self.session.close()
                    self.session = None
            delay = min(self._max_delay_s, self._base_delay_s * 2**failures)
            await asyncio.sleep(random.uniform(0, delay))

    async def _follow(self, session: Session) -> None:
        self.apply(await session.request("hello", last_seq=self.last_seq))
        while True:
            message = await session.next(timeout_s=3600)
            self.apply(message)

    def apply(self, message: Mapping[str, Any]) -> None:
        """Apply one server message to the phone's state."""
        kind = message["type"]
        if kind == "welcome":
            if message["snapshot"] is not None:
                self.snapshots += 1
            self.last_seq = message["seq"]
            self.ready.set()
            return
        if kind not in HISTORY_TYPES:
            return
        seq = message["seq"]
        if self.last_seq is not None and seq <= self.last_seq:
            self.duplicates += 1
            return
        if self.last_seq is not None and self.last_seq > 0 and seq != self.last_seq + 1:
            self.gaps += 1
        self.last_seq = seq
        self.applied.append(seq)
        if self._on_message is not None:
            self._on_message(dict(message))
