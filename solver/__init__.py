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

__all__ = [
    "Caregiver",
    "ObjectiveTerms",
    "Plan",
    "PlannedVisit",
    "Priority",
    "Problem",
    "Route",
    "SolveOptions",
    "SolveStats",
    "SolveStatus",
    "TravelMatrix",
    "Unassigned",
    "UnassignedReason",
    "Visit",
    "Weights",
    "travel_matrix",
]
