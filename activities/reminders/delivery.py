"""One claimed reminder out by its channel: compose, confirm the claim, call the provider, record."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from typing import Literal

from activities.reminders.email import build_email, deliverable_address, reminder_message_id
from activities.reminders.planning import Confirmation, ToSend
from activities.reminders.records import DeliveryRecords
from activities.reminders.render import render_reminder
from activities.reminders.sms import (
    SmsConfigurationError,
    SmsDeferred,
    SmsGateway,
    SmsRejected,
    SmsUnavailable,
)
from petcare.mail import (
    MailDeferred,
    Mailer,
    MailMisconfigured,
    MailRejected,
    MailUnavailable,
    UnsendableMessage,
)
from petcare.rate_limits import SharedRateLimiter

log = logging.getLogger(__name__)

# The provider refused this one recipient for now (a full mailbox, greylisting, a busy number):
# that claim goes back for a later run, the page goes on. Subclasses of UNAVAILABLE's types:
# catch these first.
DEFERRED = (MailDeferred, SmsDeferred)
# The provider cannot take anything now: the page stops and is retried with backoff.
UNAVAILABLE = (MailUnavailable, SmsUnavailable)
# The provider refuses our settings: that channel stops, its claims are released for a later run.
MISCONFIGURED = (MailMisconfigured, SmsConfigurationError)

Outcome = Literal["sent", "failed"]


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
        self._sender = sender
        # Per worker process, shared by every page in flight. The email bound matches the Mailer's
        # connections: a claim is confirmed only once a connection is free for it, so what is
        # confirmed but not yet sent (and could go out twice after a takeover) stays this small.
        self._email_slots = asyncio.Semaphore(smtp_concurrency)
        self._sms_slots = asyncio.Semaphore(sms_concurrency)
        self._sms_rate = sms_rate  # unlike the bounds above, shared by every worker process

    async def deliver(self, claim: ToSend, confirm: Callable[[], Awaitable[Confirmation]]) -> Outcome:
        """Raises ClaimLost, or one of DEFERRED / UNAVAILABLE / MISCONFIGURED (nothing recorded then).

        Whatever concerns this reminder alone (its data cannot make a message, the provider refuses
        its recipient for good) is recorded as its failure and returns "failed".
        """
        try:
            content = _compose(claim, self._sender)
            if isinstance(content, EmailMessage):
                provider_id = await self._email(claim, content, confirm)
            else:
                provider_id = await self._text(claim, content, confirm)
        except _Finished as finished:
            return finished.outcome
        except (MailRejected, SmsRejected) as error:
            await self._records.mark_failed(claim.appointment_id, str(error))
            # The reason (which names the recipient) is in the delivery row, not in the log.
            log.info("reminder for appointment %s failed: %s", claim.appointment_id, type(error).__name__)
            return "failed"
        await self._records.mark_sent(claim.appointment_id, provider_id)
        return "sent"

    async def _email(
        self, claim: ToSend, message: EmailMessage, confirm: Callable[[], Awaitable[Confirmation]]
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


def _compose(claim: ToSend, sender: str) -> EmailMessage | str:
    """The email, or the SMS text. Raises UnsendableMessage when this appointment's data cannot
    make one: rendering and building are pure code over its rows, so whatever they raise is this
    reminder's fault alone, never a reason to stop the page (or to retry it for hours)."""
    try:
        rendered = render_reminder(claim.context)
        if claim.route.channel == "sms":
            return rendered.sms
        address = claim.route.address
        message = build_email(
            rendered,
            sender=sender,
            recipient=address,
            message_id=reminder_message_id(claim.appointment_id, sender),
        )
    except UnsendableMessage:
        raise
    except Exception as error:
        log.exception("reminder for appointment %s cannot be composed", claim.appointment_id)
        raise UnsendableMessage(f"cannot compose the reminder: {type(error).__name__}: {error}") from None
    if not deliverable_address(address):
        raise UnsendableMessage(f"invalid email address {address!r}")
    return message
