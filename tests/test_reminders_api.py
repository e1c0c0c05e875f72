"""Reminders over HTTP on the real app, PostgreSQL, SMTP sink and dev server: each store's own words
(render, validation, revert), who was reminded (filters, cursors) and the retry of a failed reminder."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from devstack.rows import add_appointment, add_store
from devstack.smtp_sink import SmtpSink
from petcare.config import Settings
from petcare.models.reminders import PreviewRequest, ReminderRunResult
from tests.support.api import AUTH
from tests.support.reminder_data import reminder_activities, reminder_settings
from tests.support.workers import real_worker
from tests.test_reminders_customers import run_once

DELIVERIES = "/api/v1/reminders/deliveries"


def templates_url(store: UUID | str, locale: str = "fr") -> str:
    return f"/api/v1/stores/{store}/reminder-templates/{locale}"


# --- 5. Each store's own words.


async def test_a_store_sets_its_own_words_the_worker_uses_them_and_deleting_reverts(
    api_client: TestClient[Any, Any], pool: asyncpg.Pool, settings: Settings, smtp_sink: SmtpSink
) -> None:
    store = await add_store(pool, name="Salon Lyon", timezone="Europe/Paris", phone="+33472000000")
    other = await add_store(pool, name="Other")
    starts = datetime.now(UTC) + timedelta(hours=3)
    await add_appointment(pool, store_id=store, starts_at=starts, email="fr@example.com", locale="fr-CA")
    await add_appointment(pool, store_id=other, starts_at=starts, email="other@example.com", locale="fr")

    default = await api_client.get(templates_url(store), headers=AUTH)
    body = await default.json()
    assert default.status == 200, body
    assert body["emailSubject"] == {
        "template": "Rappel : rendez-vous de {pet} chez {store} le {date}",
        "source": "default",
    }
    assert {p["name"] for p in body["placeholders"]} >= {
        "pet",
        "first_name",
        "service",
        "store",
        "date",
        "time",
    }

    words = {
        "emailSubject": "{pet} chez {store} : {date} à {time}",
        "emailBody": "Bonjour {first_name},\n\n{pet} vous attend le {when} pour {service}.\n{contact}",
    }
    put = await api_client.put(templates_url(store), json=words, headers=AUTH)
    assert put.status == 200, await put.json()
    effective = await (await api_client.get(templates_url(store), headers=AUTH)).json()
    assert effective["emailSubject"] == {"template": words["emailSubject"], "source": "override"}
    assert effective["emailBody"]["source"] == "override"
    assert effective["sms"]["source"] == "default"

    async with reminder_activities(pool, settings, smtp_port=smtp_sink.port) as acts:
        preview = await ActivityEnvironment().run(acts.preview, PreviewRequest(as_of=datetime.now(UTC)))
        shown = {m.recipient: m for m in preview.messages}
        assert shown["fr@example.com"].templates == "override"
        assert (shown["fr@example.com"].subject or "").startswith("Rex chez Salon Lyon : ")
        assert shown["other@example.com"].templates == "default"
        _, result = await run_once(acts)
    assert result.sent_email == 2
    mail = {m.recipients[0]: m.message for m in smtp_sink.received}
    assert mail["fr@example.com"]["Subject"].startswith("Rex chez Salon Lyon : ")
    text = mail["fr@example.com"].get_body(("plain",)).get_content().replace("\r\n", "\n")  # type: ignore[union-attr]
    assert text.startswith("Bonjour Alex,\n\nRex vous attend le ")
    assert "appelez-nous au +33472000000" in text
    html = mail["fr@example.com"].get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "<p>Bonjour Alex,</p>" in html
    assert mail["other@example.com"]["Subject"].startswith("Rappel : rendez-vous de Rex chez Other")

    deleted = await api_client.delete(templates_url(store), headers=AUTH)
    assert deleted.status == 200
    assert (await deleted.json())["emailSubject"]["source"] == "default"
    assert await pool.fetchval("SELECT count(*) FROM reminder_templates") == 0


@pytest.mark.parametrize(
    ("words", "field", "says"),
    [
        ({"sms": "Rappel {pet} {pet.__class__}"}, "sms", "unknown placeholder {pet.__class__}"),
        ({"emailBody": "Bonjour {prenom}"}, "emailBody", "unknown placeholder {prenom}"),
        ({"emailBody": "Bonjour {first_name"}, "emailBody", "cannot be rendered"),
        ({"emailSubject": "{pet:>40}"}, "emailSubject", "format spec"),
        ({"emailSubject": "Rappel\nBcc: x@example.net"}, "emailSubject", "line break"),
        ({"sms": "{when} " * 12}, "sms", "SMS segments"),
        ({"sms": "  "}, "sms", "must not be empty"),
        ({"emailBody": "a\x00b"}, "emailBody", "NUL"),
    ],
)
async def test_templates_are_validated_when_written(
    api_client: TestClient[Any, Any], pool: asyncpg.Pool, words: dict[str, str], field: str, says: str
) -> None:
    store = await add_store(pool)
    answer = await api_client.put(templates_url(store), json=words, headers=AUTH)
    error = (await answer.json())["error"]
    assert answer.status == 422, error
    assert field in error["message"]
    assert says in error["message"]
    assert await pool.fetchval("SELECT count(*) FROM reminder_templates") == 0


async def test_template_routes_refuse_unknown_stores_locales_and_ids(
    api_client: TestClient[Any, Any], pool: asyncpg.Pool
) -> None:
    store = await add_store(pool)
    assert (await api_client.get(templates_url(uuid4()), headers=AUTH)).status == 404
    assert (await api_client.put(templates_url(uuid4()), json={}, headers=AUTH)).status == 404
    assert (await api_client.get(templates_url(store, "de"), headers=AUTH)).status == 404
    assert (await api_client.get(templates_url("nope"), headers=AUTH)).status == 400
    unknown = await api_client.put(templates_url(store), json={"subject": "x"}, headers=AUTH)
    assert unknown.status == 422
    assert (await api_client.get(templates_url(store))).status == 401


# --- 6. Who was reminded, and the retry.


async def test_deliveries_are_listed_by_filter_and_paged_with_cursors(
    api_client: TestClient[Any, Any], pool: asyncpg.Pool, settings: Settings, smtp_sink: SmtpSink
) -> None:
    store = await add_store(pool)
    starts = datetime.now(UTC) + timedelta(hours=3)
    sent = [
        await add_appointment(pool, store_id=store, starts_at=starts, email=f"ok{n}@example.com")
        for n in range(3)
    ]
    bounced = await add_appointment(pool, store_id=store, starts_at=starts, email="gone@example.com")
    smtp_sink.handler.rejected_recipients.add("gone@example.com")
    async with reminder_activities(pool, settings, smtp_port=smtp_sink.port) as acts:
        await run_once(acts)

    failed = await (await api_client.get(DELIVERIES, params={"state": "failed"}, headers=AUTH)).json()
    [record] = failed["deliveries"]
    assert record["appointmentId"] == str(bounced)
    assert (record["channel"], record["recipient"], record["state"]) == (
        "email",
        "gone@example.com",
        "failed",
    )
    assert "550" in record["error"]
    assert record["startsAt"] == record["appointmentStartsAt"]
    assert failed["nextCursor"] is None
    customer = await pool.fetchval("SELECT customer_id FROM appointments WHERE id = $1", sent[0])
    mine = await (await api_client.get(DELIVERIES, params={"customerId": str(customer)}, headers=AUTH)).json()
    assert [d["appointmentId"] for d in mine["deliveries"]] == [str(sent[0])]

    seen: list[str] = []
    params = {"state": "sent", "limit": "2"}
    first = await (await api_client.get(DELIVERIES, params=params, headers=AUTH)).json()
    seen += [d["appointmentId"] for d in first["deliveries"]]
    second = await (
        await api_client.get(DELIVERIES, params={**params, "cursor": first["nextCursor"]}, headers=AUTH)
    ).json()
    seen += [d["appointmentId"] for d in second["deliveries"]]
    assert sorted(seen) == sorted(map(str, sent))
    assert second["nextCursor"] is None

    foreign = await api_client.get(DELIVERIES, params={"cursor": first["nextCursor"]}, headers=AUTH)
    assert foreign.status == 400
    refused = (await foreign.json())["error"]
    assert refused["code"] == "invalid_cursor"  # the one cursor of every paged list (api/models.py)
    assert "other filters" in refused["message"]
    for garbage in ("nope", "eyJ2IjoxfQ", "!!!"):
        malformed = await api_client.get(DELIVERIES, params={"cursor": garbage}, headers=AUTH)
        assert malformed.status == 400, garbage
    assert (await api_client.get(DELIVERIES, params={"state": "lost"}, headers=AUTH)).status == 422


async def test_a_failed_reminder_is_sent_again_once_its_address_is_fixed(
    api_client: TestClient[Any, Any],
    api_settings: Settings,
    dev_client: Client,
    pool: asyncpg.Pool,
    smtp_sink: SmtpSink,
) -> None:
    store = await add_store(pool)
    starts = datetime.now(UTC) + timedelta(hours=3)
    typo = await add_appointment(pool, store_id=store, starts_at=starts, email="alex@exmaple.com")
    cancelled = await add_appointment(pool, store_id=store, starts_at=starts, email="bad@exmaple.com")
    done = await add_appointment(pool, store_id=store, starts_at=starts, email="fine@example.com")
    smtp_sink.handler.rejected_recipients |= {"alex@exmaple.com", "bad@exmaple.com"}
    settings = reminder_settings(api_settings, smtp_port=smtp_sink.port)
    async with reminder_activities(pool, settings, smtp_port=smtp_sink.port) as acts:
        _, result = await run_once(acts)
        assert (result.sent_email, result.failed) == (1, 2)
        # Failed too, then reminded by the main backend (reminder_sent_at): the claim would skip it
        # as reminded elsewhere, so the retry check must refuse it rather than answer 202.
        elsewhere = await add_appointment(pool, store_id=store, starts_at=starts, email="gone@exmaple.com")
        smtp_sink.handler.rejected_recipients.add("gone@exmaple.com")
        _, second = await run_once(acts)
        assert (second.sent_email, second.failed) == (0, 1)
    await pool.execute("UPDATE appointments SET reminder_sent_at = now() WHERE id = $1", elsewhere)

    await pool.execute(
        "UPDATE customers SET email = 'alex@example.com' FROM appointments a "
        "WHERE a.id = $1 AND customers.id = a.customer_id",
        typo,
    )
    await pool.execute("UPDATE appointments SET status = 'cancelled' WHERE id = $1", cancelled)
    async with real_worker(dev_client, settings, pool):
        answer = await api_client.post(f"{DELIVERIES}/{typo}/retry", headers=AUTH)
        started = await answer.json()
        assert answer.status == 202, started
        handle = dev_client.get_workflow_handle(started["workflowId"], run_id=started["runId"])
        outcome = await asyncio.wait_for(handle.result(), 60)
        run = ReminderRunResult.model_validate(outcome)
        assert (run.counts.sent_email, run.counts.failed) == (1, 0)
        assert (run.counts.due, run.pages, run.runs) == (1, 1, 1)

        again = await api_client.post(f"{DELIVERIES}/{typo}/retry", headers=AUTH)
        assert again.status == 409
        assert (await api_client.post(f"{DELIVERIES}/{done}/retry", headers=AUTH)).status == 409
        not_eligible = await api_client.post(f"{DELIVERIES}/{cancelled}/retry", headers=AUTH)
        assert not_eligible.status == 422
        assert "cancelled" in (await not_eligible.json())["error"]["message"]
        reminded = await api_client.post(f"{DELIVERIES}/{elsewhere}/retry", headers=AUTH)
        assert reminded.status == 422
        assert "another system" in (await reminded.json())["error"]["message"]
        assert (await api_client.post(f"{DELIVERIES}/{uuid4()}/retry", headers=AUTH)).status == 404
        assert (await api_client.post(f"{DELIVERIES}/nope/retry", headers=AUTH)).status == 400

    assert [m.recipients for m in smtp_sink.received] == [["fine@example.com"], ["alex@example.com"]]
    record = await pool.fetchrow(
        "SELECT state, recipient FROM reminder_deliveries WHERE appointment_id = $1", typo
    )
    assert record is not None
    assert (record["state"], record["recipient"]) == ("sent", "alex@example.com")
