"""The mailer against a real SMTP server: delivery, permanent refusal, a recipient refused for now,
outage and recovery, header values made safe, a cancelled send."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from email.message import EmailMessage

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from devstack.smtp_sink import SinkHandler, SmtpSink
from petcare.config import SmtpSettings
from petcare.errors import (
    DeliveryDeferred,
    DeliveryMisconfigured,
    DeliveryRejected,
    DeliveryUnavailable,
    UnsendableMessage,
)
from petcare.mail import Mailer, compose, header_text, stable_message_id
from tests.support.polling import poll
from tests.support.reminder_data import FullMailboxHandler


def _message(to: str, subject: str = "Hello") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Petcare <reminders@petcare.local>"
    message["To"] = to
    message["Subject"] = subject
    message.set_content("Body")
    return message


def _settings(sink: SmtpSink) -> SmtpSettings:
    return SmtpSettings(host=sink.host, port=sink.port, timeout_seconds=5)


async def test_delivers_and_reuses_connections(smtp_sink: SmtpSink) -> None:
    async with Mailer(_settings(smtp_sink), max_connections=2) as mailer:
        for n in range(5):
            await mailer.send(_message(f"customer{n}@example.com", subject=f"n{n}"))
    assert [mail.message["Subject"] for mail in smtp_sink.received] == [f"n{n}" for n in range(5)]
    assert smtp_sink.received[0].recipients == ["customer0@example.com"]
    mail_dir = smtp_sink.handler.mail_dir
    assert mail_dir is not None
    assert len(list(mail_dir.glob("*.eml"))) == 5


async def test_refused_recipient_is_permanent(smtp_sink: SmtpSink) -> None:
    smtp_sink.handler.rejected_recipients.add("nobody@example.com")
    async with Mailer(_settings(smtp_sink)) as mailer:
        with pytest.raises(DeliveryRejected, match="550"):
            await mailer.send(_message("nobody@example.com"))
        await mailer.send(_message("somebody@example.com"))  # the connection is still usable
    assert [mail.recipients for mail in smtp_sink.received] == [["somebody@example.com"]]


async def test_outage_is_transient_and_recovers(smtp_sink: SmtpSink) -> None:
    async with Mailer(_settings(smtp_sink)) as mailer:
        await mailer.send(_message("before@example.com"))
        await smtp_sink.stop()
        with pytest.raises(DeliveryUnavailable):
            await mailer.send(_message("during@example.com"))
        await smtp_sink.start()
        await mailer.send(_message("after@example.com"))
    assert [mail.recipients[0] for mail in smtp_sink.received] == ["before@example.com", "after@example.com"]


async def test_refused_sender_is_a_configuration_fault_not_a_bad_address(smtp_sink: SmtpSink) -> None:
    smtp_sink.handler.rejected_senders.add("reminders@petcare.local")
    async with Mailer(_settings(smtp_sink)) as mailer:
        with pytest.raises(DeliveryMisconfigured, match="553"):
            await mailer.send(_message("somebody@example.com"))
    assert smtp_sink.received == []


def test_stable_message_id_uses_the_sender_domain() -> None:
    first = stable_message_id("reminder", 42, "Petcare <reminders@petcare.example>")
    assert first == "<reminder-42@petcare.example>"
    assert first == stable_message_id("reminder", 42, "reminders@petcare.example")


@pytest.mark.parametrize(
    "value",
    [
        "Rex\nEvil",
        "Rex\r\nEvil",
        "Rex\vEvil",
        "Rex\fEvil",
        "Rex\x85Evil",
        "Rex\u2028Evil",
        "Rex\u2029Evil",
        "Rex\x00Evil",
        "Rex\tEvil",
        "Rex\x1bEvil",
        "Rex\x7fEvil",
        "Rex\x9fEvil",
        "Rex \r\n\t Evil",
    ],
)
def test_header_text_folds_line_breaks_and_controls_into_one_space(value: str) -> None:
    assert header_text(value) == "Rex Evil"


async def test_a_subject_from_data_is_sent_clean_and_two_addresses_are_refused(smtp_sink: SmtpSink) -> None:
    def message(recipient: str, subject: str) -> EmailMessage:
        return compose(
            sender="Petcare <reminders@petcare.local>",
            recipient=recipient,
            subject=subject,
            message_id="<test@petcare.local>",
            text="Body",
        )

    with pytest.raises(UnsendableMessage, match="holds 2 addresses"):
        message("one@example.com, two@example.com", "Hello")
    with pytest.raises(UnsendableMessage, match="invalid email address"):
        message("one@example.com\r\nBcc: two@example.com", "Hello")
    async with Mailer(_settings(smtp_sink)) as mailer:
        await mailer.send(message("one@example.com", "Rex\r\nBcc: two@example.com\u2028"))
    [mail] = smtp_sink.received
    assert mail.recipients == ["one@example.com"]
    assert mail.message["Subject"] == "Rex Bcc: two@example.com "
    assert mail.message["Bcc"] is None


@pytest.mark.parametrize("code", ["450 4.2.1 greylisted", "451 4.3.0 try later", "452 4.2.2 mailbox full"])
async def test_a_4xx_to_one_recipient_defers_that_message_and_the_session_goes_on(code: str) -> None:
    sink = SmtpSink("127.0.0.1", 0, FullMailboxHandler(full={"full@example.com"}, answer=code))
    await sink.start()
    try:
        async with Mailer(
            SmtpSettings(host=sink.host, port=sink.port, timeout_seconds=5), max_connections=1
        ) as mailer:
            with pytest.raises(DeliveryDeferred, match=code[:3]):
                await mailer.send(_message("full@example.com"))
            await mailer.send(_message("other@example.com"))
            assert sink.open_sessions == 1  # the same session took the next message
    finally:
        await sink.stop()
    assert [mail.recipients for mail in sink.received] == [["other@example.com"]]


async def test_a_421_to_a_recipient_is_the_server_not_the_recipient() -> None:
    sink = SmtpSink("127.0.0.1", 0, FullMailboxHandler(full={"any@example.com"}, answer="421 4.3.2 closing"))
    await sink.start()
    try:
        async with Mailer(SmtpSettings(host=sink.host, port=sink.port, timeout_seconds=5)) as mailer:
            with pytest.raises(DeliveryUnavailable, match="421") as raised:
                await mailer.send(_message("any@example.com"))
    finally:
        await sink.stop()
    assert not isinstance(raised.value, DeliveryDeferred)


@dataclass
class StallsFirstMessage(SinkHandler):
    """Holds the first message's DATA until the test is over, as a mail server that stopped answering."""

    stalled: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle_DATA(  # noqa: N802 - the name aiosmtpd calls
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        if not self.stalled.is_set():
            self.stalled.set()
            await asyncio.sleep(3600)
        return await super().handle_DATA(server, session, envelope)


async def test_a_cancelled_send_closes_its_session_and_frees_its_slot() -> None:
    handler = StallsFirstMessage()
    sink = SmtpSink("127.0.0.1", 0, handler)
    await sink.start()
    try:
        async with Mailer(
            SmtpSettings(host=sink.host, port=sink.port, timeout_seconds=30), max_connections=1
        ) as mailer:
            sending = asyncio.create_task(mailer.send(_message("slow@example.com")))
            await asyncio.wait_for(handler.stalled.wait(), 5)
            sending.cancel()  # as Temporal cancels an activity
            with pytest.raises(asyncio.CancelledError):
                await sending
            # The server sees the session end: nothing half-used is kept or left open.
            await poll(lambda: sink.open_sessions == 0, timeout=5, every=0.02)
            # The one connection slot is free again; the next message gets a new session.
            await asyncio.wait_for(mailer.send(_message("next@example.com")), 5)
    finally:
        await sink.stop()
    assert [mail.recipients for mail in sink.received] == [["next@example.com"]]
