-- Appointment reminders: one delivery row per appointment is what makes a reminder exactly-once.
--
-- state machine:  (none) -> claimed -> sent | failed      (final: never sent again)
--                 (none) -> skipped  (no consent, no address, cancelled, started; a later run may
--                                     claim it again once the customer's data allows a reminder)
-- A 'claimed' row is a send in flight: the same owner (workflow run) re-sends it on retry with the
-- same Message-ID; another run may take it over only once the claim is older than a lease.

CREATE TABLE reminder_deliveries (
    appointment_id uuid PRIMARY KEY REFERENCES appointments (id) ON DELETE CASCADE,
    state          text NOT NULL CHECK (state IN ('claimed', 'sent', 'failed', 'skipped')),
    channel        text CHECK (channel IN ('email', 'sms')),
    recipient      text,
    reason         text,
    message_id     text,
    provider_id    text,
    owner          text,
    attempts       integer NOT NULL DEFAULT 0,
    claimed_at     timestamptz,
    sent_at        timestamptz,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
-- Operators look for what is stuck or failed; the reminder job itself only reads by primary key.
CREATE INDEX reminder_deliveries_open_idx ON reminder_deliveries (state, updated_at)
    WHERE state IN ('claimed', 'failed');
