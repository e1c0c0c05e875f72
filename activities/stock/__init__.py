"""Stock reconciliation side effects: due stores, the per-store report, alerts and their email
(the SQL: petcare/stock_repository.py)."""

from __future__ import annotations

from activities.stock.activities import StockActivities

__all__ = ["StockActivities"]
