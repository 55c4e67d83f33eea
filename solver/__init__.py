"""Pure optimisation of home-care plans with OR-Tools.

Give :func:`solve` a :class:`Problem` (caregivers on shift, visits with time
windows, skills and priorities, a travel matrix) and :class:`SolveOptions`;
get back a :class:`Plan` with per caregiver the ordered visits, the
unassigned visits with a reason each, and statistics. The package does no
I/O and imports nothing else of ours.

The modules, in the order a solve uses them:

- :mod:`solver.problem` and :mod:`solver.plan`: the typed, frozen inputs
  and outputs (the public API);
- :mod:`solver.screening`: who may serve each visit, and the reasons for
  visits nobody can serve;
- :mod:`solver.index_map` and :mod:`solver.model`: the OR-Tools routing
  model, one ``add_<rule>`` function per rule family;
- :mod:`solver.search` and :mod:`solver.ruin`: construction, ruin and
  recreate, and OR-Tools descents under the time limit;
- :mod:`solver.decode`: schedules and prices the routes found;
- :mod:`solver.decompose`: splits districts into parts;
- :mod:`solver.insertion`: the dispatcher's fast path, no OR-Tools;
- :mod:`solver.vendor`: vendor orders to vendors (min-cost flow);
- :mod:`solver.travel`: travel-time matrices behind one protocol.

Limitation: plans are as good as the search finds within the time limit,
and on a loaded machine it finds less. Measured with benchmarks/solomon.py
on all 56 Solomon instances (commit 82d7f5b, two shared cores with a load
average of 6-9): mean distance gap to the best known 1.59 % at 5 s (one
instance above 5 %), 4.06 % at 1 s; in the same runs PyVRP had 0.26 % and
1.18 %, VROOM 2.60 % and 12.5 %. On the generated 1,600-visit home-care
district at 30 s the plan serves about 1,520 visits where VROOM serves
1,563, with a quarter less travel. An urgent visit displaces at most one
less important visit when repairing; chains of displacements across
district parts are not tried. Workload balance counts visits, not hours.
Travel times are estimates unless a road router is plugged in (see
:mod:`solver.travel`).
"""

from solver.insertion import (
    CurrentRoute,
    Insertion,
    InsertionIndex,
    InsertionResult,
    Rejection,
    RejectionReason,
)
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
from solver.travel import CachedTravel, GreatCircleTravel, TravelMode, TravelTimeSource
from solver.vendor import (
    UnmatchedOrder,
    UnmatchedReason,
    Vendor,
    VendorMatch,
    VendorMatching,
    VendorOrder,
    VendorWeights,
    match_vendor_orders,
)

__all__ = [
    "CachedTravel",
    "Caregiver",
    "CurrentRoute",
    "GreatCircleTravel",
    "Insertion",
    "InsertionIndex",
    "InsertionResult",
    "ObjectiveTerms",
    "Plan",
    "PlannedVisit",
    "Priority",
    "Problem",
    "Rejection",
    "RejectionReason",
    "Route",
    "SearchStrategy",
    "SolveOptions",
    "SolveStats",
    "SolveStatus",
    "TravelMatrix",
    "TravelMode",
    "TravelTimeSource",
    "Unassigned",
    "UnassignedReason",
    "UnmatchedOrder",
    "UnmatchedReason",
    "Vendor",
    "VendorMatch",
    "VendorMatching",
    "VendorOrder",
    "VendorWeights",
    "Visit",
    "Weights",
    "match_vendor_orders",
    "solve",
    "travel_matrix",
]
