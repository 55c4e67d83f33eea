"""Group commit: many concurrent writes coalesced into few transactions.

Callers of :meth:`GroupCommit.submit` wait in a queue; each commit takes
every write waiting at that moment (up to a group's size) into one
transaction, whose statements the writer issues per group, not per write
(DESIGN.md section 8). Each caller is answered only after the commit that
holds its write.

A writer returns one outcome per write: a result, or the
:class:`~dispatch.errors.HomecareError` that refused that write alone
(it wrote nothing of it). Should PostgreSQL refuse the group as a whole,
each of its writes is tried again in a group of its own, so one bad write
never fails the others. Any other failure (a lost connection) reaches
every caller of the group, none of whose writes committed.

A commit keeps its connection for the groups that follow it back to back
and gives it back to the pool only when the queue is empty: a connection
given back costs a round trip of its own (the pool resets its session),
which under a steady stream of writes was paid once per group.

Writes that share a key (an order, an idempotency key) never sit in the
same group nor in two groups committing at once: the later one waits for
a later group and sees the first one's outcome, as it would have one
transaction at a time.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import asyncpg

from db.pool import Connection
from dispatch.errors import HomecareError, UnavailableError

__all__ = ["GroupCommit", "Writer"]

logger = logging.getLogger(__name__)

W = TypeVar("W")
R = TypeVar("R")

#: Writes a group in the caller's transaction; one outcome per write.
Writer = Callable[[Connection, Sequence[W]], Awaitable[list[R | HomecareError]]]


@dataclass(slots=True)
class _Waiting(Generic[W, R]):
    write: W
    key: Hashable
    answer: asyncio.Future[R]


class GroupCommit(Generic[W, R]):
    """A queue of writes committed in groups.

    No task runs while the queue is empty: the first write to arrive
    starts a commit, which goes on taking groups until none is left.

    Args:
        pool: Where connections come from.
        writer: Writes one group inside a transaction.
        key: The key of a write (see the module's docstring).
        name: What the writes are, for the logs.
        max_group: Most writes committed in one transaction.
        max_commits: Most groups committing at once, each on its own
            connection; while they run, new writes gather for the next.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        writer: Writer[W, R],
        key: Callable[[W], Hashable],
        *,
        name: str,
        max_group: int = 200,
        max_commits: int = 2,
    ) -> None:
        self._pool = pool
        self._writer = writer
        self._key = key
        self._name = name
        self._max_group = max_group
        self._max_commits = max_commits
        self._waiting: deque[_Waiting[W, R]] = deque()
        self._in_flight: set[Hashable] = set()
        self._committing = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, write: W) -> R:
        """Queue one write and return its outcome once its group committed.

        Raises:
            HomecareError: The writer refused this write; nothing of it was
                written.
            asyncpg.PostgresError: PostgreSQL refused this write alone.
            Exception: The group was lost before its commit (connection,
                timeout); nothing of it was written.
        """
        waiting = _Waiting[W, R](
            write, self._key(write), asyncio.get_running_loop().create_future()
        )
        self._waiting.append(waiting)
        if self._committing < self._max_commits:
            # counted here and uncounted where it finds nothing left, with
            # no await in between, so a write never waits without a commit
            self._committing += 1
            task = asyncio.create_task(self._commit_waiting())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await waiting.answer

    async def _commit_waiting(self) -> None:
        try:
            group = self._next_group()
            while group:
                group = await self._commit_groups(group)
                if not group:
                    # writes that came while the connection went back found
                    # this commit still counted and started none of their own
                    group = self._next_group()
        finally:
            self._committing -= 1

    async def _commit_groups(self, group: list[_Waiting[W, R]]) -> list[_Waiting[W, R]]:
        """Commit ``group`` and those after it on one connection.

        Returns the group still to commit when the connection was lost or
        could not be had (its callers already answered), or an empty one
        when the queue ran dry.
        """
        try:
            async with self._pool.acquire() as conn:
                while group:
                    try:
                        await self._commit(conn, group)
                    finally:
                        self._in_flight.difference_update(w.key for w in group)
                    group = self._next_group()
                    if _lost(conn):
                        return group
        except asyncio.CancelledError:
            # the service is stopping: nobody may be left waiting
            stopping = UnavailableError("the service is stopping")
            _answer_all(group, stopping)
            self._in_flight.difference_update(w.key for w in group)
            if self._committing == 1:
                _answer_all(self._waiting, stopping)
                self._waiting.clear()
            raise
        except Exception as exc:  # noqa: BLE001  # each caller is told, not a task log
            # no connection, or it failed as it went back to the pool
            _answer_all(group, exc)
            self._in_flight.difference_update(w.key for w in group)
            return self._next_group()
        return group

    def _next_group(self) -> list[_Waiting[W, R]]:
        group: list[_Waiting[W, R]] = []
        later: list[_Waiting[W, R]] = []
        while self._waiting and len(group) < self._max_group:
            waiting = self._waiting.popleft()
            if waiting.answer.done():
                continue  # its caller has gone before anything was written
            if waiting.key in self._in_flight:
                later.append(waiting)
                continue
            self._in_flight.add(waiting.key)
            group.append(waiting)
        self._waiting.extendleft(reversed(later))
        return group

    async def _commit(self, conn: Connection, group: Sequence[_Waiting[W, R]]) -> None:
        try:
            async with conn.transaction():
                outcomes = await self._writer(conn, [w.write for w in group])
        except asyncpg.PostgresError as exc:
            if len(group) == 1:
                _answer_all(group, exc)
                return
            logger.warning(
                "group refused, committing each write alone",
                extra={"writes": self._name, "count": len(group)},
            )
            for waiting in group:
                await self._commit(conn, [waiting])
            return
        except Exception as exc:  # noqa: BLE001  # each caller is told, not a task log
            _answer_all(group, exc)
            return
        for waiting, outcome in zip(group, outcomes, strict=True):
            if waiting.answer.done():
                continue
            if isinstance(outcome, HomecareError):
                waiting.answer.set_exception(outcome)
            else:
                waiting.answer.set_result(outcome)


def _lost(conn: Connection) -> bool:
    """Whether the connection died (a dead one has gone back to its pool)."""
    try:
        return conn.is_closed()
    except asyncpg.InterfaceError:
        return True


def _answer_all(group: Iterable[_Waiting[W, R]], error: BaseException) -> None:
    for waiting in group:
        if not waiting.answer.done():
            waiting.answer.set_exception(error)
