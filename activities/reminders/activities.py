"""The reminder activities: fetch a page of due appointments, send a page, preview a run."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.reminders.counting import count_settled
from activities.reminders.email import build_email, deliverable_address
from activities.reminders.heartbeat import Heartbeat, heartbeat_ticker
from activities.reminders.preview import plan_due
from activities.reminders.render import render_reminder
from activities.reminders.repository import Claim, ReminderRepository, message_id_for
from activities.reminders.sms import (
    RateLimiter,
    SmsConfigurationError,
    SmsGateway,
    SmsRejected,
    SmsUnavailable,
)
from petcare.config import Settings
from petcare.mail import Mailer, MailRejected, MailUnavailable
from petcare.models.reminders import (
    DuePage,
    FetchDuePage,
    PageCursor,
    PreviewRequest,
    ReminderCounts,
    ReminderPreview,
    SendPage,
)

log = logging.getLogger(__name__)

# Appointments claimed per transaction: few round trips per message, and a consent or status
# change is still seen at most a couple of groups before the send.
CLAIM_GROUP = 20


class ReminderActivities:
    def __init__(self, pool: asyncpg.Pool, mailer: Mailer, sms: SmsGateway, settings: Settings) -> None:
        self._repository = ReminderRepository(pool)
        self._mailer = mailer
        self._sms = sms
        self._settings = settings.reminders
        self._sender = settings.smtp.from_address
        # Per worker process, shared by every page in flight: the providers see these bounds.
        self._email_slots = asyncio.Semaphore(self._settings.smtp_concurrency)
        self._sms_slots = asyncio.Semaphore(self._settings.sms_concurrency)
        self._sms_rate = RateLimiter(self._settings.sms_rate_per_second)

    def _window(self, as_of: datetime) -> tuple[datetime, datetime]:
        return (
            as_of + timedelta(minutes=self._settings.min_lead_minutes),
            as_of + timedelta(hours=self._settings.window_hours),
        )

    @activity.defn(name="reminders.fetch_due_page")
    async def fetch_due_page(self, request: FetchDuePage) -> DuePage:
        earliest, latest = self._window(request.as_of)
        limit = self._settings.batch_size
        rows = await self._repository.due_page(earliest, latest, request.after, limit)
        ids = [row["id"] for row in rows]
        last = rows[-1] if len(rows) == limit else None
        cursor = PageCursor(starts_at=last["starts_at"], appointment_id=last["id"]) if last else None
        return DuePage(appointment_ids=ids, next_cursor=cursor)

    @activity.defn(name="reminders.send_page")
    async def send_page(self, request: SendPage) -> ReminderCounts:
        """Claim, send and record each appointment; transient faults fail the page for a retry."""
        info = activity.info()
        owner = f"{info.workflow_id}/{info.workflow_run_id}"
        counts = ReminderCounts()
        progress = {"total": len(request.appointment_ids), "done": 0}
        beat = Heartbeat(progress)
        unavailable: list[str] = []
        senders = self._settings.smtp_concurrency + self._settings.sms_concurrency
        # Claims run at most a group ahead of the sends, so consent and status are re-checked
        # just before each message goes out; what sits in this queue is claimed, not yet sent.
        ready: asyncio.Queue[Claim | None] = asyncio.Queue(maxsize=CLAIM_GROUP)

        async def claim_groups() -> None:
            ids = request.appointment_ids
            for start in range(0, len(ids), CLAIM_GROUP):
                if unavailable:
                    break  # a provider is down: the rest waits for the retry
                for claim in await self._repository.claim(ids[start : start + CLAIM_GROUP], owner):
                    if claim.decision == "send":
                        await ready.put(claim)
                    else:
                        count_settled(claim, counts)
                        progress["done"] += 1
            for _ in range(senders):
                await ready.put(None)

        async def send_claimed() -> None:
            while (claim := await ready.get()) is not None:
                if unavailable:
                    continue  # stays claimed by this run: the retry sends it
                try:
                    await self._deliver(claim, counts)
                except (MailUnavailable, SmsUnavailable) as error:
                    unavailable.append(str(error))
                progress["done"] += 1
                beat.after_message()

        try:
            async with heartbeat_ticker(info.heartbeat_timeout, beat), asyncio.TaskGroup() as group:
                group.create_task(claim_groups())
                for _ in range(senders):
                    group.create_task(send_claimed())
        except* SmsConfigurationError as errors:
            raise ApplicationError(
                str(errors.exceptions[0]), type="ReminderConfigurationError", non_retryable=True
            ) from None
        if unavailable:
            log.warning("reminder page stopped, will be retried: %s", unavailable[0])
            raise ApplicationError(
                f"provider unavailable: {unavailable[0]}", type="ReminderProviderUnavailable"
            )
        return counts

    async def _deliver(self, claim: Claim, counts: ReminderCounts) -> None:
        assert claim.context is not None
        assert claim.route is not None
        rendered = render_reminder(claim.context)
        route = claim.route
        try:
            if route.channel == "email":
                if not deliverable_address(route.address):
                    raise MailRejected(f"invalid email address {route.address!r}")
                message = build_email(
                    rendered,
                    sender=self._sender,
                    recipient=route.address,
                    message_id=message_id_for(claim.appointment_id),
                )
                async with self._email_slots:
                    await self._mailer.send(message)
                provider_id = None
            else:
                async with self._sms_slots:
                    await self._sms_rate.acquire()
                    provider_id = await self._sms.send(route.address, rendered.sms)
        except (MailRejected, SmsRejected) as error:
            await self._repository.mark_failed(claim.appointment_id, str(error))
            counts.failed += 1
            log.info(
                "reminder for appointment %s rejected by the %s provider", claim.appointment_id, route.channel
            )
            return
        await self._repository.mark_sent(claim.appointment_id, provider_id)
        if route.channel == "email":
            counts.sent_email += 1
        else:
            counts.sent_sms += 1

    @activity.defn(name="reminders.preview")
    async def preview(self, request: PreviewRequest) -> ReminderPreview:
        """What a run would send now: the same eligibility SQL and rendering, nothing written."""
        earliest, latest = self._window(request.as_of)
        limit = self._settings.preview_limit if request.preview_limit is None else request.preview_limit
        counts, messages = await plan_due(self._repository, earliest, latest, limit)
        return ReminderPreview(as_of=request.as_of, counts=counts, messages=messages)
