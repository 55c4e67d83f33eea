"""Reference solvers run on the same instances as ours: PyVRP and VROOM.

Both are an optional extra (``pip install -e '.[compare]'``) and are
imported only inside the functions that use them, so the benchmarks run
without them as long as ``--compare`` is not given.

Each runner takes a :class:`~benchmarks.checker.RoutingInstance` and returns
a :class:`~benchmarks.checker.ClaimedPlan`: one visit sequence per caregiver
(route ``k`` is driven by caregiver ``k``, empty when unused) with the
distance and start times the solver reports. The caller hands it to the
independent checker like any other solver's answer; the checker decides.

Budgets: PyVRP stops on its own ``MaxRuntime`` criterion; VROOM gets the
same budget as its ``timeout`` at exploration level 5. Every solver in a
comparison gets one thread by default, the way ours runs, so the budget buys
the same compute for each (``--vroom-threads`` lets VROOM have more).
"""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from datetime import timedelta
from importlib import metadata
from typing import Any

from benchmarks.checker import ClaimedPlan, RoutingInstance

VROOM_EXPLORATION = 5
"""VROOM's exploration level: 5 is its most thorough search."""

VROOM_THREADS = 1
"""Threads VROOM uses by default: one, like the other solvers."""


def environment() -> dict[str, Any]:
    """Where the figures were measured: machine, Python and solver versions.

    Versions of packages that are not installed are given as ``None``.
    """
    versions: dict[str, str | None] = {}
    for package in ("ortools", "pyvrp", "pyvroom"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "versions": versions,
        "commit": _git("rev-parse", "--short", "HEAD"),
        "solver_changes": _git("status", "--porcelain", "--", "solver"),
    }


def _git(*args: str) -> str | None:
    """One line of git output about the working tree, ``None`` outside git.

    The commit and any uncommitted change under ``solver/`` tell which
    solver the figures belong to.
    """
    try:
        done = subprocess.run(
            ["git", *args], capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return " ".join(done.stdout.split())


def solve_pyvrp(
    instance: RoutingInstance, time_limit_s: float, seed: int
) -> ClaimedPlan:
    """Solve a VRPTW instance with PyVRP at a wall-clock budget.

    Only instances where every caregiver starts and ends at one depot on the
    same shift are supported (Solomon and Homberger); skills are ignored.

    Args:
        instance: The instance; distance and duration both come from
            ``instance.travel``.
        time_limit_s: Budget in seconds, PyVRP's ``MaxRuntime``.
        seed: PyVRP's seed.

    Returns:
        The plan, one route per vehicle PyVRP used then empty ones.

    Raises:
        ValueError: If caregivers differ in depot or shift.
    """
    import numpy as np
    import pyvrp
    from pyvrp.stop import MaxRuntime

    depot = instance.start_location[0]
    if (
        set(instance.start_location) | set(instance.end_location) != {depot}
        or len(set(instance.shift_start)) != 1
        or len(set(instance.shift_end)) != 1
    ):
        raise ValueError("PyVRP runner needs one depot and one shared shift")
    clients_at = list(instance.visit_location)
    if depot in clients_at:
        raise ValueError("a visit shares the depot's location")

    # ProblemData indexes locations with depots first, then clients.
    order = [depot, *clients_at]
    # Any: pyvrp's stubs want ndarray[int], a type numpy's own cannot name.
    matrix: Any = np.asarray(instance.travel, dtype=np.int64)[np.ix_(order, order)]
    demand = instance.visit_demand or (0,) * instance.num_visits
    capacity = [instance.capacity] if instance.capacity is not None else []
    data = pyvrp.ProblemData(
        locations=[pyvrp.Location(0.0, 0.0) for _ in order],
        clients=[
            pyvrp.Client(
                location=1 + v,
                delivery=[demand[v]] if capacity else [],
                service_duration=instance.visit_duration[v],
                tw_early=instance.visit_earliest[v],
                tw_late=instance.visit_latest[v],
            )
            for v in range(instance.num_visits)
        ],
        depots=[
            pyvrp.Depot(
                location=0,
                tw_early=instance.shift_start[0],
                tw_late=instance.shift_end[0],
            )
        ],
        vehicle_types=[
            pyvrp.VehicleType(
                num_available=instance.num_caregivers,
                capacity=capacity,
                tw_early=instance.shift_start[0],
                tw_late=instance.shift_end[0],
            )
        ],
        distance_matrices=[matrix],
        duration_matrices=[matrix],
    )
    result = pyvrp.solve(
        data, MaxRuntime(time_limit_s), seed=seed, collect_stats=False, display=False
    )

    # Client activity indices count clients only, from 0: they are visit
    # indices already.
    routes: list[list[int]] = []
    starts: list[list[int]] = []
    for route in result.best.routes():
        clients = [a for a in route.schedule() if a.is_client()]
        routes.append([a.idx for a in clients])
        starts.append([a.start_time for a in clients])
    unused = instance.num_caregivers - len(routes)
    return ClaimedPlan(
        routes=routes + [[] for _ in range(unused)],
        distance=result.best.distance(),
        starts=starts + [[] for _ in range(unused)],
    )


def solve_vroom(
    instance: RoutingInstance,
    time_limit_s: float,
    seed: int,
    *,
    priorities: Sequence[int] = (),
    threads: int = VROOM_THREADS,
) -> ClaimedPlan:
    """Solve with VROOM (pyvroom): windows, shifts, skills, capacity, priorities.

    VROOM minimises travel cost, here the travel matrix itself, after
    serving as many visits as it can, higher priorities first. It has no
    seed; the argument is accepted for a uniform signature.

    Args:
        instance: The instance.
        time_limit_s: Budget in seconds, passed as VROOM's timeout.
        seed: Ignored: VROOM is deterministic.
        priorities: VROOM priority (0-100) of each visit; all 0 when empty.
        threads: Threads VROOM may use.

    Returns:
        The plan, one route per caregiver.
    """
    import numpy as np
    import vroom

    del seed
    skill_ids = _skill_ids(instance)
    problem = vroom.Input()
    matrix = np.asarray(instance.travel, dtype=np.uint32)
    problem.set_durations_matrix(profile="car", matrix_input=matrix)
    problem.set_costs_matrix(profile="car", matrix_input=matrix)
    with_capacity = instance.capacity is not None and bool(instance.visit_demand)

    for k in range(instance.num_caregivers):
        held = instance.caregiver_skills[k] if instance.caregiver_skills else ()
        problem.add_vehicle(
            vroom.Vehicle(
                id=k,
                start=instance.start_location[k],
                end=instance.end_location[k],
                capacity=[instance.capacity] if with_capacity else (),
                skills={skill_ids[s] for s in held} if skill_ids else None,
                time_window=vroom.TimeWindow(
                    instance.shift_start[k], instance.shift_end[k]
                ),
            )
        )
    for v in range(instance.num_visits):
        needed = instance.visit_skills[v] if instance.visit_skills else ()
        problem.add_job(
            vroom.Job(
                id=v,
                location=instance.visit_location[v],
                default_service=instance.visit_duration[v],
                delivery=vroom.Amount(
                    [instance.visit_demand[v]] if with_capacity else []
                ),
                skills={skill_ids[s] for s in needed} if skill_ids else None,
                priority=priorities[v] if priorities else 0,
                time_windows=[
                    vroom.TimeWindow(
                        instance.visit_earliest[v], instance.visit_latest[v]
                    )
                ],
            )
        )

    solution = problem.solve(
        exploration_level=VROOM_EXPLORATION,
        nb_threads=threads,
        timeout=timedelta(seconds=time_limit_s),
    )
    return _vroom_plan(solution.to_dict(), instance.num_caregivers)


def _skill_ids(instance: RoutingInstance) -> dict[str, int]:
    """Number the skills, which VROOM wants as integers."""
    names: set[str] = set()
    for skills in (*instance.visit_skills, *instance.caregiver_skills):
        names |= skills
    return {name: number for number, name in enumerate(sorted(names))}


def _vroom_plan(answer: Mapping[str, Any], num_caregivers: int) -> ClaimedPlan:
    """Routes, cost and start times per caregiver from VROOM's JSON answer.

    A step's service starts after arrival, waiting and setup; VROOM's cost
    is the travel matrix summed along the routes, our distance.
    """
    routes: list[list[int]] = [[] for _ in range(num_caregivers)]
    starts: list[list[int]] = [[] for _ in range(num_caregivers)]
    for route in answer.get("routes", []):
        jobs = [step for step in route["steps"] if step["type"] == "job"]
        routes[int(route["vehicle"])] = [int(step["id"]) for step in jobs]
        starts[int(route["vehicle"])] = [
            int(step["arrival"])
            + int(step.get("waiting_time", 0))
            + int(step.get("setup", 0))
            for step in jobs
        ]
    cost = answer.get("summary", {}).get("cost")
    return ClaimedPlan(
        routes=routes,
        distance=None if cost is None else int(cost),
        starts=starts,
    )
