"""Pure glue between the dispatcher's state and the solver.

Turns orders and caregivers on shift into solver visits and routes, keeps
travel times between the places involved, and writes the explanation of
each choice. No I/O: everything here runs the same in the engine, in the
re-optimisation worker and in tests.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, overload

from dispatch.domain import GeoPoint
from dispatch.lifecycle import Order, OrderStatus
from solver import Caregiver, Plan, Priority, Problem, SolveOptions, Visit
from solver.insertion import CurrentRoute, Insertion, InsertionResult
from solver.travel import GreatCircleTravel, TravelMode

__all__ = [
    "AT_THE_DOOR",
    "RegionProblem",
    "Shift",
    "TravelTimes",
    "explain",
    "order_visit",
    "route_of",
    "solve_region",
]

_EARTH_RADIUS_M = 6_371_000.0
_DETOUR = 1.3
_SPEED_M_PER_S = 4.2  # e-bike in a city, door to door
_PINNED = frozenset(
    {
        OrderStatus.ACCEPTED,
        OrderStatus.EN_ROUTE,
        OrderStatus.ARRIVED,
        OrderStatus.IN_SERVICE,
    }
)
AT_THE_DOOR = frozenset({OrderStatus.ARRIVED, OrderStatus.IN_SERVICE})


class TravelTimes:
    """Travel seconds between places, by great circle times a detour factor.

    Places are registered once and named by an index, which is what the
    solver's travel matrix is indexed by; ``matrix[a][b]`` computes (and
    remembers) one entry on first use, so the fast path never builds a whole
    matrix.

    Args:
        detour_factor: Road distance over straight-line distance.
        speed_m_per_s: Average door-to-door speed (e-bike in a city: 4.2).
    """

    def __init__(
        self, detour_factor: float = _DETOUR, speed_m_per_s: float = _SPEED_M_PER_S
    ):
        self._factor = detour_factor / speed_m_per_s
        self._index: dict[tuple[float, float], int] = {}
        self._points: list[tuple[float, float]] = []
        self._radians: list[tuple[float, float, float]] = []
        self._cache: dict[tuple[int, int], int] = {}
        self.matrix = _LazyMatrix(self)

    def index(self, point: GeoPoint) -> int:
        """The index of ``point``, registering it on first sight."""
        key = (point.lat, point.lon)
        found = self._index.get(key)
        if found is None:
            found = len(self._points)
            self._index[key] = found
            self._points.append(key)
            lat = math.radians(point.lat)
            self._radians.append((lat, math.radians(point.lon), math.cos(lat)))
        return found

    @property
    def size(self) -> int:
        """How many places are registered."""
        return len(self._points)

    def point(self, index: int) -> tuple[float, float]:
        """The ``(lat, lon)`` registered under ``index``."""
        return self._points[index]

    def seconds(self, a: int, b: int) -> int:
        """Travel time from place ``a`` to place ``b``, in whole seconds."""
        if a == b:
            return 0
        key = (a, b) if a < b else (b, a)
        found = self._cache.get(key)
        if found is None:
            lat1, lon1, cos1 = self._radians[a]
            lat2, lon2, cos2 = self._radians[b]
            h = (
                math.sin((lat2 - lat1) / 2) ** 2
                + cos1 * cos2 * math.sin((lon2 - lon1) / 2) ** 2
            )
            metres = 2 * _EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))
            found = round(metres * self._factor)
            self._cache[key] = found
        return found


class _LazyMatrix(Sequence[Sequence[int]]):
    """Row access into :class:`TravelTimes`; entries computed on first use."""

    def __init__(self, times: TravelTimes) -> None:
        self._times = times

    @overload
    def __getitem__(self, a: int) -> _LazyRow: ...
    @overload
    def __getitem__(self, a: slice) -> Sequence[Sequence[int]]: ...
    def __getitem__(self, a: int | slice) -> _LazyRow | Sequence[Sequence[int]]:
        if isinstance(a, slice):
            raise TypeError("travel rows are read one at a time")
        return _LazyRow(self._times, a)

    def __len__(self) -> int:
        return self._times.size


class _LazyRow(Sequence[int]):
    __slots__ = ("_a", "_times")

    def __init__(self, times: TravelTimes, a: int) -> None:
        self._times = times
        self._a = a

    @overload
    def __getitem__(self, b: int) -> int: ...
    @overload
    def __getitem__(self, b: slice) -> Sequence[int]: ...
    def __getitem__(self, b: int | slice) -> int | Sequence[int]:
        if isinstance(b, slice):
            raise TypeError("travel entries are read one at a time")
        return self._times.seconds(self._a, b)

    def __len__(self) -> int:
        return self._times.size


@dataclass(frozen=True, slots=True)
class Shift:
    """A caregiver's working interval as the planner sees it."""

    caregiver_id: str
    region_id: str
    skills: frozenset[str]
    max_visits: int
    starts_at: datetime
    ends_at: datetime
    start: GeoPoint
    end: GeoPoint


def seconds_since(origin: datetime, moment: datetime) -> int:
    """Whole seconds from ``origin`` to ``moment`` (negative before it)."""
    return math.floor((moment - origin).total_seconds())


def order_visit(
    order: Order,
    travel: TravelTimes,
    origin: datetime,
    *,
    preferred: Iterable[str] = (),
    blocked: Iterable[str] = (),
    max_lateness_min: int = 0,
) -> Visit:
    """The solver's view of an order: where, when, how long, by whom.

    An accepted order is pinned to its caregiver; providers who declined or
    gave it back are blocked like the elder's blocked caregivers.
    """
    pinned = order.provider_id if order.status in _PINNED else None
    return Visit(
        visit_id=order.order_id,
        location=travel.index(order.location),
        earliest_s=seconds_since(origin, order.window.earliest),
        latest_s=seconds_since(origin, order.window.latest),
        duration_s=order.duration_min * 60,
        skills=order.skills,
        priority=Priority(str(order.priority)),
        pinned_caregiver_id=pinned,
        preferred_caregiver_ids=frozenset(preferred),
        blocked_caregiver_ids=frozenset(blocked) | order.excluded_provider_ids,
        max_lateness_s=max_lateness_min * 60,
        elder_id=order.elder_id,
    )


def route_of(
    shift: Shift,
    here: GeoPoint | None,
    now: datetime,
    planned: Sequence[Order],
    visits: Mapping[str, Visit],
    travel: TravelTimes,
    origin: datetime,
) -> CurrentRoute:
    """A caregiver's route from where they are now, through planned orders.

    A visit under way (arrived or in service) is not part of the route: the
    route starts at that elder's home when the visit is due to end.
    """
    start_point = here or shift.start
    start_s = max(seconds_since(origin, now), seconds_since(origin, shift.starts_at))
    ahead: list[Visit] = []
    for order in planned:
        if order.status in AT_THE_DOOR:
            started = order.updated_at or now
            ends = started + timedelta(minutes=order.duration_min)
            start_point = order.location
            start_s = max(start_s, seconds_since(origin, ends))
        else:
            ahead.append(visits[order.order_id])
    end_s = max(start_s, seconds_since(origin, shift.ends_at))
    caregiver = Caregiver(
        caregiver_id=shift.caregiver_id,
        start_location=travel.index(start_point),
        end_location=travel.index(shift.end),
        shift_start_s=start_s,
        shift_end_s=end_s,
        skills=shift.skills,
        max_visits=shift.max_visits,
    )
    return CurrentRoute(caregiver, tuple(ahead))


def explain(
    result: InsertionResult,
    chosen: Insertion,
    origin: datetime,
    *,
    load: int,
    skills: Iterable[str],
    alternatives: int = 3,
) -> dict[str, Any]:
    """Why ``chosen`` won: its costs, and how the runners-up lost.

    The result is stored with the offer and shown to operators.
    """
    others = [i for i in result.insertions if i.caregiver_id != chosen.caregiver_id]
    rejected = Counter(str(r.reason) for r in result.rejections)
    return {
        "caregiver_id": chosen.caregiver_id,
        "travel_added_min": round(chosen.added_travel_s / 60, 1),
        "arrival": (origin + timedelta(seconds=chosen.arrival_s)).isoformat(),
        "start": (origin + timedelta(seconds=chosen.start_s)).isoformat(),
        "lateness_min": round(chosen.lateness_s / 60, 1),
        "skills_matched": sorted(skills),
        "continuity": chosen.preferred,
        "load": load,
        "cost": chosen.cost,
        "alternatives": [
            {
                "caregiver_id": other.caregiver_id,
                "travel_added_min": round(other.added_travel_s / 60, 1),
                "cost": other.cost,
                "why_lost": _why_lost(chosen, other),
            }
            for other in others[:alternatives]
        ],
        "candidates": len(result.insertions),
        "rejected": dict(sorted(rejected.items())),
    }


def _why_lost(chosen: Insertion, other: Insertion) -> str:
    if chosen.preferred and not other.preferred:
        return "not the elder's usual or preferred caregiver"
    if other.lateness_s > chosen.lateness_s:
        later_min = round((other.lateness_s - chosen.lateness_s) / 60)
        return f"would start {later_min} min later"
    if other.added_travel_s > chosen.added_travel_s:
        extra = round((other.added_travel_s - chosen.added_travel_s) / 60, 1)
        return f"{extra} min more travel"
    return "higher total cost"


@dataclass(frozen=True, slots=True)
class RegionProblem:
    """A region's solve as it travels to the worker process.

    ``points`` are ``(lat, lon)`` by location index; the worker turns them
    into the travel matrix with the same model as :class:`TravelTimes`.
    """

    points: tuple[tuple[float, float], ...]
    caregivers: tuple[Caregiver, ...]
    visits: tuple[Visit, ...]


def solve_region(
    region: RegionProblem,
    options: SolveOptions,
    solve_fn: Callable[[Problem, SolveOptions], Plan],
) -> Plan:
    """Build the travel matrix and solve; runs in the worker process."""
    travel = GreatCircleTravel(
        detour_factor=_DETOUR, speed_m_per_s={TravelMode.E_BIKE: _SPEED_M_PER_S}
    )
    problem = Problem(
        travel_s=travel.matrix_s(region.points, TravelMode.E_BIKE),
        caregivers=region.caregivers,
        visits=region.visits,
    )
    return solve_fn(problem, options)
