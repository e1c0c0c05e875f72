"""The schedule registry: every Temporal Schedule declared here, applied create-or-update."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from pydantic import BaseModel
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleIntervalSpec,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.client import ScheduleOverlapPolicy as Overlap
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode

from petcare.alerts import ALERTED_WORKFLOW_TYPES, TimedOutSweep
from petcare.config import Settings
from petcare.jobs import (
    APPOINTMENT_REMINDER,
    JOB_ATTRIBUTE,
    MONTHLY_FINANCIAL_EXPORT,
    OPS_ALERT_SWEEP,
    STOCK_RECONCILIATION,
    Job,
)
from petcare.models.exports import MonthlyExportInput
from petcare.models.reminders import ReminderRunInput
from petcare.models.stock import StockReconciliationInput
from petcare.summaries import schedule_summary

log = logging.getLogger(__name__)

# Kept in the scheduled workflows' memo: lets `apply` see whether a declaration changed.
FINGERPRINT_MEMO_KEY = "petcareScheduleFingerprint"

Outcome = Literal["created", "updated", "unchanged", "deleted", "absent"]


@dataclass(frozen=True)
class ScheduleDeclaration:
    """One schedule: which job runs, with what input, when, and what happens to overlaps."""

    schedule_id: str
    job: Job
    argument: BaseModel
    spec: ScheduleSpec
    note: str
    catchup_window: timedelta = timedelta(hours=12)
    overlap: Overlap = Overlap.SKIP
    execution_timeout: timedelta | None = None
    extra_memo: dict[str, str] = field(default_factory=dict)
    # Switched off by a setting: `apply` deletes the schedule (and creates it again once on).
    enabled: bool = True

    def fingerprint(self, task_queue: str) -> str:
        described = {
            "job": dataclasses.asdict(self.job),
            "argument": self.argument.model_dump(mode="json"),
            "spec": repr(self.spec),
            "catchup": self.catchup_window.total_seconds(),
            "overlap": self.overlap.name,
            "timeout": self.execution_timeout.total_seconds() if self.execution_timeout else None,
            "task_queue": task_queue,
            "note": self.note,
            "summary": schedule_summary(self.note),
        }
        return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16]

    def to_schedule(self, task_queue: str) -> Schedule:
        return Schedule(
            action=ScheduleActionStartWorkflow(
                self.job.workflow_type,
                self.argument,
                id=self.schedule_id,
                task_queue=task_queue,
                execution_timeout=self.execution_timeout,
                static_summary=schedule_summary(self.note),
                memo={FINGERPRINT_MEMO_KEY: self.fingerprint(task_queue), **self.extra_memo},
                typed_search_attributes=TypedSearchAttributes(
                    [SearchAttributePair(JOB_ATTRIBUTE, self.job.key)]
                ),
            ),
            spec=self.spec,
            policy=SchedulePolicy(overlap=self.overlap, catchup_window=self.catchup_window),
            state=ScheduleState(note=self.note),
        )


def declared_schedules(settings: Settings) -> list[ScheduleDeclaration]:
    """Every schedule of the service. Each job adds its declaration here."""
    declarations: list[ScheduleDeclaration] = []
    declarations.append(
        ScheduleDeclaration(
            schedule_id=STOCK_RECONCILIATION.key,
            job=STOCK_RECONCILIATION,
            argument=StockReconciliationInput(),
            # Hourly, because stores span time zones: each run reconciles the stores whose local
            # 02:00 has passed with no reconciliation yet for that local day (DST days included).
            spec=ScheduleSpec(
                intervals=[ScheduleIntervalSpec(every=timedelta(hours=1), offset=timedelta(minutes=5))]
            ),
            note="Stock reconciliation: each store once per local day after 02:00 in its time zone",
            catchup_window=timedelta(days=1),
            execution_timeout=timedelta(hours=2),
        )
    )
    declarations.append(
        ScheduleDeclaration(
            schedule_id=APPOINTMENT_REMINDER.key,
            job=APPOINTMENT_REMINDER,
            argument=ReminderRunInput(),
            # Each run covers the whole next 24 h, so a skipped or late tick leaves nobody out.
            spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(hours=1))]),
            note="Appointment reminders: one reminder per appointment due in the next 24 h",
            catchup_window=timedelta(hours=6),
        )
    )
    declarations.append(
        ScheduleDeclaration(
            schedule_id=OPS_ALERT_SWEEP.key,
            job=OPS_ALERT_SWEEP,
            # An hour's lookback every 10 minutes: a late or skipped sweep misses no timed-out run.
            argument=TimedOutSweep(
                task_queue=settings.task_queue,
                workflow_types=sorted(ALERTED_WORKFLOW_TYPES),
                lookback_seconds=timedelta(hours=1).total_seconds(),
            ),
            spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(minutes=10))]),
            note="Failure alerts for job runs that hit their execution timeout (one email per run)",
            catchup_window=timedelta(minutes=10),
            execution_timeout=timedelta(minutes=15),
        )
    )
    export = settings.export
    declarations.append(
        ScheduleDeclaration(
            schedule_id=MONTHLY_FINANCIAL_EXPORT.key,
            job=MONTHLY_FINANCIAL_EXPORT,
            argument=MonthlyExportInput(format=export.monthly_format),
            spec=ScheduleSpec(
                calendars=[
                    ScheduleCalendarSpec(
                        day_of_month=[ScheduleRange(export.monthly_day)],
                        hour=[ScheduleRange(export.monthly_hour)],
                        minute=[ScheduleRange(0)],
                        second=[ScheduleRange(0)],
                        comment="the monthly close, in UTC",
                    )
                ]
            ),
            note=f"Monthly close: every store's {export.monthly_format} export of its previous local "
            "calendar month, once per store and month",
            # A month missed during downtime is still made once the worker is back within 3 weeks;
            # the run takes the time it was scheduled for, so the month is the one it was meant for.
            catchup_window=timedelta(days=21),
            execution_timeout=timedelta(hours=1),
            enabled=export.monthly_enabled,
        )
    )
    return declarations


async def apply_schedules(
    client: Client, declarations: Sequence[ScheduleDeclaration], task_queue: str
) -> dict[str, Outcome]:
    """Create what is missing, update what changed, leave the rest (and any pause) alone."""
    return {d.schedule_id: await _apply_one(client, d, task_queue) for d in declarations}


async def _apply_one(client: Client, declaration: ScheduleDeclaration, task_queue: str) -> Outcome:
    if not declaration.enabled:
        return await _delete(client, declaration.schedule_id)
    wanted = declaration.to_schedule(task_queue)
    try:
        await client.create_schedule(declaration.schedule_id, wanted)
        log.info("schedule %s created", declaration.schedule_id)
        return "created"
    except ScheduleAlreadyRunningError:
        pass
    handle = client.get_schedule_handle(declaration.schedule_id)
    current = await handle.describe()
    if _fingerprint_of(client, current.schedule) == declaration.fingerprint(task_queue):
        return "unchanged"

    def keep_state(update: ScheduleUpdateInput) -> ScheduleUpdate:
        existing = update.description.schedule
        # Operators' pause and note survive a redeploy; only what the code declares changes.
        return ScheduleUpdate(schedule=dataclasses.replace(wanted, state=existing.state))

    await handle.update(keep_state)
    log.info("schedule %s updated", declaration.schedule_id)
    return "updated"


async def _delete(client: Client, schedule_id: str) -> Outcome:
    try:
        await client.get_schedule_handle(schedule_id).delete()
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return "absent"
        raise
    log.info("schedule %s deleted (switched off in the settings)", schedule_id)
    return "deleted"


def _fingerprint_of(client: Client, schedule: Schedule) -> str | None:
    action = schedule.action
    if not isinstance(action, ScheduleActionStartWorkflow) or not action.memo:
        return None
    raw = action.memo.get(FINGERPRINT_MEMO_KEY)
    if raw is None:
        return None
    try:
        value = client.data_converter.payload_converter.from_payload(raw, str)
    except (TypeError, ValueError, AttributeError):
        return None
    return str(value)


async def describe_schedules(client: Client) -> list[str]:
    """One line per schedule: id, paused or not, next run, note."""
    lines = []
    async for entry in await client.list_schedules():
        handle = client.get_schedule_handle(entry.id)
        description = await handle.describe()
        upcoming = description.info.next_action_times
        state = description.schedule.state
        lines.append(
            f"{entry.id}\t{'paused' if state.paused else 'active'}\t"
            f"next={upcoming[0].isoformat() if upcoming else '-'}\t{state.note or ''}"
        )
    return lines


def add_no_schedules_option(parser: argparse.ArgumentParser) -> None:
    """The worker's switch that leaves the schedule registry alone (`petcare worker` and
    `python worker_main.py` alike): with several workers, only one deployment step applies it."""
    parser.add_argument("--no-schedules", action="store_true", help="do not apply the schedule registry")
