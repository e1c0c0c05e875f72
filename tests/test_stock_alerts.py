"""Stock alerts over consecutive runs, with a real SMTP server: new, unchanged, recovered, recurring."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import asyncpg
import pytest
import pytest_asyncio
from temporalio.exceptions import ApplicationError

from activities.stock import StockActivities
from devstack.rows import add_store
from devstack.smtp_sink import SmtpSink
from petcare import stock_repository
from petcare.config import SmtpSettings
from petcare.mail import Mailer
from petcare.models.stock import AlertRequest
from tests.support.stock import (
    FROM_ADDRESS,
    activity_env,
    add_product,
    move,
    reconcile,
    reconcile_and_alert,
    set_recorded,
    unemailed_alerts,
)

STORE_EMAIL = "manager@store.test"


@pytest_asyncio.fixture
async def activities(pool: asyncpg.Pool, smtp_sink: SmtpSink) -> AsyncIterator[StockActivities]:
    async with Mailer(SmtpSettings(host=smtp_sink.host, port=smtp_sink.port, timeout_seconds=5)) as mailer:
        yield StockActivities(pool, mailer, from_address=FROM_ADDRESS, fallback_recipient=None)


def body(sink: SmtpSink, index: int) -> str:
    content = sink.received[index].message.get_content()
    assert isinstance(content, str)
    return content


async def alert_rows(pool: asyncpg.Pool) -> list[tuple[str, str, str | None]]:
    rows = await pool.fetch(
        """SELECT p.sku, a.kind, a.resolution FROM stock_alerts a JOIN products p ON p.id = a.product_id
            ORDER BY p.sku, a.kind, a.opened_at, a.resolved_at NULLS LAST"""
    )
    return [(row["sku"], row["kind"], row["resolution"]) for row in rows]


async def test_alerts_are_new_once_then_quiet_then_again_when_they_recur(
    pool: asyncpg.Pool, activities: StockActivities, smtp_sink: SmtpSink
) -> None:
    store = await add_store(pool, "Harbour", email=STORE_EMAIL)
    await add_product(pool, store, "DRIFT", recorded=10, threshold=0, movements=(8,))
    bouncy = await add_product(pool, store, "BOUNCY", recorded=1, threshold=2, movements=(1,))
    changing = await add_product(pool, store, "CHANGING", recorded=5, threshold=0, movements=(4,))
    await add_product(pool, store, "HEALTHY", recorded=10, threshold=2, movements=(10,))

    # Run 1: everything flagged is new.
    before = datetime.now(UTC).replace(microsecond=0)
    first, alert1 = await reconcile_and_alert(activities, store)
    assert (alert1.status, alert1.new_alerts, alert1.resolved) == ("sent", 3, 0)
    assert len(smtp_sink.received) == 1
    mail = smtp_sink.received[0]
    assert mail.recipients == [STORE_EMAIL]
    assert mail.message["Message-ID"] == f"<stock-alert-{first.reconciliation_id}@petcare.test>"
    assert before <= parsedate_to_datetime(mail.message["Date"]) <= datetime.now(UTC)  # the send time
    assert mail.message["Auto-Submitted"] == "auto-generated"
    text = body(smtp_sink, 0)
    assert "DRIFT" in text
    assert "recorded 10, computed from movements 8 (difference -2)" in text
    assert "BOUNCY Product BOUNCY: 1 in stock, threshold 2" in text
    assert "CHANGING" in text
    assert "HEALTHY" not in text

    # Run 2: DRIFT and CHANGING unchanged, BOUNCY recovered: nothing new, so no email.
    await move(pool, bouncy, 5)
    await set_recorded(pool, bouncy, 6)
    _, alert2 = await reconcile_and_alert(activities, store)
    assert (alert2.status, alert2.new_alerts, alert2.resolved) == ("nothing", 0, 1)
    assert len(smtp_sink.received) == 1

    # Run 3: BOUNCY recurs and CHANGING's numbers change; DRIFT is still not repeated.
    await move(pool, bouncy, -5)
    await set_recorded(pool, bouncy, 1)
    await move(pool, changing, -1)
    _, alert3 = await reconcile_and_alert(activities, store)
    assert (alert3.status, alert3.new_alerts) == ("sent", 2)
    assert len(smtp_sink.received) == 2
    text = body(smtp_sink, 1)
    assert "BOUNCY" in text
    assert "recorded 5, computed from movements 3" in text
    assert "DRIFT" not in text

    assert await alert_rows(pool) == [
        ("BOUNCY", "low_stock", "recovered"),
        ("BOUNCY", "low_stock", None),
        ("CHANGING", "discrepancy", "changed"),
        ("CHANGING", "discrepancy", None),
        ("DRIFT", "discrepancy", None),
    ]
    assert await unemailed_alerts(pool) == 0


async def test_a_retry_after_the_email_went_out_does_not_send_it_again(
    pool: asyncpg.Pool, activities: StockActivities, smtp_sink: SmtpSink
) -> None:
    store = await add_store(pool, "Once", email=STORE_EMAIL)
    await add_product(pool, store, "LOW", recorded=0, threshold=3)
    summary, outcome = await reconcile_and_alert(activities, store)
    assert summary.reconciliation_id is not None

    again = await activity_env().run(
        activities.alert_store, AlertRequest(reconciliation_id=summary.reconciliation_id)
    )

    assert again == outcome
    assert again.status == "sent"
    assert len(smtp_sink.received) == 1


async def test_smtp_outage_is_retried_with_the_same_message(
    pool: asyncpg.Pool, activities: StockActivities, smtp_sink: SmtpSink
) -> None:
    store = await add_store(pool, "Outage", email=STORE_EMAIL)
    await add_product(pool, store, "LOW", recorded=0, threshold=3)
    summary = await reconcile(activities, store)
    assert summary.reconciliation_id is not None
    request = AlertRequest(reconciliation_id=summary.reconciliation_id)

    await smtp_sink.stop()
    with pytest.raises(ApplicationError) as raised:
        await activity_env().run(activities.alert_store, request)
    assert raised.value.type == "MailUnavailable"
    assert not raised.value.non_retryable
    status = await pool.fetchval("SELECT alert_status FROM stock_reconciliations")
    assert status == "sending"

    await smtp_sink.start()
    outcome = await activity_env().run(activities.alert_store, request)

    assert (outcome.status, outcome.new_alerts) == ("sent", 1)
    assert len(smtp_sink.received) == 1
    assert smtp_sink.received[0].message["Message-ID"] == outcome.message_id
    assert await pool.fetchval("SELECT count(*) FROM stock_alerts") == 1


@pytest.mark.parametrize(
    ("refused", "error_type", "code", "status"),
    [
        # The store's address: this email is undeliverable until the address is fixed.
        ("recipient", "MailRejected", "550", "failed"),
        # Our own sender: a configuration failure; no address is at fault, nothing is undeliverable.
        ("sender", "MailMisconfigured", "553", "pending"),
    ],
)
async def test_a_refused_email_fails_for_good_and_the_next_run_lists_its_alerts_again(
    pool: asyncpg.Pool,
    activities: StockActivities,
    smtp_sink: SmtpSink,
    refused: str,
    error_type: str,
    code: str,
    status: str,
) -> None:
    store = await add_store(pool, "Refused", email=STORE_EMAIL)
    await add_product(pool, store, "LOW", recorded=0, threshold=3)
    handler = smtp_sink.handler
    refusals = handler.rejected_recipients if refused == "recipient" else handler.rejected_senders
    refusals.add(STORE_EMAIL if refused == "recipient" else "stock@petcare.test")

    with pytest.raises(ApplicationError) as raised:
        await reconcile_and_alert(activities, store)
    assert (raised.value.type, raised.value.non_retryable) == (error_type, True)
    assert code in str(raised.value)
    run = await pool.fetchrow("SELECT alert_status, alert_error FROM stock_reconciliations")
    assert run is not None
    assert run["alert_status"] == status
    assert code in run["alert_error"]
    # The alerts are released at once, not held until the reservation lapses.
    assert await pool.fetchval("SELECT count(*) FROM stock_alerts WHERE notified_by IS NOT NULL") == 0

    # The address or the sender is fixed; the next run has nothing new but still owes the alert.
    refusals.clear()
    _, outcome = await reconcile_and_alert(activities, store)

    assert (outcome.status, outcome.new_alerts) == ("sent", 0)
    assert len(smtp_sink.received) == 1
    assert "LOW" in body(smtp_sink, 0)


async def test_alerts_go_to_the_fallback_address_when_the_store_has_none(
    pool: asyncpg.Pool, smtp_sink: SmtpSink
) -> None:
    store = await add_store(pool, "No address")
    await add_product(pool, store, "LOW", recorded=0, threshold=3)
    async with Mailer(SmtpSettings(host=smtp_sink.host, port=smtp_sink.port)) as mailer:
        with_ops = StockActivities(
            pool, mailer, from_address=FROM_ADDRESS, fallback_recipient="ops@petcare.test"
        )
        without = StockActivities(pool, mailer, from_address=FROM_ADDRESS, fallback_recipient=None)

        _, nobody = await reconcile_and_alert(without, store)
        _, ops = await reconcile_and_alert(with_ops, store)

    assert nobody.status == "no_recipient"
    assert ops.status == "sent"
    assert [mail.recipients for mail in smtp_sink.received] == [["ops@petcare.test"]]


async def test_a_store_name_with_line_breaks_is_folded_into_the_subject(
    pool: asyncpg.Pool, activities: StockActivities, smtp_sink: SmtpSink
) -> None:
    store = await add_store(pool, "Harbour\r\nBcc: thief@example.net\u2028", email=STORE_EMAIL)
    await add_product(pool, store, "LOW", recorded=0, threshold=3)
    _, outcome = await reconcile_and_alert(activities, store)
    assert outcome.status == "sent"
    [mail] = smtp_sink.received
    assert mail.recipients == [STORE_EMAIL]
    # One header, the injected text part of it (the email package may fold a long one onto a
    # continuation line: the leading whitespace is that fold, not the store's name).
    assert mail.message["Subject"].strip().startswith("Stock alert: Harbour Bcc: thief@example.net , 1 new")
    assert mail.message["Bcc"] is None


async def test_a_store_email_of_two_addresses_fails_that_alert_and_mails_nobody(
    pool: asyncpg.Pool, activities: StockActivities, smtp_sink: SmtpSink
) -> None:
    store = await add_store(pool, "Two managers", email="one@store.test, two@store.test")
    await add_product(pool, store, "LOW", recorded=0, threshold=3)
    with pytest.raises(ApplicationError) as raised:
        await reconcile_and_alert(activities, store)
    assert (raised.value.type, raised.value.non_retryable) == ("MailRejected", True)
    assert "holds 2 addresses" in str(raised.value)
    run = await pool.fetchrow("SELECT alert_status, alert_error FROM stock_reconciliations")
    assert run is not None
    assert run["alert_status"] == "failed"
    assert "holds 2 addresses" in run["alert_error"]
    assert smtp_sink.received == []
    # Released at once: the next run, with the address fixed, still owes the alert.
    assert await pool.fetchval("SELECT count(*) FROM stock_alerts WHERE notified_by IS NOT NULL") == 0


async def test_a_store_with_every_product_flagged_gets_a_summary_the_worst_items_and_a_csv(
    pool: asyncpg.Pool, activities: StockActivities, smtp_sink: SmtpSink
) -> None:
    """60 products, each a discrepancy and low stock: the text lists the 20 worst of each kind (the
    largest difference first), the attached CSV every one of the 120 alerts, and the report's path."""
    store = await add_store(pool, "Everything wrong", email=STORE_EMAIL)
    # Recorded 100 + n against 1 computed: differences -100 - n, the largest for the highest n.
    await pool.execute(
        """WITH p AS (
               INSERT INTO products (store_id, sku, name, stock_quantity, low_stock_threshold)
               SELECT $1, 'SKU-' || lpad(n::text, 3, '0'), 'Item ' || n, 100 + n, 5
                 FROM generate_series(1, 60) AS n RETURNING id)
           INSERT INTO stock_movements (product_id, quantity, kind) SELECT id, 1, 'bench' FROM p""",
        store,
    )

    summary, outcome = await reconcile_and_alert(activities, store)

    assert (outcome.status, outcome.new_alerts) == ("sent", 120)
    message = smtp_sink.received[0].message
    text_part = message.get_body(preferencelist=("plain",))
    assert text_part is not None
    text = text_part.get_content()
    assert "found 120 new item(s): 60 stock discrepancies, 60 low stock" in text
    assert "Stock discrepancies (60, the 20 largest):" in text
    listed = [line for line in text.splitlines() if line.startswith("- ")]
    assert len(listed) == 40
    assert listed[0].startswith("- SKU-060 Item 60: recorded 160")  # the worst first
    assert "... and 40 more (all in the attached CSV)" in text
    assert f"GET /api/v1/stock-reconciliations/{summary.reconciliation_id}" in text
    (attachment,) = list(message.iter_attachments())
    assert attachment.get_content_type() == "text/csv"
    rows = list(csv.reader(io.StringIO(attachment.get_content())))
    assert rows[0] == ["kind", "sku", "name", "recorded", "computed", "difference", "threshold"]
    assert len(rows) == 121
    assert rows[1] == ["discrepancy", "SKU-060", "Item 60", "160", "1", "-159", ""]
    # Every alert emailed is recorded as emailed by the run's own row: the alert rows were written
    # once, by the statement that opened them, and not again when the email went out.
    assert await unemailed_alerts(pool) == 0
    writers = await pool.fetchrow(
        """SELECT array_agg(DISTINCT a.xmin::text) AS alerts, min(r.xmin::text) AS run
             FROM stock_alerts a JOIN stock_reconciliations r ON r.id = a.notified_by"""
    )
    assert writers is not None
    assert len(writers["alerts"]) == 1
    assert writers["alerts"] != [writers["run"]]  # the run's row was written since (the send)


async def test_a_run_counts_its_alerts_through_their_run_indexes_not_the_whole_history(
    pool: asyncpg.Pool,
) -> None:
    """COUNTS must not read every alert ever written: its run's rows come from the run indexes."""
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute("SET LOCAL enable_seqscan = off")
        rows = await connection.fetch(f"EXPLAIN {stock_repository.COUNTS}", uuid.uuid4())
        plan = "\n".join(row[0] for row in rows)
    assert "stock_alerts_opened_by_idx" in plan, plan
    assert "stock_alerts_resolved_by_idx" in plan, plan
