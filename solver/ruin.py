"""Ruin and recreate in pure Python, fast enough for thousands of iterations.

OR-Tools' descent is the strongest polish we have but costs 15-30 ms per
call on 100 visits; a ruin-and-recreate move done here costs 1-3 ms. The
search (:mod:`solver.search`) therefore runs many of these moves between
OR-Tools calls. The pieces, all on model nodes (visits ``0 .. n - 1``):

- :class:`StringRemoval` removes a few strings of consecutive visits from
  routes near a random visit (the ruin of Christiaens and Vanden Berghe's
  SISR);
- :class:`GreedyInsertion` puts the removed visits back one by one, each at
  its cheapest feasible place, through :class:`~solver.insertion.
  InsertionIndex`;
- :class:`RouteCost` prices a route exactly as the model's objective does
  (travel, lateness, continuity, workload), so moves can be accepted or
  refused without asking OR-Tools.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np

from solver.insertion import CurrentRoute, InsertionIndex
from solver.model import Model, fair_share
from solver.screening import kind_for, skill_kinds

Routes = list[list[int]]
"""Per vehicle, visit nodes in order."""


class StringRemoval:
    """Removes strings of consecutive visits near a random seed visit.

    Args:
        model: The model whose nodes are ruined.
        min_visits: Fewest visits removed per call.
        max_visits: Most visits removed per call.
        max_string: Longest string removed from one route.
        neighbours: Nearest visits of the seed whose routes may be ruined.
        rnd: Source of randomness.
    """

    def __init__(
        self,
        model: Model,
        min_visits: int,
        max_visits: int,
        max_string: int,
        neighbours: int,
        rnd: random.Random,
    ) -> None:
        self._min, self._max, self._string = min_visits, max_visits, max_string
        self._rnd = rnd
        self._near = [[a, *near] for a, near in enumerate(_nearest(model, neighbours))]

    def __call__(self, routes: Sequence[Sequence[int]]) -> tuple[Routes, list[int]]:
        """Ruined copies of ``routes`` and the removed visit nodes."""
        rnd = self._rnd
        route_of = {node: k for k, route in enumerate(routes) for node in route}
        if not route_of:
            return [list(r) for r in routes], []
        seed = rnd.choice(sorted(route_of))
        target = rnd.randint(self._min, self._max)
        removed: set[int] = set()
        ruined_routes: set[int] = set()
        for node in self._near[seed]:
            if len(removed) >= target:
                break
            k = route_of.get(node)
            if k is None or k in ruined_routes:
                continue
            ruined_routes.add(k)
            route = routes[k]
            length = rnd.randint(1, min(self._string, len(route)))
            first = route.index(node) - rnd.randrange(length)
            first = max(0, min(first, len(route) - length))
            removed.update(route[first : first + length])
        ruined = [[n for n in route if n not in removed] for route in routes]
        return ruined, sorted(removed)


class GreedyInsertion:
    """Puts removed visits back, each at its cheapest feasible place.

    The order of insertion varies by call: random, by latest start, or
    longest visit first. A visit that fits nowhere stays out. Routes that
    serve one of the visit's nearest neighbours are tried first (with the
    empty routes, in a share of the calls), then every route in use, then
    every route.
    The slack of routes the ruin left alone is reused from the last call.

    Args:
        model: The model whose nodes are inserted.
        neighbours: Nearest visits whose routes are candidates.
        rnd: Source of randomness.
    """

    open_early_share = 0.5
    """Share of calls in which an empty route competes with near routes."""

    def __init__(self, model: Model, neighbours: int, rnd: random.Random) -> None:
        self._model = model
        self._rnd = rnd
        self._node_of = {v.visit_id: n for n, v in enumerate(model.index_map.visits)}
        self._near = _nearest(model, neighbours)
        self._last: InsertionIndex | None = None
        # Per visit node, the vehicles whose skills are the fewest that
        # suffice; ``None`` where every caregiver holds the same skills.
        self._own_kind: list[set[int]] | None = None
        kinds = skill_kinds(model.index_map.caregivers)
        if len(kinds) > 1:
            self._own_kind = [
                set(kinds.get(kind_for(v, kinds) or frozenset(), ()))
                for v in model.index_map.visits
            ]

    def __call__(
        self, ruined: Sequence[Sequence[int]], removed: Sequence[int]
    ) -> Routes:
        """Routes with as many of ``removed`` put back as fit."""
        index_map, problem = self._model.index_map, self._model.problem
        visits = index_map.visits
        routes = [
            CurrentRoute(c, tuple(visits[n] for n in ruined[k]))
            for k, c in enumerate(index_map.caregivers)
        ]
        index = InsertionIndex(
            problem.travel_s, routes, problem.weights, reuse=self._last
        )
        vehicle_of = {n: k for k, route in enumerate(ruined) for n in route}
        used = {k for k, route in enumerate(ruined) if route}
        open_early = self._rnd.random() < self.open_early_share
        order = list(removed)
        self._rnd.shuffle(order)
        how = self._rnd.random()
        if how < 0.4:
            order.sort(key=lambda n: visits[n].latest_s)
        elif how < 0.6:
            order.sort(key=lambda n: -visits[n].duration_s)
        for node in order:
            # Routes near the visit first. In half the calls a new route is
            # opened only when no route in use can take the visit, which
            # removes routes (fewer, fuller routes win on clustered days);
            # in the others it competes on cost (more, shorter routes win
            # where windows are wide).
            near = {vehicle_of[m] for m in self._near[node] if m in vehicle_of}
            if open_early:
                near.update(k for k in range(len(ruined)) if k not in used)
            visit = visits[node]
            place = None
            if self._own_kind is not None:
                # Near caregivers with no more skills than the visit needs
                # first, so that nurses stay free for nursing visits.
                place = index.cheapest(visit, near & self._own_kind[node])
            if place is None:
                place = index.cheapest(visit, near)
            if place is None:
                place = index.cheapest(visit, used)
            if place is None:
                place = index.cheapest(visit)
            if place is not None:
                vehicle, position = place
                index.insert(vehicle, position, visit)
                vehicle_of[node] = vehicle
                used.add(vehicle)
        self._last = index
        node_of = self._node_of
        return [[node_of[v.visit_id] for v in r.visits] for r in index.routes]

    def salvage(self, routes: Sequence[Sequence[int]]) -> tuple[Routes, list[int]]:
        """Keep of each route what is still feasible, in the same caregiver.

        Visits are re-inserted route by route, in their order, each at its
        cheapest feasible place in its own caregiver's route; those that no
        longer fit (the day moved on, a window changed) are returned apart.
        """
        index_map, problem = self._model.index_map, self._model.problem
        visits = index_map.visits
        empty = [CurrentRoute(c) for c in index_map.caregivers]
        index = InsertionIndex(problem.travel_s, empty, problem.weights)
        dropped: list[int] = []
        for k, route in enumerate(routes):
            for node in route:
                ranked = index.rank(visits[node], [k]).insertions
                if ranked:
                    index.apply(ranked[0], visits[node])
                else:
                    dropped.append(node)
        node_of = self._node_of
        kept = [[node_of[v.visit_id] for v in r.visits] for r in index.routes]
        return kept, dropped


def _nearest(model: Model, count: int) -> list[list[int]]:
    """Per visit node, the ``count`` nearest other visit nodes.

    Nearest by travel both ways, ties by node; sorted with numpy, since
    sorting every row in Python took a tenth of a one-second solve.
    """
    n = model.index_map.num_visits
    count = min(count, n - 1)
    if count <= 0:
        return [[] for _ in range(n)]
    rows = np.array([row[:n] for row in model.travel_rows[:n]], dtype=np.int64)
    both = rows + rows.T
    np.fill_diagonal(both, np.iinfo(np.int64).max)
    order = np.argsort(both, axis=1, kind="stable")[:, :count]
    return order.tolist()  # type: ignore[no-any-return]


class RouteCost:
    """Prices routes as the model's objective does, node by node.

    Args:
        model: The model whose routes are priced.
    """

    def __init__(self, model: Model) -> None:
        index_map, problem = model.index_map, model.problem
        weights = problem.weights
        self._rows = model.travel_rows
        self._visits = index_map.visits
        self._weights = weights
        starts = [
            index_map.node_of_index(model.routing.Start(v))
            for v in range(index_map.num_vehicles)
        ]
        ends = [
            index_map.node_of_index(model.routing.End(v))
            for v in range(index_map.num_vehicles)
        ]
        self._starts, self._ends = starts, ends
        self._share = fair_share(len(problem.visits), len(problem.caregivers))
        self._not_preferred = [
            [
                bool(v.preferred_caregiver_ids)
                and c.caregiver_id not in v.preferred_caregiver_ids
                for v in index_map.visits
            ]
            for c in index_map.caregivers
        ]
        self._penalty = [weights.left_out_cost(v) for v in index_map.visits]
        self._shift_start = [c.shift_start_s for c in index_map.caregivers]

    def route(self, vehicle: int, nodes: Sequence[int]) -> int:
        """Cost of one vehicle's route (travel, lateness, continuity, balance)."""
        if not nodes:
            return 0
        rows, visits, weights = self._rows, self._visits, self._weights
        here = self._starts[vehicle]
        clock_s = self._shift_start[vehicle]
        travel_s = lateness_s = 0
        for node in nodes:
            leg_s = rows[here][node]
            visit = visits[node]
            travel_s += leg_s
            start_s = max(clock_s + leg_s, visit.earliest_s)
            if start_s > visit.latest_s:
                lateness_s += start_s - visit.latest_s
            clock_s = start_s + visit.duration_s
            here = node
        travel_s += rows[here][self._ends[vehicle]]
        cost = weights.travel_per_s * travel_s + weights.lateness_per_s * lateness_s
        if weights.not_preferred:
            flags = self._not_preferred[vehicle]
            cost += weights.not_preferred * sum(flags[n] for n in nodes)
        if weights.balance_per_visit:
            cost += weights.balance_per_visit * max(0, len(nodes) - self._share)
        return cost

    def left_out(self, routes: Sequence[Sequence[int]]) -> int:
        """Penalties of the visits no route serves."""
        served = {n for route in routes for n in route}
        return sum(p for n, p in enumerate(self._penalty) if n not in served)

    def total(self, routes: Sequence[Sequence[int]]) -> int:
        """Objective of a whole solution."""
        return sum(self.route(k, r) for k, r in enumerate(routes)) + self.left_out(
            routes
        )
