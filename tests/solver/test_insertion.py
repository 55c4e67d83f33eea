"""Fast insertion: exact ranking on a tiny case, agreement with brute force."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from solver import Caregiver, Problem, Visit, Weights, travel_matrix
from solver.decode import schedule_route
from solver.insertion import CurrentRoute, InsertionIndex, RejectionReason
from tests.solver.strategies import problems

HOUR_S = 3600
LINE = travel_matrix([[600 * abs(a - b) for b in range(6)] for a in range(6)])


def _caregiver(caregiver_id: str, location: int, **changes: object) -> Caregiver:
    fields: dict[str, object] = {
        "caregiver_id": caregiver_id,
        "start_location": location,
        "end_location": location,
        "shift_start_s": 8 * HOUR_S,
        "shift_end_s": 16 * HOUR_S,
        "skills": frozenset({"bath"}),
    }
    fields.update(changes)
    return Caregiver(**fields)  # type: ignore[arg-type]


def _visit(visit_id: str, location: int, earliest_h: int, **changes: object) -> Visit:
    fields: dict[str, object] = {
        "visit_id": visit_id,
        "location": location,
        "earliest_s": earliest_h * HOUR_S,
        "latest_s": earliest_h * HOUR_S + HOUR_S,
        "duration_s": 1800,
    }
    fields.update(changes)
    return Visit(**fields)  # type: ignore[arg-type]


def test_ranking_on_a_line_is_exact_and_cheapest_first() -> None:
    """Ann (on the way) ranks before Bob; Cem lacks the skill; Dan is blocked."""
    routes = [
        CurrentRoute(_caregiver("ann", 0), (_visit("a1", 4, 9),)),
        CurrentRoute(_caregiver("bob", 5)),
        CurrentRoute(_caregiver("cem", 2, skills=frozenset())),
        CurrentRoute(_caregiver("dan", 2)),
    ]
    new = _visit(
        "new",
        2,
        10,
        skills=frozenset({"bath"}),
        blocked_caregiver_ids=frozenset({"dan"}),
        preferred_caregiver_ids=frozenset({"bob"}),
    )

    result = InsertionIndex(LINE, routes, Weights(not_preferred=0)).rank(new)

    assert [
        (i.caregiver_id, i.position, i.added_travel_s) for i in result.insertions
    ] == [
        ("ann", 1, 0),
        ("bob", 0, 3600),
    ]
    ann = result.insertions[0]
    assert (ann.arrival_s, ann.start_s, ann.preferred) == (
        9 * HOUR_S + 1800 + 1200,
        10 * HOUR_S,
        False,
    )
    assert result.insertions[1].preferred
    assert [(r.caregiver_id, r.reason) for r in result.rejections] == [
        ("cem", RejectionReason.SKILLS),
        ("dan", RejectionReason.BLOCKED),
    ]


def test_full_caregiver_is_rejected_for_max_visits() -> None:
    """A caregiver at the maximum number of visits is rejected as max_visits."""
    routes = [CurrentRoute(_caregiver("ann", 0, max_visits=1), (_visit("a1", 1, 9),))]

    result = InsertionIndex(LINE, routes).rank(_visit("new", 2, 12))

    assert result.rejections[0].reason == RejectionReason.MAX_VISITS


def test_window_closed_before_arrival_is_rejected_for_window_or_shift() -> None:
    """A window that closes before the caregiver can arrive is window_or_shift."""
    routes = [CurrentRoute(_caregiver("ann", 0, shift_start_s=11 * HOUR_S))]

    result = InsertionIndex(LINE, routes).rank(_visit("new", 5, 9))

    assert result.insertions == ()
    assert result.rejections[0].reason == RejectionReason.WINDOW_OR_SHIFT


def test_apply_puts_the_visit_in_the_route_and_later_ranks_see_it() -> None:
    """After apply, the route holds the visit and the next ranking accounts for it."""
    index = InsertionIndex(LINE, [CurrentRoute(_caregiver("ann", 0, max_visits=1))])
    first = _visit("first", 1, 9)

    index.apply(index.rank(first).insertions[0], first)

    assert index.routes[0].visits == (first,)
    second = index.rank(_visit("second", 1, 11))
    assert second.rejections[0].reason == RejectionReason.MAX_VISITS


@settings(max_examples=60, deadline=None)
@given(problems(max_caregivers=3, max_visits=6), st.data())
def test_insertion_agrees_with_brute_force_scheduling(
    problem: Problem, data: st.DataObject
) -> None:
    """For random routes, ranked insertions match scheduling every position."""
    by_caregiver: dict[str, list[Visit]] = {
        c.caregiver_id: [] for c in problem.caregivers
    }
    *planned, new = problem.visits or (None,)
    if new is None:
        return
    for visit in planned:
        owner = data.draw(st.sampled_from(sorted(by_caregiver)))
        by_caregiver[owner].append(visit)
    caregiver_of = {c.caregiver_id: c for c in problem.caregivers}
    new = Visit(
        new.visit_id,
        new.location,
        new.earliest_s,
        new.latest_s,
        new.duration_s,
        skills=new.skills,
        blocked_caregiver_ids=new.blocked_caregiver_ids,
        max_lateness_s=new.max_lateness_s,
    )
    weights = Weights(not_preferred=0, lateness_per_s=0)
    routes = [CurrentRoute(caregiver_of[c], tuple(v)) for c, v in by_caregiver.items()]

    result = InsertionIndex(problem.travel_s, routes, weights).rank(new)

    expected: dict[str, int] = {}
    for route in routes:
        caregiver, visits = route.caregiver, list(route.visits)
        allowed = new.skills <= caregiver.skills and (
            caregiver.caregiver_id not in new.blocked_caregiver_ids
        )
        if not allowed:
            continue
        if caregiver.max_visits is not None and len(visits) >= caregiver.max_visits:
            continue
        base = schedule_route(problem, caregiver, visits)
        for position in range(len(visits) + 1):
            trial = [*visits[:position], new, *visits[position:]]
            scheduled = schedule_route(problem, caregiver, trial)
            if not _feasible_from_shift_start(problem, caregiver, trial):
                continue
            added = scheduled.travel_s - base.travel_s
            key = caregiver.caregiver_id
            expected[key] = min(expected.get(key, added), added)
    got = {i.caregiver_id: i.added_travel_s for i in result.insertions}
    assert got == expected
    assert {r.caregiver_id for r in result.rejections} | set(got) == set(by_caregiver)


def _feasible_from_shift_start(
    problem: Problem, caregiver: Caregiver, visits: list[Visit]
) -> bool:
    """Whether leaving at shift start and serving in order keeps every limit."""
    clock_s, here = caregiver.shift_start_s, caregiver.start_location
    for visit in visits:
        clock_s = max(
            clock_s + problem.travel_s[here][visit.location], visit.earliest_s
        )
        if clock_s > visit.latest_with_lateness_s:
            return False
        clock_s += visit.duration_s
        here = visit.location
    return (
        clock_s + problem.travel_s[here][caregiver.end_location]
        <= caregiver.shift_end_s
    )
