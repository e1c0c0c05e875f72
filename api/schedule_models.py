"""Bodies of the schedule routes: what a schedule looks like over HTTP, and the validated requests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import AwareDatetime, Field, field_validator, model_validator

from api.models import CamelModel, CamelRequest, RunStatus

# A backfill starts one run per missed time: a year of hourly ticks is a mistake, not a repair.
MAX_BACKFILL = timedelta(days=31)
# Times a schedule can have run at: also keeps Temporal's timestamps (protobuf) from overflowing.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(3000, 1, 1, tzinfo=UTC)
Overlap = Literal["skip", "buffer_one", "buffer_all", "cancel_other", "terminate_other", "allow_all"]


class ScheduleAction(CamelModel):
    scheduled_at: datetime
    started_at: datetime
    workflow_id: str | None
    run_id: str | None
    status: RunStatus | None  # null once visibility no longer has the run


class ScheduleView(CamelModel):
    id: str
    workflow_type: str | None
    spec: str  # in words, e.g. "every 1h at +5m"
    overlap: Overlap
    next_runs: list[datetime]
    paused: bool
    note: str | None
    recent_actions: list[ScheduleAction]


class ScheduleList(CamelModel):
    schedules: list[ScheduleView]


class NoteRequest(CamelRequest):
    note: str | None = Field(default=None, max_length=500)


class TriggerRequest(CamelRequest):
    overlap: Overlap | None = None  # the schedule's own policy when absent


class TriggerAccepted(CamelModel):
    schedule_id: str
    triggered: bool


class BackfillRequest(CamelRequest):
    start: AwareDatetime
    end: AwareDatetime
    overlap: Overlap | None = None

    @field_validator("start", "end")
    @classmethod
    def _in_range(cls, value: datetime) -> datetime:
        if not EARLIEST <= value < LATEST:
            raise ValueError("must be in the years 2000 to 2999 (UTC)")
        return value

    @model_validator(mode="after")
    def _bounded(self) -> BackfillRequest:
        if self.start >= self.end:
            raise ValueError("start must be before end")
        if self.end - self.start > MAX_BACKFILL:
            raise ValueError(f"the range may span at most {MAX_BACKFILL.days} days")
        return self


class BackfillAccepted(CamelModel):
    schedule_id: str
    start: datetime
    end: datetime
    overlap: Overlap | None
