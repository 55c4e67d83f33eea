"""Proactive-visit rules, periods and due visits, without I/O."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatch.city import CHINA_TZ
from dispatch.directory import KeyPopulation
from dispatch.domain import Channel, Priority
from dispatch.errors import ValidationError
from dispatch.proactive import (
    DEFAULT_RULES,
    Frequency,
    Period,
    ProactiveRule,
    booking_request,
    booking_window,
    idempotency_key,
    overdue_after,
    parse_rule,
    parse_rules,
    period_of,
    periods_between,
    visit_day,
    visit_window,
)

# Thursday 2026-12-03, 10:00 in Changchun.
LOCAL_NOON = datetime(2026, 12, 3, 10, 0, tzinfo=CHINA_TZ)


def _rule(spec: str, rule_id: str = "r") -> ProactiveRule:
    return parse_rule(rule_id, spec)


# -- parsing ------------------------------------------------------------------


def test_full_rule_is_read() -> None:
    """Every key is read into the rule's fields."""
    rule = _rule(
        "FREQ=weekly; INTERVAL=2; BYDAY=MO,we; ALL=aged_80_plus,living_alone;"
        " ANY=disabled; HOURS=08:30-16:00"
    )
    assert rule.freq is Frequency.WEEKLY
    assert rule.interval == 2
    assert rule.weekdays == {0, 2}
    assert rule.all_of == {KeyPopulation.AGED_80_PLUS, KeyPopulation.LIVING_ALONE}
    assert rule.any_of == {KeyPopulation.DISABLED}
    assert (rule.earliest, rule.latest) == (time(8, 30), time(16))


def test_defaults_are_every_day_nine_to_five_interval_one() -> None:
    """A rule with FREQ and categories only takes the documented defaults."""
    rule = _rule("FREQ=MONTHLY;ANY=empty_nest")
    assert rule.interval == 1
    assert rule.weekdays == set(range(7))
    assert (rule.earliest, rule.latest) == (time(9), time(17))


def test_spec_reads_back_to_the_same_rule() -> None:
    """``spec()`` is the syntax ``parse_rule`` reads, for every default rule."""
    for rule in DEFAULT_RULES:
        assert parse_rule(rule.rule_id, rule.spec()) == rule


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("ALL=disabled", "needs FREQ"),
        ("FREQ=YEARLY;ALL=disabled", "FREQ is"),
        ("FREQ=DAILY;ALL=disabled;COUNT=3", "unknown key"),
        ("FREQ=DAILY;FREQ=WEEKLY;ALL=disabled", "twice"),
        ("FREQ=DAILY;ALL=", "KEY=value"),
        ("FREQ=DAILY;ALL=disabled;INTERVAL=0", "INTERVAL is 1 to"),
        ("FREQ=DAILY;ALL=disabled;INTERVAL=101", "INTERVAL is 1 to"),
        ("FREQ=DAILY;ALL=disabled;INTERVAL=-1", "whole number"),
        ("FREQ=DAILY", "ALL or ANY"),
        ("FREQ=DAILY;ANY=lonely", "unknown category"),
        ("FREQ=DAILY;ANY=disabled;BYDAY=MO,XX", "unknown weekday"),
        ("FREQ=DAILY;ANY=disabled;HOURS=9-17", "HH:MM-HH:MM"),
        ("FREQ=DAILY;ANY=disabled;HOURS=17:00-09:00", "start before"),
        ("FREQ=DAILY;ANY=disabled;HOURS=09:00-24:00", "one day"),
    ],
)
def test_bad_rule_is_refused_with_a_stable_code(spec: str, fragment: str) -> None:
    """A malformed rule raises ``bad_rule`` naming the rule and the fault."""
    with pytest.raises(ValidationError) as caught:
        _rule(spec, "weekly_x")
    assert caught.value.code == "bad_rule"
    assert caught.value.details["rule_id"] == "weekly_x"
    assert fragment in caught.value.message


@pytest.mark.parametrize("rule_id", ["", "Weekly", "a b", "x" * 41])
def test_bad_rule_id_is_refused(rule_id: str) -> None:
    """Rule ids are short lowercase words: they end up in idempotency keys."""
    with pytest.raises(ValidationError, match="rule id") as caught:
        _rule("FREQ=DAILY;ANY=disabled", rule_id)
    assert caught.value.code == "bad_rule"


def test_rules_text_reads_lines_and_skips_comments() -> None:
    """One ``id: spec`` a line; blank lines and ``#`` comments are skipped."""
    rules = parse_rules(
        "# the programme\n\n"
        "a: FREQ=DAILY;ANY=disabled  # every day\n"
        "b: FREQ=MONTHLY;ALL=empty_nest\n"
    )
    assert [r.rule_id for r in rules] == ["a", "b"]


@pytest.mark.parametrize(
    "text",
    [
        "FREQ=DAILY;ANY=disabled",
        "a: FREQ=DAILY;ANY=disabled\na: FREQ=WEEKLY;ANY=disabled",
    ],
)
def test_bad_rules_text_is_refused(text: str) -> None:
    """A line without an id, or an id given twice, is a bad rule."""
    with pytest.raises(ValidationError) as caught:
        parse_rules(text)
    assert caught.value.code == "bad_rule"


# -- who a rule covers --------------------------------------------------------


@pytest.mark.parametrize(
    ("categories", "expected"),
    [
        ({"aged_80_plus", "living_alone"}, True),
        ({"aged_80_plus", "living_alone", "low_income"}, True),
        ({"aged_80_plus"}, False),
        (set(), False),
    ],
)
def test_all_of_needs_every_category(categories: set[str], expected: bool) -> None:
    """``ALL`` covers an elder with every category named, and more."""
    rule = _rule("FREQ=WEEKLY;ALL=aged_80_plus,living_alone")
    assert rule.covers(categories) is expected


@pytest.mark.parametrize(
    ("categories", "expected"),
    [
        ({"disabled"}, True),
        ({"semi_disabled", "aged_80_plus"}, True),
        ({"aged_80_plus"}, False),
    ],
)
def test_any_of_needs_one_category(categories: set[str], expected: bool) -> None:
    """``ANY`` covers an elder with at least one category named."""
    rule = _rule("FREQ=WEEKLY;ANY=disabled,semi_disabled")
    assert rule.covers(categories) is expected


def test_all_and_any_must_both_hold() -> None:
    """With ``ALL`` and ``ANY``, the elder needs all of one and one of the other."""
    rule = _rule("FREQ=WEEKLY;ALL=aged_80_plus;ANY=disabled,semi_disabled")
    assert rule.covers({"aged_80_plus", "semi_disabled"})
    assert not rule.covers({"aged_80_plus"})
    assert not rule.covers({"disabled"})


# -- periods: exact cases -----------------------------------------------------


def test_weekly_period_is_the_local_monday_to_monday() -> None:
    """A week runs from local Monday midnight, China time, not UTC."""
    period = period_of(_rule("FREQ=WEEKLY;ANY=disabled"), LOCAL_NOON)
    assert period.start == datetime(2026, 11, 30, tzinfo=CHINA_TZ)
    assert period.end == datetime(2026, 12, 7, tzinfo=CHINA_TZ)
    assert period.days == 7


def test_local_monday_early_morning_is_already_the_new_week() -> None:
    """Sunday 17:00 UTC is Monday 01:00 in Changchun: the next week."""
    at = datetime(2026, 12, 6, 17, 0, tzinfo=UTC)
    period = period_of(_rule("FREQ=WEEKLY;ANY=disabled"), at)
    assert period.first_day == date(2026, 12, 7)


def test_fortnights_are_aligned_on_a_fixed_origin() -> None:
    """Two consecutive weeks share a fortnight only when the origin says so."""
    rule = _rule("FREQ=WEEKLY;INTERVAL=2;ANY=disabled")
    period = period_of(rule, LOCAL_NOON)
    assert period.days == 14
    assert (period.first_day - date(2000, 1, 3)).days % 14 == 0
    assert period_of(rule, period.end) != period


def test_monthly_periods_follow_the_calendar() -> None:
    """A month is the calendar month; three months are a quarter from January."""
    assert period_of(_rule("FREQ=MONTHLY;ANY=disabled"), LOCAL_NOON) == Period(
        datetime(2026, 12, 1, tzinfo=CHINA_TZ), datetime(2027, 1, 1, tzinfo=CHINA_TZ)
    )
    quarter = period_of(_rule("FREQ=MONTHLY;INTERVAL=3;ANY=disabled"), LOCAL_NOON)
    assert (quarter.first_day, quarter.end.date()) == (
        date(2026, 10, 1),
        date(2027, 1, 1),
    )


def test_periods_between_lists_each_overlapping_period() -> None:
    """From Thursday over eight days: this week and the next two."""
    rule = _rule("FREQ=WEEKLY;ANY=disabled")
    periods = periods_between(rule, LOCAL_NOON, LOCAL_NOON + timedelta(days=11))
    assert [p.first_day for p in periods] == [
        date(2026, 11, 30),
        date(2026, 12, 7),
        date(2026, 12, 14),
    ]


def test_naive_instant_is_refused() -> None:
    """Periods are local days: a naive instant has no local day."""
    naive = datetime(2026, 12, 3)  # noqa: DTZ001
    with pytest.raises(ValueError, match="timezone-aware"):
        period_of(_rule("FREQ=DAILY;ANY=disabled"), naive)


# -- visit days and windows ---------------------------------------------------


def test_visit_day_falls_on_the_rule_weekdays() -> None:
    """With BYDAY, every elder's visit day is one of those weekdays."""
    rule = _rule("FREQ=MONTHLY;ANY=disabled;BYDAY=TU,TH")
    period = period_of(rule, LOCAL_NOON)
    days = {visit_day(rule, f"el-{i}", period) for i in range(200)}
    assert days
    assert all(d is not None and d.weekday() in {1, 3} for d in days)


def test_visit_days_spread_over_the_period() -> None:
    """A weekly rule's elders are spread over all seven days, not one."""
    rule = _rule("FREQ=WEEKLY;ANY=disabled")
    period = period_of(rule, LOCAL_NOON)
    days = [visit_day(rule, f"el-{i}", period) for i in range(700)]
    counts = [days.count(d) for d in period.each_day()]
    assert min(counts) > 60


def test_elder_keeps_the_same_weekday_week_after_week() -> None:
    """The visit day depends on rule and elder only: same weekday each week."""
    rule = _rule("FREQ=WEEKLY;ANY=disabled")
    weeks = periods_between(rule, LOCAL_NOON, LOCAL_NOON + timedelta(weeks=4))
    days = [visit_day(rule, "el-7", p) for p in weeks]
    assert len({d.weekday() for d in days if d is not None}) == 1
    assert None not in days


def test_daily_rule_on_some_weekdays_owes_nothing_on_the_others() -> None:
    """``FREQ=DAILY;BYDAY=MO`` owes a visit on Mondays only."""
    rule = _rule("FREQ=DAILY;ANY=disabled;BYDAY=MO")
    thursday = period_of(rule, LOCAL_NOON)
    monday = period_of(rule, datetime(2026, 11, 30, 10, tzinfo=CHINA_TZ))
    assert visit_day(rule, "el-1", thursday) is None
    assert visit_day(rule, "el-1", monday) == date(2026, 11, 30)


def test_visit_window_is_the_local_visiting_hours() -> None:
    """HOURS are local: 09:00-17:00 in Changchun is 01:00-09:00 UTC."""
    rule = _rule("FREQ=WEEKLY;ANY=disabled")
    window = visit_window(rule, date(2026, 12, 3))
    assert window.earliest == datetime(2026, 12, 3, 1, tzinfo=UTC)
    assert window.latest == datetime(2026, 12, 3, 9, tzinfo=UTC)


def test_booking_window_is_the_visit_day_while_it_is_open() -> None:
    """Before the visit day's latest start, the visit day's window is booked."""
    rule = _rule("FREQ=WEEKLY;ANY=disabled")
    period = period_of(rule, LOCAL_NOON)
    window = booking_window(rule, "el-1", date(2026, 12, 3), period, LOCAL_NOON)
    assert window == visit_window(rule, date(2026, 12, 3))


def test_missed_visit_day_is_caught_up_on_the_next_open_day() -> None:
    """Thursday evening, weekdays only: a missed visit goes to Friday."""
    rule = _rule("FREQ=WEEKLY;ANY=disabled;BYDAY=MO,TU,WE,TH,FR")
    period = period_of(rule, LOCAL_NOON)
    evening = datetime(2026, 12, 3, 18, tzinfo=CHINA_TZ)
    window = booking_window(rule, "el-1", date(2026, 12, 1), period, evening)
    assert window == visit_window(rule, date(2026, 12, 4))


def test_backlog_of_missed_visits_is_spread_over_the_coming_week() -> None:
    """Visits missed early in a month spread over the next seven open days."""
    rule = _rule("FREQ=MONTHLY;ANY=disabled")
    now = datetime(2026, 12, 10, 18, tzinfo=CHINA_TZ)
    period = period_of(rule, now)
    days = set()
    for i in range(700):
        window = booking_window(rule, f"el-{i}", date(2026, 12, 2), period, now)
        assert window is not None
        days.add(window.earliest.date())
    assert days == {date(2026, 12, d) for d in range(11, 18)}


def test_visit_lapses_when_the_period_has_no_open_day_left() -> None:
    """Friday evening, weekdays only: nothing is left of this week."""
    rule = _rule("FREQ=WEEKLY;ANY=disabled;BYDAY=MO,TU,WE,TH,FR")
    period = period_of(rule, LOCAL_NOON)
    friday_evening = datetime(2026, 12, 4, 18, tzinfo=CHINA_TZ)
    late = booking_window(rule, "el-1", date(2026, 12, 1), period, friday_evening)
    assert late is None


def test_unvisited_elder_is_overdue_from_midnight_after_the_visit_day() -> None:
    """Overdue starts at the local midnight that ends the visit day."""
    rule = _rule("FREQ=WEEKLY;ANY=disabled")
    assert overdue_after(rule, date(2026, 12, 3)) == datetime(
        2026, 12, 4, tzinfo=CHINA_TZ
    )


def test_booking_is_a_routine_proactive_visit() -> None:
    """Due visits book ``proactive_visit``, routine, channel proactive."""
    rule = _rule("FREQ=WEEKLY;ANY=disabled")
    request = booking_request(rule, "el-1", visit_window(rule, date(2026, 12, 3)))
    assert request.service_code == "proactive_visit"
    assert request.priority is Priority.ROUTINE
    assert request.channel is Channel.PROACTIVE


def test_idempotency_key_names_rule_period_and_elder() -> None:
    """The key differs by rule, elder and period, and stays within 200 chars."""
    rule = _rule("FREQ=WEEKLY;ANY=disabled")
    this = period_of(rule, LOCAL_NOON)
    following = period_of(rule, this.end)
    keys = {
        idempotency_key("r", "el-1", this),
        idempotency_key("r", "el-2", this),
        idempotency_key("s", "el-1", this),
        idempotency_key("r", "el-1", following),
    }
    assert len(keys) == 4
    assert len(idempotency_key("r", "e" * 500, this)) <= 200


# -- periods: properties ------------------------------------------------------

instants = st.datetimes(
    min_value=datetime(1990, 1, 1),  # noqa: DTZ001
    max_value=datetime(2100, 1, 1),  # noqa: DTZ001
    timezones=st.just(UTC),
)
rules = st.builds(
    ProactiveRule,
    rule_id=st.from_regex(r"[a-z][a-z0-9_]{0,9}", fullmatch=True),
    freq=st.sampled_from(Frequency),
    interval=st.integers(1, 12),
    any_of=st.just(frozenset({KeyPopulation.DISABLED})),
    weekdays=st.frozensets(st.integers(0, 6), min_size=1),
)


@given(rule=rules, at=instants)
def test_period_holds_the_instant_and_is_whole_local_days(
    rule: ProactiveRule, at: datetime
) -> None:
    """The period of an instant contains it and runs midnight to midnight."""
    period = period_of(rule, at)
    assert period.contains(at)
    for edge in (period.start, period.end):
        assert edge.astimezone(rule.tz).time() == time()


@given(rule=rules, at=instants)
def test_period_length_follows_frequency_and_interval(
    rule: ProactiveRule, at: datetime
) -> None:
    """Days and weeks have exact lengths; months 28 to 31 days each."""
    period = period_of(rule, at)
    if rule.freq is Frequency.DAILY:
        assert period.days == rule.interval
    elif rule.freq is Frequency.WEEKLY:
        assert period.days == 7 * rule.interval
        assert period.first_day.weekday() == 0
    else:
        assert 28 * rule.interval <= period.days <= 31 * rule.interval
        assert period.first_day.day == 1


@given(rule=rules, at=instants)
def test_periods_tile_time_without_gap_or_overlap(
    rule: ProactiveRule, at: datetime
) -> None:
    """The next period starts where this one ends; the previous ends here."""
    period = period_of(rule, at)
    assert period_of(rule, period.start) == period
    assert period_of(rule, period.end).start == period.end
    assert period_of(rule, period.start - timedelta(microseconds=1)).end == (
        period.start
    )


@given(rule=rules, at=instants, elder_id=st.text(min_size=1, max_size=20))
def test_visit_day_lies_in_the_period_on_a_rule_weekday(
    rule: ProactiveRule, at: datetime, elder_id: str
) -> None:
    """The visit day is in the period, on a rule weekday, or absent."""
    period = period_of(rule, at)
    day = visit_day(rule, elder_id, period)
    on_weekdays = [d for d in period.each_day() if d.weekday() in rule.weekdays]
    if day is None:
        assert not on_weekdays
    else:
        assert day in on_weekdays
        window = visit_window(rule, day)
        assert period.contains(window.earliest)
        assert period.contains(window.latest)


@given(
    rule=rules,
    at=instants,
    elder_id=st.text(min_size=1, max_size=20),
    later=st.timedeltas(timedelta(0), timedelta(days=40)),
)
def test_booking_window_stays_in_the_period_and_is_still_open(
    rule: ProactiveRule, at: datetime, elder_id: str, later: timedelta
) -> None:
    """A booked window opens in the visit's period and closes after now."""
    period = period_of(rule, at)
    day = visit_day(rule, elder_id, period)
    if day is None:
        return
    now = period.start + later
    window = booking_window(rule, elder_id, day, period, now)
    if window is not None:
        assert period.contains(window.earliest)
        assert window.latest > now
        assert window.earliest.astimezone(rule.tz).date() >= day
    else:
        assert now >= visit_window(rule, day).latest
