"""Financial export activities: claim the export, stream each file to the destination, record the
outcome, send the completion notice; the monthly close's creation and starts of the month's
exports (the SQL: petcare/exports_repository.py)."""

from __future__ import annotations

from activities.exports.activities import ExportActivities
from activities.exports.monthly import MonthlyExportActivities
from activities.exports.notices import ExportNoticeActivities

__all__ = ["ExportActivities", "ExportNoticeActivities", "MonthlyExportActivities"]
