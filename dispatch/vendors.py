"""Choosing a vendor for a vendor order (pharmacy, supermarket, ...).

Candidates come from the directory with their open orders counted; the
choice is :func:`solver.vendor.match_vendor_orders`, which weighs category,
coverage, opening hours, remaining capacity, distance and merit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

import asyncpg

from db.roster import VendorRow, active_vendors
from dispatch.city import CHINA_TZ
from dispatch.lifecycle import Order
from solver import Priority
from solver.vendor import Vendor, VendorOrder, match_vendor_orders

__all__ = ["VendorChoice", "VendorMatcher", "opening_intervals"]

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class VendorChoice:
    """The vendor chosen for an order, or why there is none."""

    vendor_id: str | None
    reason: str = ""
    explanation: dict[str, Any] = field(default_factory=dict)


def opening_intervals(
    hours: dict[str, list[list[str]]], origin: datetime, days: int = 3
) -> tuple[tuple[int, int], ...]:
    """Open intervals in seconds from ``origin`` (local midnight) over ``days``.

    ``hours`` maps ``mon`` .. ``sun`` to ``[["08:00", "20:00"], ...]`` in
    the city's local time.
    """
    found = []
    for day in range(days):
        date = (origin + timedelta(days=day)).date()
        for opens, closes in hours.get(_WEEKDAYS[date.weekday()], []):
            start = datetime.combine(date, time.fromisoformat(opens), CHINA_TZ)
            end = datetime.combine(date, time.fromisoformat(closes), CHINA_TZ)
            found.append(
                (
                    int((start - origin).total_seconds()),
                    int((end - origin).total_seconds()),
                )
            )
    return tuple(found)


class VendorMatcher:
    """Picks a vendor for one order at a time from the live directory.

    Args:
        pool: Connections to the directory and orders.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def choose(self, order: Order, now: datetime) -> VendorChoice:
        """The best vendor for ``order`` not excluded from it."""
        async with self._pool.acquire() as conn:
            rows = await active_vendors(conn)
        rows = [r for r in rows if r.vendor_id not in order.excluded_provider_ids]
        origin = datetime.combine(
            order.window.earliest.astimezone(CHINA_TZ).date(), time(0), CHINA_TZ
        ) - timedelta(days=1)
        vendors = [_vendor(r, origin) for r in rows]
        wanted = VendorOrder(
            order_id=order.order_id,
            category=order.service_code,
            point=(order.location.lat, order.location.lon),
            region_id=order.region_id,
            earliest_s=int((order.window.earliest - origin).total_seconds()),
            latest_s=int((order.window.latest - origin).total_seconds()),
            priority=Priority(str(order.priority)),
        )
        matching = match_vendor_orders([wanted], vendors)
        if not matching.matches:
            reason = str(matching.unmatched[0].reason) if matching.unmatched else ""
            return VendorChoice(None, reason)
        match = matching.matches[0]
        chosen = next(r for r in rows if r.vendor_id == match.vendor_id)
        return VendorChoice(
            match.vendor_id,
            explanation={
                "vendor_id": match.vendor_id,
                "distance_m": match.distance_m,
                "merit": chosen.merit,
                "open_orders": chosen.open_orders,
                "capacity": chosen.capacity,
                "candidates": sum(order.service_code in r.service_codes for r in rows),
            },
        )


def _vendor(row: VendorRow, origin: datetime) -> Vendor:
    return Vendor(
        vendor_id=row.vendor_id,
        categories=row.service_codes,
        point=(row.location.lat, row.location.lon),
        region_ids=row.coverage_region_ids,
        opening_hours=opening_intervals(row.opening_hours, origin),
        capacity=max(0, row.capacity - row.open_orders),
        merit=row.merit,
    )
