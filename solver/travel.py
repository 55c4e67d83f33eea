"""Travel times behind one small interface.

The solver only ever sees a :data:`~solver.problem.TravelMatrix` of whole
seconds. Where it comes from is a :class:`TravelTimeSource`: anything that
turns a list of ``(latitude, longitude)`` points and a :class:`TravelMode`
into such a matrix. The default, :class:`GreatCircleTravel`, takes the
great-circle distance, stretches it by a road-detour factor and divides by a
speed per mode. :class:`CachedTravel` wraps any source and remembers recent
matrices. A road-network router can be plugged in later by implementing the
same protocol.

Limitation: the great-circle estimate knows nothing of rivers, one-way
streets or traffic; the detour factor only corrects it on average.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

import numpy as np

from solver.problem import TravelMatrix

EARTH_RADIUS_M = 6_371_000.0
"""Mean radius of the Earth, in metres."""

Point = tuple[float, float]
"""A place as ``(latitude, longitude)`` in degrees."""


class TravelMode(StrEnum):
    """How a caregiver gets around."""

    WALK = "walk"
    E_BIKE = "e_bike"
    CAR = "car"


class TravelTimeSource(Protocol):
    """Anything that gives travel times between points."""

    def matrix_s(self, points: Sequence[Point], mode: TravelMode) -> TravelMatrix:
        """Travel matrix between ``points``, in whole seconds.

        Args:
            points: Places as ``(latitude, longitude)`` in degrees.
            mode: How the caregiver travels.

        Returns:
            ``result[a][b]`` is the time from ``points[a]`` to ``points[b]``.
        """
        ...


def _default_speeds() -> dict[TravelMode, float]:
    # Urban averages including stops: walking 4.5 km/h, e-bike 15 km/h,
    # car 25 km/h in city traffic.
    return {TravelMode.WALK: 1.25, TravelMode.E_BIKE: 4.2, TravelMode.CAR: 6.9}


@dataclass(frozen=True, slots=True)
class GreatCircleTravel:
    """Great-circle distance times a detour factor, at a speed per mode.

    Attributes:
        detour_factor: Road distance over straight-line distance; 1.3 is a
            common average for cities.
        speed_m_per_s: Average speed per mode, in metres per second.
        fixed_s: Seconds added to every trip between distinct points
            (parking, stairs, finding the door).
    """

    detour_factor: float = 1.3
    speed_m_per_s: dict[TravelMode, float] = field(default_factory=_default_speeds)
    fixed_s: int = 0

    def distance_m(self, points: Sequence[Point]) -> np.ndarray:
        """Great-circle distances between ``points``, in metres (haversine)."""
        if not points:
            return np.zeros((0, 0))
        radians = np.radians(np.asarray(points, dtype=np.float64))
        lat, lon = radians[:, 0], radians[:, 1]
        dlat = lat[:, None] - lat[None, :]
        dlon = lon[:, None] - lon[None, :]
        h = (
            np.sin(dlat / 2) ** 2
            + np.cos(lat)[:, None] * np.cos(lat)[None, :] * np.sin(dlon / 2) ** 2
        )
        distance: np.ndarray = np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))
        return 2 * EARTH_RADIUS_M * distance

    def matrix_s(self, points: Sequence[Point], mode: TravelMode) -> TravelMatrix:
        """Travel matrix between ``points``, in whole seconds (rounded)."""
        seconds = self.distance_m(points) * self.detour_factor
        seconds /= self.speed_m_per_s[mode]
        rounded = np.rint(seconds).astype(np.int64)
        if self.fixed_s:
            rounded += self.fixed_s
            np.fill_diagonal(rounded, 0)
        return tuple(tuple(row) for row in rounded.tolist())


class CachedTravel:
    """Remembers the last matrices of another :class:`TravelTimeSource`.

    Matrices are keyed by the exact points and mode; the least recently used
    one is dropped when the cache is full. Not thread-safe: give each worker
    its own.

    Args:
        source: Where matrices come from on a miss.
        max_entries: How many matrices to keep.
    """

    def __init__(self, source: TravelTimeSource, max_entries: int = 32) -> None:
        self._source = source
        self._max_entries = max_entries
        self._cache: OrderedDict[tuple[tuple[Point, ...], TravelMode], TravelMatrix]
        self._cache = OrderedDict()
        self.hits = 0
        self.misses = 0

    def matrix_s(self, points: Sequence[Point], mode: TravelMode) -> TravelMatrix:
        """Travel matrix between ``points``, from the cache when possible."""
        key = (tuple((float(lat), float(lon)) for lat, lon in points), mode)
        matrix = self._cache.get(key)
        if matrix is not None:
            self.hits += 1
            self._cache.move_to_end(key)
            return matrix
        self.misses += 1
        matrix = self._source.matrix_s(points, mode)
        self._cache[key] = matrix
        if len(self._cache) > self._max_entries:
            self._cache.popitem(last=False)
        return matrix
