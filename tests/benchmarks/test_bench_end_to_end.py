"""The Solomon harness runs our solver end to end and the checker accepts it."""

from __future__ import annotations

from pathlib import Path

from benchmarks.solomon import BestKnown, read_instance, run_one, solve_ours

_DATA = Path(__file__).parent / "data"


def test_c101_at_one_second_is_solved_feasibly() -> None:
    """Our solver serves all 100 customers of C101 within the rules."""
    instance = read_instance(_DATA / "C101.txt")

    result = run_one(instance, "ours", solve_ours, 1.0, 1, BestKnown(827.3, 10))

    assert result.error is None
    assert result.feasible, result.violations
    assert result.served == 100
    assert result.gap_pct is not None
    assert result.gap_pct >= 0.0
