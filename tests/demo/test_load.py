"""The load benchmark end to end, tiny: the shape of its JSON report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# the load benchmark's histograms come with the bench extra
pytest.importorskip("hdrh")


@pytest.mark.timeout(300)
@pytest.mark.parametrize("orders_over", ["http", "intake"])
def test_tiny_load_run_writes_a_report_of_the_expected_shape(
    tmp_path: Path, orders_over: str
) -> None:
    """A few seconds at a low rate, over HTTP or intake, give every section."""
    report_path = tmp_path / "load.json"
    plot_path = tmp_path / "load.png"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.load",
            "--spawn",
            "--phones",
            "20",
            "--elders",
            "500",
            "--rate",
            "5",
            "--duration",
            "3",
            "--location-every",
            "2",
            "--ceiling-seconds",
            "1",
            "--json",
            str(report_path),
            "--plot",
            str(plot_path),
            "--orders-over",
            orders_over,
            "--intake-senders",
            "3",
        ],
        check=True,
        timeout=280,
        capture_output=True,
    )

    report = json.loads(report_path.read_text())
    assert {"machine", "config", "connections", "steps", "capacity"} <= set(report)
    assert {"ceilings", "ratios"} <= set(report)
    assert report["connections"]["connected"] == 20
    assert report["config"]["orders_over"] == orders_over
    (step,) = report["steps"]
    assert set(step["latency_ms"]) == {
        "order_ack",
        "offer_routine",
        "offer_emergency",
        "location_ack",
    }
    assert step["latency_ms"]["order_ack"]["count"] == 15
    assert {"p50", "p90", "p99", "p999", "max"} <= set(step["latency_ms"]["order_ack"])
    assert step["counts"]["location_acks"] > 0
    assert {"service_cpu_pct", "postgres_cpu_pct", "service_rss_mb"} <= set(
        step["server"]
    )
    assert step["cpu_ms_per_order"]["service"] > 0
    assert {"postgres", "solver", "generator"} <= set(step["cpu_ms_per_order"])
    assert report["ceilings"]["asyncpg_durable_inserts_per_s"] > 0
    assert report["ceilings"]["websockets_echo_messages_per_s"] > 0
    assert report["ceilings"]["store_offers_one_at_a_time_per_s"] > 0
    assert report["ceilings"]["store_offers_50_at_once_per_s"] > 0
    assert plot_path.stat().st_size > 0
