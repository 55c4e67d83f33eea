"""Writes of the directory: regions, elders, caregivers, shifts, vendors.

The service catalogue is upserted here too.

Bulk loads use ``COPY`` so that a city of tens of thousands of elders loads
in about a second.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from db.pool import Connection
from dispatch.catalogue import Service
from dispatch.directory import (
    CaregiverProfile,
    ElderProfile,
    KeyPopulation,
    Region,
    Shift,
    VendorProfile,
)

__all__ = [
    "load_caregivers",
    "load_elders",
    "load_regions",
    "load_shifts",
    "load_vendors",
    "upsert_services",
]


async def upsert_services(conn: Connection, services: Iterable[Service]) -> None:
    """Insert catalogue entries, updating those that exist by code."""
    await conn.executemany(
        """
        insert into service (service_code, family, name_zh, name_en, skills,
            duration_min, fulfilled_by, price_cents, max_lateness_min)
        values ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        on conflict (service_code) do update set
            family = excluded.family, name_zh = excluded.name_zh,
            name_en = excluded.name_en, skills = excluded.skills,
            duration_min = excluded.duration_min,
            fulfilled_by = excluded.fulfilled_by,
            price_cents = excluded.price_cents,
            max_lateness_min = excluded.max_lateness_min
        """,
        [
            (
                s.service_code,
                str(s.family),
                s.name_zh,
                s.name_en,
                sorted(s.skills),
                s.duration_min,
                str(s.fulfilled_by),
                s.price_cents,
                s.max_lateness_min,
            )
            for s in services
        ],
    )


async def load_regions(conn: Connection, regions: Sequence[Region]) -> None:
    """Bulk-insert regions."""
    await conn.copy_records_to_table(
        "region",
        columns=[
            "region_id",
            "name_zh",
            "name_en",
            "district_code",
            "center_lat",
            "center_lon",
        ],
        records=[
            (
                r.region_id,
                r.name_zh,
                r.name_en,
                r.district_code,
                r.center.lat,
                r.center.lon,
            )
            for r in regions
        ],
    )


async def load_elders(conn: Connection, elders: Sequence[ElderProfile]) -> None:
    """Bulk-insert elders."""
    flags = list(KeyPopulation)
    await conn.copy_records_to_table(
        "elder",
        columns=[
            "elder_id",
            "region_id",
            "name",
            "phone",
            "address",
            "home_lat",
            "home_lon",
            "birth_year",
            *[str(f) for f in flags],
            "care_level",
            "preferred_gender",
            "preferred_language",
            "preferred_caregiver_ids",
            "blocked_caregiver_ids",
            "health_notes",
        ],
        records=[
            (
                e.elder_id,
                e.region_id,
                e.name,
                e.phone,
                e.address,
                e.home.lat,
                e.home.lon,
                e.birth_year,
                *[f in e.categories for f in flags],
                e.care_level,
                e.preferred_gender,
                e.preferred_language,
                list(e.preferred_caregiver_ids),
                list(e.blocked_caregiver_ids),
                e.health_notes,
            )
            for e in elders
        ],
    )


async def load_caregivers(
    conn: Connection, caregivers: Sequence[CaregiverProfile]
) -> None:
    """Bulk-insert caregivers."""
    await conn.copy_records_to_table(
        "caregiver",
        columns=[
            "caregiver_id",
            "region_id",
            "name",
            "phone",
            "gender",
            "languages",
            "skills",
            "home_lat",
            "home_lon",
            "max_visits_per_shift",
            "active",
        ],
        records=[
            (
                c.caregiver_id,
                c.region_id,
                c.name,
                c.phone,
                c.gender,
                list(c.languages),
                sorted(c.skills),
                c.home.lat,
                c.home.lon,
                c.max_visits_per_shift,
                c.active,
            )
            for c in caregivers
        ],
    )


async def load_shifts(conn: Connection, shifts: Sequence[Shift]) -> None:
    """Bulk-insert shifts."""
    await conn.copy_records_to_table(
        "shift",
        columns=[
            "caregiver_id",
            "starts_at",
            "ends_at",
            "start_lat",
            "start_lon",
            "end_lat",
            "end_lon",
        ],
        records=[
            (
                s.caregiver_id,
                s.starts_at,
                s.ends_at,
                s.start.lat,
                s.start.lon,
                s.end.lat,
                s.end.lon,
            )
            for s in shifts
        ],
    )


async def load_vendors(conn: Connection, vendors: Sequence[VendorProfile]) -> None:
    """Bulk-insert vendors."""
    await conn.executemany(
        """
        insert into vendor (vendor_id, name, category, service_codes,
            coverage_region_ids, lat, lon, opening_hours, open_order_capacity,
            merit_score, active)
        values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
        """,
        [
            (
                v.vendor_id,
                v.name,
                v.category,
                list(v.service_codes),
                list(v.coverage_region_ids),
                v.location.lat,
                v.location.lon,
                v.opening_hours,
                v.open_order_capacity,
                v.merit_score,
                v.active,
            )
            for v in vendors
        ],
    )
