"""Which channel and address a reminder goes to, and the decision taken at claim time (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from petcare.models.reminders import Channel

ACTIVE_STATUSES = frozenset({"scheduled", "confirmed"})

Decision = Literal[
    "send",  # claimed by this run: send it
    "done_here",  # this run sent or failed it in an earlier attempt: count it, do not send again
    "elsewhere",  # reminded, failed or being sent by another run
    "no_consent",
    "no_address",
    "not_due",  # cancelled, completed, or already started
]


@dataclass(frozen=True)
class Route:
    channel: Channel
    address: str


def choose_route(preferred: str, email: str | None, phone: str | None) -> Route | None:
    """The preferred channel when its address exists, else the other one, else nothing."""
    addresses: dict[Channel, str | None] = {"email": _clean(email), "sms": _clean(phone)}
    first: Channel = "sms" if preferred == "sms" else "email"
    second: Channel = "email" if first == "sms" else "sms"
    for channel in (first, second):
        address = addresses[channel]
        if address:
            return Route(channel, address)
    return None


def _clean(value: str | None) -> str | None:
    stripped = (value or "").strip()
    return stripped or None


@dataclass(frozen=True)
class ClaimState:
    """What the claim transaction read about one appointment, under its row lock."""

    status: str
    started: bool
    reminder_sent: bool
    consent: bool
    delivery_state: str | None
    delivery_owner: str | None
    claim_expired: bool


def decide(state: ClaimState, owner: str, route: Route | None) -> Decision:
    if state.delivery_state in ("sent", "failed"):
        return "done_here" if state.delivery_owner == owner else "elsewhere"
    if state.reminder_sent:  # the main backend (or an older system) reminded it already
        return "elsewhere"
    if state.delivery_state == "claimed" and state.delivery_owner != owner and not state.claim_expired:
        return "elsewhere"
    if state.status not in ACTIVE_STATUSES or state.started:
        return "not_due"
    if not state.consent:
        return "no_consent"
    if route is None:
        return "no_address"
    return "send"
