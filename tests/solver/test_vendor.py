"""Vendor matching: category, coverage, hours, capacity, distance and merit."""

from __future__ import annotations

from solver import Priority
from solver.vendor import (
    UnmatchedReason,
    Vendor,
    VendorOrder,
    distance_m,
    match_vendor_orders,
)

HOME = (31.2300, 121.4700)
NEAR = (31.2310, 121.4710)  # about 145 m from HOME
FAR = (31.2500, 121.4900)  # about 2.9 km from HOME


def _order(order_id: str, category: str = "pharmacy", **changes: object) -> VendorOrder:
    fields: dict[str, object] = {
        "order_id": order_id,
        "category": category,
        "point": HOME,
        "region_id": "r1",
        "earliest_s": 9 * 3600,
        "latest_s": 12 * 3600,
    }
    fields.update(changes)
    return VendorOrder(**fields)  # type: ignore[arg-type]


def test_distance_between_near_points_is_about_145_metres() -> None:
    """The haversine distance of the test points is what a map says."""
    assert 140 < distance_m(HOME, NEAR) < 150


def test_nearest_vendor_wins_when_merit_is_equal() -> None:
    """With equal merit, the order goes to the nearer pharmacy."""
    vendors = [
        Vendor("far", frozenset({"pharmacy"}), FAR),
        Vendor("near", frozenset({"pharmacy"}), NEAR),
    ]

    matching = match_vendor_orders([_order("o1")], vendors)

    assert [(m.order_id, m.vendor_id) for m in matching.matches] == [("o1", "near")]
    assert matching.unmatched == ()


def test_merit_is_worth_two_kilometres_of_distance() -> None:
    """Full merit beats equal distance but not 2.8 km more (worth is 2 km)."""
    vendors = [
        Vendor("poor", frozenset({"pharmacy"}), NEAR, merit=0.0),
        Vendor("good", frozenset({"pharmacy"}), FAR, merit=1.0, max_distance_m=5_000),
    ]

    matching = match_vendor_orders([_order("o1")], vendors)

    assert matching.matches[0].vendor_id == "poor"
    best = match_vendor_orders(
        [_order("o1")],
        [vendors[0], Vendor("good", frozenset({"pharmacy"}), NEAR, merit=1.0)],
    )
    assert best.matches[0].vendor_id == "good"


def test_capacity_sends_the_second_order_elsewhere_or_leaves_it_unmatched() -> None:
    """A vendor with one free slot takes one order; the urgent one goes first."""
    vendors = [Vendor("near", frozenset({"pharmacy"}), NEAR, capacity=1)]
    orders = [_order("routine"), _order("urgent", priority=Priority.URGENT)]

    matching = match_vendor_orders(orders, vendors)

    assert [m.order_id for m in matching.matches] == ["urgent"]
    assert [(u.order_id, u.reason) for u in matching.unmatched] == [
        ("routine", UnmatchedReason.CAPACITY)
    ]


def test_unmatched_orders_carry_the_most_fundamental_reason() -> None:
    """Category, coverage and opening hours each give their own reason."""
    vendors = [
        Vendor(
            "pharmacy",
            frozenset({"pharmacy"}),
            NEAR,
            region_ids=frozenset({"r1"}),
            opening_hours=((8 * 3600, 18 * 3600),),
        )
    ]
    orders = [
        _order("meals", category="meals"),
        _order("elsewhere", region_id="r2"),
        _order("night", earliest_s=20 * 3600, latest_s=22 * 3600),
    ]

    matching = match_vendor_orders(orders, vendors)

    assert matching.matches == ()
    assert [(u.order_id, u.reason) for u in matching.unmatched] == [
        ("meals", UnmatchedReason.NO_VENDOR_FOR_CATEGORY),
        ("elsewhere", UnmatchedReason.OUTSIDE_COVERAGE),
        ("night", UnmatchedReason.CLOSED_IN_WINDOW),
    ]


def test_no_orders_give_an_empty_matching() -> None:
    """Matching nothing returns nothing, at no cost."""
    matching = match_vendor_orders([], [Vendor("v", frozenset({"meals"}), NEAR)])

    assert (matching.matches, matching.unmatched, matching.cost) == ((), (), 0)
