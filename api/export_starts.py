"""Starting an export's workflow from the API: its fixed id, search attributes and Web UI summary."""

from __future__ import annotations

from uuid import UUID

from temporalio.client import Client
from temporalio.common import SearchAttributePair

from api.export_models import ProcessAccepted
from api.starts import start_or_join
from petcare.jobs import EXPORT_ATTRIBUTE, FINANCIAL_EXPORT, JOB_ATTRIBUTE, STORE_ATTRIBUTE
from petcare.models.exports import FinancialExportInput, export_workflow_id


async def start_export(
    client: Client,
    task_queue: str,
    export_id: UUID,
    store_id: UUID | None,
    *,
    force: bool = False,
    summary: str | None = None,
) -> ProcessAccepted:
    """Start the export's workflow; if it is running, return that run instead (never a second one).

    A closed run (completed, failed, cancelled, terminated, timed out) does not block a new one:
    that is how an export left `processing` by a terminated run is recovered.
    """
    attributes = [
        SearchAttributePair(JOB_ATTRIBUTE, FINANCIAL_EXPORT.key),
        SearchAttributePair(EXPORT_ATTRIBUTE, str(export_id)),
    ]
    if store_id is not None:
        attributes.append(SearchAttributePair(STORE_ATTRIBUTE, str(store_id)))
    run = await start_or_join(
        client,
        FINANCIAL_EXPORT.workflow_type,
        FinancialExportInput(export_id=export_id, force=force),
        workflow_id=export_workflow_id(export_id),
        task_queue=task_queue,
        attributes=attributes,
        summary=summary,
    )
    return ProcessAccepted(export_id=export_id, **run.model_dump())
