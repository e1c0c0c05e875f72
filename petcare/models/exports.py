"""Financial export models shared by its workflow, activities and the API (I/O-free)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Literal
from uuid import UUID
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field
from temporalio.common import SearchAttributePair

from petcare.jobs import EXPORT_ATTRIBUTE, FINANCIAL_EXPORT, JOB_ATTRIBUTE, STORE_ATTRIBUTE
from petcare.models.base import CamelModel

ExportFormat = Literal["csv", "json"]
ExportStatus = Literal["pending", "processing", "completed", "failed"]
# Who asked for the export: the HTTP API, the main backend (the column's default), the monthly close.
ExportOrigin = Literal["api", "backend", "monthly"]
FileKind = Literal["invoices", "transactions", "credit_notes", "manifest"]
# The data files of every export, in the order they are written and listed in the manifest.
DATA_KINDS: tuple[FileKind, ...] = ("invoices", "transactions", "credit_notes")
MANIFEST_NAME = "manifest.json"
# What a file of each format is called: CSV with a header row, or JSON lines (one object a line).
EXTENSIONS: dict[ExportFormat, str] = {"csv": "csv", "json": "jsonl"}


EXPORT_WORKFLOW_ID_PREFIX = f"{FINANCIAL_EXPORT.key}-"


def export_workflow_id(export_id: UUID) -> str:
    """The one workflow id of an export: two requests for it can never run at once."""
    return f"{EXPORT_WORKFLOW_ID_PREFIX}{export_id}"


def export_run_attributes(export_id: UUID, store_id: UUID | None) -> list[SearchAttributePair[str]]:
    """The search attributes of an export's run, whoever starts it (API or the monthly close)."""
    attributes = [
        SearchAttributePair(JOB_ATTRIBUTE, FINANCIAL_EXPORT.key),
        SearchAttributePair(EXPORT_ATTRIBUTE, str(export_id)),
    ]
    if store_id is not None:
        attributes.append(SearchAttributePair(STORE_ATTRIBUTE, str(store_id)))
    return attributes


def upload_task_queue(task_queue: str) -> str:
    """The task queue of an export's uploads, beside the one its workflow runs on: a worker polls
    it with only as many slots as its upload pool has connections, so uploads wait in Temporal's
    queue rather than in a worker's slots or pool (docs/production.md, "Database connections")."""
    return f"{task_queue}-exports"


def file_name(kind: FileKind, export_format: ExportFormat) -> str:
    return MANIFEST_NAME if kind == "manifest" else f"{kind}.{EXTENSIONS[export_format]}"


def export_directory(period_start: date, period_end: date, export_id: UUID) -> str:
    """Where an export's files go, relative to the destination root: one directory per period."""
    return f"{period_start.isoformat()}_{period_end.isoformat()}/{export_id}"


class ExportedFile(CamelModel):
    """One file as uploaded: what the manifest, the files column and the API list."""

    name: str
    kind: FileKind
    # Data rows (CSV records without the header, JSON lines); 0 for the manifest, which lists files.
    rows: int = Field(ge=0)
    bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    remote_path: str  # the final path at the destination (under PETCARE_SFTP__REMOTE_DIR or local_dir)


class FinancialExportInput(BaseModel):
    """`force` uploads a completed export again; without it a completed export is left alone."""

    export_id: UUID
    force: bool = False


class BeginRequest(BaseModel):
    export_id: UUID
    force: bool
    workflow_id: str


class ExportPlan(BaseModel):
    """The claimed export: what to write, or `skip` when it was already completed."""

    export_id: UUID
    store_id: UUID | None
    period_start: date
    period_end: date
    format: ExportFormat
    directory: str
    skip: bool = False
    files: list[ExportedFile] = Field(default_factory=list)


class FileRequest(BaseModel):
    """Write one data file of a plan (query and upload in one go)."""

    plan: ExportPlan
    kind: FileKind


class ManifestRequest(BaseModel):
    plan: ExportPlan
    files: list[ExportedFile]
    generated_at: datetime  # workflow.now(): a retried upload writes the same bytes


class CompleteRequest(BaseModel):
    export_id: UUID
    files: list[ExportedFile]


class FailRequest(BaseModel):
    export_id: UUID
    error: str


class FinancialExportResult(BaseModel):
    export_id: UUID
    status: ExportStatus
    skipped: bool = False  # completed before, not uploaded again (no `force`)
    files: list[ExportedFile] = Field(default_factory=list)


# --- The completion notice ---


class NoticeRequest(BaseModel):
    """One completed run's notice; `run_id` keys the sent record, so retries send nothing more."""

    export_id: UUID
    run_id: str
    files: list[ExportedFile]


class NoticeOutcome(BaseModel):
    sent: bool
    reason: str  # "sent", "already sent", "no recipient"
    recipient: str | None = None


# --- The monthly close ---


def previous_month(moment: datetime, zone: ZoneInfo) -> tuple[date, date]:
    """The calendar month before the one `moment` falls in, in `zone`: its first and last day."""
    first_of_this_month = moment.astimezone(zone).date().replace(day=1)
    last = first_of_this_month - timedelta(days=1)
    return last.replace(day=1), last


class MonthlyExportInput(BaseModel):
    """The schedule's argument. `as_of` (default: the run's scheduled time) picks the month; the
    others carry a run that continued as new."""

    format: ExportFormat = "csv"
    as_of: datetime | None = None
    after_store_id: UUID | None = None
    totals: MonthlyExportResult | None = None


class MonthlyExportsRequest(BaseModel):
    """Create the month's exports of the next page of stores (by id, after `after_store_id`)."""

    as_of: datetime
    format: ExportFormat
    after_store_id: UUID | None = None
    limit: int = Field(default=200, ge=1, le=1000)


class MonthlyExport(BaseModel):
    export_id: UUID
    store_id: UUID
    period_start: date
    period_end: date
    status: ExportStatus
    created: bool  # False: an earlier trigger of the same month made it


class MonthlyExportsPage(BaseModel):
    exports: list[MonthlyExport]
    next_after_store_id: UUID | None = None  # None: that was the last page


class StartExportsRequest(BaseModel):
    exports: list[MonthlyExport]


class StartedExports(BaseModel):
    started: int = 0  # new runs
    running: int = 0  # a run was already going (joined)
    done: int = 0  # completed before: not started again


class MonthlyExportResult(BaseModel):
    as_of: datetime | None = None
    stores: int = 0
    created: int = 0  # new export rows; the others existed from an earlier trigger of the month
    started: int = 0
    running: int = 0
    done: int = 0

    def add(self, page: MonthlyExportsPage, starts: StartedExports) -> MonthlyExportResult:
        return self.model_copy(
            update={
                "stores": self.stores + len(page.exports),
                "created": self.created + sum(export.created for export in page.exports),
                "started": self.started + starts.started,
                "running": self.running + starts.running,
                "done": self.done + starts.done,
            }
        )


MonthlyExportInput.model_rebuild()
