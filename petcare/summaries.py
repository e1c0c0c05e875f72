"""One-line summaries of job runs, shown as each workflow's `static_summary` in the Temporal Web UI."""

from __future__ import annotations

import calendar
import logging
from collections.abc import Sequence
from datetime import date
from uuid import UUID

from petcare import exports_repository
from petcare.db import Connection

log = logging.getLogger(__name__)

# The Web UI shows one line; longer summaries are cut rather than refused by the server.
MAX_LENGTH = 200


def _line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_LENGTH else text[: MAX_LENGTH - 1] + "…"


def period_words(start: date, end: date) -> str:
    """`2026-10` for a whole calendar month, else `2026-10-01..2026-10-15` (both inclusive)."""
    # No date arithmetic: any valid date, 9999-12-31 included, has words.
    last_day = calendar.monthrange(end.year, end.month)[1]
    whole_month = (
        start.day == 1 and end.day == last_day and (start.year, start.month) == (end.year, end.month)
    )
    return f"{start:%Y-%m}" if whole_month else f"{start.isoformat()}..{end.isoformat()}"


def export_summary(start: date, end: date, export_format: str, store_name: str | None) -> str:
    """E.g. "Financial export 2026-10 csv, store Downtown"."""
    where = f"store {store_name}" if store_name else "all stores"
    return _line(f"Financial export {period_words(start, end)} {export_format}, {where}")


async def export_summaries(connection: Connection, export_ids: Sequence[UUID]) -> dict[UUID, str]:
    """The summary of each export, from one query (ids not found are absent).

    A summary is a label: if it cannot be made, the run starts without one rather than the
    request failing (the database's own errors still propagate: the request needs it anyway).
    """
    summaries = {}
    for row in await exports_repository.summary_rows(connection, list(export_ids)):
        try:
            summaries[row["id"]] = export_summary(
                row["period_start"], row["period_end"], row["format"], row["store_name"]
            )
        except Exception:
            log.exception("no Web UI summary for financial export %s", row["id"])
    return summaries


def reminder_summary(trigger: str, window_hours: float) -> str:
    """E.g. "Appointment reminders (manual run): appointments in the next 24 h"."""
    return _line(f"Appointment reminders ({trigger} run): appointments in the next {window_hours:g} h")


def schedule_summary(note: str) -> str:
    """A scheduled run's summary: the schedule's declared note, which says what each run does."""
    return _line(f"Scheduled: {note}")
