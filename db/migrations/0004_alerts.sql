-- Alerts for operators: a caregiver's SOS, a device alarm, an emergency
-- booked, an escalated order. Raised once per source (source_key), kept
-- until an operator acknowledges them.

create table alert (
    alert_id         bigint generated always as identity primary key,
    kind             text not null
                     check (kind in ('emergency', 'escalated', 'sos', 'device_alarm')),
    severity         text not null
                     check (severity in ('critical', 'high', 'medium', 'low')),
    order_id         uuid references "order",
    caregiver_id     text,
    region_id        text not null default '',
    message          text not null,
    -- what raised it, e.g. 'event:42' or 'sos:caregiver:cg-1:m7'; a retry
    -- with the same key finds the first alert instead of raising another
    source_key       text not null unique,
    at               timestamptz not null,
    acknowledged_at  timestamptz,
    acknowledged_by  text
);
create index alert_open on alert (at) where acknowledged_at is null;
create index alert_order on alert (order_id) where order_id is not null;
