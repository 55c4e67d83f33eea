"""Solomon-format VRPTW benchmark: our solver against best-known distances.

Run it as (one command line)::

    python -m benchmarks.solomon --instances ../shared/data/solomon
        --bks ../shared/data/solomon/bks.csv --time-limit 5
        --json benchmarks/results/solomon-5s.json --compare --plot gap.png

Every instance file in the directory is read (Solomon's 100-customer set,
Gehring and Homberger's 200-1,000-customer sets, anything in that layout),
solved with the distance objective under the DIMACS one-decimal convention,
and every solution is checked by :mod:`benchmarks.checker`, never by the
solver that produced it. With ``--compare``, PyVRP and VROOM solve the same
instances at the same budget in the same run.

The DIMACS convention truncates every arc to one decimal. We keep the whole
benchmark in integers by scaling by ten: an arc is ``floor(10 * d)``, and
ready times, due dates and service times are multiplied by ten, so that the
distance and time scales agree. Reported distances are divided by ten again.

Customers are visits and vehicles are caregivers here: every caregiver starts
and ends at the depot, and its shift is the depot's time window.

Limitation: the budget is each solver's own stopping rule, and wall time
(model building included) is reported next to it: VROOM's timeout bounds its
search, not its construction, and overruns by a fraction of a second on
100 customers and by several seconds on 1,000. Instances run one after the
other on whatever else the machine is doing; the load average at the start
is recorded with the results. Solvers run with one thread each.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.checker import ClaimedPlan, RoutingInstance, check_claim
from benchmarks.compare import (
    VROOM_EXPLORATION,
    VROOM_THREADS,
    environment,
    solve_pyvrp,
    solve_vroom,
)

SCALE = 10
"""Integer units per Solomon unit: the DIMACS convention keeps one decimal."""

SOLVERS = ("ours", "pyvrp", "vroom")
"""Solver names as they appear in the results, ours first."""

SolveFunction = Callable[[RoutingInstance, float, int], ClaimedPlan]
"""Solves an instance within a budget in seconds with a seed."""


@dataclass(frozen=True, slots=True)
class SolomonInstance:
    """One instance as written in the file, customer 0 being the depot.

    Attributes:
        name: Instance name from the file's first line (``C101``).
        fleet_size: Number of vehicles available.
        capacity: Capacity of every vehicle.
        x: X coordinate of each customer, depot first.
        y: Y coordinate of each customer, depot first.
        demand: Demand of each customer.
        ready: Ready time (earliest start of service) of each customer.
        due: Due date (latest start of service) of each customer; for the
            depot, the time by which every vehicle must be back.
        service: Service time of each customer.
    """

    name: str
    fleet_size: int
    capacity: int
    x: tuple[float, ...]
    y: tuple[float, ...]
    demand: tuple[int, ...]
    ready: tuple[int, ...]
    due: tuple[int, ...]
    service: tuple[int, ...]

    @property
    def num_customers(self) -> int:
        """Number of customers, the depot excluded."""
        return len(self.x) - 1


@dataclass(frozen=True, slots=True)
class BestKnown:
    """Best-known solution of an instance for the distance objective.

    Attributes:
        distance: Total distance in Solomon units, DIMACS convention.
        routes: Number of routes of that solution.
    """

    distance: float
    routes: int


@dataclass(frozen=True, slots=True)
class RunResult:
    """One solver on one instance, as checked by the independent checker.

    Attributes:
        instance: Instance name.
        solver: Solver name, one of :data:`SOLVERS`.
        distance: Recomputed total distance in Solomon units, ``None`` when
            the solver returned nothing.
        routes: Number of routes used.
        served: Customers served.
        feasible: Whether the checker found no violation.
        violations: The checker's findings, one line each.
        gap_pct: Gap to the best-known distance in percent, ``None`` without
            a best-known value or a solution.
        wall_s: Wall-clock time of the solve, model building included.
        error: Why the solver produced nothing, if it failed.
        cpu_s: Processor time the solve got (all threads); well below
            ``wall_s`` for a one-thread solver means the machine was busy.
        plan: The routes as customer numbers separated by spaces, one string
            per used vehicle, so that anyone can check the figures again.
    """

    instance: str
    solver: str
    distance: float | None
    routes: int
    served: int
    feasible: bool
    violations: tuple[str, ...]
    gap_pct: float | None
    wall_s: float
    error: str | None = None
    cpu_s: float = 0.0
    plan: tuple[str, ...] = ()


def read_instance(path: Path) -> SolomonInstance:
    """Parse one Solomon-format instance file.

    The layout is the name on the first non-blank line, a ``VEHICLE``
    section with the fleet size and capacity, and a ``CUSTOMER`` section of
    seven numbers per row: number, x, y, demand, ready time, due date and
    service time, the depot (number 0) first.

    Args:
        path: The instance file.

    Returns:
        The instance.

    Raises:
        ValueError: If the file does not follow the layout.
    """
    lines = [line.split() for line in path.read_text().splitlines()]
    tokens = [row for row in lines if row]
    if not tokens:
        raise ValueError(f"{path}: empty file")
    name = tokens[0][0]
    fleet: tuple[int, int] | None = None
    rows: list[list[float]] = []
    for row in tokens[1:]:
        numbers = _numbers(row)
        if numbers is None:
            continue
        if fleet is None and len(numbers) == 2:
            fleet = (int(numbers[0]), int(numbers[1]))
        elif len(numbers) == 7:
            rows.append(numbers)
    if fleet is None:
        raise ValueError(f"{path}: no VEHICLE line with fleet size and capacity")
    if len(rows) < 2 or int(rows[0][0]) != 0:
        raise ValueError(f"{path}: no depot row followed by customers")
    if [int(row[0]) for row in rows] != list(range(len(rows))):
        raise ValueError(f"{path}: customers are not numbered 0, 1, 2, ...")

    return SolomonInstance(
        name=name,
        fleet_size=fleet[0],
        capacity=fleet[1],
        x=tuple(row[1] for row in rows),
        y=tuple(row[2] for row in rows),
        demand=tuple(_whole(row[3], path) for row in rows),
        ready=tuple(_whole(row[4], path) for row in rows),
        due=tuple(_whole(row[5], path) for row in rows),
        service=tuple(_whole(row[6], path) for row in rows),
    )


def _numbers(row: Sequence[str]) -> list[float] | None:
    """Read a row of numbers, or ``None`` if any token is not a number."""
    try:
        return [float(token) for token in row]
    except ValueError:
        return None


def _whole(value: float, path: Path) -> int:
    """Demand and times must be whole numbers to scale exactly."""
    if value != int(value):
        raise ValueError(f"{path}: {value} is not a whole number")
    return int(value)


def read_best_known(path: Path) -> dict[str, BestKnown]:
    """Read best-known distances from a CSV with instance, distance, routes.

    Args:
        path: CSV file with at least the columns ``instance``, ``distance``
            and ``routes``.

    Returns:
        Best-known solutions by upper-case instance name.
    """
    with path.open(newline="") as handle:
        return {
            row["instance"].strip().upper(): BestKnown(
                float(row["distance"]), int(row["routes"])
            )
            for row in csv.DictReader(handle)
        }


def distance_matrix(instance: SolomonInstance) -> tuple[tuple[int, ...], ...]:
    """Arc lengths in tenths, truncated: ``floor(10 * euclid)``.

    Whole coordinates, the usual case, use exact integer arithmetic, so that
    an arc whose length is exactly on a tenth is never truncated one below.
    """
    points = list(zip(instance.x, instance.y, strict=True))
    whole = all(c == int(c) for point in points for c in point)

    def arc(a: tuple[float, float], b: tuple[float, float]) -> int:
        dx, dy = a[0] - b[0], a[1] - b[1]
        if whole:
            return math.isqrt(int(SCALE * SCALE * (dx * dx + dy * dy)))
        return math.floor(SCALE * math.hypot(dx, dy))

    return tuple(tuple(arc(a, b) for b in points) for a in points)


def routing_instance(
    instance: SolomonInstance, matrix: Sequence[Sequence[int]]
) -> RoutingInstance:
    """Describe the instance for the checker and the solvers, in tenths.

    Visit ``i`` is customer ``i + 1`` at location ``i + 1``; every caregiver
    starts and ends at the depot (location 0) inside the depot's window.
    """
    fleet = instance.fleet_size
    return RoutingInstance(
        name=instance.name,
        travel=matrix,
        visit_location=tuple(range(1, len(instance.x))),
        visit_earliest=tuple(SCALE * t for t in instance.ready[1:]),
        visit_latest=tuple(SCALE * t for t in instance.due[1:]),
        visit_duration=tuple(SCALE * t for t in instance.service[1:]),
        shift_start=(SCALE * instance.ready[0],) * fleet,
        shift_end=(SCALE * instance.due[0],) * fleet,
        start_location=(0,) * fleet,
        end_location=(0,) * fleet,
        visit_demand=instance.demand[1:],
        capacity=instance.capacity,
        all_required=True,
    )


def solve_ours(
    instance: RoutingInstance, time_limit_s: float, seed: int
) -> ClaimedPlan:
    """Solve with our solver: caregivers on the depot's shift, distance as time.

    Every visit gets the same left-out penalty: the solver's default for a
    routine visit, or ten times the longest arc if that is more, so that
    serving a visit always beats leaving it out when it fits anywhere.
    Leaving one out is a last resort, which the checker reports as missing.
    """
    from solver import Caregiver, Problem, SolveOptions, Visit, Weights, solve

    longest_arc = max(max(row) for row in instance.travel)
    left_out = max(Weights().left_out_routine, 10 * longest_arc)
    caregivers = tuple(
        Caregiver(
            caregiver_id=f"vehicle-{k}",
            start_location=instance.start_location[k],
            end_location=instance.end_location[k],
            shift_start_s=instance.shift_start[k],
            shift_end_s=instance.shift_end[k],
            capacity=instance.capacity,
        )
        for k in range(instance.num_caregivers)
    )
    visits = tuple(
        Visit(
            visit_id=str(v),
            location=instance.visit_location[v],
            earliest_s=instance.visit_earliest[v],
            latest_s=instance.visit_latest[v],
            duration_s=instance.visit_duration[v],
            demand=instance.visit_demand[v] if instance.visit_demand else 0,
        )
        for v in range(instance.num_visits)
    )
    problem = Problem(
        travel_s=tuple(tuple(row) for row in instance.travel),
        caregivers=caregivers,
        visits=visits,
        weights=Weights(
            left_out_routine=left_out,
            left_out_urgent=left_out,
            left_out_emergency=left_out,
            not_preferred=0,
        ),
    )
    plan = solve(problem, SolveOptions(time_limit_s=time_limit_s, seed=seed))
    return ClaimedPlan(
        routes=[[int(v.visit_id) for v in route.visits] for route in plan.routes],
        distance=sum(route.travel_s for route in plan.routes if route.visits),
        starts=[[v.start_s for v in route.visits] for route in plan.routes],
    )


def run_one(
    instance: SolomonInstance,
    solver: str,
    solve_function: SolveFunction,
    time_limit_s: float,
    seed: int,
    best_known: BestKnown | None,
) -> RunResult:
    """Solve one instance with one solver and check the answer independently.

    A solver that raises is recorded as a failed, infeasible run: a benchmark
    over dozens of instances reports what it can rather than stop.
    """
    matrix = distance_matrix(instance)
    problem = routing_instance(instance, matrix)
    started = time.perf_counter()
    cpu_started = time.process_time()
    try:
        claim = solve_function(problem, time_limit_s, seed)
    except Exception as error:  # noqa: BLE001 - any solver failure is a result
        return RunResult(
            instance=instance.name,
            solver=solver,
            distance=None,
            routes=0,
            served=0,
            feasible=False,
            violations=(),
            gap_pct=None,
            wall_s=time.perf_counter() - started,
            error=f"{type(error).__name__}: {error}",
        )
    wall_s = time.perf_counter() - started
    cpu_s = time.process_time() - cpu_started

    report = check_claim(problem, claim)
    distance = report.distance / SCALE
    gap = None
    if best_known is not None and report.served:
        gap = 100.0 * (distance - best_known.distance) / best_known.distance
    return RunResult(
        instance=instance.name,
        solver=solver,
        distance=distance,
        routes=report.routes_used,
        served=report.served,
        feasible=report.feasible,
        violations=tuple(v.detail for v in report.violations),
        gap_pct=gap,
        wall_s=wall_s,
        cpu_s=cpu_s,
        plan=tuple(
            " ".join(str(v + 1) for v in route) for route in claim.routes if route
        ),
    )


def solver_functions(
    names: Sequence[str], *, vroom_threads: int = VROOM_THREADS
) -> dict[str, SolveFunction]:
    """Map solver names to their solve functions.

    Args:
        names: Solver names, from :data:`SOLVERS`.
        vroom_threads: Threads VROOM may use.

    Returns:
        Solve functions by name, in the order given.

    Raises:
        ValueError: On an unknown solver name.
    """
    functions: dict[str, SolveFunction] = {}
    for name in names:
        if name == "ours":
            functions[name] = solve_ours
        elif name == "pyvrp":
            functions[name] = solve_pyvrp
        elif name == "vroom":

            def vroom(
                instance: RoutingInstance, time_limit_s: float, seed: int
            ) -> ClaimedPlan:
                return solve_vroom(instance, time_limit_s, seed, threads=vroom_threads)

            functions[name] = vroom
        else:
            raise ValueError(f"unknown solver {name!r}")
    return functions


def summarise(results: Sequence[RunResult]) -> dict[str, dict[str, Any]]:
    """Per solver: feasible count, mean and max gap, mean wall and CPU time.

    A run that is infeasible or failed counts against its solver in the
    ``feasible`` figure; gaps are averaged over feasible runs only, and the
    number of runs behind each mean is given.
    """
    summary: dict[str, dict[str, Any]] = {}
    for solver in dict.fromkeys(r.solver for r in results):
        runs = [r for r in results if r.solver == solver]
        gaps = [r.gap_pct for r in runs if r.feasible and r.gap_pct is not None]
        summary[solver] = {
            "instances": len(runs),
            "feasible": sum(r.feasible for r in runs),
            "gap_runs": len(gaps),
            "mean_gap_pct": round(statistics.fmean(gaps), 3) if gaps else None,
            "max_gap_pct": round(max(gaps), 3) if gaps else None,
            "over_5pct": sum(g > 5.0 for g in gaps),
            "mean_wall_s": round(statistics.fmean(r.wall_s for r in runs), 3),
            "mean_cpu_s": round(statistics.fmean(r.cpu_s for r in runs), 3),
            "total_routes": sum(r.routes for r in runs),
        }
    return summary


def instance_files(directory: Path, only: Sequence[str] = ()) -> list[Path]:
    """Instance files of a directory, sorted, optionally filtered by name.

    Every regular file is a candidate except the best-known table and
    documentation (``.csv``, ``.md``, ``.json`` and hidden files).
    """
    wanted = {name.upper() for name in only}
    files = [
        path
        for path in sorted(directory.iterdir())
        if path.is_file()
        and not path.name.startswith(".")
        and path.suffix.lower() not in {".csv", ".md", ".json", ".png"}
    ]
    if wanted:
        files = [path for path in files if path.stem.upper() in wanted]
    return files


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.solomon",
        description="Solve Solomon-format VRPTW instances and check every plan.",
    )
    parser.add_argument("--instances", type=Path, required=True, help="directory")
    parser.add_argument("--bks", type=Path, help="CSV of best-known distances")
    parser.add_argument(
        "--time-limit", type=float, default=5.0, help="seconds per solve"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of every solver")
    parser.add_argument("--json", type=Path, help="write results to this file")
    parser.add_argument(
        "--compare", action="store_true", help="also run PyVRP and VROOM"
    )
    parser.add_argument(
        "--solvers",
        default="",
        help=f"comma-separated subset of {','.join(SOLVERS)} (overrides --compare)",
    )
    parser.add_argument("--plot", type=Path, help="write a gap plot (PNG)")
    parser.add_argument(
        "--vroom-threads",
        type=int,
        default=VROOM_THREADS,
        help="threads VROOM may use (default: one, like the others)",
    )
    parser.add_argument(
        "--only", default="", help="comma-separated instance names, e.g. C101,R101"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark from the command line; 1 if any plan is infeasible."""
    args = _parse_args(argv)
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    files = instance_files(args.instances, only)
    if not files:
        print(f"no instance files in {args.instances}", file=sys.stderr)
        return 2
    best = read_best_known(args.bks) if args.bks else {}
    names = [name.strip() for name in args.solvers.split(",") if name.strip()]
    if not names:
        names = list(SOLVERS if args.compare else SOLVERS[:1])
    unknown = sorted(set(names) - set(SOLVERS))
    if unknown:
        print(f"unknown solvers {unknown}; choose from {SOLVERS}", file=sys.stderr)
        return 2
    functions = solver_functions(names, vroom_threads=args.vroom_threads)

    results: list[RunResult] = []
    print(
        f"{'instance':<10} {'solver':<6} {'distance':>10} {'routes':>6} "
        f"{'gap %':>7} {'wall s':>7} {'cpu s':>6}  feasible"
    )
    for path in files:
        instance = read_instance(path)
        for name, function in functions.items():
            result = run_one(
                instance,
                name,
                function,
                args.time_limit,
                args.seed,
                best.get(instance.name.upper()),
            )
            results.append(result)
            print(_format_row(result), flush=True)

    summary = summarise(results)
    for solver, figures in summary.items():
        print(f"{solver}: {json.dumps(figures)}")
    if args.json:
        _write_json(args, results, summary)
    if args.plot:
        from benchmarks.plot import plot_gaps

        plot_gaps(results, args.plot, title=f"gap to best-known, {args.time_limit} s")
    return 0 if all(r.feasible for r in results) else 1


def _format_row(result: RunResult) -> str:
    distance = "-" if result.distance is None else f"{result.distance:.1f}"
    gap = "-" if result.gap_pct is None else f"{result.gap_pct:.2f}"
    verdict = (
        "yes" if result.feasible else f"NO {result.error or result.violations[:3]}"
    )
    return (
        f"{result.instance:<10} {result.solver:<6} {distance:>10} "
        f"{result.routes:>6} {gap:>7} {result.wall_s:>7.2f} {result.cpu_s:>6.2f}"
        f"  {verdict}"
    )


def _write_json(
    args: argparse.Namespace,
    results: Sequence[RunResult],
    summary: dict[str, dict[str, Any]],
) -> None:
    payload = {
        "benchmark": "solomon",
        "convention": "DIMACS: arcs floor(10*d)/10, distance objective",
        "time_limit_s": args.time_limit,
        "seed": args.seed,
        "vroom": {"exploration": VROOM_EXPLORATION, "threads": args.vroom_threads},
        "pyvrp": {"stop": "MaxRuntime"},
        "instances_dir": str(args.instances),
        "environment": environment(),
        "summary": summary,
        "results": [asdict(r) for r in results],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    sys.exit(main())
