"""A schedule as the API shows it: its description, next runs and its recent runs' statuses."""

from __future__ import annotations

from temporalio.client import Client, ScheduleActionExecutionStartWorkflow, ScheduleDescription

from api.models import RunStatus
from api.run_views import status_name
from api.schedule_models import ScheduleAction, ScheduleView
from api.schedule_words import spec_in_words
from api.temporal_calls import CALL_TIMEOUT

NEXT_RUNS = 5


async def schedule_view(client: Client, schedule_id: str) -> ScheduleView:
    description = await client.get_schedule_handle(schedule_id).describe(rpc_timeout=CALL_TIMEOUT)
    statuses = await _statuses(client, schedule_id)
    return ScheduleView(
        id=schedule_id,
        workflow_type=getattr(description.schedule.action, "workflow", None),
        spec=spec_in_words(description.schedule.spec),
        overlap=description.schedule.policy.overlap.name.lower(),
        next_runs=list(description.info.next_action_times[:NEXT_RUNS]),
        paused=description.schedule.state.paused,
        note=description.schedule.state.note or None,
        recent_actions=_actions(description, statuses),
    )


async def _statuses(client: Client, schedule_id: str) -> dict[str, RunStatus]:
    """Status of the schedule's recent runs, from one visibility query."""
    found: dict[str, RunStatus] = {}
    async for execution in client.list_workflows(
        f'TemporalScheduledById="{_quoted(schedule_id)}"', limit=20, page_size=20, rpc_timeout=CALL_TIMEOUT
    ):
        found[execution.run_id] = status_name(execution)
    return found


def _actions(description: ScheduleDescription, statuses: dict[str, RunStatus]) -> list[ScheduleAction]:
    actions = []
    for result in reversed(description.info.recent_actions):  # newest first
        started = result.action if isinstance(result.action, ScheduleActionExecutionStartWorkflow) else None
        run_id = started.first_execution_run_id if started else None
        actions.append(
            ScheduleAction(
                scheduled_at=result.scheduled_at,
                started_at=result.started_at,
                workflow_id=started.workflow_id if started else None,
                run_id=run_id,
                status=statuses.get(run_id) if run_id else None,
            )
        )
    return actions


def _quoted(value: str) -> str:
    # Visibility queries have no parameters: escape what would end the string literal.
    return value.replace("\\", "\\\\").replace('"', '\\"')
