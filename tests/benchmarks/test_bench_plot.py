"""Figures are written as PNG files when matplotlib is installed."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.homecare import DayResult
from benchmarks.plot import plot_gaps, plot_homecare
from benchmarks.solomon import RunResult

pytest.importorskip("matplotlib")

_PNG_MAGIC = b"\x89PNG"


def test_gap_figure_is_a_png(tmp_path: Path) -> None:
    """A gap figure with a feasible and an infeasible run is drawn."""
    results = [
        RunResult("C101", "ours", 830.0, 10, 100, True, (), 0.3, 1.0),
        RunResult("C101", "vroom", None, 0, 0, False, (), None, 1.0, "boom"),
    ]

    plot_gaps(results, tmp_path / "gap.png", title="test")

    assert (tmp_path / "gap.png").read_bytes().startswith(_PNG_MAGIC)


def test_homecare_figure_is_a_png(tmp_path: Path) -> None:
    """A home-care figure of one day and one solver is drawn."""
    result = DayResult(
        day="community-1",
        solver="ours",
        visits=60,
        served=58,
        served_urgent=5,
        urgent=5,
        travel_h=4.0,
        lateness_s=0,
        late_visits=0,
        continuity_pct=70.0,
        caregivers_used=10,
        wall_s=1.0,
        feasible=True,
        violations=(),
    )

    plot_homecare([result], tmp_path / "day.png", title="test")

    assert (tmp_path / "day.png").read_bytes().startswith(_PNG_MAGIC)
