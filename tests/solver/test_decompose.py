"""Decomposition: parts cover the problem, pins and skills travel along."""

from __future__ import annotations

from solver import (
    Caregiver,
    Priority,
    Problem,
    SolveOptions,
    Visit,
    solve,
    travel_matrix,
)
from solver.decompose import repair, split

HOUR_S = 3600

# Two towns 2 hours apart: locations 0-4 in the west, 5-9 in the east.
POSITION_S = [60 * k for k in range(5)] + [7200 + 60 * k for k in range(5)]
TWO_TOWNS = travel_matrix([[abs(a - b) for b in POSITION_S] for a in POSITION_S])


def _caregiver(caregiver_id: str, location: int, **changes: object) -> Caregiver:
    fields: dict[str, object] = {
        "caregiver_id": caregiver_id,
        "start_location": location,
        "end_location": location,
        "shift_start_s": 8 * HOUR_S,
        "shift_end_s": 18 * HOUR_S,
    }
    fields.update(changes)
    return Caregiver(**fields)  # type: ignore[arg-type]


def _visit(visit_id: str, location: int, **changes: object) -> Visit:
    fields: dict[str, object] = {
        "visit_id": visit_id,
        "location": location,
        "earliest_s": 9 * HOUR_S,
        "latest_s": 15 * HOUR_S,
        "duration_s": 600,
    }
    fields.update(changes)
    return Visit(**fields)  # type: ignore[arg-type]


def _two_towns(**west_visit: object) -> Problem:
    caregivers = (_caregiver("west", 0), _caregiver("east", 5))
    visits = tuple(_visit(f"w{k}", k, **west_visit) for k in range(1, 5)) + tuple(
        _visit(f"e{k}", 5 + k) for k in range(1, 5)
    )
    return Problem(TWO_TOWNS, caregivers, visits)


def test_split_puts_each_town_with_its_caregiver() -> None:
    """Two distant towns become two parts, each with its own caregiver."""
    parts = split(_two_towns(), max_part_visits=4, seed=1)

    by_caregiver = {
        part.caregivers[0].caregiver_id: {v.visit_id for v in part.visits}
        for part in parts
    }
    assert by_caregiver == {
        "west": {"w1", "w2", "w3", "w4"},
        "east": {"e1", "e2", "e3", "e4"},
    }


def test_split_sends_a_pinned_visit_to_its_caregivers_part() -> None:
    """A west visit pinned to the east caregiver goes to the east part."""
    parts = split(_two_towns(pinned_caregiver_id="east"), max_part_visits=4, seed=1)

    east = next(p for p in parts if p.caregivers[0].caregiver_id == "east")
    assert {v.visit_id for v in east.visits} >= {"w1", "w2", "w3", "w4"}


def test_decomposed_solve_serves_both_towns_without_crossing() -> None:
    """Solving in parts serves every visit, each town by its own caregiver."""
    options = SolveOptions(
        time_limit_s=2.0,
        seed=1,
        solution_limit=3,
        decompose_above_visits=4,
        part_visits=4,
    )

    plan = solve(_two_towns(), options)

    assert plan.stats.parts == 2
    assert plan.unassigned == ()
    assert set(plan.route_of("west").visit_ids) == {"w1", "w2", "w3", "w4"}  # type: ignore[union-attr]


def test_repair_lets_an_urgent_visit_displace_a_routine_one() -> None:
    """With room for one visit, repair swaps the routine visit for the urgent."""
    problem = Problem(
        TWO_TOWNS,
        (_caregiver("west", 0, max_visits=1),),
        (_visit("routine", 1), _visit("urgent", 2, priority=Priority.URGENT)),
    )
    sequences = {"west": ["routine"]}

    repair(problem, sequences, ["urgent"])

    assert sequences == {"west": ["urgent"]}
