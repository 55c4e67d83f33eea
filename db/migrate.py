"""Numbered SQL migrations, applied in order, each in its own transaction.

Files named ``NNNN_name.sql`` under ``db/migrations`` are applied once, in
order of their numbers, and recorded in ``schema_migration``. A
transaction-level advisory lock serialises concurrent runners: two
processes starting at once apply each migration exactly once, and a second
run is a no-op.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

from db.pool import Connection

__all__ = ["Migration", "available", "migrate"]

logger = logging.getLogger(__name__)

# Any constant shared by all runners of this schema; 'hcmigrat' in ASCII.
_LOCK_KEY = 0x68636D6967726174
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file: its number, name and SQL."""

    version: int
    name: str
    sql: str


def available() -> list[Migration]:
    """Every migration shipped with the package, by version.

    Raises:
        RuntimeError: Two files share a number.
    """
    found = []
    for entry in resources.files("db").joinpath("migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(
                Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8"))
            )
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError("two migrations share a number")
    return found


async def migrate(conn: Connection) -> list[int]:
    """Apply the migrations this database lacks; returns their versions."""
    async with conn.transaction():
        await conn.execute("select pg_advisory_xact_lock($1)", _LOCK_KEY)
        await conn.execute(
            """
            create table if not exists schema_migration (
                version     integer primary key,
                name        text not null,
                applied_at  timestamptz not null default now()
            )
            """
        )
    applied: list[int] = []
    for migration in available():
        async with conn.transaction():
            await conn.execute("select pg_advisory_xact_lock($1)", _LOCK_KEY)
            done = await conn.fetchval(
                "select 1 from schema_migration where version = $1", migration.version
            )
            if done:
                continue
            await conn.execute(migration.sql)
            await conn.execute(
                "insert into schema_migration (version, name) values ($1, $2)",
                migration.version,
                migration.name,
            )
        applied.append(migration.version)
        logger.info("migration applied: %04d %s", migration.version, migration.name)
    return applied
