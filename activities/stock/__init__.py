"""Stock reconciliation side effects: due stores, the set-based report SQL, alerts and their email."""

from __future__ import annotations

from activities.stock.activities import StockActivities

__all__ = ["StockActivities"]
