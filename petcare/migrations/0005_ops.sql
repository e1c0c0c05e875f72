-- Operations: one row per failed job run that was alerted, so a retried alert activity never
-- sends a second email. Only this service writes it.
CREATE TABLE IF NOT EXISTS ops_alerts (
    run_id      text PRIMARY KEY,
    workflow_id text NOT NULL,
    job         text NOT NULL,
    error       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz
);
