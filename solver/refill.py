"""Refill: serve visits a decomposed solve left out, by local ruin and recreate.

Each part of a decomposed solve (:mod:`solver.decompose`) sees only its own
caregivers, and the greedy repair that follows puts a left-out visit back
only where it fits as the routes stand. On the 1,600-visit home-care
district that left about 2 % of the visits out where VROOM, planning the
whole district at once, served them. :func:`refill` works on the whole
problem: for a left-out visit it removes a few strings of visits near it
from their routes, inserts the left-out visit first, then the removed
visits, each at its cheapest feasible place among the routes near it, and
keeps the result only if every removed visit found a place again and the
objective fell (serving a visit is worth its left-out penalty). Otherwise
the touched routes are put back as they were.

The ruin only empties routes whose caregiver may serve the left-out
visit, so a nursing visit waiting for a nurse whose day is full of
general visits that an aide could make, with the aide's day full too,
stays left out. Before ruining, each left-out visit first tries an
ejection chain: one visit of a route near it makes way and moves to
another route, and if none has room, a visit there moves on in turn
(three moves at most, :data:`EJECTION_DEPTH`). The cheapest chain is
kept if it costs less than leaving the visit out. On the generated
1,600-visit district-1 this served 1,573 and 1,574 visits in two runs,
against 1,561 and 1,562 without it (VROOM 1,568 to 1,571).

Moves are priced with :class:`~solver.insertion.InsertionIndex`, which
refreshes only the routes a move changes, so one attempt costs about a
millisecond on a district and thousands fit in a few seconds.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from solver.insertion import CurrentRoute, InsertionIndex
from solver.problem import Problem, Visit, Weights
from solver.screening import is_allowed, kind_for, skill_kinds

logger = logging.getLogger(__name__)

NEIGHBOURS = 30
"""Nearest visits (by travel both ways) whose routes take a removed visit."""

RUIN_NEIGHBOURS = 60
"""Nearest visits of a left-out visit whose routes the ruin may touch, if
their caregiver may serve it."""

MIN_REMOVED = 2
"""Fewest visits one attempt removes."""

MAX_REMOVED = 12
"""Most visits one attempt removes."""

MAX_STRING = 5
"""Longest string of consecutive visits removed from one route."""

EJECTION_HOSTS = 12
"""Routes allowed to serve a left-out visit, nearest first, that an ejection
tries to free a place in."""

EJECTION_DEPTH = 3
"""Most visits an ejection moves on: the one ejected, and up to two more that
make room for it in turn."""

ATTEMPTS_PER_VISIT = 200
"""Attempts per left-out visit when the solve has a solution limit (so the
result does not depend on the machine's speed)."""


def _route_cost(
    travel_s: Sequence[Sequence[int]], weights: Weights, route: CurrentRoute
) -> int:
    """Travel, lateness and continuity cost of one route, as the objective."""
    if not route.visits:
        return 0
    caregiver = route.caregiver
    here, clock_s = caregiver.start_location, caregiver.shift_start_s
    travel, lateness, not_preferred = 0, 0, 0
    for visit in route.visits:
        leg_s = travel_s[here][visit.location]
        travel += leg_s
        start_s = max(clock_s + leg_s, visit.earliest_s)
        lateness += max(0, start_s - visit.latest_s)
        preferred = visit.preferred_caregiver_ids
        not_preferred += bool(preferred) and caregiver.caregiver_id not in preferred
        clock_s = start_s + visit.duration_s
        here = visit.location
    travel += travel_s[here][caregiver.end_location]
    return (
        weights.travel_per_s * travel
        + weights.lateness_per_s * lateness
        + weights.not_preferred * not_preferred
    )


def _nearest(problem: Problem, count: int) -> list[list[int]]:
    """Per visit, the ``count`` nearest other visits (positions in the problem)."""
    locations = np.array([v.location for v in problem.visits], dtype=np.intp)
    matrix = np.asarray(problem.travel_s, dtype=np.int64)[np.ix_(locations, locations)]
    both = matrix + matrix.T
    np.fill_diagonal(both, np.iinfo(np.int64).max)
    count = min(count, len(locations) - 1)
    if count <= 0:
        return [[] for _ in locations]
    nearest = np.argpartition(both, count - 1, axis=1)[:, :count]
    order = np.take_along_axis(both, nearest, axis=1).argsort(axis=1, kind="stable")
    return np.take_along_axis(nearest, order, axis=1).tolist()  # type: ignore[no-any-return]


def refill(
    problem: Problem,
    sequences: dict[str, list[str]],
    deadline: float,
    seed: int,
    max_attempts: int | None = None,
) -> int:
    """Serve left-out visits by ruining and recreating routes near them, in place.

    Args:
        problem: The whole problem.
        sequences: Per caregiver id, the visit ids in order; updated.
        deadline: ``time.monotonic()`` value at which to stop.
        seed: Seed of the ruin.
        max_attempts: Stop after this many attempts; ``None`` stops only at
            the deadline.

    Returns:
        How many left-out visits are now served.
    """
    visits, weights, travel_s = problem.visits, problem.weights, problem.travel_s
    position_of = {v.visit_id: i for i, v in enumerate(visits)}
    index = InsertionIndex(
        travel_s,
        [
            CurrentRoute(
                c,
                tuple(
                    visits[position_of[v]] for v in sequences.get(c.caregiver_id, ())
                ),
            )
            for c in problem.caregivers
        ],
        weights,
    )
    route_of = {
        position_of[v.visit_id]: r
        for r, route in enumerate(index.routes)
        for v in route.visits
    }
    left = [
        i
        for i, v in enumerate(visits)
        if i not in route_of and any(is_allowed(c, v) for c in problem.caregivers)
    ]
    if not left:
        return 0
    near = _nearest(problem, RUIN_NEIGHBOURS)
    # Per visit, the routes whose caregivers hold no more skills than it
    # needs, tried first so that nurses stay free for nursing visits.
    own_kind = None
    kinds = skill_kinds(problem.caregivers)
    if len(kinds) > 1:
        own_kind = [
            set(kinds.get(kind_for(v, kinds) or frozenset(), ())) for v in visits
        ]
    penalty = [weights.left_out_cost(v) for v in visits]
    rnd = random.Random(seed)
    served, attempts = 0, 0
    ejections = _Ejections(problem, index, position_of, near, route_of, own_kind)
    # A target whose ejections all fail keeps failing until a route changes.
    ejected_in_vain: set[int] = set()
    while left and time.monotonic() < deadline:
        if max_attempts is not None and attempts >= max_attempts:
            break
        attempts += 1
        # Half the attempts go to the visits costliest to leave out (an
        # urgent one before any routine one), the rest to any of them.
        pool = left
        if rnd.random() < 0.5:
            worst = max(penalty[i] for i in left)
            pool = [i for i in left if penalty[i] == worst]
        target = pool[rnd.randrange(len(pool))]
        if target not in ejected_in_vain:
            ejected_in_vain.add(target)
            chain = ejections.serving(target)
            if chain is not None:
                for r, changed in chain.routes:
                    index.replace(r, changed)
                    route_of.update((position_of[v.visit_id], r) for v in changed)
                left.remove(target)
                served += 1
                ejected_in_vain.clear()
                continue
        if _attempt(problem, index, position_of, near, route_of, own_kind, target, rnd):
            left.remove(target)
            served += 1
            ejected_in_vain.clear()

    for route in index.routes:
        sequences[route.caregiver.caregiver_id] = [v.visit_id for v in route.visits]
    logger.debug(
        "refill done attempts=%s served=%s still_left=%s", attempts, served, len(left)
    )
    return served


def _attempt(
    problem: Problem,
    index: InsertionIndex,
    position_of: dict[str, int],
    near: Sequence[Sequence[int]],
    route_of: dict[int, int],
    own_kind: Sequence[set[int]] | None,
    target: int,
    rnd: random.Random,
) -> bool:
    """One ruin and recreate around ``target``; kept only if it pays."""
    visits = problem.visits
    routes = index.routes
    saved: dict[int, tuple[Visit, ...]] = {}

    # Ruin: strings around the target's nearest served visits.
    removed: list[int] = []
    goal = rnd.randint(MIN_REMOVED, MAX_REMOVED)
    caregivers = problem.caregivers
    for m in near[target]:
        if len(removed) >= goal:
            break
        r = route_of.get(m)
        # Only routes whose caregiver may serve the target make room for it.
        if r is None or r in saved or not is_allowed(caregivers[r], visits[target]):
            continue
        route = routes[r].visits
        length = rnd.randint(1, min(MAX_STRING, len(route)))
        at = next(k for k, v in enumerate(route) if v is visits[m])
        first = max(0, min(at - rnd.randrange(length), len(route) - length))
        saved[r] = route
        removed.extend(position_of[v.visit_id] for v in route[first : first + length])
        index.replace(r, route[:first] + route[first + length :])

    # Recreate: the target first, then the removed visits.
    how = rnd.random()
    if how < 0.5:
        removed.sort(key=lambda i: visits[i].latest_s)
    else:
        rnd.shuffle(removed)
    placed: dict[int, int] = {}
    for i in [target, *removed]:
        nearest = near[i][:NEIGHBOURS]
        candidates = {route_of[m] for m in nearest if m in route_of} | saved.keys()
        place = None
        if own_kind is not None:
            place = index.cheapest(visits[i], candidates & own_kind[i])
        place = place or index.cheapest(visits[i], candidates)
        place = place or index.cheapest(visits[i])
        if place is None:
            break
        r, at = place
        saved.setdefault(r, index.routes[r].visits)
        index.insert(r, at, visits[i])
        placed[i] = r
    else:
        if _pays(problem, index, visits[target], saved):
            route_of.update(placed)
            return True

    for r, route in saved.items():
        index.replace(r, route)
    return False


def _pays(
    problem: Problem,
    index: InsertionIndex,
    target: Visit,
    saved: dict[int, tuple[Visit, ...]],
) -> bool:
    """Whether the changed routes cost less than leaving ``target`` out."""
    travel_s, weights = problem.travel_s, problem.weights
    before = after = 0
    for r, old in saved.items():
        caregiver = index.routes[r].caregiver
        before += _route_cost(travel_s, weights, CurrentRoute(caregiver, old))
        after += _route_cost(travel_s, weights, index.routes[r])
    return after - before < weights.left_out_cost(target)


@dataclass(frozen=True, slots=True)
class _Chain:
    """Routes an ejection changes, with their new visits, and the added cost."""

    added: int
    routes: tuple[tuple[int, tuple[Visit, ...]], ...]


@dataclass(frozen=True, slots=True)
class _Ejections:
    """Ejection chains over the routes as ``index`` holds them; changes nothing."""

    problem: Problem
    index: InsertionIndex
    position_of: dict[str, int]
    near: Sequence[Sequence[int]]
    route_of: dict[int, int]
    own_kind: Sequence[set[int]] | None

    def serving(self, target: int) -> _Chain | None:
        """The cheapest chain that serves ``target`` and pays, if any.

        In a route near ``target`` whose caregiver may serve it, one visit
        makes way for ``target`` and moves to another route (a caregiver
        with no more skills than it needs first); if no route has room for
        it, a visit of a route near it moves on in turn.
        """
        caregivers = self.problem.caregivers
        visit = self.problem.visits[target]
        hosts: list[int] = []
        for m in self.near[target]:
            r = self.route_of.get(m)
            if r is not None and r not in hosts and is_allowed(caregivers[r], visit):
                hosts.append(r)
                if len(hosts) == EJECTION_HOSTS:
                    break
        best = self._making_room(target, hosts, set(), EJECTION_DEPTH)
        if best is None or best.added >= self.problem.weights.left_out_cost(visit):
            return None
        return best

    def _moved(self, moving: int, excluded: set[int], depth: int) -> _Chain | None:
        """The cheapest way to put ``moving`` in a route not in ``excluded``.

        Its cheapest place among the routes near it (those of caregivers
        with no more skills than it needs first), then among all routes;
        failing that, while ``depth`` allows, a visit of a route near it
        that may serve it moves on to make room.
        """
        index, caregivers = self.index, self.problem.caregivers
        visit = self.problem.visits[moving]
        candidates = {
            self.route_of[m]
            for m in self.near[moving][:NEIGHBOURS]
            if m in self.route_of
        }
        candidates -= excluded
        place = None
        if self.own_kind is not None:
            place = index.cheapest(visit, candidates & self.own_kind[moving])
        place = place or index.cheapest(visit, candidates)
        if place is None:
            others = [r for r in range(len(caregivers)) if r not in excluded]
            place = index.cheapest(visit, others)
        if place is not None:
            r, at = place
            route = index.routes[r].visits
            moved = (*route[:at], visit, *route[at:])
            return _Chain(self._cost(r, moved) - self._cost(r, route), ((r, moved),))
        if depth == 0:
            return None
        hosts = [r for r in sorted(candidates) if is_allowed(caregivers[r], visit)]
        return self._making_room(moving, hosts, excluded, depth)

    def _making_room(
        self, moving: int, hosts: Sequence[int], excluded: set[int], depth: int
    ) -> _Chain | None:
        """The cheapest chain in which one visit of ``hosts`` makes way."""
        visit = self.problem.visits[moving]
        best: _Chain | None = None
        for r in hosts:
            route = self.index.routes[r].visits
            before = self._cost(r, route)
            for k, ejected in enumerate(route):
                if ejected.pinned_caregiver_id is not None:
                    continue
                host = _inserted(self.index, r, route[:k] + route[k + 1 :], visit)
                if host is None:
                    continue
                added = self._cost(r, host) - before
                if best is not None and added >= best.added:
                    continue
                rest = self._moved(
                    self.position_of[ejected.visit_id], excluded | {r}, depth - 1
                )
                if rest is not None and (
                    best is None or added + rest.added < best.added
                ):
                    best = _Chain(added + rest.added, ((r, host), *rest.routes))
        return best

    def _cost(self, r: int, route: tuple[Visit, ...]) -> int:
        """Cost of ``route`` for the caregiver of route ``r``, as the objective."""
        caregiver = self.index.routes[r].caregiver
        return _route_cost(
            self.problem.travel_s, self.problem.weights, CurrentRoute(caregiver, route)
        )


def _inserted(
    index: InsertionIndex, r: int, route: tuple[Visit, ...], visit: Visit
) -> tuple[Visit, ...] | None:
    """``route`` with ``visit`` at its cheapest feasible place for route ``r``."""
    saved = index.routes[r].visits
    index.replace(r, route)
    place = index.cheapest(visit, (r,))
    index.replace(r, saved)
    if place is None:
        return None
    at = place[1]
    return (*route[:at], visit, *route[at:])
