-- Monitoring: failure alerts also go to PETCARE_OPS_WEBHOOK_URL, each channel marked sent on its
-- own, so a retry after one channel failed sends only the other (sent_at stays the email's mark).
-- The key (run_id) is a failed run's id, or `stock-store/<storeId>/<local date>` for a store a stock
-- run could not reconcile: one alert per store and local day. Only this service writes the table.
ALTER TABLE ops_alerts ADD COLUMN IF NOT EXISTS webhook_sent_at timestamptz;
COMMENT ON COLUMN ops_alerts.run_id IS 'the alert''s key: a failed run id, or stock-store/<storeId>/<local date>';
COMMENT ON COLUMN ops_alerts.sent_at IS 'when the alert email was accepted by the SMTP server';
COMMENT ON COLUMN ops_alerts.webhook_sent_at IS 'when PETCARE_OPS_WEBHOOK_URL accepted the alert';
