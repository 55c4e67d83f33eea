"""A small, exact directory shared by the store and API tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from db.directory import (
    load_caregivers,
    load_elders,
    load_regions,
    load_shifts,
    load_vendors,
)
from db.pool import Connection
from dispatch.directory import (
    CaregiverProfile,
    ElderProfile,
    Region,
    Shift,
    VendorProfile,
)
from dispatch.domain import GeoPoint

REGION = Region(
    "220102-01",
    "南关区第1社区",
    "Nanguan community 1",
    "220102",
    GeoPoint(43.8902, 125.3372),
)
ELDERS = tuple(
    ElderProfile(
        elder_id=f"el-{i}",
        region_id=REGION.region_id,
        name=f"测试{i}",
        phone=f"1380000000{i}",
        home=GeoPoint(43.8902 + i * 0.001, 125.3372),
    )
    for i in range(1, 4)
)
CAREGIVERS = tuple(
    CaregiverProfile(
        caregiver_id=f"cg-{i}",
        region_id=REGION.region_id,
        name=f"护理员{i}",
        phone=f"1390000000{i}",
        home=GeoPoint(43.8902, 125.3372 + i * 0.001),
        skills=frozenset({"care", "nursing"}),
    )
    for i in range(1, 4)
)
VENDOR = VendorProfile(
    vendor_id="vd-1",
    name="测试药房",
    category="pharmacy",
    location=GeoPoint(43.8902, 125.3372),
    service_codes=("pharmacy_delivery",),
    coverage_region_ids=(REGION.region_id,),
    opening_hours={
        day: [["00:00", "23:59"]]
        for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    },
)


#: The day of the test shifts: every caregiver works 08:00-18:00 UTC.
SHIFT_DAY = datetime(2026, 12, 3, tzinfo=UTC)
SHIFTS = tuple(
    Shift(
        caregiver_id=c.caregiver_id,
        starts_at=SHIFT_DAY + timedelta(hours=8),
        ends_at=SHIFT_DAY + timedelta(hours=18),
        start=c.home,
        end=c.home,
    )
    for c in CAREGIVERS
)


async def load_small_directory(conn: Connection) -> None:
    """One region, three elders, three caregivers on shift, a pharmacy."""
    if await conn.fetchval("select exists (select 1 from region)"):
        return
    await load_regions(conn, [REGION])
    await load_elders(conn, ELDERS)
    await load_caregivers(conn, CAREGIVERS)
    await load_shifts(conn, SHIFTS)
    await load_vendors(conn, [VENDOR])
