"""Both benchmark commands run our solver end to end; the checker accepts it."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.homecare import main as homecare_main
from benchmarks.solomon import main

_DATA = Path(__file__).parent / "data"


def test_c101_at_one_second_is_solved_feasibly(tmp_path: Path) -> None:
    """Our solver serves all 100 customers of C101 within the rules in 1 s."""
    (tmp_path / "C101.txt").write_text((_DATA / "C101.txt").read_text())
    (tmp_path / "bks.csv").write_text("instance,distance,routes\nC101,827.3,10\n")
    out = tmp_path / "out.json"

    status = main(
        [
            "--instances",
            str(tmp_path),
            "--bks",
            str(tmp_path / "bks.csv"),
            "--time-limit",
            "1",
            "--json",
            str(out),
        ]
    )

    [result] = json.loads(out.read_text())["results"]
    assert status == 0
    assert result["solver"] == "ours"
    assert result["error"] is None
    assert result["feasible"], result["violations"]
    assert result["served"] == 100
    assert result["gap_pct"] >= 0.0
    assert len(result["plan"]) == result["routes"]


def test_homecare_command_writes_checked_community_results(tmp_path: Path) -> None:
    """A community day at 1 s comes back feasible, with its figures in JSON."""
    out = tmp_path / "homecare.json"

    status = homecare_main(
        ["--size", "community", "--time-limit", "1", "--seed", "3", "--json", str(out)]
    )

    payload = json.loads(out.read_text())
    [result] = payload["results"]
    assert status == 0
    assert result["feasible"], result["violations"]
    assert result["visits"] == 60
    assert 0 < result["served"] <= 60
    assert payload["days"][0]["caregivers"] == 10
