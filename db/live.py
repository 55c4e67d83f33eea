"""Live state of providers in Redis: locations, presence and duty.

Everything here can be rebuilt from the phones within one reporting
interval, so losing Redis loses no order. Keys::

    hc:loc              GEO set of caregiver locations
    hc:seen             sorted set: caregiver id -> last report (epoch s)
    hc:duty             hash: caregiver id -> on_shift | break | off_shift

A location counts only while its last report is younger than the presence
expiry; stale members are swept by :meth:`LiveState.sweep`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from redis.asyncio import Redis

from dispatch.domain import GeoPoint

__all__ = ["Duty", "LiveState", "Sighting"]

_LOC = "hc:loc"
_SEEN = "hc:seen"
_DUTY = "hc:duty"


class Duty(StrEnum):
    """What a caregiver says about their availability."""

    ON_SHIFT = "on_shift"
    BREAK = "break"
    OFF_SHIFT = "off_shift"


@dataclass(frozen=True, slots=True)
class Sighting:
    """One location report of a caregiver."""

    caregiver_id: str
    point: GeoPoint
    at: datetime


class LiveState:
    """Caregiver locations, presence and duty in Redis.

    Args:
        redis: The client; its own timeouts bound every call.
        presence_s: How long a location stays valid after its report.
        prefix: Key prefix, for running several cities (or test sessions)
            on one Redis.
    """

    def __init__(self, redis: Redis, *, presence_s: float = 120.0, prefix: str = ""):
        self._redis = redis
        self._presence_s = presence_s
        self._loc = prefix + _LOC
        self._seen = prefix + _SEEN
        self._duty = prefix + _DUTY

    async def report(self, sightings: Sequence[Sighting]) -> None:
        """Store many location reports in one round trip."""
        if not sightings:
            return
        geo: list[float | str] = []
        seen: dict[str, float] = {}
        for s in sightings:
            geo.extend((s.point.lon, s.point.lat, s.caregiver_id))
            seen[s.caregiver_id] = s.at.timestamp()
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.geoadd(self._loc, geo)
            pipe.zadd(self._seen, seen)
            await pipe.execute()

    async def set_duty(self, caregiver_id: str, duty: Duty) -> None:
        """Record a caregiver's duty status."""
        await self._redis.hset(self._duty, caregiver_id, str(duty))

    async def duties(self, caregiver_ids: Sequence[str]) -> dict[str, Duty]:
        """Duty of each caregiver that reported one."""
        if not caregiver_ids:
            return {}
        values = await self._redis.hmget(self._duty, list(caregiver_ids))
        return {
            cid: Duty(v.decode() if isinstance(v, bytes) else v)
            for cid, v in zip(caregiver_ids, values, strict=True)
            if v is not None
        }

    async def locations(
        self, caregiver_ids: Sequence[str], now: datetime
    ) -> dict[str, GeoPoint]:
        """Last known location of each caregiver still present at ``now``."""
        if not caregiver_ids:
            return {}
        ids = list(caregiver_ids)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zmscore(self._seen, ids)
            pipe.geopos(self._loc, *ids)
            scores, points = await pipe.execute()
        horizon = now.timestamp() - self._presence_s
        found: dict[str, GeoPoint] = {}
        for cid, score, point in zip(ids, scores, points, strict=True):
            if score is not None and score >= horizon and point is not None:
                found[cid] = GeoPoint(float(point[1]), float(point[0]))
        return found

    async def nearby(
        self, point: GeoPoint, radius_m: float, now: datetime, *, limit: int = 50
    ) -> list[tuple[str, float]]:
        """Present caregivers within ``radius_m`` of ``point``, nearest first.

        Returns ``(caregiver_id, distance_m)`` pairs.
        """
        found = await self._redis.geosearch(
            self._loc,
            longitude=point.lon,
            latitude=point.lat,
            radius=radius_m,
            unit="m",
            sort="ASC",
            count=limit * 2,
            withdist=True,
        )
        # redis-py types geosearch loosely; withdist gives [member, dist] pairs
        rows: list[list[bytes]] = list(found)  # type: ignore[arg-type]
        pairs = [(_text(member), float(dist)) for member, dist in rows]
        present = await self.locations([cid for cid, _ in pairs], now)
        return [(cid, dist) for cid, dist in pairs if cid in present][:limit]

    async def sweep(self, now: datetime) -> int:
        """Forget caregivers whose presence expired; returns how many."""
        horizon = now.timestamp() - self._presence_s
        stale = await self._redis.zrangebyscore(self._seen, "-inf", horizon)
        if not stale:
            return 0
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zrem(self._loc, *stale)
            pipe.zrem(self._seen, *stale)
            await pipe.execute()
        return len(stale)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
