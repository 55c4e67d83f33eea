"""A seeded synthetic city modelled on Changchun, for demos and simulations.

Communities are placed around the district seats (denser in the five urban
districts), elders and caregivers around their community's centre, vendors
near the communities they cover. The same seed gives the same city.
"""

from __future__ import annotations

import csv
import math
import random
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta, timezone
from importlib import resources

from dispatch.directory import (
    CaregiverProfile,
    ElderProfile,
    KeyPopulation,
    Region,
    Shift,
    VendorProfile,
)
from dispatch.domain import GeoPoint

__all__ = ["CHINA_TZ", "City", "CitySpec", "District", "build_city", "districts"]

#: Local time of the city (UTC+8, no daylight saving).
CHINA_TZ = timezone(timedelta(hours=8), "CST")

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"  # noqa: E501
_GIVEN = "秀英桂兰玉珍凤芳淑华丽敏静红梅霞建国建华志强明德文国庆永福长春海军平安国栋振华玉兰淑珍秀珍金凤"  # noqa: E501
_CAREGIVER_SKILLS = (
    "care",
    "bathing",
    "housework",
    "nursing",
    "medication",
    "wound_care",
    "first_aid",
)
_VENDOR_KINDS = (
    ("pharmacy", ("pharmacy_delivery",)),
    ("supermarket", ("grocery_delivery",)),
    ("housekeeping", ("housekeeping",)),
    ("home_adaptation", ("adaptation_assessment", "adaptation_renovation")),
)
_CATEGORY_RATES = {
    KeyPopulation.LIVING_ALONE: 0.18,
    KeyPopulation.EMPTY_NEST: 0.35,
    KeyPopulation.DISABLED: 0.05,
    KeyPopulation.SEMI_DISABLED: 0.10,
    KeyPopulation.AGED_80_PLUS: 0.22,
    KeyPopulation.LOW_INCOME: 0.08,
    KeyPopulation.EXTREME_HARDSHIP: 0.02,
    KeyPopulation.LEFT_BEHIND: 0.04,
}
_SHIFT_HOURS = ((7, 15), (8, 16), (9, 17), (12, 20))


@dataclass(frozen=True, slots=True)
class District:
    """A district of the city with the coordinates of its government seat."""

    code: str
    name_zh: str
    name_en: str
    kind: str
    seat: GeoPoint

    @property
    def urban(self) -> bool:
        """Whether it is one of the dense urban districts."""
        return self.kind == "urban district"


@dataclass(frozen=True, slots=True)
class CitySpec:
    """How big a synthetic city to build.

    Attributes:
        communities: Number of regions.
        elders: Number of elders.
        caregivers: Number of caregivers.
        vendors: Number of vendors.
        seed: Seed of the random generator.
    """

    communities: int = 60
    elders: int = 20_000
    caregivers: int = 600
    vendors: int = 40
    seed: int = 7


@dataclass(frozen=True, slots=True)
class City:
    """A whole synthetic city, ready to load into the directory."""

    regions: tuple[Region, ...]
    elders: tuple[ElderProfile, ...]
    caregivers: tuple[CaregiverProfile, ...]
    vendors: tuple[VendorProfile, ...]

    def shifts(self, day: date, seed: int = 0) -> list[Shift]:
        """One shift per active caregiver on ``day`` (local time), seeded."""
        rng = random.Random(f"{seed}-{day.isoformat()}")
        shifts = []
        for caregiver in self.caregivers:
            start_h, end_h = rng.choice(_SHIFT_HOURS)
            shifts.append(
                Shift(
                    caregiver_id=caregiver.caregiver_id,
                    starts_at=datetime.combine(day, time(start_h), CHINA_TZ),
                    ends_at=datetime.combine(day, time(end_h), CHINA_TZ),
                    start=caregiver.home,
                    end=caregiver.home,
                )
            )
        return shifts


def districts() -> list[District]:
    """The districts of Changchun with their seats, as shipped with the code."""
    text = resources.files("dispatch").joinpath("data/changchun_districts.csv")
    with text.open(encoding="utf-8") as handle:
        return [
            District(
                code=row["adcode"],
                name_zh=row["name_zh"],
                name_en=row["name_en"],
                kind=row["kind"],
                seat=GeoPoint(float(row["seat_lat"]), float(row["seat_lon"])),
            )
            for row in csv.DictReader(handle)
        ]


def _near(rng: random.Random, centre: GeoPoint, sigma_m: float) -> GeoPoint:
    north = rng.gauss(0.0, sigma_m)
    east = rng.gauss(0.0, sigma_m)
    lat = centre.lat + north / 111_320.0
    lon = centre.lon + east / (111_320.0 * math.cos(math.radians(centre.lat)))
    return GeoPoint(round(lat, 6), round(lon, 6))


def _name(rng: random.Random) -> str:
    given = "".join(rng.choice(_GIVEN) for _ in range(rng.choice((1, 2))))
    return rng.choice(_SURNAMES) + given


def _phone(rng: random.Random) -> str:
    return (
        rng.choice(("138", "139", "150", "186", "131")) + f"{rng.randrange(10**8):08d}"
    )


def build_city(spec: CitySpec) -> City:
    """Build the city described by ``spec``; same spec, same city."""
    rng = random.Random(spec.seed)
    regions = _regions(rng, spec.communities)
    weights = [3.0 if r.district_code in _urban_codes() else 1.0 for r in regions]

    caregivers = []
    for i in range(spec.caregivers):
        region = regions[i % len(regions)]
        skills = {"care"} | {s for s in _CAREGIVER_SKILLS if rng.random() < 0.35}
        caregivers.append(
            CaregiverProfile(
                caregiver_id=f"cg-{i + 1:05d}",
                region_id=region.region_id,
                name=_name(rng),
                phone=_phone(rng),
                home=_near(rng, region.center, 800.0),
                skills=frozenset(skills),
                gender=rng.choice(("female", "female", "female", "male")),
                max_visits_per_shift=rng.choice((6, 8, 8, 10)),
            )
        )
    by_region: dict[str, list[str]] = {}
    for c in caregivers:
        by_region.setdefault(c.region_id, []).append(c.caregiver_id)

    elders = []
    for i in range(spec.elders):
        region = rng.choices(regions, weights)[0]
        categories = frozenset(
            k for k, p in _CATEGORY_RATES.items() if rng.random() < p
        )
        local = by_region.get(region.region_id, [])
        preferred = (rng.choice(local),) if local and rng.random() < 0.4 else ()
        elders.append(
            ElderProfile(
                elder_id=f"el-{i + 1:06d}",
                region_id=region.region_id,
                name=_name(rng),
                phone=_phone(rng),
                home=_near(rng, region.center, 600.0),
                address=_address(rng, region),
                birth_year=rng.randrange(1925, 1966),
                categories=categories,
                care_level=rng.choice((0, 0, 1, 1, 2, 3, 4)),
                preferred_caregiver_ids=preferred,
            )
        )

    vendors = []
    for i in range(spec.vendors):
        category, codes = _VENDOR_KINDS[i % len(_VENDOR_KINDS)]
        home = rng.choice(regions)
        covered = sorted(regions, key=lambda r: _apart(r, home))
        vendors.append(
            VendorProfile(
                vendor_id=f"vd-{i + 1:03d}",
                name=f"{home.name_zh}{category}",
                category=category,
                location=_near(rng, home.center, 300.0),
                service_codes=codes,
                coverage_region_ids=tuple(
                    r.region_id for r in covered[: max(3, len(regions) // 4)]
                ),
                opening_hours={
                    day: [["08:00", "21:00"]]
                    for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
                },
                open_order_capacity=rng.choice((5, 10, 20)),
                merit_score=round(rng.uniform(0.5, 0.95), 2),
            )
        )
    vendors = _cover_every_region(vendors, regions)
    return City(tuple(regions), tuple(elders), tuple(caregivers), tuple(vendors))


def _apart(a: Region, b: Region) -> float:
    return (a.center.lat - b.center.lat) ** 2 + (a.center.lon - b.center.lon) ** 2


def _cover_every_region(
    vendors: list[VendorProfile], regions: list[Region]
) -> list[VendorProfile]:
    """Stretch coverage so each region has a vendor of every category."""
    by_id = {v.vendor_id: v for v in vendors}
    for category in {v.category for v in vendors}:
        offering = [v.vendor_id for v in vendors if v.category == category]
        for region in regions:
            if any(region.region_id in by_id[v].coverage_region_ids for v in offering):
                continue
            nearest = min(
                offering,
                key=lambda v: (
                    (by_id[v].location.lat - region.center.lat) ** 2
                    + (by_id[v].location.lon - region.center.lon) ** 2
                ),
            )
            vendor = by_id[nearest]
            by_id[nearest] = replace(
                vendor,
                coverage_region_ids=(*vendor.coverage_region_ids, region.region_id),
            )
    return [by_id[v.vendor_id] for v in vendors]


def _address(rng: random.Random, region: Region) -> str:
    return f"{region.name_zh}{rng.randrange(1, 60)}栋{rng.randrange(1, 7)}单元"


def _urban_codes() -> frozenset[str]:
    return frozenset(d.code for d in districts() if d.urban)


def _regions(rng: random.Random, count: int) -> list[Region]:
    all_districts = districts()
    urban = [d for d in all_districts if d.urban]
    others = [d for d in all_districts if not d.urban]
    regions: list[Region] = []
    for i in range(count):
        # four in five communities lie in the dense urban core
        district = urban[i % len(urban)] if i % 5 else others[(i // 5) % len(others)]
        number = 1 + sum(r.district_code == district.code for r in regions)
        regions.append(
            Region(
                region_id=f"{district.code}-{number:02d}",
                name_zh=f"{district.name_zh}第{number}社区",
                name_en=f"{district.name_en} community {number}",
                district_code=district.code,
                center=_near(rng, district.seat, 2500.0 if district.urban else 1500.0),
            )
        )
    return regions
