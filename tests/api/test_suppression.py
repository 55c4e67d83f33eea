"""Small-count suppression of the vendor demand view, over random data."""

from __future__ import annotations

import itertools

import aiohttp
import pytest
from hypothesis import given, settings

from dispatch.domain import ActorRole
from dispatch.node import Node
from dispatch.suppression import is_small, suppress_additive, suppress_each
from tests.api.conftest import OPERATOR, bearer, book
from tests.api.strategies import demand_rows


def _completions(sizes: int, total: int, limit: int = 14) -> set[tuple[int, ...]]:
    """Every non-negative filling of ``sizes`` hidden cells summing to ``total``."""
    found = set()
    for values in itertools.product(range(min(total, limit) + 1), repeat=sizes):
        if sum(values) == total:
            found.add(values)
    return found


@given(demand_rows)
def test_no_published_count_is_small(cells: dict[str, int]) -> None:
    """No cell and no total between 1 and 10 is ever published."""
    for published in (
        suppress_additive(cells),
        suppress_each(cells, sum(cells.values())),
    ):
        shown = [v for v in published.cells.values() if v is not None]
        if published.total is not None:
            shown.append(published.total)
        assert not [v for v in shown if is_small(v)]


@given(demand_rows)
def test_published_cells_are_true(cells: dict[str, int]) -> None:
    """What is published is the real count."""
    published = suppress_additive(cells)
    for key, value in published.cells.items():
        assert value is None or value == cells[key]
    assert published.total in (None, sum(cells.values()))


@settings(max_examples=300)
@given(demand_rows)
def test_no_suppressed_cell_follows_from_the_published_ones(
    cells: dict[str, int],
) -> None:
    """Each hidden cell has at least two values consistent with what is shown."""
    published = suppress_additive(cells)
    hidden = [k for k, v in published.cells.items() if v is None]
    if not hidden or published.total is None:
        return
    rest = published.total - sum(v for v in published.cells.values() if v is not None)
    assert rest >= 1
    if rest <= 12 and len(hidden) <= 4:
        fillings = _completions(len(hidden), rest)
        for i in range(len(hidden)):
            assert len({f[i] for f in fillings}) >= 2, (cells, published)
    else:
        # closed form: with two or more hidden cells each ranges over 0..rest
        assert len(hidden) >= 2


@pytest.mark.integration
async def test_vendor_sees_suppressed_demand_of_its_communities(
    server: str, node: Node
) -> None:
    """Three orders in a week are shown to the vendor only as suppressed."""
    async with aiohttp.ClientSession(headers=OPERATOR) as http:
        for _ in range(3):
            await book(http, server)
    headers = bearer(ActorRole.VENDOR, "vd-1")
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(f"{server}/v1/demand?weeks=1") as r:
            body = await r.json()
            assert r.status == 200, body
        async with http.get(f"{server}/v1/demand?vendor_id=vd-2") as r:
            assert r.status == 404
    text = str(body)
    assert "el-1" not in text
    (row,) = body["rows"]
    assert row["orders"] is None
    assert {c["key"]: c["count"] for c in row["orders_by_family"]}["daily_life"] is None
    assert all(not is_small(c["count"] or 0) for c in row["orders_by_family"])
