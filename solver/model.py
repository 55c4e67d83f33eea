"""The OR-Tools routing model: one ``add_<rule>`` function per rule family.

:func:`build_model` creates the routing model for the visits that survived
screening (see :mod:`solver.screening`) and calls each ``add_`` function in
turn. Each function states its rule in the words of the glossary; together
they are the whole model of DESIGN section 6. Every transit is registered as
a matrix or a vector, never as a Python callback: OR-Tools evaluates those
natively, several times faster.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ortools.constraint_solver import pywrapcp

from solver.index_map import IndexMap
from solver.problem import Problem, Visit

TIME = "time"
VISITS = "visits"
LOAD = "load"


@dataclass(slots=True)
class Model:
    """A built routing model and what is needed to search and decode it.

    Attributes:
        routing: The OR-Tools routing model.
        index_map: Conversions between routing indices and our ids.
        travel_rows: Travel seconds between nodes (visits, then depots).
        problem: The problem the model was built from.
    """

    routing: pywrapcp.RoutingModel
    index_map: IndexMap
    travel_rows: list[list[int]]
    problem: Problem


def horizon_s(problem: Problem) -> int:
    """Latest moment any caregiver may still be working, in seconds."""
    ends = [c.shift_end_s for c in problem.caregivers]
    latest = [v.latest_with_lateness_s + v.duration_s for v in problem.visits]
    return max([*ends, *latest, 0])


def add_travel_cost(model: Model, problem: Problem) -> None:
    """Travel costs: each second a caregiver travels costs ``travel_per_s``."""
    weight = problem.weights.travel_per_s
    rows = [[weight * t for t in row] for row in model.travel_rows]
    callback = model.routing.RegisterTransitMatrix(rows)
    model.routing.SetArcCostEvaluatorOfAllVehicles(callback)


def add_time_windows(model: Model, problem: Problem) -> None:
    """Time windows and shifts.

    A caregiver leaves the start location no earlier than the shift start,
    travels, may wait for a visit's time window to open, stays the visit's
    duration, and reaches the shift's end location no later than the shift
    end. Each visit starts within its time window, or up to
    ``max_lateness_s`` past it where the visit allows soft lateness.
    """
    routing, index_map = model.routing, model.index_map
    durations = [v.duration_s for v in index_map.visits]
    durations += [0] * (index_map.num_nodes - index_map.num_visits)
    rows = [[durations[a] + t for t in row] for a, row in enumerate(model.travel_rows)]
    callback = routing.RegisterTransitMatrix(rows)
    horizon = horizon_s(problem)
    routing.AddDimension(callback, horizon, horizon, False, TIME)
    time = routing.GetDimensionOrDie(TIME)

    for node, visit in enumerate(index_map.visits):
        cumul = time.CumulVar(index_map.index_of_node(node))
        cumul.SetRange(visit.earliest_s, visit.latest_with_lateness_s)
    for vehicle, caregiver in enumerate(index_map.caregivers):
        shift = (caregiver.shift_start_s, caregiver.shift_end_s)
        time.CumulVar(routing.Start(vehicle)).SetRange(*shift)
        time.CumulVar(routing.End(vehicle)).SetRange(*shift)


def add_lateness(model: Model, problem: Problem) -> None:
    """Soft lateness: each second a visit starts past its time window costs.

    Only visits with ``max_lateness_s > 0`` may start late at all (see
    :func:`add_time_windows`); they pay ``lateness_per_s`` per second late.
    """
    time = model.routing.GetDimensionOrDie(TIME)
    for node, visit in enumerate(model.index_map.visits):
        if visit.max_lateness_s > 0:
            index = model.index_map.index_of_node(node)
            time.SetCumulVarSoftUpperBound(
                index, visit.latest_s, problem.weights.lateness_per_s
            )


def add_allowed_caregivers(
    model: Model, allowed: Sequence[Sequence[str]], problem: Problem
) -> None:
    """Skills, blocked and pinned caregivers decide who may serve a visit.

    A caregiver may serve a visit only if the caregiver holds all of the
    visit's skills and is not blocked by the elder; a pinned visit may be
    served only by its caregiver. ``allowed`` lists, per visit node, the
    caregivers left after those rules (computed by screening).
    """
    index_map = model.index_map
    everyone = index_map.num_vehicles
    for node, caregiver_ids in enumerate(allowed):
        if len(caregiver_ids) == everyone:
            continue
        vehicles = [index_map.vehicle_of_caregiver(c) for c in caregiver_ids]
        # SetAllowedVehiclesForIndex rejects every Python sequence in the
        # OR-Tools 9.15 bindings; restricting the vehicle variable is the
        # same rule (-1 keeps the visit free to be left out).
        index = index_map.index_of_node(node)
        model.routing.VehicleVar(index).SetValues([-1, *vehicles])


def add_max_visits(model: Model, problem: Problem) -> None:
    """A caregiver makes at most ``max_visits`` visits in a shift.

    Also builds the visit-count dimension that workload balance weighs.
    """
    index_map = model.index_map
    needed = problem.weights.balance_per_visit > 0 or any(
        c.max_visits is not None for c in index_map.caregivers
    )
    if not needed:
        return
    ones = [1] * index_map.num_visits
    ones += [0] * (index_map.num_nodes - index_map.num_visits)
    callback = model.routing.RegisterUnaryTransitVector(ones)
    limits = [
        index_map.num_visits if c.max_visits is None else c.max_visits
        for c in index_map.caregivers
    ]
    model.routing.AddDimensionWithVehicleCapacity(callback, 0, limits, True, VISITS)


def add_capacity(model: Model, problem: Problem) -> None:
    """The visits of a caregiver's route demand no more than its capacity."""
    index_map = model.index_map
    if not any(c.capacity is not None for c in index_map.caregivers):
        return
    demands = [v.demand for v in index_map.visits]
    total = sum(demands)
    demands += [0] * (index_map.num_nodes - index_map.num_visits)
    callback = model.routing.RegisterUnaryTransitVector(demands)
    capacities = [
        total if c.capacity is None else c.capacity for c in index_map.caregivers
    ]
    model.routing.AddDimensionWithVehicleCapacity(callback, 0, capacities, True, LOAD)


def add_left_out_penalties(model: Model, problem: Problem) -> None:
    """Any visit may be left out, at a penalty that grows with priority.

    Emergencies and pinned visits carry penalties far above any travel, so
    they are left out only when no allowed caregiver can serve them.
    """
    index_map = model.index_map
    for node, visit in enumerate(index_map.visits):
        penalty = problem.weights.left_out_cost(visit)
        model.routing.AddDisjunction([index_map.index_of_node(node)], penalty)


def add_continuity(model: Model, problem: Problem) -> None:
    """Continuity of care: the elder's preferred caregivers are favoured.

    A visit that names preferred caregivers costs ``not_preferred`` when
    served by anyone else. The cost is charged on the arc leaving the visit,
    so each caregiver gets its own arc-cost matrix (travel plus those
    charges); call after :func:`add_travel_cost`, which it overrides.

    A count dimension with per-caregiver transits would be lighter, but in
    OR-Tools 9.15 it made ``ReadAssignmentFromRoutes`` refuse feasible
    routes, which the search relies on.
    """
    weight = problem.weights.not_preferred
    index_map = model.index_map
    if weight <= 0 or not any(v.preferred_caregiver_ids for v in index_map.visits):
        return
    travel_weight = problem.weights.travel_per_s
    base = [[travel_weight * t for t in row] for row in model.travel_rows]
    callbacks: dict[tuple[int, ...], int] = {}
    for vehicle, caregiver in enumerate(index_map.caregivers):
        charged = tuple(
            node
            for node, visit in enumerate(index_map.visits)
            if _not_preferred(visit, caregiver.caregiver_id)
        )
        if charged not in callbacks:
            rows = list(base)
            for node in charged:
                rows[node] = [cost + weight for cost in base[node]]
            callbacks[charged] = model.routing.RegisterTransitMatrix(rows)
        model.routing.SetArcCostEvaluatorOfVehicle(callbacks[charged], vehicle)


def _not_preferred(visit: Visit, caregiver_id: str) -> bool:
    return bool(visit.preferred_caregiver_ids) and (
        caregiver_id not in visit.preferred_caregiver_ids
    )


def fair_share(num_visits: int, num_caregivers: int) -> int:
    """Visits per caregiver beyond which workload balance starts to cost."""
    return math.ceil(num_visits / max(num_caregivers, 1))


def add_workload_balance(model: Model, problem: Problem) -> None:
    """Workload balance: each visit beyond a caregiver's fair share costs.

    The fair share is the problem's visits divided by its caregivers,
    rounded up; each visit above it costs ``balance_per_visit``.
    """
    weight = problem.weights.balance_per_visit
    if weight <= 0:
        return
    index_map = model.index_map
    share = fair_share(len(problem.visits), len(problem.caregivers))
    visits = model.routing.GetDimensionOrDie(VISITS)
    for vehicle in range(index_map.num_vehicles):
        visits.SetCumulVarSoftUpperBound(model.routing.End(vehicle), share, weight)


def build_model(
    problem: Problem, visits: Sequence[Visit], allowed: Sequence[Sequence[str]]
) -> Model:
    """Build the routing model of ``problem`` restricted to ``visits``.

    Args:
        problem: The problem.
        visits: Visits that enter the model (screening removed the others).
        allowed: Per entry of ``visits``, the ids of caregivers allowed to
            serve it.

    Returns:
        The model, ready for :mod:`solver.search`.
    """
    index_map = IndexMap(problem, visits)
    routing = pywrapcp.RoutingModel(index_map.manager)
    model = Model(
        routing, index_map, index_map.node_travel_rows(problem.travel_s), problem
    )
    add_travel_cost(model, problem)
    add_time_windows(model, problem)
    add_lateness(model, problem)
    add_allowed_caregivers(model, allowed, problem)
    add_max_visits(model, problem)
    add_capacity(model, problem)
    add_left_out_penalties(model, problem)
    add_continuity(model, problem)
    add_workload_balance(model, problem)
    return model
