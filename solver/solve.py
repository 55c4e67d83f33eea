"""The entry point: :func:`solve` a :class:`~solver.problem.Problem` into a plan.

Steps: screen the visits (:mod:`solver.screening`), build the routing model
(:mod:`solver.model`), find initial routes (the warm start, or our own
construction), search (:mod:`solver.search`), then decode and explain
(:mod:`solver.decode`). Large problems are split first
(:mod:`solver.decompose`). One canonical log line per solve, at INFO.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

from solver.decode import objective_terms, routes_from_sequences
from solver.decompose import repair, solve_in_parts
from solver.insertion import CurrentRoute, InsertionIndex
from solver.model import Model, build_model
from solver.plan import Plan, SolveStats, SolveStatus, Unassigned
from solver.problem import Problem, SolveOptions
from solver.screening import Screening, left_out_reason, screen
from solver.search import SearchStrategy, run_search

logger = logging.getLogger(__name__)


def _warm_routes(model: Model, options: SolveOptions) -> list[list[int]] | None:
    if options.warm_start is None:
        return None
    index_map = model.index_map
    routes: list[list[int]] = [[] for _ in range(index_map.num_vehicles)]
    for route in options.warm_start.routes:
        if not index_map.has_caregiver(route.caregiver_id):
            continue
        vehicle = index_map.vehicle_of_caregiver(route.caregiver_id)
        routes[vehicle] = [
            index_map.node_of_index(index_map.index_of_visit(v.visit_id))
            for v in route.visits
            if index_map.has_visit(v.visit_id)
        ]
    return routes


def _assemble(
    problem: Problem,
    screening: Screening,
    sequences: dict[str, list[str]],
    stats_seed: tuple[SolveStatus, float, int, int],
) -> Plan:
    status, started, found, seed = stats_seed
    visit_of = {v.visit_id: v for v in problem.visits}
    served = {v for seq in sequences.values() for v in seq}
    # A last greedy pass puts back whatever still fits for less than its
    # penalty, most important first: an emergency the search missed is
    # never left out while a capable caregiver can still take it.
    repair(
        problem,
        sequences,
        [v.visit_id for v in screening.visits if v.visit_id not in served],
    )
    routes = routes_from_sequences(problem, sequences)
    served = {v for r in routes for v in r.visit_ids}
    reason_of = {v.visit_id: reason for v, reason in screening.rejected}
    index = InsertionIndex(
        problem.travel_s,
        [
            CurrentRoute(c, tuple(visit_of[v] for v in r.visit_ids))
            for c, r in zip(problem.caregivers, routes, strict=True)
        ],
        problem.weights,
    )
    unassigned = []
    for visit in problem.visits:
        if visit.visit_id in served:
            continue
        reason = reason_of.get(visit.visit_id) or left_out_reason(index, visit)
        unassigned.append(Unassigned(visit.visit_id, reason))
    terms = objective_terms(problem, routes, unassigned)
    stats = SolveStats(
        status=status,
        objective=terms.total,
        terms=terms,
        solve_time_s=time.monotonic() - started,
        solutions_found=found,
        seed=seed,
    )
    return Plan(routes, tuple(unassigned), stats)


def _solve_in_parts(
    problem: Problem,
    options: SolveOptions,
    strategy: SearchStrategy,
    screening: Screening,
    started: float,
) -> Plan:
    def solve_part(part: Problem, part_options: SolveOptions) -> Plan:
        return solve(part, part_options, strategy)

    sequences, found, parts = solve_in_parts(
        problem, options, solve_part, options.part_visits
    )
    stats_seed = (SolveStatus.FEASIBLE, started, found, options.seed)
    plan = _assemble(problem, screening, sequences, stats_seed)
    plan = replace(plan, stats=replace(plan.stats, parts=parts))
    _log(problem, plan)
    return plan


def solve(
    problem: Problem,
    options: SolveOptions,
    strategy: SearchStrategy | None = None,
) -> Plan:
    """Plan the problem's visits within ``options.time_limit_s``.

    Args:
        problem: Caregivers, visits, travel matrix and weights.
        options: Time limit, seed, solution limit and warm start.
        strategy: Search knobs; the measured defaults when ``None``.

    Returns:
        The plan. Visits that cannot or should not be served are in
        ``Plan.unassigned`` with a reason. If OR-Tools finds nothing the
        status is ``no_solution`` and the plan holds only what greedy
        insertion could place. A warm start that is no longer feasible is
        salvaged: each caregiver keeps what still fits of the old route.
    """
    started = time.monotonic()
    strategy = strategy or SearchStrategy()
    screening = screen(problem)
    if not screening.visits or not problem.caregivers:
        return _assemble(
            problem, screening, {}, (SolveStatus.EMPTY, started, 0, options.seed)
        )

    threshold = options.decompose_above_visits
    if 0 < threshold < len(screening.visits) and len(problem.caregivers) > 1:
        return _solve_in_parts(problem, options, strategy, screening, started)

    model = build_model(problem, screening.visits, screening.allowed)
    remaining_s = max(0.01, options.time_limit_s - (time.monotonic() - started))
    result = run_search(
        model,
        strategy,
        remaining_s,
        seed=options.seed,
        max_iterations=options.solution_limit,
        initial_routes=_warm_routes(model, options),
    )
    sequences: dict[str, list[str]] = {}
    status = SolveStatus.NO_SOLUTION
    if result.routes is not None:
        status = SolveStatus.FEASIBLE
        for vehicle, nodes in enumerate(result.routes):
            caregiver_id = model.index_map.caregiver_of_vehicle(vehicle).caregiver_id
            sequences[caregiver_id] = [screening.visits[n].visit_id for n in nodes]
    plan = _assemble(
        problem,
        screening,
        sequences,
        (status, started, result.solutions_found, options.seed),
    )
    _log(problem, plan)
    return plan


def _log(problem: Problem, plan: Plan) -> None:
    logger.info(
        "solve done status=%s visits=%s unassigned=%s objective=%s parts=%s "
        "elapsed_s=%.3f",
        plan.stats.status,
        len(problem.visits),
        len(plan.unassigned),
        plan.stats.objective,
        plan.stats.parts,
        plan.stats.solve_time_s,
    )
