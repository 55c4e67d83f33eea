"""Errors of the home-care dispatch domain.

Every error the service reports to a network client is a :class:`HomecareError`
with a stable ``code``; HTTP statuses and websocket error codes are mapped from
these classes in exactly one place each (``dispatch.http_errors`` and the
protocol module). Expected outcomes, such as a declined offer or an order the
solver left out, are results and never exceptions.

The tree::

    HomecareError
    ├── SettingsError              bad HOMECARE_* configuration
    ├── ValidationError            bad input: nothing was changed
    ├── AuthError                  missing, malformed or expired token
    ├── ForbiddenError             the actor may not do this
    ├── NotFoundError              no such entity (or not visible to the actor)
    ├── ConflictError              the request collides with the current state
    │   ├── IllegalTransitionError     the lifecycle forbids this transition
    │   ├── StaleVersionError          the order changed since it was read
    │   ├── IdempotencyMismatchError   key reused with a different body
    │   ├── IdempotencyInProgressError the first request with the key is running
    │   └── LeaseLostError             a dispatcher no longer holds its region
    └── UnavailableError           PostgreSQL or Redis cannot be reached
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "AuthError",
    "ConflictError",
    "ForbiddenError",
    "HomecareError",
    "IdempotencyInProgressError",
    "IdempotencyMismatchError",
    "IllegalTransitionError",
    "LeaseLostError",
    "NotFoundError",
    "SettingsError",
    "StaleVersionError",
    "UnavailableError",
    "ValidationError",
]


class HomecareError(Exception):
    """Root of every error this service raises on purpose.

    Attributes:
        code: Stable machine-readable code, part of the public API.
        message: Human-readable explanation, safe to show to the caller.
        details: Structured context (field names, ids), safe to show.
    """

    code: ClassVar[str] = "internal"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The error as the JSON body of an HTTP or websocket error."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class SettingsError(HomecareError):
    """A ``HOMECARE_*`` environment variable is missing or malformed."""

    code = "bad_settings"


class ValidationError(HomecareError):
    """The input is malformed or out of range; nothing was changed.

    ``code`` is ``invalid`` unless a more specific stable code is given, for
    example ``unknown_service`` or ``bad_window``.
    """

    code = "invalid"

    def __init__(self, message: str, *, code: str | None = None, **details: Any):
        super().__init__(message, **details)
        if code is not None:
            self.code = code  # type: ignore[misc]  # instance refines the class code


class AuthError(HomecareError):
    """The caller did not prove who it is (no token, bad signature, expired)."""

    code = "unauthenticated"


class ForbiddenError(HomecareError):
    """The caller is known but its role or identity may not do this."""

    code = "forbidden"


class NotFoundError(HomecareError):
    """No such entity, or one the caller may not know exists."""

    code = "not_found"

    def __init__(self, entity: str, entity_id: str) -> None:
        super().__init__(f"no {entity} {entity_id}", entity=entity, id=entity_id)


class ConflictError(HomecareError):
    """The request is well-formed but collides with the current state."""

    code = "conflict"


class IllegalTransitionError(ConflictError):
    """The order lifecycle does not allow this transition from this state."""

    code = "illegal_transition"


class StaleVersionError(ConflictError):
    """The order's version moved on since the caller read it."""

    code = "stale_version"


class IdempotencyMismatchError(ConflictError):
    """An idempotency key was reused with a different request body."""

    code = "idempotency_mismatch"


class IdempotencyInProgressError(ConflictError):
    """The first request carrying this idempotency key has not finished."""

    code = "idempotency_in_progress"


class LeaseLostError(ConflictError):
    """A dispatcher wrote for a region whose lease it no longer holds.

    Another dispatcher has taken the region (a higher fencing number), or
    the lease expired; the write was refused and nothing was changed.
    """

    code = "lease_lost"

    def __init__(self, region_id: str, fence: int) -> None:
        super().__init__(
            f"the lease on region {region_id} (fence {fence}) is no longer held",
            region_id=region_id,
            fence=fence,
        )


class UnavailableError(HomecareError):
    """A backing store (PostgreSQL or Redis) could not be reached in time."""

    code = "unavailable"
