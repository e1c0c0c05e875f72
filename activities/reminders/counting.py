"""How each claim outcome that needs no send adds to a page's counts."""

from __future__ import annotations

from activities.reminders.planning import Settled
from petcare.models.reminders import ReminderCounts


def count_settled(claim: Settled, counts: ReminderCounts) -> None:
    """Adds an appointment that needs no send now to the page's counts."""
    if claim.decision == "done_here":
        # Sent or failed by an earlier attempt of this same run: counted once, in this result.
        if claim.finished_state == "failed":
            counts.failed += 1
        elif claim.finished_channel == "sms":
            counts.sent_sms += 1
        else:
            counts.sent_email += 1
    elif claim.decision == "elsewhere":
        counts.handled_elsewhere += 1
    elif claim.decision == "no_consent":
        counts.skipped_no_consent += 1
    elif claim.decision == "no_address":
        counts.skipped_no_address += 1
    elif claim.decision == "not_due":
        counts.skipped_not_due += 1
    elif claim.decision == "too_late":
        counts.failed += 1
