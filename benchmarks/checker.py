"""Independent feasibility checker for routing plans.

The benchmarks trust no solver's own account of its plan, ours included. This
module recomputes everything from the instance data and the visit sequences
alone: who serves which visit, when each visit can start at the earliest,
whether that is inside its time window and its caregiver's shift, skills,
capacity, and the total distance. It imports nothing from ``solver/`` on
purpose, so that a bug there cannot hide itself here.

The model is the one both benchmarks share: caregivers (vehicles) leave a
start location no earlier than their shift start, travel along an integer
travel matrix, wait when early, serve each visit for its duration and must be
back at their end location by their shift end. A visit may start past its
latest start only within its lateness allowance, if it has one; such lateness
is counted, not refused. A Solomon instance is the case where every caregiver
starts and ends at the depot, travel time equals distance and every window
is hard.

Typical use::

    report = check_claim(instance, ClaimedPlan(routes, distance=plan_distance))
    if not report.feasible:
        print(report.violations)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum


class ViolationKind(StrEnum):
    """The rule a plan breaks."""

    WINDOW = "window"
    """A visit starts after the latest start of its time window."""
    SHIFT = "shift"
    """A caregiver is back at the end location after the shift ends."""
    CAPACITY = "capacity"
    """The demand served on one route exceeds the capacity."""
    SKILL = "skill"
    """A caregiver lacks a skill the visit needs."""
    MISSING = "missing"
    """A visit that must be served is on no route."""
    DUPLICATE = "duplicate"
    """A visit appears more than once across the routes."""
    UNKNOWN = "unknown"
    """A route names a visit or a caregiver the instance does not have."""
    FLEET = "fleet"
    """More routes than caregivers."""
    DISTANCE = "distance"
    """The distance the solver claims differs from the recomputed one."""
    SCHEDULE = "schedule"
    """A start time the solver claims is impossible or outside the window."""


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule, with enough detail to find it in the plan.

    Attributes:
        kind: The rule broken.
        detail: A human-readable explanation with the numbers involved.
        caregiver: Index of the route's caregiver, when the rule is per route.
        visit: Index of the visit involved, when there is one.
    """

    kind: ViolationKind
    detail: str
    caregiver: int | None = None
    visit: int | None = None


@dataclass(frozen=True, slots=True)
class RoutingInstance:
    """What a plan is checked against, in integer units.

    Locations are indices into ``travel``; times are integers on the same
    scale as ``travel`` (seconds for home-care days, tenths of a unit for
    Solomon instances). Visits are numbered ``0 .. len(visit_location) - 1``
    and caregivers ``0 .. len(shift_start) - 1``.

    Attributes:
        name: Instance name, for reports.
        travel: Square travel matrix; ``travel[a][b]`` is both the time and
            the distance from location ``a`` to ``b``.
        visit_location: Location of each visit.
        visit_earliest: Earliest start of each visit's time window.
        visit_latest: Latest start of each visit's time window.
        visit_duration: Service duration of each visit.
        shift_start: Earliest time each caregiver may leave its start.
        shift_end: Latest time each caregiver may be back at its end.
        start_location: Start location of each caregiver.
        end_location: End location of each caregiver.
        visit_demand: Demand of each visit; empty when capacity is unused.
        capacity: Capacity of every caregiver; ``None`` when unused.
        visit_skills: Skills each visit needs; empty when skills are unused.
        caregiver_skills: Skills each caregiver holds; empty when unused.
        all_required: Whether every visit must be served (Solomon) or may be
            left out (home-care days, where left-out visits are reported).
        visit_max_lateness: How far past its latest start each visit may
            still start (soft lateness, counted but allowed); empty means
            every window is hard.
    """

    name: str
    travel: Sequence[Sequence[int]]
    visit_location: Sequence[int]
    visit_earliest: Sequence[int]
    visit_latest: Sequence[int]
    visit_duration: Sequence[int]
    shift_start: Sequence[int]
    shift_end: Sequence[int]
    start_location: Sequence[int]
    end_location: Sequence[int]
    visit_demand: Sequence[int] = ()
    capacity: int | None = None
    visit_skills: Sequence[frozenset[str]] = ()
    caregiver_skills: Sequence[frozenset[str]] = ()
    all_required: bool = True
    visit_max_lateness: Sequence[int] = ()

    def latest_allowed(self, visit: int) -> int:
        """Latest start of ``visit`` that breaks no rule, lateness included."""
        allowance = self.visit_max_lateness[visit] if self.visit_max_lateness else 0
        return self.visit_latest[visit] + allowance

    @property
    def num_visits(self) -> int:
        """Number of visits in the instance."""
        return len(self.visit_location)

    @property
    def num_caregivers(self) -> int:
        """Number of caregivers (vehicles) available."""
        return len(self.shift_start)


@dataclass(frozen=True, slots=True)
class ClaimedPlan:
    """A plan as a solver reports it, before the checker has looked at it.

    Attributes:
        routes: One visit sequence per caregiver, route ``k`` driven by
            caregiver ``k``; unused caregivers have empty sequences.
        distance: Total distance the solver reports, if it reports one.
        starts: Start times the solver reports, one sequence per route,
            if it reports them.
    """

    routes: Sequence[Sequence[int]]
    distance: int | None = None
    starts: Sequence[Sequence[int]] | None = None


@dataclass(frozen=True, slots=True)
class RouteTiming:
    """The earliest schedule of one route, as recomputed by the checker.

    Attributes:
        caregiver: Index of the caregiver driving the route.
        starts: Start of service at each visit, in route order.
        end: Arrival time back at the end location.
        travel: Total travel along the route, start and end legs included.
    """

    caregiver: int
    starts: tuple[int, ...]
    end: int
    travel: int


@dataclass(frozen=True, slots=True)
class CheckReport:
    """The verdict on one plan.

    Attributes:
        instance: Name of the instance checked.
        distance: Total travel recomputed over all routes.
        routes_used: Number of non-empty routes.
        served: Number of distinct visits served.
        lateness: Total start time past the windows' latest starts, at the
            earliest schedule; only visits with a lateness allowance can be
            late in a feasible plan.
        late_visits: Number of visits that start past their latest start.
        timings: The recomputed schedule of each non-empty route.
        violations: Every broken rule; empty when the plan is feasible.
    """

    instance: str
    distance: int
    routes_used: int
    served: int
    lateness: int
    late_visits: int = 0
    timings: tuple[RouteTiming, ...] = ()
    violations: tuple[Violation, ...] = field(default=())

    @property
    def feasible(self) -> bool:
        """Whether the plan breaks no rule."""
        return not self.violations


def check_plan(
    instance: RoutingInstance,
    routes: Sequence[tuple[int, Sequence[int]]],
    *,
    claimed_distance: int | None = None,
    claimed_starts: Sequence[Sequence[int]] | None = None,
) -> CheckReport:
    """Check a plan against an instance, trusting nothing the solver says.

    Each route is served at the earliest: leave at the shift start, wait when
    early at a visit, start service at ``max(arrival, earliest)``. Any start
    after the window's latest start is a violation, as is a late return.

    Args:
        instance: The instance the plan claims to solve.
        routes: One ``(caregiver, visits)`` pair per route, visits in order of
            service. Empty routes are allowed and ignored.
        claimed_distance: Total distance the solver reports; compared exactly
            with the recomputed one when given.
        claimed_starts: Start times the solver reports, one sequence per route
            in the same order as ``routes``; when given, each must lie inside
            its window and leave time for the previous visit and the travel.

    Returns:
        The report, with every violation found.
    """
    violations: list[Violation] = []
    timings: list[RouteTiming] = []
    seen: dict[int, int] = {}
    used_caregivers: set[int] = set()
    total_travel = 0
    lateness = 0
    late_visits = 0

    for route_index, (caregiver, visits) in enumerate(routes):
        if not visits:
            continue
        if not 0 <= caregiver < instance.num_caregivers:
            violations.append(
                Violation(
                    ViolationKind.UNKNOWN,
                    f"route {route_index} names unknown caregiver {caregiver}",
                    caregiver=caregiver,
                )
            )
            continue
        if caregiver in used_caregivers:
            violations.append(
                Violation(
                    ViolationKind.FLEET,
                    f"caregiver {caregiver} drives more than one route",
                    caregiver=caregiver,
                )
            )
        used_caregivers.add(caregiver)
        known = [v for v in visits if 0 <= v < instance.num_visits]
        violations.extend(
            Violation(
                ViolationKind.UNKNOWN,
                f"route {route_index} names unknown visit {v}",
                caregiver=caregiver,
                visit=v,
            )
            for v in visits
            if not 0 <= v < instance.num_visits
        )
        for v in known:
            seen[v] = seen.get(v, 0) + 1
        timing, route_violations, route_lateness = _time_route(
            instance, caregiver, known
        )
        timings.append(timing)
        violations.extend(route_violations)
        violations.extend(_check_load(instance, caregiver, known))
        violations.extend(_check_skills(instance, caregiver, known))
        if claimed_starts is not None and route_index < len(claimed_starts):
            violations.extend(
                _check_claimed_starts(
                    instance, caregiver, known, claimed_starts[route_index]
                )
            )
        total_travel += timing.travel
        lateness += route_lateness
        late_visits += sum(
            start > instance.visit_latest[v]
            for v, start in zip(known, timing.starts, strict=True)
        )

    violations.extend(
        Violation(
            ViolationKind.DUPLICATE,
            f"visit {v} is served {count} times",
            visit=v,
        )
        for v, count in sorted(seen.items())
        if count > 1
    )
    if instance.all_required:
        violations.extend(
            Violation(ViolationKind.MISSING, f"visit {v} is not served", visit=v)
            for v in range(instance.num_visits)
            if v not in seen
        )
    if claimed_distance is not None and claimed_distance != total_travel:
        violations.append(
            Violation(
                ViolationKind.DISTANCE,
                f"claimed distance {claimed_distance} but the routes "
                f"measure {total_travel}",
            )
        )

    return CheckReport(
        instance=instance.name,
        distance=total_travel,
        routes_used=len(timings),
        served=len(seen),
        lateness=lateness,
        late_visits=late_visits,
        timings=tuple(timings),
        violations=tuple(violations),
    )


def check_claim(instance: RoutingInstance, claim: ClaimedPlan) -> CheckReport:
    """Check a solver's claimed plan: routes, and distance and starts if given.

    Args:
        instance: The instance the plan claims to solve.
        claim: The solver's answer.

    Returns:
        The report of :func:`check_plan`.
    """
    return check_plan(
        instance,
        list(enumerate(claim.routes)),
        claimed_distance=claim.distance,
        claimed_starts=claim.starts,
    )


def _time_route(
    instance: RoutingInstance, caregiver: int, visits: Sequence[int]
) -> tuple[RouteTiming, list[Violation], int]:
    """Recompute the earliest schedule of one route and its window breaches."""
    violations: list[Violation] = []
    travel = instance.travel
    location = instance.start_location[caregiver]
    clock = instance.shift_start[caregiver]
    travelled = 0
    lateness = 0
    starts: list[int] = []

    for v in visits:
        leg = travel[location][instance.visit_location[v]]
        travelled += leg
        start = max(clock + leg, instance.visit_earliest[v])
        lateness += max(0, start - instance.visit_latest[v])
        if start > instance.latest_allowed(v):
            violations.append(
                Violation(
                    ViolationKind.WINDOW,
                    f"visit {v} starts at {start} after its latest allowed "
                    f"start {instance.latest_allowed(v)}",
                    caregiver=caregiver,
                    visit=v,
                )
            )
        starts.append(start)
        clock = start + instance.visit_duration[v]
        location = instance.visit_location[v]

    leg = travel[location][instance.end_location[caregiver]]
    travelled += leg
    end = clock + leg
    if end > instance.shift_end[caregiver]:
        violations.append(
            Violation(
                ViolationKind.SHIFT,
                f"caregiver {caregiver} is back at {end} after the shift "
                f"end {instance.shift_end[caregiver]}",
                caregiver=caregiver,
            )
        )
    timing = RouteTiming(caregiver, tuple(starts), end, travelled)
    return timing, violations, lateness


def _check_load(
    instance: RoutingInstance, caregiver: int, visits: Sequence[int]
) -> list[Violation]:
    """Refuse a route whose summed demand exceeds the capacity."""
    if instance.capacity is None or not instance.visit_demand:
        return []
    load = sum(instance.visit_demand[v] for v in visits)
    if load <= instance.capacity:
        return []
    return [
        Violation(
            ViolationKind.CAPACITY,
            f"caregiver {caregiver} carries {load} over capacity {instance.capacity}",
            caregiver=caregiver,
        )
    ]


def _check_skills(
    instance: RoutingInstance, caregiver: int, visits: Sequence[int]
) -> list[Violation]:
    """Refuse visits whose skills the route's caregiver does not hold."""
    if not instance.visit_skills or not instance.caregiver_skills:
        return []
    held = instance.caregiver_skills[caregiver]
    return [
        Violation(
            ViolationKind.SKILL,
            f"caregiver {caregiver} lacks {sorted(instance.visit_skills[v] - held)} "
            f"for visit {v}",
            caregiver=caregiver,
            visit=v,
        )
        for v in visits
        if not instance.visit_skills[v] <= held
    ]


def _check_claimed_starts(
    instance: RoutingInstance,
    caregiver: int,
    visits: Sequence[int],
    starts: Sequence[int],
) -> list[Violation]:
    """Refuse claimed start times that are out of window or unreachable."""
    if len(starts) != len(visits):
        return [
            Violation(
                ViolationKind.SCHEDULE,
                f"caregiver {caregiver} has {len(starts)} start times for "
                f"{len(visits)} visits",
                caregiver=caregiver,
            )
        ]
    violations: list[Violation] = []
    location = instance.start_location[caregiver]
    ready = instance.shift_start[caregiver]
    for v, start in zip(visits, starts, strict=True):
        reachable = ready + instance.travel[location][instance.visit_location[v]]
        earliest, latest = instance.visit_earliest[v], instance.latest_allowed(v)
        if start < reachable or not earliest <= start <= latest:
            violations.append(
                Violation(
                    ViolationKind.SCHEDULE,
                    f"visit {v} claimed to start at {start}; reachable from "
                    f"{reachable}, window [{earliest}, {latest}]",
                    caregiver=caregiver,
                    visit=v,
                )
            )
        ready = start + instance.visit_duration[v]
        location = instance.visit_location[v]
    return violations
