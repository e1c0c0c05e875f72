"""Bodies and query of the financial export routes (requests validated here, answers camelCase)."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any
from uuid import UUID

from pydantic import Field, field_validator, model_validator

from api.models import CamelModel, CamelRequest
from api.starts import StartedRun
from petcare.models.exports import ExportedFile, ExportFormat, ExportStatus

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Business periods: anything outside is a typo (0001, 9999), and such dates break arithmetic downstream.
EARLIEST = date(2000, 1, 1)
LATEST = date(2999, 12, 31)
_PERIOD_DAY = f"an ISO date (YYYY-MM-DD) from {EARLIEST} to {LATEST}"


class ExportRequest(CamelRequest):
    period_start: date = Field(description=f"first day, {_PERIOD_DAY}")
    # Inclusive; both are calendar days in each store's own time zone.
    period_end: date = Field(description=f"last day (inclusive), {_PERIOD_DAY}")
    format: ExportFormat
    store_id: UUID | None = None  # absent: every store

    @field_validator("period_start", "period_end", mode="before")
    @classmethod
    def _iso_date(cls, value: Any) -> Any:
        # pydantic would also take a number of seconds; only an ISO date (YYYY-MM-DD) is meant here.
        if not isinstance(value, str) or not _ISO_DATE.match(value):
            raise ValueError("must be an ISO date, YYYY-MM-DD")
        return value

    @field_validator("period_start", "period_end")
    @classmethod
    def _in_range(cls, value: date) -> date:
        if not EARLIEST <= value <= LATEST:
            raise ValueError(f"must be from {EARLIEST} to {LATEST}")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> ExportRequest:
        if self.period_start > self.period_end:
            raise ValueError("periodStart must not be after periodEnd")
        return self


class ExportAccepted(CamelModel):
    id: UUID
    status: ExportStatus
    workflow_id: str


class ExportView(CamelModel):
    id: UUID
    status: ExportStatus
    store_id: UUID | None
    period_start: date
    period_end: date
    format: ExportFormat
    files: list[ExportedFile]
    error: str | None
    requested_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    workflow_id: str | None


class ProcessQuery(CamelRequest):
    force: bool = False  # upload a completed export again


class ProcessAccepted(StartedRun):
    export_id: UUID


class TriggerAccepted(CamelModel):
    started: int  # new runs; the others were running already
    exports: list[ProcessAccepted]
