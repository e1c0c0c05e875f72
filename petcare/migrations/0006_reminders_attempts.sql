-- Reminder claims name the activity attempt that holds them, so a retry of the same run can tell
-- its own older, timed-out attempt (whose claims it takes over at once) from a newer one (which
-- it must leave alone), and the holder re-checks `owner` + `owner_attempt` right before each send.
-- NULL on rows written before this column existed: read as attempt 0, the oldest.
ALTER TABLE reminder_deliveries ADD COLUMN owner_attempt integer;
