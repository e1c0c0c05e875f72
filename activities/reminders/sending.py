"""One attempt at one page: claim ahead of the sends, deliver each claim by its channel, record it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Literal
from uuid import UUID

from activities.heartbeat import heartbeating
from activities.reminders.decisions import Confirmation, Owner, Settled, ToSend, count_settled
from activities.reminders.messages import (
    ReminderEmails,
    deliverable_address,
    reminder_message_id,
    render_reminder,
)
from activities.reminders.sql import ClaimStore, DeliveryRecords
from petcare.errors import (
    DeliveryDeferred,
    DeliveryMisconfigured,
    DeliveryRejected,
    DeliveryUnavailable,
    ErrorType,
    SmsNumberRefused,
    SmsOptedOut,
    UnsendableMessage,
    application_error,
)
from petcare.mail import Mailer, WireMessage
from petcare.models.reminders import Channel, PageResult
from petcare.rate_limits import SharedRateLimiter
from petcare.sms import SmsGateway

log = logging.getLogger(__name__)

Outcome = Literal["sent", "failed"]


@dataclass(frozen=True)
class Delivered:
    """What became of one claim: sent or failed, by which channel, and whether the SMS provider
    said the number unsubscribed on the way."""

    outcome: Outcome
    channel: Channel
    opted_out: bool = False


class ClaimLost(Exception):
    """A newer attempt (or, after the lease, another run) holds the claim: this attempt must stop."""


class _Finished(Exception):
    """The attempt this one took the claim from sent it (or had it refused) meanwhile."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome)
        self.outcome: Outcome = outcome


async def _check(claim: ToSend, confirm: Callable[[], Awaitable[Confirmation]]) -> None:
    confirmation = await confirm()
    if confirmation == "lost":
        raise ClaimLost(str(claim.appointment_id))
    if confirmation != "mine":
        raise _Finished(confirmation)


class Delivery:
    def __init__(
        self,
        mailer: Mailer,
        sms: SmsGateway,
        records: DeliveryRecords,
        *,
        sender: str,
        smtp_concurrency: int,
        sms_concurrency: int,
        sms_rate: SharedRateLimiter,
    ) -> None:
        self._mailer = mailer
        self._sms = sms
        self._records = records
        self._emails = ReminderEmails(sender)
        # Per worker process, shared by every page in flight. The email bound matches the Mailer's
        # connections: a claim is confirmed only once a connection is free for it, so what is
        # confirmed but not yet sent (and could go out twice after a takeover) stays this small.
        self._email_slots = asyncio.Semaphore(smtp_concurrency)
        self._sms_slots = asyncio.Semaphore(sms_concurrency)
        self._sms_rate = sms_rate  # unlike the bounds above, shared by every worker process

    async def deliver(self, claim: ToSend, confirm: Callable[[], Awaitable[Confirmation]]) -> Delivered:
        """Raises ClaimLost, DeliveryDeferred, DeliveryUnavailable or DeliveryMisconfigured (nothing
        recorded then).

        Whatever concerns this reminder alone (its data cannot make a message, the provider refuses
        its recipient for good) is recorded as its failure and returns "failed". A text refused for
        the number (it unsubscribed, or is a landline) goes by email instead when the customer has
        an address; an unsubscribed number is recorded on the customer, so no text is tried again.
        """
        channel = claim.route.channel
        opted_out = False
        try:
            content = _compose(claim, self._emails)
            if isinstance(content, WireMessage):
                provider_id = await self._email(claim, content, confirm)
                await self._records.mark_sent(claim, provider_id)
            else:
                try:
                    provider_id = await self._text(claim, content, confirm)
                    await self._records.mark_sent(claim, provider_id)
                except SmsNumberRefused as refusal:
                    opted_out = isinstance(refusal, SmsOptedOut)
                    if opted_out and claim.customer_id is not None:
                        await self._records.mark_sms_opted_out(claim.customer_id)
                    if claim.fallback is None:
                        raise
                    channel = "email"
                    by_email = replace(claim, route=claim.fallback, fallback=None)
                    message = _compose(by_email, self._emails)
                    assert isinstance(message, WireMessage)
                    provider_id = await self._email(by_email, message, confirm)
                    note = f"sent by email: the SMS was refused ({refusal})"
                    await self._records.mark_sent(claim, provider_id, via=claim.fallback, note=note)
        except _Finished as finished:
            return Delivered(finished.outcome, channel, opted_out)
        except DeliveryRejected as error:  # UnsendableMessage included
            await self._records.mark_failed(claim, str(error))
            # The reason (which names the recipient) is in the delivery row, not in the log.
            log.info(
                "%s reminder for appointment %s failed: %s",
                channel,
                claim.appointment_id,
                type(error).__name__,
            )
            return Delivered("failed", channel, opted_out)
        return Delivered("sent", channel, opted_out)

    async def _email(
        self, claim: ToSend, message: WireMessage, confirm: Callable[[], Awaitable[Confirmation]]
    ) -> str | None:
        """Returns no provider id: the Message-ID is the reference."""
        async with self._email_slots:
            await _check(claim, confirm)
            await self._mailer.send(message)
        return None

    async def _text(
        self, claim: ToSend, text: str, confirm: Callable[[], Awaitable[Confirmation]]
    ) -> str | None:
        async with self._sms_slots:
            await self._sms_rate.acquire()
            # After the rate limit's wait, so the check is as close to the send as it can be.
            await _check(claim, confirm)
            return await self._sms.send(claim.route.address, text)


def _compose(claim: ToSend, emails: ReminderEmails) -> WireMessage | str:
    """The email, or the SMS text. Raises UnsendableMessage when this appointment's data cannot
    make one: rendering and building are pure code over its rows, so whatever they raise is this
    reminder's fault alone, never a reason to stop the page (or to retry it for hours)."""
    try:
        rendered = render_reminder(claim.context)
        if claim.route.channel == "sms":
            return rendered.sms
        address = claim.route.address
        message = emails.build(
            rendered,
            recipient=address,
            message_id=reminder_message_id(claim.appointment_id, claim.starts_at, emails.sender),
            reply_to=claim.context.store_email,
        )
    except UnsendableMessage:
        raise
    except Exception as error:
        log.exception("reminder for appointment %s cannot be composed", claim.appointment_id)
        raise UnsendableMessage(f"cannot compose the reminder: {type(error).__name__}: {error}") from None
    if not deliverable_address(address):
        raise UnsendableMessage(f"invalid email address {address!r}")
    return message


# Appointments claimed per transaction: few round trips per message, and a consent or status
# change is still seen at most a couple of groups before the send.
CLAIM_GROUP = 20


class PageSender:
    """A provider that is down stops the page (retried with backoff); one that refuses our
    settings stops only its channel, whose claims go back for a later run; one that refuses a
    recipient for now (a full mailbox, a busy number) defers only that reminder to a later run; a
    lost claim (a newer attempt took over) stops this attempt before it sends anything more."""

    def __init__(
        self, claims: ClaimStore, delivery: Delivery, owner: Owner, *, senders: int, retry: bool = False
    ) -> None:
        self._claims, self._delivery, self._owner, self._senders = claims, delivery, owner, senders
        self._retry = retry
        self.counts = PageResult()
        self._done = 0
        self._unavailable: list[str] = []
        self._lost = False
        self._broken: dict[Channel, str] = {}
        self._released: dict[Channel, list[UUID]] = {"email": [], "sms": []}

    async def run(self, appointment_ids: list[UUID], *, heartbeat_every: float) -> PageResult:
        # What sits in this queue is claimed by this attempt, not yet sent.
        ready: asyncio.Queue[ToSend | None] = asyncio.Queue(maxsize=CLAIM_GROUP)
        progress = {"total": len(appointment_ids)}
        try:
            async with (
                heartbeating(lambda: {**progress, "done": self._done}, every=heartbeat_every),
                asyncio.TaskGroup() as group,
            ):
                group.create_task(self._claim_groups(appointment_ids, ready))
                for _ in range(self._senders):
                    group.create_task(self._send_claimed(ready))
        except ExceptionGroup as errors:
            # The real cause in the activity's failure, not "unhandled errors in a TaskGroup".
            first, *others = errors.exceptions
            for other in others:
                log.error("reminder page: another error in the same attempt", exc_info=other)
            raise first from None
        await self._release()
        if self._lost:
            raise application_error("a newer attempt holds this page's claims", ErrorType.REMINDER_CLAIM_LOST)
        if self._unavailable:
            log.warning("reminder page stopped, will be retried: %s", self._unavailable[0])
            raise application_error(
                f"provider unavailable: {self._unavailable[0]}", ErrorType.REMINDER_PROVIDER_UNAVAILABLE
            )
        self.counts.problems = list(self._broken.values())
        return self.counts

    @property
    def _stopping(self) -> bool:
        return bool(self._unavailable) or self._lost

    async def _claim_groups(self, ids: list[UUID], ready: asyncio.Queue[ToSend | None]) -> None:
        for start in range(0, len(ids), CLAIM_GROUP):
            if self._stopping:
                break  # the rest waits for the retry
            group = ids[start : start + CLAIM_GROUP]
            for claim in await self._claims.claim(group, self._owner, retry=self._retry):
                if isinstance(claim, ToSend):
                    await ready.put(claim)
                else:
                    self._settle(claim)
        for _ in range(self._senders):
            await ready.put(None)

    def _settle(self, claim: Settled) -> None:
        if claim.decision == "superseded":
            self._lost = True
        else:
            count_settled(claim, self.counts)
            self._done += 1

    async def _send_claimed(self, ready: asyncio.Queue[ToSend | None]) -> None:
        while (claim := await ready.get()) is not None:
            channel = claim.route.channel
            if self._stopping:
                continue  # stays claimed by this attempt: the retry takes it over and sends it
            if channel in self._broken:
                self._released[channel].append(claim.appointment_id)
                continue
            try:
                delivered = await self._delivery.deliver(
                    claim, partial(self._claims.confirm, claim.appointment_id, claim.starts_at, self._owner)
                )
            # The provider refused this one recipient for now (a full mailbox, greylisting, a busy
            # number): that claim goes back for a later run, the page goes on. Caught before its
            # base class DeliveryUnavailable.
            except DeliveryDeferred as error:
                await self._claims.defer(claim.appointment_id, self._owner, str(error))
                self.counts.deferred += 1
                self._done += 1
                log.info("reminder for appointment %s deferred to a later run", claim.appointment_id)
                continue
            # The provider cannot take anything now: the page stops and is retried with backoff.
            except DeliveryUnavailable as error:
                self._unavailable.append(str(error))
                continue
            # The provider refuses our settings: that channel stops, its claims go back for a later run.
            except DeliveryMisconfigured as error:
                self._broken.setdefault(channel, str(error))
                self._released[channel].append(claim.appointment_id)
                continue
            except ClaimLost:
                self._lost = True
                continue
            self.counts.sms_opted_out += int(delivered.opted_out)
            if delivered.outcome == "failed":
                self.counts.failed += 1
            else:
                self.counts.rescheduled += int(claim.rescheduled)
                if delivered.channel == "email":
                    self.counts.sent_email += 1
                else:
                    self.counts.sent_sms += 1
            self._done += 1

    async def _release(self) -> None:
        for channel, ids in self._released.items():
            if ids:
                reason = f"released: the {channel} provider refused our settings"
                await self._claims.release(ids, self._owner, reason)
                self.counts.released += len(ids)
                log.error(
                    "%d %s reminders released for a later run: %s", len(ids), channel, self._broken[channel]
                )
