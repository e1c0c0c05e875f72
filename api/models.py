"""Response bodies of the API's own routes, camelCase on the wire, and the base class for the jobs'."""

from __future__ import annotations

from datetime import datetime
from functools import cached_property
from typing import Any, Literal

from pydantic import ConfigDict

from petcare.models.base import CamelModel as CamelModel  # the one definition, re-exported

# Temporal's own names (as in visibility queries: ExecutionStatus="Running"), so operators can
# paste them into `temporal workflow list --query` and the Web UI.
RunStatus = Literal["Running", "Completed", "Failed", "Canceled", "Terminated", "ContinuedAsNew", "TimedOut"]


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
    """The latest run of a job that failed or timed out, and the error's type.

    No message: health needs no token, and a message can name hosts, users and paths. The full
    failure is on the authenticated `GET /api/v1/workers/runs/{workflowId}`.
    """

    workflow_id: str
    run_id: str
    status: RunStatus
    closed_at: datetime | None
    type: str


class WorkerHealth(CamelModel):
    name: str  # the old NestJS worker name, e.g. AppointmentReminderWorker
    is_running: bool
    last_run: LastRun | None
    next_run_at: datetime | None  # null when the job has no schedule
    schedule_paused: bool | None
    last_failure: LastFailure | None = None


class ServiceStatus(CamelModel):
    # "error": the check failed for another reason than connectivity (a bug or a misconfiguration,
    # logged with its traceback), so it is not mistaken for an outage.
    status: Literal["ok", "unreachable", "error"]


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
