-- Rate limits shared by every worker process (issue 3, scale-out): the SMS provider limits the
-- account, not one process. Each send reserves the next free slot of its limit in one statement.

CREATE TABLE rate_limit_slots (
    name         text PRIMARY KEY,
    next_slot_at timestamptz NOT NULL
);

COMMENT ON TABLE rate_limit_slots IS
    'One row per shared rate limit (e.g. ''sms''): next_slot_at is the earliest time the next '
    'acquisition may go; each acquisition moves it one interval on.';
