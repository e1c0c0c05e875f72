"""The dry run: what a run would send now, from the same SQL and templates, writing nothing."""

from __future__ import annotations

from datetime import datetime

from activities.reminders.render import render_reminder
from activities.reminders.repository import ReminderRepository, context_of, route_of
from petcare.models.reminders import PlannedCounts, PreviewMessage


async def plan_due(
    repository: ReminderRepository, earliest: datetime, latest: datetime, limit: int
) -> tuple[PlannedCounts, list[PreviewMessage]]:
    """Counts by channel over every due appointment, and the first `limit` messages rendered."""
    counts = PlannedCounts()
    messages: list[PreviewMessage] = []
    async for row in repository.due_details(earliest, latest):
        counts.due += 1
        route = route_of(row)
        if route is None:
            counts.skipped_no_address += 1
            continue
        if route.channel == "email":
            counts.email += 1
        else:
            counts.sms += 1
        if len(messages) < limit:
            rendered = render_reminder(context_of(row))
            messages.append(
                PreviewMessage(
                    appointment_id=row["id"],
                    channel=route.channel,
                    recipient=route.address,
                    locale=rendered.locale,
                    starts_at_local=rendered.starts_at_local,
                    subject=rendered.subject if route.channel == "email" else None,
                    text=rendered.text if route.channel == "email" else rendered.sms,
                )
            )
    return counts, messages
