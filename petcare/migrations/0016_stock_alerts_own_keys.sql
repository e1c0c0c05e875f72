-- Stock alerts (issue 15): the foreign keys of stock_alerts that only check this service's own
-- writes go. Each costs a lookup per alert written: opening the 20 000 alerts of a store whose every
-- product is flagged took 530 ms with them, 350 ms without (PostgreSQL 15).
--
-- opened_by, notified_by, resolved_by: reports are never deleted (nothing deletes them; their lines
-- cascade from them), and each value written is the report whose row the alert transaction holds
-- locked (FOR UPDATE, petcare/stock_repository.py READ_RUN), so it exists at commit.
-- store_id: an alert's store is its opening report's (stock_reconciliations.store_id keeps its key)
-- and its product's (products.store_id keeps its key).
-- product_id keeps its key: products belong to the main backend, which deletes them; the key
-- refuses deleting a product an alert names, as the report lines' key does.
ALTER TABLE stock_alerts
    DROP CONSTRAINT stock_alerts_store_id_fkey,
    DROP CONSTRAINT stock_alerts_opened_by_fkey,
    DROP CONSTRAINT stock_alerts_notified_by_fkey,
    DROP CONSTRAINT stock_alerts_resolved_by_fkey;
