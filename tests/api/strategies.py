"""Hypothesis strategies of the API tests, one per entity."""

from __future__ import annotations

from hypothesis import strategies as st

#: Counts as they occur: many small ones (the risky range) and some large.
counts = st.one_of(st.integers(0, 12), st.integers(0, 400))

#: One demand row: counts of orders by service family.
demand_rows = st.dictionaries(
    st.sampled_from(["pharmacy", "health", "daily_life", "emergency", "meals"]),
    counts,
    min_size=1,
    max_size=5,
)
