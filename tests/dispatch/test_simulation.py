"""The simulated day, end to end on a tiny city at high clock speed."""

from __future__ import annotations

import asyncpg
import pytest

from dispatch.kpis import percentile
from dispatch.replay import replay
from dispatch.simday import DaySpec, decision, plan_day
from tests.conftest import Backing

TINY = DaySpec(caregivers=8, orders=60, communities=2, elders=300, seed=3)


def test_same_spec_gives_the_same_day() -> None:
    """The day is a pure function of its spec."""
    first, second = plan_day(TINY), plan_day(TINY)
    assert first.orders == second.orders
    assert len(first.orders) == 60
    assert all(o.earliest < o.latest for o in first.orders)
    assert [o.booked_at for o in first.orders] == sorted(
        o.booked_at for o in first.orders
    )


def test_caregiver_mood_is_fixed_by_order_and_provider() -> None:
    """Every policy meets the same decision for the same offer."""
    assert decision(1, "k", "cg-1") == decision(1, "k", "cg-1")
    assert decision(1, "k", "cg-1") != decision(1, "k", "cg-2")
    assert 0 <= decision(5, "x", "y") < 1


def test_percentile_is_nearest_rank() -> None:
    """p50 and p95 by nearest rank; nothing for no values."""
    assert percentile([], 0.5) is None
    assert percentile([3, 1, 2, 4], 0.5) == 2
    assert percentile(list(range(1, 101)), 0.95) == 95


@pytest.mark.integration
@pytest.mark.slow
async def test_tiny_day_replays_under_every_policy(
    backing: Backing, pool: asyncpg.Pool
) -> None:
    """Orders flow to closure and each policy reports its figures."""
    report = await replay(
        backing.database_url,
        backing.redis_url,
        TINY,
        speed=3000.0,
        hindsight_limit_s=1.0,
    )
    ours, greedy, bound = (
        report["policies"][k] for k in ("ours", "greedy", "hindsight")
    )
    for figures in (ours, greedy):
        assert figures["orders"] == 60
        assert figures["served_in_window"] > 0
        assert figures["travel_km_per_visit"] > 0
        assert figures["offers_per_order"] > 0
        lags = [figures[f"booking_lag_s_{q}"] for q in ("p50", "p95", "max")]
        assert 0 <= lags[0] <= lags[1] <= lags[2]
    assert bound["served_in_window"] >= 1
    assert "travel_saving_vs_greedy_pct" in report["comparison"]
    sim_url = backing.database_url.rsplit("/", 1)[0] + "/homecare_sim"
    conn = await asyncpg.connect(sim_url)
    try:
        closed = await conn.fetch(
            "select order_id from \"order\" where status = 'closed' limit 5"
        )
        assert closed, "no order reached closure"
        for row in closed:
            events = await conn.fetch(
                "select seq from order_event where order_id = $1 order by seq",
                row["order_id"],
            )
            assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    finally:
        await conn.close()
