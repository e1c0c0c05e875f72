-- Stock reconciliation (issue 5): one report per store and run, its flagged lines, and the
-- alerts derived from them. Only this service writes these tables.

CREATE TABLE stock_reconciliations (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    store_id          uuid NOT NULL REFERENCES stores (id),
    -- The store-local day this reconciliation counts for (the day whose 02:00 it follows).
    business_date     date NOT NULL,
    trigger           text NOT NULL CHECK (trigger IN ('schedule', 'manual')),
    workflow_id       text NOT NULL,
    workflow_run_id   text NOT NULL,
    started_at        timestamptz NOT NULL,
    finished_at       timestamptz NOT NULL,
    products_checked  integer NOT NULL,
    discrepancy_count integer NOT NULL,
    low_stock_count   integer NOT NULL,
    -- The alert email of this run: pending → sending (Message-ID fixed) → sent / nothing / failed.
    alert_status      text NOT NULL DEFAULT 'pending'
                      CHECK (alert_status IN ('pending', 'sending', 'sent', 'nothing', 'no_recipient', 'failed')),
    alerts_diffed_at  timestamptz,
    alert_message_id  text,
    alert_recipient   text,
    alert_sent_at     timestamptz,
    alert_error       text,
    -- An activity retry finds its own report again instead of writing a second one.
    UNIQUE (workflow_run_id, store_id)
);
-- At most one scheduled reconciliation per store and local day, whatever races the schedule has.
CREATE UNIQUE INDEX stock_reconciliations_daily_idx ON stock_reconciliations (store_id, business_date)
    WHERE trigger = 'schedule';
CREATE INDEX stock_reconciliations_store_latest_idx ON stock_reconciliations (store_id, finished_at DESC);

-- Only products with a discrepancy or low stock get a line; products_checked counts the rest.
CREATE TABLE stock_reconciliation_lines (
    reconciliation_id uuid NOT NULL REFERENCES stock_reconciliations (id) ON DELETE CASCADE,
    product_id        uuid NOT NULL REFERENCES products (id),
    sku               text NOT NULL,
    name              text NOT NULL,
    recorded          integer NOT NULL,
    computed          bigint NOT NULL,
    threshold         integer NOT NULL,
    discrepancy       boolean NOT NULL,
    low_stock         boolean NOT NULL,
    PRIMARY KEY (reconciliation_id, product_id)
);

-- One row per (product, kind) episode: opened when first seen or when its numbers change,
-- resolved when it recovers or is superseded. A discrepancy alert carries recorded/computed,
-- a low-stock alert computed/threshold; the unused column stays NULL.
CREATE TABLE stock_alerts (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    store_id           uuid NOT NULL REFERENCES stores (id),
    product_id         uuid NOT NULL REFERENCES products (id),
    kind               text NOT NULL CHECK (kind IN ('discrepancy', 'low_stock')),
    recorded           integer,
    computed           bigint NOT NULL,
    threshold          integer,
    opened_at          timestamptz NOT NULL DEFAULT now(),
    opened_by          uuid NOT NULL REFERENCES stock_reconciliations (id),
    notified_at        timestamptz,
    notified_by        uuid REFERENCES stock_reconciliations (id),
    resolved_at        timestamptz,
    resolved_by        uuid REFERENCES stock_reconciliations (id),
    resolution         text CHECK (resolution IN ('recovered', 'changed'))
);
CREATE UNIQUE INDEX stock_alerts_open_idx ON stock_alerts (store_id, product_id, kind) WHERE resolved_at IS NULL;
CREATE INDEX stock_alerts_product_idx ON stock_alerts (product_id);
