"""Properties every plan keeps, over random small problems."""

from __future__ import annotations

from hypothesis import given, settings

from solver import Plan, Priority, Problem, SolveOptions, UnassignedReason, solve
from solver.screening import is_allowed
from tests.solver.strategies import problems

OPTIONS = SolveOptions(time_limit_s=1.0, seed=5, solution_limit=3)


def _check_invariants(problem: Problem, plan: Plan) -> None:
    visit_of = {v.visit_id: v for v in problem.visits}
    caregiver_of = {c.caregiver_id: c for c in problem.caregivers}
    travel = problem.travel_s

    planned = [p.visit_id for r in plan.routes for p in r.visits]
    assert len(planned) == len(set(planned)), "a visit is planned twice"
    unassigned = {u.visit_id for u in plan.unassigned}
    assert unassigned.isdisjoint(planned)
    assert unassigned | set(planned) == set(visit_of)
    for left_out in plan.unassigned:
        if visit_of[left_out.visit_id].priority == Priority.EMERGENCY:
            assert left_out.reason != UnassignedReason.LEFT_OUT_FOR_COST

    for route in plan.routes:
        caregiver = caregiver_of[route.caregiver_id]
        assert route.departure_s >= caregiver.shift_start_s
        assert route.return_s <= caregiver.shift_end_s
        if caregiver.max_visits is not None:
            assert len(route.visits) <= caregiver.max_visits
        here, free_s = caregiver.start_location, route.departure_s
        for stop in route.visits:
            visit = visit_of[stop.visit_id]
            assert is_allowed(caregiver, visit), "skills, block or pin broken"
            assert visit.earliest_s <= stop.start_s <= visit.latest_with_lateness_s
            # Nobody is in two places at once: the previous visit's end plus
            # the travel comes no later than this arrival.
            assert free_s + travel[here][visit.location] <= stop.arrival_s
            assert stop.arrival_s <= stop.start_s
            assert stop.end_s == stop.start_s + visit.duration_s
            here, free_s = visit.location, stop.end_s
        assert free_s + travel[here][caregiver.end_location] <= route.return_s


@settings(max_examples=60, deadline=None)
@given(problems())
def test_every_plan_keeps_windows_shifts_skills_and_serves_each_visit_once(
    problem: Problem,
) -> None:
    """Random problems give plans that keep every rule of the model."""
    plan = solve(problem, OPTIONS)

    _check_invariants(problem, plan)


@settings(max_examples=5, deadline=None)
@given(problems(max_caregivers=4, max_visits=12))
def test_decomposed_plans_keep_the_same_rules(problem: Problem) -> None:
    """Splitting into parts of three visits still gives a valid plan."""
    options = SolveOptions(
        time_limit_s=1.0,
        seed=5,
        solution_limit=2,
        decompose_above_visits=3,
        part_visits=3,
    )

    plan = solve(problem, options)

    _check_invariants(problem, plan)
