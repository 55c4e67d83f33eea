"""The Solomon harness reads real files and scales them the DIMACS way."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.solomon import (
    distance_matrix,
    instance_files,
    read_best_known,
    read_instance,
    routing_instance,
)

_DATA = Path(__file__).parent / "data"


def test_c101_is_read_with_fleet_depot_and_customers() -> None:
    """C101 has 25 vehicles of capacity 200, a depot and 100 customers."""
    instance = read_instance(_DATA / "C101.txt")

    assert instance.name == "C101"
    assert (instance.fleet_size, instance.capacity) == (25, 200)
    assert instance.num_customers == 100
    assert (instance.x[0], instance.y[0], instance.due[0]) == (40, 50, 1236)
    assert (instance.demand[1], instance.ready[1], instance.due[1]) == (10, 912, 967)
    assert instance.service[1] == 90
    assert (instance.x[100], instance.y[100]) == (55, 85)


def test_arcs_are_truncated_to_tenths() -> None:
    """Depot (40, 50) to customer 1 (45, 68) is 18.68..., so 186 tenths."""
    instance = read_instance(_DATA / "C101.txt")

    matrix = distance_matrix(instance)

    assert matrix[0][1] == 186
    assert matrix[1][0] == 186
    assert matrix[0][0] == 0


def test_routing_instance_scales_times_by_ten() -> None:
    """Windows, service times and the depot's due date are in tenths."""
    instance = read_instance(_DATA / "C101.txt")

    routing = routing_instance(instance, distance_matrix(instance))

    assert routing.num_visits == 100
    assert routing.num_caregivers == 25
    assert routing.visit_location[0] == 1
    assert (routing.visit_earliest[0], routing.visit_latest[0]) == (9120, 9670)
    assert routing.visit_duration[0] == 900
    assert routing.shift_end[0] == 12360


def test_file_without_vehicle_line_is_refused(tmp_path: Path) -> None:
    """A file without fleet size and capacity is not a Solomon instance."""
    broken = tmp_path / "X1.txt"
    broken.write_text("X1\nCUSTOMER\n0 1 2 0 0 100 0\n1 2 3 1 0 100 5\n")

    with pytest.raises(ValueError, match="VEHICLE"):
        read_instance(broken)


def test_best_known_table_and_directory_listing(tmp_path: Path) -> None:
    """Best-known rows are keyed by name; tables are not taken for instances."""
    (tmp_path / "bks.csv").write_text("instance,distance,routes\nc101,827.3,10\n")
    (tmp_path / "C101.txt").write_text((_DATA / "C101.txt").read_text())
    (tmp_path / "README.md").write_text("notes\n")

    best = read_best_known(tmp_path / "bks.csv")

    assert best["C101"].distance == pytest.approx(827.3)
    assert best["C101"].routes == 10
    assert [p.name for p in instance_files(tmp_path)] == ["C101.txt"]
    assert instance_files(tmp_path, ["R101"]) == []


def test_homberger_layout_with_large_fleet_is_read(tmp_path: Path) -> None:
    """Gehring-Homberger files share the layout, with bigger fleets and numbers."""
    rows = [f"{n:>5} {n * 3:>5} {n * 7 % 500:>5} 10 0 9000 90" for n in range(1, 201)]
    text = "\n".join(
        [
            "C1_2_1",
            "",
            "VEHICLE",
            "NUMBER     CAPACITY",
            "  50          200",
            "",
            "CUSTOMER",
            "CUST NO.  XCOORD.   YCOORD.    DEMAND   READY TIME  DUE DATE   SERVICE",
            "",
            "    0     70     70      0      0   9999      0",
            *rows,
        ]
    )
    (tmp_path / "C1_2_1.TXT").write_text(text + "\n")

    instance = read_instance(tmp_path / "C1_2_1.TXT")

    assert (instance.name, instance.fleet_size, instance.num_customers) == (
        "C1_2_1",
        50,
        200,
    )
    assert instance.due[0] == 9999
    assert instance.x[200] == 600
