"""Workflow versioning: recorded histories replay on the current code, and a change that would break
runs in flight fails that replay unless it is behind `workflow.patched` (docs/versioning.md)."""

from __future__ import annotations

import json
import uuid

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, Worker
from temporalio.workflow import NondeterminismError, _Definition

from petcare.models.reminders import (
    DuePage,
    FetchDuePage,
    PlannedCounts,
    PreviewRequest,
    ReminderPreview,
    ReminderRunInput,
)
from petcare.temporal_client import PetcarePlugin
from tests.histories import HISTORIES, RecordedHistory, recorded_histories
from tests.support.workflow_variants import (
    PREVIEW_PATCH,
    PreviewFirst,
    PreviewFirstDeprecated,
    PreviewFirstPatched,
)
from workflows import WORKFLOWS
from workflows.reminders import AppointmentReminderWorkflow

RECORDED = recorded_histories()
REMINDER_HISTORIES = [entry for entry in RECORDED if entry.workflow_type == "AppointmentReminderWorkflow"]
# Runs that reached the workflow's code (a run failed on its input never did).
REMINDER_RUNS = [entry for entry in REMINDER_HISTORIES if entry.outcome != "failed"]


def replayer(reminder_workflow: type = AppointmentReminderWorkflow, *, as_worker: bool = True) -> Replayer:
    """A replayer configured as the worker is, through the same plugin (converter, interceptors,
    failure types); `as_worker=False` gives one with the converter alone, as if built by hand."""
    workflows = [reminder_workflow if w is AppointmentReminderWorkflow else w for w in WORKFLOWS]
    if not as_worker:
        return Replayer(workflows=workflows, data_converter=pydantic_data_converter)
    return Replayer(workflows=workflows, plugins=[PetcarePlugin()])


@pytest.mark.parametrize("recorded", RECORDED, ids=[entry.file for entry in RECORDED])
async def test_recorded_history_replays_on_the_current_code(recorded: RecordedHistory) -> None:
    result = await replayer().replay_workflow(recorded.history(), raise_on_replay_failure=False)
    assert result.replay_failure is None, (
        f"{recorded.file} ({recorded.scenario}) no longer replays: a change to "
        f"{recorded.workflow_type} breaks runs in flight; put it behind workflow.patched() "
        "(docs/versioning.md)"
    )


def test_every_workflow_has_recorded_histories_and_every_file_is_indexed() -> None:
    files = {path.name for path in HISTORIES.glob("*.json")} - {"index.json"}
    assert files == {entry.file for entry in RECORDED}
    registered = {_name(workflow_class) for workflow_class in WORKFLOWS}
    assert registered <= {entry.workflow_type for entry in RECORDED}
    assert {"completed", "continued-as-new", "failed"} <= {entry.outcome for entry in RECORDED}


async def test_a_failed_run_replays_only_with_the_worker_plugin() -> None:
    # The alert interceptor schedules an activity when a run fails; without it the replay misses
    # that command: the replayer must be built exactly like the worker, by the same plugin.
    [failed] = [e for e in RECORDED if e.workflow_type == "FinancialExportWorkflow" and e.outcome == "failed"]
    await replayer().replay_workflow(failed.history())
    with pytest.raises(NondeterminismError):
        await replayer(as_worker=False).replay_workflow(failed.history())


@pytest.mark.parametrize("recorded", REMINDER_RUNS, ids=[entry.file for entry in REMINDER_RUNS])
async def test_a_change_without_a_patch_breaks_the_runs_in_flight(recorded: RecordedHistory) -> None:
    with pytest.raises(NondeterminismError):
        await replayer(PreviewFirst).replay_workflow(recorded.history())


async def test_the_change_behind_patched_replays_old_runs_and_marks_new_ones(
    dev_client: Client, task_queue: str
) -> None:
    for recorded in REMINDER_HISTORIES:
        await replayer(PreviewFirstPatched).replay_workflow(recorded.history())

    new_run = await run_live(dev_client, task_queue, PreviewFirstPatched)
    assert patch_markers(new_run) == [(PREVIEW_PATCH, False)]
    assert PREVIEW_ACTIVITY in activity_types(new_run)
    await replayer(PreviewFirstPatched).replay_workflow(new_run)


async def test_deprecating_then_removing_the_patch(dev_client: Client, task_queue: str) -> None:
    patched_run = await run_live(dev_client, task_queue, PreviewFirstPatched)
    # Step 2 replays runs started by step 1 ...
    await replayer(PreviewFirstDeprecated).replay_workflow(patched_run)
    # ... but not runs started before step 1: deploy it only once those have all closed.
    old_run = next(entry for entry in REMINDER_RUNS if entry.outcome == "completed")
    with pytest.raises(NondeterminismError):
        await replayer(PreviewFirstDeprecated).replay_workflow(old_run.history())

    # Step 3 (the patch call gone) replays runs started by step 2, whose marker says "deprecated" ...
    deprecated_run = await run_live(dev_client, task_queue, PreviewFirstDeprecated)
    assert patch_markers(deprecated_run) == [(PREVIEW_PATCH, True)]
    await replayer(PreviewFirst).replay_workflow(deprecated_run)
    # ... but not runs started by step 1: deploy it only once those have all closed.
    with pytest.raises(NondeterminismError, match="Non-deprecated patch marker"):
        await replayer(PreviewFirst).replay_workflow(patched_run)


PREVIEW_ACTIVITY = "reminders.preview"


@activity.defn(name="reminders.fetch_due_page")
async def nothing_due(request: FetchDuePage) -> DuePage:
    return DuePage(appointment_ids=[], next_cursor=None)


@activity.defn(name=PREVIEW_ACTIVITY)
async def empty_preview(request: PreviewRequest) -> ReminderPreview:
    return ReminderPreview(as_of=request.as_of, counts=PlannedCounts(), messages=[])


async def run_live(client: Client, task_queue: str, variant: type) -> WorkflowHistory:
    """One run of a variant on the dev server (stand-in activities: only the commands matter here)."""
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[variant],
        activities=[nothing_due, empty_preview],
        plugins=[PetcarePlugin()],
    ):
        handle = await client.start_workflow(
            "AppointmentReminderWorkflow",
            ReminderRunInput(),
            id=f"versioning-{uuid.uuid4().hex[:8]}",
            task_queue=task_queue,
        )
        await handle.result()
    return await handle.fetch_history()


def patch_markers(history: WorkflowHistory) -> list[tuple[str, bool]]:
    """(patch id, deprecated) of each marker that `patched` / `deprecate_patch` recorded."""
    markers = []
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            data = json.loads(event.marker_recorded_event_attributes.details["patch-data"].payloads[0].data)
            markers.append((data["id"], data["deprecated"]))
    return markers


def activity_types(history: WorkflowHistory) -> list[str]:
    return [
        event.activity_task_scheduled_event_attributes.activity_type.name
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]


def _name(workflow_class: type) -> str | None:
    return _Definition.must_from_class(workflow_class).name
