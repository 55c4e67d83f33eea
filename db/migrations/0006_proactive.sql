-- Proactive care visits: one row per visit a rule owes an elder in a
-- period. The due date is a row, not a timer, so a restarted service finds
-- every visit that fell due while it was down (DESIGN.md section 8).
--
-- status: pending (not booked yet), booked (order_id names the order that
-- serves it: booked for it, or another proactive visit of the elder in the
-- same period), lapsed (the period ran out before it could be booked),
-- dropped (the elder no longer falls under the rule).

create table proactive_visit_due (
    rule_id       text not null,
    elder_id      text not null references elder on delete cascade,
    period_start  timestamptz not null,
    period_end    timestamptz not null,
    region_id     text not null,
    -- earliest start of the visit on the elder's visit day
    due_at        timestamptz not null,
    status        text not null default 'pending'
                  check (status in ('pending', 'booked', 'lapsed', 'dropped')),
    order_id      uuid references "order",
    settled_at    timestamptz,
    primary key (rule_id, period_start, elder_id),
    check (period_end > period_start),
    check ((status = 'booked') = (order_id is not null)),
    check ((status = 'pending') = (settled_at is null))
);
-- generation books pending rows by due date and lapses them by period end
create index proactive_visit_due_pending on proactive_visit_due (due_at)
    where status = 'pending';
create index proactive_visit_due_lapsing on proactive_visit_due (period_end)
    where status = 'pending';
create index proactive_visit_due_order on proactive_visit_due (order_id)
    where order_id is not null;

-- The elder's key-population categories as the names of
-- dispatch.directory.KeyPopulation, for rules to match with @> and &&.
create function elder_categories(e elder) returns text[]
language sql immutable parallel safe as $$
    select array_remove(array[
        case when e.living_alone then 'living_alone' end,
        case when e.empty_nest then 'empty_nest' end,
        case when e.disabled then 'disabled' end,
        case when e.semi_disabled then 'semi_disabled' end,
        case when e.aged_80_plus then 'aged_80_plus' end,
        case when e.low_income then 'low_income' end,
        case when e.extreme_hardship then 'extreme_hardship' end,
        case when e.left_behind then 'left_behind' end
    ], null)
$$;

-- The coverage report finds the visits completed or closed in a period
-- from the event log by time.
create index order_event_done_at on order_event (at)
    where to_status in ('completed', 'closed');
