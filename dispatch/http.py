"""HTTP plumbing shared by every endpoint.

Errors become statuses here, tokens become actors, roles are checked, and
each request leaves one canonical log line.

Handlers declare who may call them with :func:`allow`; a handler without a
rule is refused to everyone but fails the authorisation test first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web

from dispatch.clock import Clock
from dispatch.domain import Actor, ActorRole
from dispatch.errors import (
    AuthError,
    ConflictError,
    ForbiddenError,
    HomecareError,
    IdempotencyInProgressError,
    IdempotencyMismatchError,
    NotFoundError,
    SettingsError,
    UnavailableError,
    ValidationError,
)
from dispatch.tokens import Claims, TokenSigner

__all__ = [
    "ACTOR",
    "AUTHENTICATOR",
    "PUBLIC",
    "Authenticator",
    "Handler",
    "actor_of",
    "allow",
    "allowed_roles",
    "bearer_token",
    "json_response",
    "middlewares",
]

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ACTOR = web.RequestKey("actor", Actor)


class Authenticator:
    """Verifies bearer tokens against the signer and the clock."""

    def __init__(self, signer: TokenSigner, clock: Clock) -> None:
        self.signer = signer
        self.clock = clock

    def verify(self, token: str) -> Claims:
        """The claims of a valid token; raises :class:`AuthError` otherwise."""
        return self.signer.verify(token, self.clock.now())


AUTHENTICATOR = web.AppKey("authenticator", Authenticator)

#: Marks a handler anyone may call without a token.
PUBLIC: frozenset[ActorRole] = frozenset()
_RULE = "__homecare_roles__"

# The one place where errors become HTTP statuses.
_STATUS: tuple[tuple[type[HomecareError], int], ...] = (
    (ValidationError, 400),
    (AuthError, 401),
    (ForbiddenError, 403),
    (NotFoundError, 404),
    (IdempotencyMismatchError, 422),
    (IdempotencyInProgressError, 409),
    (ConflictError, 409),
    (UnavailableError, 503),
    (SettingsError, 500),
)


def allow(*roles: ActorRole) -> Callable[[Handler], Handler]:
    """Declare the roles that may call a handler; none means public."""

    def mark(handler: Handler) -> Handler:
        setattr(handler, _RULE, frozenset(roles))
        return handler

    return mark


def allowed_roles(handler: object) -> frozenset[ActorRole] | None:
    """The roles declared by :func:`allow`, or ``None`` when undeclared."""
    roles = getattr(handler, _RULE, None)
    return roles if isinstance(roles, frozenset) else None


def actor_of(request: web.Request) -> Actor:
    """The authenticated actor of a request that passed :func:`allow`."""
    return request[ACTOR]


def json_response(body: Any, status: int = 200) -> web.Response:
    """A JSON response encoded by msgspec (structs, datetimes, enums)."""
    return web.Response(
        body=msgspec.json.encode(body), status=status, content_type="application/json"
    )


def _status_of(error: HomecareError) -> int:
    for kind, status in _STATUS:
        if isinstance(error, kind):
            return status
    return 500


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except HomecareError as error:
        status = _status_of(error)
        return json_response(error.to_dict(), status)
    except web.HTTPException as exc:
        status = exc.status
        raise
    except Exception:
        logger.exception("request failed", extra={"path": request.path})
        return json_response({"code": "internal", "message": "internal error"}, 500)
    finally:
        route = request.match_info.route.resource
        logger.info(
            "request",
            extra={
                "method": request.method,
                "route": route.canonical if route else request.path,
                "status": status,
                "elapsed_ms": round((time.perf_counter() - started) * 1000, 2),
                "role": str(request[ACTOR].role) if ACTOR in request else "",
            },
        )


@web.middleware
async def _auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    roles = allowed_roles(_unwrap(request.match_info.handler))
    if roles is None:
        if isinstance(request.match_info.http_exception, web.HTTPException):
            raise request.match_info.http_exception
        raise ForbiddenError("this endpoint has no authorisation rule")
    if roles is PUBLIC or not roles:
        return await handler(request)
    token = bearer_token(request)
    if not token:
        raise AuthError("send 'Authorization: Bearer <token>'")
    claims = request.app[AUTHENTICATOR].verify(token)
    if claims.actor.role not in roles:
        raise ForbiddenError(f"{claims.actor.role} may not call this endpoint")
    request[ACTOR] = claims.actor
    return await handler(request)


def bearer_token(request: web.Request) -> str:
    """The request's bearer token, or "" when it has none.

    A websocket upgrade may carry it in the ``access_token`` query
    parameter instead, since browsers cannot set headers on websockets.
    """
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return request.query.get("access_token", "").strip()
    return ""


def _unwrap(handler: object) -> object:
    return getattr(handler, "__wrapped__", handler)


def middlewares() -> list[Any]:
    """The middlewares every app uses, outermost first."""
    return [_errors, _auth]
