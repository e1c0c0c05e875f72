"""MessageTemplate against the email package: for any subject, names, bodies and addresses, its bytes
parse to the message compose() builds; header injection, several recipients and bad values are
refused or made harmless as there; the reminders send it over real SMTP."""

from __future__ import annotations

import base64
import email.policy
import re
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any
from uuid import UUID

import hypothesis
import pytest
from aiosmtplib.email import flatten_message
from hypothesis import strategies as st

from activities.reminders.messages import (
    ReminderContext,
    ReminderEmails,
    build_email,
    reminder_message_id,
    render_reminder,
)
from devstack.smtp_sink import SmtpSink
from petcare.config import SmtpSettings
from petcare.errors import UnsendableMessage
from petcare.mail import Mailer, MessageTemplate, WireMessage, compose, header_text

SENDER = "Petcare Reminders <reminders@petcare.local>"
SENT_AT = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
MESSAGE_ID = "<reminder-98e44c72-6feb-5daa-80c5-35cf92bd19d9@petcare.local>"


def parsed(data: bytes) -> EmailMessage:
    message = BytesParser(policy=email.policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    return message


def reference(language: str | None = "en", **values: Any) -> bytes:
    """compose()'s message as aiosmtplib flattens it for a server with 8BITMIME."""
    message = compose(sender=SENDER, sent_at=SENT_AT, **values)
    if language is not None:
        message["Content-Language"] = language
    return flatten_message(message, cte_type="8bit")


def prepared(language: str | None = "en", **values: Any) -> WireMessage:
    return MessageTemplate(sender=SENDER, language=language).message(sent_at=SENT_AT, **values)


def reading(message: EmailMessage) -> tuple[object, ...]:
    """What a mail client makes of a message: every header's decoded value, the structure, each
    part's type, charset and decoded text (a line break read as a line break, CRLF or LF).

    Not the boundary (random), the transfer encodings (the template's 7bit or quoted-printable,
    the email package's sometimes 8bit or base64), nor a part's own MIME-Version (the email package
    repeats it on the HTML part, where it means nothing). A subject is read without leading spaces:
    a reader drops them, and the email package adds one when its first word does not fit the first
    line (the template's subject reads back as given: see subject_as_given)."""
    transport = {"content-type", "content-transfer-encoding"}
    headers = sorted(
        (name.lower(), str(value).lstrip(" ") if name.lower() == "subject" else str(value))
        for name, value in message.items()
        if name.lower() not in transport
    )
    parts = [
        (part.get_content_type(), part.get_content_charset(), part.get_content().replace("\r\n", "\n"))
        for part in (message.iter_parts() if message.is_multipart() else [message])
    ]
    return headers, message.get_content_type(), parts


def subject_as_given(wire: WireMessage, subject: str) -> bool:
    """The subject reads back as header_text made it (but for the spaces it starts with: a reader
    drops them from plain text, keeps them from an encoded-word)."""
    return str(parsed(wire.data)["Subject"]).lstrip(" ") == header_text(subject).lstrip(" ")


def defects(message: EmailMessage) -> list[object]:
    """What the parser found wrong, in the structure or in any header of any part."""
    found: list[object] = []
    for part in message.walk():
        found += part.defects
        found += [defect for _, value in part.items() for defect in getattr(value, "defects", ())]
    return found


def assert_same_message(wire: WireMessage, expected: bytes, *, line_max: int = 78) -> None:
    ours = parsed(wire.data)
    assert reading(ours) == reading(parsed(expected))
    assert defects(ours) == []
    lines = wire.data.split(b"\r\n")
    assert lines[-1] == b""  # every line ends with CRLF, and nothing else ends one
    assert all(b"\r" not in line and b"\n" not in line for line in lines)
    assert wire.data.isascii()
    assert max(map(len, lines)) <= line_max  # RFC 5322's recommended 78, headers and bodies alike
    head = lines[: lines.index(b"")]
    # Folding never leaves a line of blanks alone (RFC 5322 3.2.2).
    assert all(line.strip(b" \t") for line in head)
    # Each encoded-word holds whole characters (RFC 2047 5): a strict reader decodes each alone.
    for word in re.findall(rb"=\?utf-8\?b\?([^?]*)\?=", b"\n".join(head)):
        base64.b64decode(word).decode("utf-8")


# Text as data brings it: any character (line breaks, controls, U+2028, emoji, CJK, combining marks),
# spaces in runs, and long words. "=?" is left out here: see the test below.
any_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=300).filter(
    lambda text: "=?" not in text
)
addresses = st.from_regex(r"[a-z0-9][a-z0-9.+_-]{0,20}@[a-z0-9-]{1,20}\.[a-z]{2,6}", fullmatch=True).filter(
    lambda address: ".." not in address and ".@" not in address
)


@hypothesis.settings(max_examples=300, deadline=None, database=None, derandomize=True)
@hypothesis.given(
    subject=any_text,
    text=any_text,
    html=st.none() | any_text,
    recipient=addresses,
    reply_to=st.none() | addresses,
    language=st.sampled_from([None, "en", "fr", "es"]),
)
def test_any_values_make_the_message_compose_makes(
    subject: str, text: str, html: str | None, recipient: str, reply_to: str | None, language: str | None
) -> None:
    values = {
        "recipient": recipient,
        "subject": subject,
        "message_id": MESSAGE_ID,
        "text": text,
        "html": html,
        "reply_to": reply_to,
    }
    wire = prepared(language, **values)
    assert (wire.sender, wire.recipient) == ("reminders@petcare.local", recipient)
    assert_same_message(wire, reference(language, **values))
    assert subject_as_given(wire, subject)


@pytest.mark.parametrize(
    "subject",
    [
        "Reminder: Rex's appointment at Paws & Co on Tuesday, December 1 at 10:30 AM (CET), see you soon",
        "Rappel : rendez-vous de Zoé à 10:30 chez « Le Toilettage » — mardi 1 décembre",
        "予約のリマインダー、レックスのトリミング、12月1日10:30、パウズ",
        "🐶 Rex " * 20,
        "Rex\r\nBcc: thief@example.net",
        "Rex\nTo: other@example.net\u2028X-Injected: yes\u2029\x85\x0b\x0c",
        "  spaces around  and   between  ",
        "a" * 200,
        " ".join(["word"] * 40),
        "x" * 70 + " " + "y" * 70,
        "z" * 69 + " " * 30,  # the spaces past the line's end must not make a line of their own
        "w" * 60 + " " * 30 + "v",
        "",
        "\u0301combining first",
    ],
    ids=range(14),
)
def test_tricky_subjects_read_the_same_and_inject_nothing(subject: str) -> None:
    values = {
        "recipient": "jean@example.com",
        "subject": subject,
        "message_id": MESSAGE_ID,
        "text": "Hello Jean,\n\nSee you soon.\n",
        "html": "<p>Hello Jean,</p>",
        "reply_to": "salon@example.com",
    }
    wire = prepared(**values)
    assert_same_message(wire, reference(**values))
    assert subject_as_given(wire, subject)
    message = parsed(wire.data)
    assert [message.get_all(name) for name in ("Bcc", "Cc", "X-Injected")] == [None, None, None]
    assert message.get_all("To") == ["jean@example.com"]


@pytest.mark.parametrize("subject", ["=?utf-8?q?Evil?=", "Rex =?iso-8859-1?b?QQ==?= and co", "a=?b"])
def test_text_that_looks_like_an_encoded_word_reads_as_written(subject: str) -> None:
    """The email package decodes "=?...?=" in a value it is given (a pet named so would read
    "Evil"): the template encodes the whole subject instead, so it reads back exactly."""
    wire = prepared(recipient="jean@example.com", subject=subject, message_id=MESSAGE_ID, text="x", html=None)
    assert subject_as_given(wire, subject)
    assert defects(parsed(wire.data)) == []


@pytest.mark.parametrize(
    "body",
    [
        "--=_0123\n--",
        "line\r\nwith\rall\nbreaks\r\n\r\n",
        "trailing spaces   \nand tabs\t\n",
        ".\n..\nFrom the start\n",
        "nul\x00and\x1bescape",
        "x" * 78 + "\n" + "y" * 79,
        "é" * 100,
        "=3D literal =\n= at the end=",
    ],
    ids=range(8),
)
def test_bodies_read_the_same_as_set_content_makes_them(body: str) -> None:
    values = {
        "recipient": "jean@example.com",
        "subject": "Hello",
        "message_id": MESSAGE_ID,
        "text": body,
        "html": body,
    }
    assert_same_message(prepared(**values), reference(**values))


def test_a_recipient_that_is_not_one_plain_address_is_refused_or_built_as_compose_does() -> None:
    def message(recipient: str, reply_to: str | None = None) -> WireMessage:
        return prepared(recipient=recipient, subject="Hi", message_id=MESSAGE_ID, text="x", reply_to=reply_to)

    with pytest.raises(UnsendableMessage, match="holds 2 addresses"):
        message("one@example.com, two@example.com")
    with pytest.raises(UnsendableMessage, match="holds 0 addresses"):
        message("")
    for injected in ("one@example.com\r\nBcc: two@example.com", "one@example.com\nBcc: two@example.com"):
        with pytest.raises(UnsendableMessage, match="invalid email address"):
            message(injected)
    for not_ascii in ("josé@example.com", "jose@exämple.com"):  # no SMTPUTF8: refused as before
        with pytest.raises(UnsendableMessage, match="invalid email address"):
            message(not_ascii)
    # A display name, or a quoted local part: the email package's way, the same message.
    for recipient, envelope in (
        ("Jean Dupont <jean@example.com>", "jean@example.com"),
        ('"j d"@example.com', '"j d"@example.com'),
    ):
        wire = message(recipient, reply_to="Salon <salon@example.com>")
        values = {
            "recipient": recipient,
            "subject": "Hi",
            "message_id": MESSAGE_ID,
            "text": "x",
            "html": None,
        }
        assert_same_message(wire, reference(**values, reply_to="Salon <salon@example.com>"))
        assert wire.recipient == envelope


def test_long_addresses_and_message_ids_stay_whole_on_their_line() -> None:
    """An address or a Message-ID cannot be folded: over 78 characters, its line is longer (the
    email package's too), well inside RFC 5322's 998."""
    for local in ("a" * 90, "b" * 240):
        values = {
            "recipient": f"{local}@example.com",
            "subject": "Hi",
            "message_id": f"<reminder-{local}@notifications.example.com>",
            "text": "x",
            "html": "y",
            "reply_to": f"{local}@salon.example.com",
        }
        wire = prepared(**values)
        assert_same_message(wire, reference(**values), line_max=998)
        assert wire.recipient == values["recipient"]


def test_the_sender_is_checked_once_and_its_name_encoded() -> None:
    template = MessageTemplate(sender="Toilettage Zoé <rappels@petcare.local>", language="fr")
    wire = template.message(recipient="a@example.com", subject="x", message_id=MESSAGE_ID, text="x")
    assert wire.sender == "rappels@petcare.local"
    assert str(parsed(wire.data)["From"]) == "Toilettage Zoé <rappels@petcare.local>"
    assert re.search(rb"^From: Toilettage =\?utf-8\?[qb]\?", wire.data, re.MULTILINE)
    for nobody in ("", "undisclosed-recipients:;"):
        with pytest.raises(UnsendableMessage, match="holds no address"):
            MessageTemplate(sender=nobody)


def test_a_reminder_reads_the_same_as_the_email_package_builds_it() -> None:
    emails = ReminderEmails(SENDER)
    for locale, pet, store_email in (
        ("en", "Rex", "salon@example.com"),
        ("fr", "Zoé\r\nBcc: x@y", " bad address "),
    ):
        rendered = render_reminder(
            ReminderContext(
                appointment_id="a",
                first_name="Jean-Éric",
                pet_name=pet,
                service_name="Toilettage complet",
                store_name="Paws & Co",
                store_phone="+33 1 40 00 00 00",
                store_timezone="Europe/Paris",
                starts_at=SENT_AT,
                locale=locale,
                store_email=store_email,
            )
        )
        message_id = reminder_message_id(UUID(int=7), SENT_AT, SENDER)
        values = {"recipient": "jean@example.com", "message_id": message_id, "reply_to": store_email}
        wire = emails.build(rendered, **values)
        expected = build_email(rendered, sender=SENDER, **values)
        ours = parsed(wire.data)
        # The Date is the send time: the one thing the two do not share.
        assert ours["Date"] is not None
        assert expected["Date"] is not None
        del ours["Date"], expected["Date"]
        assert reading(ours) == reading(parsed(flatten_message(expected)))
        assert ours["Content-Language"] == locale


async def test_a_prepared_message_goes_out_over_smtp_as_it_was_made(smtp_sink: SmtpSink) -> None:
    wire = prepared(
        recipient="jean@example.com",
        subject="Rappel : Zoé\r\nBcc: thief@example.net",
        message_id=MESSAGE_ID,
        text="Bonjour é\n.\nfin",
        html="<p>é</p>",
    )
    async with Mailer(SmtpSettings(host=smtp_sink.host, port=smtp_sink.port, timeout_seconds=5)) as mailer:
        await mailer.send(wire)
    # The SMTP client would send these to their first address: no such message can be made.
    for envelope in ("a@example.com\r\nRCPT TO:<b@example.com>", "a@example.com, b@example.com", "A <a@x.y>"):
        with pytest.raises(UnsendableMessage, match="is not exactly one address"):
            WireMessage("reminders@petcare.local", envelope, wire.data)
    [mail] = smtp_sink.received
    assert (mail.sender, mail.recipients) == ("reminders@petcare.local", ["jean@example.com"])
    assert reading(mail.message) == reading(parsed(wire.data))
    assert mail.message["Subject"] == "Rappel : Zoé Bcc: thief@example.net"
    plain = mail.message.get_body(("plain",))
    assert plain is not None
    assert plain.get_content().replace("\r\n", "\n") == "Bonjour é\n.\nfin\n"  # the lone dot survived
