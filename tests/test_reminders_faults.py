"""Reminder faults for real: refused settings per channel, overlapping attempts, a moved appointment,
a database blip after the send, an unexpected error."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from datetime import UTC, datetime, timedelta
from uuid import UUID

import asyncpg
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from petcare.config import Settings
from petcare.devstack.smtp_sink import SmtpSink
from petcare.models.reminders import FetchDuePage, SendPage
from tests.support.reminder_data import (
    SlowSinkHandler,
    add_appointment,
    add_many_appointments,
    add_store,
    delivery_states,
    reminder_activities,
    soon,
    wait_until,
)
from tests.support.twilio import TwilioGatewayServer

SENDER = "reminders@petcare.local"  # the address in the default PETCARE_SMTP__FROM_ADDRESS


async def states(pool: asyncpg.Pool) -> dict[UUID, tuple[str, str | None]]:
    return await delivery_states(pool, "reason")


async def test_a_refused_sender_releases_the_emails_and_the_texts_still_go(
    pool: asyncpg.Pool, settings: Settings, smtp_sink: SmtpSink
) -> None:
    store = await add_store(pool)
    emails = [
        await add_appointment(pool, store_id=store, starts_at=soon(), email=f"r{n}@example.com")
        for n in range(3)
    ]
    text = await add_appointment(
        pool, store_id=store, starts_at=soon(), phone="+15550100700", preferred_channel="sms"
    )
    smtp_sink.handler.rejected_senders.add(SENDER)  # a relay that will not take our From address
    async with (
        TwilioGatewayServer() as twilio,
        reminder_activities(pool, settings, smtp_port=smtp_sink.port, twilio=twilio) as acts,
    ):
        env = ActivityEnvironment()
        page = await env.run(acts.send_page, SendPage(appointment_ids=[*emails, text]))
        assert (page.sent_sms, page.sent_email, page.failed, page.released) == (1, 0, 0, 3)
        [problem] = page.problems
        assert "553" in problem
        rows = await states(pool)
        # Nobody's address is to blame: nothing is marked failed (final); the claims are given back.
        assert {rows[e][0] for e in emails} == {"skipped"}
        assert all("released" in (rows[e][1] or "") for e in emails)
        assert rows[text] == ("sent", None)

        smtp_sink.handler.rejected_senders.clear()  # the settings are fixed: the next run sends them
        due = await env.run(acts.fetch_due_page, FetchDuePage(as_of=datetime.now(UTC)))
        assert set(due.appointment_ids) == set(emails)
        again = await env.run(acts.send_page, SendPage(appointment_ids=due.appointment_ids))
    assert (again.sent_email, again.problems) == (3, [])
    assert sorted(m.recipients[0] for m in smtp_sink.received) == [f"r{n}@example.com" for n in range(3)]


@pytest.mark.parametrize(
    ("invalid_senders", "rotated_token", "named"),
    [
        ({"+15550009999"}, None, "PETCARE_SMS__FROM_NUMBER"),  # Twilio 21606
        (set(), "rotated-token", "PETCARE_SMS__AUTH_TOKEN"),  # 401 20003
    ],
    ids=["from-number-21606", "auth-401"],
)
async def test_gateway_answers_that_blame_our_settings_release_the_texts(
    pool: asyncpg.Pool,
    settings: Settings,
    smtp_sink: SmtpSink,
    invalid_senders: set[str],
    rotated_token: str | None,
    named: str,
) -> None:
    store = await add_store(pool)
    text = await add_appointment(
        pool, store_id=store, starts_at=soon(), phone="+15550100710", preferred_channel="sms"
    )
    mail = await add_appointment(pool, store_id=store, starts_at=soon(), email="still@example.com")
    async with (
        TwilioGatewayServer(invalid_senders=invalid_senders) as twilio,
        reminder_activities(pool, settings, smtp_port=smtp_sink.port, twilio=twilio) as acts,
    ):
        our_token = twilio.auth_token
        if rotated_token is not None:
            twilio.auth_token = rotated_token  # the account's token changed; our setting did not
        page = await ActivityEnvironment().run(acts.send_page, SendPage(appointment_ids=[text, mail]))
    assert (page.sent_email, page.sent_sms, page.failed, page.released) == (1, 0, 0, 1)
    assert named in page.problems[0]
    assert our_token not in page.problems[0]
    assert (await states(pool))[text][0] == "skipped"
    assert [m.recipients for m in smtp_sink.received] == [["still@example.com"]]


async def test_recipient_numbers_the_gateway_refuses_fail_alone(
    pool: asyncpg.Pool, settings: Settings, smtp_sink: SmtpSink
) -> None:
    store = await add_store(pool)
    numbers = ["+15550100720", "+15550100721", "+15550100722"]
    texts = [
        await add_appointment(pool, store_id=store, starts_at=soon(), phone=n, preferred_channel="sms")
        for n in numbers
    ]
    async with (
        TwilioGatewayServer(invalid_numbers={numbers[0]}, landline_numbers={numbers[1]}) as twilio,
        reminder_activities(pool, settings, smtp_port=smtp_sink.port, twilio=twilio) as acts,
    ):
        page = await ActivityEnvironment().run(acts.send_page, SendPage(appointment_ids=texts))
    assert (page.sent_sms, page.failed, page.released, page.problems) == (1, 2, 0, [])
    rows = await states(pool)
    assert rows[texts[0]][0] == rows[texts[1]][0] == "failed"
    assert "21211" in (rows[texts[0]][1] or "")
    assert "21614" in (rows[texts[1]][1] or "")
    assert [m.to for m in twilio.messages] == [numbers[2]]


async def test_a_timed_out_attempt_still_running_stops_once_the_next_attempt_takes_over(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    count = 30
    store = await add_store(pool)
    await add_many_appointments(
        pool,
        store_id=store,
        count=count,
        first_at=soon(),
        spacing=timedelta(minutes=1),
        domain="overlap.test",
    )
    ids = [row["id"] for row in await pool.fetch("SELECT id FROM appointments ORDER BY starts_at, id")]
    sink = SmtpSink("127.0.0.1", 0, SlowSinkHandler(delay=0.1))
    await sink.start()
    try:
        async with reminder_activities(pool, settings, smtp_port=sink.port, smtp_concurrency=2) as acts:
            first, second = ActivityEnvironment(), ActivityEnvironment()
            second.info = dataclasses.replace(second.info, attempt=2)  # same run, next attempt
            # Attempt 1 is still sending when Temporal, having timed it out, starts attempt 2.
            stale = asyncio.create_task(first.run(acts.send_page, SendPage(appointment_ids=ids)))
            await wait_until(lambda: len(sink.received) >= 3)
            newer = await second.run(acts.send_page, SendPage(appointment_ids=ids))
            with pytest.raises(ApplicationError) as lost:
                await stale
    finally:
        await sink.stop()
    assert lost.value.type == "ReminderClaimLost"
    assert newer.sent_email == count  # what attempt 1 sent is counted, not sent again
    recipients = Counter(m.recipients[0] for m in sink.received)
    assert len(recipients) == count
    # At most the messages attempt 1 had in flight (one per SMTP connection) go out twice.
    assert sum(recipients.values()) - count <= 2
    owners = await pool.fetch("SELECT DISTINCT owner_attempt FROM reminder_deliveries WHERE state = 'sent'")
    # Each attempt sent some: attempt 1 before the takeover, attempt 2 the rest.
    assert {row["owner_attempt"] for row in owners} == {1, 2}


async def test_an_appointment_moved_after_the_fetch_is_checked_against_the_window_again(
    pool: asyncpg.Pool, settings: Settings, smtp_sink: SmtpSink
) -> None:
    store = await add_store(pool)
    kept, moved_later, moved_sooner = [
        await add_appointment(pool, store_id=store, starts_at=soon(), email=f"{name}@example.com")
        for name in ("kept", "later", "sooner")
    ]
    async with reminder_activities(pool, settings, smtp_port=smtp_sink.port) as acts:
        env = ActivityEnvironment()
        page = await env.run(acts.fetch_due_page, FetchDuePage(as_of=datetime.now(UTC)))
        assert set(page.appointment_ids) == {kept, moved_later, moved_sooner}
        await pool.execute(
            "UPDATE appointments SET starts_at = starts_at + interval '10 days' WHERE id = $1", moved_later
        )
        # Within the 60-minute minimum lead by the time the page is sent (hours of retries, say).
        await pool.execute(
            "UPDATE appointments SET starts_at = now() + interval '20 minutes' WHERE id = $1", moved_sooner
        )
        counts = await env.run(acts.send_page, SendPage(appointment_ids=page.appointment_ids))
    assert (counts.sent_email, counts.skipped_not_due) == (1, 2)
    assert [m.recipients for m in smtp_sink.received] == [["kept@example.com"]]
    rows = await states(pool)
    assert rows[moved_later] == ("skipped", "outside_window")
    assert rows[moved_sooner] == ("skipped", "too_soon")


# A real fault inside PostgreSQL: the first `blips` "sent" records fail with a serialization error
# (a sequence, so the count survives the failed transactions).
_BLIP = """
CREATE SEQUENCE record_blips;
CREATE FUNCTION blip_sent_records() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state = 'sent' AND nextval('record_blips') <= {blips} THEN
        RAISE EXCEPTION 'injected fault' USING ERRCODE = '{code}';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER blip_sent_records BEFORE UPDATE ON reminder_deliveries
    FOR EACH ROW EXECUTE FUNCTION blip_sent_records();
"""


async def test_a_database_blip_after_the_provider_accepted_is_retried_without_a_resend(
    pool: asyncpg.Pool, settings: Settings, smtp_sink: SmtpSink
) -> None:
    store = await add_store(pool)
    appointment = await add_appointment(pool, store_id=store, starts_at=soon(), email="once@example.com")
    await pool.execute(_BLIP.format(blips=2, code="40001"))
    async with reminder_activities(pool, settings, smtp_port=smtp_sink.port) as acts:
        counts = await ActivityEnvironment().run(acts.send_page, SendPage(appointment_ids=[appointment]))
    assert counts.sent_email == 1
    assert len(smtp_sink.received) == 1
    assert await pool.fetchval("SELECT nextval('record_blips')") == 4  # two failed writes, one good
    assert (await states(pool))[appointment] == ("sent", None)


async def test_an_unexpected_error_reaches_temporal_as_itself_not_as_a_task_group(
    pool: asyncpg.Pool, settings: Settings, smtp_sink: SmtpSink
) -> None:
    store = await add_store(pool)
    appointment = await add_appointment(pool, store_id=store, starts_at=soon(), email="bug@example.com")
    await pool.execute(_BLIP.format(blips=1, code="P0001"))  # not a transient fault: no local retry
    async with reminder_activities(pool, settings, smtp_port=smtp_sink.port) as acts:
        with pytest.raises(asyncpg.exceptions.RaiseError, match="injected fault"):
            await ActivityEnvironment().run(acts.send_page, SendPage(appointment_ids=[appointment]))
