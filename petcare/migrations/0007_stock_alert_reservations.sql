-- Stock alerts (issue 5, review): a run reserves the pending alerts it emails, so two runs of one
-- store at the same time (the scheduled one and a manual one) never email the same alert twice.
-- Reports name one workflow execution: the per-store child's id and run id.

ALTER TABLE stock_alerts ADD COLUMN reserved_until timestamptz;

COMMENT ON COLUMN stock_alerts.notified_by IS
    'The reconciliation whose email carries this alert: reserved while notified_at is NULL '
    '(until reserved_until), emailed once notified_at is set.';
COMMENT ON COLUMN stock_alerts.reserved_until IS
    'End of notified_by''s reservation: past it the sending run can no longer be retried, so another '
    'run may take the alert over. NULL once emailed or released.';
COMMENT ON COLUMN stock_alerts.notified_at IS 'When the email carrying this alert was accepted by the SMTP server.';

-- A retry looks up what its first attempt reserved.
CREATE INDEX stock_alerts_reserved_idx ON stock_alerts (notified_by) WHERE notified_at IS NULL;

-- Reports written before held the parent (job run) workflow id beside the child's run id; the
-- child's id is the parent's plus '/store-<storeId>'.
UPDATE stock_reconciliations
   SET workflow_id = workflow_id || '/store-' || store_id
 WHERE workflow_id NOT LIKE '%/store-' || store_id::text;

COMMENT ON COLUMN stock_reconciliations.workflow_id IS
    'Id of the per-store child workflow that made this report: <job run workflow id>/store-<store_id>.';
COMMENT ON COLUMN stock_reconciliations.workflow_run_id IS
    'Run id of that same child workflow execution (with store_id, what makes an activity retry idempotent).';
