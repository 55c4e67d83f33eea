"""The one place where OR-Tools node, index and vehicle numbers are converted.

OR-Tools routing speaks three numbering schemes: *nodes* (our locations of
interest), *indices* (the routing model's variables, where every vehicle has
its own start and end copy of its depot node) and *vehicles*. Our code
speaks visit ids, caregiver ids and travel-matrix locations. :class:`IndexMap`
owns the :class:`RoutingIndexManager` and every conversion between the two
worlds, so no other module does index arithmetic.

Node layout: visits ``0 .. len(visits) - 1`` in problem order, then one
depot node per distinct start or end location of the caregivers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ortools.constraint_solver import pywrapcp

from solver.problem import Caregiver, Problem, Visit


@dataclass(frozen=True, slots=True)
class _Layout:
    """Node numbering: which location each node stands for."""

    node_locations: tuple[int, ...]
    start_nodes: tuple[int, ...]
    end_nodes: tuple[int, ...]


def _layout(visits: Sequence[Visit], caregivers: Sequence[Caregiver]) -> _Layout:
    node_locations = [v.location for v in visits]
    depot_node: dict[int, int] = {}

    def depot(location: int) -> int:
        if location not in depot_node:
            depot_node[location] = len(node_locations)
            node_locations.append(location)
        return depot_node[location]

    starts = tuple(depot(c.start_location) for c in caregivers)
    ends = tuple(depot(c.end_location) for c in caregivers)
    return _Layout(tuple(node_locations), starts, ends)


class IndexMap:
    """Converts between routing indices and visits, caregivers and locations.

    Build it once per model; it creates and keeps the OR-Tools
    :class:`RoutingIndexManager` that the model is built on.

    Args:
        problem: The problem; its visit and caregiver order fix the numbering.
        visits: The visits that enter the model (a subset of the problem's
            visits: those screened out before the solve have no node).
    """

    def __init__(self, problem: Problem, visits: Sequence[Visit]) -> None:
        self.visits: tuple[Visit, ...] = tuple(visits)
        self.caregivers: tuple[Caregiver, ...] = problem.caregivers
        layout = _layout(self.visits, self.caregivers)
        self.node_locations = layout.node_locations
        self.manager = pywrapcp.RoutingIndexManager(
            len(layout.node_locations),
            len(self.caregivers),
            list(layout.start_nodes),
            list(layout.end_nodes),
        )
        self._vehicle_of_caregiver = {
            c.caregiver_id: vehicle for vehicle, c in enumerate(self.caregivers)
        }
        self._node_of_visit = {v.visit_id: node for node, v in enumerate(self.visits)}

    @property
    def num_nodes(self) -> int:
        """Number of nodes (visits plus depots)."""
        return len(self.node_locations)

    @property
    def num_visits(self) -> int:
        """Number of visit nodes; they come first in the node numbering."""
        return len(self.visits)

    @property
    def num_vehicles(self) -> int:
        """Number of vehicles, one per caregiver."""
        return len(self.caregivers)

    def index_of_visit(self, visit_id: str) -> int:
        """Routing index of the visit ``visit_id``."""
        return int(self.manager.NodeToIndex(self._node_of_visit[visit_id]))

    def index_of_node(self, node: int) -> int:
        """Routing index of a visit node (not valid for depot nodes)."""
        return int(self.manager.NodeToIndex(node))

    def node_of_index(self, index: int) -> int:
        """Node of a routing index (starts and ends map to depot nodes)."""
        return int(self.manager.IndexToNode(index))

    def visit_of_index(self, index: int) -> Visit | None:
        """The visit at a routing index, or ``None`` at a start or end."""
        node = self.node_of_index(index)
        return self.visits[node] if node < len(self.visits) else None

    def has_visit(self, visit_id: str) -> bool:
        """Whether the visit entered the model."""
        return visit_id in self._node_of_visit

    def vehicle_of_caregiver(self, caregiver_id: str) -> int:
        """Vehicle number of the caregiver."""
        return self._vehicle_of_caregiver[caregiver_id]

    def has_caregiver(self, caregiver_id: str) -> bool:
        """Whether the caregiver is a vehicle of the model."""
        return caregiver_id in self._vehicle_of_caregiver

    def caregiver_of_vehicle(self, vehicle: int) -> Caregiver:
        """The caregiver driving ``vehicle``."""
        return self.caregivers[vehicle]

    def node_travel_rows(self, travel_s: Sequence[Sequence[int]]) -> list[list[int]]:
        """Travel matrix between nodes, from the problem's location matrix."""
        locations = self.node_locations
        return [[row[b] for b in locations] for row in (travel_s[a] for a in locations)]
