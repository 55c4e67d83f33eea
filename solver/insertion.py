"""Fast insertion: where one new visit fits best into the current plans.

The dispatcher's fast path must place each new order in well under a
millisecond, so this module never calls OR-Tools. :class:`InsertionIndex`
takes the current routes once and precomputes, per route and position,
when the caregiver is free at the earliest (forward pass) and the latest
moment each visit may start without making any later visit or the shift end
infeasible (backward pass). Checking one candidate position is then a few
additions: the new visit fits between ``p`` and ``q`` when it can start in
its window after ``p`` ends, and the caregiver still reaches ``q`` before
``q``'s latest feasible start.

Usage::

    index = InsertionIndex(travel_s, routes)
    result = index.rank(visit)
    if result.insertions:
        best = result.insertions[0]

Each caregiver appears once in the answer: in ``insertions`` with its
cheapest feasible position, or in ``rejections`` with the reason it cannot
take the visit. Rejection reasons are checked in the order of
:class:`RejectionReason`.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum

from solver.problem import Caregiver, Visit, Weights


class RejectionReason(StrEnum):
    """Why a caregiver cannot take a new visit, in the order checked."""

    PINNED_ELSEWHERE = "pinned_elsewhere"
    BLOCKED = "blocked"
    SKILLS = "skills"
    MAX_VISITS = "max_visits"
    CAPACITY = "capacity"
    WINDOW_OR_SHIFT = "window_or_shift"


@dataclass(frozen=True, slots=True)
class CurrentRoute:
    """A caregiver's route as it stands: the planned visits, in order.

    Attributes:
        caregiver: The caregiver; ``start_location`` and ``shift_start_s``
            are where and when the route continues (the live location and
            now, during the day).
        visits: The visits still to make, in order.
    """

    caregiver: Caregiver
    visits: tuple[Visit, ...] = ()


@dataclass(frozen=True, slots=True)
class Insertion:
    """One caregiver's cheapest feasible place for the new visit.

    Attributes:
        caregiver_id: The caregiver.
        position: Index in the caregiver's visits where the new visit goes
            (0 puts it first).
        arrival_s: When the caregiver would arrive at the elder's home.
        start_s: When the visit would start.
        added_travel_s: Extra travel the insertion causes.
        lateness_s: Seconds past the window's latest start (soft lateness).
        preferred: Whether the caregiver is one of the elder's preferred.
        cost: Added cost with the weights: travel, lateness, continuity.
    """

    caregiver_id: str
    position: int
    arrival_s: int
    start_s: int
    added_travel_s: int
    lateness_s: int
    preferred: bool
    cost: int


@dataclass(frozen=True, slots=True)
class Rejection:
    """A caregiver that cannot take the new visit, and why."""

    caregiver_id: str
    reason: RejectionReason


@dataclass(frozen=True, slots=True)
class InsertionResult:
    """Feasible insertions ranked cheapest first, and the rejections.

    Attributes:
        visit_id: The new visit.
        insertions: One per caregiver who can take it, cheapest first
            (ties: earlier start, then caregiver order).
        rejections: One per caregiver who cannot, in caregiver order.
    """

    visit_id: str
    insertions: tuple[Insertion, ...]
    rejections: tuple[Rejection, ...]


@dataclass(slots=True)
class _Slack:
    """Precomputed times of one route; index 0 is the start location."""

    caregiver: Caregiver
    locations: list[int]
    free_s: list[int]
    latest_start_s: list[int]
    load: int
    count: int
    feasible_prefix: int
    feasible_suffix: int


def _slack(travel_s: Sequence[Sequence[int]], route: CurrentRoute) -> _Slack:
    # The fast path builds this for every route of a region on each new
    # order, so it is written as two flat passes over local names.
    caregiver = route.caregiver
    visits = route.visits
    count = len(visits)
    locations = [caregiver.start_location]
    free_s = [caregiver.shift_start_s]
    hard_latest_s = []
    feasible_prefix = count
    here, clock_s, load = caregiver.start_location, caregiver.shift_start_s, 0
    for k, visit in enumerate(visits):
        there = visit.location
        hard_s = visit.latest_s + visit.max_lateness_s
        start_s = clock_s + travel_s[here][there]
        if start_s < visit.earliest_s:
            start_s = visit.earliest_s
        if start_s > hard_s and feasible_prefix == count:
            feasible_prefix = k
        clock_s = start_s + visit.duration_s
        locations.append(there)
        free_s.append(clock_s)
        hard_latest_s.append(hard_s)
        load += visit.demand
        here = there

    # latest[k + 1] is the latest start of visit k that keeps every later
    # visit and the shift end feasible; the last entry is the shift end
    # (the latest arrival at the end location).
    latest = [0] * (count + 2)
    latest_s = latest[-1] = caregiver.shift_end_s
    after = caregiver.end_location
    feasible_suffix = 0
    for k in range(count - 1, -1, -1):
        visit = visits[k]
        here = locations[k + 1]
        latest_s -= travel_s[here][after] + visit.duration_s
        if hard_latest_s[k] < latest_s:
            latest_s = hard_latest_s[k]
        latest[k + 1] = latest_s
        if not feasible_suffix and visit.earliest_s > latest_s:
            feasible_suffix = k + 1
        after = here
    latest[0] = latest[1]
    return _Slack(
        caregiver,
        locations,
        free_s,
        latest,
        load,
        count,
        feasible_prefix,
        feasible_suffix,
    )


class InsertionIndex:
    """Current routes with precomputed slack, ready to place new visits.

    Build once per plan change (cost: linear in the planned visits); call
    :meth:`rank` for each new visit. Ranking changes nothing; :meth:`apply`
    commits an insertion and refreshes only the route it changes.

    Args:
        travel_s: Travel matrix in whole seconds, indexed by location.
        routes: The current route of every caregiver who may take visits.
        weights: Weights used to price insertions (travel, lateness and the
            continuity cost); the solver's defaults when omitted.
        reuse: An earlier index over the same travel matrix; the slack of
            routes equal to one of its routes is taken over, not recomputed.
    """

    _current: list[CurrentRoute]
    _routes: list[_Slack]

    def __init__(
        self,
        travel_s: Sequence[Sequence[int]],
        routes: Sequence[CurrentRoute],
        weights: Weights | None = None,
        *,
        reuse: InsertionIndex | None = None,
    ) -> None:
        self._travel_s = travel_s
        self._weights = weights or Weights()
        self._current = list(routes)
        if reuse is None or reuse._travel_s is not travel_s:
            self._routes = [_slack(travel_s, r) for r in routes]
            return
        # Hashing a whole route hashes every field of every visit, which cost
        # more than the slack it saves; the ids are cheap to hash (strings
        # keep their hash), and the equality check that follows mostly
        # compares the same objects.
        pairs = zip(reuse._current, reuse._routes, strict=True)
        known = {_key(route): (route, slack) for route, slack in pairs}
        self._routes = []
        for route in routes:
            old = known.get(_key(route))
            if old is not None and old[0] == route:
                self._routes.append(old[1])
            else:
                self._routes.append(_slack(travel_s, route))

    @property
    def routes(self) -> tuple[CurrentRoute, ...]:
        """The routes as they stand, with every applied insertion."""
        return tuple(self._current)

    def apply(self, insertion: Insertion, visit: Visit) -> None:
        """Put ``visit`` where ``insertion`` says and update that route's slack.

        Args:
            insertion: An insertion returned by :meth:`rank` for ``visit``
                since the last change of the same caregiver's route.
            visit: The visit ranked.
        """
        for k, route in enumerate(self._current):
            if route.caregiver.caregiver_id == insertion.caregiver_id:
                visits = list(route.visits)
                visits.insert(insertion.position, visit)
                self._current[k] = CurrentRoute(route.caregiver, tuple(visits))
                self._routes[k] = _slack(self._travel_s, self._current[k])
                return
        raise KeyError(insertion.caregiver_id)

    def replace(self, position: int, visits: tuple[Visit, ...]) -> None:
        """Give the route at ``position`` new visits and refresh its slack."""
        route = CurrentRoute(self._current[position].caregiver, visits)
        self._current[position] = route
        self._routes[position] = _slack(self._travel_s, route)

    def rank(
        self, visit: Visit, only: Collection[int] | None = None
    ) -> InsertionResult:
        """Rank every caregiver's cheapest feasible place for ``visit``.

        Args:
            visit: The new visit; its location indexes the travel matrix.
            only: Positions (in the order given at construction) of the
                routes to consider; all when ``None``. The others appear in
                neither insertions nor rejections.

        Returns:
            Insertions cheapest first and rejections with reasons.
        """
        insertions: list[Insertion] = []
        rejections: list[Rejection] = []
        routes = self._routes
        if only is not None:
            routes = [routes[k] for k in sorted(only)]
        for route in routes:
            reason = _refusal(route, visit)
            found = None if reason else self._best_position(route, visit)
            caregiver_id = route.caregiver.caregiver_id
            if found is not None:
                insertions.append(found)
            else:
                rejections.append(
                    Rejection(caregiver_id, reason or RejectionReason.WINDOW_OR_SHIFT)
                )
        insertions.sort(key=lambda i: (i.cost, i.start_s))
        return InsertionResult(visit.visit_id, tuple(insertions), tuple(rejections))

    def cheapest(
        self, visit: Visit, only: Collection[int] | None = None
    ) -> tuple[int, int] | None:
        """Where :meth:`rank` would put ``visit`` first, without ranking.

        The recreate step of the search calls this thousands of times a
        second; it builds no :class:`Insertion` and no :class:`Rejection`.

        Args:
            visit: The new visit.
            only: Positions of the routes to consider; all when ``None``.

        Returns:
            The route's position and the position in its visits of the
            cheapest feasible insertion (ties as in :meth:`rank`), or
            ``None`` if no route considered can take the visit.
        """
        best: tuple[int, int, int, int] | None = None  # cost, start, route, at
        positions = range(len(self._routes)) if only is None else sorted(only)
        routes = self._routes
        for r in positions:
            route = routes[r]
            if _refusal(route, visit) is not None:
                continue
            found = self._cheapest_in(route, visit)
            if found is None:
                continue
            cost, position, arrival_s, _ = found
            start_s = max(arrival_s, visit.earliest_s)
            if best is None or (cost, start_s) < best[:2]:
                best = (cost, start_s, r, position)
        return None if best is None else (best[2], best[3])

    def insert(self, route_position: int, position: int, visit: Visit) -> None:
        """Put ``visit`` at ``position`` of the route at ``route_position``.

        The place must come from :meth:`cheapest` since the last change of
        that route; the route's slack is refreshed.
        """
        route = self._current[route_position]
        visits = route.visits
        self.replace(route_position, (*visits[:position], visit, *visits[position:]))

    def _best_position(self, route: _Slack, visit: Visit) -> Insertion | None:
        found = self._cheapest_in(route, visit)
        if found is None:
            return None
        cost, position, arrival_s, added_s = found
        start_s = max(arrival_s, visit.earliest_s)
        caregiver_id = route.caregiver.caregiver_id
        return Insertion(
            caregiver_id,
            position,
            arrival_s,
            start_s,
            added_s,
            max(0, start_s - visit.latest_s),
            caregiver_id in visit.preferred_caregiver_ids,
            cost,
        )

    def _cheapest_in(
        self, route: _Slack, visit: Visit
    ) -> tuple[int, int, int, int] | None:
        """Cost, position, arrival and added travel of the route's best place."""
        travel = self._travel_s
        here = visit.location
        from_here = travel[here]
        earliest_s, latest_s = visit.earliest_s, visit.latest_with_lateness_s
        duration_s = visit.duration_s
        locations, free_s, latest_start = (
            route.locations,
            route.free_s,
            route.latest_start_s,
        )
        end_location = route.caregiver.end_location
        count = route.count

        best: tuple[int, int, int, int] | None = None  # cost, k, arrival, added
        # Where the route is infeasible already (a visit before the position
        # starts too late, or one after it cannot start in time whatever
        # happens before), an insertion cannot make it feasible.
        travel_per_s = self._weights.travel_per_s
        lateness_per_s = self._weights.lateness_per_s
        soft_latest_s = visit.latest_s
        # Latest feasible starts only grow along a route, so the positions
        # before which even an on-time start cannot end early enough are a
        # prefix, skipped by bisection (long routes with narrow windows).
        first = bisect_left(
            latest_start,
            earliest_s + duration_s,
            route.feasible_suffix + 1,
            route.feasible_prefix + 2,
        )
        for k in range(first - 1, route.feasible_prefix + 1):
            if free_s[k] > latest_s:
                break  # the caregiver is free ever later along the route
            before = locations[k]
            to_here = travel[before]
            arrival_s = free_s[k] + to_here[here]
            if arrival_s > latest_s:
                continue
            start_s = arrival_s if arrival_s > earliest_s else earliest_s
            after = locations[k + 1] if k < count else end_location
            if start_s + duration_s + from_here[after] > latest_start[k + 1]:
                continue
            added_s = to_here[here] + from_here[after] - to_here[after]
            lateness_s = start_s - soft_latest_s if start_s > soft_latest_s else 0
            cost = travel_per_s * added_s + lateness_per_s * lateness_s
            if best is None or cost < best[0]:
                best = (cost, k, arrival_s, added_s)
        if best is None:
            return None
        if visit.preferred_caregiver_ids and (
            route.caregiver.caregiver_id not in visit.preferred_caregiver_ids
        ):
            return (best[0] + self._weights.not_preferred, *best[1:])
        return best


def _key(route: CurrentRoute) -> tuple[str, tuple[str, ...]]:
    return route.caregiver.caregiver_id, tuple(v.visit_id for v in route.visits)


def _refusal(route: _Slack, visit: Visit) -> RejectionReason | None:
    caregiver = route.caregiver
    caregiver_id = caregiver.caregiver_id
    if visit.pinned_caregiver_id not in (None, caregiver_id):
        return RejectionReason.PINNED_ELSEWHERE
    if caregiver_id in visit.blocked_caregiver_ids:
        return RejectionReason.BLOCKED
    if not visit.skills <= caregiver.skills:
        return RejectionReason.SKILLS
    if caregiver.max_visits is not None and route.count >= caregiver.max_visits:
        return RejectionReason.MAX_VISITS
    if (
        caregiver.capacity is not None
        and route.load + visit.demand > caregiver.capacity
    ):
        return RejectionReason.CAPACITY
    return None
