"""What every bench measures the same way: this process's CPU and peak memory, and activity times
read from a run's history."""

from __future__ import annotations

import resource
from collections.abc import Iterable
from datetime import datetime

from temporalio.api.history.v1 import HistoryEvent


def cpu_seconds() -> float:
    """CPU time of this process so far, all threads, user and system."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def activity_times(events: Iterable[HistoryEvent]) -> dict[str, tuple[int, float]]:
    """Per activity type: how many completed, and their seconds from scheduled to completed in
    all (queue wait included)."""
    scheduled: dict[int, tuple[str, datetime]] = {}
    times: dict[str, tuple[int, float]] = {}
    for event in events:
        when = event.event_time.ToDatetime()
        if event.HasField("activity_task_scheduled_event_attributes"):
            scheduled[event.event_id] = (
                event.activity_task_scheduled_event_attributes.activity_type.name,
                when,
            )
        elif event.HasField("activity_task_completed_event_attributes"):
            name, begun = scheduled[event.activity_task_completed_event_attributes.scheduled_event_id]
            count, total = times.get(name, (0, 0.0))
            times[name] = (count + 1, total + (when - begun).total_seconds())
    return times
