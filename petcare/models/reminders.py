"""Appointment reminder models shared by the workflow, its activities and the API (I/O-free)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

Channel = Literal["email", "sms"]

# The fixed id of manual runs: a second trigger while one runs finds it instead of starting another.
MANUAL_WORKFLOW_ID = "appointment-reminder-manual"
DRY_RUN_WORKFLOW_TYPE = "AppointmentReminderDryRunWorkflow"

# One attempt at sending a page may last this long (the workflow's start-to-close timeout).
SEND_PAGE_TIMEOUT = timedelta(minutes=10)
# Another run takes over a claim only after this: longer than any attempt can live, so a claim is
# never taken from an attempt Temporal still considers running.
CLAIM_LEASE = SEND_PAGE_TIMEOUT + timedelta(minutes=5)

# The dry run: one short activity, retried once; the API waits for the whole of it, no less.
PREVIEW_TIMEOUT = timedelta(seconds=15)
PREVIEW_ATTEMPTS = 2
PREVIEW_RETRY_INTERVAL = timedelta(seconds=1)
# Both attempts, the pause between them, and a few seconds for the workflow's own tasks.
DRY_RUN_TIMEOUT = PREVIEW_TIMEOUT * PREVIEW_ATTEMPTS + PREVIEW_RETRY_INTERVAL + timedelta(seconds=4)


class PageCursor(BaseModel):
    """Keyset position: the last (starts_at, id) of the previous page."""

    starts_at: datetime
    appointment_id: UUID


class ReminderCounts(BaseModel):
    """What a run (or one page of it) did with the appointments it found due."""

    due: int = 0
    sent_email: int = 0
    sent_sms: int = 0
    skipped_no_consent: int = 0
    skipped_no_address: int = 0
    # Cancelled, or no longer inside the window (moved, or too close to start) by the time of sending.
    skipped_not_due: int = 0
    # Reminded or being reminded by another run (a concurrent schedule tick or manual trigger).
    handled_elsewhere: int = 0
    failed: int = 0
    # Claims given back because their channel's provider refused our configuration: the next run
    # (after the settings are fixed) sends them.
    released: int = 0
    # Given back because the provider refused the recipient for now (a full mailbox, greylisting, a
    # busy number): a later run tries again, until the appointment is inside the minimum lead.
    deferred: int = 0
    # Of the sent: reminders of an appointment moved after an earlier reminder (its new time).
    rescheduled: int = 0
    # SMS refused because the number unsubscribed (texted STOP): recorded on the customer, sent by
    # email when there is an address, else failed.
    sms_opted_out: int = 0
    # Texts held back by the store's quiet hours: waiting for the first run after them, or recorded
    # skipped (no email address, and after the quiet hours it would be too late).
    quiet_hours_waiting: int = 0
    skipped_quiet_hours: int = 0

    def plus(self, other: ReminderCounts) -> ReminderCounts:
        return ReminderCounts(
            **{name: getattr(self, name) + getattr(other, name) for name in ReminderCounts.model_fields}
        )

    @property
    def sent(self) -> int:
        return self.sent_email + self.sent_sms


class PageResult(ReminderCounts):
    """What one page did, and what stopped a channel: a provider that refuses our settings."""

    problems: list[str] = Field(default_factory=list)


class ReminderRunInput(BaseModel):
    """`{}` starts a run; the other fields carry a run's progress across continue-as-new."""

    as_of: datetime | None = None
    cursor: PageCursor | None = None
    counts: ReminderCounts = Field(default_factory=ReminderCounts)
    pages: int = Field(default=0, ge=0)
    runs: int = Field(default=0, ge=0)
    # History stays bounded: each run handles at most this many pages, then continues as new.
    pages_per_run: int = Field(default=20, ge=1, le=500)
    # How soon a send activity on a vanished worker is retried elsewhere.
    heartbeat_timeout_seconds: float = Field(default=30.0, ge=2, le=600)
    # Configuration problems met by earlier pages: the run sends what it can, then fails with them.
    problems: list[str] = Field(default_factory=list)
    # A retry from the API (POST /api/v1/reminders/deliveries/{id}/retry): only these appointments,
    # one page, their failed reminders sent again. None: every due appointment.
    retry: list[UUID] | None = Field(default=None, max_length=100)


class ReminderRunResult(BaseModel):
    as_of: datetime
    pages: int
    runs: int
    counts: ReminderCounts


class FetchDuePage(BaseModel):
    as_of: datetime
    after: PageCursor | None = None


class DuePage(BaseModel):
    appointment_ids: list[UUID]
    # None when this was the last page.
    next_cursor: PageCursor | None
    # Deferred reminders recorded as failed while fetching the first page: their appointment is
    # now inside the minimum lead, so no page will hold them again.
    late_deferrals: int = 0


class SendPage(BaseModel):
    appointment_ids: list[UUID]
    # A retry: a failed reminder of these appointments (recorded by another run) is claimed again.
    retry_failed: bool = False


class ReminderDryRunInput(BaseModel):
    as_of: datetime | None = None
    preview_limit: int | None = Field(default=None, ge=0, le=100)


class PreviewRequest(BaseModel):
    as_of: datetime
    preview_limit: int | None = None


class PreviewMessage(BaseModel):
    appointment_id: UUID
    channel: Channel
    recipient: str
    locale: str
    starts_at_local: str
    subject: str | None
    text: str
    # A reminder of an appointment moved since an earlier reminder: this one names the new time.
    rescheduled: bool = False
    # Where the words come from: the store's own templates for this locale, or the defaults.
    templates: Literal["override", "default"] = "default"


class PlannedCounts(BaseModel):
    due: int = 0
    email: int = 0
    sms: int = 0
    skipped_no_address: int = 0
    # Reminders owed again because their appointment moved after an earlier reminder.
    rescheduled: int = 0
    # Due appointments whose customer opted out of SMS (no text is tried; email if they have one).
    sms_opted_out: int = 0


class ReminderPreview(BaseModel):
    """What a run would send now, sending and marking nothing."""

    as_of: datetime
    counts: PlannedCounts
    messages: list[PreviewMessage]


class TemplateOverride(BaseModel):
    """A store's own words for one locale (`reminder_templates`); None: the default wording."""

    model_config = ConfigDict(frozen=True)

    email_subject: str | None = None
    email_body: str | None = None  # plain text; the HTML alternative is made from it
    sms: str | None = None
