"""The home-care day generator is deterministic and sized as promised."""

from __future__ import annotations

import pytest

from benchmarks.checker import ClaimedPlan, check_claim
from benchmarks.homecare import (
    SIZES,
    DayResult,
    compare_with_vroom,
    evaluate,
    generate_day,
    routing_instance,
)


def test_same_seed_gives_the_same_day() -> None:
    """Two days generated from one seed are equal, to the last second."""
    assert generate_day("community", 7) == generate_day("community", 7)


def test_other_seed_gives_another_day() -> None:
    """A different seed moves the elders and the windows."""
    assert generate_day("community", 7) != generate_day("community", 8)


@pytest.mark.parametrize(
    ("size", "caregivers", "visits"),
    [("community", 10, 60), ("street", 50, 400)],
)
def test_day_has_the_size_it_names(size: str, caregivers: int, visits: int) -> None:
    """Community and street days have the stated caregivers and visits."""
    day = generate_day(size, 1)

    assert SIZES[size][:2] == (caregivers, visits)
    assert len(day.caregivers) == caregivers
    assert len(day.visits) == visits
    assert len(day.travel_s) == len(day.points)


def test_district_size_is_200_caregivers_and_1600_visits() -> None:
    """The district size is the one the issue asks for."""
    assert SIZES["district"][:2] == (200, 1600)


def test_visits_are_realistic() -> None:
    """Windows 1-4 h, durations 30-120 min, lateness only where a service allows."""
    day = generate_day("street", 3)

    for visit in day.visits:
        assert 3600 <= visit.latest_s - visit.earliest_s <= 4 * 3600
        assert 30 * 60 <= visit.duration_s <= 120 * 60
        assert visit.priority in {"routine", "urgent"}
        assert visit.skills
        may_be_late = visit.service in {"housekeeping", "bathing"}
        if visit.priority == "urgent" or not may_be_late:
            assert visit.max_lateness_s == 0
    assert any(v.priority == "urgent" for v in day.visits)
    assert any(v.preferred_caregiver_id for v in day.visits)


def test_travel_is_zero_in_place_and_symmetric() -> None:
    """Great-circle travel has a zero diagonal and is symmetric."""
    travel = generate_day("community", 2).travel_s

    assert all(travel[i][i] == 0 for i in range(len(travel)))
    assert all(
        travel[i][j] == travel[j][i]
        for i in range(len(travel))
        for j in range(len(travel))
    )


def test_empty_plan_is_feasible_and_serves_nothing() -> None:
    """Home-care visits may be left out: an empty plan breaks no rule."""
    day = generate_day("community", 1)
    claim = ClaimedPlan(routes=[[] for _ in day.caregivers], distance=0)

    result = evaluate(day, "none", claim, wall_s=0.0)

    assert result.feasible
    assert result.served == 0
    assert result.continuity_pct is None


def test_visit_given_to_an_unskilled_caregiver_is_refused() -> None:
    """The checker enforces skills on generated days."""
    day = generate_day("community", 1)
    visit = next(i for i, v in enumerate(day.visits) if "nursing" in v.skills)
    caregiver = next(
        k for k, c in enumerate(day.caregivers) if "nursing" not in c.skills
    )
    routes: list[list[int]] = [[] for _ in day.caregivers]
    routes[caregiver] = [visit]

    report = check_claim(routing_instance(day), ClaimedPlan(routes=routes))

    assert any(v.kind == "skill" for v in report.violations)


def _result(solver: str, served: int, travel_h: float) -> DayResult:
    return DayResult(
        day="d",
        solver=solver,
        visits=10,
        served=served,
        served_urgent=0,
        urgent=0,
        travel_h=travel_h,
        lateness_s=0,
        late_visits=0,
        continuity_pct=None,
        caregivers_used=1,
        wall_s=1.0,
        feasible=True,
        violations=(),
    )


def test_comparison_with_vroom_gives_served_delta_and_travel_ratio() -> None:
    """Serving 10 in 2.2 h against 8 in 2.0 h is +2 visits and +10% travel."""
    [row] = compare_with_vroom([_result("ours", 10, 2.2), _result("vroom", 8, 2.0)])

    assert row["served_delta"] == 2
    assert row["travel_pct"] == 10.0
    assert row["travel_per_visit_pct"] == -12.0
