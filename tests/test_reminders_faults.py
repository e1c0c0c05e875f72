"""Reminder faults for real: refused settings per channel, overlapping attempts, a moved appointment,
a database blip after the send, an unexpected error, sent records sharing a transaction (a row that
fails its group, a cancel between the send and its record), a poisoned record, refusals of one
recipient for now (SMTP 452, a busy number) and what becomes of them, a gateway that redirects."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import asyncpg
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.reminders.decisions import Owner, ToSend
from activities.reminders.sql import ClaimStore
from devstack.rows import add_appointment, add_many_appointments, add_store
from devstack.smtp_sink import SmtpSink
from petcare.config import Settings
from petcare.models.reminders import CLAIM_LEASE, FetchDuePage, SendPage
from tests.support.polling import poll
from tests.support.reminder_data import (
    FullMailboxHandler,
    SlowSinkHandler,
    delivery_states,
    reminder_activities,
    soon,
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
    # Not a mobile number (21614): that customer's email address takes the reminder instead.
    assert (page.sent_sms, page.sent_email, page.failed, page.released, page.problems) == (1, 1, 1, 0, [])
    rows = await states(pool)
    assert rows[texts[0]][0] == "failed"
    assert rows[texts[1]][0] == "sent"
    assert "21211" in (rows[texts[0]][1] or "")
    assert "21614" in (rows[texts[1]][1] or "")
    assert [m.to for m in twilio.messages] == [numbers[2]]
    assert [m.recipients for m in smtp_sink.received] == [["owner@example.com"]]
    # Without opting the customer out: the number may take texts again once it is a mobile.
    assert await pool.fetchval("SELECT count(*) FROM customers WHERE sms_opted_out_at IS NOT NULL") == 0


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
            await poll(lambda: len(sink.received) >= 3, timeout=30, every=0.02)
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


async def test_ownership_checks_asked_together_are_each_answered_for_their_own_claim(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    store = await add_store(pool)
    mine, taken, sent = [
        await add_appointment(pool, store_id=store, starts_at=soon(), email=f"{name}@example.com")
        for name in ("mine", "taken", "sent")
    ]
    window = settings.reminders
    claims = ClaimStore(
        pool,
        lease=CLAIM_LEASE,
        lead=timedelta(minutes=window.min_lead_minutes),
        window=timedelta(hours=window.window_hours),
        sender=SENDER,
    )
    first, second = Owner(run="run/1", attempt=1), Owner(run="run/1", attempt=2)
    claimed = await claims.claim([mine, taken, sent], first)
    starts = {c.appointment_id: c.starts_at for c in claimed if isinstance(c, ToSend)}
    assert len(starts) == 3
    await claims.claim([taken], second)  # the next attempt took this one over
    await pool.execute("UPDATE reminder_deliveries SET state = 'sent' WHERE appointment_id = $1", sent)
    gone = uuid4()
    asked = [(mine, first), (taken, first), (taken, second), (sent, second), (gone, first)]
    # Asked at once: the first check runs alone, the other four share the next round trip.
    answers = await asyncio.gather(
        *(claims.confirm(appointment, starts.get(appointment, soon()), owner) for appointment, owner in asked)
    )
    assert answers == ["mine", "lost", "mine", "sent", "lost"]


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


# A real fault inside PostgreSQL: the first `blips` "sent" records (of the recipients LIKE `to`) fail
# with the error `code` (a sequence, so the count survives the failed transactions).
_BLIP = """
CREATE SEQUENCE record_blips;
CREATE FUNCTION blip_sent_records() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state = 'sent' AND NEW.recipient LIKE '{to}' AND nextval('record_blips') <= {blips} THEN
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
    await pool.execute(_BLIP.format(blips=2, code="40001", to="%"))
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
    await pool.execute(_BLIP.format(blips=1, code="P0001", to="%"))  # not a transient fault: no local retry
    async with reminder_activities(pool, settings, smtp_port=smtp_sink.port) as acts:
        with pytest.raises(asyncpg.exceptions.RaiseError, match="injected fault"):
            await ActivityEnvironment().run(acts.send_page, SendPage(appointment_ids=[appointment]))


# Every transaction that records sends sleeps `pause` seconds once its first row is written (so
# sends finish while it runs), and is counted.
_SLOW_RECORDS = """
CREATE TABLE sent_transactions (txid bigint PRIMARY KEY);
CREATE FUNCTION slow_sent_transaction() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state = 'sent' AND NOT EXISTS (SELECT 1 FROM sent_transactions WHERE txid = txid_current()) THEN
        INSERT INTO sent_transactions VALUES (txid_current());
        PERFORM pg_sleep({pause});
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER slow_sent_transaction AFTER UPDATE ON reminder_deliveries
    FOR EACH ROW EXECUTE FUNCTION slow_sent_transaction();
"""


async def sent_transactions(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM sent_transactions"))


async def test_sends_that_finish_while_a_record_is_written_share_the_next_commit(
    pool: asyncpg.Pool, settings: Settings, smtp_sink: SmtpSink
) -> None:
    store = await add_store(pool)
    count = 12
    page = [
        await add_appointment(pool, store_id=store, starts_at=soon(), email=f"g{n}@example.com")
        for n in range(count)
    ]
    await pool.execute(_SLOW_RECORDS.format(pause=0.3))
    async with reminder_activities(pool, settings, smtp_port=smtp_sink.port, smtp_concurrency=4) as acts:
        counts = await ActivityEnvironment().run(acts.send_page, SendPage(appointment_ids=page))
    assert counts.sent_email == count
    assert sorted(m.recipients[0] for m in smtp_sink.received) == sorted(
        f"g{n}@example.com" for n in range(count)
    )
    assert set((await states(pool)).values()) == {("sent", None)}
    assert (
        await pool.fetchval("SELECT count(*) FROM appointments WHERE reminder_sent_at IS NOT NULL") == count
    )
    # The first send's record alone, then the eleven that finished while it was written (or a few
    # groups of them): far fewer transactions (commits) than messages.
    assert await sent_transactions(pool) <= 4


async def test_a_row_that_fails_its_group_fails_alone_and_the_others_are_recorded(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    store = await add_store(pool)
    good = [
        await add_appointment(pool, store_id=store, starts_at=soon(), email=f"ok{n}@example.com")
        for n in range(6)
    ]
    bad = await add_appointment(pool, store_id=store, starts_at=soon(), email="bad@example.com")
    await pool.execute(_SLOW_RECORDS.format(pause=0.5))
    # Its row fails every time, as a bug or a constraint would.
    await pool.execute(_BLIP.format(blips=1000, code="P0001", to="bad@example.com"))
    # All seven go out at once, the refused one last: the first record is being written while the
    # others finish, so the refused row is recorded in one transaction with five others.
    sink = SmtpSink("127.0.0.1", 0, SlowSinkHandler(delay=0.1, slow=frozenset({"bad@example.com"})))
    await sink.start()
    try:
        async with reminder_activities(pool, settings, smtp_port=sink.port, smtp_concurrency=7) as acts:
            with pytest.raises(asyncpg.exceptions.RaiseError, match="injected fault"):
                await ActivityEnvironment().run(acts.send_page, SendPage(appointment_ids=[*good, bad]))
    finally:
        await sink.stop()
    rows = await states(pool)
    assert {rows[appointment] for appointment in good} == {("sent", None)}
    assert rows[bad][0] == "claimed"  # the retry of this run takes it over
    assert Counter(m.recipients[0] for m in sink.received) == Counter(
        [*(f"ok{n}@example.com" for n in range(6)), "bad@example.com"]
    )


async def test_a_cancel_between_the_send_and_its_record_still_records_it_so_the_retry_sends_nothing(
    pool: asyncpg.Pool, settings: Settings, smtp_sink: SmtpSink
) -> None:
    store = await add_store(pool)
    appointment = await add_appointment(pool, store_id=store, starts_at=soon(), email="once@example.com")
    await pool.execute(_SLOW_RECORDS.format(pause=1.0))

    async def recording() -> bool:
        sleeping = "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'"
        return bool(await pool.fetchval(sleeping))

    async with reminder_activities(pool, settings, smtp_port=smtp_sink.port) as acts:
        first = ActivityEnvironment()
        attempt = asyncio.create_task(first.run(acts.send_page, SendPage(appointment_ids=[appointment])))
        for _ in range(500):  # the provider accepted it; its record is being written
            if await recording():
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the sent record never started")
        first.cancel()  # as Temporal cancels an activity (or the worker shuts down) at that instant
        with pytest.raises(asyncio.CancelledError):
            await attempt
        assert (await states(pool))[appointment] == ("sent", None)

        retry = ActivityEnvironment()
        retry.info = dataclasses.replace(retry.info, attempt=2)
        counts = await retry.run(acts.send_page, SendPage(appointment_ids=[appointment]))
    assert counts.sent_email == 1  # counted once, by the attempt that finishes the page
    assert [m.recipients for m in smtp_sink.received] == [["once@example.com"]]


async def test_a_poisoned_record_and_refusals_for_now_mid_page_fail_or_wait_alone(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    store = await add_store(pool)
    poisoned_store = await add_store(pool, name="Paws\u2028& Co\r\nBcc: thief@example.net")

    async def by_email(address: str, *, pet: str = "Rex", at: UUID = store) -> UUID:
        return await add_appointment(pool, store_id=at, starts_at=soon(), email=address, pet=pet)

    async def by_sms(number: str) -> UUID:
        return await add_appointment(
            pool, store_id=store, starts_at=soon(), phone=number, preferred_channel="sms"
        )

    # In the middle of the page, among reminders that must all go out in this same run.
    page = [
        await by_email("first@example.com"),
        poisoned_pet := await by_email("rex@example.com", pet="Rex\nEvil"),
        await by_email("store@example.com", at=poisoned_store),
        two_people := await by_email("one@example.com, other@example.com"),
        full := await by_email("full@example.com"),
        busy := await by_sms("+15550100730"),
        sidless := await by_sms("+15550100731"),
        await by_sms("+15550100732"),
        await by_email("last@example.com"),
    ]
    handler = FullMailboxHandler(full={"full@example.com"})
    sink = SmtpSink("127.0.0.1", 0, handler)
    await sink.start()
    try:
        async with (
            TwilioGatewayServer(busy_numbers={"+15550100730"}, sidless_numbers={"+15550100731"}) as twilio,
            reminder_activities(pool, settings, smtp_port=sink.port, twilio=twilio) as acts,
        ):
            env = ActivityEnvironment()
            first = await env.run(acts.send_page, SendPage(appointment_ids=page))
            rows = await states(pool)

            # The full mailbox has room again, the number takes texts again: a later run.
            handler.full.clear()
            twilio.busy_numbers.clear()
            later = ActivityEnvironment()
            later.info = dataclasses.replace(later.info, workflow_run_id="a-later-run")
            due = await later.run(acts.fetch_due_page, FetchDuePage(as_of=datetime.now(UTC)))
            assert set(due.appointment_ids) == {full, busy}
            second = await later.run(acts.send_page, SendPage(appointment_ids=due.appointment_ids))
            after = await later.run(acts.fetch_due_page, FetchDuePage(as_of=datetime.now(UTC)))
    finally:
        await sink.stop()

    assert (first.sent_email, first.sent_sms, first.failed, first.deferred) == (4, 1, 2, 2)
    assert (first.released, first.problems) == (0, [])
    assert rows[poisoned_pet] == ("sent", None)
    assert rows[two_people][0] == "failed"
    assert "holds 2 addresses" in (rows[two_people][1] or "")
    assert rows[sidless] == ("failed", "SMS gateway answered 201 without a message sid")
    assert rows[full][0] == rows[busy][0] == "deferred"
    assert "452" in (rows[full][1] or "")
    assert "14107" in (rows[busy][1] or "")

    # Header values built from data arrive folded onto one line; nothing reached a second address.
    subjects = {m.recipients[0]: m.message["Subject"] for m in sink.received}
    assert subjects["rex@example.com"].startswith("Reminder: Rex Evil's appointment at Paws & Co")
    assert "Paws & Co Bcc: thief@example.net" in subjects["store@example.com"]
    recipients = Counter(r for m in sink.received for r in m.recipients)
    assert not {"one@example.com", "other@example.com", "thief@example.net"} & set(recipients)

    # The later run delivers each deferred reminder exactly once, and nothing is left over.
    assert (second.sent_email, second.sent_sms, second.failed, second.deferred) == (1, 1, 0, 0)
    assert after.appointment_ids == []
    assert recipients["full@example.com"] == 1
    assert [m.to for m in twilio.messages].count("+15550100730") == 1
    assert sum(recipients.values()) == 4 + 1  # four in the first run, the deferred one later


async def test_a_deferral_that_runs_into_the_minimum_lead_is_recorded_failed(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    store = await add_store(pool)
    start = datetime.now(UTC)
    fetched_late, claimed_late = [
        await add_appointment(pool, store_id=store, starts_at=start + hours, email=f"{name}@example.com")
        for name, hours in (("fetched", timedelta(hours=3)), ("claimed", timedelta(hours=5)))
    ]
    handler = FullMailboxHandler(full={"fetched@example.com", "claimed@example.com"})
    sink = SmtpSink("127.0.0.1", 0, handler)
    await sink.start()
    # Time passing, seen through the minimum lead: a later run whose lead covers an appointment is
    # a run held that much later. (Moving the appointment would make it owe a new reminder.)
    try:
        async with reminder_activities(pool, settings, smtp_port=sink.port) as acts:
            env = ActivityEnvironment()
            deferred = await env.run(acts.send_page, SendPage(appointment_ids=[fetched_late, claimed_late]))
            assert deferred.deferred == 2
        handler.full.clear()  # too late: nothing may go out any more

        # Inside the minimum lead by the next run: its first fetch records it failed.
        async with reminder_activities(pool, settings, smtp_port=sink.port, min_lead_minutes=240) as acts:
            due = await env.run(acts.fetch_due_page, FetchDuePage(as_of=datetime.now(UTC)))
            assert (due.appointment_ids, due.late_deferrals) == ([claimed_late], 1)
        # Inside it between that fetch and the claim: the claim records it failed.
        async with reminder_activities(pool, settings, smtp_port=sink.port, min_lead_minutes=360) as acts:
            page = await env.run(acts.send_page, SendPage(appointment_ids=due.appointment_ids))
    finally:
        await sink.stop()
    assert (page.sent_email, page.failed, page.deferred, page.skipped_not_due) == (0, 1, 0, 0)
    assert sink.received == []
    rows = await states(pool)
    for appointment in (fetched_late, claimed_late):
        state, reason = rows[appointment]
        assert state == "failed"
        assert (reason or "").startswith("deferred until too late (last answer: deferred: ")
        assert "452" in (reason or "")


async def test_a_421_to_one_recipient_is_the_server_closing_and_stops_the_page(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    store = await add_store(pool)
    appointment = await add_appointment(pool, store_id=store, starts_at=soon(), email="any@example.com")
    sink = SmtpSink(
        "127.0.0.1", 0, FullMailboxHandler(full={"any@example.com"}, answer="421 4.3.2 shutting down")
    )
    await sink.start()
    try:
        async with reminder_activities(pool, settings, smtp_port=sink.port) as acts:
            with pytest.raises(ApplicationError) as raised:
                await ActivityEnvironment().run(acts.send_page, SendPage(appointment_ids=[appointment]))
    finally:
        await sink.stop()
    assert raised.value.type == "ReminderProviderUnavailable"
    assert "421" in str(raised.value)
    assert (await states(pool))[appointment][0] == "claimed"  # the retry of this run sends it


async def test_a_gateway_that_redirects_is_not_followed_and_stops_only_the_texts(
    pool: asyncpg.Pool, settings: Settings, smtp_sink: SmtpSink
) -> None:
    store = await add_store(pool)
    text = await add_appointment(
        pool, store_id=store, starts_at=soon(), phone="+15550100740", preferred_channel="sms"
    )
    mail = await add_appointment(pool, store_id=store, starts_at=soon(), email="mail@example.com")
    async with (
        TwilioGatewayServer(moved=True) as twilio,
        reminder_activities(pool, settings, smtp_port=smtp_sink.port, twilio=twilio) as acts,
    ):
        page = await ActivityEnvironment().run(acts.send_page, SendPage(appointment_ids=[text, mail]))
    assert (page.sent_email, page.sent_sms, page.failed, page.released) == (1, 0, 0, 1)
    [problem] = page.problems
    assert "307" in problem
    assert "PETCARE_SMS__BASE_URL" in problem
    # The redirect was not followed: one request, no message at the address it pointed to.
    assert (twilio.requests, twilio.messages) == (1, [])
    assert (await states(pool))[text][0] == "skipped"
