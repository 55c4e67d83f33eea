"""Turn visit sequences into a :class:`~solver.plan.Plan` with times and costs.

Whatever produced the sequences (the OR-Tools search, our own construction,
a warm start), the plan's times and objective are recomputed here from the
problem alone, so every plan is scheduled and priced the same way. A
caregiver leaves as late as still lets the first visit start at its
earliest possible moment, then serves each visit as early as its time window
allows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from solver.model import fair_share
from solver.plan import ObjectiveTerms, PlannedVisit, Route, Unassigned
from solver.problem import Caregiver, Problem, Visit


def schedule_route(
    problem: Problem, caregiver: Caregiver, visits: Sequence[Visit]
) -> Route:
    """Schedule ``visits`` in order for ``caregiver``, each as early as possible.

    The route may break time windows or the shift; callers check with
    :func:`route_is_feasible` when it matters. A caregiver with no visits
    does not travel at all (an unused vehicle costs nothing in the model).
    """
    if not visits:
        start_s = caregiver.shift_start_s
        return Route(caregiver.caregiver_id, (), 0, start_s, start_s)
    travel = problem.travel_s
    here = caregiver.start_location
    clock_s = caregiver.shift_start_s
    if visits:
        first = visits[0]
        lead_s = travel[here][first.location]
        clock_s = max(clock_s, first.earliest_s - lead_s)
    departure_s = clock_s
    travel_s = 0
    planned = []
    for visit in visits:
        leg_s = travel[here][visit.location]
        travel_s += leg_s
        arrival_s = clock_s + leg_s
        start_s = max(arrival_s, visit.earliest_s)
        end_s = start_s + visit.duration_s
        lateness_s = max(0, start_s - visit.latest_s)
        planned.append(
            PlannedVisit(visit.visit_id, arrival_s, start_s, end_s, lateness_s)
        )
        clock_s, here = end_s, visit.location
    leg_s = travel[here][caregiver.end_location]
    return Route(
        caregiver.caregiver_id,
        tuple(planned),
        travel_s + leg_s,
        departure_s,
        clock_s + leg_s,
    )


def route_is_feasible(
    route: Route, caregiver: Caregiver, visits: Sequence[Visit]
) -> bool:
    """Whether a scheduled route keeps every time window, the shift and loads."""
    if route.return_s > caregiver.shift_end_s:
        return False
    if caregiver.max_visits is not None and len(visits) > caregiver.max_visits:
        return False
    if caregiver.capacity is not None and (
        sum(v.demand for v in visits) > caregiver.capacity
    ):
        return False
    return all(
        p.start_s <= v.latest_with_lateness_s
        for p, v in zip(route.visits, visits, strict=True)
    )


def objective_terms(
    problem: Problem, routes: Sequence[Route], unassigned: Sequence[Unassigned]
) -> ObjectiveTerms:
    """Price a plan term by term with the problem's weights."""
    weights = problem.weights
    visit_of = {v.visit_id: v for v in problem.visits}
    served = [(r.caregiver_id, p) for r in routes for p in r.visits]
    not_preferred = sum(
        1
        for caregiver_id, p in served
        if visit_of[p.visit_id].preferred_caregiver_ids
        and caregiver_id not in visit_of[p.visit_id].preferred_caregiver_ids
    )
    balance = 0
    if weights.balance_per_visit > 0:
        share = fair_share(len(problem.visits), len(problem.caregivers))
        balance = sum(max(0, len(r.visits) - share) for r in routes)
    return ObjectiveTerms(
        travel=weights.travel_per_s * sum(r.travel_s for r in routes),
        lateness=weights.lateness_per_s * sum(p.lateness_s for _, p in served),
        left_out=sum(weights.left_out_cost(visit_of[u.visit_id]) for u in unassigned),
        continuity=weights.not_preferred * not_preferred,
        balance=weights.balance_per_visit * balance,
    )


def routes_from_sequences(
    problem: Problem, sequences: Mapping[str, Sequence[str]]
) -> tuple[Route, ...]:
    """Schedule one route per caregiver from visit-id sequences.

    Args:
        problem: The problem.
        sequences: Per caregiver id, the visit ids in order; caregivers that
            are missing get an empty route.

    Returns:
        One route per caregiver, in the problem's caregiver order.
    """
    visit_of = {v.visit_id: v for v in problem.visits}
    return tuple(
        schedule_route(
            problem,
            caregiver,
            [visit_of[v] for v in sequences.get(caregiver.caregiver_id, ())],
        )
        for caregiver in problem.caregivers
    )
