"""PyVRP and VROOM runners return plans that the checker accepts."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.checker import check_claim
from benchmarks.compare import environment, solve_pyvrp, solve_vroom
from benchmarks.homecare import evaluate, generate_day
from benchmarks.homecare import solve_vroom as solve_vroom_day
from benchmarks.solomon import distance_matrix, read_instance, routing_instance

_C101 = Path(__file__).parent / "data" / "C101.txt"


def test_pyvrp_plan_for_c101_is_feasible_and_claims_its_distance() -> None:
    """PyVRP serves every customer, and its distance and starts agree."""
    pytest.importorskip("pyvrp")
    instance = read_instance(_C101)
    routing = routing_instance(instance, distance_matrix(instance))

    claim = solve_pyvrp(routing, 0.3, 1)

    report = check_claim(routing, claim)
    assert report.feasible, report.violations[:3]
    assert report.served == 100


def test_vroom_plan_for_c101_is_feasible_and_claims_its_distance() -> None:
    """VROOM serves every customer, and its cost and starts agree."""
    pytest.importorskip("vroom")
    instance = read_instance(_C101)
    routing = routing_instance(instance, distance_matrix(instance))

    claim = solve_vroom(routing, 0.3, 1)

    report = check_claim(routing, claim)
    assert report.feasible, report.violations[:3]
    assert report.served == 100


def test_vroom_plan_for_a_community_day_respects_skills_and_shifts() -> None:
    """VROOM's home-care plan passes the checker, skills and shifts included."""
    pytest.importorskip("vroom")
    day = generate_day("community", 1)

    claim = solve_vroom_day(day, 0.5, 1)

    result = evaluate(day, "vroom", claim, wall_s=0.0)
    assert result.feasible, result.violations
    assert result.served > 0


def test_environment_names_the_solver_versions() -> None:
    """Results carry the versions of OR-Tools, PyVRP and pyvroom."""
    assert set(environment()["versions"]) == {"ortools", "pyvrp", "pyvroom"}
