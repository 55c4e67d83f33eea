"""The search's knobs as applied to models of different sizes."""

from __future__ import annotations

from solver.search import SearchStrategy, ruin_max_visits


def test_ruin_takes_the_strategy_maximum_on_a_hundred_visits() -> None:
    """A Solomon-size model gets the whole ``ruin_max_visits``."""
    assert ruin_max_visits(SearchStrategy(ruin_max_visits=25), 100) == 25


def test_ruin_of_a_district_part_is_capped_at_a_quarter_of_its_visits() -> None:
    """A part of 60 visits is ruined by at most 15 at once."""
    assert ruin_max_visits(SearchStrategy(ruin_max_visits=25), 60) == 15


def test_ruin_of_a_tiny_model_still_removes_the_minimum() -> None:
    """The cap never goes below ``ruin_min_visits``."""
    strategy = SearchStrategy(ruin_min_visits=5, ruin_max_visits=25)
    assert ruin_max_visits(strategy, 8) == 5
