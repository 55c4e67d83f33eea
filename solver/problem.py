"""Typed, frozen inputs of a solve: caregivers, visits, weights and options.

A :class:`Problem` is plain data. Times are whole seconds counted from an
origin the caller chooses (start of the day, say); every other time in the
problem and in the returned plan uses the same origin. Locations are indices
into the problem's travel matrix, a square table of whole seconds where
``travel_s[a][b]`` is the time to go from location ``a`` to location ``b``.
The matrix need not be symmetric.

The shape of a solve::

    problem = Problem(
        travel_s=travel_matrix(rows),
        caregivers=(Caregiver("cg-1", 0, 0, 8 * 3600, 16 * 3600),),
        visits=(Visit("v-1", location=1, earliest_s=9 * 3600,
                      latest_s=10 * 3600, duration_s=1800),),
    )
    plan = solve(problem, SolveOptions(time_limit_s=2.0, seed=7))

and the :class:`~solver.plan.Plan` it returns lists per caregiver the
ordered visits with their arrival, start and end, the visits left
unassigned with a reason each, and the statistics of the search.

Malformed input (an unknown location, a window that closes before it opens,
duplicate ids) is a caller's bug and raises :class:`ValueError` when the
object is built. Infeasible or over-full days are not errors: they come
back as unassigned visits.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from solver.plan import Plan

TravelMatrix = tuple[tuple[int, ...], ...]
"""Square table of whole seconds: ``travel_s[from_location][to_location]``."""


def travel_matrix(rows: Iterable[Iterable[int]]) -> TravelMatrix:
    """Freeze any rectangular table of travel times into a :data:`TravelMatrix`.

    Args:
        rows: One row per origin location, each with one entry per
            destination location, in whole seconds (floats are truncated).

    Returns:
        The same table as nested tuples of ints.

    Raises:
        ValueError: If the table is not square or holds a negative time.
    """
    matrix = tuple(tuple(int(value) for value in row) for row in rows)
    size = len(matrix)
    for row in matrix:
        if len(row) != size:
            raise ValueError(f"travel matrix is not square: {size} rows, {len(row)}")
        if row and min(row) < 0:
            raise ValueError("travel matrix holds a negative time")
    return matrix


class Priority(StrEnum):
    """How urgently an order must be served; decides the cost of leaving it out."""

    EMERGENCY = "emergency"
    URGENT = "urgent"
    ROUTINE = "routine"


@dataclass(frozen=True, slots=True)
class Caregiver:
    """A caregiver on shift, seen by the solver as one vehicle.

    Attributes:
        caregiver_id: Stable id of the caregiver.
        start_location: Where the caregiver sets off: the live location when
            re-planning during the day, the shift start location otherwise.
        end_location: Where the shift ends.
        shift_start_s: Earliest departure from ``start_location`` (the shift
            start, or "now" when re-planning).
        shift_end_s: Latest arrival at ``end_location``.
        skills: Skills the caregiver holds.
        max_visits: Most visits the caregiver may make in the shift; ``None``
            means no limit.
        capacity: Largest total :attr:`Visit.demand` the caregiver can carry;
            ``None`` means no limit. A generic load, used by vehicle-routing
            benchmarks more than by home care.
    """

    caregiver_id: str
    start_location: int
    end_location: int
    shift_start_s: int
    shift_end_s: int
    skills: frozenset[str] = frozenset()
    max_visits: int | None = None
    capacity: int | None = None

    def __post_init__(self) -> None:
        if self.shift_end_s < self.shift_start_s:
            raise ValueError(f"caregiver {self.caregiver_id}: shift ends before start")
        if self.max_visits is not None and self.max_visits < 0:
            raise ValueError(f"caregiver {self.caregiver_id}: negative max_visits")
        if self.capacity is not None and self.capacity < 0:
            raise ValueError(f"caregiver {self.caregiver_id}: negative capacity")


@dataclass(frozen=True, slots=True)
class Visit:
    """A visit to plan: one order performed at the elder's home.

    Attributes:
        visit_id: Stable id of the visit (the dispatcher uses the order id).
        location: Index of the elder's home in the travel matrix.
        earliest_s: Earliest start of the time window.
        latest_s: Latest start of the time window.
        duration_s: Time spent at the elder's home.
        skills: Skills the caregiver must hold, all of them.
        priority: Decides the cost of leaving the visit out.
        demand: Load taken from the caregiver's :attr:`Caregiver.capacity`.
        pinned_caregiver_id: An accepted visit stays with this caregiver; the
            solver may still move it within the caregiver's route.
        preferred_caregiver_ids: The elder's usual or preferred caregivers;
            being served by one of them earns the continuity bonus.
        blocked_caregiver_ids: Caregivers who must never serve this visit.
        max_lateness_s: How far past ``latest_s`` the visit may still start,
            at a cost per second (soft lateness); 0 makes the window hard.
        elder_id: The elder the visit is for, if the caller wants it carried.
    """

    visit_id: str
    location: int
    earliest_s: int
    latest_s: int
    duration_s: int
    skills: frozenset[str] = frozenset()
    priority: Priority = Priority.ROUTINE
    demand: int = 0
    pinned_caregiver_id: str | None = None
    preferred_caregiver_ids: frozenset[str] = frozenset()
    blocked_caregiver_ids: frozenset[str] = frozenset()
    max_lateness_s: int = 0
    elder_id: str | None = None

    def __post_init__(self) -> None:
        if self.latest_s < self.earliest_s:
            raise ValueError(f"visit {self.visit_id}: window closes before it opens")
        if self.duration_s < 0 or self.demand < 0 or self.max_lateness_s < 0:
            raise ValueError(f"visit {self.visit_id}: negative amount")

    @property
    def latest_with_lateness_s(self) -> int:
        """Latest start including allowed lateness, in seconds."""
        return self.latest_s + self.max_lateness_s


@dataclass(frozen=True, slots=True)
class Weights:
    """Weights of the objective's terms, all whole numbers.

    The objective is the sum of travel, lateness, left-out penalties, the
    continuity term and the workload term. The defaults make one second of
    travel the unit and keep the penalties for leaving a visit out far above
    any detour, so that a visit is left out only when it cannot be served.

    Attributes:
        travel_per_s: Cost of one second of travel.
        lateness_per_s: Cost of one second of start past a visit's
            ``latest_s`` (only where ``max_lateness_s`` allows it).
        left_out_routine: Cost of leaving a routine visit unassigned.
        left_out_urgent: Cost of leaving an urgent visit unassigned.
        left_out_emergency: Cost of leaving an emergency unassigned; so large
            that an emergency is left out only when no caregiver can serve it.
        left_out_pinned: Cost of leaving out a pinned (accepted) visit.
        not_preferred: Cost of serving a visit that names preferred
            caregivers with a caregiver who is not one of them (the
            continuity bonus, expressed as its opposite). 0 turns it off.
        balance_per_visit: Cost of each visit a caregiver makes beyond the
            fair share (planned visits divided by caregivers, rounded up).
            0, the default, turns workload balance off.
    """

    travel_per_s: int = 1
    lateness_per_s: int = 2
    left_out_routine: int = 100_000
    left_out_urgent: int = 1_000_000
    left_out_emergency: int = 100_000_000
    left_out_pinned: int = 100_000_000
    not_preferred: int = 900
    balance_per_visit: int = 0

    def left_out_cost(self, visit: Visit) -> int:
        """Cost of leaving ``visit`` unassigned, by pinning and priority."""
        by_priority = {
            Priority.ROUTINE: self.left_out_routine,
            Priority.URGENT: self.left_out_urgent,
            Priority.EMERGENCY: self.left_out_emergency,
        }[visit.priority]
        if visit.pinned_caregiver_id is not None:
            return max(by_priority, self.left_out_pinned)
        return by_priority


@dataclass(frozen=True, slots=True)
class Problem:
    """Everything the solver needs to plan one region's day (or what is left).

    Attributes:
        travel_s: Travel matrix in whole seconds; see :func:`travel_matrix`.
        caregivers: Caregivers on shift; their order fixes the route order
            of the plan.
        visits: Visits to plan.
        weights: Weights of the objective.

    Raises:
        ValueError: On duplicate ids, unknown locations or unknown pinned
            caregivers.
    """

    travel_s: TravelMatrix
    caregivers: tuple[Caregiver, ...]
    visits: tuple[Visit, ...]
    weights: Weights = field(default_factory=Weights)

    def __post_init__(self) -> None:
        size = len(self.travel_s)
        caregiver_ids = {c.caregiver_id for c in self.caregivers}
        if len(caregiver_ids) != len(self.caregivers):
            raise ValueError("duplicate caregiver_id")
        if len({v.visit_id for v in self.visits}) != len(self.visits):
            raise ValueError("duplicate visit_id")
        for caregiver in self.caregivers:
            if not (0 <= caregiver.start_location < size) or not (
                0 <= caregiver.end_location < size
            ):
                raise ValueError(f"caregiver {caregiver.caregiver_id}: bad location")
        for visit in self.visits:
            if not 0 <= visit.location < size:
                raise ValueError(f"visit {visit.visit_id}: bad location")
            pinned = visit.pinned_caregiver_id
            if pinned is not None and pinned not in caregiver_ids:
                raise ValueError(f"visit {visit.visit_id}: unknown pinned caregiver")


@dataclass(frozen=True, slots=True)
class SolveOptions:
    """How long and how to search.

    Attributes:
        time_limit_s: Wall-clock budget of the whole solve, in seconds.
        seed: Seed of every random choice; equal seeds with a
            ``solution_limit`` give equal plans.
        solution_limit: Stop the search after this many improving solutions
            (makes the result independent of machine speed); ``None`` means
            only the time limit stops it.
        warm_start: A previous plan to start from; visits and caregivers it
            names that are no longer in the problem are ignored.
        decompose_above_visits: Problems with more visits than this are split
            into clusters solved one after another (see
            :mod:`solver.decompose`); 0 never splits.
        part_visits: Target number of visits per part when splitting.
            Small parts search best: on the 1,600-visit home-care district
            at 30 s, parts of 60 served 1,520 visits, parts of 200 about
            1,490.
    """

    time_limit_s: float
    seed: int = 0
    solution_limit: int | None = None
    warm_start: Plan | None = None
    decompose_above_visits: int = 150
    part_visits: int = 60

    def __post_init__(self) -> None:
        if self.time_limit_s <= 0:
            raise ValueError("time_limit_s must be positive")
        if self.solution_limit is not None and self.solution_limit < 1:
            raise ValueError("solution_limit must be at least 1")
        if self.part_visits < 1:
            raise ValueError("part_visits must be at least 1")
