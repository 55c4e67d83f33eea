"""Refill: a left-out visit is served when routes near it make room."""

from __future__ import annotations

import time

from solver import Caregiver, Problem, Visit, travel_matrix
from solver.refill import refill
from solver.screening import kind_for, skill_kinds

NURSE = Caregiver("nurse", 0, 0, 0, 3600, frozenset({"nursing", "personal_care"}))
AIDE = Caregiver("aide", 0, 0, 0, 3600, frozenset({"personal_care"}))
BATH = Visit("bath", 1, 0, 3600, 2000, frozenset({"personal_care"}))
WOUND = Visit("wound", 2, 0, 3600, 2000, frozenset({"nursing"}))
PROBLEM = Problem(
    travel_matrix([[0 if a == b else 100 for b in range(3)] for a in range(3)]),
    (NURSE, AIDE),
    (BATH, WOUND),
)


def test_nursing_visit_is_served_by_moving_a_bath_to_the_aide() -> None:
    """The nurse's bath moves to the aide so the nurse can make the wound visit."""
    sequences = {"nurse": ["bath"], "aide": []}

    served = refill(PROBLEM, sequences, time.monotonic() + 60, seed=1, max_attempts=5)

    assert served == 1
    assert sequences == {"nurse": ["wound"], "aide": ["bath"]}


def test_a_chain_of_two_moves_makes_room_for_a_nursing_visit() -> None:
    """The bath goes to the aide, whose meal goes to the cook.

    Only the nurse may make the wound visit, so emptying the routes of
    those who could serve it (the ruin) cannot help; moving one visit on
    from the route its bath needs can.
    """
    aide = Caregiver("aide", 0, 0, 0, 3600, frozenset({"personal_care", "cooking"}))
    cook = Caregiver("cook", 0, 0, 0, 3600, frozenset({"cooking"}))
    meal = Visit("meal", 3, 0, 3600, 2000, frozenset({"cooking"}))
    problem = Problem(
        travel_matrix([[0 if a == b else 100 for b in range(4)] for a in range(4)]),
        (NURSE, aide, cook),
        (BATH, WOUND, meal),
    )
    sequences = {"nurse": ["bath"], "aide": ["meal"], "cook": []}

    served = refill(problem, sequences, time.monotonic() + 60, seed=1, max_attempts=20)

    assert served == 1
    assert sequences == {"nurse": ["wound"], "aide": ["bath"], "cook": ["meal"]}


def test_a_chain_of_three_moves_is_found_too() -> None:
    """Bath to the aide, meal to the cook, sweeping to the cleaner."""
    aide = Caregiver("aide", 0, 0, 0, 3600, frozenset({"personal_care", "cooking"}))
    cook = Caregiver("cook", 0, 0, 0, 3600, frozenset({"cooking", "cleaning"}))
    cleaner = Caregiver("cleaner", 0, 0, 0, 3600, frozenset({"cleaning"}))
    meal = Visit("meal", 3, 0, 3600, 2000, frozenset({"cooking"}))
    sweep = Visit("sweep", 4, 0, 3600, 2000, frozenset({"cleaning"}))
    problem = Problem(
        travel_matrix([[0 if a == b else 100 for b in range(5)] for a in range(5)]),
        (NURSE, aide, cook, cleaner),
        (BATH, WOUND, meal, sweep),
    )
    sequences = {"nurse": ["bath"], "aide": ["meal"], "cook": ["sweep"], "cleaner": []}

    served = refill(problem, sequences, time.monotonic() + 60, seed=1, max_attempts=20)

    assert served == 1
    assert sequences == {
        "nurse": ["wound"],
        "aide": ["bath"],
        "cook": ["meal"],
        "cleaner": ["sweep"],
    }


def test_nothing_changes_when_nothing_is_left_out() -> None:
    """A plan serving every visit comes back as it was."""
    sequences = {"nurse": ["wound"], "aide": ["bath"]}

    served = refill(PROBLEM, sequences, time.monotonic() + 60, seed=1, max_attempts=5)

    assert served == 0
    assert sequences == {"nurse": ["wound"], "aide": ["bath"]}


def test_a_visit_is_left_to_the_fewest_skills_that_suffice() -> None:
    """A bath counts toward the aides, a wound visit toward the nurses."""
    kinds = skill_kinds((NURSE, AIDE))

    assert kind_for(BATH, kinds) == AIDE.skills
    assert kind_for(WOUND, kinds) == NURSE.skills
    assert kind_for(Visit("x", 1, 0, 10, 1, frozenset({"cooking"})), kinds) is None
