"""The result of a solve: routes, unassigned visits and statistics.

A :class:`Plan` holds one :class:`Route` per caregiver of the problem, in the
problem's caregiver order (a caregiver with nothing to do has an empty
route), the visits that could not be planned with an
:class:`UnassignedReason` each, and :class:`SolveStats`. Times use the
problem's origin, in whole seconds.

Reasons, from the most to the least fundamental:

- ``no_skilled_caregiver``: no caregiver on shift holds all the skills.
- ``no_allowed_caregiver``: skilled caregivers exist, but each is blocked
  for this elder (or the visit is pinned to one who cannot take it).
- ``no_shift_covers_window``: no allowed caregiver can reach the elder's
  home inside the time window and still end the shift in time.
- ``capacity``: caregivers could serve it alone, but their time, capacity
  or maximum number of visits is taken by the visits of the plan.
- ``left_out_for_cost``: it would still fit in the plan, but serving it
  there would cost more than its penalty.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class UnassignedReason(StrEnum):
    """Why a visit is not in the plan."""

    NO_SKILLED_CAREGIVER = "no_skilled_caregiver"
    NO_ALLOWED_CAREGIVER = "no_allowed_caregiver"
    NO_SHIFT_COVERS_WINDOW = "no_shift_covers_window"
    CAPACITY = "capacity"
    LEFT_OUT_FOR_COST = "left_out_for_cost"


class SolveStatus(StrEnum):
    """Outcome of the search.

    ``feasible``: a plan was found (the usual outcome; the time or solution
    limit ended the search). ``optimal``: the search proved the plan
    optimal (only tiny problems). ``no_solution``: the engine found nothing
    within its limits; the plan is our greedy insertion alone. ``empty``: there was
    nothing to plan (no visits, or no caregivers).
    """

    FEASIBLE = "feasible"
    OPTIMAL = "optimal"
    NO_SOLUTION = "no_solution"
    EMPTY = "empty"


@dataclass(frozen=True, slots=True)
class PlannedVisit:
    """One visit in a caregiver's route.

    Attributes:
        visit_id: The visit.
        arrival_s: When the caregiver arrives at the elder's home.
        start_s: When the visit starts (arrival, or later when the caregiver
            waits for the window to open).
        end_s: When the visit ends (start plus duration).
        lateness_s: Seconds past the window's latest start (soft lateness).
    """

    visit_id: str
    arrival_s: int
    start_s: int
    end_s: int
    lateness_s: int = 0


@dataclass(frozen=True, slots=True)
class Route:
    """Per caregiver, the ordered visits of the plan.

    Attributes:
        caregiver_id: The caregiver.
        visits: Visits in the order they are made.
        travel_s: Total travel time from start location to end location.
        departure_s: When the caregiver leaves the start location.
        return_s: When the caregiver reaches the shift end location.
    """

    caregiver_id: str
    visits: tuple[PlannedVisit, ...]
    travel_s: int
    departure_s: int
    return_s: int

    @property
    def visit_ids(self) -> tuple[str, ...]:
        """Ids of the route's visits, in order."""
        return tuple(v.visit_id for v in self.visits)


@dataclass(frozen=True, slots=True)
class Unassigned:
    """A visit the plan leaves out, and why."""

    visit_id: str
    reason: UnassignedReason


@dataclass(frozen=True, slots=True)
class ObjectiveTerms:
    """The objective split into its weighed terms (each already weighted).

    Attributes:
        travel: Travel cost.
        lateness: Cost of starting visits past their latest start.
        left_out: Penalties of the unassigned visits.
        continuity: Cost of visits served by a caregiver the elder does not
            prefer.
        balance: Cost of visits beyond a caregiver's fair share.
    """

    travel: int = 0
    lateness: int = 0
    left_out: int = 0
    continuity: int = 0
    balance: int = 0

    @property
    def total(self) -> int:
        """Sum of the terms."""
        return (
            self.travel + self.lateness + self.left_out + self.continuity + self.balance
        )


@dataclass(frozen=True, slots=True)
class SolveStats:
    """Statistics of one solve.

    Attributes:
        status: Outcome of the search.
        objective: Objective of the returned plan (sum of ``terms``).
        terms: The objective by term.
        solve_time_s: Wall-clock time of the solve, in seconds.
        solutions_found: Improving solutions found by the search.
        seed: The seed used.
        parts: Number of parts solved separately (1 unless decomposed).
    """

    status: SolveStatus
    objective: int
    terms: ObjectiveTerms
    solve_time_s: float
    solutions_found: int
    seed: int
    parts: int = 1


@dataclass(frozen=True, slots=True)
class Plan:
    """Per caregiver the ordered visits, the unassigned visits and statistics.

    Attributes:
        routes: One route per caregiver, in the problem's caregiver order.
        unassigned: Visits left out, in the problem's visit order.
        stats: Statistics of the solve.
    """

    routes: tuple[Route, ...]
    unassigned: tuple[Unassigned, ...]
    stats: SolveStats

    def route_of(self, caregiver_id: str) -> Route | None:
        """The route of ``caregiver_id``, or ``None`` if the plan has none."""
        for route in self.routes:
            if route.caregiver_id == caregiver_id:
                return route
        return None

    @property
    def planned_visit_ids(self) -> frozenset[str]:
        """Ids of every visit the plan serves."""
        return frozenset(v.visit_id for r in self.routes for v in r.visits)

    @property
    def travel_s(self) -> int:
        """Total travel of all routes, in seconds."""
        return sum(r.travel_s for r in self.routes)
