"""The schedule registry against the real dev server: create, leave alone, update, keep a pause."""

from __future__ import annotations

import uuid
from datetime import timedelta

from pydantic import BaseModel
from temporalio.client import Client, ScheduleIntervalSpec, ScheduleOverlapPolicy, ScheduleSpec

from petcare.jobs import Job
from petcare.schedules import ScheduleDeclaration, apply_schedules

TEST_JOB = Job("registry-test", "RegistryTestWorker", "RegistryTestWorkflow")


class RegistryTestInput(BaseModel):
    limit: int = 10


def _declaration(schedule_id: str, every: timedelta, limit: int = 10) -> ScheduleDeclaration:
    return ScheduleDeclaration(
        schedule_id=schedule_id,
        job=TEST_JOB,
        argument=RegistryTestInput(limit=limit),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        note="registry test",
    )


async def test_apply_is_create_or_update_and_idempotent(dev_client: Client, task_queue: str) -> None:
    schedule_id = f"registry-test-{uuid.uuid4().hex[:8]}"
    hourly = _declaration(schedule_id, timedelta(hours=1))

    assert await apply_schedules(dev_client, [hourly], task_queue) == {schedule_id: "created"}
    assert await apply_schedules(dev_client, [hourly], task_queue) == {schedule_id: "unchanged"}

    handle = dev_client.get_schedule_handle(schedule_id)
    described = await handle.describe()
    assert described.schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
    assert described.schedule.spec.intervals[0].every == timedelta(hours=1)

    await handle.pause(note="paused by an operator")
    every_two_hours = _declaration(schedule_id, timedelta(hours=2), limit=20)
    assert await apply_schedules(dev_client, [every_two_hours], task_queue) == {schedule_id: "updated"}
    assert await apply_schedules(dev_client, [every_two_hours], task_queue) == {schedule_id: "unchanged"}

    described = await handle.describe()
    assert described.schedule.spec.intervals[0].every == timedelta(hours=2)
    assert described.schedule.state.paused, "an operator's pause must survive a redeploy"
    assert described.schedule.state.note == "paused by an operator"
    await handle.delete()


async def test_changing_the_task_queue_updates_the_action(dev_client: Client, task_queue: str) -> None:
    schedule_id = f"registry-test-{uuid.uuid4().hex[:8]}"
    declaration = _declaration(schedule_id, timedelta(hours=1))
    await apply_schedules(dev_client, [declaration], task_queue)
    assert await apply_schedules(dev_client, [declaration], task_queue + "-b") == {schedule_id: "updated"}
    action = (await dev_client.get_schedule_handle(schedule_id).describe()).schedule.action
    assert getattr(action, "task_queue", None) == task_queue + "-b"
    await dev_client.get_schedule_handle(schedule_id).delete()
