"""Signed, expiring access tokens naming a role and an actor.

A token is ``<payload>.<signature>``, both base64url without padding; the
payload is compact JSON ``{"role", "sub", "iat", "exp"}`` and the signature
is HMAC-SHA256 of the encoded payload under the service's secret. The
secret is ``HOMECARE_TOKEN_SECRET`` or, when that is empty, a random key
kept in ``DATA_DIR/token-secret``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from dispatch.domain import Actor, ActorRole
from dispatch.errors import AuthError

__all__ = ["Claims", "TokenSigner", "load_secret"]

_MAX_TOKEN_CHARS = 2048


@dataclass(frozen=True, slots=True)
class Claims:
    """Who a valid token speaks for, and until when."""

    actor: Actor
    issued_at: datetime
    expires_at: datetime


def load_secret(configured: str, data_dir: Path) -> bytes:
    """The signing key: the configured one, or one kept in the data folder."""
    if configured:
        return configured.encode()
    path = data_dir / "token-secret"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip().encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    """Issues and verifies tokens with one secret.

    Args:
        secret: The HMAC key; at least 16 bytes.
    """

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the token secret must have at least 16 bytes")
        self._secret = secret

    def issue(self, actor: Actor, now: datetime, ttl: timedelta) -> str:
        """A token for ``actor`` valid from ``now`` for ``ttl``."""
        payload = json.dumps(
            {
                "role": str(actor.role),
                "sub": actor.actor_id,
                "iat": int(now.timestamp()),
                "exp": int((now + ttl).timestamp()),
            },
            separators=(",", ":"),
        ).encode()
        body = _b64(payload)
        return f"{body}.{self._sign(body)}"

    def verify(self, token: str, now: datetime) -> Claims:
        """The claims of a genuine, unexpired token.

        Raises:
            AuthError: ``unauthenticated`` for a malformed or forged token,
                with ``reason`` ``expired`` once it has expired.
        """
        if not token or len(token) > _MAX_TOKEN_CHARS or token.count(".") != 1:
            raise AuthError("malformed token")
        body, signature = token.split(".")
        if not hmac.compare_digest(signature, self._sign(body)):
            raise AuthError("token signature does not match")
        try:
            claims = json.loads(_unb64(body))
            role = ActorRole(claims["role"])
            actor = Actor(role, str(claims["sub"]))
            issued = datetime.fromtimestamp(int(claims["iat"]), tz=now.tzinfo)
            expires = datetime.fromtimestamp(int(claims["exp"]), tz=now.tzinfo)
        except (ValueError, KeyError, TypeError):
            raise AuthError("malformed token") from None
        if role is ActorRole.SYSTEM:
            raise AuthError("no token speaks for the system")
        if expires <= now:
            raise AuthError("token expired", reason="expired")
        return Claims(actor, issued, expires)

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._secret, body.encode(), hashlib.sha256).digest())
