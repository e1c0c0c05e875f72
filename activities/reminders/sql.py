"""All reminder SQL side by side, as it must agree: eligibility, details, claims, deferrals, records;
the checks and records of concurrent sends share their round trips (_Grouped)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import datetime, time, timedelta
from typing import Generic, NamedTuple, TypeVar
from uuid import UUID

import asyncpg

from activities.reminders.decisions import (
    Claim,
    ClaimState,
    Confirmation,
    Decision,
    Owner,
    Route,
    Settled,
    ToSend,
    choose_route,
    decide,
    email_route,
    quiet_verdict,
    skip_reason,
)
from activities.reminders.messages import ReminderContext, reminder_message_id, store_zone
from activities.reminders.templates import resolve_locale
from petcare.db import is_transient
from petcare.models.reminders import PageCursor, PlannedCounts
from petcare.reminders_repository import REMINDED_ELSEWHERE, Overrides, start_against_now, store_overrides

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Answer = TypeVar("Answer")

# --- What rendering needs from an appointment: the shared SELECT list, its joins, the row's reading.

DETAILS = """
    SELECT a.id, a.starts_at, a.store_id, c.id AS customer_id, c.first_name, c.email, c.phone, c.locale,
           c.preferred_channel, c.sms_opted_out_at IS NOT NULL AS sms_opted_out,
           p.name AS pet_name, s.name AS service_name, st.name AS store_name, st.phone AS store_phone,
           st.timezone AS store_timezone, st.email AS store_email
"""
DETAILS_JOINS = """
    JOIN pets p ON p.id = a.pet_id
    JOIN services s ON s.id = a.service_id
    JOIN stores st ON st.id = a.store_id
"""


def context_of(row: asyncpg.Record, overrides: Overrides) -> ReminderContext:
    return ReminderContext(
        appointment_id=str(row["id"]),
        first_name=row["first_name"],
        pet_name=row["pet_name"],
        service_name=row["service_name"],
        store_name=row["store_name"],
        store_phone=row["store_phone"],
        store_timezone=row["store_timezone"],
        starts_at=row["starts_at"],
        locale=row["locale"],
        store_email=row["store_email"],
        override=overrides.get((row["store_id"], resolve_locale(row["locale"]))),
    )


def route_of(row: asyncpg.Record) -> Route | None:
    return choose_route(
        row["preferred_channel"], row["email"], row["phone"], sms_opted_out=row["sms_opted_out"]
    )


# --- Eligibility: keyset pages for a run, and the dry run's counts and first rows. The claim below
# re-checks the same conditions under the row lock, measured again from its own now().

# A reminder is owed per appointment AND start time: a delivery record is keyed by both, so an
# appointment moved after its reminder is owed one for its new time (and one moved twice between
# runs, one for its latest time). REMINDED_ELSEWHERE (shared with the API's retry check) is the
# main backend's own reminder.
_RESCHEDULED = """EXISTS (
        SELECT 1 FROM reminder_deliveries r
        WHERE r.appointment_id = a.id AND r.state = 'sent' AND r.starts_at <> a.starts_at)"""
# Eligible: active, consenting, starting inside [$1, $2], not reminded elsewhere, and its current
# start time not finished by this job.
_DUE_FROM = """
    FROM appointments a
    JOIN customers c ON c.id = a.customer_id"""
_DUE_WHERE = f"""
    a.status IN ('scheduled', 'confirmed')
    AND c.consent_reminders
    AND a.starts_at >= $1 AND a.starts_at <= $2
    AND NOT {REMINDED_ELSEWHERE}
    AND NOT EXISTS (
        SELECT 1 FROM reminder_deliveries d
        WHERE d.appointment_id = a.id AND d.starts_at = a.starts_at AND d.state IN ('sent', 'failed'))"""
_FIRST_PAGE = f"SELECT a.id, a.starts_at {_DUE_FROM} WHERE {_DUE_WHERE} ORDER BY a.starts_at, a.id LIMIT $3"
# The plain `>=` lets the starts_at index bound the scan; the row comparison does the exact keyset.
_NEXT_PAGE = f"""SELECT a.id, a.starts_at {_DUE_FROM} WHERE {_DUE_WHERE}
    AND a.starts_at >= $4 AND (a.starts_at, a.id) > ($4, $5::uuid)
    ORDER BY a.starts_at, a.id LIMIT $3"""

# The channel choose_route() picks (preferred if its address is there, else the other), in SQL.
# An address is trimmed of what Python's str.strip() removes (every character with isspace()),
# so an address of only, say, no-break spaces counts as missing here as it does when sending.
_STRIPPED = "".join(char for char in map(chr, range(0x3001)) if char.isspace())  # none above U+3000
_EMAIL = f"NULLIF(btrim(c.email, '{_STRIPPED}'), '')"
# A customer who opted out of SMS has no phone for this purpose.
_PHONE = f"CASE WHEN c.sms_opted_out_at IS NULL THEN NULLIF(btrim(c.phone, '{_STRIPPED}'), '') END"
_CHANNEL = f"""CASE
    WHEN c.preferred_channel = 'sms' AND {_PHONE} IS NOT NULL THEN 'sms'
    WHEN {_EMAIL} IS NOT NULL THEN 'email'
    WHEN {_PHONE} IS NOT NULL THEN 'sms' END"""
_PLANNED = f"""
    SELECT count(*) AS due,
           count(*) FILTER (WHERE channel = 'email') AS email,
           count(*) FILTER (WHERE channel = 'sms') AS sms,
           count(*) FILTER (WHERE channel IS NULL) AS skipped_no_address,
           count(*) FILTER (WHERE rescheduled) AS rescheduled,
           count(*) FILTER (WHERE opted_out) AS sms_opted_out
    FROM (SELECT {_CHANNEL} AS channel, {_RESCHEDULED} AS rescheduled,
                 c.sms_opted_out_at IS NOT NULL AS opted_out
          {_DUE_FROM} WHERE {_DUE_WHERE}) AS routed"""
# The first rows that would be sent (with an address), in run order; LIMIT NULL is every row.
_DETAILED = f"""{DETAILS}, {_RESCHEDULED} AS rescheduled {_DUE_FROM} {DETAILS_JOINS}
    WHERE {_DUE_WHERE} AND {_CHANNEL} IS NOT NULL
    ORDER BY a.starts_at, a.id LIMIT $3"""


class DueAppointments:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def page(
        self, earliest: datetime, latest: datetime, after: PageCursor | None, limit: int
    ) -> list[asyncpg.Record]:
        if after is None:
            return await self._pool.fetch(_FIRST_PAGE, earliest, latest, limit)
        return await self._pool.fetch(
            _NEXT_PAGE, earliest, latest, limit, after.starts_at, after.appointment_id
        )

    async def plan(
        self, earliest: datetime, latest: datetime, limit: int | None
    ) -> tuple[PlannedCounts, list[asyncpg.Record], Overrides]:
        """Counts by channel over every due appointment (one aggregate), and the first `limit` rows
        to render with their stores' own words, from one snapshot so they agree."""
        async with (
            self._pool.acquire() as connection,
            connection.transaction(isolation="repeatable_read", readonly=True),
        ):
            planned = await connection.fetchrow(_PLANNED, earliest, latest)
            assert planned is not None  # an aggregate without GROUP BY answers exactly one row
            rows = await connection.fetch(_DETAILED, earliest, latest, limit)
            overrides = await store_overrides(connection, {row["store_id"] for row in rows})
        counts = PlannedCounts.model_validate(dict(planned))
        return counts, rows, overrides


# --- Round trips shared by the calls that arrive while one runs.

# The most calls one round trip answers: far above what a worker's senders make at once.
GROUP_LIMIT = 100


class _Grouped(Generic[Item, Answer]):
    """Calls that arrive while a round trip to the database runs share the next one (their
    statements pipelined, a write's in one transaction: one commit and WAL flush) instead of one
    each. Nothing waits to fill a group: a call made while none runs goes at once, so each call
    is answered as soon as alone it would have been, or sooner.

    `run` answers a group's items in order. When it raises an error `split` (if given) says may be
    one item's own (not the database's), the group's items run again one by one, so a bad row fails
    only its own call. A cancelled caller still waits for its round trip to end: a send cancelled
    right after the provider accepted it is recorded before its attempt stops.
    """

    def __init__(
        self,
        run: Callable[[list[Item]], Awaitable[Sequence[Answer]]],
        *,
        split: Callable[[Exception], bool] | None = None,
        limit: int = GROUP_LIMIT,
    ) -> None:
        self._run, self._split, self._limit = run, split, limit
        self._waiting: list[tuple[Item, asyncio.Future[Answer]]] = []
        self._runner: asyncio.Task[None] | None = None

    async def __call__(self, item: Item) -> Answer:
        answer: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, answer))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._drain())
        try:
            return await asyncio.shield(answer)
        except asyncio.CancelledError:
            await asyncio.wait([answer])
            if not answer.cancelled() and (error := answer.exception()) is not None:
                log.error("a grouped database call failed after its caller was cancelled", exc_info=error)
            raise

    async def _drain(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting[: self._limit], self._waiting[self._limit :]
            try:
                await self._answer(group)
            except BaseException:  # the loop is shutting down: nobody may wait forever
                for _, answer in (*group, *self._waiting):
                    answer.cancel()
                self._waiting = []
                raise

    async def _answer(self, group: list[tuple[Item, asyncio.Future[Answer]]]) -> None:
        try:
            answers = await self._run([item for item, _ in group])
        except Exception as error:
            if len(group) > 1 and self._split is not None and self._split(error):
                for one in group:
                    await self._answer([one])
                return
            for _, answer in group:
                if not answer.done():
                    answer.set_exception(error)
            return
        for (_, future), value in zip(group, answers, strict=True):
            if not future.done():
                future.set_result(value)


# --- Claims: re-check each appointment under its row lock and claim it, confirm before each send,
# give back what a misconfigured channel could not send or a provider deferred, and record as
# failed the deferrals that ran out of time.

# Locks in id order, so two runs claiming overlapping sets wait for each other instead of deadlocking.
_LOCK = "SELECT id FROM appointments WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE"
# Read after the lock, in a new statement, so a delivery committed by a run we waited for is seen.
# The window is measured again from this transaction's now(): lead $3, window $4.
_CLAIM_READ = f"""{DETAILS},
           a.status, {REMINDED_ELSEWHERE} AS reminder_sent, {_RESCHEDULED} AS rescheduled,
           now() AS checked_at, {start_against_now("$3", "$4")},
           c.consent_reminders, d.state AS delivery_state, d.owner AS delivery_owner,
           d.owner_attempt AS delivery_attempt, d.channel AS delivery_channel,
           COALESCE(d.claimed_at < now() - $2::interval, false) AS claim_expired
    FROM appointments a
    JOIN customers c ON c.id = a.customer_id
    {DETAILS_JOINS}
    LEFT JOIN reminder_deliveries d ON d.appointment_id = a.id AND d.starts_at = a.starts_at
    WHERE a.id = ANY($1::uuid[])"""
# Never over a final row: a stale attempt may have recorded a send since the read above. A retry
# ($8) claims a failed row again (never a sent one).
_UPSERT_CLAIMED = """
    INSERT INTO reminder_deliveries (appointment_id, starts_at, state, channel, recipient, message_id,
                                     owner, owner_attempt, reason, attempts, claimed_at, updated_at)
    SELECT id, starts_at, 'claimed', channel, recipient, message_id, $5, $6, note, 1, now(), now()
    FROM unnest($1::uuid[], $7::timestamptz[], $2::text[], $3::text[], $4::text[], $9::text[])
        AS t (id, starts_at, channel, recipient, message_id, note)
    ON CONFLICT (appointment_id, starts_at) DO UPDATE SET
        state = 'claimed', channel = EXCLUDED.channel, recipient = EXCLUDED.recipient,
        message_id = EXCLUDED.message_id, owner = EXCLUDED.owner, owner_attempt = EXCLUDED.owner_attempt,
        reason = EXCLUDED.reason, attempts = reminder_deliveries.attempts + 1, claimed_at = now(),
        updated_at = now()
    WHERE reminder_deliveries.state <> 'sent' AND (reminder_deliveries.state <> 'failed' OR $8)
    RETURNING appointment_id"""
_UPSERT_SKIPPED = """
    INSERT INTO reminder_deliveries (appointment_id, starts_at, state, reason, owner, updated_at)
    SELECT id, starts_at, 'skipped', reason, $4, now()
    FROM unnest($1::uuid[], $2::timestamptz[], $3::text[]) AS t (id, starts_at, reason)
    ON CONFLICT (appointment_id, starts_at) DO UPDATE SET
        state = 'skipped', reason = EXCLUDED.reason, owner = EXCLUDED.owner, updated_at = now()
    WHERE reminder_deliveries.state NOT IN ('sent', 'failed')"""
# Right before the provider call: still ours, from this very attempt? A superseded attempt stops.
# A read, not a write: a takeover commits under the appointment's lock either before it (seen
# here) or after (then this message was in flight, the bound the design allows), and a commit
# per message would cost a WAL flush each. 'sent' / 'failed': the attempt this one took the claim
# over from was sending it at that instant and has recorded the outcome since. Exactly one row,
# also for a claim that is gone. The checks asked while the previous ones were read go in one
# round trip (_Grouped, asyncpg's fetchmany: one statement each, pipelined), each still read after
# its sender took its connection slot, right before its send.
_CONFIRM = """
    SELECT d.owner = $3 AND d.owner_attempt = $4 AND d.state = 'claimed' AS mine, d.state
    FROM (VALUES (1)) AS asked
    LEFT JOIN reminder_deliveries d ON d.appointment_id = $1 AND d.starts_at = $2"""
# Skipped and deferred rows stay eligible: the next run claims them again. Only this attempt's own
# claims: one a newer attempt took over is the newer attempt's to send. (An attempt claims an
# appointment once, for one start time: its owner and attempt name the row.)
_GIVE_BACK = """
    UPDATE reminder_deliveries SET state = $5, reason = $4, updated_at = now()
    WHERE appointment_id = ANY($1::uuid[]) AND owner = $2 AND owner_attempt = $3 AND state = 'claimed'"""
# Deferred rows whose appointment is now inside the minimum lead ($1): no run fetches them again.
# Appointments first, as the claim transaction locks them; one a claim holds is left to the claim
# (which records it the same way) or to the next run.
_LATE_DEFERRALS = """
    SELECT a.id FROM reminder_deliveries d
    JOIN appointments a ON a.id = d.appointment_id AND a.starts_at = d.starts_at
    WHERE d.state = 'deferred' AND a.starts_at < now() + $1::interval
    ORDER BY a.id
    FOR UPDATE OF a SKIP LOCKED"""
_FAIL_DEFERRED = """
    UPDATE reminder_deliveries d
    SET state = 'failed', updated_at = now(),
        reason = left('deferred until too late (last answer: ' || coalesce(d.reason, '') || ')', 500)
    FROM appointments a
    WHERE a.id = d.appointment_id AND a.starts_at = d.starts_at
      AND d.appointment_id = ANY($1::uuid[]) AND d.state = 'deferred'
    RETURNING d.appointment_id"""
# A deferral of a start time the appointment has moved from: nothing is owed for that time any more
# (the new time is owed on its own row).
_MOVED_DEFERRALS = """
    UPDATE reminder_deliveries d
    SET state = 'skipped', reason = 'moved to another time', updated_at = now()
    FROM appointments a
    WHERE a.id = d.appointment_id AND d.state = 'deferred' AND a.starts_at <> d.starts_at"""


class ClaimStore:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        lease: timedelta,
        lead: timedelta,
        window: timedelta,
        sender: str,
        quiet_hours: tuple[time, time] | None = None,
    ) -> None:
        self._pool = pool
        self._lease, self._lead, self._window = lease, lead, window
        self._sender = sender
        self._quiet_hours = quiet_hours
        self._checks = _Grouped(self._confirm_group)

    async def claim(self, appointment_ids: list[UUID], owner: Owner, *, retry: bool = False) -> list[Claim]:
        """Re-check everything under the appointments' row locks, then claim each or record a skip.

        One transaction for a small group: the check stays a fraction of a second ahead of the send.
        With `retry`, a reminder another run recorded as failed is claimed again (an operator's
        retry once the address is fixed).
        """
        claims: dict[UUID, Claim] = {}
        skipped: list[tuple[UUID, datetime, str]] = []
        too_late: list[UUID] = []
        async with self._pool.acquire() as connection, connection.transaction():
            locked = [row["id"] for row in await connection.fetch(_LOCK, appointment_ids)]
            read = _CLAIM_READ, locked, self._lease, self._lead, self._window
            rows = await connection.fetch(*read) if locked else []
            overrides = await store_overrides(connection, {row["store_id"] for row in rows})
            for row in rows:
                state = _state(row)
                if retry and state.delivery_state == "failed" and state.delivery_owner != owner.run:
                    state = replace(state, delivery_state="skipped")
                route = route_of(row)
                decision = decide(state, owner, route)
                if decision == "send" and route is not None:
                    claim = self._quiet_hours_rule(row, route, context_of(row, overrides))
                    if isinstance(claim, ToSend):
                        claims[row["id"]] = claim
                        continue
                    quiet, why = claim
                    claims[row["id"]] = Settled(row["id"], quiet)
                    skipped.append((row["id"], row["starts_at"], why))
                    continue
                claims[row["id"]] = Settled(
                    row["id"], decision, row["delivery_state"], row["delivery_channel"]
                )
                reason = skip_reason(state, decision)
                if reason is not None:
                    skipped.append((row["id"], row["starts_at"], reason))
                elif decision == "too_late":
                    too_late.append(row["id"])
            sending = [claim for claim in claims.values() if isinstance(claim, ToSend)]
            if sending:
                columns = [
                    [c.appointment_id for c in sending],
                    [c.route.channel for c in sending],
                    [c.route.address for c in sending],
                    [reminder_message_id(c.appointment_id, c.starts_at, self._sender) for c in sending],
                ]
                taken = {
                    r["appointment_id"]
                    for r in await connection.fetch(
                        _UPSERT_CLAIMED,
                        *columns,
                        owner.run,
                        owner.attempt,
                        [c.starts_at for c in sending],
                        retry,
                        [c.note for c in sending],
                    )
                }
                for claim in sending:
                    if claim.appointment_id not in taken:  # finished by a stale attempt meanwhile
                        claims[claim.appointment_id] = Settled(claim.appointment_id, "elsewhere")
            if skipped:
                await connection.execute(_UPSERT_SKIPPED, *map(list, zip(*skipped, strict=True)), owner.run)
            if too_late:
                await connection.execute(_FAIL_DEFERRED, too_late)
        # An appointment deleted since the fetch has nothing left to remind.
        return [
            claims.get(appointment_id) or Settled(appointment_id, "not_due")
            for appointment_id in appointment_ids
        ]

    def _quiet_hours_rule(
        self, row: asyncpg.Record, route: Route, context: ReminderContext
    ) -> ToSend | tuple[Decision, str]:
        """The claim of a reminder that may send: a text inside the store's quiet hours waits for
        the first run after them, or goes by email, or is skipped; with the reason recorded."""
        fallback = email_route(row["email"]) if route.channel == "sms" else None
        claim = ToSend(
            row["id"],
            context,
            route,
            fallback=fallback,
            customer_id=row["customer_id"],
            rescheduled=row["rescheduled"],
        )
        if route.channel != "sms":
            return claim
        zone = store_zone(row["store_timezone"])
        verdict, until = quiet_verdict(
            row["checked_at"],
            zone,
            self._quiet_hours,
            starts_at=row["starts_at"],
            lead=self._lead,
            has_email=fallback is not None,
        )
        if verdict == "send":
            return claim
        assert until is not None
        local_end = until.astimezone(zone).strftime("%H:%M")
        if verdict == "wait":
            return "quiet_hours_wait", f"quiet hours: the SMS waits for the first run after {local_end} local"
        if verdict == "email" and fallback is not None:
            note = "quiet hours: sent by email instead of SMS"
            return replace(claim, route=fallback, fallback=None, note=note)
        return "quiet_hours", f"quiet hours until {local_end} local, too late after them, and no email"

    async def confirm(self, appointment_id: UUID, starts_at: datetime, owner: Owner) -> Confirmation:
        """Whether this attempt still holds the claim, read in one statement with the other sends'."""
        return await self._checks(_Check(appointment_id, starts_at, owner.run, owner.attempt))

    async def _confirm_group(self, group: list[_Check]) -> list[Confirmation]:
        return [_confirmation(row) for row in await self._pool.fetchmany(_CONFIRM, group)]

    async def release(self, appointment_ids: list[UUID], owner: Owner, reason: str) -> None:
        """Claims a misconfigured channel could not send: the next run sends them."""
        await self._give_back(appointment_ids, owner, reason, "skipped")

    async def defer(self, appointment_id: UUID, owner: Owner, reason: str) -> None:
        """A reminder whose recipient the provider refused for now: the next run tries it again."""
        await self._give_back([appointment_id], owner, reason, "deferred")

    async def _give_back(self, appointment_ids: list[UUID], owner: Owner, reason: str, state: str) -> None:
        await self._pool.execute(_GIVE_BACK, appointment_ids, owner.run, owner.attempt, reason[:500], state)

    async def fail_late_deferrals(self) -> int:
        """Records as failed every deferred reminder whose appointment is now inside the minimum
        lead (no run would fetch it again); returns how many."""
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute(_MOVED_DEFERRALS)
            late = [row["id"] for row in await connection.fetch(_LATE_DEFERRALS, self._lead)]
            if not late:
                return 0
            return len(await connection.fetch(_FAIL_DEFERRED, late))


class _Check(NamedTuple):
    """One ownership check, in _CONFIRM's parameter order."""

    appointment_id: UUID
    starts_at: datetime
    owner: str
    attempt: int


def _confirmation(row: asyncpg.Record) -> Confirmation:
    if row["mine"]:
        return "mine"
    state = row["state"]  # None: no row, the appointment or its start time is gone
    return "sent" if state == "sent" else "failed" if state == "failed" else "lost"


def _state(row: asyncpg.Record) -> ClaimState:
    return ClaimState(
        status=row["status"],
        started=row["started"],
        too_soon=row["too_soon"],
        beyond_window=row["beyond"],
        reminder_sent=row["reminder_sent"],
        consent=row["consent_reminders"],
        delivery_state=row["delivery_state"],
        delivery_owner=row["delivery_owner"],
        delivery_attempt=row["delivery_attempt"],
        claim_expired=row["claim_expired"],
        rescheduled=row["rescheduled"],
    )


# --- Records: what a provider did with a claimed reminder (sent, or refused for good).

# A provider's acceptance is a fact: recorded whoever holds the claim now. The appointment is
# locked first (an InitPlan runs before the scan), the order the claim transaction takes its
# locks in, so a claim by an overlapping attempt and this record never deadlock. The channel and
# recipient are those the reminder went by ($4, $5: an SMS refused for the number went by email),
# and the reason keeps why ($6). `reminder_sent_at` is the latest reminder's time.
# The sends that finished while the previous records were written are recorded together
# (_Grouped, asyncpg's executemany: one statement each, pipelined in one transaction, so one
# round trip and one commit), in appointment id order as the claims lock them.
_MARK_SENT = """
    WITH locked AS (SELECT id FROM appointments WHERE id = $1 FOR UPDATE),
    delivery AS (
        UPDATE reminder_deliveries
        SET state = 'sent', sent_at = now(), provider_id = $3, channel = $4, recipient = $5, reason = $6,
            updated_at = now()
        WHERE appointment_id = (SELECT id FROM locked) AND starts_at = $2
        RETURNING appointment_id)
    UPDATE appointments SET reminder_sent_at = now()
    WHERE id IN (SELECT appointment_id FROM delivery)"""
_MARK_FAILED = """
    UPDATE reminder_deliveries SET state = 'failed', reason = $3, updated_at = now()
    WHERE appointment_id = $1 AND starts_at = $2 AND state = 'claimed'"""
# The provider's answer that the number unsubscribed (it texted STOP); the main backend clears it
# on re-consent. The first answer's time is kept.
_OPTED_OUT = """
    UPDATE customers SET sms_opted_out_at = now() WHERE id = $1 AND sms_opted_out_at IS NULL"""

# Pauses between local retries of the "sent" record: about 4 s in all.
RECORD_RETRY_DELAYS = (0.25, 0.5, 1.0, 2.0)


class _Sent(NamedTuple):
    """One sent record, in _MARK_SENT's parameter order."""

    appointment_id: UUID
    starts_at: datetime
    provider_id: str | None
    channel: str
    recipient: str
    reason: str | None


class DeliveryRecords:
    def __init__(self, pool: asyncpg.Pool, *, retry_delays: tuple[float, ...] = RECORD_RETRY_DELAYS) -> None:
        self._pool = pool
        self._retry_delays = retry_delays
        # Transient faults are retried inside _record_sent; anything else may be one row's own
        # (a trigger, a constraint): the group is recorded again row by row.
        self._sent = _Grouped(self._record_sent, split=lambda error: not is_transient(error))

    async def mark_sent(
        self, claim: ToSend, provider_id: str | None, *, via: Route | None = None, note: str | None = None
    ) -> None:
        """Returns once the send is recorded, in one statement and commit with the sends that
        finished while the previous record was written. Retried here a few times: the message is
        out, and failing the activity now would send it again on the retry, where a short
        database blip is better simply waited out. A cancelled caller still waits for its record."""
        route = via or claim.route
        reason = (note or claim.note or "")[:500] or None
        await self._sent(
            _Sent(claim.appointment_id, claim.starts_at, provider_id, route.channel, route.address, reason)
        )

    async def _record_sent(self, group: list[_Sent]) -> list[None]:
        await self._write_sent(sorted(group, key=lambda record: record.appointment_id))
        return [None] * len(group)

    async def _write_sent(self, group: list[_Sent]) -> None:
        for delay in (*self._retry_delays, None):
            try:
                await self._pool.executemany(_MARK_SENT, group)
                return
            except Exception as error:
                if delay is None or not is_transient(error):
                    raise
                log.warning(
                    "recording %d sent reminders failed (%s), again in %.2f s",
                    len(group),
                    type(error).__name__,
                    delay,
                )
                await asyncio.sleep(delay)

    async def mark_failed(self, claim: ToSend, reason: str) -> None:
        await self._pool.execute(_MARK_FAILED, claim.appointment_id, claim.starts_at, reason[:500])

    async def mark_sms_opted_out(self, customer_id: UUID) -> None:
        await self._pool.execute(_OPTED_OUT, customer_id)
