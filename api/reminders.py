"""Reminders over HTTP: each store's own words per locale, who was reminded (the delivery records), and
the retry of a failed reminder once its address is fixed.

(The reminder run's trigger and dry run stay with the other job triggers, in api/workers.py.)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal
from uuid import UUID

import asyncpg
from aiohttp import web
from pydantic import AwareDatetime, Field, field_validator
from temporalio.common import SearchAttributePair

from activities.reminders.decisions import ClaimState, Owner, choose_route, decide, skip_reason
from activities.reminders.messages import override_problems
from activities.reminders.templates import LOCALES, PLACEHOLDERS
from api.backends import POOL, SETTINGS, TEMPORAL, database_call, require_store, start_or_join, temporal_call
from api.middlewares import ApiError
from api.models import (
    CamelModel,
    CamelRequest,
    Keyset,
    PageQuery,
    StartedRun,
    cursor_scope,
    json_model,
    keyset_page,
    path_uuid,
    read_model,
    read_query,
)
from api.openapi import documented
from petcare import reminders_repository as repository
from petcare.jobs import APPOINTMENT_REMINDER, JOB_ATTRIBUTE
from petcare.models.reminders import ReminderRunInput, TemplateOverride

# --- /api/v1/stores/{storeId}/reminder-templates/{locale}

Source = Literal["override", "default"]


class TemplateRequest(CamelRequest):
    """Each field optional: a field left out (or null) uses the default wording."""

    email_subject: str | None = Field(default=None, max_length=300)
    email_body: str | None = Field(default=None, max_length=10_000)
    sms: str | None = Field(default=None, max_length=1_000)

    @field_validator("email_subject", "email_body", "sms")
    @classmethod
    def _storable(cls, value: str | None) -> str | None:
        # PostgreSQL text holds neither NUL nor lone surrogates: refused here, not as a 500 there.
        if value is not None and ("\x00" in value or not _encodable(value)):
            raise ValueError("must be text without NUL characters or unpaired surrogates")
        return value


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class TemplateField(CamelModel):
    template: str
    source: Source


class Placeholder(CamelModel):
    name: str  # written {name} in a template
    description: str


class ReminderTemplates(CamelModel):
    store_id: UUID
    locale: str
    email_subject: TemplateField
    email_body: TemplateField  # plain text; the HTML alternative is made from it
    # The default SMS has shorter wordings it falls back to for long names; an override is cut
    # to two segments instead (it was checked to fit for a long sample when written).
    sms: TemplateField
    placeholders: list[Placeholder]


PLACEHOLDER_LIST = [Placeholder(name=name, description=text) for name, text in PLACEHOLDERS.items()]


def _effective(store_id: UUID, locale: str, override: TemplateOverride | None) -> ReminderTemplates:
    own = override or TemplateOverride()
    texts = LOCALES[locale]

    def field(value: str | None, default: str) -> TemplateField:
        if value is None:
            return TemplateField(template=default, source="default")
        return TemplateField(template=value, source="override")

    return ReminderTemplates(
        store_id=store_id,
        locale=locale,
        email_subject=field(own.email_subject, texts.subject),
        email_body=field(own.email_body, texts.text),
        sms=field(own.sms, texts.sms[0]),
        placeholders=PLACEHOLDER_LIST,
    )


def _locale(request: web.Request) -> str:
    locale = request.match_info["locale"]
    if locale not in LOCALES:
        supported = ", ".join(sorted(LOCALES))
        raise ApiError(
            404, "not_found", f"no reminder templates for locale {locale!r} (supported: {supported})"
        )
    return locale


@documented(
    "A store's reminder templates for one locale (en, es, fr) as reminders use them: each field its "
    "override or the default, and which; with the placeholders a template may use",
    response=ReminderTemplates,
    errors=(400, 404),
    path_formats={"storeId": "uuid"},
    tags=("reminders",),
)
async def get_templates(request: web.Request) -> web.Response:
    store_id, locale = path_uuid(request, "storeId"), _locale(request)
    async with database_call(), request.app[POOL].acquire() as connection:
        await require_store(connection, store_id)
        override = await repository.get_override(connection, store_id, locale)
    return json_model(_effective(store_id, locale, override))


@documented(
    "Set a store's own reminder words for one locale (each field optional: left out, the default). "
    "422 naming the field for an unknown placeholder, a template that does not render, an SMS over "
    "two segments for a long sample, a subject with a line break",
    request=TemplateRequest,
    response=ReminderTemplates,
    errors=(400, 404, 422),
    path_formats={"storeId": "uuid"},
    tags=("reminders",),
)
async def put_templates(request: web.Request) -> web.Response:
    store_id, locale = path_uuid(request, "storeId"), _locale(request)
    body = await read_model(request, TemplateRequest)
    override = TemplateOverride(email_subject=body.email_subject, email_body=body.email_body, sms=body.sms)
    problems = override_problems(locale, override)
    if problems:
        detail = "; ".join(f"{field}: {problem}" for field, problem in problems)
        raise ApiError(422, "invalid_template", f"invalid template: {detail}")
    async with database_call(), request.app[POOL].acquire() as connection:
        await require_store(connection, store_id)
        await repository.put_override(connection, store_id, locale, override)
    return json_model(_effective(store_id, locale, override))


@documented(
    "Back to the default reminder words for this store and locale",
    response=ReminderTemplates,
    errors=(400, 404),
    path_formats={"storeId": "uuid"},
    tags=("reminders",),
)
async def delete_templates(request: web.Request) -> web.Response:
    store_id, locale = path_uuid(request, "storeId"), _locale(request)
    async with database_call(), request.app[POOL].acquire() as connection:
        await require_store(connection, store_id)
        await repository.delete_override(connection, store_id, locale)
    return json_model(_effective(store_id, locale, None))


# --- GET /api/v1/reminders/deliveries

DeliveryState = Literal["claimed", "sent", "failed", "skipped", "deferred"]
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(3000, 1, 1, tzinfo=UTC)


class DeliveriesQuery(PageQuery):
    appointment_id: UUID | None = None
    customer_id: UUID | None = None
    state: DeliveryState | None = None
    since: AwareDatetime | None = None  # records changed at or after this instant
    limit: int = Field(default=50, ge=1, le=500)

    @field_validator("since")
    @classmethod
    def _in_range(cls, value: datetime | None) -> datetime | None:
        if value is not None and not EARLIEST <= value < LATEST:
            raise ValueError("must be in the years 1970 to 2999 (UTC)")
        return value


class Delivery(CamelModel):
    appointment_id: UUID
    customer_id: UUID
    starts_at: datetime  # the start time this record reminds of
    # The appointment's start time now: different when it moved since (a new reminder is owed).
    appointment_starts_at: datetime
    channel: Literal["email", "sms"] | None
    recipient: str | None
    state: DeliveryState
    # Why it failed, was skipped or deferred; for a sent one, why it went by another channel.
    error: str | None
    attempts: int
    claimed_at: datetime | None
    sent_at: datetime | None
    updated_at: datetime


class DeliveryList(CamelModel):
    deliveries: list[Delivery]
    next_cursor: str | None  # null on the last page


DELIVERIES_LIST = "reminder-deliveries"


def _keyset(delivery: Delivery) -> Keyset:
    # One appointment has a delivery per start time it was reminded of: the start orders them.
    return Keyset(delivery.updated_at, delivery.appointment_id, then=delivery.starts_at)


@documented(
    "Reminder delivery records, most recently changed first: which appointment and start time, "
    "channel, state, error, times; filter by appointmentId, customerId, state, since; page with "
    "limit and the previous page's nextCursor",
    response=DeliveryList,
    query=DeliveriesQuery,
    errors=(400, 422),
    tags=("reminders",),
)
async def list_deliveries(request: web.Request) -> web.Response:
    query = read_query(request, DeliveriesQuery)
    scope = cursor_scope(DELIVERIES_LIST, query)
    after = Keyset.from_cursor(scope, query.cursor, with_then=True)
    async with database_call(), request.app[POOL].acquire() as connection:
        rows = await repository.deliveries(
            connection,
            appointment_id=query.appointment_id,
            customer_id=query.customer_id,
            state=query.state,
            since=query.since,
            after=None if after is None else (after.time, after.id, after.then),
            limit=query.limit + 1,  # one more: is there a next page?
        )
    found = [Delivery.model_validate(dict(row)) for row in rows]
    page, next_cursor = keyset_page(found, query.limit, scope, _keyset)
    return json_model(DeliveryList(deliveries=page, next_cursor=next_cursor))


# --- POST /api/v1/reminders/deliveries/{appointmentId}/retry

RETRY_WORKFLOW_PREFIX = f"{APPOINTMENT_REMINDER.key}-retry-"
# Whom the retry check decides for: nobody holds the record it replaces, so any owner will do.
RETRY_OWNER = Owner(run="api/retry-check", attempt=1)


@documented(
    "Send again a reminder that failed (or was skipped), for the appointment's current start time, "
    "once its address is fixed: 404 when it has no delivery record, 409 when its reminder was sent "
    "(or is being sent), 422 when the appointment is no longer eligible",
    response=StartedRun,
    status=202,
    errors=(400, 404, 409, 422, 503),
    path_formats={"appointmentId": "uuid"},
    tags=("reminders",),
)
async def retry_delivery(request: web.Request) -> web.Response:
    appointment_id = path_uuid(request, "appointmentId")
    reminders = request.app[SETTINGS].reminders
    async with database_call(), request.app[POOL].acquire() as connection:
        state = await repository.retry_state(
            connection,
            appointment_id,
            lead=timedelta(minutes=reminders.min_lead_minutes),
            window=timedelta(hours=reminders.window_hours),
        )
    if state is None or not state["has_records"]:
        raise ApiError(404, "not_found", f"no reminder delivery for appointment {appointment_id}")
    if state["delivery_state"] == "sent":
        raise ApiError(409, "already_sent", "the reminder for this appointment's start time was sent")
    if state["delivery_state"] == "claimed":
        raise ApiError(409, "being_sent", "a run is sending this appointment's reminder now")
    problem = _ineligible(state)
    if problem is not None:
        raise ApiError(
            422, "not_eligible", f"the appointment is no longer eligible for a reminder: {problem}"
        )
    async with temporal_call():
        started = await start_or_join(
            request.app[TEMPORAL],
            APPOINTMENT_REMINDER.workflow_type,
            ReminderRunInput(retry=[appointment_id]),
            workflow_id=f"{RETRY_WORKFLOW_PREFIX}{appointment_id}",
            task_queue=request.app[SETTINGS].task_queue,
            attributes=[SearchAttributePair(JOB_ATTRIBUTE, APPOINTMENT_REMINDER.key)],
            summary=f"Appointment reminder retry: {appointment_id}",
        )
    return json_model(started, status=202)


# What a retry refused as ineligible says, by the claim's own skip reason (decisions.skip_reason).
_NOT_ELIGIBLE = {
    "started": "it has started",
    "too_soon": "it starts too soon",
    "outside_window": "it is beyond the reminder window",
    "no_consent": "the customer does not consent to reminders",
    "no_address": "the customer has no address to reach (email, or a phone that takes texts)",
    "elsewhere": "it was reminded by another system (appointments.reminder_sent_at)",
}


def _ineligible(state: asyncpg.Record) -> str | None:
    """Why a reminder may not go now, by the claim's own decision (the claim checks it again under
    the row lock); None when it may. The failed record the retry replaces does not count."""
    claim = ClaimState(
        status=state["status"],
        started=state["started"],
        too_soon=state["too_soon"],
        beyond_window=state["beyond"],
        reminder_sent=state["reminder_sent"],
        consent=state["consent_reminders"],
        delivery_state=None,
        delivery_owner=None,
        delivery_attempt=None,
        claim_expired=False,
    )
    route = choose_route(
        state["preferred_channel"], state["email"], state["phone"], sms_opted_out=state["sms_opted_out"]
    )
    decision = decide(claim, RETRY_OWNER, route)
    if decision == "send":
        return None
    reason = skip_reason(claim, decision) or decision
    return _NOT_ELIGIBLE.get(reason, f"it is {reason}")
