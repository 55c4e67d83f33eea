"""Tiny instances with exact expected plans."""

from __future__ import annotations

from dataclasses import replace

import pytest

from solver import (
    Caregiver,
    Priority,
    Problem,
    SolveOptions,
    SolveStatus,
    UnassignedReason,
    Visit,
    Weights,
    solve,
    travel_matrix,
)

HOUR_S = 3600

# Locations on a line, 600 s apart: 0 is the office, 1..4 are elders' homes.
LINE = travel_matrix([[600 * abs(a - b) for b in range(5)] for a in range(5)])

OPTIONS = SolveOptions(time_limit_s=2.0, seed=3, solution_limit=5)


def _caregiver(caregiver_id: str, **changes: object) -> Caregiver:
    fields: dict[str, object] = {
        "caregiver_id": caregiver_id,
        "start_location": 0,
        "end_location": 0,
        "shift_start_s": 8 * HOUR_S,
        "shift_end_s": 16 * HOUR_S,
        "skills": frozenset({"bath"}),
    }
    fields.update(changes)
    return Caregiver(**fields)  # type: ignore[arg-type]


def _visit(visit_id: str, location: int, **changes: object) -> Visit:
    fields: dict[str, object] = {
        "visit_id": visit_id,
        "location": location,
        "earliest_s": 9 * HOUR_S,
        "latest_s": 12 * HOUR_S,
        "duration_s": 1800,
    }
    fields.update(changes)
    return Visit(**fields)  # type: ignore[arg-type]


def test_visit_no_caregiver_is_skilled_for_is_left_out_with_that_reason() -> None:
    """A visit needing a skill nobody holds is unassigned as no_skilled_caregiver."""
    problem = Problem(
        LINE,
        (_caregiver("ann"),),
        (_visit("v1", 1), _visit("v2", 2, skills=frozenset({"wound"}))),
    )

    plan = solve(problem, OPTIONS)

    assert plan.planned_visit_ids == {"v1"}
    assert [(u.visit_id, u.reason) for u in plan.unassigned] == [
        ("v2", UnassignedReason.NO_SKILLED_CAREGIVER)
    ]


def test_visit_whose_window_no_shift_reaches_is_reported_as_such() -> None:
    """A window closing before any caregiver can arrive gives no_shift_covers_window."""
    early = _visit("v1", 4, earliest_s=7 * HOUR_S, latest_s=8 * HOUR_S)
    problem = Problem(LINE, (_caregiver("ann"),), (early,))

    plan = solve(problem, OPTIONS)

    assert plan.unassigned[0].reason == UnassignedReason.NO_SHIFT_COVERS_WINDOW
    assert plan.stats.status == SolveStatus.EMPTY


def test_visits_on_a_line_are_served_in_order_with_exact_times() -> None:
    """One caregiver serves the line outward and back with the earliest schedule."""
    problem = Problem(
        LINE,
        (_caregiver("ann"),),
        (
            _visit("far", 2, earliest_s=10 * HOUR_S),
            _visit("near", 1, latest_s=9 * HOUR_S + 1800),
        ),
    )

    plan = solve(problem, OPTIONS)

    route = plan.routes[0]
    assert route.visit_ids == ("near", "far")
    assert [(p.arrival_s, p.start_s, p.end_s) for p in route.visits] == [
        (9 * HOUR_S, 9 * HOUR_S, 9 * HOUR_S + 1800),
        (9 * HOUR_S + 2400, 10 * HOUR_S, 10 * HOUR_S + 1800),
    ]
    assert route.departure_s == 9 * HOUR_S - 600
    assert route.travel_s == 2400
    assert plan.stats.terms.travel == 2400
    assert plan.stats.status == SolveStatus.FEASIBLE


def test_pinned_visit_stays_with_its_caregiver_even_when_another_is_closer() -> None:
    """A visit pinned to bob is served by bob, not by ann who sits next to it."""
    problem = Problem(
        LINE,
        (_caregiver("ann", start_location=3, end_location=3), _caregiver("bob")),
        (_visit("v1", 3, pinned_caregiver_id="bob"),),
    )

    plan = solve(problem, OPTIONS)

    assert plan.route_of("bob") is not None
    assert plan.route_of("bob").visit_ids == ("v1",)  # type: ignore[union-attr]
    assert plan.route_of("ann").visit_ids == ()  # type: ignore[union-attr]


def test_emergency_is_served_when_the_day_has_room_for_one_visit_only() -> None:
    """With room for one visit, the emergency displaces the routine visit."""
    problem = Problem(
        LINE,
        (_caregiver("ann", max_visits=1),),
        (
            _visit("routine", 1),
            _visit("emergency", 4, priority=Priority.EMERGENCY),
        ),
    )

    plan = solve(problem, OPTIONS)

    assert plan.planned_visit_ids == {"emergency"}
    assert [(u.visit_id, u.reason) for u in plan.unassigned] == [
        ("routine", UnassignedReason.CAPACITY)
    ]


def test_blocked_caregiver_is_never_used_even_when_cheapest() -> None:
    """A caregiver the elder blocked never serves the elder."""
    problem = Problem(
        LINE,
        (_caregiver("ann", start_location=2, end_location=2), _caregiver("bob")),
        (_visit("v1", 2, blocked_caregiver_ids=frozenset({"ann"})),),
    )

    plan = solve(problem, OPTIONS)

    assert plan.route_of("bob").visit_ids == ("v1",)  # type: ignore[union-attr]


def test_only_blocked_caregivers_leave_the_visit_out_as_not_allowed() -> None:
    """When every skilled caregiver is blocked the reason is no_allowed_caregiver."""
    problem = Problem(
        LINE,
        (_caregiver("ann"),),
        (_visit("v1", 2, blocked_caregiver_ids=frozenset({"ann"})),),
    )

    plan = solve(problem, OPTIONS)

    assert plan.unassigned[0].reason == UnassignedReason.NO_ALLOWED_CAREGIVER


def test_preferred_caregiver_is_chosen_when_both_cost_the_same() -> None:
    """Of two equally placed caregivers, the elder's preferred one serves."""
    problem = Problem(
        LINE,
        (_caregiver("ann"), _caregiver("bob")),
        (_visit("v1", 2, preferred_caregiver_ids=frozenset({"bob"})),),
    )

    plan = solve(problem, OPTIONS)

    assert plan.route_of("bob").visit_ids == ("v1",)  # type: ignore[union-attr]
    assert plan.stats.terms.continuity == 0


def test_soft_lateness_is_used_and_priced_when_the_window_is_too_early() -> None:
    """A visit allowing an hour of lateness starts 40 minutes late and pays."""
    late = _visit(
        "v1", 4, earliest_s=7 * HOUR_S, latest_s=8 * HOUR_S, max_lateness_s=HOUR_S
    )
    problem = Problem(LINE, (_caregiver("ann"),), (late,))

    plan = solve(problem, OPTIONS)

    assert plan.routes[0].visits[0].lateness_s == 600 * 4
    assert plan.stats.terms.lateness == Weights().lateness_per_s * 2400


def test_warm_start_from_a_plan_reproduces_that_plan() -> None:
    """Starting from a locally optimal plan gives the same routes back."""
    problem = Problem(
        LINE,
        (_caregiver("ann"), _caregiver("bob", start_location=4, end_location=4)),
        tuple(_visit(f"v{k}", k) for k in range(1, 5)),
    )
    first = solve(problem, OPTIONS)

    again = solve(problem, SolveOptions(time_limit_s=2.0, seed=9, warm_start=first))

    assert [r.visit_ids for r in again.routes] == [r.visit_ids for r in first.routes]


def test_stale_warm_start_keeps_what_still_fits_with_each_caregiver() -> None:
    """When the day moved on, each caregiver keeps the visits still feasible."""
    visits = tuple(_visit(f"v{k}", k, latest_s=11 * HOUR_S) for k in range(1, 5))
    caregivers = (
        _caregiver("ann"),
        _caregiver("bob", start_location=4, end_location=4),
    )
    first = solve(Problem(LINE, caregivers, visits), OPTIONS)
    # Now it is 10:50: only one more visit can still start by 11:00 for each.
    later = tuple(replace(c, shift_start_s=10 * HOUR_S + 3000) for c in caregivers)

    again = solve(
        Problem(LINE, later, visits),
        SolveOptions(time_limit_s=1.0, seed=3, solution_limit=2, warm_start=first),
    )

    assert again.stats.status == SolveStatus.FEASIBLE
    for route in again.routes:
        old = first.route_of(route.caregiver_id)
        assert old is not None
        assert set(route.visit_ids) <= set(old.visit_ids)
        assert len(route.visit_ids) == 1


def test_warm_start_with_a_visit_its_caregiver_may_no_longer_make(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """The visit moves to a caregiver who may make it, and nothing is logged."""
    visits = tuple(_visit(f"v{k}", k, skills=frozenset({"bath"})) for k in range(1, 5))
    bob = _caregiver("bob", start_location=4, end_location=4)
    first = solve(Problem(LINE, (_caregiver("ann"), bob), visits), OPTIONS)
    assert first.route_of("bob") is not None
    assert first.route_of("bob").visit_ids  # type: ignore[union-attr]
    # Bob no longer holds the skill every visit needs.
    unskilled = replace(bob, skills=frozenset({"cooking"}))

    again = solve(
        Problem(LINE, (_caregiver("ann"), unskilled), visits),
        replace(OPTIONS, warm_start=first),
    )

    assert again.route_of("bob").visit_ids == ()  # type: ignore[union-attr]
    assert sorted(again.route_of("ann").visit_ids) == ["v1", "v2", "v3", "v4"]  # type: ignore[union-attr]
    assert "not allowed" not in capfd.readouterr().err


def test_same_seed_and_solution_limit_give_the_same_plan() -> None:
    """The solver is deterministic for a seed with a solution limit."""
    problem = Problem(
        LINE,
        (_caregiver("ann"), _caregiver("bob")),
        tuple(_visit(f"v{k}", k, earliest_s=(8 + k) * HOUR_S) for k in range(1, 5)),
    )

    plans = [solve(problem, OPTIONS) for _ in range(2)]

    assert plans[0].routes == plans[1].routes


def test_problem_with_duplicate_visit_ids_is_refused() -> None:
    """Malformed input is a ValueError, raised when the problem is built."""
    with pytest.raises(ValueError, match="duplicate visit_id"):
        Problem(LINE, (_caregiver("ann"),), (_visit("v1", 1), _visit("v1", 2)))
