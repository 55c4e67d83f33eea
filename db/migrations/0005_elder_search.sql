-- Hotline search: callers give the end of a phone number or the start of a
-- name. A suffix match is a prefix match on the reversed number, so both
-- use a btree instead of scanning every elder of the province.

create index elder_phone_reversed on elder (reverse(phone) text_pattern_ops);
create index elder_name_prefix on elder (name text_pattern_ops);
