"""The mailer against a real SMTP server: delivery, permanent refusal, outage and recovery."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from petcare.config import SmtpSettings
from petcare.devstack.smtp_sink import SmtpSink
from petcare.mail import Mailer, MailMisconfigured, MailRejected, MailUnavailable, stable_message_id


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
        with pytest.raises(MailRejected, match="550"):
            await mailer.send(_message("nobody@example.com"))
        await mailer.send(_message("somebody@example.com"))  # the connection is still usable
    assert [mail.recipients for mail in smtp_sink.received] == [["somebody@example.com"]]


async def test_outage_is_transient_and_recovers(smtp_sink: SmtpSink) -> None:
    async with Mailer(_settings(smtp_sink)) as mailer:
        await mailer.send(_message("before@example.com"))
        await smtp_sink.stop()
        with pytest.raises(MailUnavailable):
            await mailer.send(_message("during@example.com"))
        await smtp_sink.start()
        await mailer.send(_message("after@example.com"))
    assert [mail.recipients[0] for mail in smtp_sink.received] == ["before@example.com", "after@example.com"]


async def test_refused_sender_is_a_configuration_fault_not_a_bad_address(smtp_sink: SmtpSink) -> None:
    smtp_sink.handler.rejected_senders.add("reminders@petcare.local")
    async with Mailer(_settings(smtp_sink)) as mailer:
        with pytest.raises(MailMisconfigured, match="553"):
            await mailer.send(_message("somebody@example.com"))
    assert smtp_sink.received == []


def test_stable_message_id_uses_the_sender_domain() -> None:
    first = stable_message_id("reminder", 42, "Petcare <reminders@petcare.example>")
    assert first == "<reminder-42@petcare.example>"
    assert first == stable_message_id("reminder", 42, "reminders@petcare.example")
