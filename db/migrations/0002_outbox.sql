-- The event log is the outbox: readers follow it by (tx, event_id) and only
-- read below the oldest running transaction, so no event is skipped when
-- transactions commit out of order.

alter table order_event
    add column tx xid8 not null default pg_current_xact_id(),
    add column region_id text not null default '',
    -- providers the event concerns: offered, assigned, before and after
    add column provider_ids text[] not null default '{}';
create index order_event_outbox on order_event (tx, event_id);

create table outbox_cursor (
    name       text primary key,
    tx         xid8 not null default '0',
    event_id   bigint not null default 0,
    moved_at   timestamptz not null default now()
);
