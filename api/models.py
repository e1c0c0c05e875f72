"""Response bodies of the API's own routes, camelCase on the wire, and the base class for the jobs'."""

from __future__ import annotations

from datetime import datetime
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

# Temporal's own names (as in visibility queries: ExecutionStatus="Running"), so operators can
# paste them into `temporal workflow list --query` and the Web UI.
RunStatus = Literal["Running", "Completed", "Failed", "Canceled", "Terminated", "ContinuedAsNew", "TimedOut"]


class CamelModel(BaseModel):
    """Snake case in Python, camelCase in JSON; both accepted on input."""

    # Every field is always sent, so the schema says so; extra fields stay allowed so that
    # adding one later does not break clients that validate answers.
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, json_schema_serialization_defaults_required=True
    )


class CamelRequest(CamelModel):
    """A request body: an unknown field is a 422 naming it, not silently ignored (typos)."""

    model_config = ConfigDict(extra="forbid")


class ErrorBody(CamelModel):
    code: str
    message: str


class ErrorResponse(CamelModel):
    error: ErrorBody


class LastRun(CamelModel):
    workflow_id: str
    run_id: str
    status: RunStatus
    started_at: datetime
    closed_at: datetime | None


class LastFailure(CamelModel):
    """The latest run of a job that failed or timed out, and why."""

    workflow_id: str
    run_id: str
    status: RunStatus
    closed_at: datetime | None
    message: str
    type: str


class WorkerHealth(CamelModel):
    name: str  # the old NestJS worker name, e.g. AppointmentReminderWorker
    is_running: bool
    last_run: LastRun | None
    next_run_at: datetime | None  # null when the job has no schedule
    schedule_paused: bool | None
    last_failure: LastFailure | None = None


class ServiceStatus(CamelModel):
    status: Literal["ok", "unreachable"]


class HealthResponse(CamelModel):
    workers: list[WorkerHealth]
    temporal: ServiceStatus
    database: ServiceStatus

    @property
    def healthy(self) -> bool:
        return self.temporal.status == "ok" and self.database.status == "ok"

    @cached_property
    def json_text(self) -> str:
        # Rendered once per probe: one cached answer is sent to many requests (see api/health.py).
        return self.model_dump_json(by_alias=True)


class RunFailure(CamelModel):
    message: str
    type: str


class RunResponse(CamelModel):
    workflow_id: str
    run_id: str
    type: str
    status: RunStatus
    started_at: datetime
    closed_at: datetime | None
    result: Any = None  # the workflow's return value as JSON, once it completed
    failure: RunFailure | None = None
