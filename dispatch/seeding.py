"""Loading a synthetic city into an empty directory."""

from __future__ import annotations

import logging
from datetime import date

from db.directory import (
    load_caregivers,
    load_elders,
    load_regions,
    load_shifts,
    load_vendors,
)
from db.pool import Connection
from dispatch.city import CHINA_TZ, City, CitySpec, build_city

__all__ = ["seed_city"]

logger = logging.getLogger(__name__)


async def seed_city(conn: Connection, spec: CitySpec, day: date) -> City | None:
    """Load the city of ``spec`` and its shifts for ``day`` if none is loaded.

    Returns the city when it was loaded now, ``None`` when the directory
    already had regions (a restart keeps what is there). Shifts for ``day``
    are added either way when the day has none.
    """
    city = build_city(spec)
    loaded = None
    async with conn.transaction():
        if not await conn.fetchval("select exists (select 1 from region)"):
            await load_regions(conn, city.regions)
            await load_caregivers(conn, city.caregivers)
            await load_elders(conn, city.elders)
            await load_vendors(conn, city.vendors)
            loaded = city
            logger.info(
                "city loaded",
                extra={
                    "regions": len(city.regions),
                    "elders": len(city.elders),
                    "caregivers": len(city.caregivers),
                    "vendors": len(city.vendors),
                },
            )
        has_shifts = await conn.fetchval(
            # an interval argument keeps the ISO sign (east of UTC is positive)
            "select exists (select 1 from shift"
            " where (starts_at at time zone $1::interval)::date = $2)",
            CHINA_TZ.utcoffset(None),
            day,
        )
        if not has_shifts:
            known = {
                r["caregiver_id"]
                for r in await conn.fetch("select caregiver_id from caregiver")
            }
            shifts = [s for s in city.shifts(day, spec.seed) if s.caregiver_id in known]
            await load_shifts(conn, shifts)
            logger.info(
                "shifts loaded", extra={"day": day.isoformat(), "shifts": len(shifts)}
            )
    return loaded
