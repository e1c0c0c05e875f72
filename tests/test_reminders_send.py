"""Sending a page for real: SMTP sink and a Twilio-compatible gateway, fallbacks, rejections, outages."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime

import asyncpg
import pytest
from aiohttp import ClientSession
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.reminders import ReminderActivities
from activities.reminders.messages import reminder_message_id
from devstack.rows import add_appointment, add_store
from devstack.smtp_sink import SmtpSink
from petcare.config import Settings
from petcare.models.reminders import FetchDuePage, SendPage
from petcare.sms import build_gateway
from tests.support.reminder_data import (
    delivery_states,
    reminder_activities,
    reminder_mailer,
    reminder_settings,
    soon,
)
from tests.support.twilio import TwilioGatewayServer


async def test_channels_fallbacks_and_content(
    pool: asyncpg.Pool, settings: Settings, smtp_sink: SmtpSink
) -> None:
    store = await add_store(pool, name="Paws Paris", timezone="Europe/Paris", phone="+33140000000")
    by_email = await add_appointment(
        pool, store_id=store, starts_at=soon(), email="mail@example.com", locale="fr"
    )
    by_sms = await add_appointment(
        pool, store_id=store, starts_at=soon(), phone="+15550100001", preferred_channel="sms", pet="Milo"
    )
    sms_without_phone = await add_appointment(
        pool, store_id=store, starts_at=soon(), email="fallback@example.com", preferred_channel="sms"
    )
    email_without_address = await add_appointment(
        pool, store_id=store, starts_at=soon(), email=None, phone="+15550100002"
    )
    nowhere = await add_appointment(pool, store_id=store, starts_at=soon(), email=None, phone=None)
    ids = [by_email, by_sms, sms_without_phone, email_without_address, nowhere]

    async with (
        TwilioGatewayServer() as twilio,
        reminder_activities(pool, settings, smtp_port=smtp_sink.port, twilio=twilio) as acts,
    ):
        counts = await ActivityEnvironment().run(acts.send_page, SendPage(appointment_ids=ids))

    assert (counts.sent_email, counts.sent_sms, counts.skipped_no_address, counts.failed) == (2, 2, 1, 0)
    assert sorted(m.recipients[0] for m in smtp_sink.received) == ["fallback@example.com", "mail@example.com"]
    assert sorted(m.to for m in twilio.messages) == ["+15550100001", "+15550100002"]
    assert {m.sender for m in twilio.messages} == {"+15550009999"}
    french = next(m.message for m in smtp_sink.received if m.recipients == ["mail@example.com"])
    starts_at = await pool.fetchval("SELECT starts_at FROM appointments WHERE id = $1", by_email)
    assert french["Message-ID"] == reminder_message_id(by_email, starts_at, settings.smtp.from_address)
    assert french["Message-ID"].endswith("@petcare.local>")
    assert french["Subject"].startswith("Rappel : rendez-vous de Rex chez Paws Paris")
    assert "+33140000000" in french.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "<strong>Rex</strong>" in french.get_body(("html",)).get_content()  # type: ignore[union-attr]
    milo = next(m for m in twilio.messages if m.to == "+15550100001")
    assert milo.body.startswith("Reminder: Milo has an appointment")
    assert (await delivery_states(pool))[nowhere] == ("skipped", None)
    reminded = {
        r["id"] for r in await pool.fetch("SELECT id FROM appointments WHERE reminder_sent_at IS NOT NULL")
    }
    assert reminded == {by_email, by_sms, sms_without_phone, email_without_address}


async def test_rejected_addresses_fail_alone_and_are_never_retried(
    pool: asyncpg.Pool, settings: Settings, smtp_sink: SmtpSink
) -> None:
    store = await add_store(pool)
    good_mail = await add_appointment(pool, store_id=store, starts_at=soon(), email="good@example.com")
    bad_mail = await add_appointment(pool, store_id=store, starts_at=soon(), email="bad@example.com")
    good_sms = await add_appointment(
        pool, store_id=store, starts_at=soon(), phone="+15550100003", preferred_channel="sms"
    )
    bad_sms = await add_appointment(
        pool, store_id=store, starts_at=soon(), phone="+15550100004", preferred_channel="sms"
    )
    # Addresses no SMTP server could take (spaces, non-ASCII without SMTPUTF8) fail the same way.
    malformed = [
        await add_appointment(pool, store_id=store, starts_at=soon(), email=address)
        for address in ("not an address", "josé@example.com", "no-at-sign")
    ]
    smtp_sink.handler.rejected_recipients.add("bad@example.com")
    as_of = datetime.now(UTC)

    async with (
        TwilioGatewayServer(invalid_numbers={"+15550100004"}) as twilio,
        reminder_activities(pool, settings, smtp_port=smtp_sink.port, twilio=twilio) as acts,
    ):
        env = ActivityEnvironment()
        page = await env.run(acts.fetch_due_page, FetchDuePage(as_of=as_of))
        counts = await env.run(acts.send_page, SendPage(appointment_ids=page.appointment_ids))
        assert (counts.sent_email, counts.sent_sms, counts.failed) == (1, 1, 5)
        # Failed deliveries are final: the next run does not find them due again.
        again = await env.run(acts.fetch_due_page, FetchDuePage(as_of=as_of))
        assert again.appointment_ids == []

    failed_rows = await pool.fetch(
        "SELECT appointment_id, reason FROM reminder_deliveries WHERE state = 'failed'"
    )
    reasons = {row["appointment_id"]: row["reason"] for row in failed_rows}
    assert set(reasons) == {bad_mail, bad_sms, *malformed}
    assert all("invalid email address" in reasons[appointment_id] for appointment_id in malformed)
    assert "550" in reasons[bad_mail]
    assert "21211" in reasons[bad_sms]
    states = await delivery_states(pool)
    assert states[good_mail] == ("sent", "email")
    assert states[good_sms] == ("sent", "sms")


async def test_smtp_outage_fails_the_page_for_a_retry_and_nothing_is_lost(
    pool: asyncpg.Pool, settings: Settings, smtp_sink: SmtpSink
) -> None:
    store = await add_store(pool)
    ids = [
        await add_appointment(pool, store_id=store, starts_at=soon(), email=f"o{n}@example.com")
        for n in range(6)
    ]
    async with reminder_activities(pool, settings, smtp_port=smtp_sink.port) as acts:
        env = ActivityEnvironment()
        await env.run(acts.send_page, SendPage(appointment_ids=ids[:2]))
        await smtp_sink.stop()
        with pytest.raises(ApplicationError) as raised:
            await env.run(acts.send_page, SendPage(appointment_ids=ids))
        assert raised.value.type == "ReminderProviderUnavailable"
        assert not raised.value.non_retryable
        await smtp_sink.start()
        retried = await env.run(acts.send_page, SendPage(appointment_ids=ids))

    # The retry counts what earlier attempts of this run sent and sends only the rest.
    assert retried.sent_email == 6
    assert sorted(m.recipients[0] for m in smtp_sink.received) == sorted(
        f"o{n}@example.com" for n in range(6)
    )
    assert await pool.fetchval("SELECT count(*) FROM appointments WHERE reminder_sent_at IS NOT NULL") == 6


async def test_gateway_errors_and_timeouts_are_transient_and_sent_ones_are_not_resent(
    pool: asyncpg.Pool, settings: Settings, smtp_sink: SmtpSink
) -> None:
    store = await add_store(pool)
    emails = [
        await add_appointment(pool, store_id=store, starts_at=soon(), email=f"e{n}@example.com")
        for n in range(3)
    ]
    texts = [
        await add_appointment(
            pool, store_id=store, starts_at=soon(), phone=f"+1555010020{n}", preferred_channel="sms"
        )
        for n in range(2)
    ]
    async with (
        TwilioGatewayServer(fail_status=503) as twilio,
        reminder_activities(
            pool, settings, smtp_port=smtp_sink.port, twilio=twilio, sms_timeout_seconds=1.5
        ) as acts,
    ):
        env = ActivityEnvironment()
        with pytest.raises(ApplicationError, match="503"):
            await env.run(acts.send_page, SendPage(appointment_ids=emails + texts))
        twilio.fail_status, twilio.delay_seconds = None, 4.0
        with pytest.raises(ApplicationError, match="Timeout"):
            await env.run(acts.send_page, SendPage(appointment_ids=emails + texts))
        twilio.delay_seconds = 0
        counts = await env.run(acts.send_page, SendPage(appointment_ids=emails + texts))
        # A request that timed out may still have been taken by the gateway (an in-flight duplicate,
        # at most one per timed-out request); every number got its message.
        assert {m.to for m in twilio.messages} == {"+15550100200", "+15550100201"}
        assert len(twilio.messages) <= 4

    assert (counts.sent_email, counts.sent_sms) == (3, 2)
    assert len(smtp_sink.received) == 3  # the emails went out on the first attempt, once


async def test_misconfigured_twilio_releases_the_texts_and_the_emails_still_go(
    pool: asyncpg.Pool, settings: Settings, smtp_sink: SmtpSink
) -> None:
    store = await add_store(pool)
    texts = [
        await add_appointment(
            pool, store_id=store, starts_at=soon(), phone=f"+1555010030{n}", preferred_channel="sms"
        )
        for n in range(2)
    ]
    emails = [
        await add_appointment(pool, store_id=store, starts_at=soon(), email=f"m{n}@example.com")
        for n in range(3)
    ]
    # provider twilio with no account, token or number: the worker starts, SMS cannot work.
    local = reminder_settings(settings, smtp_port=smtp_sink.port)
    broken = local.model_copy(update={"sms": local.sms.model_copy(update={"provider": "twilio"})})
    async with reminder_mailer(broken) as mailer, ClientSession() as http:
        acts = ReminderActivities(pool, mailer, build_gateway(http, broken.sms), broken)
        page = await ActivityEnvironment().run(acts.send_page, SendPage(appointment_ids=texts + emails))
    assert (page.sent_email, page.sent_sms, page.failed, page.released) == (3, 0, 0, 2)
    [problem] = page.problems
    for name in ("PETCARE_SMS__ACCOUNT_SID", "PETCARE_SMS__AUTH_TOKEN", "PETCARE_SMS__FROM_NUMBER"):
        assert name in problem
    assert sorted(m.recipients[0] for m in smtp_sink.received) == [f"m{n}@example.com" for n in range(3)]
    rows = await pool.fetch("SELECT appointment_id, state FROM reminder_deliveries")
    # Released, not failed: the next run (with the settings fixed) texts them.
    assert {row["appointment_id"]: row["state"] for row in rows if row["appointment_id"] in texts} == {
        text: "skipped" for text in texts
    }
    assert await pool.fetchval("SELECT count(*) FROM appointments WHERE reminder_sent_at IS NULL") == 2


async def test_sms_rate_limit_spaces_the_gateway_calls_across_workers(
    pool: asyncpg.Pool, settings: Settings, smtp_sink: SmtpSink
) -> None:
    count, rate = 8, 5.0
    store = await add_store(pool)
    texts = [
        await add_appointment(
            pool, store_id=store, starts_at=soon(), phone=f"+1555010050{n}", preferred_channel="sms"
        )
        for n in range(count)
    ]
    # Two workers' activity objects (each with its own in-process bounds), one page each, at once:
    # the provider's limit is the account's, so together they still send `rate` per second.
    async with (
        TwilioGatewayServer() as twilio,
        reminder_activities(
            pool, settings, smtp_port=smtp_sink.port, twilio=twilio, sms_rate_per_second=rate
        ) as first_worker,
        reminder_activities(
            pool, settings, smtp_port=smtp_sink.port, twilio=twilio, sms_rate_per_second=rate
        ) as second_worker,
    ):
        halves = await asyncio.gather(
            ActivityEnvironment().run(first_worker.send_page, SendPage(appointment_ids=texts[::2])),
            ActivityEnvironment().run(second_worker.send_page, SendPage(appointment_ids=texts[1::2])),
        )
    assert sum(half.sent_sms for half in halves) == count
    arrivals = sorted(m.received_at for m in twilio.messages)
    # Eight senders at once, yet the gateway sees one call per 1/rate s, never a burst. Arrival times
    # carry each call's own latency: the first also opens the HTTP connection (seen up to 0.15 s
    # late), which shortens one gap; every other gap is close to 1/rate.
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert sum(gap < 0.7 / rate for gap in gaps) <= 1, gaps
    assert arrivals[-1] - arrivals[0] >= (count - 2) / rate, gaps
