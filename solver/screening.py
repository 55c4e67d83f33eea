"""Screening: who may serve each visit, and why a visit cannot be served.

Before a solve, :func:`screen` works out per visit the caregivers allowed to
serve it (skills, blocked caregivers, pinning) and which of them could reach
it inside its time window and still end the shift in time, serving it alone.
A visit nobody can serve is left out of the model at once with the reason;
the rest enter the model with their allowed caregivers. After the solve,
:func:`left_out_reason` explains the visits the plan leaves out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from solver.insertion import InsertionIndex
from solver.plan import UnassignedReason
from solver.problem import Caregiver, Problem, Visit


@dataclass(frozen=True, slots=True)
class Screening:
    """Result of screening a problem.

    Attributes:
        visits: Visits that enter the model, in problem order.
        allowed: Per entry of ``visits``, ids of the caregivers allowed to
            serve it that can also reach it in time.
        rejected: Visits left out before the solve, with the reason.
    """

    visits: tuple[Visit, ...]
    allowed: tuple[tuple[str, ...], ...]
    rejected: tuple[tuple[Visit, UnassignedReason], ...]


def is_skilled(caregiver: Caregiver, visit: Visit) -> bool:
    """Whether the caregiver holds all of the visit's skills."""
    return visit.skills <= caregiver.skills


def skill_kinds(caregivers: Sequence[Caregiver]) -> dict[frozenset[str], list[int]]:
    """Caregivers (positions in ``caregivers``) by skill set, fewest skills first."""
    kinds: dict[frozenset[str], list[int]] = {}
    for i, caregiver in enumerate(caregivers):
        kinds.setdefault(caregiver.skills, []).append(i)
    return dict(sorted(kinds.items(), key=lambda kv: (len(kv[0]), sorted(kv[0]))))


def kind_for(
    visit: Visit, kinds: Mapping[frozenset[str], Sequence[int]]
) -> frozenset[str] | None:
    """The skill set a visit is best left to: the fewest skills that suffice.

    Caregivers with more skills than a visit needs are scarce for the visits
    that need them (nurses for nursing); ties go to the skill set held by
    more caregivers. ``None`` if no skill set suffices.
    """
    able = [kind for kind in kinds if visit.skills <= kind]
    if not able:
        return None
    return min(able, key=lambda kind: (len(kind), -len(kinds[kind]), sorted(kind)))


def is_allowed(caregiver: Caregiver, visit: Visit) -> bool:
    """Whether the caregiver may serve the visit: skilled, not blocked, pin."""
    pinned = visit.pinned_caregiver_id
    if pinned is not None and caregiver.caregiver_id != pinned:
        return False
    return is_skilled(caregiver, visit) and (
        caregiver.caregiver_id not in visit.blocked_caregiver_ids
    )


def can_reach(
    caregiver: Caregiver, visit: Visit, travel_s: Sequence[Sequence[int]]
) -> bool:
    """Whether the caregiver could serve the visit alone within window and shift."""
    arrival_s = (
        caregiver.shift_start_s + travel_s[caregiver.start_location][visit.location]
    )
    start_s = max(arrival_s, visit.earliest_s)
    if start_s > visit.latest_with_lateness_s:
        return False
    back_s = (
        start_s + visit.duration_s + travel_s[visit.location][caregiver.end_location]
    )
    return back_s <= caregiver.shift_end_s


def _fits_load(caregiver: Caregiver, visit: Visit) -> bool:
    if caregiver.max_visits is not None and caregiver.max_visits < 1:
        return False
    return caregiver.capacity is None or visit.demand <= caregiver.capacity


def screen(problem: Problem) -> Screening:
    """Split the problem's visits into those that enter the model and the rest.

    Args:
        problem: The problem.

    Returns:
        The screening, see :class:`Screening`.
    """
    visits: list[Visit] = []
    allowed: list[tuple[str, ...]] = []
    rejected: list[tuple[Visit, UnassignedReason]] = []
    for visit in problem.visits:
        skilled = [c for c in problem.caregivers if is_skilled(c, visit)]
        permitted = [c for c in skilled if is_allowed(c, visit)]
        reachable = [c for c in permitted if can_reach(c, visit, problem.travel_s)]
        loadable = [c for c in reachable if _fits_load(c, visit)]
        if not skilled:
            rejected.append((visit, UnassignedReason.NO_SKILLED_CAREGIVER))
        elif not permitted:
            rejected.append((visit, UnassignedReason.NO_ALLOWED_CAREGIVER))
        elif not reachable:
            rejected.append((visit, UnassignedReason.NO_SHIFT_COVERS_WINDOW))
        elif not loadable:
            rejected.append((visit, UnassignedReason.CAPACITY))
        else:
            visits.append(visit)
            allowed.append(tuple(c.caregiver_id for c in loadable))
    return Screening(tuple(visits), tuple(allowed), tuple(rejected))


def left_out_reason(index: InsertionIndex, visit: Visit) -> UnassignedReason:
    """Why the search left out a visit that some caregiver could serve alone.

    ``left_out_for_cost`` when the visit still fits somewhere in the final
    plan (serving it would cost more than its penalty), ``capacity`` when the
    time, visit count or load of every allowed caregiver is taken by the
    visits of the plan.

    Args:
        index: Insertion index over the final plan's routes.
        visit: The visit left out.
    """
    if index.rank(visit).insertions:
        return UnassignedReason.LEFT_OUT_FOR_COST
    return UnassignedReason.CAPACITY
