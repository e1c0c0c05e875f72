-- Exports as accountants use them: where each export came from, one monthly export per store and
-- month, idempotent API requests, newest-first lists, and one completion notice per run.

-- Written by this service; the main backend names only its own columns, so it gets 'backend'.
ALTER TABLE financial_exports
    ADD COLUMN IF NOT EXISTS origin text NOT NULL DEFAULT 'backend'
        CHECK (origin IN ('api', 'backend', 'monthly'));

-- The monthly close creates its exports with INSERT ... ON CONFLICT on this key: a second trigger
-- in the same month (or a retried activity) finds the row instead of adding one.
CREATE UNIQUE INDEX IF NOT EXISTS financial_exports_monthly_key
    ON financial_exports (store_id, period_start, period_end, format)
    WHERE origin = 'monthly';

-- The list, newest first, paged by (requested_at, id).
CREATE INDEX IF NOT EXISTS financial_exports_requested_idx ON financial_exports (requested_at DESC, id DESC);

-- The stock reports list pages by (finished_at, id), newest first.
CREATE INDEX IF NOT EXISTS stock_reconciliations_finished_idx
    ON stock_reconciliations (finished_at DESC, id DESC);

-- POST /api/v1/financial-exports with an Idempotency-Key: the key, a digest of the request body,
-- and the export it created. The key is the primary key, so of two requests at once the second
-- waits for the first's transaction and then finds its export. Kept at least 24 hours.
CREATE TABLE IF NOT EXISTS financial_export_requests (
    idempotency_key text PRIMARY KEY,
    request_digest  text NOT NULL,
    export_id       uuid NOT NULL REFERENCES financial_exports (id) ON DELETE CASCADE,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS financial_export_requests_created_idx ON financial_export_requests (created_at);

-- One completion notice per export run: claimed before the send, `sent_at` set after it, so a
-- retried activity never sends a second one (like ops_alerts).
CREATE TABLE IF NOT EXISTS financial_export_notices (
    run_id     text PRIMARY KEY,
    export_id  uuid NOT NULL REFERENCES financial_exports (id) ON DELETE CASCADE,
    recipient  text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at    timestamptz
);
