"""Search strategy: our ruin and recreate, polished by OR-Tools local search.

OR-Tools' own metaheuristics (guided local search, tabu search) stall on
tight time windows: measured on the Solomon instances they stay 3-5 %
above the best-known distances after 5 s. :func:`run_search` instead runs
an iterated local search whose moves are cheap and whose polish is
OR-Tools':

1. a first solution: the given initial routes, or our greedy insertion
   (:mod:`solver.ruin`), taken to a local optimum by an OR-Tools greedy
   descent (OR-Tools' first-solution strategy if both fail);
2. then, until the time or iteration limit: ruin the current routes by
   string removal, recreate them by greedy insertion, price the result
   exactly in Python, and accept it by simulated annealing. Every new best
   and, every ``polish_every`` moves, the current solution go through an
   OR-Tools descent on the same closed model, which finds the two-route
   and in-route improvements (relocate, exchange, cross, 2-opt, or-opt)
   that ruin and recreate rarely stumbles on.

A move costs 1-3 ms on 100 visits, an OR-Tools descent 15-30 ms, so the
mix runs thousands of moves where descending after every ruin ran two
hundred. The knobs are named and documented in :class:`SearchStrategy`;
the defaults are the ones measured best on the Solomon benchmark.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ortools.constraint_solver import pywrapcp, routing_enums_pb2

from solver.model import Model
from solver.ruin import GreedyInsertion, RouteCost, StringRemoval

logger = logging.getLogger(__name__)

_FIRST = routing_enums_pb2.FirstSolutionStrategy
_META = routing_enums_pb2.LocalSearchMetaheuristic
_OFF = 2  # OptionalBoolean.BOOL_FALSE of the OR-Tools protocol buffers

SLOW_OPERATORS = (
    "use_lin_kernighan",
    "use_relocate_expensive_chain",
    "use_global_cheapest_insertion_path_lns",
    "use_local_cheapest_insertion_path_lns",
    "use_relocate_path_global_cheapest_insertion_insert_unperformed",
    "use_global_cheapest_insertion_visit_types_lns",
    "use_local_cheapest_insertion_visit_types_lns",
    "use_shortest_path_swap_active",
    "use_shortest_path_two_opt",
    "use_swap_active_chain",
    "use_relocate_subtrip",
    "use_exchange_subtrip",
    "use_relocate_pair",
    "use_light_relocate_pair",
    "use_exchange_pair",
)
"""Local search operators switched off inside ruin and recreate: they are
for pickup-and-delivery pairs or large neighbourhoods that the ruin already
provides, and each full descent ran about three times slower with them."""


POLISH_MOVES = 10
"""About how many ruin-and-recreate moves one OR-Tools descent costs (measured
on 100 visits); used to share the effort when an iteration limit is set."""


@dataclass(frozen=True, slots=True)
class SearchStrategy:
    """Named knobs of the search.

    Attributes:
        construction: How the first solution is built when no initial
            routes are given: ``greedy`` (our cheapest insertion, then an
            OR-Tools descent) or ``ortools`` (``first_solution``).
        first_solution: OR-Tools first-solution strategy by name, used for
            ``construction="ortools"`` or when greedy construction fails and
            no initial routes are given (``PARALLEL_CHEAPEST_INSERTION``,
            ``LOCAL_CHEAPEST_INSERTION``, ``SAVINGS``, ...).
        ruin_min_visits: Fewest visits one ruin removes.
        ruin_max_visits: Most visits one ruin removes, and never more than
            a quarter of the visits (see :func:`ruin_max_visits`).
        ruin_max_string: Longest string of consecutive visits removed from
            one route.
        ruin_neighbours: Nearest visits of the ruin's seed whose routes may
            be ruined.
        temperature_start: Initial annealing temperature, as a share of the
            first solution's mean travel cost per visit.
        temperature_end: Final temperature, as a share of the initial one.
        light_operators: Switch off :data:`SLOW_OPERATORS` while polishing.
        recreate_neighbours: Nearest visits whose routes are tried when a
            removed visit is put back.
        polish_every: Iterations between two OR-Tools descents of the
            current solution (every new best is polished at once).
        polish_share: Most share of the elapsed time spent polishing; one
            descent may take at most a quarter of that share of the limit.
        first_descent_share: Most share of the time limit the descent of
            the first solution may take (it is the slowest, on large parts
            it would otherwise take it all).
        ortools_recreate: Share of iterations (0 to 1) in which OR-Tools'
            descent alone puts the removed visits back, instead of our
            greedy insertion.
    """

    construction: str = "greedy"
    first_solution: str = "PARALLEL_CHEAPEST_INSERTION"
    ruin_min_visits: int = 5
    # Measured on the hardest Solomon instances (R2, RC2, R108, RC107) at
    # 5 s of processor time, two seeds: 25 and 12 gave a mean gap of 2.7 %
    # where 15 and 8 gave 3.6 %. Routes of 25 visits (R2, RC2) seem to need
    # longer strings removed at once to leave a local optimum. At 1 s the
    # larger ruin did worse on one seed (6.0 % against 5.4 %), within noise.
    # The quarter cap keeps the parts of a district (60 visits) at the 15
    # they were measured with.
    ruin_max_visits: int = 25
    ruin_max_string: int = 12
    ruin_neighbours: int = 20
    temperature_start: float = 0.3
    temperature_end: float = 0.02
    light_operators: bool = True
    recreate_neighbours: int = 15
    polish_every: int = 20
    polish_share: float = 0.5
    first_descent_share: float = 0.3
    ortools_recreate: float = 0.0


def ruin_max_visits(strategy: SearchStrategy, num_visits: int) -> int:
    """Most visits one ruin removes from a model of ``num_visits`` visits.

    ``strategy.ruin_max_visits``, but at most a quarter of the visits and
    never below ``strategy.ruin_min_visits``: a ruin of nearly half a small
    problem is a restart, not a move.
    """
    quarter = max(strategy.ruin_min_visits, num_visits // 4)
    return min(strategy.ruin_max_visits, quarter)


def search_parameters(strategy: SearchStrategy, time_limit_s: float) -> Any:
    """OR-Tools ``RoutingSearchParameters`` of one greedy descent."""
    params = pywrapcp.DefaultRoutingSearchParameters()
    params.first_solution_strategy = _FIRST.Value.Value(strategy.first_solution)
    params.local_search_metaheuristic = _META.GREEDY_DESCENT
    params.time_limit.FromMilliseconds(max(1, int(time_limit_s * 1000)))
    if strategy.light_operators:
        for name in SLOW_OPERATORS:
            setattr(params.local_search_operators, name, _OFF)
    return params


@dataclass(frozen=True, slots=True)
class SearchResult:
    """Best routes of a search.

    Attributes:
        routes: Per vehicle, the visit nodes in order; ``None`` if the
            search found no solution.
        objective: Objective of ``routes`` as OR-Tools counts it.
        solutions_found: Solutions that improved on the best so far.
        iterations: Ruin and recreate iterations run.
    """

    routes: list[list[int]] | None
    objective: int
    solutions_found: int
    iterations: int


def _routes_of(model: Model, assignment: Any) -> list[list[int]]:
    routing, index_map = model.routing, model.index_map
    routes = []
    for vehicle in range(index_map.num_vehicles):
        nodes = []
        index = assignment.Value(routing.NextVar(routing.Start(vehicle)))
        while not routing.IsEnd(index):
            nodes.append(index_map.node_of_index(index))
            index = assignment.Value(routing.NextVar(index))
        routes.append(nodes)
    return routes


def _descend(
    model: Model, params: Any, routes: Sequence[Sequence[int]] | None
) -> Any | None:
    routing, index_map = model.routing, model.index_map
    if routes is None:
        return routing.SolveWithParameters(params)
    indices = [[index_map.index_of_node(n) for n in r] for r in routes]
    # OR-Tools would refuse these too, but log an error line for each; the
    # caller salvages the routes either way.
    if any(
        not routing.VehicleVar(i).Contains(vehicle)
        for vehicle, route in enumerate(indices)
        for i in route
    ):
        return None
    initial = routing.ReadAssignmentFromRoutes(indices, True)
    if initial is None:
        return None
    return routing.SolveFromAssignmentWithParameters(initial, params)


def run_search(
    model: Model,
    strategy: SearchStrategy,
    time_limit_s: float,
    *,
    seed: int = 0,
    max_iterations: int | None = None,
    initial_routes: Sequence[Sequence[int]] | None = None,
) -> SearchResult:
    """Search ``model`` within the limits, from ``initial_routes`` if given.

    Args:
        model: A built model.
        strategy: Search knobs.
        time_limit_s: Wall-clock limit, in seconds.
        seed: Seed of the ruin and the acceptance.
        max_iterations: Stop after this many ruin and recreate iterations;
            with it, equal seeds give equal results on any machine fast
            enough to finish within the time limit.
        initial_routes: Per vehicle, visit nodes in order. Where they are
            no longer feasible, each route keeps what still fits and the
            rest is inserted afresh.

    Returns:
        The best routes found.
    """
    started = time.monotonic()

    def left_s() -> float:
        return time_limit_s - (time.monotonic() - started)

    rnd = random.Random(seed)
    ruin = StringRemoval(
        model,
        strategy.ruin_min_visits,
        ruin_max_visits(strategy, model.index_map.num_visits),
        strategy.ruin_max_string,
        strategy.ruin_neighbours,
        rnd,
    )
    recreate = GreedyInsertion(model, strategy.recreate_neighbours, rnd)
    price = RouteCost(model)

    model.routing.CloseModelWithParameters(search_parameters(strategy, time_limit_s))
    solution = None
    first_s = min(left_s(), strategy.first_descent_share * time_limit_s)
    if initial_routes is not None:
        solution = _descend(model, search_parameters(strategy, first_s), initial_routes)
        if solution is None:
            # Keep what still fits of the previous plan, then put the rest
            # back wherever it fits.
            kept, dropped = recreate.salvage(initial_routes)
            logger.info("initial routes infeasible; salvaged dropped=%s", len(dropped))
            built = recreate(kept, dropped)
            solution = _descend(model, search_parameters(strategy, first_s), built)
    if solution is None and strategy.construction == "greedy":
        empty: list[list[int]] = [[] for _ in range(model.index_map.num_vehicles)]
        built = recreate(empty, list(range(model.index_map.num_visits)))
        solution = _descend(model, search_parameters(strategy, first_s), built)
    if solution is None:
        solution = _descend(model, search_parameters(strategy, left_s()), None)
    if solution is None:
        return SearchResult(None, 0, 0, 0)

    current = best = _routes_of(model, solution)
    all_nodes = set(range(model.index_map.num_visits))
    current_cost = best_cost = price.total(best)
    served = max(1, sum(len(r) for r in best))
    # Scale by the cost of serving (travel and the like), not by penalties
    # of left-out visits, which would make the walk accept any detour.
    serving_cost = best_cost - price.left_out(best)
    temperature_start = max(1.0, strategy.temperature_start * serving_cost / served)
    found, iterations, since_polish, polish_s, polishes = 1, 0, 0, 0.0, 0
    while left_s() > 0 and (max_iterations is None or iterations < max_iterations):
        iterations += 1
        since_polish += 1
        ruined, removed = ruin(current)
        # Visits left out so far are offered again with the removed ones,
        # so the walk keeps trying to serve more (as SISR recreates all
        # absent customers).
        removed += sorted(all_nodes - {n for route in current for n in route})
        ortools_only = rnd.random() < strategy.ortools_recreate
        candidate = ruined if ortools_only else recreate(ruined, removed)
        cost = price.total(candidate)
        due = cost < best_cost or since_polish >= strategy.polish_every
        # OR-Tools' descent polishes new bests and, now and then, the
        # current solution, so the walk does not drift far from local
        # optima; but never more than its share of the time, or early on,
        # when nearly every move is a new best, it would take all of it.
        if max_iterations is None:
            affordable = polish_s <= strategy.polish_share * (
                time.monotonic() - started
            )
        else:
            # With an iteration limit the result must not depend on the
            # machine's speed: count a descent as POLISH_MOVES moves instead.
            affordable = polishes * POLISH_MOVES <= strategy.polish_share * iterations
        if ortools_only or (due and affordable):
            since_polish = 0
            polish_started = time.monotonic()
            polish_limit_s = min(left_s(), strategy.polish_share * time_limit_s / 4)
            polished = _descend(
                model, search_parameters(strategy, polish_limit_s), candidate
            )
            polish_s += time.monotonic() - polish_started
            polishes += 1
            if polished is not None:
                candidate = _routes_of(model, polished)
                cost = price.total(candidate)
        progress = min(1.0, (time.monotonic() - started) / time_limit_s)
        if max_iterations is not None:
            progress = iterations / max_iterations
        temperature = temperature_start * strategy.temperature_end**progress
        if cost < current_cost or rnd.random() < math.exp(
            (current_cost - cost) / temperature
        ):
            current, current_cost = candidate, cost
            if cost < best_cost:
                best, best_cost, found = current, cost, found + 1
    logger.debug(
        "search done iterations=%s objective=%s elapsed_s=%.3f",
        iterations,
        best_cost,
        time.monotonic() - started,
    )
    return SearchResult(best, best_cost, found, iterations)
