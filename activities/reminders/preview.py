"""The dry run's messages: the first due appointments rendered as a run would send them."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from activities.reminders.details import context_of, route_of
from activities.reminders.render import render_reminder
from petcare.models.reminders import PreviewMessage


def render_preview(rows: Sequence[asyncpg.Record]) -> list[PreviewMessage]:
    """Rows come with an address: the SQL returns only those, by the same rule as choose_route
    (tests/test_reminders_routing.py holds the two together)."""
    messages: list[PreviewMessage] = []
    for row in rows:
        route = route_of(row)
        assert route is not None
        rendered = render_reminder(context_of(row))
        email = route.channel == "email"
        messages.append(
            PreviewMessage(
                appointment_id=row["id"],
                channel=route.channel,
                recipient=route.address,
                locale=rendered.locale,
                starts_at_local=rendered.starts_at_local,
                subject=rendered.subject if email else None,
                text=rendered.text if email else rendered.sms,
            )
        )
    return messages
