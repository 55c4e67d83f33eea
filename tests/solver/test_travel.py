"""Travel times: great-circle estimate per mode and the matrix cache."""

from __future__ import annotations

from collections.abc import Sequence

from solver import TravelMatrix
from solver.travel import CachedTravel, GreatCircleTravel, Point, TravelMode

# One degree of latitude is about 111.2 km everywhere.
SOUTH, NORTH = (31.0, 121.0), (31.01, 121.0)


def test_one_hundredth_degree_north_on_foot_takes_the_expected_time() -> None:
    """1.112 km times 1.3 detour at 1.25 m/s is about 1,157 s."""
    matrix = GreatCircleTravel().matrix_s([SOUTH, NORTH], TravelMode.WALK)

    assert matrix[0][0] == 0
    assert abs(matrix[0][1] - 1157) <= 2
    assert matrix[0][1] == matrix[1][0]


def test_car_is_faster_than_e_bike_which_is_faster_than_walking() -> None:
    """The default speeds order the modes as expected."""
    travel = GreatCircleTravel()
    times = [travel.matrix_s([SOUTH, NORTH], mode)[0][1] for mode in TravelMode]

    walk, e_bike, car = (times[list(TravelMode).index(m)] for m in TravelMode)
    assert car < e_bike < walk


def test_fixed_seconds_are_added_between_distinct_points_only() -> None:
    """The fixed time per trip never lands on the diagonal."""
    matrix = GreatCircleTravel(fixed_s=120).matrix_s([SOUTH, NORTH], TravelMode.CAR)

    assert matrix[0][0] == 0
    assert matrix[0][1] > 120


class _CountingSource:
    def __init__(self) -> None:
        self.calls = 0

    def matrix_s(self, points: Sequence[Point], mode: TravelMode) -> TravelMatrix:
        self.calls += 1
        return tuple(tuple(0 for _ in points) for _ in points)


def test_cache_asks_the_source_once_per_points_and_mode() -> None:
    """Equal requests hit the cache; a new mode or eviction asks again."""
    source = _CountingSource()
    cached = CachedTravel(source, max_entries=1)

    cached.matrix_s([SOUTH, NORTH], TravelMode.CAR)
    cached.matrix_s([SOUTH, NORTH], TravelMode.CAR)
    cached.matrix_s([SOUTH, NORTH], TravelMode.WALK)
    cached.matrix_s([SOUTH, NORTH], TravelMode.CAR)

    assert source.calls == 3
    assert (cached.hits, cached.misses) == (1, 3)
