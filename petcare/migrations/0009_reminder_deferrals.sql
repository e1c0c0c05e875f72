-- A reminder whose recipient the provider refused for now (SMTP 450/451/452 on RCPT TO: a full
-- mailbox, greylisting; an SMS gateway answer naming the number as busy) is given back as
-- 'deferred': later runs claim it again like a skipped row, until it is sent, or until its
-- appointment is inside the minimum lead, when it is recorded 'failed' ("deferred until too late").
--
-- state machine:  claimed -> deferred -> claimed -> ... -> sent | failed
ALTER TABLE reminder_deliveries DROP CONSTRAINT reminder_deliveries_state_check;
ALTER TABLE reminder_deliveries ADD CONSTRAINT reminder_deliveries_state_check
    CHECK (state IN ('claimed', 'sent', 'failed', 'skipped', 'deferred'));
-- Each run's first fetch looks for deferrals that ran out of time: few rows, found without a scan.
CREATE INDEX reminder_deliveries_deferred_idx ON reminder_deliveries (appointment_id)
    WHERE state = 'deferred';
