"""Fan-out between nodes through Redis streams, with a sequence per receiver.

Each receiver has a *history*: one Redis stream per provider (``p:<id>``)
and one for the operators' console (``console``). Publishing a message
appends it with the next sequence number of that history as the entry id
(``<seq>-0``), once per message id: a second publish of the same id, as the
at-least-once relay does after a crash, is dropped. Every gateway node reads
the entries after the last sequence number a connection saw, so a phone on
any node gets what was published on any other. Redis pub/sub only wakes the
readers. Wake-ups are numbered (one counter for all histories), so a reader
that finds a number skipped knows one was lost and polls every history it
follows; that needs no poll over thousands of histories while none is lost.

Keys, under an optional prefix::

    hc:ws:s:<history>             stream of encoded messages (field m)
    hc:ws:n:<history>             last sequence number of the history
    hc:ws:d:<history>:<msg id>    seen message ids, for a day
    hc:ws:plan:<provider id>      the provider's latest plan message
    hc:ws:w                       number of the last wake-up published
    hc:ws:wake                    pub/sub channel: "<number> <history>"

Sequence numbers start at a time-based base (unix seconds times 1000) when
a history is created, so after Redis is lost the numbers still grow and a
phone's old position is recognised as gone. Everything here can be
rebuilt: a phone that finds its history gone gets a fresh snapshot from
PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any, cast

import msgspec
from redis.asyncio import Redis

from ws.protocol import Offer, OfferWithdrawn, OrderUpdate, Plan, ServerMessage, encode

__all__ = ["CONSOLE", "ProviderFanout", "parse_wake", "provider_history"]

#: The history of the operators' console feed.
CONSOLE = "console"

_DAY_S = 86_400

# KEYS: stream, counter, dedupe key, wake-up counter. ARGV: frame, maxlen,
# ttl of stream and dedupe key, ttl of counter, wake channel, history name.
_PUBLISH = """
if not redis.call('SET', KEYS[3], '1', 'NX', 'EX', ARGV[3]) then
    return 0
end
local seq = redis.call('INCR', KEYS[2])
if seq == 1 then
    redis.call('SET', KEYS[2], redis.call('TIME')[1] .. '000')
    seq = redis.call('INCR', KEYS[2])
end
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], seq .. '-0', 'm', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
local wake = redis.call('INCR', KEYS[4])
redis.call('PUBLISH', ARGV[5], wake .. ' ' .. ARGV[6])
return seq
"""

# KEYS: counter. ARGV: ttl of the counter. The history's position, created
# at the time-based base when the history does not exist yet.
_ENSURE = """
local seq = redis.call('GET', KEYS[1])
if not seq then
    seq = redis.call('TIME')[1] .. '000'
    redis.call('SET', KEYS[1], seq, 'EX', ARGV[1])
end
return tonumber(seq)
"""

_PROVIDER_TYPES: Mapping[str, type[ServerMessage]] = {
    "offer": Offer,
    "offer_withdrawn": OfferWithdrawn,
    "order_update": OrderUpdate,
    "plan": Plan,
}


def provider_history(provider_id: str) -> str:
    """The history name of a provider (caregiver or vendor)."""
    return f"p:{provider_id}"


def parse_wake(data: bytes | str) -> tuple[int | None, str]:
    """The number and history of a wake-up (no number: an unnumbered one)."""
    text = data.decode() if isinstance(data, bytes) else data
    number, _, history = text.partition(" ")
    if history and number.isdigit():
        return int(number), history
    return None, text


class ProviderFanout:
    """Publishes to and reads from the per-receiver histories in Redis.

    Args:
        redis: The client; its own timeouts bound every call.
        prefix: Key prefix, to run several cities (or tests) on one Redis.
        history: Messages kept per history (approximately; Redis trims
            whole nodes of the stream).
        ttl_s: How long an idle history and its seen ids are kept.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str = "",
        history: int = 1000,
        ttl_s: int = _DAY_S,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._history = history
        self._ttl_s = ttl_s
        self._script = redis.register_script(_PUBLISH)
        self._ensure = redis.register_script(_ENSURE)
        self.wake_channel = f"{prefix}hc:ws:wake"
        self._wakes = f"{prefix}hc:ws:w"

    def _stream(self, history: str) -> str:
        return f"{self._prefix}hc:ws:s:{history}"

    def _counter(self, history: str) -> str:
        return f"{self._prefix}hc:ws:n:{history}"

    def _plan(self, provider_id: str) -> str:
        return f"{self._prefix}hc:ws:plan:{provider_id}"

    def _args(
        self, history: str, message_id: str, frame: bytes
    ) -> tuple[list[str], list[Any]]:
        keys = [
            self._stream(history),
            self._counter(history),
            f"{self._prefix}hc:ws:d:{history}:{message_id}",
            self._wakes,
        ]
        args: list[Any] = [
            frame,
            self._history,
            self._ttl_s,
            self._ttl_s * 7,
            self.wake_channel,
            history,
        ]
        return keys, args

    async def publish(self, history: str, message_id: str, frame: bytes) -> int | None:
        """Append one encoded message; returns its seq, or None if seen before."""
        keys, args = self._args(history, message_id, frame)
        seq = await self._script(keys=keys, args=args)
        return int(seq) or None

    async def publish_many(
        self, items: Sequence[tuple[str, str, bytes]]
    ) -> list[int | None]:
        """Append many ``(history, message_id, frame)`` in one round trip."""
        if not items:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for history, message_id, frame in items:
                keys, args = self._args(history, message_id, frame)
                await self._script(keys=keys, args=args, client=pipe)
            results = await pipe.execute()
        return [int(seq) or None for seq in results]

    async def send_to_provider(
        self, provider_id: str, message_type: str, body: Mapping[str, Any]
    ) -> None:
        """Send a message to a provider's phone, on whichever node it is.

        ``plan`` messages are also kept as the provider's latest plan, so a
        phone that starts over gets it in its snapshot.

        Raises:
            ValueError: Unknown ``message_type`` or a body that does not
                match its schema.
        """
        kind = _PROVIDER_TYPES.get(message_type)
        if kind is None:
            raise ValueError(f"no provider message type {message_type!r}")
        message_id = str(body.get("id") or f"{message_type[0]}{uuid.uuid4().hex}")
        try:
            message = msgspec.convert(
                {**body, "id": message_id}, type=kind, from_attributes=False
            )
        except msgspec.ValidationError as exc:
            raise ValueError(f"bad {message_type} body: {exc}") from None
        frame = encode(message)
        if isinstance(message, Plan):
            await self._redis.set(self._plan(provider_id), frame, ex=self._ttl_s)
        await self.publish(provider_history(provider_id), message_id, frame)

    async def latest_plan(self, provider_id: str) -> Plan | None:
        """The last plan sent to a provider, if Redis still has it."""
        frame = await self._redis.get(self._plan(provider_id))
        if frame is None:
            return None
        return msgspec.json.decode(frame, type=Plan)

    async def start(self, history: str) -> int:
        """The last sequence number of a history, creating it when absent.

        A receiver starting from a snapshot takes this as its position, so
        every position handed out is on the history's own numbering and a
        later resume from it can be checked.
        """
        seq = await self._ensure(keys=[self._counter(history)], args=[self._ttl_s * 7])
        return int(seq)

    async def position(self, history: str) -> int:
        """The last sequence number of a history (0 when it has none)."""
        value = await self._redis.get(self._counter(history))
        return int(value) if value is not None else 0

    async def wake_count(self) -> int:
        """The number of the last wake-up published (0 before the first)."""
        value = await self._redis.get(self._wakes)
        return int(value) if value is not None else 0

    async def positions(self, histories: Sequence[str]) -> list[int]:
        """The last sequence number of each history, in one round trip."""
        if not histories:
            return []
        values = await self._redis.mget([self._counter(h) for h in histories])
        return [int(v) if v is not None else 0 for v in values]

    async def read(
        self, history: str, after: int, count: int = 200
    ) -> list[tuple[int, bytes]]:
        """Up to ``count`` messages with a seq above ``after``, oldest first."""
        # redis-py types stream replies loosely: (id, {field: value}) pairs
        entries: list[tuple[bytes, dict[bytes, bytes]]] = cast(
            Any,
            await self._redis.xrange(
                self._stream(history), min=str(after + 1), max="+", count=count
            ),
        )
        return [
            (int(entry_id.split(b"-")[0]), fields[b"m"]) for entry_id, fields in entries
        ]

    async def can_resume(self, history: str, last_seq: int) -> bool:
        """Whether everything after ``last_seq`` is still in the history."""
        position = await self.position(history)
        if last_seq > position:
            return False
        if last_seq == position:
            return True
        first = await self.read(history, last_seq, count=1)
        return bool(first) and first[0][0] == last_seq + 1
