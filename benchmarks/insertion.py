"""Fast-insertion benchmark: one new visit into the current plans.

Run it as::

    python -m benchmarks.insertion --json benchmarks/results/insertion.json

The dispatcher's fast path (DESIGN.md section 5) builds an
:class:`~solver.insertion.InsertionIndex` over the region's current routes
and ranks every caregiver's cheapest feasible place for the new visit. This
benchmark times exactly that, per new visit, on a seeded plan: by default 50
caregivers with 8 planned visits each, about 5 km across, at e-bike speed
through the solver's travel interface. Each new visit has a random home, a
window of one to four hours and a duration of 30 to 90 minutes; a sample
times the build of the index and the ranking together (``build_and_rank``,
what one order costs) and the ranking alone (``rank``, an index reused).

The issue's target is a median under 1 ms for ``build_and_rank`` at the
default size. Timings are wall clock (``time.perf_counter_ns``) on whatever
else the machine runs, so the load average is recorded with them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from solver.insertion import CurrentRoute, InsertionIndex
from solver.problem import Caregiver, TravelMatrix, Visit
from solver.travel import GreatCircleTravel, Point, TravelMode

__all__ = ["InsertionCase", "InsertionTimes", "generate_case", "main", "measure"]

_ORIGIN = (43.88, 125.32)
"""Centre of the generated plan (Changchun, as in :mod:`benchmarks.homecare`)."""

_SPAN_DEG = 0.045
"""Side of the square the homes are spread over, in degrees (about 5 km)."""

_NEW_HOMES = 500
"""Homes the new visits are drawn from (the matrix grows with the square)."""

_SHIFT_START_S = 8 * 3600
_SHIFT_END_S = 18 * 3600


@dataclass(frozen=True, slots=True)
class InsertionCase:
    """A plan to insert into and the new visits to insert, one at a time.

    Attributes:
        travel_s: Travel matrix over every location of the case.
        routes: The current route of every caregiver, each feasible.
        new_visits: Visits to rank, each against the unchanged routes.
    """

    travel_s: TravelMatrix
    routes: tuple[CurrentRoute, ...]
    new_visits: tuple[Visit, ...]


@dataclass(frozen=True, slots=True)
class InsertionTimes:
    """Distribution of one timed operation, in milliseconds."""

    samples: int
    median_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float


def _points(rnd: random.Random, count: int) -> list[Point]:
    lat, lon = _ORIGIN
    return [
        (
            lat + rnd.uniform(-_SPAN_DEG, _SPAN_DEG) / 2,
            lon + rnd.uniform(-_SPAN_DEG, _SPAN_DEG) / 2,
        )
        for _ in range(count)
    ]


def generate_case(
    caregivers: int = 50, visits_each: int = 8, new_visits: int = 1000, seed: int = 1
) -> InsertionCase:
    """A seeded plan of ``caregivers`` routes with ``visits_each`` visits each.

    Each route is laid out in order from the shift start: the window of each
    planned visit opens up to half an hour before the caregiver would arrive
    and closes one to two hours later, so every route is feasible and has
    slack, as a plan in the middle of a busy day does.
    """
    rnd = random.Random(seed)
    homes = caregivers + caregivers * visits_each + _NEW_HOMES
    travel_s = GreatCircleTravel().matrix_s(_points(rnd, homes), TravelMode.E_BIKE)

    routes = []
    location = caregivers
    for k in range(caregivers):
        caregiver = Caregiver(f"cg-{k}", k, k, _SHIFT_START_S, _SHIFT_END_S)
        planned = []
        here, clock_s = k, _SHIFT_START_S
        for j in range(visits_each):
            arrival_s = clock_s + travel_s[here][location]
            earliest_s = max(_SHIFT_START_S, arrival_s - rnd.randint(0, 1800))
            visit = Visit(
                f"v-{k}-{j}",
                location,
                earliest_s,
                arrival_s + rnd.randint(3600, 7200),
                rnd.choice((1800, 2700, 3600)),
            )
            planned.append(visit)
            clock_s = arrival_s + visit.duration_s
            here = location
            location += 1
        routes.append(CurrentRoute(caregiver, tuple(planned)))

    new = []
    for j in range(new_visits):
        earliest_s = rnd.randrange(_SHIFT_START_S, _SHIFT_END_S - 4 * 3600, 300)
        new.append(
            Visit(
                f"new-{j}",
                location + rnd.randrange(_NEW_HOMES),
                earliest_s,
                earliest_s + rnd.choice((3600, 7200, 14400)),
                rnd.choice((1800, 2700, 3600, 5400)),
            )
        )
    return InsertionCase(travel_s, tuple(routes), tuple(new))


def _quantile(sorted_ns: Sequence[int], share: float) -> float:
    position = min(len(sorted_ns) - 1, int(share * len(sorted_ns)))
    return sorted_ns[position] / 1e6


def _summary(samples_ns: list[int]) -> InsertionTimes:
    ordered = sorted(samples_ns)
    return InsertionTimes(
        samples=len(ordered),
        median_ms=statistics.median(ordered) / 1e6,
        p90_ms=_quantile(ordered, 0.9),
        p99_ms=_quantile(ordered, 0.99),
        max_ms=ordered[-1] / 1e6,
    )


def measure(case: InsertionCase) -> dict[str, InsertionTimes | float]:
    """Time each new visit of ``case``: index build plus rank, and rank alone.

    Returns:
        ``build_and_rank`` and ``rank`` timings, and ``feasible_share``: the
        share of new visits some caregiver could take.
    """
    build_and_rank_ns, rank_ns = [], []
    reused = InsertionIndex(case.travel_s, case.routes)
    placed = 0
    for visit in case.new_visits:
        started = time.perf_counter_ns()
        result = InsertionIndex(case.travel_s, case.routes).rank(visit)
        build_and_rank_ns.append(time.perf_counter_ns() - started)
        placed += bool(result.insertions)

        started = time.perf_counter_ns()
        reused.rank(visit)
        rank_ns.append(time.perf_counter_ns() - started)
    return {
        "build_and_rank": _summary(build_and_rank_ns),
        "rank": _summary(rank_ns),
        "feasible_share": placed / len(case.new_visits),
    }


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.insertion",
        description="Time the cheapest feasible insertion of one new visit.",
    )
    parser.add_argument("--caregivers", type=int, default=50, help="routes")
    parser.add_argument(
        "--visits-each", type=int, default=8, help="planned visits per route"
    )
    parser.add_argument(
        "--samples", type=int, default=2000, help="new visits timed, one by one"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the plan")
    parser.add_argument("--json", type=Path, help="write results to this file")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark from the command line and print the distribution."""
    args = _parse_args(argv)
    case = generate_case(args.caregivers, args.visits_each, args.samples, args.seed)
    times = measure(case)
    report = {
        "caregivers": args.caregivers,
        "visits_each": args.visits_each,
        "seed": args.seed,
        "target_median_ms": 1.0,
        "load_average": os.getloadavg()[0],
        "python": platform.python_version(),
        **{
            k: asdict(v) if isinstance(v, InsertionTimes) else v
            for k, v in times.items()
        },
    }
    for name in ("build_and_rank", "rank"):
        t = times[name]
        assert isinstance(t, InsertionTimes)
        print(
            f"{name:<15} median {t.median_ms:.3f} ms  p90 {t.p90_ms:.3f} ms  "
            f"p99 {t.p99_ms:.3f} ms  max {t.max_ms:.3f} ms  ({t.samples} samples)"
        )
    print(f"feasible share {times['feasible_share']:.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
