"""The service as a real process on the embedded default.

Books orders over HTTP, kills the service with SIGKILL, starts it again on
the same data folder and finds every acknowledged order; a normal stop
leaves no PostgreSQL or Redis process behind.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from db.directory import upsert_services
from db.embedded import EmbeddedServers, free_port
from db.migrate import migrate
from db.pool import connect_pool
from dispatch.catalogue import SEED_SERVICES
from tests.fixtures import load_small_directory

pytestmark = [pytest.mark.integration, pytest.mark.slow]

_START_TIMEOUT_S = 90.0


class Service:
    """One ``homecare serve`` process and what it printed at start.

    Args:
        data_dir: Its data folder.
        env: More settings (``HOMECARE_*``) for it.
        args: More arguments to ``serve``.
    """

    def __init__(
        self,
        data_dir: Path,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        self.port = free_port()
        ours = {k: v for k, v in os.environ.items() if not k.startswith("HOMECARE_")}
        ours |= {"HOMECARE_DATA_DIR": str(data_dir), "HOMECARE_PORT": str(self.port)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dispatch", "serve", *args],
            env=ours | (env or {}),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.token = ""
        deadline = time.monotonic() + _START_TIMEOUT_S
        assert self.process.stdout is not None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                raise AssertionError("the service exited before it served")
            if line.startswith("homecare: operator token "):
                self.token = line.split()[-1]
                return
        raise AssertionError("the service did not start in time")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait(self) -> int:
        """Wait for the process to end and release its pipe."""
        code = self.process.wait(timeout=60)
        assert self.process.stdout is not None
        self.process.stdout.close()
        return code

    def children(self) -> list[int]:
        """Process ids of the service's direct children (the servers)."""
        found: list[int] = []
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            text = (task / "children").read_text().split()
            found.extend(int(pid) for pid in text)
        return found


def _seed(data_dir: Path) -> None:
    """Load the small directory into the data folder's embedded database."""
    servers = EmbeddedServers(data_dir)
    servers.start(redis=False)

    async def load() -> None:
        pool = await connect_pool(servers.database_url, size=2)
        try:
            async with pool.acquire() as conn:
                await migrate(conn)
                await upsert_services(conn, SEED_SERVICES)
                await load_small_directory(conn)
        finally:
            await pool.close()

    try:
        asyncio.run(load())
    finally:
        servers.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def _wait_gone(pids: list[int], timeout_s: float = 30.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        alive = [p for p in pids if _alive(p)]
        if not alive:
            return []
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


async def _book(service: Service, count: int) -> list[str]:
    start = datetime.now(UTC) + timedelta(hours=1)
    headers = {"Authorization": f"Bearer {service.token}"}
    async with aiohttp.ClientSession(headers=headers) as session:

        async def one(i: int) -> str | None:
            body = {
                "elder_id": f"el-{i % 3 + 1}",
                "service_code": "meal_help",
                "earliest": start.isoformat(),
                "latest": (start + timedelta(hours=2)).isoformat(),
            }
            async with session.post(
                f"{service.url}/v1/orders",
                json=body,
                headers={"Idempotency-Key": f"k{i}"},
            ) as response:
                if response.status != 201:
                    return None
                order_id: str = (await response.json())["order_id"]
                return order_id

        results = await asyncio.gather(*(one(i) for i in range(count)))
    return [r for r in results if r is not None]


async def _missing(service: Service, order_ids: list[str]) -> list[str]:
    headers = {"Authorization": f"Bearer {service.token}"}
    missing = []
    async with aiohttp.ClientSession(headers=headers) as session:
        for order_id in order_ids:
            async with session.get(f"{service.url}/v1/orders/{order_id}") as response:
                if response.status != 200:
                    missing.append(order_id)
    return missing


def test_acknowledged_orders_survive_sigkill_and_no_orphans_remain(
    tmp_path: Path,
) -> None:
    """Every 201 before a SIGKILL is still there after a restart."""
    data_dir = tmp_path / "data"
    _seed(data_dir)
    first = Service(data_dir)
    servers = first.children()
    acknowledged = asyncio.run(_book(first, 40))
    assert len(acknowledged) == 40
    first.process.send_signal(signal.SIGKILL)
    first.wait()
    assert _wait_gone(servers) == [], "servers outlived a killed service"

    second = Service(data_dir)
    servers = second.children()
    assert len(servers) >= 2  # PostgreSQL, Redis, and a solver worker once used
    assert asyncio.run(_missing(second, acknowledged)) == []
    second.process.send_signal(signal.SIGTERM)
    assert second.wait() == 0
    assert _wait_gone(servers, timeout_s=5) == [], "servers outlived a normal stop"
