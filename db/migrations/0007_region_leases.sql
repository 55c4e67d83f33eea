-- Region leases (DESIGN.md section 9): each region has one dispatcher at a
-- time. The holder renews its lease before it expires; a lease that has
-- expired may be taken by another dispatcher, and taking it raises the
-- fencing number. Every write a dispatcher makes checks, in its own
-- transaction, that it still holds the lease with the fence it was given,
-- so a dispatcher that stalled past its lease writes nothing.
--
-- Times are the database server's (clock_timestamp()), one clock for every
-- node, so a node's own clock drift cannot stretch a lease.

create table region_lease (
    region_id   text primary key references region,
    holder      text not null,
    fence       bigint not null check (fence > 0),
    expires_at  timestamptz not null
);

-- Dispatcher nodes say they are alive here, so each can take its fair
-- share of the regions (the regions divided by the nodes alive).
create table dispatcher_node (
    holder      text primary key,
    seen_at     timestamptz not null
);
