"""Following the order event log in commit order (the log is the outbox).

Every transition commits an event row stamped with its transaction id; a
reader takes the rows whose transaction is older than every transaction
still running (``pg_snapshot_xmin``), ordered by ``(tx, event_id)``. Rows
below that horizon can no longer appear, so a reader that moves its cursor
past them never skips an event, even when transactions commit out of
order. The store sends a ``NOTIFY`` with each commit to wake readers; a
short poll covers a missed wake-up.

Delivery is at least once: a reader's cursor is saved after its consumer
has handled a batch, and consumers ignore events they have seen by
``event_id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from db.pool import Connection

__all__ = ["CHANNEL", "OutboxEvent", "OutboxReader", "drop_cursors"]

logger = logging.getLogger(__name__)

#: The NOTIFY channel the order store signals on every commit.
CHANNEL = "order_event"

_BATCH = 1000
_START_AT_BEGINNING = (
    "insert into outbox_cursor (name) values ($1) on conflict (name) do nothing"
)
# The end of the log is where no transaction that is still running can
# commit behind: the oldest one running (or the next to start).
_START_AT_END = """
    insert into outbox_cursor (name, tx, event_id)
    values ($1, pg_snapshot_xmin(pg_current_snapshot()), 0)
    on conflict (name) do nothing
"""
_POLL_S = 0.5


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """One committed order event with its routing facts."""

    event_id: int
    tx: int
    order_id: str
    seq: int
    trigger: str
    from_status: str | None
    to_status: str
    actor_role: str
    actor_id: str
    at: datetime
    reason: str
    payload: Mapping[str, Any]
    region_id: str
    provider_ids: tuple[str, ...]


def _event(row: asyncpg.Record) -> OutboxEvent:
    return OutboxEvent(
        event_id=row["event_id"],
        tx=int(row["tx"]),
        order_id=str(row["order_id"]),
        seq=row["seq"],
        trigger=row["trigger"],
        from_status=row["from_status"],
        to_status=row["to_status"],
        actor_role=row["actor_role"],
        actor_id=row["actor_id"],
        at=row["at"],
        reason=row["reason"],
        payload=row["payload"],
        region_id=row["region_id"],
        provider_ids=tuple(row["provider_ids"]),
    )


class OutboxReader:
    """A named, resumable reader of the order event log.

    Use :meth:`batches` as an async iterator; after handling each batch
    call :meth:`commit` so a restart resumes after it.

    Args:
        pool: Connections to the order database.
        name: The cursor's name; one reader per name at a time.
        from_now: Start a brand-new cursor at the end of the log instead of
            its beginning.
    """

    def __init__(self, pool: asyncpg.Pool, name: str, *, from_now: bool = False):
        self._pool = pool
        self._name = name
        self._from_now = from_now
        # where the next read starts, and whether it moved since the save
        self._position: tuple[int, int] = (0, 0)
        self._unsaved = False
        self._wake = asyncio.Event()

    async def batches(self) -> AsyncIterator[list[OutboxEvent]]:
        """Yield batches of new events in commit order, forever."""
        listener = await self._pool.acquire()
        try:
            await listener.add_listener(CHANNEL, self._on_notify)
            self._position = await self._load_cursor(listener)
            while True:
                self._wake.clear()
                batch = await self._read(listener)
                if batch:
                    self._position = (batch[-1].tx, batch[-1].event_id)
                    self._unsaved = True
                    yield batch
                    if len(batch) == _BATCH:
                        continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), _POLL_S)
        finally:
            with contextlib.suppress(Exception):
                await listener.remove_listener(CHANNEL, self._on_notify)
            await self._pool.release(listener)

    async def prepare(self) -> None:
        """Make the cursor now, if new, so that every event from here is read.

        :meth:`batches` makes it otherwise; call this first where the
        caller loads the state that the events then change.
        """
        async with self._pool.acquire() as conn:
            await self._load_cursor(conn)

    async def commit(self) -> None:
        """Save the cursor past the last batch yielded."""
        if not self._unsaved:
            return
        tx, event_id = self._position
        await self._pool.execute(
            "update outbox_cursor"
            " set tx = $2::text::xid8, event_id = $3, moved_at = now()"
            " where name = $1",
            self._name,
            str(tx),
            event_id,
        )
        self._unsaved = False

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def _load_cursor(self, conn: Connection) -> tuple[int, int]:
        await conn.execute(
            _START_AT_END if self._from_now else _START_AT_BEGINNING, self._name
        )
        row = await conn.fetchrow(
            "select tx::text as tx, event_id from outbox_cursor where name = $1",
            self._name,
        )
        assert row is not None
        return int(row["tx"]), row["event_id"]

    async def _read(self, conn: Connection) -> list[OutboxEvent]:
        tx, event_id = self._position
        rows = await conn.fetch(
            """
            select * from order_event
            where (tx, event_id) > ($1::text::xid8, $2)
              and tx < pg_snapshot_xmin(pg_current_snapshot())
            order by tx, event_id
            limit $3
            """,
            str(tx),
            event_id,
            _BATCH,
        )
        return [_event(row) for row in rows]


async def drop_cursors(pool: asyncpg.Pool, names: Sequence[str]) -> None:
    """Forget readers' cursors for good, such as a stopped node's own."""
    await pool.execute(
        "delete from outbox_cursor where name = any($1::text[])", list(names)
    )
