"""Financial export models shared by its workflow, activities and the API (I/O-free)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field

from petcare.jobs import FINANCIAL_EXPORT
from petcare.models.base import CamelModel

ExportFormat = Literal["csv", "json"]
ExportStatus = Literal["pending", "processing", "completed", "failed"]
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
