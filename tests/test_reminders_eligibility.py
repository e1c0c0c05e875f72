"""Which appointments are due (real PostgreSQL), keyset paging, the claim-time re-checks, the dry run."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import asyncpg
import pytest
from temporalio.testing import ActivityEnvironment

from activities.reminders.decisions import ClaimState, Decision, Owner, Route, Settled, count_settled, decide
from devstack.rows import add_appointment, add_store
from devstack.smtp_sink import SmtpSink
from petcare.config import Settings
from petcare.models.reminders import (
    CLAIM_LEASE,
    SEND_PAGE_TIMEOUT,
    FetchDuePage,
    PlannedCounts,
    PreviewRequest,
    ReminderCounts,
    SendPage,
)
from tests.support.reminder_data import reminder_activities


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


async def due_ids(pool: asyncpg.Pool, settings: Settings, smtp: SmtpSink, as_of: datetime) -> set[UUID]:
    async with reminder_activities(pool, settings, smtp_port=smtp.port) as acts:
        page = await ActivityEnvironment().run(acts.fetch_due_page, FetchDuePage(as_of=as_of))
    assert page.next_cursor is None
    return set(page.appointment_ids)


async def test_eligibility_edges(pool: asyncpg.Pool, settings: Settings, smtp_sink: SmtpSink) -> None:
    as_of = now()
    store = await add_store(pool)

    async def at(offset: timedelta, **fields: object) -> UUID:
        return await add_appointment(pool, store_id=store, starts_at=as_of + offset, **fields)  # type: ignore[arg-type]

    due = {
        await at(timedelta(hours=1)),  # exactly the minimum lead
        await at(timedelta(hours=2), status="confirmed"),
        await at(timedelta(hours=23, minutes=59)),
        await at(timedelta(hours=24)),  # exactly the end of the window
        await at(timedelta(hours=5), email=None, phone=None),  # due; skipped for no address at send
    }
    not_due = {
        await at(timedelta(minutes=59)),  # too soon to be useful
        await at(timedelta(hours=24, seconds=1)),  # next run's business
        await at(-timedelta(hours=1)),  # already past
        await at(timedelta(hours=3), status="cancelled"),
        await at(timedelta(hours=3), status="completed"),
        await at(timedelta(hours=3), status="no_show"),
        await at(timedelta(hours=3), consent=False),
    }
    reminded = await at(timedelta(hours=4))
    await pool.execute("UPDATE appointments SET reminder_sent_at = now() WHERE id = $1", reminded)
    sent, failed, skipped = [await at(timedelta(hours=6)) for _ in range(3)]
    for appointment_id, state in ((sent, "sent"), (failed, "failed"), (skipped, "skipped")):
        await pool.execute(
            """INSERT INTO reminder_deliveries (appointment_id, starts_at, state)
               SELECT id, starts_at, $2 FROM appointments WHERE id = $1""",
            appointment_id,
            state,
        )

    found = await due_ids(pool, settings, smtp_sink, as_of)
    # A skipped appointment stays eligible: the customer may have added an address since.
    assert found == due | {skipped}
    assert not found & (not_due | {reminded, sent, failed})


async def test_window_and_lead_are_configurable(
    pool: asyncpg.Pool, settings: Settings, smtp_sink: SmtpSink
) -> None:
    as_of = now()
    store = await add_store(pool)
    soon = await add_appointment(pool, store_id=store, starts_at=as_of + timedelta(minutes=10))
    later = await add_appointment(pool, store_id=store, starts_at=as_of + timedelta(hours=30))
    custom = settings.model_copy(
        update={
            "reminders": settings.reminders.model_copy(update={"min_lead_minutes": 5, "window_hours": 48})
        }
    )
    assert await due_ids(pool, custom, smtp_sink, as_of) == {soon, later}
    assert await due_ids(pool, settings, smtp_sink, as_of) == set()


async def test_keyset_pages_cover_ties_exactly_once(
    pool: asyncpg.Pool, settings: Settings, smtp_sink: SmtpSink
) -> None:
    as_of = now()
    store = await add_store(pool)
    same_time = as_of + timedelta(hours=3)
    created = {await add_appointment(pool, store_id=store, starts_at=same_time) for _ in range(7)}
    created.add(await add_appointment(pool, store_id=store, starts_at=as_of + timedelta(hours=2)))
    seen: list[UUID] = []
    sizes = []
    async with reminder_activities(pool, settings, smtp_port=smtp_sink.port, batch_size=4) as acts:
        request = FetchDuePage(as_of=as_of)
        while True:
            page = await ActivityEnvironment().run(acts.fetch_due_page, request)
            seen += page.appointment_ids
            sizes.append(len(page.appointment_ids))
            if page.next_cursor is None:
                break
            request = FetchDuePage(as_of=as_of, after=page.next_cursor)
    assert sizes == [4, 4, 0]  # a full last page needs one more (empty) fetch to know it was the last
    assert len(seen) == len(set(seen)) == 8
    assert set(seen) == created


async def test_consent_withdrawn_or_cancelled_between_fetch_and_send(
    pool: asyncpg.Pool, settings: Settings, smtp_sink: SmtpSink
) -> None:
    as_of = now()
    store = await add_store(pool)
    keeps = await add_appointment(
        pool, store_id=store, starts_at=as_of + timedelta(hours=2), email="keep@example.com"
    )
    withdraws = await add_appointment(
        pool, store_id=store, starts_at=as_of + timedelta(hours=2), email="withdraw@example.com"
    )
    cancels = await add_appointment(
        pool, store_id=store, starts_at=as_of + timedelta(hours=2), email="cancel@example.com"
    )
    async with reminder_activities(pool, settings, smtp_port=smtp_sink.port) as acts:
        env = ActivityEnvironment()
        page = await env.run(acts.fetch_due_page, FetchDuePage(as_of=as_of))
        assert set(page.appointment_ids) == {keeps, withdraws, cancels}
        await pool.execute(
            "UPDATE customers SET consent_reminders = false"
            " WHERE id = (SELECT customer_id FROM appointments WHERE id = $1)",
            withdraws,
        )
        await pool.execute("UPDATE appointments SET status = 'cancelled' WHERE id = $1", cancels)
        counts = await env.run(acts.send_page, SendPage(appointment_ids=page.appointment_ids))

    assert (counts.sent_email, counts.skipped_no_consent, counts.skipped_not_due) == (1, 1, 1)
    assert [mail.recipients for mail in smtp_sink.received] == [["keep@example.com"]]
    rows = {
        row["appointment_id"]: (row["state"], row["reason"])
        for row in await pool.fetch("SELECT appointment_id, state, reason FROM reminder_deliveries")
    }
    assert rows == {
        keeps: ("sent", None),
        withdraws: ("skipped", "no_consent"),
        cancels: ("skipped", "cancelled"),
    }
    marked = await pool.fetch("SELECT id FROM appointments WHERE reminder_sent_at IS NOT NULL")
    assert [row["id"] for row in marked] == [keeps]


async def test_a_fresh_claim_of_another_run_is_left_alone_until_its_lease_expires(
    pool: asyncpg.Pool, settings: Settings, smtp_sink: SmtpSink
) -> None:
    store = await add_store(pool)
    appointment = await add_appointment(pool, store_id=store, starts_at=now() + timedelta(hours=2))
    await pool.execute(
        """INSERT INTO reminder_deliveries (appointment_id, starts_at, state, owner, claimed_at)
           SELECT id, starts_at, 'claimed', 'another-workflow/another-run', now()
           FROM appointments WHERE id = $1""",
        appointment,
    )
    async with reminder_activities(pool, settings, smtp_port=smtp_sink.port) as acts:
        env = ActivityEnvironment()
        busy = await env.run(acts.send_page, SendPage(appointment_ids=[appointment]))
        assert (busy.handled_elsewhere, busy.sent) == (1, 0)
        assert smtp_sink.received == []
        # The other run died long ago (terminated workflow): its claim is taken over.
        await pool.execute("UPDATE reminder_deliveries SET claimed_at = now() - interval '1 hour'")
        taken = await env.run(acts.send_page, SendPage(appointment_ids=[appointment]))
    assert (taken.handled_elsewhere, taken.sent_email) == (0, 1)
    assert len(smtp_sink.received) == 1
    owner = await pool.fetchval(
        "SELECT owner FROM reminder_deliveries WHERE appointment_id = $1", appointment
    )
    assert owner == "test/test-run"


def claim_state(**changes: object) -> ClaimState:
    base = ClaimState(
        status="scheduled",
        started=False,
        too_soon=False,
        beyond_window=False,
        reminder_sent=False,
        consent=True,
        delivery_state="claimed",
        delivery_owner="wf/run",
        delivery_attempt=2,
        claim_expired=False,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("state", "attempt", "expected"),
    [
        (claim_state(), 3, "send"),  # attempt 2 timed out: attempt 3 takes its claims over at once
        (claim_state(), 2, "send"),  # its own claim
        (claim_state(), 1, "superseded"),  # a stale attempt 1 still running: it must stop
        (claim_state(delivery_attempt=None), 1, "send"),  # a claim written before attempts were kept
        (claim_state(delivery_owner="other/run"), 9, "elsewhere"),  # another run, lease running
        (claim_state(delivery_owner="other/run", claim_expired=True), 1, "send"),
        (claim_state(delivery_state="sent"), 1, "done_here"),
        (claim_state(too_soon=True), 3, "not_due"),
        (claim_state(beyond_window=True), 3, "not_due"),
    ],
)
def test_who_may_take_a_claim(state: ClaimState, attempt: int, expected: str) -> None:
    assert decide(state, Owner("wf/run", attempt), Route("email", "a@example.com")) == expected


def test_the_claim_lease_outlasts_any_send_attempt() -> None:
    # Derived from it in the models module, so a longer attempt cannot silently outlive its lease.
    assert CLAIM_LEASE > SEND_PAGE_TIMEOUT


async def test_the_dry_run_counts_in_sql_and_renders_only_the_first_messages(
    pool: asyncpg.Pool, settings: Settings, smtp_sink: SmtpSink
) -> None:
    as_of = now()
    store = await add_store(pool)
    starts = as_of + timedelta(hours=3)
    # Strictly the earliest: the others that start at `starts` tie, and ties are ordered by id.
    first = await add_appointment(
        pool, store_id=store, starts_at=starts - timedelta(minutes=1), email="first@example.com"
    )
    await add_appointment(
        pool,
        store_id=store,
        starts_at=starts + timedelta(minutes=1),
        phone="+15550100800",
        preferred_channel="sms",
    )
    # Preferred channel without its address: the other one, as a run would choose.
    await add_appointment(
        pool, store_id=store, starts_at=starts, email="fb@example.com", preferred_channel="sms"
    )
    await add_appointment(pool, store_id=store, starts_at=starts, email="  ", phone="+15550100801")
    await add_appointment(pool, store_id=store, starts_at=starts, email=None, phone=None)
    await add_appointment(pool, store_id=store, starts_at=starts, consent=False)  # not due
    async with reminder_activities(pool, settings, smtp_port=smtp_sink.port) as acts:
        preview = await ActivityEnvironment().run(acts.preview, PreviewRequest(as_of=as_of, preview_limit=2))
    assert preview.counts == PlannedCounts(due=5, email=2, sms=2, skipped_no_address=1)
    assert len(preview.messages) == 2
    assert preview.messages[0].appointment_id == first
    assert await pool.fetchval("SELECT count(*) FROM reminder_deliveries") == 0


@pytest.mark.parametrize(
    ("decision", "finished_state", "finished_channel", "counter"),
    [
        ("done_here", "sent", "email", "sent_email"),
        ("done_here", "sent", "sms", "sent_sms"),
        ("done_here", "failed", "email", "failed"),
        ("elsewhere", None, None, "handled_elsewhere"),
        ("no_consent", None, None, "skipped_no_consent"),
        ("no_address", None, None, "skipped_no_address"),
        ("not_due", None, None, "skipped_not_due"),
        ("too_late", None, None, "failed"),
        ("quiet_hours_wait", None, None, "quiet_hours_waiting"),
        ("quiet_hours", None, None, "skipped_quiet_hours"),
        ("superseded", None, None, None),
    ],
)
def test_each_settled_decision_counts_once_under_its_own_counter(
    decision: Decision, finished_state: str | None, finished_channel: str | None, counter: str | None
) -> None:
    counts = ReminderCounts()
    settled = Settled(uuid4(), decision, finished_state=finished_state, finished_channel=finished_channel)
    count_settled(settled, counts)
    expected = {} if counter is None else {counter: 1}
    assert {name: value for name, value in counts.model_dump().items() if value} == expected
