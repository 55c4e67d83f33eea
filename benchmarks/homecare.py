"""Home-care benchmark: seeded, realistic days solved by us and by VROOM.

Run it as (one command line)::

    python -m benchmarks.homecare --size all --time-limit 30 --seed 1
        --json benchmarks/results/homecare-30s.json --compare

A day is generated from a seed alone (:func:`generate_day`), so every solver
and every run sees the same elders, caregivers and visits. The city is
Changchun: communities cluster around the seats of its five urban districts,
elders live around their community's centre and caregivers live near the
communities they serve. The three sizes are the units of dispatch:

============  ==========  ======  ===========================================
size          caregivers  visits  geography
============  ==========  ======  ===========================================
community     10          60      one community, about 1 km across
street        50          400     eight communities around one district seat
district      200         1,600   thirty communities over the urban districts
============  ==========  ======  ===========================================

Travel comes from the solver's travel interface (:mod:`solver.travel`):
great-circle distance times a road-detour factor at e-bike speed, in whole
seconds. Every plan, ours or VROOM's, is checked by :mod:`benchmarks.checker`
before any figure is reported: served visits (by priority), total travel,
lateness, continuity of care (the share of visits with a preferred caregiver
that this caregiver makes) and solve time.

Limitation: VROOM knows neither continuity of care nor soft lateness. It
plans for travel alone, inside windows widened by the lateness allowance,
so its travel is a bound ours pays continuity to miss; ``--continuity-weight
0`` compares travel on equal terms. The days are synthetic: travel is
great-circle, and the mix of services, skills and shifts is our assumption
of a busy day, not data.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from benchmarks.checker import ClaimedPlan, RoutingInstance, check_claim
from benchmarks.compare import environment
from benchmarks.compare import solve_vroom as solve_vroom_instance

_T = TypeVar("_T")

SIZES: dict[str, tuple[int, int, int]] = {
    "community": (10, 60, 1),
    "street": (50, 400, 8),
    "district": (200, 1600, 30),
}
"""Caregivers, visits and communities of each size."""

URBAN_SEATS: tuple[tuple[str, float, float], ...] = (
    ("220102", 125.337237, 43.890235),
    ("220103", 125.342828, 43.903823),
    ("220104", 125.318042, 43.864910),
    ("220105", 125.384727, 43.870824),
    ("220106", 125.272467, 43.892177),
)
"""Adcode, longitude and latitude of Changchun's urban district seats.

Copied from shared/data/changchun/districts.csv so that a day can be
generated without that file.
"""

EBIKE_SPEED_M_S = 15_000 / 3600
"""E-bike speed: 15 km/h."""

DETOUR_FACTOR = 1.3
"""Road distance over great-circle distance in a dense city."""

EARTH_RADIUS_M = 6_371_000.0

SHIFTS: dict[str, tuple[int, int, float]] = {
    "morning": (7 * 3600, 13 * 3600, 0.3),
    "day": (8 * 3600, 17 * 3600, 0.45),
    "evening": (13 * 3600, 21 * 3600, 0.25),
}
"""Start, end (seconds from midnight) and share of caregivers per shift."""

PROFILES: tuple[tuple[str, frozenset[str], float], ...] = (
    (
        "nurse",
        frozenset({"nursing", "medication", "wound_care", "personal_care"}),
        0.25,
    ),
    ("care_aide", frozenset({"personal_care", "housekeeping", "medication"}), 0.6),
    ("housekeeper", frozenset({"housekeeping"}), 0.15),
)
"""Caregiver profiles: the skills each holds and its share of caregivers."""

SERVICES: tuple[tuple[str, frozenset[str], tuple[int, ...], float], ...] = (
    ("personal_care", frozenset({"personal_care"}), (30, 45), 0.33),
    ("bathing", frozenset({"personal_care"}), (45, 60), 0.08),
    ("housekeeping", frozenset({"housekeeping"}), (60, 90, 120), 0.12),
    ("medication_check", frozenset({"medication"}), (30,), 0.25),
    ("nursing_check", frozenset({"nursing"}), (30, 45), 0.14),
    ("wound_dressing", frozenset({"nursing", "wound_care"}), (30, 45, 60), 0.08),
)
"""Services: code, skills needed, possible durations (minutes), share.

Mean service is about 43 minutes, so that eight visits with their travel
fill most of a shift, as on a busy day.
"""

LATENESS_ALLOWED_S = {"housekeeping": 1800, "bathing": 1800}
"""Services that may start late, and by how much (soft lateness, in seconds).

Everything else (medication, nursing, wound care, personal care) has a hard
window. VROOM knows no soft windows, so it gets the widened window for free,
while our solver pays for every late second: lateness is reported for both.
"""

URGENT_SHARE = 0.1
"""Share of visits that are urgent; the rest are routine."""

PREFERENCE_SHARE = 0.6
"""Share of elders who have a preferred caregiver."""

VROOM_PRIORITY = {"routine": 10, "urgent": 100, "emergency": 100}
"""VROOM priority (0-100) of each of our priorities."""


@dataclass(frozen=True, slots=True)
class DayCaregiver:
    """A caregiver of a generated day.

    Attributes:
        caregiver_id: Stable id, ``cg-<n>``.
        shift: Shift name, a key of :data:`SHIFTS`.
        start_location: Where the shift starts, near home.
        end_location: Where the shift ends, near home.
        shift_start_s: Shift start, seconds from midnight.
        shift_end_s: Shift end, seconds from midnight.
        skills: Skills held.
    """

    caregiver_id: str
    shift: str
    start_location: int
    end_location: int
    shift_start_s: int
    shift_end_s: int
    skills: frozenset[str]


@dataclass(frozen=True, slots=True)
class DayVisit:
    """A visit of a generated day.

    Attributes:
        visit_id: Stable id, ``v-<n>``.
        elder_id: The elder visited, ``e-<n>``; some elders get two visits.
        service: Service code, from :data:`SERVICES`.
        location: The elder's home.
        earliest_s: Earliest start, seconds from midnight.
        latest_s: Latest start, seconds from midnight.
        duration_s: Service duration.
        skills: Skills needed.
        priority: ``routine`` or ``urgent``.
        preferred_caregiver_id: The elder's preferred caregiver, if any.
        max_lateness_s: How far past ``latest_s`` the visit may start.
    """

    visit_id: str
    elder_id: str
    service: str
    location: int
    earliest_s: int
    latest_s: int
    duration_s: int
    skills: frozenset[str]
    priority: str
    preferred_caregiver_id: str | None
    max_lateness_s: int = 0


@dataclass(frozen=True, slots=True)
class HomecareDay:
    """One generated day of one region.

    Attributes:
        name: ``<size>-<seed>``.
        size: A key of :data:`SIZES`.
        seed: The seed it was generated from.
        points: Longitude and latitude of every location.
        travel_s: Travel time between locations, whole seconds.
        caregivers: Caregivers on shift.
        visits: Visits to plan.
    """

    name: str
    size: str
    seed: int
    points: tuple[tuple[float, float], ...]
    travel_s: tuple[tuple[int, ...], ...]
    caregivers: tuple[DayCaregiver, ...]
    visits: tuple[DayVisit, ...]


@dataclass(frozen=True, slots=True)
class DayResult:
    """One solver on one day, as checked by the independent checker.

    Attributes:
        day: Day name.
        solver: ``ours`` or ``vroom``.
        visits: Visits in the day.
        served: Visits served.
        served_urgent: Urgent visits served.
        urgent: Urgent visits in the day.
        travel_h: Total travel in hours.
        lateness_s: Total start past the latest start, within allowances.
        late_visits: Visits that start past their latest start.
        continuity_pct: Of the served visits whose elder prefers a caregiver,
            the share that caregiver makes, in percent.
        caregivers_used: Caregivers with at least one visit.
        wall_s: Wall-clock time of the solve, model building included.
        feasible: Whether the checker found no violation.
        violations: The checker's findings (at most ten).
        error: Why the solver produced nothing, if it failed.
        cpu_s: Processor time the solve got (all threads); well below
            ``wall_s`` for a one-thread solver means the machine was busy.
    """

    day: str
    solver: str
    visits: int
    served: int
    served_urgent: int
    urgent: int
    travel_h: float
    lateness_s: int
    late_visits: int
    continuity_pct: float | None
    caregivers_used: int
    wall_s: float
    feasible: bool
    violations: tuple[str, ...]
    error: str | None = None
    cpu_s: float = 0.0


def generate_day(size: str, seed: int) -> HomecareDay:
    """Generate one day of one region from a seed.

    Args:
        size: ``community``, ``street`` or ``district``.
        seed: Any integer; equal seeds give equal days.

    Returns:
        The day.

    Raises:
        KeyError: On an unknown size.
    """
    num_caregivers, num_visits, num_communities = SIZES[size]
    rng = random.Random(f"homecare-{size}-{seed}")
    communities = _communities(rng, size, num_communities)
    points: list[tuple[float, float]] = []

    def place(centre: tuple[float, float], spread_m: float) -> int:
        points.append(_jitter(rng, centre, spread_m))
        return len(points) - 1

    caregivers: list[DayCaregiver] = []
    caregiver_community: list[int] = []
    for n in range(num_caregivers):
        community = rng.randrange(num_communities)
        home = _jitter(rng, communities[community], 1500.0)
        shift = _pick(rng, [(name, share) for name, (_, _, share) in SHIFTS.items()])
        start_s, end_s, _ = SHIFTS[shift]
        profile = _pick(rng, [(skills, share) for _, skills, share in PROFILES])
        caregivers.append(
            DayCaregiver(
                caregiver_id=f"cg-{n}",
                shift=shift,
                start_location=place(home, 300.0),
                end_location=place(home, 300.0),
                shift_start_s=start_s,
                shift_end_s=end_s,
                skills=profile,
            )
        )
        caregiver_community.append(community)

    visits: list[DayVisit] = []
    elder = 0
    while len(visits) < num_visits:
        community = rng.randrange(num_communities)
        elder_home = place(communities[community], 400.0)
        preferred = rng.random() < PREFERENCE_SHARE
        count = min(1 + (rng.random() < 0.3), num_visits - len(visits))
        for _ in range(count):
            visits.append(
                _visit(
                    rng,
                    len(visits),
                    f"e-{elder}",
                    elder_home,
                    community,
                    caregivers,
                    caregiver_community,
                    preferred=preferred,
                )
            )
        elder += 1

    return HomecareDay(
        name=f"{size}-{seed}",
        size=size,
        seed=seed,
        points=tuple(points),
        travel_s=travel_matrix_s(points),
        caregivers=tuple(caregivers),
        visits=tuple(visits),
    )


def _communities(
    rng: random.Random, size: str, count: int
) -> list[tuple[float, float]]:
    """Community centres: one seat for a street, all urban seats for a district."""
    if size == "district":
        seats = [(lon, lat) for _, lon, lat in URBAN_SEATS]
        return [_jitter(rng, seats[i % len(seats)], 2500.0) for i in range(count)]
    _, lon, lat = rng.choice(URBAN_SEATS)
    if count == 1:
        return [_jitter(rng, (lon, lat), 500.0)]
    return [_jitter(rng, (lon, lat), 1500.0) for _ in range(count)]


def _visit(
    rng: random.Random,
    number: int,
    elder_id: str,
    home: int,
    community: int,
    caregivers: Sequence[DayCaregiver],
    caregiver_community: Sequence[int],
    *,
    preferred: bool,
) -> DayVisit:
    """One visit: service, duration, window, priority and preference."""
    service, skills, durations = _pick(
        rng, [((code, s, d), share) for code, s, d, share in SERVICES]
    )
    duration_s = 60 * rng.choice(durations)
    urgent = rng.random() < URGENT_SHARE
    width_s = 3600 if urgent else 1800 * rng.randint(2, 8)
    # Start times follow demand: heavier in the morning, none past 19:00.
    earliest_s = 1800 * round(rng.triangular(7.5, 19.0, 9.0) * 2)
    latest_s = min(earliest_s + width_s, 20 * 3600 - duration_s)
    earliest_s = min(earliest_s, latest_s - 3600)

    preferred_id = None
    if preferred:
        local = [
            c.caregiver_id
            for c, home_community in zip(caregivers, caregiver_community, strict=True)
            if skills <= c.skills and home_community == community
        ]
        skilled = [c.caregiver_id for c in caregivers if skills <= c.skills]
        candidates = local or skilled
        preferred_id = rng.choice(candidates) if candidates else None

    return DayVisit(
        visit_id=f"v-{number}",
        elder_id=elder_id,
        service=service,
        location=home,
        earliest_s=earliest_s,
        latest_s=latest_s,
        duration_s=duration_s,
        skills=skills,
        priority="urgent" if urgent else "routine",
        preferred_caregiver_id=preferred_id,
        max_lateness_s=0 if urgent else LATENESS_ALLOWED_S.get(service, 0),
    )


def _pick(rng: random.Random, weighted: Sequence[tuple[_T, float]]) -> _T:
    """Draw one item by weight."""
    items = [item for item, _ in weighted]
    weights = [weight for _, weight in weighted]
    return rng.choices(items, weights=weights)[0]


def _jitter(
    rng: random.Random, centre: tuple[float, float], spread_m: float
) -> tuple[float, float]:
    """A point around ``centre``, normally spread with ``spread_m`` metres."""
    lon, lat = centre
    north_m = rng.gauss(0.0, spread_m)
    east_m = rng.gauss(0.0, spread_m)
    lat_out = lat + math.degrees(north_m / EARTH_RADIUS_M)
    lon_out = lon + math.degrees(
        east_m / (EARTH_RADIUS_M * math.cos(math.radians(lat)))
    )
    return (round(lon_out, 6), round(lat_out, 6))


def travel_matrix_s(
    points: Sequence[tuple[float, float]],
) -> tuple[tuple[int, ...], ...]:
    """E-bike travel times between ``(longitude, latitude)`` points, seconds.

    Uses the solver's own travel interface (great-circle distance times a
    detour factor, at a speed), with this benchmark's detour and speed pinned
    so that a change of the solver's defaults does not change the days.
    """
    from solver.travel import GreatCircleTravel, TravelMode

    source = GreatCircleTravel(
        detour_factor=DETOUR_FACTOR,
        speed_m_per_s={TravelMode.E_BIKE: EBIKE_SPEED_M_S},
    )
    return source.matrix_s([(lat, lon) for lon, lat in points], TravelMode.E_BIKE)


def routing_instance(day: HomecareDay) -> RoutingInstance:
    """Describe the day for the checker and VROOM; visits may be left out."""
    return RoutingInstance(
        name=day.name,
        travel=day.travel_s,
        visit_location=tuple(v.location for v in day.visits),
        visit_earliest=tuple(v.earliest_s for v in day.visits),
        visit_latest=tuple(v.latest_s for v in day.visits),
        visit_duration=tuple(v.duration_s for v in day.visits),
        shift_start=tuple(c.shift_start_s for c in day.caregivers),
        shift_end=tuple(c.shift_end_s for c in day.caregivers),
        start_location=tuple(c.start_location for c in day.caregivers),
        end_location=tuple(c.end_location for c in day.caregivers),
        visit_skills=tuple(v.skills for v in day.visits),
        caregiver_skills=tuple(c.skills for c in day.caregivers),
        all_required=False,
        visit_max_lateness=tuple(v.max_lateness_s for v in day.visits),
    )


def solve_ours(
    day: HomecareDay,
    time_limit_s: float,
    seed: int,
    *,
    not_preferred: int | None = None,
) -> ClaimedPlan:
    """Solve the day with our solver and its default weights.

    Continuity of care is on: a visit whose elder prefers a caregiver costs
    the solver's ``not_preferred`` weight when someone else makes it.

    Args:
        day: The day.
        time_limit_s: Budget of the solve in seconds.
        seed: The solver's seed.
        not_preferred: Continuity weight instead of the solver's default;
            0 plans for travel alone, as VROOM does.

    Returns:
        The plan, one route per caregiver in the day's order.
    """
    from solver import (
        Caregiver,
        Priority,
        Problem,
        SolveOptions,
        Visit,
        Weights,
        solve,
    )

    weights = (
        Weights() if not_preferred is None else Weights(not_preferred=not_preferred)
    )
    problem = Problem(
        travel_s=day.travel_s,
        caregivers=tuple(
            Caregiver(
                caregiver_id=c.caregiver_id,
                start_location=c.start_location,
                end_location=c.end_location,
                shift_start_s=c.shift_start_s,
                shift_end_s=c.shift_end_s,
                skills=c.skills,
            )
            for c in day.caregivers
        ),
        visits=tuple(
            Visit(
                visit_id=v.visit_id,
                location=v.location,
                earliest_s=v.earliest_s,
                latest_s=v.latest_s,
                duration_s=v.duration_s,
                skills=v.skills,
                priority=Priority(v.priority),
                preferred_caregiver_ids=(
                    frozenset({v.preferred_caregiver_id})
                    if v.preferred_caregiver_id
                    else frozenset()
                ),
                max_lateness_s=v.max_lateness_s,
                elder_id=v.elder_id,
            )
            for v in day.visits
        ),
        weights=weights,
    )
    plan = solve(problem, SolveOptions(time_limit_s=time_limit_s, seed=seed))

    visit_index = {v.visit_id: i for i, v in enumerate(day.visits)}
    route_of = {route.caregiver_id: route for route in plan.routes}
    routes: list[list[int]] = []
    starts: list[list[int]] = []
    for caregiver in day.caregivers:
        route = route_of.get(caregiver.caregiver_id)
        planned = route.visits if route is not None else ()
        routes.append([visit_index[v.visit_id] for v in planned])
        starts.append([v.start_s for v in planned])
    # The plan counts the start-to-end trip of a caregiver with no visits;
    # the checker, like VROOM, counts travel only on routes with visits.
    travel_s = sum(route.travel_s for route in plan.routes if route.visits)
    return ClaimedPlan(routes=routes, distance=travel_s, starts=starts)


def solve_vroom(
    day: HomecareDay, time_limit_s: float, seed: int, *, threads: int = 1
) -> ClaimedPlan:
    """Solve the day with VROOM: skills, windows, shifts and priorities.

    A visit that may start late gets its window widened by the allowance,
    since VROOM has only hard windows.
    """
    priorities = [VROOM_PRIORITY[v.priority] for v in day.visits]
    instance = routing_instance(day)
    widened = replace(
        instance,
        visit_latest=tuple(instance.latest_allowed(v) for v in range(len(day.visits))),
        visit_max_lateness=(),
    )
    return solve_vroom_instance(
        widened,
        time_limit_s,
        seed,
        priorities=priorities,
        threads=threads,
    )


def evaluate(
    day: HomecareDay, solver: str, claim: ClaimedPlan, wall_s: float
) -> DayResult:
    """Check a plan independently and measure it.

    Args:
        day: The day solved.
        solver: Solver name, for the report.
        claim: The solver's plan.
        wall_s: Wall-clock time of the solve.

    Returns:
        The figures of the plan, from the checker's recomputation.
    """
    report = check_claim(routing_instance(day), claim)
    served = {v for route in claim.routes for v in route}
    urgent = [i for i, v in enumerate(day.visits) if v.priority != "routine"]
    with_preference = [
        (k, v)
        for k, route in enumerate(claim.routes)
        for v in route
        if 0 <= v < len(day.visits) and day.visits[v].preferred_caregiver_id
    ]
    kept = sum(
        day.visits[v].preferred_caregiver_id == day.caregivers[k].caregiver_id
        for k, v in with_preference
    )
    return DayResult(
        day=day.name,
        solver=solver,
        visits=len(day.visits),
        served=report.served,
        served_urgent=sum(i in served for i in urgent),
        urgent=len(urgent),
        travel_h=round(report.distance / 3600, 3),
        lateness_s=report.lateness,
        late_visits=report.late_visits,
        continuity_pct=(
            round(100.0 * kept / len(with_preference), 2) if with_preference else None
        ),
        caregivers_used=report.routes_used,
        wall_s=round(wall_s, 3),
        feasible=report.feasible,
        violations=tuple(v.detail for v in report.violations[:10]),
    )


def run_day(
    day: HomecareDay,
    solver: str,
    time_limit_s: float,
    seed: int,
    *,
    threads: int = 1,
    not_preferred: int | None = None,
) -> DayResult:
    """Solve one day with one solver, timed, and evaluate the plan.

    A solver that raises is recorded as a failed, infeasible run.

    Args:
        day: The day.
        solver: ``ours`` or ``vroom``.
        time_limit_s: Budget in seconds.
        seed: Seed of the solver (VROOM has none).
        threads: Threads VROOM may use.
        not_preferred: Our continuity weight; ``None`` keeps the default.

    Returns:
        The checked figures of the plan.
    """
    started = time.perf_counter()
    cpu_started = time.process_time()
    try:
        if solver == "ours":
            claim = solve_ours(day, time_limit_s, seed, not_preferred=not_preferred)
        elif solver == "vroom":
            claim = solve_vroom(day, time_limit_s, seed, threads=threads)
        else:
            raise ValueError(f"unknown solver {solver!r}")
    except Exception as error:  # noqa: BLE001 - any solver failure is a result
        return DayResult(
            day=day.name,
            solver=solver,
            visits=len(day.visits),
            served=0,
            served_urgent=0,
            urgent=sum(v.priority != "routine" for v in day.visits),
            travel_h=0.0,
            lateness_s=0,
            late_visits=0,
            continuity_pct=None,
            caregivers_used=0,
            wall_s=round(time.perf_counter() - started, 3),
            feasible=False,
            violations=(),
            error=f"{type(error).__name__}: {error}",
        )
    wall_s = time.perf_counter() - started
    cpu_s = round(time.process_time() - cpu_started, 3)
    return replace(evaluate(day, solver, claim, wall_s), cpu_s=cpu_s)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.homecare",
        description="Solve generated home-care days and check every plan.",
    )
    parser.add_argument(
        "--size", choices=[*SIZES, "all"], default="community", help="region size"
    )
    parser.add_argument(
        "--time-limit", type=float, default=10.0, help="seconds per solve"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the day")
    parser.add_argument(
        "--days", type=int, default=1, help="days per size, seeds seed, seed+1, ..."
    )
    parser.add_argument("--json", type=Path, help="write results to this file")
    parser.add_argument("--compare", action="store_true", help="also run VROOM")
    parser.add_argument(
        "--vroom-threads", type=int, default=1, help="threads VROOM may use"
    )
    parser.add_argument(
        "--continuity-weight",
        type=int,
        help="our cost of a visit made by a non-preferred caregiver (default: "
        "the solver's); 0 plans for travel alone",
    )
    parser.add_argument("--plot", type=Path, help="write a figure (PNG)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark from the command line; 1 if any plan is infeasible."""
    args = _parse_args(argv)
    sizes = list(SIZES) if args.size == "all" else [args.size]
    solvers = ["ours", "vroom"] if args.compare else ["ours"]

    results: list[DayResult] = []
    days: list[dict[str, Any]] = []
    print(
        f"{'day':<14} {'solver':<6} {'served':>9} {'urgent':>7} {'travel h':>9} "
        f"{'late s':>6} {'contin %':>8} {'wall s':>7} {'cpu s':>6}  feasible"
    )
    for size in sizes:
        for seed in range(args.seed, args.seed + args.days):
            day = generate_day(size, seed)
            days.append(_describe(day))
            for solver in solvers:
                result = run_day(
                    day,
                    solver,
                    args.time_limit,
                    seed,
                    threads=args.vroom_threads,
                    not_preferred=args.continuity_weight,
                )
                results.append(result)
                print(_format_row(result), flush=True)

    comparison = compare_with_vroom(results)
    for row in comparison:
        print(f"vs vroom: {json.dumps(row)}")
    if args.json:
        payload = {
            "benchmark": "homecare",
            "time_limit_s": args.time_limit,
            "seed": args.seed,
            "vroom_threads": args.vroom_threads,
            "continuity_weight": args.continuity_weight,
            "environment": environment(),
            "travel": {"speed_m_s": EBIKE_SPEED_M_S, "detour": DETOUR_FACTOR},
            "days": days,
            "results": [asdict(r) for r in results],
            "vs_vroom": comparison,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=1) + "\n")
    if args.plot:
        from benchmarks.plot import plot_homecare

        plot_homecare(results, args.plot, title=f"home-care days, {args.time_limit} s")
    return 0 if all(r.feasible for r in results) else 1


def compare_with_vroom(results: Sequence[DayResult]) -> list[dict[str, Any]]:
    """Per day, our plan against VROOM's: served visits and travel.

    ``travel_pct`` is our travel over VROOM's minus one, in percent;
    ``travel_per_visit_pct`` the same per served visit, fairer when the two
    serve different numbers of visits.

    Args:
        results: Runs of ``ours`` and ``vroom`` over the same days.

    Returns:
        One entry per day that both solved feasibly.
    """
    by_key = {(r.day, r.solver): r for r in results}
    rows: list[dict[str, Any]] = []
    for day in dict.fromkeys(r.day for r in results):
        ours, vroom = by_key.get((day, "ours")), by_key.get((day, "vroom"))
        if ours is None or vroom is None or not (ours.feasible and vroom.feasible):
            continue
        per_visit_ours = ours.travel_h / max(1, ours.served)
        per_visit_vroom = vroom.travel_h / max(1, vroom.served)
        rows.append(
            {
                "day": day,
                "served_delta": ours.served - vroom.served,
                "travel_pct": _pct(ours.travel_h, vroom.travel_h),
                "travel_per_visit_pct": _pct(per_visit_ours, per_visit_vroom),
                "continuity_pct": [ours.continuity_pct, vroom.continuity_pct],
                "wall_s": [ours.wall_s, vroom.wall_s],
            }
        )
    return rows


def _pct(ours: float, theirs: float) -> float | None:
    return round(100.0 * (ours / theirs - 1.0), 2) if theirs else None


def _describe(day: HomecareDay) -> dict[str, Any]:
    """The day's shape, for the JSON report."""
    return {
        "day": day.name,
        "caregivers": len(day.caregivers),
        "visits": len(day.visits),
        "elders": len({v.elder_id for v in day.visits}),
        "locations": len(day.points),
        "urgent": sum(v.priority == "urgent" for v in day.visits),
        "with_preference": sum(bool(v.preferred_caregiver_id) for v in day.visits),
        "may_be_late": sum(v.max_lateness_s > 0 for v in day.visits),
        "service_h": round(sum(v.duration_s for v in day.visits) / 3600, 2),
        "shift_h": round(
            sum(c.shift_end_s - c.shift_start_s for c in day.caregivers) / 3600, 2
        ),
    }


def _format_row(result: DayResult) -> str:
    continuity = "-" if result.continuity_pct is None else f"{result.continuity_pct}"
    verdict = (
        "yes" if result.feasible else f"NO {result.error or result.violations[:3]}"
    )
    return (
        f"{result.day:<14} {result.solver:<6} "
        f"{result.served:>4}/{result.visits:<4} "
        f"{result.served_urgent:>3}/{result.urgent:<3} {result.travel_h:>9.2f} "
        f"{result.lateness_s:>6} {continuity:>8} {result.wall_s:>7.2f} "
        f"{result.cpu_s:>6.2f}  {verdict}"
    )


if __name__ == "__main__":
    sys.exit(main())
