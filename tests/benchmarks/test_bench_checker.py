"""The independent checker accepts a feasible plan and refuses each violation."""

from __future__ import annotations

from dataclasses import replace

import pytest

from benchmarks.checker import (
    ClaimedPlan,
    RoutingInstance,
    ViolationKind,
    check_claim,
    check_plan,
)

# Depot 0 and three visits on a line, 10 apart; travel = |a - b| * 10.
_TRAVEL = tuple(tuple(abs(a - b) * 10 for b in range(4)) for a in range(4))


def _instance(
    *,
    latest: tuple[int, ...] = (100, 100, 100),
    capacity: int = 10,
    shift_end: int = 200,
) -> RoutingInstance:
    """Two caregivers at the depot; visits 0, 1, 2 at locations 1, 2, 3."""
    return RoutingInstance(
        name="line",
        travel=_TRAVEL,
        visit_location=(1, 2, 3),
        visit_earliest=(0, 0, 0),
        visit_latest=latest,
        visit_duration=(5, 5, 5),
        shift_start=(0, 0),
        shift_end=(shift_end, shift_end),
        start_location=(0, 0),
        end_location=(0, 0),
        visit_demand=(4, 4, 4),
        capacity=capacity,
    )


def _kinds(instance: RoutingInstance, claim: ClaimedPlan) -> set[ViolationKind]:
    return {v.kind for v in check_claim(instance, claim).violations}


def test_feasible_plan_is_accepted_with_recomputed_figures() -> None:
    """A hand-made feasible plan passes, with distance and starts recomputed."""
    claim = ClaimedPlan(routes=[[0, 1], [2]], distance=100, starts=[[10, 25], [30]])

    report = check_claim(_instance(), claim)

    assert report.feasible, report.violations
    assert report.distance == 100
    assert report.served == 3
    assert report.routes_used == 2
    assert report.timings[0].starts == (10, 25)
    assert report.timings[0].end == 50


def test_visit_started_after_its_window_is_refused() -> None:
    """Serving visit 2 last starts it at 40, after its latest start of 35."""
    claim = ClaimedPlan(routes=[[0, 1, 2], []])

    report = check_claim(_instance(latest=(100, 100, 35), capacity=12), claim)

    assert [v.kind for v in report.violations] == [ViolationKind.WINDOW]
    assert report.violations[0].visit == 2
    assert report.lateness == 5


def test_return_after_shift_end_is_refused() -> None:
    """A route back at the depot after the shift end breaks the shift."""
    claim = ClaimedPlan(routes=[[0, 1, 2], []])

    instance = _instance(shift_end=70, capacity=12)

    assert _kinds(instance, claim) == {ViolationKind.SHIFT}


def test_route_over_capacity_is_refused() -> None:
    """Three visits of demand 4 exceed a capacity of 10."""
    claim = ClaimedPlan(routes=[[0, 1, 2], []])

    assert _kinds(_instance(capacity=10), claim) == {ViolationKind.CAPACITY}


def test_customer_on_no_route_is_reported_missing() -> None:
    """Every visit of a Solomon instance must be served."""
    claim = ClaimedPlan(routes=[[0], [2]])

    report = check_claim(_instance(), claim)

    assert [(v.kind, v.visit) for v in report.violations] == [
        (ViolationKind.MISSING, 1)
    ]


def test_customer_on_two_routes_is_reported_duplicate() -> None:
    """A visit served twice is refused even when each route is feasible."""
    claim = ClaimedPlan(routes=[[0, 1], [1, 2]])

    assert _kinds(_instance(), claim) == {ViolationKind.DUPLICATE}


def test_claimed_distance_that_differs_is_refused() -> None:
    """A solver claiming 99 for routes that measure 100 is caught."""
    claim = ClaimedPlan(routes=[[0, 1], [2]], distance=99)

    assert _kinds(_instance(), claim) == {ViolationKind.DISTANCE}


def test_claimed_start_before_arrival_is_refused() -> None:
    """A start time earlier than the caregiver can arrive is refused."""
    claim = ClaimedPlan(routes=[[0, 1], [2]], starts=[[10, 20], [30]])

    assert _kinds(_instance(), claim) == {ViolationKind.SCHEDULE}


def test_unknown_visit_is_refused() -> None:
    """A route naming a visit the instance lacks is refused."""
    claim = ClaimedPlan(routes=[[0, 1, 7], [2]])

    assert ViolationKind.UNKNOWN in _kinds(_instance(), claim)


@pytest.mark.parametrize(
    ("held", "expected"),
    [
        (frozenset({"nursing", "medication"}), set()),
        (frozenset({"nursing"}), {ViolationKind.SKILL}),
    ],
)
def test_skills_hold_only_with_every_needed_skill(
    held: frozenset[str], expected: set[ViolationKind]
) -> None:
    """A caregiver must hold all the skills a visit needs."""
    instance = RoutingInstance(
        name="skills",
        travel=_TRAVEL,
        visit_location=(1,),
        visit_earliest=(0,),
        visit_latest=(100,),
        visit_duration=(5,),
        shift_start=(0,),
        shift_end=(200,),
        start_location=(0,),
        end_location=(0,),
        visit_skills=(frozenset({"nursing", "medication"}),),
        caregiver_skills=(held,),
        all_required=False,
    )

    assert _kinds(instance, ClaimedPlan(routes=[[0]])) == expected


def test_lateness_within_allowance_is_counted_not_refused() -> None:
    """A visit 5 late with a 10 allowance is feasible and reports 5 of lateness."""
    instance = replace(
        _instance(latest=(100, 100, 35), capacity=12), visit_max_lateness=(0, 0, 10)
    )

    report = check_claim(instance, ClaimedPlan(routes=[[0, 1, 2], []]))

    assert report.feasible, report.violations
    assert (report.lateness, report.late_visits) == (5, 1)


def test_lateness_beyond_allowance_is_refused() -> None:
    """A visit 5 late with a 4 allowance breaks its window."""
    instance = replace(
        _instance(latest=(100, 100, 35), capacity=12), visit_max_lateness=(0, 0, 4)
    )

    report = check_claim(instance, ClaimedPlan(routes=[[0, 1, 2], []]))

    assert [v.kind for v in report.violations] == [ViolationKind.WINDOW]


def test_caregiver_driving_two_routes_is_refused() -> None:
    """One caregiver cannot drive two routes in one shift."""
    report = check_plan(_instance(), [(0, [0, 1]), (0, [2])])

    assert [v.kind for v in report.violations] == [ViolationKind.FLEET]


def test_more_routes_than_caregivers_is_refused() -> None:
    """A third route for a fleet of two is refused; its visit counts as missing."""
    claim = ClaimedPlan(routes=[[0], [1], [2]])

    assert _kinds(_instance(), claim) == {ViolationKind.UNKNOWN, ViolationKind.MISSING}
