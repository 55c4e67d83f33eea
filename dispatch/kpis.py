"""Key figures of a simulated day, from the event log and the crew's counts.

The same figures come out of every policy: orders served in their window,
lateness, emergency response times, travel per visit, utilisation,
continuity of care, offers per order and escalations. The booking lag
says whether the replay kept up with its clock: a replay that fell behind
booked its orders late and its other figures are not comparable. The
hindsight plan (:func:`hindsight`) gives the figures a plan made with every
order known in advance reaches: a bound no online policy can beat.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, time, timedelta
from typing import Any

import asyncpg

from dispatch.catalogue import SEED_SERVICES
from dispatch.city import CHINA_TZ
from dispatch.domain import ProviderKind
from dispatch.simday import SimulatedDay
from dispatch.simulation import CrewStats
from solver import Caregiver, Priority, Problem, SolveOptions, Visit, solve
from solver.travel import GreatCircleTravel, TravelMode

__all__ = ["hindsight", "measure", "percentile"]

_SERVICES = {s.service_code: s for s in SEED_SERVICES}
_SPEED_M_PER_S = 4.2


def percentile(values: Sequence[float], share: float) -> float | None:
    """The ``share`` quantile (0..1) by nearest rank; ``None`` when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, math.ceil(share * len(ordered)) - 1)
    return round(ordered[rank], 2)


async def measure(
    pool: asyncpg.Pool, day: SimulatedDay, crew: CrewStats, wall_s: float
) -> dict[str, Any]:
    """The day's figures for one replayed policy."""
    rows = await pool.fetch(
        """
        select o.order_id, o.elder_id, o.priority, o.provider_kind, o.status,
               o.service_code, o.latest, o.created_at, o.provider_id,
               (select min(at) from order_event e
                 where e.order_id = o.order_id and e.trigger = 'offer')
                 as offered_at,
               (select min(at) from order_event e
                 where e.order_id = o.order_id and e.trigger = 'accept')
                 as accepted_at,
               (select min(at) from order_event e
                 where e.order_id = o.order_id and e.trigger = 'check_in')
                 as arrived_at,
               (select min(at) from order_event e
                 where e.order_id = o.order_id and e.trigger = 'start')
                 as started_at,
               (select count(*) from order_event e
                 where e.order_id = o.order_id and e.trigger = 'offer') as offers,
               exists (select 1 from order_event e where e.order_id = o.order_id
                        and e.to_status = 'escalated') as escalated
        from "order" o
        """
    )
    preferred = {e.elder_id: set(e.preferred_caregiver_ids) for e in day.city.elders}
    visits = [r for r in rows if r["provider_kind"] == ProviderKind.CAREGIVER]
    served, lateness_min, continuity = 0, [], []
    for row in visits:
        started = row["started_at"]
        if started is None:
            continue
        allowed = timedelta(minutes=_SERVICES[row["service_code"]].max_lateness_min)
        late_min = max(0.0, (started - row["latest"]).total_seconds() / 60)
        lateness_min.append(late_min)
        if started <= row["latest"] + allowed:
            served += 1
        if preferred.get(row["elder_id"]):
            continuity.append(row["provider_id"] in preferred[row["elder_id"]])
    emergencies = [r for r in rows if r["priority"] == "emergency"]
    to_offer = [
        (r["offered_at"] - r["created_at"]).total_seconds()
        for r in emergencies
        if r["offered_at"] is not None
    ]
    to_accept = [
        (r["accepted_at"] - r["created_at"]).total_seconds()
        for r in emergencies
        if r["accepted_at"] is not None
    ]
    to_arrive = [
        (r["arrived_at"] - r["created_at"]).total_seconds()
        for r in emergencies
        if r["arrived_at"] is not None
    ]
    started_visits = len(lateness_min)
    shift_s = sum((s.ends_at - s.starts_at).total_seconds() for s in _shifts(day))
    vendor_orders = [r for r in rows if r["provider_kind"] == ProviderKind.VENDOR]
    return {
        "orders": len(rows),
        "caregiver_orders": len(visits),
        "served_in_window": served,
        "served_in_window_pct": _pct(served, len(visits)),
        "lateness_min_p50": percentile(lateness_min, 0.5),
        "lateness_min_p95": percentile(lateness_min, 0.95),
        "emergencies": len(emergencies),
        "emergency_booked_to_offer_s_p50": percentile(to_offer, 0.5),
        "emergency_booked_to_offer_s_p95": percentile(to_offer, 0.95),
        "emergency_booked_to_accepted_s_p50": percentile(to_accept, 0.5),
        "emergency_booked_to_accepted_s_p95": percentile(to_accept, 0.95),
        "emergency_booked_to_arrival_s_p50": percentile(to_arrive, 0.5),
        "emergency_booked_to_arrival_s_p95": percentile(to_arrive, 0.95),
        "travel_km_per_visit": (
            round(sum(crew.travelled_m.values()) / 1000 / started_visits, 3)
            if started_visits
            else None
        ),
        "utilisation_pct": _pct(sum(crew.service_s.values()), shift_s),
        "continuity_pct": _pct(sum(continuity), len(continuity)),
        "offers_per_order": round(
            sum(r["offers"] for r in rows) / max(1, len(rows)), 3
        ),
        "escalations": sum(1 for r in rows if r["escalated"]),
        "vendor_orders": len(vendor_orders),
        "vendor_delivered": sum(
            1 for r in vendor_orders if r["status"] in ("completed", "closed")
        ),
        "declines": crew.declines,
        "late_arrivals": crew.late_arrivals,
        "booking_lag_s_p50": percentile(crew.booking_lag_s, 0.5),
        "booking_lag_s_p95": percentile(crew.booking_lag_s, 0.95),
        "booking_lag_s_max": percentile(crew.booking_lag_s, 1.0),
        "wall_s": round(wall_s, 1),
    }


def hindsight(
    day: SimulatedDay, time_limit_s: float, workers: int = 2
) -> dict[str, Any]:
    """The figures of one long solve per region with every order known.

    Each region is planned with its own caregivers, as the dispatcher
    does; emergencies are plain visits with their windows.
    """
    problems = _problems(day)
    options = SolveOptions(time_limit_s=time_limit_s, seed=day.spec.seed)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        plans = list(pool.map(solve, problems, [options] * len(problems)))
    served, lateness_min, continuity, travel_s, service_s = 0, [], [], 0, 0
    preferred = {e.elder_id: set(e.preferred_caregiver_ids) for e in day.city.elders}
    for problem, plan in zip(problems, plans, strict=True):
        by_id = {v.visit_id: v for v in problem.visits}
        for route in plan.routes:
            if route.visits:
                travel_s += route.travel_s
            for planned in route.visits:
                visit = by_id[planned.visit_id]
                served += 1
                service_s += visit.duration_s
                lateness_min.append(planned.lateness_s / 60)
                if visit.elder_id and preferred.get(visit.elder_id):
                    continuity.append(route.caregiver_id in preferred[visit.elder_id])
    caregiver_orders = sum(len(p.visits) for p in problems)
    shift_s = sum((s.ends_at - s.starts_at).total_seconds() for s in _shifts(day))
    return {
        "caregiver_orders": caregiver_orders,
        "served_in_window": served,
        "served_in_window_pct": _pct(served, caregiver_orders),
        "lateness_min_p50": percentile(lateness_min, 0.5),
        "lateness_min_p95": percentile(lateness_min, 0.95),
        "travel_km_per_visit": (
            round(travel_s * _SPEED_M_PER_S / 1000 / served, 3) if served else None
        ),
        "utilisation_pct": _pct(service_s, shift_s),
        "continuity_pct": _pct(sum(continuity), len(continuity)),
        "solve_time_limit_s_per_region": time_limit_s,
        "regions": len(problems),
        "unassigned": sum(len(p.unassigned) for p in plans),
    }


def _shifts(day: SimulatedDay) -> list[Any]:
    return day.city.shifts(day.spec.day)


def _pct(part: float, whole: float) -> float | None:
    return round(100.0 * part / whole, 2) if whole else None


def _problems(day: SimulatedDay) -> list[Problem]:
    origin = datetime.combine(day.spec.day, time(0), CHINA_TZ)
    elders = {e.elder_id: e for e in day.city.elders}
    shifts = {s.caregiver_id: s for s in _shifts(day)}
    travel = GreatCircleTravel(detour_factor=1.3)
    problems = []
    for region in day.city.regions:
        points: list[tuple[float, float]] = []
        caregivers = []
        for c in day.city.caregivers:
            if c.region_id != region.region_id:
                continue
            shift = shifts[c.caregiver_id]
            points.append((shift.start.lat, shift.start.lon))
            caregivers.append(
                Caregiver(
                    caregiver_id=c.caregiver_id,
                    start_location=len(points) - 1,
                    end_location=len(points) - 1,
                    shift_start_s=int((shift.starts_at - origin).total_seconds()),
                    shift_end_s=int((shift.ends_at - origin).total_seconds()),
                    skills=c.skills,
                    max_visits=c.max_visits_per_shift,
                )
            )
        visits = []
        for planned in day.orders:
            elder = elders[planned.elder_id]
            service = _SERVICES[planned.service_code]
            if (
                elder.region_id != region.region_id
                or service.fulfilled_by != "caregiver"
            ):
                continue
            points.append((elder.home.lat, elder.home.lon))
            visits.append(
                Visit(
                    visit_id=planned.key,
                    location=len(points) - 1,
                    earliest_s=int((planned.earliest - origin).total_seconds()),
                    latest_s=int((planned.latest - origin).total_seconds()),
                    duration_s=service.duration_min * 60,
                    skills=service.skills,
                    priority=Priority(str(planned.priority)),
                    preferred_caregiver_ids=frozenset(elder.preferred_caregiver_ids),
                    max_lateness_s=service.max_lateness_min * 60,
                    elder_id=elder.elder_id,
                )
            )
        if caregivers and visits:
            problems.append(
                Problem(
                    travel_s=travel.matrix_s(points, TravelMode.E_BIKE),
                    caregivers=tuple(caregivers),
                    visits=tuple(visits),
                )
            )
    return problems
