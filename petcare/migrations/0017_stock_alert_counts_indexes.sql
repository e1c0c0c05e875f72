-- petcare: no-transaction
-- The counts a reconciliation reports (petcare/stock_repository.py COUNTS: the alerts it opened and
-- the ones it resolved) read the alerts by their run. Without these indexes that is a scan of every
-- alert ever written, for every store, every night: a cost that grows with the history instead of
-- with the night's changes. Resolved alerts only for resolved_by: open ones have none.
-- Concurrently: workers of the previous release may be writing alerts while this runs.
CREATE INDEX CONCURRENTLY IF NOT EXISTS stock_alerts_opened_by_idx ON stock_alerts (opened_by);
CREATE INDEX CONCURRENTLY IF NOT EXISTS stock_alerts_resolved_by_idx
    ON stock_alerts (resolved_by) WHERE resolved_by IS NOT NULL;
