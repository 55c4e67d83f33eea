"""Region leases with fencing numbers: one dispatcher per region at a time.

Regions are the shards of dispatching (DESIGN.md section 9). A dispatcher
node holds a *lease* on each region it serves, in PostgreSQL, and renews it
well before it expires. A lease that has expired (its holder died, stalled
or lost the database) may be taken by another node, and taking it raises the
region's *fencing number*. Every write a dispatcher makes runs
:func:`check_fence` in its own transaction: the write commits only while
that dispatcher still holds the lease with the fence it was given, so a
dispatcher that wakes up after its lease passed to another node changes
nothing. The check takes a share lock on the lease row, so a takeover waits
for writes in flight under the old fence and every later write sees the new
one. No consensus of our own: PostgreSQL's row locks and one clock (the
database server's) decide.

Nodes share the regions fairly: each node says it is alive in
``dispatcher_node`` on every claim, and holds at most its *fair share*, the
regions divided by the nodes alive, rounded up. A node above its share
releases the surplus (the regions last in id order), which the others take
on their next claim; so a node that joins gets its share within two rounds,
and the regions of a node that died are taken once its leases expire.

Call order: :meth:`RegionLeases.claim` every few seconds (a third of the
lease's time to live or less), :meth:`RegionLeases.release_all` on a clean
stop so that others need not wait for the leases to expire.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from db.pool import Connection
from dispatch.errors import LeaseLostError

__all__ = ["Fence", "Lease", "RegionLeases", "check_fence", "fence_holds"]

_HEARTBEAT = """
    insert into dispatcher_node (holder, seen_at) values ($1, clock_timestamp())
    on conflict (holder) do update set seen_at = excluded.seen_at
"""
_LIVE_NODES = """
    select count(*) from dispatcher_node
    where seen_at > clock_timestamp() - $1::interval or holder = $2
"""
_RENEW = """
    update region_lease set expires_at = clock_timestamp() + $2::interval
    where holder = $1 and expires_at > clock_timestamp()
    returning region_id, fence, expires_at
"""
_RELEASE = """
    update region_lease set expires_at = clock_timestamp()
    where holder = $1 and region_id = any($2::text[])
"""
# A region never leased before gets its first lease, fence 1.
_TAKE_NEW = """
    insert into region_lease (region_id, holder, fence, expires_at)
    select region_id, $1, 1, clock_timestamp() + $2::interval
    from region
    where region_id not in (select region_id from region_lease)
    order by region_id
    limit $3
    on conflict (region_id) do nothing
    returning region_id, fence, expires_at
"""
# An expired lease passes to the new holder with the next fence; rows
# another claimer has locked are skipped, never waited for.
_TAKE_EXPIRED = """
    update region_lease l
    set holder = $1, fence = l.fence + 1,
        expires_at = clock_timestamp() + $2::interval
    where l.region_id in (
        select region_id from region_lease
        where expires_at <= clock_timestamp()
        order by region_id
        limit $3
        for update skip locked
    )
    returning l.region_id, l.fence, l.expires_at
"""
_CHECK = """
    select 1 from region_lease
    where region_id = $1 and holder = $2 and fence = $3
      and expires_at > clock_timestamp()
    for share
"""


@dataclass(frozen=True, slots=True)
class Lease:
    """A region held by this node.

    Attributes:
        region_id: The region.
        fence: Its fencing number; every write for the region checks it.
        expires_at: When the lease lapses unless renewed (database time).
    """

    region_id: str
    fence: int
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Fence:
    """What a dispatcher's writes must prove: the leases it was started with.

    Attributes:
        holder: The node holding the leases.
        fences: Region id to the fence of its lease; a write for a region
            not in here is refused.
    """

    holder: str
    fences: Mapping[str, int]


def _leases(rows: list[asyncpg.Record]) -> dict[str, Lease]:
    return {
        row["region_id"]: Lease(row["region_id"], row["fence"], row["expires_at"])
        for row in rows
    }


class RegionLeases:
    """One dispatcher node's leases on regions; see the module docstring.

    Args:
        pool: Connections to the database holding the leases.
        holder: This node's name, unique among the nodes (a node id).
        ttl: How long a lease lasts without renewal. Also how long a node
            counts as alive after its last claim.
    """

    def __init__(self, pool: asyncpg.Pool, holder: str, ttl: timedelta) -> None:
        if ttl <= timedelta(0):
            raise ValueError("a lease must last longer than zero")
        self._pool = pool
        self.holder = holder
        self.ttl = ttl

    async def claim(self) -> dict[str, Lease]:
        """Renew, release the surplus, take free regions; the leases held now.

        One transaction: a node alive says so, renews every lease it still
        holds, gives up the regions above its fair share, and takes expired
        or never-leased regions up to that share.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(_HEARTBEAT, self.holder)
            nodes = await conn.fetchval(_LIVE_NODES, self.ttl, self.holder)
            regions = await conn.fetchval("select count(*) from region")
            share = math.ceil(regions / max(nodes, 1))

            held = _leases(await conn.fetch(_RENEW, self.holder, self.ttl))
            surplus = sorted(held)[share:]
            if surplus:
                await conn.execute(_RELEASE, self.holder, surplus)
                for region_id in surplus:
                    del held[region_id]
            for query in (_TAKE_NEW, _TAKE_EXPIRED):
                wanted = share - len(held)
                if wanted <= 0:
                    break
                held |= _leases(await conn.fetch(query, self.holder, self.ttl, wanted))
        return held

    async def release_all(self) -> None:
        """Give up every lease and leave the nodes alive, at a clean stop."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "update region_lease set expires_at = clock_timestamp()"
                " where holder = $1 and expires_at > clock_timestamp()",
                self.holder,
            )
            await conn.execute(
                "delete from dispatcher_node where holder = $1", self.holder
            )


async def check_fence(
    conn: Connection, region_id: str, holder: str, fence: int
) -> None:
    """Refuse the caller's transaction unless ``holder`` holds the lease.

    Call inside the transaction that writes for the region; the share lock
    it takes keeps a takeover out until that transaction ends.

    Raises:
        LeaseLostError: The lease has another holder, another fence, or has
            expired.
    """
    if not await fence_holds(conn, region_id, holder, fence):
        raise LeaseLostError(region_id, fence)


async def fence_holds(
    conn: Connection, region_id: str, holder: str, fence: int
) -> bool:
    """Whether ``holder`` holds the region's lease with ``fence``, locked.

    As :func:`check_fence`, answering instead of raising.
    """
    return await conn.fetchval(_CHECK, region_id, holder, fence) is not None
