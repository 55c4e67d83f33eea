"""A seeded synthetic city day: who works, and which orders arrive when.

Pure data for the simulator: the same :class:`DaySpec` always gives the
same day, so policies can be compared on exactly the same orders and the
same caregiver decisions.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from dispatch.city import CHINA_TZ, City, CitySpec, build_city
from dispatch.domain import Priority

__all__ = ["DaySpec", "PlannedOrder", "SimulatedDay", "decision", "plan_day"]

# (service code, weight) of caregiver services asked for on an ordinary day
_CAREGIVER_SERVICES = (
    ("meal_help", 5),
    ("companionship", 3),
    ("bp_glucose_check", 5),
    ("medication", 3),
    ("consult_home", 1),
    ("proactive_visit", 2),
)
_VENDOR_SERVICES = (("pharmacy_delivery", 3), ("grocery_delivery", 3))
_URGENT_SERVICES = (("bp_glucose_check", 2), ("medication", 2), ("meal_help", 1))


@dataclass(frozen=True, slots=True)
class DaySpec:
    """How the simulated day is made.

    Attributes:
        caregivers: Caregivers working that day.
        orders: Orders arriving during the day.
        emergency_share: Share of emergencies among orders.
        urgent_share: Share of urgent orders.
        ahead_share: Share booked the evening before for a window today.
        vendor_share: Share fulfilled by vendors (deliveries).
        decline_rate: Chance a caregiver declines a routine offer.
        late_rate: Chance a caregiver runs late to a visit.
        communities: Regions of the city.
        elders: Elders living in the city.
        day: The simulated date (local).
        first_hour: Local hour the first same-day order arrives.
        last_hour: Local hour the last order arrives.
        seed: Seed of everything random.
    """

    caregivers: int = 200
    orders: int = 3000
    emergency_share: float = 0.02
    urgent_share: float = 0.10
    ahead_share: float = 0.40
    vendor_share: float = 0.25
    decline_rate: float = 0.10
    late_rate: float = 0.10
    communities: int = 20
    elders: int = 8000
    day: date = date(2026, 12, 7)
    first_hour: int = 7
    last_hour: int = 18
    seed: int = 11


@dataclass(frozen=True, slots=True)
class PlannedOrder:
    """One order of the day: when it is booked and what it asks for."""

    key: str
    booked_at: datetime
    elder_id: str
    service_code: str
    priority: Priority
    earliest: datetime
    latest: datetime


@dataclass(frozen=True, slots=True)
class SimulatedDay:
    """The city and the orders of one simulated day."""

    spec: DaySpec
    city: City
    orders: tuple[PlannedOrder, ...] = field(default=())

    @property
    def start(self) -> datetime:
        """Local start of the simulation (the first shift's start)."""
        return datetime.combine(self.spec.day, time(6, 55), CHINA_TZ)

    @property
    def end(self) -> datetime:
        """Local end of the simulation (the last shift's end)."""
        return datetime.combine(self.spec.day, time(20, 30), CHINA_TZ)


def plan_day(spec: DaySpec) -> SimulatedDay:
    """Build the city and the day's orders from ``spec``."""
    city = build_city(
        CitySpec(
            communities=spec.communities,
            elders=spec.elders,
            caregivers=spec.caregivers,
            vendors=max(8, spec.communities // 2),
            seed=spec.seed,
        )
    )
    rng = random.Random(spec.seed)
    opening = datetime.combine(spec.day, time(spec.first_hour), CHINA_TZ)
    closing = datetime.combine(spec.day, time(spec.last_hour), CHINA_TZ)
    evening_before = datetime.combine(spec.day, time(7, 0), CHINA_TZ)
    span_s = (closing - opening).total_seconds()
    orders = []
    for n in range(spec.orders):
        elder = rng.choice(city.elders)
        draw = rng.random()
        if draw < spec.emergency_share:
            priority, kind = Priority.EMERGENCY, "emergency"
        elif draw < spec.emergency_share + spec.urgent_share:
            priority, kind = Priority.URGENT, "urgent"
        else:
            priority = Priority.ROUTINE
            kind = "ahead" if rng.random() < spec.ahead_share else "same_day"
        booked_at = opening + timedelta(seconds=rng.uniform(0, span_s))
        if kind == "emergency":
            service = "emergency_response"
            earliest, width_min = booked_at, 60
        elif kind == "urgent":
            service = _weighted(rng, _URGENT_SERVICES)
            earliest, width_min = booked_at, 120
        else:
            vendor = rng.random() < spec.vendor_share
            service = _weighted(
                rng, _VENDOR_SERVICES if vendor else _CAREGIVER_SERVICES
            )
            if kind == "ahead":
                booked_at = evening_before + timedelta(seconds=rng.uniform(0, 240))
                start_h = rng.uniform(8, 18)
                earliest = datetime.combine(spec.day, time(0), CHINA_TZ) + timedelta(
                    hours=start_h
                )
            else:
                earliest = booked_at + timedelta(minutes=rng.uniform(30, 150))
            width_min = rng.choice((60, 120, 120, 180, 240))
        orders.append(
            PlannedOrder(
                key=f"sim-{spec.seed}-{n}",
                booked_at=booked_at,
                elder_id=elder.elder_id,
                service_code=service,
                priority=priority,
                earliest=_minute(earliest),
                latest=_minute(earliest + timedelta(minutes=width_min)),
            )
        )
    orders.sort(key=lambda o: o.booked_at)
    return SimulatedDay(spec, city, tuple(orders))


def decision(seed: int, order_key: str, provider_id: str) -> float:
    """A number in [0, 1) fixed by the order and the provider.

    The simulated caregivers draw their choices from it, so every policy
    meets the same caregiver mood for the same offer.
    """
    digest = hashlib.blake2b(
        f"{seed}|{order_key}|{provider_id}".encode(), digest_size=8
    )
    return int.from_bytes(digest.digest(), "big") / 2**64


def _weighted(rng: random.Random, table: tuple[tuple[str, int], ...]) -> str:
    return rng.choices([name for name, _ in table], [w for _, w in table])[0]


def _minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)
