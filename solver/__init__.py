"""Pure optimisation of home-care plans with OR-Tools.

Give :func:`solve` a :class:`Problem` (caregivers on shift, visits with time
windows, skills and priorities, a travel matrix) and :class:`SolveOptions`;
get back a :class:`Plan` with per caregiver the ordered visits, the
unassigned visits with a reason each, and statistics. The package does no
I/O and imports nothing else of ours.
"""

from solver.plan import (
    ObjectiveTerms,
    Plan,
    PlannedVisit,
    Route,
    SolveStats,
    SolveStatus,
    Unassigned,
    UnassignedReason,
)
from solver.problem import (
    Caregiver,
    Priority,
    Problem,
    SolveOptions,
    TravelMatrix,
    Visit,
    Weights,
    travel_matrix,
)
from solver.search import SearchStrategy
from solver.solve import solve

__all__ = [
    "Caregiver",
    "ObjectiveTerms",
    "Plan",
    "PlannedVisit",
    "Priority",
    "Problem",
    "Route",
    "SearchStrategy",
    "SolveOptions",
    "SolveStats",
    "SolveStatus",
    "TravelMatrix",
    "Unassigned",
    "UnassignedReason",
    "Visit",
    "Weights",
    "solve",
    "travel_matrix",
]
