"""Decomposition: split a large problem into parts, solve each, assemble.

Search quality drops quickly with size (OR-Tools was 22-46 % above the best
known distances at 1,000 visits after 10 s), so a district is cut into
parts of a few hundred visits that each get a share of the time limit:

1. cluster the visits by travel time around medoids (a few rounds of
   k-medoids on the travel matrix, seeded by farthest-point sampling);
2. give each part caregivers in proportion to its visits, nearest start
   locations first;
3. move each visit to the nearest part that holds a caregiver allowed to
   serve it (a pinned visit always goes with its caregiver);
4. solve the parts one after another, the time limit shared by size;
5. offer every visit left out by its part to all caregivers through
   :mod:`solver.insertion`, cheapest first;
6. split again around other medoids, every planned visit going with its
   caregiver, and improve each part from the routes found, so that part
   borders cost few visits;
7. refill (:mod:`solver.refill`): on the whole problem, ruin the routes
   near each visit still left out and recreate them with it.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from solver.decode import routes_from_sequences
from solver.insertion import CurrentRoute, InsertionIndex
from solver.plan import ObjectiveTerms, Plan, SolveStats, SolveStatus
from solver.problem import Caregiver, Problem, SolveOptions, Visit
from solver.refill import ATTEMPTS_PER_VISIT, refill
from solver.screening import is_allowed, kind_for, skill_kinds

MEDOID_ROUNDS = 4
"""Rounds of k-medoids refinement; more rounds rarely move a medoid."""

ROUNDS = 3
"""Splits solved one after the other, each improving the one before."""

ROUND_SHARES = (0.4, 0.3, 0.3)
"""Relative share of the time of each round."""

ASSEMBLY_SHARE = 0.12
"""Share of the time limit kept for screening, splitting and assembly."""

REFILL_SHARE = 0.35
"""Share of the time limit for :func:`solver.refill.refill` after the rounds."""

_NO_STATS = SolveStats(SolveStatus.FEASIBLE, 0, ObjectiveTerms(), 0.0, 0, 0)


@dataclass(frozen=True, slots=True)
class Part:
    """One part of a decomposed problem: caregivers and the visits they plan."""

    caregivers: tuple[Caregiver, ...]
    visits: tuple[Visit, ...]


def _medoids(
    travel: Sequence[Sequence[int]],
    locations: Sequence[int],
    k: int,
    rnd: random.Random,
) -> list[int]:
    distinct = sorted(set(locations))
    medoids = [rnd.choice(distinct)]
    nearest = [travel[medoids[0]][a] + travel[a][medoids[0]] for a in distinct]
    while len(medoids) < min(k, len(distinct)):
        far = max(range(len(distinct)), key=nearest.__getitem__)
        medoids.append(distinct[far])
        for i, a in enumerate(distinct):
            nearest[i] = min(
                nearest[i], travel[distinct[far]][a] + travel[a][distinct[far]]
            )
    for _ in range(MEDOID_ROUNDS):
        members: list[list[int]] = [[] for _ in medoids]
        for a in locations:
            members[_closest(travel, medoids, a)].append(a)
        for m, group in enumerate(members):
            if group:
                sample = group if len(group) <= 60 else rnd.sample(group, 60)
                medoids[m] = min(
                    sorted(set(group)), key=lambda c: sum(travel[c][b] for b in sample)
                )
    return medoids


def _closest(travel: Sequence[Sequence[int]], medoids: Sequence[int], a: int) -> int:
    return min(
        range(len(medoids)), key=lambda m: travel[medoids[m]][a] + travel[a][medoids[m]]
    )


def split(
    problem: Problem,
    max_part_visits: int,
    seed: int,
    owner: Mapping[str, str] | None = None,
) -> list[Part]:
    """Cut ``problem`` into parts of about ``max_part_visits`` visits.

    Args:
        problem: The problem; it must have at least one caregiver.
        max_part_visits: Target size of a part.
        seed: Seed of the medoid choice.
        owner: Per visit id, the caregiver currently planned to serve it;
            such a visit goes to that caregiver's part, so that a plan
            being improved keeps its routes whole.

    Returns:
        Parts covering every caregiver once and every visit at most once;
        visits that no caregiver may serve are in no part.
    """
    travel = problem.travel_s
    visits, caregivers = problem.visits, problem.caregivers
    k = max(1, min(len(caregivers), math.ceil(len(visits) / max_part_visits)))
    medoids = _medoids(travel, [v.location for v in visits], k, random.Random(seed))
    k = len(medoids)
    home = [_closest(travel, medoids, v.location) for v in visits]

    # Caregivers in proportion to the visits they are needed for, each to
    # the nearest part with room, skill set by skill set: nurses are few,
    # and a part that got nurses by headcount alone left its nursing visits
    # out while nurses elsewhere made visits anyone could make.
    part_of_caregiver: dict[int, int] = {}
    kinds = skill_kinds(caregivers)
    kind_of_visit = [kind_for(v, kinds) for v in visits]
    for kind, members_of_kind in kinds.items():
        sizes = [0] * k
        for j, visit_kind in enumerate(kind_of_visit):
            if visit_kind == kind:
                sizes[home[j]] += 1
        total = max(1, sum(sizes))
        quota = [round(len(members_of_kind) * size / total) for size in sizes]
        pairs = sorted(
            (travel[caregivers[i].start_location][medoids[m]], i, m)
            for i in members_of_kind
            for m in range(k)
        )
        for _, i, m in pairs:
            if i not in part_of_caregiver and quota[m] > 0:
                part_of_caregiver[i] = m
                quota[m] -= 1
    for i, c in enumerate(caregivers):
        if i not in part_of_caregiver:
            part_of_caregiver[i] = _closest(travel, medoids, c.start_location)

    members = [
        [c for i, c in enumerate(caregivers) if part_of_caregiver[i] == m]
        for m in range(k)
    ]
    part_visits: list[list[Visit]] = [[] for _ in range(k)]
    part_of_id = {
        c.caregiver_id: part_of_caregiver[i] for i, c in enumerate(caregivers)
    }
    owner = owner or {}
    for visit in visits:
        if visit.visit_id in owner:
            part_visits[part_of_id[owner[visit.visit_id]]].append(visit)
            continue
        options = [m for m in range(k) if any(is_allowed(c, visit) for c in members[m])]
        if options:
            best = min(
                options,
                key=lambda m: (
                    travel[medoids[m]][visit.location]
                    + travel[visit.location][medoids[m]]
                ),
            )
            part_visits[best].append(visit)
    return [
        Part(tuple(members[m]), tuple(part_visits[m]))
        for m in range(k)
        if members[m] or part_visits[m]
    ]


def repair(
    problem: Problem, sequences: dict[str, list[str]], left_out: Sequence[str]
) -> None:
    """Put left-out visits back wherever they fit cheapest, in place.

    Visits are tried most important first (by left-out cost), each at the
    cheapest feasible position among all caregivers, and only where that
    position costs less than leaving the visit out. A visit that fits
    nowhere may then take the place of one visit that costs less to leave
    out (an urgent visit displacing a routine one), which is put back
    elsewhere if it fits.
    """
    visit_of = {v.visit_id: v for v in problem.visits}
    weights = problem.weights
    ordered = sorted(
        (visit_of[v] for v in left_out),
        key=lambda v: (-weights.left_out_cost(v), v.earliest_s, v.visit_id),
    )
    if not ordered:
        return
    routes = [
        CurrentRoute(c, tuple(visit_of[v] for v in sequences.get(c.caregiver_id, ())))
        for c in problem.caregivers
    ]
    index = InsertionIndex(problem.travel_s, routes, weights)
    pending = list(ordered)
    while pending:
        visit = pending.pop(0)
        ranked = index.rank(visit).insertions
        if ranked and ranked[0].cost < weights.left_out_cost(visit):
            index.apply(ranked[0], visit)
            continue
        ejected = _eject_for(problem, index, visit)
        if ejected is not None:
            pending.append(ejected)
    for route in index.routes:
        sequences[route.caregiver.caregiver_id] = [v.visit_id for v in route.visits]


def _eject_for(problem: Problem, index: InsertionIndex, visit: Visit) -> Visit | None:
    """Serve ``visit`` instead of the cheapest-to-leave-out visit it can replace.

    Returns the visit taken out, or ``None`` if no single removal makes room.
    """
    weights = problem.weights
    worth = weights.left_out_cost(visit)
    best: tuple[int, int, int, Visit] | None = None  # penalty, cost, route, out
    for k, route in enumerate(index.routes):
        for out in route.visits:
            penalty = weights.left_out_cost(out)
            if penalty >= worth or (best is not None and penalty > best[0]):
                continue
            shorter = CurrentRoute(
                route.caregiver, tuple(v for v in route.visits if v is not out)
            )
            trial = InsertionIndex(problem.travel_s, [shorter], weights).rank(visit)
            if trial.insertions:
                candidate = (penalty, trial.insertions[0].cost, k, out)
                if best is None or candidate[:2] < best[:2]:
                    best = candidate
    if best is None:
        return None
    _, _, k, out = best
    route = index.routes[k]
    index.replace(k, tuple(v for v in route.visits if v is not out))
    index.apply(index.rank(visit, [k]).insertions[0], visit)
    return out


def solve_in_parts(
    problem: Problem,
    options: SolveOptions,
    solve_part: Callable[[Problem, SolveOptions], Plan],
    max_part_visits: int,
) -> tuple[dict[str, list[str]], int, int]:
    """Solve ``problem`` part by part with ``solve_part`` and assemble.

    :data:`ROUNDS` rounds share most of the time limit. The first solves
    the parts of one split from scratch. Each later round splits again
    around other medoids, each caregiver's planned visits going with the
    caregiver, and improves each part from the routes found so far, so that
    visits stranded at a border get another chance. Then :func:`~solver.
    refill.refill` spends :data:`REFILL_SHARE` of the limit on the visits
    still left out, across the whole problem.

    Args:
        problem: The problem.
        options: Options of the whole solve; each part gets a share of the
            time limit in proportion to its visits.
        solve_part: Solves one part (the undecomposed solver).
        max_part_visits: Target size of a part.

    Returns:
        Per caregiver id the visit ids in order, the improving solutions
        found over all parts, and the number of parts of the first round.
    """
    started = time.monotonic()
    sequences: dict[str, list[str]] = {}
    found, parts_first = 0, 0
    warm = options.warm_start
    for round_ in range(ROUNDS):
        owner = {v: c for c, seq in sequences.items() for v in seq}
        parts = split(problem, max_part_visits, options.seed + round_, owner)
        parts_first = parts_first or len(parts)
        # What is left, less a reserve for assembling, shared among the
        # rounds still to run by their shares.
        left_s = options.time_limit_s * (1 - ASSEMBLY_SHARE - REFILL_SHARE)
        left_s -= time.monotonic() - started
        budget_s = left_s * ROUND_SHARES[round_] / sum(ROUND_SHARES[round_:])
        total = max(1, sum(len(p.visits) for p in parts))
        for part in parts:
            if not part.caregivers:
                continue
            sub = Problem(
                problem.travel_s, part.caregivers, part.visits, problem.weights
            )
            share_s = max(0.05, budget_s * len(part.visits) / total)
            plan = solve_part(
                sub,
                SolveOptions(
                    time_limit_s=share_s,
                    seed=options.seed + round_,
                    solution_limit=options.solution_limit,
                    warm_start=warm,
                    decompose_above_visits=0,
                ),
            )
            found += plan.stats.solutions_found
            for route in plan.routes:
                sequences[route.caregiver_id] = list(route.visit_ids)
        served = {v for seq in sequences.values() for v in seq}
        repair(
            problem,
            sequences,
            [v.visit_id for v in problem.visits if v.visit_id not in served],
        )
        routes = routes_from_sequences(problem, sequences)
        warm = Plan(routes, (), _NO_STATS)

    served = {v for seq in sequences.values() for v in seq}
    left_out = len(problem.visits) - len(served)
    refill(
        problem,
        sequences,
        started + options.time_limit_s * (1 - ASSEMBLY_SHARE),
        options.seed,
        None if options.solution_limit is None else ATTEMPTS_PER_VISIT * left_out,
    )
    return sequences, found, parts_first
