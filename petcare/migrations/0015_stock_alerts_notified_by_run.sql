-- Stock alerts (issue 15): an alert is emailed when the run that holds it has sent its email
-- (notified_by's stock_reconciliations.alert_status = 'sent'), so recording a send writes one
-- report row instead of every alert row it carried (20 000 in a store whose every product is
-- flagged). Rows emailed before this migration carry notified_at too, written in the same
-- statement that set their run to 'sent': both readings agree on them, no backfill is needed.
--
-- During a rollout, workers of the release before read notified_at: a new worker's sent alerts look
-- reserved to them (reserved_until, 35 minutes), so they email nothing twice meanwhile.
-- Rolling back to that release: first run
--   UPDATE stock_alerts a SET notified_at = r.alert_sent_at, reserved_until = NULL
--     FROM stock_reconciliations r
--    WHERE r.id = a.notified_by AND r.alert_status = 'sent' AND a.notified_at IS NULL;
-- or they email the open alerts sent since once more, when those alerts' reservations lapse.

COMMENT ON COLUMN stock_alerts.notified_by IS
    'The reconciliation whose email carries this alert: emailed once that run''s alert_status is '
    '''sent''; before, reserved for it until reserved_until. NULL: no run holds it.';
COMMENT ON COLUMN stock_alerts.reserved_until IS
    'End of notified_by''s reservation while its email is not sent: past it the sending run can no '
    'longer be retried, so another run may take the alert over. Kept once sent (the run''s status '
    'then says the alert was emailed); NULL once released.';
COMMENT ON COLUMN stock_alerts.notified_at IS
    'No longer written (migration 0015): whether and when an alert was emailed is its notified_by '
    'run''s alert_status and alert_sent_at. Set on alerts emailed before.';

-- A run's alerts, looked up by notified_by alone now: the partial index of 0007 (WHERE notified_at
-- IS NULL) would need that predicate in every query, and holds every row written from now on anyway.
CREATE INDEX stock_alerts_notified_by_idx ON stock_alerts (notified_by);
DROP INDEX stock_alerts_reserved_idx;
