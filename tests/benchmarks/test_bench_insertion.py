"""The fast-insertion benchmark runs end to end and writes its report."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.insertion import generate_case, main
from solver.insertion import InsertionIndex


def test_generated_routes_are_feasible() -> None:
    """Every planned visit of a generated case starts inside its window."""
    case = generate_case(caregivers=5, visits_each=4, new_visits=3, seed=2)

    for route in case.routes:
        clock_s, here = route.caregiver.shift_start_s, route.caregiver.start_location
        for visit in route.visits:
            start_s = max(
                clock_s + case.travel_s[here][visit.location], visit.earliest_s
            )
            assert start_s <= visit.latest_s
            clock_s, here = start_s + visit.duration_s, visit.location
    index = InsertionIndex(case.travel_s, case.routes)
    assert all(len(index.rank(v).insertions) <= 5 for v in case.new_visits)


def test_command_writes_the_distribution(tmp_path: Path) -> None:
    """A tiny run writes median, p90 and p99 of both timed operations."""
    out = tmp_path / "insertion.json"

    code = main(
        [
            "--caregivers",
            "3",
            "--visits-each",
            "2",
            "--samples",
            "20",
            "--json",
            str(out),
        ]
    )

    report = json.loads(out.read_text())
    assert code == 0
    assert report["caregivers"] == 3
    for name in ("build_and_rank", "rank"):
        assert report[name]["samples"] == 20
        assert set(report[name]) >= {"median_ms", "p90_ms", "p99_ms"}
