"""Financial export activities: claim the export, stream each file to the destination, record the
outcome (the SQL: petcare/exports_repository.py)."""

from __future__ import annotations

from activities.exports.activities import ExportActivities

__all__ = ["ExportActivities"]
