"""One attempt at one page: claims a group ahead of the sends, each channel able to stop alone."""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from uuid import UUID

from temporalio.exceptions import ApplicationError

from activities.heartbeat import heartbeating
from activities.reminders.claims import ClaimStore
from activities.reminders.counting import count_settled
from activities.reminders.delivery import DEFERRED, MISCONFIGURED, UNAVAILABLE, ClaimLost, Delivery
from activities.reminders.planning import Owner, Settled, ToSend
from petcare.models.reminders import Channel, PageResult

log = logging.getLogger(__name__)

# Appointments claimed per transaction: few round trips per message, and a consent or status
# change is still seen at most a couple of groups before the send.
CLAIM_GROUP = 20


class PageSender:
    """A provider that is down stops the page (retried with backoff); one that refuses our
    settings stops only its channel, whose claims go back for a later run; one that refuses a
    recipient for now (a full mailbox, a busy number) defers only that reminder to a later run; a
    lost claim (a newer attempt took over) stops this attempt before it sends anything more."""

    def __init__(self, claims: ClaimStore, delivery: Delivery, owner: Owner, *, senders: int) -> None:
        self._claims, self._delivery, self._owner, self._senders = claims, delivery, owner, senders
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
            raise ApplicationError("a newer attempt holds this page's claims", type="ReminderClaimLost")
        if self._unavailable:
            log.warning("reminder page stopped, will be retried: %s", self._unavailable[0])
            raise ApplicationError(
                f"provider unavailable: {self._unavailable[0]}", type="ReminderProviderUnavailable"
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
            for claim in await self._claims.claim(ids[start : start + CLAIM_GROUP], self._owner):
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
                outcome = await self._delivery.deliver(
                    claim, partial(self._claims.confirm, claim.appointment_id, self._owner)
                )
            except DEFERRED as error:  # before UNAVAILABLE: its subclasses
                await self._claims.defer(claim.appointment_id, self._owner, str(error))
                self.counts.deferred += 1
                self._done += 1
                log.info("reminder for appointment %s deferred to a later run", claim.appointment_id)
                continue
            except UNAVAILABLE as error:
                self._unavailable.append(str(error))
                continue
            except MISCONFIGURED as error:
                self._broken.setdefault(channel, str(error))
                self._released[channel].append(claim.appointment_id)
                continue
            except ClaimLost:
                self._lost = True
                continue
            if outcome == "failed":
                self.counts.failed += 1
            elif channel == "email":
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
