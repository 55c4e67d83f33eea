"""Plain value types of the domain, free of I/O.

The words follow the glossary in DESIGN.md: an *order* asks for one
*service* for one *elder* within a *time window*; a *provider* (caregiver or
vendor) receives an *offer* and, once it accepts, holds the *assignment*.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from dispatch.errors import ValidationError

__all__ = [
    "Actor",
    "ActorRole",
    "BookingRequest",
    "Channel",
    "GeoPoint",
    "Priority",
    "ProviderKind",
    "TimeWindow",
    "distance_m",
]

_EARTH_RADIUS_M = 6_371_008.8


class Priority(StrEnum):
    """How fast an order must be served; emergencies skip batching."""

    EMERGENCY = "emergency"
    URGENT = "urgent"
    ROUTINE = "routine"


class ProviderKind(StrEnum):
    """Who fulfils a service: a caregiver at the door or a vendor."""

    CAREGIVER = "caregiver"
    VENDOR = "vendor"


class ActorRole(StrEnum):
    """Who triggers a change.

    ``system`` is the service itself (dispatcher, timers); the others are the
    roles of DESIGN.md section 11.
    """

    OPERATOR = "operator"
    CAREGIVER = "caregiver"
    VENDOR = "vendor"
    DEVICE = "device"
    PARTNER = "partner"
    ADMIN = "admin"
    SYSTEM = "system"


class Channel(StrEnum):
    """Where an order came from."""

    HOTLINE = "hotline"
    PORTAL = "portal"
    PARTNER = "partner"
    DEVICE = "device"
    CAREGIVER = "caregiver"
    PROACTIVE = "proactive"


@dataclass(frozen=True, slots=True)
class Actor:
    """The role and id of whoever triggers a change."""

    role: ActorRole
    actor_id: str

    def __str__(self) -> str:
        return f"{self.role}:{self.actor_id}"


@dataclass(frozen=True, slots=True)
class GeoPoint:
    """A WGS-84 position in degrees.

    Raises:
        ValidationError: ``bad_location`` when a coordinate is out of range.
    """

    lat: float
    lon: float

    def __post_init__(self) -> None:
        if not (
            math.isfinite(self.lat)
            and math.isfinite(self.lon)
            and -90.0 <= self.lat <= 90.0
            and -180.0 <= self.lon <= 180.0
        ):
            raise ValidationError(
                "coordinates out of range",
                code="bad_location",
                lat=self.lat,
                lon=self.lon,
            )


def distance_m(a: GeoPoint, b: GeoPoint) -> float:
    """Great-circle distance between two points, in metres (haversine)."""
    lat1, lat2 = math.radians(a.lat), math.radians(b.lat)
    dlat = lat2 - lat1
    dlon = math.radians(b.lon - a.lon)
    h = (
        math.sin(dlat / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
    )
    return 2 * _EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """Earliest and latest start of a visit, both timezone-aware.

    Raises:
        ValidationError: ``bad_window`` when a bound is naive or the window
            ends before it starts.
    """

    earliest: datetime
    latest: datetime

    def __post_init__(self) -> None:
        if self.earliest.tzinfo is None or self.latest.tzinfo is None:
            raise ValidationError("time window needs a time zone", code="bad_window")
        if self.latest < self.earliest:
            raise ValidationError(
                "time window ends before it starts",
                code="bad_window",
                earliest=self.earliest.isoformat(),
                latest=self.latest.isoformat(),
            )

    @property
    def width(self) -> timedelta:
        """How long the window stays open."""
        return self.latest - self.earliest


@dataclass(frozen=True, slots=True)
class BookingRequest:
    """What a caller asks for when it books an order.

    Attributes:
        elder_id: The elder to serve; must exist.
        service_code: An entry of the catalogue; must exist.
        window: When the visit may start.
        priority: Emergency, urgent or routine.
        channel: Where the request came from.
        notes: Free text for whoever serves the order.
        duration_min: Overrides the service's default duration, in minutes.
    """

    elder_id: str
    service_code: str
    window: TimeWindow
    priority: Priority = Priority.ROUTINE
    channel: Channel = Channel.HOTLINE
    notes: str = ""
    duration_min: int | None = None

    def fingerprint(self) -> str:
        """A stable digest of the request, to compare idempotent retries."""
        canonical = json.dumps(
            {
                "elder_id": self.elder_id,
                "service_code": self.service_code,
                "earliest": self.window.earliest.astimezone(UTC).isoformat(),
                "latest": self.window.latest.astimezone(UTC).isoformat(),
                "priority": str(self.priority),
                "channel": str(self.channel),
                "notes": self.notes,
                "duration_min": self.duration_min,
            },
            sort_keys=True,
            ensure_ascii=False,
        )
        return hashlib.sha256(canonical.encode()).hexdigest()
