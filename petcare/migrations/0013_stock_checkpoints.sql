-- Incremental stock reconciliation (issue 15): per-product sums of the movements up to a position,
-- so a night's aggregate reads only the movements added since, plus one row per product.
-- Only this service writes these tables; stock_movements is the backend's append-only ledger.

-- One row: every movement with id <= upto is summed in stock_checkpoint_totals. The candidate is
-- the highest id an earlier run saw, with the xmax of that run's snapshot: once every transaction
-- below that xmax has ended (pg_snapshot_xmin of a later snapshot reaches it), no movement with
-- id <= candidate_upto can still commit, whatever order its writers commit in, and the next run
-- folds them in.
CREATE TABLE stock_checkpoint (
    singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    upto           bigint NOT NULL DEFAULT 0,
    candidate_upto bigint,
    candidate_xmax xid8,
    advanced_at    timestamptz
);
INSERT INTO stock_checkpoint DEFAULT VALUES;

CREATE TABLE stock_checkpoint_totals (
    product_id uuid PRIMARY KEY REFERENCES products (id) ON DELETE CASCADE,
    total      bigint NOT NULL
);

-- The checkpoint position a report read (NULL: a full recompute over every movement).
ALTER TABLE stock_reconciliations ADD COLUMN checkpoint_upto bigint;
