"""Figures of benchmark results, drawn with matplotlib when it is installed.

matplotlib is an optional extra (``bench``), like the reference solvers: it
is imported only when a figure is asked for, through :mod:`importlib`, so
that neither the benchmarks nor the type check need it when no figure is
drawn.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

SOLVER_STYLE = {
    "ours": ("tab:blue", "o"),
    "pyvrp": ("tab:green", "s"),
    "vroom": ("tab:orange", "^"),
}
"""Colour and marker of each solver, the same in every figure."""


class GapResult(Protocol):
    """What a gap figure needs of one run."""

    @property
    def instance(self) -> str:
        """Instance name."""

    @property
    def solver(self) -> str:
        """Solver name."""

    @property
    def gap_pct(self) -> float | None:
        """Gap to the best-known distance in percent."""

    @property
    def feasible(self) -> bool:
        """Whether the checker accepted the plan."""


def _pyplot() -> Any:
    """Import pyplot with a file-only backend, or explain what to install."""
    try:
        matplotlib = importlib.import_module("matplotlib")
    except ImportError as error:
        raise RuntimeError(
            "plots need matplotlib: pip install -e '.[bench]' or "
            "pip install 'matplotlib>=3.7'"
        ) from error
    matplotlib.use("Agg")
    return importlib.import_module("matplotlib.pyplot")


def plot_gaps(results: Sequence[GapResult], path: Path, *, title: str) -> None:
    """Draw the gap to best-known per instance, one series per solver.

    Infeasible runs are drawn as crosses on the axis, so that a missing
    point never looks like a good one.

    Args:
        results: Runs of one or more solvers over the same instances.
        path: PNG file to write; its directory is created.
        title: Figure title (the budget, typically).
    """
    plt = _pyplot()
    instances = list(dict.fromkeys(r.instance for r in results))
    position = {name: i for i, name in enumerate(instances)}
    solvers = list(dict.fromkeys(r.solver for r in results))

    figure, axes = plt.subplots(figsize=(max(8.0, 0.22 * len(instances)), 4.5))
    for solver in solvers:
        colour, marker = SOLVER_STYLE.get(solver, ("tab:gray", "d"))
        runs = [r for r in results if r.solver == solver]
        good = [r for r in runs if r.feasible and r.gap_pct is not None]
        bad = [r for r in runs if not r.feasible]
        gaps = [r.gap_pct or 0.0 for r in good]
        mean = sum(gaps) / len(gaps) if gaps else float("nan")
        axes.plot(
            [position[r.instance] for r in good],
            gaps,
            marker=marker,
            linestyle="none",
            color=colour,
            markersize=4,
            label=f"{solver} (mean {mean:.2f}%, {len(bad)} infeasible)",
        )
        if bad:
            axes.plot(
                [position[r.instance] for r in bad],
                [0.0] * len(bad),
                marker="x",
                linestyle="none",
                color=colour,
                markersize=8,
            )
    axes.axhline(0.0, color="black", linewidth=0.5)
    axes.set_xticks(range(len(instances)), instances, rotation=90, fontsize=7)
    axes.set_ylabel("gap to best-known distance (%)")
    axes.set_title(title)
    axes.grid(axis="y", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


class DayFigures(Protocol):
    """What a home-care figure needs of one run."""

    @property
    def day(self) -> str:
        """Day name."""

    @property
    def solver(self) -> str:
        """Solver name."""

    @property
    def visits(self) -> int:
        """Visits in the day."""

    @property
    def served(self) -> int:
        """Visits served."""

    @property
    def travel_h(self) -> float:
        """Total travel in hours."""

    @property
    def continuity_pct(self) -> float | None:
        """Share of preferring elders served by their caregiver, percent."""

    @property
    def feasible(self) -> bool:
        """Whether the checker accepted the plan."""


def plot_homecare(results: Sequence[DayFigures], path: Path, *, title: str) -> None:
    """Draw served visits, travel per served visit and continuity per day.

    One group of bars per day, one bar per solver; infeasible plans are
    hatched so that they never pass for good ones.

    Args:
        results: Runs of one or more solvers over the same days.
        path: PNG file to write; its directory is created.
        title: Figure title (the budget, typically).
    """
    plt = _pyplot()
    days = list(dict.fromkeys(r.day for r in results))
    solvers = list(dict.fromkeys(r.solver for r in results))
    width = 0.8 / max(1, len(solvers))
    panels: list[tuple[str, Callable[[DayFigures], float]]] = [
        ("served visits (%)", lambda r: 100.0 * r.served / max(1, r.visits)),
        ("travel per served visit (min)", lambda r: 60 * r.travel_h / max(1, r.served)),
        ("continuity of care (%)", lambda r: r.continuity_pct or 0.0),
    ]

    figure, axes_row = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4))
    for axes, (label, measure) in zip(axes_row, panels, strict=True):
        for n, solver in enumerate(solvers):
            colour, _ = SOLVER_STYLE.get(solver, ("tab:gray", "d"))
            for d, day in enumerate(days):
                runs = [r for r in results if r.solver == solver and r.day == day]
                if not runs:
                    continue
                axes.bar(
                    d + n * width,
                    measure(runs[0]),
                    width,
                    color=colour,
                    hatch=None if runs[0].feasible else "xx",
                    label=solver if d == 0 else None,
                )
        axes.set_xticks(
            [d + width * (len(solvers) - 1) / 2 for d in range(len(days))],
            days,
            rotation=30,
            fontsize=8,
        )
        axes.set_title(label, fontsize=10)
        axes.grid(axis="y", alpha=0.3)
    axes_row[0].legend(fontsize=8, loc="lower left")
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
