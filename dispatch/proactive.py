"""Proactive care visits: rules, periods and what falls due, free of I/O.

A *rule* says which elders of the key-population categories get a visit
and how often. Time is cut into *periods* of the rule (a day, a week, a
month, or ``INTERVAL`` of them); every elder the rule covers is owed one
visit per period, on a *visit day* of that period chosen from a hash of
the rule and the elder, so a rule's visits spread evenly over the period
and an elder keeps the same weekday (or day of the month) period after
period. The visit's time window is the rule's visiting hours on that day.

Rule syntax, one rule per line of ``<rule_id>: <spec>``, where ``spec``
is ``;``-separated ``KEY=value`` parts, a small subset of RFC 5545 RRULE
with three keys of our own::

    weekly_80_alone: FREQ=WEEKLY;ALL=aged_80_plus,living_alone;HOURS=09:00-17:00

- ``FREQ`` (required): ``DAILY``, ``WEEKLY`` or ``MONTHLY``.
- ``INTERVAL`` (default 1): a period is this many days, weeks or months,
  1 to 100.
- ``BYDAY`` (default every day): visit days are restricted to these
  weekdays, ``MO,TU,WE,TH,FR,SA,SU``. A period without such a day owes
  no visit (``FREQ=DAILY;BYDAY=MO,TH`` visits twice a week).
- ``ALL``: the elder has every one of these categories.
- ``ANY``: the elder has at least one of these categories. A rule names
  ``ALL``, ``ANY`` or both (then both must hold).
- ``HOURS`` (default ``09:00-17:00``): earliest and latest start of the
  visit, local time, on one day.

Categories are the values of :class:`dispatch.directory.KeyPopulation`.
Keys and frequencies are case-insensitive; categories are lowercase.

Periods are aligned on fixed origins in local time (China Standard Time
unless a rule says otherwise): days and weeks count from Monday
2000-01-03, months from January 2000. A weekly period starts on a
Monday at midnight, a monthly one on the first of a month.

Limitation: rules do not know each other. An elder covered by two rules
is owed a visit by each; the store books one order when another
proactive visit of that elder already falls in the period, but the
coverage report counts each rule on its own.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from enum import StrEnum
from typing import NoReturn

from dispatch.city import CHINA_TZ
from dispatch.directory import KeyPopulation
from dispatch.domain import BookingRequest, Channel, Priority, TimeWindow
from dispatch.errors import ValidationError

__all__ = [
    "DEFAULT_RULES",
    "PROACTIVE_SERVICE",
    "Frequency",
    "Period",
    "ProactiveRule",
    "booking_request",
    "booking_window",
    "idempotency_key",
    "overdue_after",
    "parse_rule",
    "parse_rules",
    "period_of",
    "periods_between",
    "visit_day",
    "visit_window",
]

#: The catalogue entry every proactive visit books.
PROACTIVE_SERVICE = "proactive_visit"

_BAD_RULE = "bad_rule"
_RULE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
_HOURS = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")
_KEYS = frozenset({"FREQ", "INTERVAL", "BYDAY", "ALL", "ANY", "HOURS"})
_WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
_MAX_INTERVAL = 100
_MAX_KEY_CHARS = 200
# Missed visits are spread over at most this many open days.
_CATCH_UP_DAYS = 7
# Monday 2000-01-03: days and weeks count from here, months from 2000-01.
_ORIGIN = date(2000, 1, 3)
_ORIGIN_YEAR = 2000


class Frequency(StrEnum):
    """The unit of a rule's period."""

    DAILY = "DAILY"
    WEEKLY = "WEEKLY"
    MONTHLY = "MONTHLY"


@dataclass(frozen=True, slots=True)
class Period:
    """One period of a rule: whole local days ``[start, end)``.

    Attributes:
        start: Local midnight of the first day, timezone-aware.
        end: Local midnight after the last day.
    """

    start: datetime
    end: datetime

    @property
    def first_day(self) -> date:
        """The first local day of the period."""
        return self.start.date()

    @property
    def days(self) -> int:
        """How many local days the period holds."""
        return (self.end.date() - self.start.date()).days

    def contains(self, at: datetime) -> bool:
        """Whether ``at`` falls in the period."""
        return self.start <= at < self.end

    def each_day(self) -> Iterator[date]:
        """The local days of the period, in order."""
        first = self.first_day
        for offset in range(self.days):
            yield first + timedelta(days=offset)


@dataclass(frozen=True, slots=True)
class ProactiveRule:
    """Which elders get a proactive visit, and how often.

    Build rules with :func:`parse_rule`; the constructor validates too.

    Attributes:
        rule_id: Stable id: 1 to 40 of ``a-z 0-9 _ -``. Due visits, order
            idempotency keys and reports are keyed by it, so renaming a
            rule starts its visits afresh.
        freq: The unit of the period.
        interval: Units per period, 1 to 100.
        all_of: Categories the elder must all have.
        any_of: Categories of which the elder must have one.
        earliest: Earliest start of the visit, local time.
        latest: Latest start of the visit, local time, after ``earliest``.
        weekdays: Weekdays a visit may fall on (0 is Monday).
        tz: The local time zone of periods and visiting hours.

    Raises:
        ValidationError: ``bad_rule`` when a field is out of range.
    """

    rule_id: str
    freq: Frequency
    interval: int = 1
    all_of: frozenset[KeyPopulation] = frozenset()
    any_of: frozenset[KeyPopulation] = frozenset()
    earliest: time = time(9)
    latest: time = time(17)
    weekdays: frozenset[int] = frozenset(range(7))
    tz: tzinfo = CHINA_TZ

    def __post_init__(self) -> None:
        if not _RULE_ID.match(self.rule_id):
            _refuse("a rule id has 1 to 40 of a-z, 0-9, '_' and '-'", self.rule_id)
        if not 1 <= self.interval <= _MAX_INTERVAL:
            _refuse(f"INTERVAL is 1 to {_MAX_INTERVAL}", self.rule_id)
        if not self.all_of and not self.any_of:
            _refuse("a rule names its categories with ALL or ANY", self.rule_id)
        if not self.earliest < self.latest:
            _refuse("HOURS must start before they end", self.rule_id)
        if not self.weekdays or not self.weekdays <= frozenset(range(7)):
            _refuse("BYDAY names one to seven weekdays", self.rule_id)

    def covers(self, categories: Iterable[KeyPopulation | str]) -> bool:
        """Whether an elder with these categories is owed visits by the rule."""
        held = {KeyPopulation(c) for c in categories}
        if not self.all_of <= held:
            return False
        return not self.any_of or bool(self.any_of & held)

    def spec(self) -> str:
        """The rule in the syntax :func:`parse_rule` reads."""
        parts = [f"FREQ={self.freq}"]
        if self.interval != 1:
            parts.append(f"INTERVAL={self.interval}")
        if self.weekdays != frozenset(range(7)):
            parts.append(
                "BYDAY=" + ",".join(_WEEKDAYS[d] for d in sorted(self.weekdays))
            )
        if self.all_of:
            parts.append("ALL=" + ",".join(sorted(self.all_of)))
        if self.any_of:
            parts.append("ANY=" + ",".join(sorted(self.any_of)))
        parts.append(f"HOURS={self.earliest:%H:%M}-{self.latest:%H:%M}")
        return ";".join(parts)


def _refuse(message: str, rule_id: str, **details: object) -> NoReturn:
    raise ValidationError(message, code=_BAD_RULE, rule_id=rule_id, **details)


def parse_rule(rule_id: str, spec: str, *, tz: tzinfo = CHINA_TZ) -> ProactiveRule:
    """Read one rule from its spec, for example ``FREQ=WEEKLY;ANY=disabled``.

    Raises:
        ValidationError: ``bad_rule``, with the rule id and the faulty part
            in ``details``, for an unknown or repeated key, a missing
            ``FREQ``, an unknown frequency, weekday or category, or bad
            ``INTERVAL`` or ``HOURS``.
    """
    fields: dict[str, str] = {}
    for part in spec.strip().strip(";").split(";"):
        key, sep, value = part.partition("=")
        key, value = key.strip().upper(), value.strip()
        if not sep or not value:
            _refuse("a rule is KEY=value parts separated by ';'", rule_id, part=part)
        if key not in _KEYS:
            _refuse(f"unknown key {key}", rule_id, part=part, keys=sorted(_KEYS))
        if key in fields:
            _refuse(f"{key} is given twice", rule_id, part=part)
        fields[key] = value
    if "FREQ" not in fields:
        _refuse("a rule needs FREQ", rule_id)
    try:
        freq = Frequency(fields["FREQ"].upper())
    except ValueError:
        _refuse(
            "FREQ is DAILY, WEEKLY or MONTHLY", rule_id, part=f"FREQ={fields['FREQ']}"
        )
    earliest, latest = _hours(rule_id, fields.get("HOURS", "09:00-17:00"))
    return ProactiveRule(
        rule_id=rule_id,
        freq=freq,
        interval=_interval(rule_id, fields.get("INTERVAL", "1")),
        all_of=_categories(rule_id, "ALL", fields.get("ALL")),
        any_of=_categories(rule_id, "ANY", fields.get("ANY")),
        earliest=earliest,
        latest=latest,
        weekdays=_weekdays(rule_id, fields.get("BYDAY")),
        tz=tz,
    )


def parse_rules(text: str, *, tz: tzinfo = CHINA_TZ) -> tuple[ProactiveRule, ...]:
    """Read rules, one ``<rule_id>: <spec>`` a line; ``#`` starts a comment.

    Raises:
        ValidationError: ``bad_rule`` for a malformed line, a bad rule or
            a rule id given twice.
    """
    rules: list[ProactiveRule] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        rule_id, sep, spec = line.partition(":")
        if not sep:
            _refuse("a rule line is '<rule_id>: <spec>'", rule_id.strip(), line=number)
        rules.append(parse_rule(rule_id.strip(), spec, tz=tz))
    ids = [r.rule_id for r in rules]
    for rule_id in ids:
        if ids.count(rule_id) > 1:
            _refuse("a rule id is given twice", rule_id)
    return tuple(rules)


def _interval(rule_id: str, value: str) -> int:
    if not value.isdigit():
        _refuse("INTERVAL is a whole number", rule_id, part=f"INTERVAL={value}")
    return int(value)


def _hours(rule_id: str, value: str) -> tuple[time, time]:
    match = _HOURS.match(value)
    if match is None:
        _refuse("HOURS is HH:MM-HH:MM", rule_id, part=f"HOURS={value}")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
        _refuse("HOURS holds times of one day", rule_id, part=f"HOURS={value}")
    return time(h1, m1), time(h2, m2)


def _categories(rule_id: str, key: str, value: str | None) -> frozenset[KeyPopulation]:
    if value is None:
        return frozenset()
    found: set[KeyPopulation] = set()
    for name in value.split(","):
        try:
            found.add(KeyPopulation(name.strip()))
        except ValueError:
            _refuse(
                f"unknown category {name.strip()!r}",
                rule_id,
                part=f"{key}={value}",
                categories=[str(c) for c in KeyPopulation],
            )
    return frozenset(found)


def _weekdays(rule_id: str, value: str | None) -> frozenset[int]:
    if value is None:
        return frozenset(range(7))
    found: set[int] = set()
    for name in value.split(","):
        code = name.strip().upper()
        if code not in _WEEKDAYS:
            _refuse(f"unknown weekday {code!r}", rule_id, part=f"BYDAY={value}")
        found.add(_WEEKDAYS.index(code))
    return frozenset(found)


def period_of(rule: ProactiveRule, at: datetime) -> Period:
    """The period of ``rule`` that ``at`` falls in.

    Raises:
        ValueError: ``at`` is naive.
    """
    if at.tzinfo is None:
        raise ValueError("a period needs a timezone-aware instant")
    day = at.astimezone(rule.tz).date()
    if rule.freq is Frequency.MONTHLY:
        months = (day.year - _ORIGIN_YEAR) * 12 + day.month - 1
        first_month = months - months % rule.interval
        first = _month_start(first_month)
        after = _month_start(first_month + rule.interval)
    else:
        span = rule.interval * (7 if rule.freq is Frequency.WEEKLY else 1)
        first = day - timedelta(days=(day - _ORIGIN).days % span)
        after = first + timedelta(days=span)
    return Period(_midnight(first, rule.tz), _midnight(after, rule.tz))


def periods_between(
    rule: ProactiveRule, start: datetime, end: datetime
) -> list[Period]:
    """The periods of ``rule`` that overlap ``[start, end)``, in order.

    At least the period of ``start``, even when ``end`` is not after it.
    """
    periods = [period_of(rule, start)]
    while periods[-1].end < end:
        periods.append(period_of(rule, periods[-1].end))
    return periods


def _month_start(months: int) -> date:
    return date(_ORIGIN_YEAR + months // 12, months % 12 + 1, 1)


def _midnight(day: date, tz: tzinfo) -> datetime:
    return datetime.combine(day, time(), tz)


def visit_day(rule: ProactiveRule, elder_id: str, period: Period) -> date | None:
    """The day of ``period`` on which the elder is owed the visit.

    Chosen among the period's days on the rule's weekdays by a stable hash
    of rule and elder, so it does not move between runs or processes.
    ``None`` when the period has no such day.
    """
    days = _visit_days(rule, period)
    if not days:
        return None
    return days[_slot(rule.rule_id, elder_id, len(days))]


@functools.lru_cache(maxsize=256)
def _visit_days(rule: ProactiveRule, period: Period) -> tuple[date, ...]:
    # Cached: reports and due rows ask for every elder of a period.
    return tuple(d for d in period.each_day() if d.weekday() in rule.weekdays)


def _slot(rule_id: str, elder_id: str, slots: int) -> int:
    """A stable choice among ``slots`` for this rule and elder."""
    digest = hashlib.sha256(f"{rule_id}\x1f{elder_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % slots


def visit_window(rule: ProactiveRule, day: date) -> TimeWindow:
    """The rule's visiting hours on ``day`` as a time window."""
    return TimeWindow(
        datetime.combine(day, rule.earliest, rule.tz),
        datetime.combine(day, rule.latest, rule.tz),
    )


def overdue_after(rule: ProactiveRule, day: date) -> datetime:
    """When an elder owed a visit on ``day`` and not visited is overdue.

    The local midnight that ends the visit day.
    """
    return _midnight(day + timedelta(days=1), rule.tz)


def booking_window(
    rule: ProactiveRule, elder_id: str, day: date, period: Period, now: datetime
) -> TimeWindow | None:
    """The window to book a visit owed on ``day`` with, as of ``now``.

    The visit day's window while its latest start is still ahead. After
    that (the service was down, or the rule or the elder is new in the
    middle of a period), a later day of the period on the rule's weekdays
    whose window is still open, chosen by the same hash as the visit day
    among the first seven such days: a backlog of missed visits is spread
    over the coming week instead of landing on one day. ``None`` when the
    period has no open day left: the visit lapsed.
    """
    open_days = [
        d
        for d in period.each_day()
        if d >= day
        and d.weekday() in rule.weekdays
        and visit_window(rule, d).latest > now
    ]
    if not open_days:
        return None
    if open_days[0] == day:
        return visit_window(rule, day)
    spread = open_days[:_CATCH_UP_DAYS]
    return visit_window(rule, spread[_slot(rule.rule_id, elder_id, len(spread))])


def idempotency_key(rule_id: str, elder_id: str, period: Period) -> str:
    """The key that books a rule's visit of an elder once per period."""
    key = f"proactive:{rule_id}:{period.first_day.isoformat()}:{elder_id}"
    if len(key) <= _MAX_KEY_CHARS:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"proactive:{rule_id}:{period.first_day.isoformat()}:#{digest}"


def booking_request(
    rule: ProactiveRule, elder_id: str, window: TimeWindow
) -> BookingRequest:
    """The order a due visit books: routine, channel proactive."""
    return BookingRequest(
        elder_id=elder_id,
        service_code=PROACTIVE_SERVICE,
        window=window,
        priority=Priority.ROUTINE,
        channel=Channel.PROACTIVE,
        notes=f"proactive visit, rule {rule.rule_id}",
    )


#: The programme's default rules: weekly for elders aged 80 and over living
#: alone, fortnightly for disabled elders and those in extreme hardship,
#: monthly for every other key-population elder.
DEFAULT_RULES: tuple[ProactiveRule, ...] = (
    parse_rule(
        "weekly_80_alone",
        "FREQ=WEEKLY;ALL=aged_80_plus,living_alone;HOURS=09:00-17:00",
    ),
    parse_rule(
        "fortnightly_disabled",
        "FREQ=WEEKLY;INTERVAL=2;ANY=disabled,extreme_hardship;HOURS=09:00-17:00",
    ),
    parse_rule(
        "monthly_key_population",
        "FREQ=MONTHLY;HOURS=09:00-17:00;ANY=living_alone,empty_nest,"
        "semi_disabled,aged_80_plus,low_income,left_behind",
    ),
)
