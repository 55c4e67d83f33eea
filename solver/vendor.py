"""Vendor matching: vendor orders to vendors, as a min-cost flow.

A vendor (pharmacy, supermarket, meal kitchen, ...) may take an order when
it offers the order's category, covers the elder's region and distance, and
is open during some part of the order's time window. Each vendor takes at
most its open-order capacity. Among those assignments,
:func:`match_vendor_orders` picks the one of least total cost, where an
order costs the distance to its vendor minus the worth of the vendor's merit
score, and an order left unmatched costs a penalty that grows with priority.

The model is OR-Tools' min-cost flow (exact and fast at city scale): one
unit of supply per order, arcs order -> vendor for every allowed pair, arcs
vendor -> sink limited by capacity, and an arc order -> sink priced at the
left-out penalty. Each order left unmatched gets the most fundamental reason
that applies: category, coverage, opening hours, then capacity.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from ortools.graph.python import min_cost_flow

from solver.problem import Priority
from solver.travel import Point

_EARTH_RADIUS_M = 6_371_000.0


class UnmatchedReason(StrEnum):
    """Why a vendor order has no vendor, in the order checked."""

    NO_VENDOR_FOR_CATEGORY = "no_vendor_for_category"
    OUTSIDE_COVERAGE = "outside_coverage"
    CLOSED_IN_WINDOW = "closed_in_window"
    CAPACITY = "capacity"


@dataclass(frozen=True, slots=True)
class Vendor:
    """A vendor that fulfils orders.

    Attributes:
        vendor_id: Stable id of the vendor.
        categories: Service categories offered (``pharmacy``, ``meals``...).
        point: Where the vendor is, ``(latitude, longitude)`` in degrees.
        region_ids: Regions the vendor covers; empty means any region.
        max_distance_m: Farthest elder's home the vendor serves, in metres.
        opening_hours: Open intervals ``(open_s, close_s)`` in seconds from
            the problem's origin.
        capacity: How many more open orders the vendor can take now.
        merit: On-time and rating history, from 0 (worst) to 1 (best).
    """

    vendor_id: str
    categories: frozenset[str]
    point: Point
    region_ids: frozenset[str] = frozenset()
    max_distance_m: float = 5_000.0
    opening_hours: tuple[tuple[int, int], ...] = ((0, 86_400),)
    capacity: int = 10
    merit: float = 0.5


@dataclass(frozen=True, slots=True)
class VendorOrder:
    """An order to be fulfilled by a vendor.

    Attributes:
        order_id: Stable id of the order.
        category: The service category the order needs.
        point: The elder's home, ``(latitude, longitude)`` in degrees.
        region_id: The elder's region.
        earliest_s: Start of the order's time window.
        latest_s: End of the order's time window.
        priority: Decides the cost of leaving the order unmatched.
    """

    order_id: str
    category: str
    point: Point
    region_id: str
    earliest_s: int
    latest_s: int
    priority: Priority = Priority.ROUTINE


@dataclass(frozen=True, slots=True)
class VendorWeights:
    """Weights of the matching objective, in metres of distance.

    Attributes:
        merit_worth_m: How many metres of extra distance a vendor with merit
            1 is worth over one with merit 0.
        left_out_m: Cost of leaving an order unmatched, per priority.
    """

    merit_worth_m: int = 2_000
    left_out_m: dict[Priority, int] = field(
        default_factory=lambda: {
            Priority.ROUTINE: 1_000_000,
            Priority.URGENT: 10_000_000,
            Priority.EMERGENCY: 100_000_000,
        }
    )


@dataclass(frozen=True, slots=True)
class VendorMatch:
    """One order matched to one vendor."""

    order_id: str
    vendor_id: str
    distance_m: int


@dataclass(frozen=True, slots=True)
class UnmatchedOrder:
    """An order no vendor takes, and why."""

    order_id: str
    reason: UnmatchedReason


@dataclass(frozen=True, slots=True)
class VendorMatching:
    """Result of matching: matches in order order, unmatched with reasons."""

    matches: tuple[VendorMatch, ...]
    unmatched: tuple[UnmatchedOrder, ...]
    cost: int


def distance_m(a: Point, b: Point) -> float:
    """Great-circle distance between two points, in metres (haversine)."""
    lat_a, lon_a, lat_b, lon_b = map(math.radians, (*a, *b))
    h = (
        math.sin((lat_b - lat_a) / 2) ** 2
        + math.cos(lat_a) * math.cos(lat_b) * math.sin((lon_b - lon_a) / 2) ** 2
    )
    return 2 * _EARTH_RADIUS_M * math.asin(math.sqrt(min(1.0, h)))


def _is_open(vendor: Vendor, order: VendorOrder) -> bool:
    return any(
        open_s <= order.latest_s and order.earliest_s <= close_s
        for open_s, close_s in vendor.opening_hours
    )


def _covers(vendor: Vendor, order: VendorOrder, metres: float) -> bool:
    in_region = not vendor.region_ids or order.region_id in vendor.region_ids
    return in_region and metres <= vendor.max_distance_m


def _eligibility(
    order: VendorOrder, vendors: Sequence[Vendor]
) -> tuple[list[tuple[int, int]], UnmatchedReason]:
    """Allowed ``(vendor index, distance_m)`` pairs, and the reason if none."""
    offering = [k for k, v in enumerate(vendors) if order.category in v.categories]
    if not offering:
        return [], UnmatchedReason.NO_VENDOR_FOR_CATEGORY
    metres = {k: distance_m(vendors[k].point, order.point) for k in offering}
    covering = [k for k in offering if _covers(vendors[k], order, metres[k])]
    if not covering:
        return [], UnmatchedReason.OUTSIDE_COVERAGE
    open_ones = [k for k in covering if _is_open(vendors[k], order)]
    if not open_ones:
        return [], UnmatchedReason.CLOSED_IN_WINDOW
    return [(k, round(metres[k])) for k in open_ones], UnmatchedReason.CAPACITY


def match_vendor_orders(
    orders: Sequence[VendorOrder],
    vendors: Sequence[Vendor],
    weights: VendorWeights | None = None,
) -> VendorMatching:
    """Match vendor orders to vendors at least total cost.

    Args:
        orders: Orders to match.
        vendors: Vendors available now, with their remaining capacity.
        weights: Worth of merit and left-out penalties.

    Returns:
        The matching; every order is either matched or unmatched with a
        reason. Deterministic for equal inputs.
    """
    weights = weights or VendorWeights()
    flow = min_cost_flow.SimpleMinCostFlow()
    source, sink = 0, 1 + len(orders) + len(vendors)

    def order_node(i: int) -> int:
        return 1 + i

    def vendor_node(k: int) -> int:
        return 1 + len(orders) + k

    arcs: dict[int, tuple[int, int, int]] = {}  # arc -> (order, vendor, metres)
    reasons: dict[int, UnmatchedReason] = {}
    for i, order in enumerate(orders):
        flow.add_arc_with_capacity_and_unit_cost(source, order_node(i), 1, 0)
        flow.add_arc_with_capacity_and_unit_cost(
            order_node(i), sink, 1, weights.left_out_m[order.priority]
        )
        allowed, reasons[i] = _eligibility(order, vendors)
        for k, metres in allowed:
            worth = round(weights.merit_worth_m * vendors[k].merit)
            arc = flow.add_arc_with_capacity_and_unit_cost(
                order_node(i), vendor_node(k), 1, metres - worth
            )
            arcs[arc] = (i, k, metres)
    for k, vendor in enumerate(vendors):
        flow.add_arc_with_capacity_and_unit_cost(
            vendor_node(k), sink, max(0, vendor.capacity), 0
        )
    flow.set_node_supply(source, len(orders))
    flow.set_node_supply(sink, -len(orders))

    if not orders or flow.solve() != flow.OPTIMAL:
        unmatched = tuple(
            UnmatchedOrder(o.order_id, reasons[i]) for i, o in enumerate(orders)
        )
        return VendorMatching((), unmatched, 0)
    matched: dict[int, VendorMatch] = {}
    for arc, (i, k, metres) in arcs.items():
        if flow.flow(arc) > 0:
            matched[i] = VendorMatch(orders[i].order_id, vendors[k].vendor_id, metres)
    matches = tuple(matched[i] for i in sorted(matched))
    unmatched = tuple(
        UnmatchedOrder(o.order_id, reasons[i])
        for i, o in enumerate(orders)
        if i not in matched
    )
    return VendorMatching(matches, unmatched, int(flow.optimal_cost()))
