-- Reminders for real customers: a reminder is owed per appointment AND its start time (a moved
-- appointment gets one for its new time), SMS opt-outs recorded on the customer, and each store's
-- own wording per locale.

-- Set by the worker when the SMS provider answers that the number unsubscribed (Twilio 21610,
-- the customer texted STOP); cleared by the main backend on re-consent. No SMS while it is set.
ALTER TABLE customers ADD COLUMN sms_opted_out_at timestamptz;

-- The delivery record's key becomes (appointment, the start time it reminds of). Existing rows
-- are taken to remind of the appointment's current time: never a second reminder for them.
--
-- state machine, per (appointment_id, starts_at), unchanged:
--   (none) -> claimed -> sent | failed;  skipped / deferred -> claimed again by a later run
ALTER TABLE reminder_deliveries ADD COLUMN starts_at timestamptz;
UPDATE reminder_deliveries d SET starts_at = a.starts_at FROM appointments a WHERE a.id = d.appointment_id;
ALTER TABLE reminder_deliveries ALTER COLUMN starts_at SET NOT NULL;
ALTER TABLE reminder_deliveries DROP CONSTRAINT reminder_deliveries_pkey;
ALTER TABLE reminder_deliveries ADD PRIMARY KEY (appointment_id, starts_at);
-- "Who was reminded": newest first, keyset paged (api/reminders.py).
CREATE INDEX reminder_deliveries_updated_idx ON reminder_deliveries (updated_at, appointment_id, starts_at);

-- `reminder_sent_at` no longer says whether a reminder is owed (a moved appointment owes one
-- again): the range query needs every active appointment by start time.
DROP INDEX appointments_due_reminder_idx;
CREATE INDEX appointments_active_starts_at_idx ON appointments (starts_at)
    WHERE status IN ('scheduled', 'confirmed');

-- A store's own words for one locale ('en', 'fr', 'es'); a NULL field uses the default wording.
-- Written by the API (PUT/DELETE /api/v1/stores/{storeId}/reminder-templates/{locale}), validated
-- there; read by the worker for every reminder of the store.
CREATE TABLE reminder_templates (
    store_id      uuid NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    locale        text NOT NULL,
    email_subject text,
    email_body    text,
    sms           text,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, locale)
);
