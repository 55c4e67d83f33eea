"""Small-count suppression of published demand figures.

A count from 1 to :data:`SMALL_MAX` could single out an elder in a small
community, so it is never published (primary suppression). Zero is
published: it singles out nobody. Where a row's cells add up to a published
total, one suppressed cell would be the total minus the others, so a second
cell is suppressed too (complementary suppression); where no second cell
exists, the total is suppressed instead.

With two or more suppressed cells in a row and the total published, the
suppressed cells share a known sum ``S`` of at least 1; any of them could
be anything from 0 to ``S``, so none can be worked out. Rows are published
with no cross-row totals, so no other equation ties suppressed cells
together.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["SMALL_MAX", "Published", "is_small", "suppress_additive", "suppress_each"]

#: The largest count that is suppressed; counts 1..SMALL_MAX are hidden.
SMALL_MAX = 10


def is_small(count: int) -> bool:
    """Whether ``count`` must not be published."""
    return 1 <= count <= SMALL_MAX


@dataclass(frozen=True, slots=True)
class Published:
    """A row as it may be shown: ``None`` marks a suppressed count."""

    cells: dict[str, int | None]
    total: int | None


def suppress_each(cells: Mapping[str, int], total: int) -> Published:
    """Primary suppression only, for cells that do not add up to the total.

    Elder counts by category overlap (an elder may be in several), so the
    only relation between them and the total is ``cell <= total``, which
    pins no suppressed cell down.
    """
    return Published(
        {k: None if is_small(v) else v for k, v in cells.items()},
        None if is_small(total) else total,
    )


def suppress_additive(cells: Mapping[str, int]) -> Published:
    """Primary and complementary suppression of cells summing to their total.

    The complement is the smallest published non-zero cell (the least
    information lost), else a zero cell; with no cell left, the total is
    suppressed.
    """
    total = sum(cells.values())
    if is_small(total):
        # every non-zero cell is at most the total, so small as well
        return Published({k: None if v else 0 for k, v in cells.items()}, None)
    hidden = {k for k, v in cells.items() if is_small(v)}
    if len(hidden) == 1:
        others = sorted(
            (k for k in cells if k not in hidden),
            key=lambda k: (cells[k] == 0, cells[k], k),
        )
        if others:
            hidden.add(others[0])
        else:
            return Published(dict.fromkeys(cells), None)
    return Published({k: None if k in hidden else v for k, v in cells.items()}, total)
