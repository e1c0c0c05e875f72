"""What a salon's customers meet every day, on real PostgreSQL, SMTP and a Twilio-shaped gateway:
appointments moved after their reminder, numbers that texted STOP or are landlines, the store's
Reply-To, and quiet hours (with the wall-clock rule checked across DST changes)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from email.message import EmailMessage
from uuid import UUID
from zoneinfo import ZoneInfo

import asyncpg
from temporalio.testing import ActivityEnvironment

from activities.reminders import ReminderActivities
from activities.reminders.decisions import quiet_until, quiet_verdict
from activities.reminders.messages import local_when
from activities.reminders.templates import ENGLISH
from devstack.rows import add_appointment, add_store
from devstack.smtp_sink import SmtpSink
from petcare.config import Settings
from petcare.models.reminders import FetchDuePage, PageResult, PreviewRequest, SendPage
from tests.support.reminder_data import reminder_activities
from tests.support.twilio import TwilioGatewayServer

QUIET = (time(21, 0), time(8, 0))


async def run_once(acts: ReminderActivities) -> tuple[list[UUID], PageResult]:
    """One reminder run as the workflow makes it: fetch what is due now, send it."""
    env = ActivityEnvironment()
    page = await env.run(acts.fetch_due_page, FetchDuePage(as_of=datetime.now(UTC)))
    result = await env.run(acts.send_page, SendPage(appointment_ids=page.appointment_ids))
    return page.appointment_ids, result


def body(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def named(starts_at: datetime) -> str:
    """How a reminder names a start time, for a store in UTC."""
    return local_when(starts_at, ZoneInfo("UTC"), ENGLISH)[2]


async def move(pool: asyncpg.Pool, appointment: UUID, starts_at: datetime) -> None:
    await pool.execute("UPDATE appointments SET starts_at = $2 WHERE id = $1", appointment, starts_at)


# --- 1. Rescheduling.


async def test_a_moved_appointment_gets_one_reminder_naming_its_new_time(
    pool: asyncpg.Pool, settings: Settings, smtp_sink: SmtpSink
) -> None:
    store = await add_store(pool)
    first = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=3)
    moved = await add_appointment(pool, store_id=store, starts_at=first, email="moved@example.com")
    await add_appointment(pool, store_id=store, starts_at=first, email="same@example.com")
    cancelled = await add_appointment(pool, store_id=store, starts_at=first, email="gone@example.com")
    async with reminder_activities(pool, settings, smtp_port=smtp_sink.port) as acts:
        _, result = await run_once(acts)
        assert (result.sent_email, result.rescheduled) == (3, 0)

        later = first + timedelta(hours=2, minutes=15)
        await move(pool, moved, later)
        await move(pool, cancelled, later)
        await pool.execute("UPDATE appointments SET status = 'cancelled' WHERE id = $1", cancelled)
        preview = await ActivityEnvironment().run(acts.preview, PreviewRequest(as_of=datetime.now(UTC)))
        assert (preview.counts.due, preview.counts.rescheduled) == (1, 1)
        assert [(m.appointment_id, m.rescheduled) for m in preview.messages] == [(moved, True)]

        due, result = await run_once(acts)
        assert due == [moved]
        assert (result.sent_email, result.rescheduled) == (1, 1)
        again, result = await run_once(acts)
        assert again == []
        assert result.sent == 0

    to_moved = [m.message for m in smtp_sink.received if m.recipients == ["moved@example.com"]]
    assert len(to_moved) == 2
    assert named(first) in body(to_moved[0])
    assert named(later) in body(to_moved[1])
    assert named(first) not in body(to_moved[1])
    assert to_moved[0]["Message-ID"] != to_moved[1]["Message-ID"]
    assert sum(m.recipients == ["same@example.com"] for m in smtp_sink.received) == 1
    assert sum(m.recipients == ["gone@example.com"] for m in smtp_sink.received) == 1
    records = await pool.fetch(
        "SELECT starts_at, state FROM reminder_deliveries WHERE appointment_id = $1 ORDER BY starts_at", moved
    )
    assert [(r["starts_at"], r["state"]) for r in records] == [(first, "sent"), (later, "sent")]


async def test_two_moves_between_runs_make_one_reminder_for_the_latest_time(
    pool: asyncpg.Pool, settings: Settings, smtp_sink: SmtpSink
) -> None:
    store = await add_store(pool)
    first = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=3)
    appointment = await add_appointment(pool, store_id=store, starts_at=first, email="twice@example.com")
    async with reminder_activities(pool, settings, smtp_port=smtp_sink.port) as acts:
        await run_once(acts)
        await move(pool, appointment, first + timedelta(hours=1))
        latest = first + timedelta(hours=6, minutes=30)
        await move(pool, appointment, latest)
        _, result = await run_once(acts)
        assert (result.sent_email, result.rescheduled) == (1, 1)
        _, result = await run_once(acts)
        assert result.sent == 0
    [_, second] = [m.message for m in smtp_sink.received]
    assert named(latest) in body(second)


async def test_a_deferral_of_a_time_the_appointment_moved_from_is_dropped(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    store = await add_store(pool)
    first = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=3)
    appointment = await add_appointment(pool, store_id=store, starts_at=first)
    await pool.execute(
        """INSERT INTO reminder_deliveries (appointment_id, starts_at, state, reason)
           VALUES ($1, $2, 'deferred', 'deferred: 452 mailbox full')""",
        appointment,
        first,
    )
    await move(pool, appointment, first + timedelta(hours=1))
    sink = SmtpSink("127.0.0.1", 0)
    await sink.start()
    try:
        async with reminder_activities(pool, settings, smtp_port=sink.port) as acts:
            _, result = await run_once(acts)
    finally:
        await sink.stop()
    assert (result.sent_email, result.failed) == (1, 0)
    old = await pool.fetchrow(
        "SELECT state, reason FROM reminder_deliveries WHERE appointment_id = $1 AND starts_at = $2",
        appointment,
        first,
    )
    assert old is not None
    assert (old["state"], old["reason"]) == ("skipped", "moved to another time")


async def test_a_reminder_the_main_backend_sent_still_counts(
    pool: asyncpg.Pool, settings: Settings, smtp_sink: SmtpSink
) -> None:
    store = await add_store(pool)
    soon = datetime.now(UTC) + timedelta(hours=3)
    appointment = await add_appointment(pool, store_id=store, starts_at=soon)
    await pool.execute("UPDATE appointments SET reminder_sent_at = now() WHERE id = $1", appointment)
    async with reminder_activities(pool, settings, smtp_port=smtp_sink.port) as acts:
        due, _ = await run_once(acts)
    assert due == []
    assert smtp_sink.received == []


# --- 2. SMS opt-out (21610) and landlines (21614).


async def test_an_opted_out_customer_gets_email_then_is_never_texted_again(
    pool: asyncpg.Pool, settings: Settings, smtp_sink: SmtpSink
) -> None:
    store = await add_store(pool)
    first = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=3)
    stop = "+15550101610"
    texted_stop = await add_appointment(
        pool, store_id=store, starts_at=first, phone=stop, email="stop@example.com", preferred_channel="sms"
    )
    nothing_else = await add_appointment(
        pool, store_id=store, starts_at=first, phone="+15550101611", email=None, preferred_channel="sms"
    )
    async with (
        TwilioGatewayServer(unsubscribed_numbers={stop, "+15550101611"}) as twilio,
        reminder_activities(pool, settings, smtp_port=smtp_sink.port, twilio=twilio) as acts,
    ):
        _, result = await run_once(acts)
        assert (result.sent_email, result.sent_sms, result.failed, result.sms_opted_out) == (1, 0, 1, 2)
        opted_out = await pool.fetch("SELECT id FROM customers WHERE sms_opted_out_at IS NOT NULL")
        assert len(opted_out) == 2
        record = await pool.fetchrow(
            "SELECT state, channel, recipient, reason FROM reminder_deliveries WHERE appointment_id = $1",
            texted_stop,
        )
        assert record is not None
        assert (record["state"], record["channel"]) == ("sent", "email")
        assert record["recipient"] == "stop@example.com"
        assert "21610" in record["reason"]
        failed = await pool.fetchval(
            "SELECT reason FROM reminder_deliveries WHERE appointment_id = $1", nothing_else
        )
        assert "21610" in failed

        # Moved: a new reminder is owed, and goes by email without trying the number again.
        await move(pool, texted_stop, first + timedelta(hours=2))
        preview = await ActivityEnvironment().run(acts.preview, PreviewRequest(as_of=datetime.now(UTC)))
        assert (preview.counts.email, preview.counts.sms, preview.counts.sms_opted_out) == (1, 0, 1)
        _, result = await run_once(acts)
        assert (result.sent_email, result.sent_sms, result.sms_opted_out) == (1, 0, 0)

    assert sorted(twilio.attempted) == sorted([stop, "+15550101611"])  # one attempt each, ever
    assert twilio.messages == []
    assert [m.recipients for m in smtp_sink.received] == [["stop@example.com"]] * 2


# --- 3. Reply-To.


async def test_reminder_emails_reply_to_the_store(
    pool: asyncpg.Pool, settings: Settings, smtp_sink: SmtpSink
) -> None:
    salon = await add_store(pool, name="Salon", email="hello@salon.example")
    broken = await add_store(pool, name="Broken", email="not an address, b@x.example")
    none = await add_store(pool, name="None", email=None)
    soon = datetime.now(UTC) + timedelta(hours=3)
    for store, address in ((salon, "a@example.com"), (broken, "b@example.com"), (none, "c@example.com")):
        await add_appointment(pool, store_id=store, starts_at=soon, email=address)
    async with reminder_activities(pool, settings, smtp_port=smtp_sink.port) as acts:
        _, result = await run_once(acts)
    assert result.sent_email == 3
    reply_to = {m.recipients[0]: m.message["Reply-To"] for m in smtp_sink.received}
    assert reply_to == {"a@example.com": "hello@salon.example", "b@example.com": None, "c@example.com": None}
    assert all("reminders@petcare.local" in m.message["From"] for m in smtp_sink.received)


# --- 4. Quiet hours.


def zone_at(local_hour: int) -> str:
    """A fixed-offset zone in which it is now `local_hour` o'clock (the hour's minutes as now)."""
    offset = (local_hour - datetime.now(UTC).hour) % 24
    if offset > 14:
        offset -= 24
    return f"Etc/GMT{-offset:+d}"  # POSIX signs: Etc/GMT-5 is UTC+5


async def test_texts_in_quiet_hours_wait_or_go_by_email_or_are_skipped(
    pool: asyncpg.Pool, settings: Settings, smtp_sink: SmtpSink
) -> None:
    night = await add_store(pool, name="Night", timezone=zone_at(23))
    day = await add_store(pool, name="Day", timezone=zone_at(12))
    now = datetime.now(UTC)

    async def text(store: UUID, hours: float, phone: str, email: str | None) -> UUID:
        return await add_appointment(
            pool,
            store_id=store,
            starts_at=now + timedelta(hours=hours),
            phone=phone,
            email=email,
            preferred_channel="sms",
        )

    # Quiet hours end at 08:00 local, 8-9 h from now; the minimum lead is one hour.
    waits = await text(night, 20, "+15550102001", "waits@example.com")
    by_email = await text(night, 3, "+15550102002", "instead@example.com")
    skipped = await text(night, 3, "+15550102003", None)
    daytime = await text(day, 3, "+15550102004", "day@example.com")
    mail = await add_appointment(
        pool, store_id=night, starts_at=now + timedelta(hours=3), email="m@example.com"
    )
    async with (
        TwilioGatewayServer() as twilio,
        reminder_activities(
            pool, settings, smtp_port=smtp_sink.port, twilio=twilio, quiet_hours="21:00-08:00"
        ) as acts,
    ):
        _, result = await run_once(acts)
    assert (result.sent_sms, result.sent_email) == (1, 2)
    assert (result.quiet_hours_waiting, result.skipped_quiet_hours) == (1, 1)
    assert [m.to for m in twilio.messages] == ["+15550102004"]
    assert sorted(m.recipients[0] for m in smtp_sink.received) == ["instead@example.com", "m@example.com"]
    rows = {
        r["appointment_id"]: (r["state"], r["channel"], r["reason"])
        for r in await pool.fetch("SELECT appointment_id, state, channel, reason FROM reminder_deliveries")
    }
    assert rows[waits][0] == "skipped"
    assert "waits for the first run after 08:00" in rows[waits][2]
    assert rows[by_email][:2] == ("sent", "email")
    assert "quiet hours" in rows[by_email][2]
    assert rows[skipped][0] == "skipped"
    assert "quiet hours until 08:00" in rows[skipped][2]
    assert rows[daytime][:2] == ("sent", "sms")
    assert rows[mail][:2] == ("sent", "email")


PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_quiet_hours_follow_the_wall_clock_across_the_spring_change() -> None:
    # Paris springs forward on 29 March 2026 at 02:00 (UTC+1 -> UTC+2).
    assert quiet_until(utc("2026-03-28T06:30"), PARIS, QUIET) == utc("2026-03-28T07:00")  # 07:30 CET
    assert quiet_until(utc("2026-03-29T06:30"), PARIS, QUIET) is None  # 08:30 CEST: day
    assert quiet_until(utc("2026-03-29T05:59"), PARIS, QUIET) == utc("2026-03-29T06:00")  # 07:59 CEST
    # 21:30 CET on the eve: the night is an hour shorter, and ends at 08:00 CEST.
    assert quiet_until(utc("2026-03-28T20:30"), PARIS, QUIET) == utc("2026-03-29T06:00")
    assert quiet_until(utc("2026-03-28T19:59"), PARIS, QUIET) is None  # 20:59 CET
    # New York (8 March 2026): 07:30 EST is quiet, the same UTC instant next day is 08:30 EDT.
    assert quiet_until(utc("2026-03-07T12:30"), NEW_YORK, QUIET) == utc("2026-03-07T13:00")
    assert quiet_until(utc("2026-03-08T12:30"), NEW_YORK, QUIET) is None
    # An end inside the skipped hour reads as the first moment the clock shows past it.
    assert quiet_until(utc("2026-03-28T23:30"), PARIS, (time(0, 0), time(2, 30))) == utc("2026-03-29T01:30")


def test_quiet_hours_follow_the_wall_clock_across_the_autumn_change() -> None:
    # Paris falls back on 25 October 2026 at 03:00 (UTC+2 -> UTC+1).
    assert quiet_until(utc("2026-10-24T06:30"), PARIS, QUIET) is None  # 08:30 CEST
    assert quiet_until(utc("2026-10-25T06:30"), PARIS, QUIET) == utc("2026-10-25T07:00")  # 07:30 CET
    # 21:30 CEST on the eve: the night is an hour longer, and ends at 08:00 CET.
    assert quiet_until(utc("2026-10-24T19:30"), PARIS, QUIET) == utc("2026-10-25T07:00")
    assert quiet_until(utc("2026-10-24T18:59"), PARIS, QUIET) is None  # 20:59 CEST


def test_a_quiet_text_waits_only_when_the_run_after_is_still_before_the_minimum_lead() -> None:
    now = utc("2026-03-28T20:30")  # 21:30 CET; quiet until 06:00 UTC (08:00 CEST)
    lead = timedelta(hours=1)

    def verdict(starts_at: str, has_email: bool = True) -> str:
        return quiet_verdict(now, PARIS, QUIET, starts_at=utc(starts_at), lead=lead, has_email=has_email)[0]

    assert verdict("2026-03-29T07:00") == "wait"  # the 08:00 run is an hour ahead of it
    assert verdict("2026-03-29T06:59") == "email"
    assert verdict("2026-03-29T06:59", has_email=False) == "skip"
    assert quiet_verdict(now, PARIS, None, starts_at=now, lead=lead, has_email=False)[0] == "send"
