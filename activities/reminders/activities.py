"""The reminder activities: fetch a page of due appointments, send a page, and the dry run's preview."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import asyncpg
from temporalio import activity

from activities.heartbeat import heartbeat_interval
from activities.reminders.decisions import Owner
from activities.reminders.messages import render_reminder
from activities.reminders.sending import Delivery, PageSender
from activities.reminders.sql import ClaimStore, DeliveryRecords, DueAppointments, context_of, route_of
from petcare.config import Settings
from petcare.mail import Mailer
from petcare.models.reminders import (
    CLAIM_LEASE,
    DuePage,
    FetchDuePage,
    PageCursor,
    PageResult,
    PreviewMessage,
    PreviewRequest,
    ReminderPreview,
    SendPage,
)
from petcare.rate_limits import SharedRateLimiter
from petcare.reminders_repository import Overrides
from petcare.sms import SMS_RATE_LIMIT, SmsGateway


class ReminderActivities:
    def __init__(self, pool: asyncpg.Pool, mailer: Mailer, sms: SmsGateway, settings: Settings) -> None:
        self._settings = settings.reminders
        self._lead = timedelta(minutes=self._settings.min_lead_minutes)
        self._span = timedelta(hours=self._settings.window_hours)
        self._due = DueAppointments(pool)
        self._claims = ClaimStore(
            pool,
            lease=CLAIM_LEASE,
            lead=self._lead,
            window=self._span,
            sender=settings.smtp.from_address,
            quiet_hours=self._settings.quiet_period(),
        )
        self._delivery = Delivery(
            mailer,
            sms,
            DeliveryRecords(pool),
            sender=settings.smtp.from_address,
            smtp_concurrency=self._settings.smtp_concurrency,
            sms_concurrency=self._settings.sms_concurrency,
            sms_rate=SharedRateLimiter(pool, SMS_RATE_LIMIT, self._settings.sms_rate_per_second),
        )

    def _window(self, as_of: datetime) -> tuple[datetime, datetime]:
        return as_of + self._lead, as_of + self._span

    @activity.defn(name="reminders.fetch_due_page")
    async def fetch_due_page(self, request: FetchDuePage) -> DuePage:
        earliest, latest = self._window(request.as_of)
        limit = self._settings.batch_size
        rows = await self._due.page(earliest, latest, request.after, limit)
        ids = [row["id"] for row in rows]
        last = rows[-1] if len(rows) == limit else None
        cursor = PageCursor(starts_at=last["starts_at"], appointment_id=last["id"]) if last else None
        # Once per run, ahead of its pages: what earlier runs deferred and has run out of time.
        late = await self._claims.fail_late_deferrals() if request.after is None else 0
        return DuePage(appointment_ids=ids, next_cursor=cursor, late_deferrals=late)

    @activity.defn(name="reminders.send_page")
    async def send_page(self, request: SendPage) -> PageResult:
        """Claim, send and record each appointment; transient faults fail the page for a retry."""
        info = activity.info()
        owner = Owner(run=f"{info.workflow_id}/{info.workflow_run_id}", attempt=info.attempt)
        senders = self._settings.smtp_concurrency + self._settings.sms_concurrency
        sender = PageSender(self._claims, self._delivery, owner, senders=senders, retry=request.retry_failed)
        return await sender.run(request.appointment_ids, heartbeat_every=heartbeat_interval())

    @activity.defn(name="reminders.preview")
    async def preview(self, request: PreviewRequest) -> ReminderPreview:
        """What a run would send now: the same eligibility SQL and rendering, nothing written."""
        earliest, latest = self._window(request.as_of)
        limit = self._settings.preview_limit if request.preview_limit is None else request.preview_limit
        counts, rows, overrides = await self._due.plan(earliest, latest, limit)
        messages = _preview_messages(rows, overrides)
        return ReminderPreview(as_of=request.as_of, counts=counts, messages=messages)


def _preview_messages(rows: Sequence[asyncpg.Record], overrides: Overrides) -> list[PreviewMessage]:
    """Rows come with an address: the SQL returns only those, by the same rule as choose_route
    (tests/test_reminders_routing.py holds the two together)."""
    messages: list[PreviewMessage] = []
    for row in rows:
        route = route_of(row)
        assert route is not None
        rendered = render_reminder(context_of(row, overrides))
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
                rescheduled=row["rescheduled"],
                templates="override" if rendered.overridden else "default",
            )
        )
    return messages
