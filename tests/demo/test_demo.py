"""The live demo end to end: phones over websockets, streams, the operator."""

from __future__ import annotations

from datetime import timedelta

import pytest

from dispatch.city import CitySpec
from dispatch.demo import LIFECYCLE, DemoOptions, demo_start, format_summary, run_demo
from dispatch.settings import Settings
from tests.conftest import Backing
from tests.demo.conftest import Stores

pytestmark = [pytest.mark.integration, pytest.mark.slow]

_SPEED = 100.0


def _settings(backing: Backing, stores: Stores) -> Settings:
    # Offer expiries and the emergency bound are in simulated seconds; at
    # 100x the defaults would leave a phone a fraction of a real second.
    return Settings.from_env(
        {
            "HOMECARE_DATA_DIR": str(backing.data_dir / "demo"),
            "HOMECARE_DATABASE_URL": stores.database_url,
            "HOMECARE_REDIS_URL": stores.redis_url,
            "HOMECARE_TOKEN_SECRET": "test-secret-of-at-least-16-bytes",
            "HOMECARE_PORT": "0",
            "HOMECARE_DB_POOL_SIZE": "8",
            "HOMECARE_OFFER_TIMEOUT_S": "900",
            "HOMECARE_EMERGENCY_OFFER_TIMEOUT_S": "300",
            "HOMECARE_EMERGENCY_BOUND_S": "1200",
            "HOMECARE_REOPTIMISE_S": "120",
            "HOMECARE_SOLVE_LIMIT_S": "1",
        }
    )


@pytest.mark.timeout(240)
async def test_demo_takes_orders_through_every_state_to_closure_without_errors(
    backing: Backing, stores: Stores
) -> None:
    """A small city at 100x closes orders, with phones connected and no error."""
    lines: list[str] = []
    options = DemoOptions(
        duration_s=55.0,
        speed=_SPEED,
        city=CitySpec(communities=3, elders=300, caregivers=60, vendors=4),
        orders_per_hour=60.0,
        ahead_orders=40,
        ahead_span_min=45.0,
        start=demo_start() - timedelta(minutes=20),
        progress=False,
    )

    summary = await run_demo(
        _settings(backing, stores),
        stores.database_url,
        stores.redis_url,
        options,
        lines.append,
    )

    report = format_summary(summary)
    assert summary.every_state_reached, report
    assert set(LIFECYCLE) <= set(summary.states_reached)
    assert summary.orders_by_state.get("closed", 0) > 0, report
    assert summary.error_logs == 0, report
    assert summary.phones_connected == summary.phones, report
    assert not summary.streams.errors, report
    assert any("/console/#token=" in line for line in lines)
