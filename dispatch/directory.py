"""Who is served and who serves: regions, elders, caregivers, vendors.

Plain records as the directory store reads and writes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from dispatch.domain import GeoPoint

__all__ = [
    "CaregiverProfile",
    "ElderProfile",
    "KeyPopulation",
    "Region",
    "Shift",
    "VendorProfile",
]


class KeyPopulation(StrEnum):
    """The eight key-population categories of the home-visit programme."""

    LIVING_ALONE = "living_alone"
    EMPTY_NEST = "empty_nest"
    DISABLED = "disabled"
    SEMI_DISABLED = "semi_disabled"
    AGED_80_PLUS = "aged_80_plus"
    LOW_INCOME = "low_income"
    EXTREME_HARDSHIP = "extreme_hardship"
    LEFT_BEHIND = "left_behind"


@dataclass(frozen=True, slots=True)
class Region:
    """A community: the unit of dispatch and of sharding."""

    region_id: str
    name_zh: str
    name_en: str
    district_code: str
    center: GeoPoint


@dataclass(frozen=True, slots=True)
class ElderProfile:
    """An elder living at home, with what dispatch needs to serve them.

    ``name``, ``phone``, ``address`` and ``health_notes`` are personal data:
    shown only to those who serve the elder, never logged.
    """

    elder_id: str
    region_id: str
    name: str
    phone: str
    home: GeoPoint
    address: str = ""
    birth_year: int | None = None
    categories: frozenset[KeyPopulation] = frozenset()
    care_level: int = 0
    preferred_gender: str | None = None
    preferred_language: str | None = None
    preferred_caregiver_ids: tuple[str, ...] = ()
    blocked_caregiver_ids: tuple[str, ...] = ()
    health_notes: str = ""


@dataclass(frozen=True, slots=True)
class CaregiverProfile:
    """A caregiver: skills, home base and how much they take on a shift."""

    caregiver_id: str
    region_id: str
    name: str
    phone: str
    home: GeoPoint
    skills: frozenset[str]
    gender: str | None = None
    languages: tuple[str, ...] = ("zh",)
    max_visits_per_shift: int = 8
    active: bool = True


@dataclass(frozen=True, slots=True)
class Shift:
    """A caregiver's working interval with where it starts and ends."""

    caregiver_id: str
    starts_at: datetime
    ends_at: datetime
    start: GeoPoint
    end: GeoPoint


@dataclass(frozen=True, slots=True)
class VendorProfile:
    """An organisation fulfilling vendor orders in its coverage area.

    ``opening_hours`` maps a weekday (``mon`` .. ``sun``) to local
    ``[["08:00", "20:00"], ...]`` intervals.
    """

    vendor_id: str
    name: str
    category: str
    location: GeoPoint
    service_codes: tuple[str, ...]
    coverage_region_ids: tuple[str, ...]
    opening_hours: dict[str, Any] = field(default_factory=dict)
    open_order_capacity: int = 10
    merit_score: float = 0.5
    active: bool = True
