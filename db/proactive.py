"""Proactive care visits in PostgreSQL: due rows, bookings, coverage.

The visits a rule owes are rows of ``proactive_visit_due``, one per rule,
elder and period, written ahead of time with their due date (the start of
the visiting hours on the elder's visit day). Generation books every row
that has come within ``lead`` of its due date through
:meth:`db.orders.OrderStore.create`, with an idempotency key made of rule,
elder and period, and marks it booked. Deadlines are rows (DESIGN.md
section 8): a service restarted after a day down finds the visits that
fell due meanwhile, and books each for the next open window of its period.

Running generation twice, or on two nodes at once, books nothing twice:
before booking, a row is matched against the proactive visits the elder
already has in the period (an order from an earlier run that crashed
before it marked the row, or a visit another rule or an operator booked),
and the idempotency key stops two racing runs.

Writes are batched: due rows go in by pages of ``batch_size`` elders, and
the outcome of a whole generation run is settled in one statement. Each
booking is its own transaction, as every booking is.

Limitations: an elder who joins a category in the middle of a period
gets a due row at the next rescan (``rescan``, default an hour); one who
leaves it keeps the rows already written until generation reaches them,
and those are then dropped. Settled rows are kept; nothing prunes them
yet (about one row per covered elder, rule and period). The coverage
report reads every covered elder: about 1.5 s per 100,000 elders here.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from db.orders import OrderStore
from db.pool import Connection
from dispatch.clock import Clock
from dispatch.directory import KeyPopulation
from dispatch.domain import Actor, ActorRole, TimeWindow
from dispatch.errors import (
    HomecareError,
    IdempotencyInProgressError,
    IdempotencyMismatchError,
)
from dispatch.proactive import (
    DEFAULT_RULES,
    PROACTIVE_SERVICE,
    Period,
    ProactiveRule,
    booking_request,
    booking_window,
    idempotency_key,
    overdue_after,
    period_of,
    periods_between,
    visit_day,
    visit_window,
)

__all__ = [
    "PROACTIVE_ACTOR",
    "CoverageReport",
    "GenerationReport",
    "ProactiveVisits",
    "RegionCoverage",
    "RuleCoverage",
    "coverage",
    "generate_due_visits",
    "prepare_due_visits",
]

logger = logging.getLogger(__name__)

#: Who books proactive visits.
PROACTIVE_ACTOR = Actor(ActorRole.SYSTEM, "proactive")

_DEFAULT_LEAD = timedelta(hours=12)
_DEFAULT_RESCAN = timedelta(hours=1)
_DEFAULT_BATCH = 5000
_DEFAULT_CONCURRENCY = 4
# Orders in these states will not (or did not) serve the visit.
_UNSERVED = ["cancelled", "no_show", "escalated"]
_VISITED = ["completed", "closed"]


@dataclass(frozen=True, slots=True)
class GenerationReport:
    """What one generation run did.

    Attributes:
        at: The clock's time when the run started.
        prepared: Due rows written for elders who had none.
        booked: Orders this run created.
        linked: Due visits settled by an order that already existed (an
            earlier run's, or another proactive visit in the period).
        lapsed: Due visits whose period ran out before they were booked.
        dropped: Due visits of elders the rule no longer covers.
        failed: Bookings refused, or running on another node; their rows
            stay pending and are retried by the next run.
        more: More due visits wait than ``limit`` allowed in this run.
        elapsed_s: Wall time of the run, in seconds.
    """

    at: datetime
    prepared: int = 0
    booked: int = 0
    linked: int = 0
    lapsed: int = 0
    dropped: int = 0
    failed: int = 0
    more: bool = False
    elapsed_s: float = 0.0


@dataclass(frozen=True, slots=True)
class RegionCoverage:
    """Coverage of one rule in one region for one period.

    Attributes:
        region_id: The region.
        due: Elders the rule covers who are owed a visit in the period.
        visited: Of those, elders with a proactive visit completed or
            closed within the period, by the time of the report.
        overdue_elder_ids: Elders not visited whose visit day is over,
            sorted.
    """

    region_id: str
    due: int
    visited: int
    overdue_elder_ids: tuple[str, ...]

    @property
    def overdue(self) -> int:
        """Elders not visited whose visit day is over."""
        return len(self.overdue_elder_ids)

    @property
    def pending(self) -> int:
        """Elders not visited yet whose visit day has not ended."""
        return self.due - self.visited - self.overdue


@dataclass(frozen=True, slots=True)
class RuleCoverage:
    """Coverage of one rule in the period that holds the report's time."""

    rule_id: str
    period: Period
    regions: tuple[RegionCoverage, ...]

    @property
    def due(self) -> int:
        """Elders owed a visit in the period, all regions."""
        return sum(r.due for r in self.regions)

    @property
    def visited(self) -> int:
        """Elders visited in the period, all regions."""
        return sum(r.visited for r in self.regions)

    @property
    def overdue(self) -> int:
        """Elders overdue, all regions."""
        return sum(r.overdue for r in self.regions)


@dataclass(frozen=True, slots=True)
class CoverageReport:
    """Which elders each rule's visits reached, per rule and region."""

    at: datetime
    rules: tuple[RuleCoverage, ...]

    @property
    def due(self) -> int:
        """Visits owed, summed over rules (an elder counts once per rule)."""
        return sum(r.due for r in self.rules)

    @property
    def visited(self) -> int:
        """Visits made, summed over rules."""
        return sum(r.visited for r in self.rules)

    @property
    def overdue(self) -> int:
        """Visits overdue, summed over rules."""
        return sum(r.overdue for r in self.rules)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data, elder ids only (no personal data)."""
        return {
            "at": self.at.isoformat(),
            "rules": [
                {
                    "rule_id": rule.rule_id,
                    "period_start": rule.period.start.isoformat(),
                    "period_end": rule.period.end.isoformat(),
                    "due": rule.due,
                    "visited": rule.visited,
                    "overdue": rule.overdue,
                    "regions": [
                        {
                            "region_id": r.region_id,
                            "due": r.due,
                            "visited": r.visited,
                            "overdue": r.overdue,
                            "overdue_elder_ids": list(r.overdue_elder_ids),
                        }
                        for r in rule.regions
                    ],
                }
                for rule in self.rules
            ],
        }


@dataclass(slots=True)
class _Due:
    """A pending due row, as generation works on it."""

    rule: ProactiveRule
    elder_id: str
    period: Period
    due_at: datetime
    status: str = "pending"
    order_id: uuid.UUID | None = None


@dataclass(slots=True)
class _Tally:
    booked: int = 0
    linked: int = 0
    failed: int = 0
    lapsed: int = 0
    dropped: int = 0


class ProactiveVisits:
    """Prepares and books the proactive visits of a set of rules.

    Keeps in memory when each rule's period was last prepared, so that a
    run every few seconds does not rescan the whole elder table; a fresh
    instance (a restarted service) prepares everything once, then every
    ``rescan``.

    Args:
        pool: Connections of the service.
        orders: The order store that books the visits.
        clock: Where the current time comes from.
        rules: The rules; ids must be unique.
        lead: How long before its due date a visit is booked.
        rescan: How often a rule's current period is prepared again, to
            pick up elders who joined a category.
        batch_size: Elders per page when due rows are written.
        concurrency: Bookings in flight at once (each holds a connection).

    Raises:
        ValueError: Two rules share an id.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        orders: OrderStore,
        clock: Clock,
        rules: Sequence[ProactiveRule] = DEFAULT_RULES,
        *,
        lead: timedelta = _DEFAULT_LEAD,
        rescan: timedelta = _DEFAULT_RESCAN,
        batch_size: int = _DEFAULT_BATCH,
        concurrency: int = _DEFAULT_CONCURRENCY,
    ) -> None:
        self._rules = {r.rule_id: r for r in rules}
        if len(self._rules) != len(rules):
            raise ValueError("two proactive rules share an id")
        self._pool = pool
        self._orders = orders
        self._clock = clock
        self._lead = lead
        self._rescan = rescan
        self._batch_size = batch_size
        self._concurrency = max(1, concurrency)
        # (rule_id, period start) -> (when prepared, period end)
        self._prepared: dict[tuple[str, datetime], tuple[datetime, datetime]] = {}

    @property
    def rules(self) -> tuple[ProactiveRule, ...]:
        """The rules, in the order given."""
        return tuple(self._rules.values())

    async def generate(self, *, limit: int = 500) -> GenerationReport:
        """Prepare due rows, then book up to ``limit`` due visits.

        Call it on a timer (every minute is plenty); ``more`` in the report
        says that due visits are left for the next call. A booking refused
        with a :class:`~dispatch.errors.HomecareError` is counted in
        ``failed`` and retried next time.

        Raises:
            asyncpg.PostgresError, OSError: PostgreSQL failed; the visits
                booked before it did are marked, the rest stay pending.
        """
        started = time.perf_counter()
        now = self._clock.now()
        prepared = await self._prepare(now)

        async with self._pool.acquire() as conn:
            lapsed = await _lapse(conn, now)
            rows = await _claim(conn, self._rules, now, now + self._lead, limit + 1)
        more = len(rows) > limit
        due = rows[:limit]
        tally = _Tally(lapsed=lapsed)
        await self._settle_covered(due, now, tally)
        outcomes = await self._book_all(due, now, tally)
        await _write_outcomes(self._pool, due, now)
        for outcome in outcomes:
            if outcome is not None:
                raise outcome

        report = GenerationReport(
            at=now,
            prepared=prepared,
            booked=tally.booked,
            linked=tally.linked,
            lapsed=tally.lapsed,
            dropped=tally.dropped,
            failed=tally.failed,
            more=more,
            elapsed_s=time.perf_counter() - started,
        )
        logger.info(
            "proactive visits generated",
            extra={
                "prepared": report.prepared,
                "booked": report.booked,
                "linked": report.linked,
                "lapsed": report.lapsed,
                "dropped": report.dropped,
                "failed": report.failed,
                "more": report.more,
                "elapsed_s": round(report.elapsed_s, 3),
            },
        )
        return report

    async def _prepare(self, now: datetime) -> int:
        written = 0
        for key, (at, end) in list(self._prepared.items()):
            if at + self._rescan <= now or end <= now:
                del self._prepared[key]
        for rule in self._rules.values():
            for period in periods_between(rule, now, now + self._lead):
                key = (rule.rule_id, period.start)
                if key in self._prepared:
                    continue
                written += await prepare_due_visits(
                    self._pool, rule, period, batch_size=self._batch_size
                )
                self._prepared[key] = (now, period.end)
        return written

    async def _settle_covered(
        self, due: Sequence[_Due], now: datetime, tally: _Tally
    ) -> None:
        """Drop, lapse or link the rows that need no new booking."""
        if not due:
            return
        async with self._pool.acquire() as conn:
            categories = await _categories(conn, {d.elder_id for d in due})
            existing = await _proactive_orders(conn, due)
        for row in due:
            if not row.rule.covers(categories.get(row.elder_id, ())):
                row.status = "dropped"
                tally.dropped += 1
            elif (row.elder_id, row.period.start) in existing:
                row.status = "booked"
                row.order_id = existing[row.elder_id, row.period.start]
                tally.linked += 1
            elif self._window(row, now) is None:
                row.status = "lapsed"
                tally.lapsed += 1

    def _window(self, row: _Due, now: datetime) -> TimeWindow | None:
        day = row.due_at.astimezone(row.rule.tz).date()
        return booking_window(row.rule, row.elder_id, day, row.period, now)

    async def _book_all(
        self, due: Sequence[_Due], now: datetime, tally: _Tally
    ) -> list[BaseException | None]:
        """Book every pending row; returns each elder's error, if any.

        An error (PostgreSQL gone, say) stops that elder's bookings only,
        so that the orders booked meanwhile are still marked on their rows.
        """
        by_elder: dict[str, list[_Due]] = defaultdict(list)
        for row in due:
            if row.status == "pending":
                by_elder[row.elder_id].append(row)
        gate = asyncio.Semaphore(self._concurrency)
        return await asyncio.gather(
            *(self._book_elder(rows, now, gate, tally) for rows in by_elder.values()),
            return_exceptions=True,
        )

    async def _book_elder(
        self,
        rows: Sequence[_Due],
        now: datetime,
        gate: asyncio.Semaphore,
        tally: _Tally,
    ) -> None:
        """Book one elder's due rows in turn, one visit per overlapping period.

        Two rules whose periods overlap (weekly and monthly, say) share the
        visit booked first when its window falls in the other's period.
        """
        booked: list[tuple[uuid.UUID, TimeWindow]] = []
        for row in rows:
            shared = next(
                (oid for oid, w in booked if row.period.contains(w.earliest)), None
            )
            if shared is not None:
                row.status, row.order_id = "booked", shared
                tally.linked += 1
                continue
            window = self._window(row, now)
            if window is None:
                row.status = "lapsed"
                tally.lapsed += 1
                continue
            async with gate:
                order_id, created = await self._book(row, window)
            if order_id is None:
                tally.failed += 1
                continue
            row.status, row.order_id = "booked", order_id
            booked.append((order_id, window))
            if created:
                tally.booked += 1
            else:
                tally.linked += 1

    async def _book(
        self, row: _Due, window: TimeWindow
    ) -> tuple[uuid.UUID | None, bool]:
        """Book the row's order; ``(None, False)`` when it must wait."""
        key = idempotency_key(row.rule.rule_id, row.elder_id, row.period)
        ids = {"rule_id": row.rule.rule_id, "elder_id": row.elder_id}
        try:
            booking = await self._orders.create(
                booking_request(row.rule, row.elder_id, window), PROACTIVE_ACTOR, key
            )
        except IdempotencyMismatchError:
            # Booked by another run with another window (a rule's hours
            # changed, or a later catch-up day): that order serves the row.
            found = await self._pool.fetchval(
                "select order_id from idempotency_key where scope = $1 and key = $2",
                str(PROACTIVE_ACTOR),
                key,
            )
            return found, False
        except IdempotencyInProgressError:
            return None, False
        except HomecareError as exc:
            logger.warning(
                "proactive visit not booked", extra={**ids, "code": exc.code}
            )
            return None, False
        return uuid.UUID(booking.order.order_id), booking.created


async def generate_due_visits(
    pool: asyncpg.Pool,
    orders: OrderStore,
    clock: Clock,
    rules: Sequence[ProactiveRule] = DEFAULT_RULES,
    *,
    limit: int = 500,
    lead: timedelta = _DEFAULT_LEAD,
) -> GenerationReport:
    """Prepare every rule's due rows, then book up to ``limit`` due visits.

    A one-shot run of :class:`ProactiveVisits` (which see): it rescans the
    elder table every call, so a service calling it often should keep a
    :class:`ProactiveVisits` instead.
    """
    visits = ProactiveVisits(pool, orders, clock, rules, lead=lead)
    return await visits.generate(limit=limit)


async def prepare_due_visits(
    pool: asyncpg.Pool,
    rule: ProactiveRule,
    period: Period,
    *,
    batch_size: int = _DEFAULT_BATCH,
) -> int:
    """Write the due rows ``rule`` owes in ``period`` to elders who lack one.

    One pass over the elder table through a cursor, writing one statement
    per ``batch_size`` elders, all in one transaction; rows that exist are
    left as they are. Returns how many rows were written.
    """
    written = 0
    async with pool.acquire() as conn, conn.transaction():
        cursor = await conn.cursor(
            """
            select e.elder_id, e.region_id from elder e
            where elder_categories(e) @> $1::text[]
              and (cardinality($2::text[]) = 0 or elder_categories(e) && $2::text[])
              and not exists (
                  select 1 from proactive_visit_due d
                  where d.rule_id = $3 and d.period_start = $4
                    and d.elder_id = e.elder_id)
            """,
            sorted(rule.all_of),
            sorted(rule.any_of),
            rule.rule_id,
            period.start,
        )
        while page := await cursor.fetch(batch_size):
            rows = _due_rows(rule, period, page)
            status = await conn.execute(
                """
                insert into proactive_visit_due (rule_id, period_start, period_end,
                    elder_id, region_id, due_at)
                select $1, $2, $3, u.elder_id, u.region_id, u.due_at
                from unnest($4::text[], $5::text[], $6::timestamptz[])
                    as u(elder_id, region_id, due_at)
                on conflict do nothing
                """,
                rule.rule_id,
                period.start,
                period.end,
                [r[0] for r in rows],
                [r[1] for r in rows],
                [r[2] for r in rows],
            )
            written += int(status.rsplit(" ", 1)[-1])
    return written


def _due_rows(
    rule: ProactiveRule, period: Period, page: Iterable[asyncpg.Record]
) -> list[tuple[str, str, datetime]]:
    rows = []
    for record in page:
        day = visit_day(rule, record["elder_id"], period)
        if day is not None:
            window = visit_window(rule, day)
            rows.append((record["elder_id"], record["region_id"], window.earliest))
    return rows


async def _lapse(conn: Connection, now: datetime) -> int:
    status = await conn.execute(
        "update proactive_visit_due set status = 'lapsed', settled_at = $1"
        " where status = 'pending' and period_end <= $1",
        now,
    )
    return int(status.rsplit(" ", 1)[-1])


async def _claim(
    conn: Connection,
    rules: dict[str, ProactiveRule],
    now: datetime,
    horizon: datetime,
    limit: int,
) -> list[_Due]:
    """Pending rows of these rules due by ``horizon``, soonest first."""
    records = await conn.fetch(
        """
        select rule_id, elder_id, period_start, period_end, due_at
        from proactive_visit_due
        where status = 'pending' and due_at <= $1 and period_end > $2
          and rule_id = any($3::text[])
        order by due_at, rule_id, elder_id
        limit $4
        """,
        horizon,
        now,
        list(rules),
        limit,
    )
    return [
        _Due(
            rule=rules[r["rule_id"]],
            elder_id=r["elder_id"],
            period=Period(
                r["period_start"].astimezone(rules[r["rule_id"]].tz),
                r["period_end"].astimezone(rules[r["rule_id"]].tz),
            ),
            due_at=r["due_at"],
        )
        for r in records
    ]


async def _categories(
    conn: Connection, elder_ids: Iterable[str]
) -> dict[str, frozenset[KeyPopulation]]:
    records = await conn.fetch(
        "select e.elder_id, elder_categories(e) as categories from elder e"
        " where e.elder_id = any($1::text[])",
        sorted(elder_ids),
    )
    return {
        r["elder_id"]: frozenset(KeyPopulation(c) for c in r["categories"])
        for r in records
    }


async def _proactive_orders(
    conn: Connection, due: Sequence[_Due]
) -> dict[tuple[str, datetime], uuid.UUID]:
    """Proactive visits the elders already have in each row's period.

    Counts orders that are open or served (not cancelled, no-show or
    escalated) whose window opens in the period, whoever booked them.
    """
    records = await conn.fetch(
        """
        select distinct on (u.elder_id, u.period_start)
            u.elder_id, u.period_start, o.order_id
        from unnest($1::text[], $2::timestamptz[], $3::timestamptz[])
            as u(elder_id, period_start, period_end)
        join "order" o on o.elder_id = u.elder_id
        where o.service_code = $4
          and o.earliest >= u.period_start and o.earliest < u.period_end
          and o.status <> all($5::text[])
        order by u.elder_id, u.period_start, o.created_at
        """,
        [d.elder_id for d in due],
        [d.period.start for d in due],
        [d.period.end for d in due],
        PROACTIVE_SERVICE,
        _UNSERVED,
    )
    return {(r["elder_id"], r["period_start"]): r["order_id"] for r in records}


async def _write_outcomes(
    pool: asyncpg.Pool, due: Sequence[_Due], now: datetime
) -> None:
    """Settle every row that left ``pending``, in one statement."""
    settled = [d for d in due if d.status != "pending"]
    if not settled:
        return
    await pool.execute(
        """
        update proactive_visit_due d
        set status = u.status, order_id = u.order_id, settled_at = $6
        from unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[],
                    $5::uuid[]) as u(rule_id, period_start, elder_id, status,
                                     order_id)
        where d.rule_id = u.rule_id and d.period_start = u.period_start
          and d.elder_id = u.elder_id and d.status = 'pending'
        """,
        [d.rule.rule_id for d in settled],
        [d.period.start for d in settled],
        [d.elder_id for d in settled],
        [d.status for d in settled],
        [d.order_id for d in settled],
        now,
    )


async def coverage(
    pool: asyncpg.Pool,
    rules: Sequence[ProactiveRule],
    at: datetime,
    *,
    finished: bool = False,
) -> CoverageReport:
    """Per rule and region: elders due, visited and overdue in a period.

    By default each rule's period is the one holding ``at``, as it stands
    at ``at``; with ``finished``, it is the last period that ended by
    ``at``, as it stood at its end. Elders due are those the rule covers
    now and owes a visit in that period; visited are those with a
    ``proactive_visit`` order (any rule's, or an operator's) that reached
    ``completed`` or ``closed`` within the period; overdue are the others
    whose visit day is over, which in a finished period is all of them.
    Reads the directory and the orders only, so the report holds whether
    or not generation ran.
    """
    reports = []
    async with pool.acquire() as conn:
        for rule in rules:
            period = period_of(rule, at)
            if finished:
                period = period_of(rule, period.start - timedelta(microseconds=1))
            cutoff = period.end if finished else at
            records = await conn.fetch(
                """
                with visited as (
                    select distinct o.elder_id
                    from order_event v join "order" o on o.order_id = v.order_id
                    where v.to_status = any($4::text[])
                      and v.at >= $5 and v.at <= $6 and v.at < $7
                      and o.service_code = $3
                )
                select e.elder_id, e.region_id, v.elder_id is not null as visited
                from elder e left join visited v on v.elder_id = e.elder_id
                where elder_categories(e) @> $1::text[]
                  and (cardinality($2::text[]) = 0
                       or elder_categories(e) && $2::text[])
                """,
                sorted(rule.all_of),
                sorted(rule.any_of),
                PROACTIVE_SERVICE,
                _VISITED,
                period.start,
                cutoff,
                period.end,
            )
            reports.append(_rule_coverage(rule, period, cutoff, records))
    return CoverageReport(at, tuple(reports))


def _rule_coverage(
    rule: ProactiveRule,
    period: Period,
    at: datetime,
    records: Iterable[asyncpg.Record],
) -> RuleCoverage:
    due: dict[str, int] = defaultdict(int)
    visited: dict[str, int] = defaultdict(int)
    overdue: dict[str, list[str]] = defaultdict(list)
    for record in records:
        day = visit_day(rule, record["elder_id"], period)
        if day is None:
            continue
        region_id = record["region_id"]
        due[region_id] += 1
        if record["visited"]:
            visited[region_id] += 1
        elif at >= overdue_after(rule, day):
            overdue[region_id].append(record["elder_id"])
    return RuleCoverage(
        rule.rule_id,
        period,
        tuple(
            RegionCoverage(
                region_id,
                due[region_id],
                visited[region_id],
                tuple(sorted(overdue[region_id])),
            )
            for region_id in sorted(due)
        ),
    )
