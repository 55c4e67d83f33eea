"""Hypothesis strategies for solver inputs, one per entity."""

from __future__ import annotations

import math

from hypothesis import strategies as st

from solver import Caregiver, Priority, Problem, Visit, travel_matrix

SKILLS = ("bath", "meds", "wound")
HOUR_S = 3600


@st.composite
def travel_matrices(draw: st.DrawFn, size: int) -> tuple[tuple[int, ...], ...]:
    """Travel matrix of points on a 10 km square at e-bike speed, seconds."""
    coordinate = st.integers(min_value=0, max_value=10_000)
    points = [(draw(coordinate), draw(coordinate)) for _ in range(size)]
    return travel_matrix([[int(math.dist(a, b) / 4) for b in points] for a in points])


@st.composite
def caregivers(draw: st.DrawFn, caregiver_id: str, location: int) -> Caregiver:
    """A caregiver on a day shift starting and ending at ``location``."""
    start_s = draw(st.integers(min_value=7, max_value=10)) * HOUR_S
    return Caregiver(
        caregiver_id=caregiver_id,
        start_location=location,
        end_location=location,
        shift_start_s=start_s,
        shift_end_s=start_s + draw(st.integers(min_value=4, max_value=9)) * HOUR_S,
        skills=frozenset(draw(st.sets(st.sampled_from(SKILLS)))),
        max_visits=draw(st.none() | st.integers(min_value=1, max_value=5)),
    )


@st.composite
def visits(
    draw: st.DrawFn, visit_id: str, location: int, caregiver_ids: list[str]
) -> Visit:
    """A visit with a window in the day, maybe skills, pin and preferences."""
    earliest_s = draw(st.integers(min_value=7 * 4, max_value=17 * 4)) * 900
    pinned = draw(st.none() | st.sampled_from(caregiver_ids))
    return Visit(
        visit_id=visit_id,
        location=location,
        earliest_s=earliest_s,
        latest_s=earliest_s + draw(st.integers(min_value=0, max_value=8)) * 900,
        duration_s=draw(st.integers(min_value=1, max_value=6)) * 600,
        skills=frozenset(draw(st.sets(st.sampled_from(SKILLS), max_size=1))),
        priority=draw(st.sampled_from(list(Priority))),
        pinned_caregiver_id=pinned if draw(st.integers(0, 4)) == 0 else None,
        preferred_caregiver_ids=frozenset(
            draw(st.sets(st.sampled_from(caregiver_ids), max_size=1))
        ),
        blocked_caregiver_ids=frozenset(
            draw(st.sets(st.sampled_from(caregiver_ids), max_size=1))
        ),
        max_lateness_s=draw(st.sampled_from([0, 0, 900])),
    )


@st.composite
def problems(draw: st.DrawFn, max_caregivers: int = 3, max_visits: int = 7) -> Problem:
    """A small random problem: caregivers at the first locations, then visits."""
    num_caregivers = draw(st.integers(min_value=1, max_value=max_caregivers))
    num_visits = draw(st.integers(min_value=0, max_value=max_visits))
    matrix = draw(travel_matrices(num_caregivers + num_visits))
    caregiver_ids = [f"cg-{k}" for k in range(num_caregivers)]
    team = tuple(draw(caregivers(c, k)) for k, c in enumerate(caregiver_ids))
    work = tuple(
        draw(visits(f"v-{j}", num_caregivers + j, caregiver_ids))
        for j in range(num_visits)
    )
    return Problem(travel_s=matrix, caregivers=team, visits=work)
