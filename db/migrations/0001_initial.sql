-- The record of the platform: who is served, who serves, what is offered,
-- and every order with its append-only event log.

create table region (
    region_id      text primary key,
    name_zh        text not null,
    name_en        text not null,
    district_code  text not null,
    center_lat     double precision not null check (center_lat between -90 and 90),
    center_lon     double precision not null check (center_lon between -180 and 180)
);

create table elder (
    elder_id                text primary key,
    region_id               text not null references region,
    name                    text not null,
    phone                   text not null,
    address                 text not null default '',
    home_lat                double precision not null check (home_lat between -90 and 90),
    home_lon                double precision not null check (home_lon between -180 and 180),
    birth_year              integer,
    -- the eight key-population categories of the provincial home-visit programme
    living_alone            boolean not null default false,
    empty_nest              boolean not null default false,
    disabled                boolean not null default false,
    semi_disabled           boolean not null default false,
    aged_80_plus            boolean not null default false,
    low_income              boolean not null default false,
    extreme_hardship        boolean not null default false,
    left_behind             boolean not null default false,
    care_level              smallint not null default 0 check (care_level between 0 and 5),
    preferred_gender        text check (preferred_gender in ('female', 'male')),
    preferred_language      text,
    preferred_caregiver_ids text[] not null default '{}',
    blocked_caregiver_ids   text[] not null default '{}',
    health_notes            text not null default '',
    created_at              timestamptz not null default now()
);
create index elder_phone on elder (phone);
create index elder_region on elder (region_id);

create table caregiver (
    caregiver_id          text primary key,
    region_id             text not null references region,
    name                  text not null,
    phone                 text not null,
    gender                text check (gender in ('female', 'male')),
    languages             text[] not null default '{}',
    skills                text[] not null default '{}',
    home_lat              double precision not null check (home_lat between -90 and 90),
    home_lon              double precision not null check (home_lon between -180 and 180),
    max_visits_per_shift  integer not null default 8 check (max_visits_per_shift > 0),
    active                boolean not null default true
);
create index caregiver_region on caregiver (region_id);

create table shift (
    shift_id      bigint generated always as identity primary key,
    caregiver_id  text not null references caregiver,
    starts_at     timestamptz not null,
    ends_at       timestamptz not null,
    start_lat     double precision not null,
    start_lon     double precision not null,
    end_lat       double precision not null,
    end_lon       double precision not null,
    check (ends_at > starts_at)
);
create index shift_caregiver_time on shift (caregiver_id, starts_at);

create table vendor (
    vendor_id            text primary key,
    name                 text not null,
    category             text not null,
    service_codes        text[] not null default '{}',
    coverage_region_ids  text[] not null default '{}',
    lat                  double precision not null,
    lon                  double precision not null,
    -- {"mon": [["08:00", "20:00"]], ...}: local opening intervals per weekday
    opening_hours        jsonb not null default '{}',
    open_order_capacity  integer not null default 10 check (open_order_capacity >= 0),
    merit_score          real not null default 0.5 check (merit_score between 0 and 1),
    active               boolean not null default true
);

create table service (
    service_code      text primary key,
    family            text not null,
    name_zh           text not null,
    name_en           text not null,
    skills            text[] not null default '{}',
    duration_min      integer not null check (duration_min > 0),
    fulfilled_by      text not null check (fulfilled_by in ('caregiver', 'vendor')),
    price_cents       integer not null check (price_cents >= 0),
    max_lateness_min  integer not null default 0 check (max_lateness_min >= 0)
);

create table "order" (
    order_id               uuid primary key,
    elder_id               text not null references elder,
    service_code           text not null references service,
    provider_kind          text not null check (provider_kind in ('caregiver', 'vendor')),
    region_id              text not null references region,
    priority               text not null check (priority in ('emergency', 'urgent', 'routine')),
    status                 text not null,
    version                integer not null check (version >= 1),
    earliest               timestamptz not null,
    latest                 timestamptz not null,
    duration_min           integer not null check (duration_min > 0),
    lat                    double precision not null,
    lon                    double precision not null,
    channel                text not null,
    notes                  text not null default '',
    skills                 text[] not null default '{}',
    provider_id            text,
    offer_provider_id      text,
    offer_expires_at       timestamptz,
    excluded_provider_ids  text[] not null default '{}',
    record                 jsonb not null default '{}',
    created_by_role        text not null,
    created_by_id          text not null,
    created_at             timestamptz not null,
    updated_at             timestamptz not null,
    check (latest >= earliest),
    check ((status = 'offered') = (offer_provider_id is not null))
);
create index order_open on "order" (region_id, status)
    where status not in ('closed', 'cancelled');
create index order_elder on "order" (elder_id, created_at);
create index order_provider on "order" (provider_id) where provider_id is not null;
create index order_created on "order" (created_at);

create table order_event (
    event_id     bigint generated always as identity primary key,
    order_id     uuid not null references "order",
    seq          integer not null check (seq >= 1),
    trigger      text not null,
    from_status  text,
    to_status    text not null,
    actor_role   text not null,
    actor_id     text not null,
    at           timestamptz not null,
    reason       text not null default '',
    payload      jsonb not null default '{}',
    unique (order_id, seq)
);

-- One row per offer made; at most one open offer per order, enforced here.
create table offer (
    offer_id       bigint generated always as identity primary key,
    order_id       uuid not null references "order",
    provider_kind  text not null,
    provider_id    text not null,
    offered_at     timestamptz not null,
    expires_at     timestamptz not null,
    outcome        text check (outcome in ('accept', 'decline', 'expire', 'withdraw',
                                           'cancel', 'escalate')),
    closed_at      timestamptz
);
create unique index offer_one_open on offer (order_id) where outcome is null;
create index offer_open_expiry on offer (expires_at) where outcome is null;
create index offer_provider on offer (provider_id, offered_at);

-- Creation requests by key, scoped by caller, so a retry returns the first
-- result and a reuse with another body is refused.
create table idempotency_key (
    scope          text not null,
    key            text not null,
    request_hash   text not null,
    order_id       uuid not null references "order",
    created_at     timestamptz not null default now(),
    primary key (scope, key)
);

create table audit_log (
    audit_id      bigint generated always as identity primary key,
    at            timestamptz not null default now(),
    actor_role    text not null,
    actor_id      text not null,
    action        text not null,
    subject_kind  text not null,
    subject_id    text not null,
    detail        jsonb not null default '{}'
);
create index audit_subject on audit_log (subject_kind, subject_id, at);
