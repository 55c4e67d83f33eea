"""Live caregiver state in a real Redis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from db.live import Duty, LiveState, Sighting
from dispatch.domain import GeoPoint

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
HOME = GeoPoint(43.8902, 125.3372)


def _east(metres: float) -> GeoPoint:
    return GeoPoint(HOME.lat, HOME.lon + metres / 80_300.0)


async def test_nearby_lists_present_caregivers_nearest_first(
    redis: Redis, key_prefix: str
) -> None:
    """Caregivers are found by distance; far and stale ones are left out."""
    live = LiveState(redis, presence_s=60, prefix=key_prefix)
    await live.report(
        [
            Sighting("cg-far", _east(5000), T0),
            Sighting("cg-near", _east(200), T0),
            Sighting("cg-mid", _east(900), T0),
            Sighting("cg-stale", _east(100), T0 - timedelta(minutes=5)),
        ]
    )
    found = await live.nearby(HOME, 2000, T0)
    assert [cid for cid, _ in found] == ["cg-near", "cg-mid"]
    assert found[0][1] == pytest.approx(200, abs=5)


async def test_sweep_forgets_expired_presence(redis: Redis, key_prefix: str) -> None:
    """A caregiver silent past the presence expiry disappears."""
    live = LiveState(redis, presence_s=60, prefix=key_prefix)
    await live.report([Sighting("cg-1", HOME, T0)])
    point = (await live.locations(["cg-1"], T0))["cg-1"]
    assert (point.lat, point.lon) == pytest.approx((HOME.lat, HOME.lon), abs=1e-5)
    assert await live.sweep(T0 + timedelta(minutes=2)) == 1
    assert await live.locations(["cg-1"], T0) == {}


async def test_duty_is_kept_per_caregiver(redis: Redis, key_prefix: str) -> None:
    """Duty reports are read back per caregiver."""
    live = LiveState(redis, prefix=key_prefix)
    await live.set_duty("cg-1", Duty.BREAK)
    assert await live.duties(["cg-1", "cg-2"]) == {"cg-1": Duty.BREAK}
