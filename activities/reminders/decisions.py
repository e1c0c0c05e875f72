"""The pure decisions of a send: the route (channel, address), whether a claim may send, how it counts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from uuid import UUID
from zoneinfo import ZoneInfo

from activities.reminders.messages import ReminderContext
from petcare.models.reminders import Channel, ReminderCounts

ACTIVE_STATUSES = frozenset({"scheduled", "confirmed"})

Decision = Literal[
    "send",  # claimed by this run: send it
    "done_here",  # this run sent or failed it in an earlier attempt: count it, do not send again
    "elsewhere",  # reminded, failed or being sent by another run
    "no_consent",
    "no_address",
    "not_due",  # cancelled, completed, started, or no longer inside the window
    "too_late",  # deferred by a provider (a full mailbox...) until inside the minimum lead: failed
    "superseded",  # a newer attempt of this same run holds it: this attempt must stop
    "quiet_hours_wait",  # a text inside the store's quiet hours: the first run after them sends it
    "quiet_hours",  # a text inside quiet hours, too late after them, and no email: skipped
]


@dataclass(frozen=True)
class Route:
    channel: Channel
    address: str


def choose_route(
    preferred: str, email: str | None, phone: str | None, *, sms_opted_out: bool = False
) -> Route | None:
    """The preferred channel when its address exists, else the other one, else nothing. A customer
    who opted out of SMS has no SMS address."""
    addresses: dict[Channel, str | None] = {
        "email": _clean(email),
        "sms": None if sms_opted_out else _clean(phone),
    }
    first: Channel = "sms" if preferred == "sms" else "email"
    second: Channel = "email" if first == "sms" else "sms"
    for channel in (first, second):
        address = addresses[channel]
        if address:
            return Route(channel, address)
    return None


def email_route(email: str | None) -> Route | None:
    """Where a text that cannot go (opted out, a landline, quiet hours) goes instead, if anywhere."""
    address = _clean(email)
    return Route("email", address) if address else None


def _clean(value: str | None) -> str | None:
    stripped = (value or "").strip()
    return stripped or None


# --- Quiet hours: no SMS in the store-local night; the wall clock, so right across DST changes.

QuietVerdict = Literal["send", "wait", "email", "skip"]


def quiet_until(now: datetime, zone: ZoneInfo, period: tuple[time, time]) -> datetime | None:
    """When the quiet hours holding `now` end (an instant), or None when `now` is outside them.

    `period` is (start, end) on the store's wall clock, and may span midnight (21:00-08:00)."""
    start, end = period
    local = now.astimezone(zone)
    clock = local.time().replace(tzinfo=None)
    today = local.date()
    if start > end:  # spans midnight
        if clock >= start:
            return _at(today + timedelta(days=1), end, zone)
        if clock < end:
            return _at(today, end, zone)
        return None
    return _at(today, end, zone) if start <= clock < end else None


def _at(day: date, clock: time, zone: ZoneInfo) -> datetime:
    # A wall-clock time inside a spring-forward gap reads as the offset before the change (fold 0):
    # 02:30 on that night is 03:30 of the new offset, the first moment the clock shows past 02:30.
    # As UTC: an aware time inside a gap compares unequal to every other zone's (PEP 495).
    return datetime.combine(day, clock, tzinfo=zone).astimezone(UTC)


def quiet_verdict(
    now: datetime,
    zone: ZoneInfo,
    period: tuple[time, time] | None,
    *,
    starts_at: datetime,
    lead: timedelta,
    has_email: bool,
) -> tuple[QuietVerdict, datetime | None]:
    """What becomes of a text due now: sent ("send"), left for the first run after the quiet hours
    if that run is still before the minimum lead ("wait"), else by email ("email") or not at all
    ("skip"). With the instant the quiet hours end, when they hold now."""
    until = None if period is None else quiet_until(now, zone, period)
    if until is None:
        return "send", None
    if until + lead <= starts_at:
        return "wait", until
    return ("email" if has_email else "skip"), until


@dataclass(frozen=True)
class Owner:
    """Who holds a claim: a workflow run, and which attempt of its send activity."""

    run: str  # workflow_id/run_id
    attempt: int


@dataclass(frozen=True)
class ClaimState:
    """What the claim transaction read about one appointment, under its row lock."""

    status: str
    started: bool
    # Measured from now() in the claim transaction: the window is re-checked at each claim.
    too_soon: bool
    beyond_window: bool
    reminder_sent: bool
    consent: bool
    delivery_state: str | None
    delivery_owner: str | None
    delivery_attempt: int | None
    claim_expired: bool
    # A reminder of this appointment was sent for an earlier start time: it moved since.
    rescheduled: bool = False


def decide(state: ClaimState, owner: Owner, route: Route | None) -> Decision:
    if state.delivery_state in ("sent", "failed"):
        return "done_here" if state.delivery_owner == owner.run else "elsewhere"
    if state.reminder_sent:  # the main backend (or an older system) reminded it already
        return "elsewhere"
    if state.delivery_state == "claimed":
        held = _claim_holder(state, owner)
        if held is not None:
            return held
    if state.status not in ACTIVE_STATUSES or state.beyond_window:
        return "not_due"
    if state.started or state.too_soon:
        # A reminder the provider kept deferring will not go out now: recorded as failed, not
        # left as a deferral no run would ever pick up again.
        return "too_late" if state.delivery_state == "deferred" else "not_due"
    if not state.consent:
        return "no_consent"
    if route is None:
        return "no_address"
    return "send"


def _claim_holder(state: ClaimState, owner: Owner) -> Decision | None:
    """None when this attempt may (re)claim an appointment someone claimed, else who holds it."""
    if state.delivery_owner == owner.run:
        held_by = state.delivery_attempt or 0
        # An older attempt of this run timed out: its claims pass to this one (it re-checks before
        # each send and stops). A newer attempt holding it means this attempt is the stale one.
        return "superseded" if held_by > owner.attempt else None
    return None if state.claim_expired else "elsewhere"


def skip_reason(state: ClaimState, decision: Decision) -> str | None:
    """What a skipped delivery row records, for the decisions that write one."""
    if decision in ("no_consent", "no_address"):
        return decision
    if decision != "not_due":
        return None
    if state.status not in ACTIVE_STATUSES:
        return state.status
    if state.started:
        return "started"
    return "too_soon" if state.too_soon else "outside_window"


@dataclass(frozen=True)
class ToSend:
    """Claimed by this attempt: what to send, where."""

    appointment_id: UUID
    context: ReminderContext
    route: Route
    # Where a text goes when the provider refuses the number (opted out, a landline), if anywhere.
    fallback: Route | None = None
    customer_id: UUID | None = None
    rescheduled: bool = False
    # Why this reminder does not go by the customer's preferred channel (kept in its record).
    note: str | None = None

    @property
    def starts_at(self) -> datetime:
        """The start time this reminder names: with the appointment, its delivery record's key."""
        return self.context.starts_at


@dataclass(frozen=True)
class Settled:
    """Needs no send by this attempt; counted as its decision says."""

    appointment_id: UUID
    decision: Decision
    finished_state: str | None = None  # for "done_here": what the earlier attempt recorded
    finished_channel: str | None = None


Claim = ToSend | Settled
# "mine": send it; "sent" / "failed": an older attempt finished it meanwhile; "lost": stop.
Confirmation = Literal["mine", "sent", "failed", "lost"]


# The page's counter of each decision that needs no send now (besides "done_here", below; a
# "superseded" one is not this attempt's to count).
_SETTLED_COUNTERS: dict[str, str] = {
    "elsewhere": "handled_elsewhere",
    "no_consent": "skipped_no_consent",
    "no_address": "skipped_no_address",
    "not_due": "skipped_not_due",
    "too_late": "failed",
    "quiet_hours_wait": "quiet_hours_waiting",
    "quiet_hours": "skipped_quiet_hours",
}


def count_settled(claim: Settled, counts: ReminderCounts) -> None:
    """Adds an appointment that needs no send now to the page's counts."""
    if claim.decision == "done_here":
        # Sent or failed by an earlier attempt of this same run: counted once, in this result.
        if claim.finished_state == "failed":
            counter = "failed"
        else:
            counter = "sent_sms" if claim.finished_channel == "sms" else "sent_email"
    elif claim.decision in _SETTLED_COUNTERS:
        counter = _SETTLED_COUNTERS[claim.decision]
    else:
        return
    setattr(counts, counter, getattr(counts, counter) + 1)
