"""Sending email over a few reused SMTP connections, answers classified as `petcare.errors`."""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.policy
import functools
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from email.errors import MessageDefect, MessageError
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import Policy
from email.utils import format_datetime, parseaddr
from types import TracebackType
from typing import Protocol

import aiosmtplib

from petcare.config import SmtpSettings
from petcare.errors import (
    DeliveryDeferred,
    DeliveryError,
    DeliveryMisconfigured,
    DeliveryRejected,
    DeliveryUnavailable,
    UnsendableMessage,
)

log = logging.getLogger(__name__)


# Line breaks (CR, LF, VT, FF, NEL, U+2028, U+2029) and every other C0/C1 control: in a header they
# would end it (header injection) or make the email package refuse the message.
_CONTROLS = "\x00-\x1f\x7f-\x9f\u2028\u2029"
_FOLD = re.compile(f"[ ]*[{_CONTROLS}][{_CONTROLS} ]*")


def header_text(value: str) -> str:
    """A header value built from data, made safe: each run of control characters (and the spaces
    around it) folds into one space, so "Rex\\r\\nBcc: x" is the harmless text "Rex Bcc: x"."""
    return _FOLD.sub(" ", value)


class Mailer:
    """At most `max_connections` SMTP sessions, each reused for many messages."""

    def __init__(self, settings: SmtpSettings, *, max_connections: int = 4) -> None:
        self._settings = settings
        self._idle: list[aiosmtplib.SMTP] = []
        self._slots = asyncio.Semaphore(max_connections)

    async def __aenter__(self) -> Mailer:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for client in idle:
            await _quit_quietly(client)

    async def send(self, message: EmailMessage | WireMessage) -> None:
        """Deliver one message or raise a DeliveryError: DeliveryRejected (UnsendableMessage),
        DeliveryUnavailable (DeliveryDeferred) or DeliveryMisconfigured."""
        async with self._slots:
            client = await self._checkout()
            # Back to the idle list only after an answer that leaves the session clean (aiosmtplib
            # sends RSET after a refusal); anything else, a cancellation included, closes it, so
            # a cancelled send never leaves a half-used session behind or open.
            reusable = False
            try:
                if isinstance(message, WireMessage):
                    await client.sendmail(message.sender, [message.recipient], message.data)
                else:
                    await client.send_message(message)
                reusable = True
            except (aiosmtplib.SMTPRecipientsRefused, aiosmtplib.SMTPResponseException) as error:
                reusable = True
                raise _classify(error) from None
            except (ValueError, MessageError, aiosmtplib.SMTPNotSupported) as error:
                # Raised while flattening or addressing the message (a non-ASCII address without
                # SMTPUTF8), before any mail transaction: this message's fault alone.
                reusable = True
                raise UnsendableMessage(f"cannot send this message: {error}") from None
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
                raise self._unavailable(error) from None
            finally:
                if reusable:
                    self._checkin(client)
                else:
                    client.close()

    @property
    def _address(self) -> str:
        return f"{self._settings.host}:{self._settings.port}"

    def _unavailable(self, error: BaseException) -> DeliveryUnavailable:
        return DeliveryUnavailable(f"SMTP server {self._address}: {type(error).__name__}: {error}")

    async def _checkout(self) -> aiosmtplib.SMTP:
        while self._idle:
            client = self._idle.pop()
            if client.is_connected:
                return client
        settings = self._settings
        client = aiosmtplib.SMTP(
            hostname=settings.host,
            port=settings.port,
            username=settings.username,
            password=settings.password.get_secret_value() if settings.password else None,
            use_tls=settings.use_tls,
            start_tls=settings.starttls,
            timeout=settings.timeout_seconds,
        )
        try:
            await client.connect()
        except asyncio.CancelledError:
            client.close()  # a half-open session must not outlive the cancelled send
            raise
        except aiosmtplib.SMTPAuthenticationError:
            # Wrong credentials will not fix themselves; the message never names the password.
            raise DeliveryMisconfigured(f"SMTP server {self._address} refused the login") from None
        except aiosmtplib.SMTPResponseException as error:
            if 500 <= error.code < 600:
                raise DeliveryMisconfigured(
                    f"SMTP server {self._address}: {error.code} {error.message}"
                ) from None
            raise self._unavailable(error) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            raise self._unavailable(error) from None
        return client

    def _checkin(self, client: aiosmtplib.SMTP) -> None:
        if client.is_connected:
            self._idle.append(client)


def stable_message_id(kind: str, key: object, from_address: str) -> str:
    """The same Message-ID for every attempt at one message, in the sender's domain (RFC 5322).

    A resend after a crash then carries the id of the first attempt, so it can be recognised.
    """
    return f"<{kind}-{key}@{_domain_of(from_address)}>"


@functools.lru_cache(maxsize=16)  # a process has one or two senders: parsed once, not per message
def _domain_of(from_address: str) -> str:
    return parseaddr(from_address)[1].rpartition("@")[2] or "petcare.invalid"


def compose(
    *,
    sender: str,
    recipient: str,
    subject: str,
    message_id: str,
    text: str,
    html: str | None = None,
    sent_at: datetime | None = None,
    policy: Policy | None = None,
    reply_to: str | None = None,
) -> EmailMessage:
    """A plain-text message (with an HTML alternative if given) and the headers every mail of this
    service carries: `Date` (RFC 5322 requires it; the send time unless given), the caller's
    `stable_message_id`, and `Auto-Submitted` so auto-responders stay quiet (RFC 3834); `Reply-To`
    when given (where a reply should go instead of the sender).

    Headers that describe the content (Content-Language) go on after this: set_content drops them.

    Every header value is folded with `header_text` (names in a subject come from customer and
    store rows). Raises UnsendableMessage when the recipient is not exactly one address or the
    email package refuses the message: a fault of this message only.
    """
    message = EmailMessage(policy=policy)
    try:
        message["From"] = header_text(sender)
        message["To"] = header_text(recipient)
        _require_one_address(recipient, message["To"])
        message["Subject"] = header_text(subject)
        if reply_to:
            message["Reply-To"] = header_text(reply_to)
        message["Date"] = format_datetime((sent_at or datetime.now(UTC)).astimezone(UTC))
        message["Message-ID"] = header_text(message_id)
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(text)
        if html is not None:
            message.add_alternative(html, subtype="html")
    except (ValueError, TypeError, MessageError) as error:
        raise UnsendableMessage(f"cannot build the message: {error}") from None
    return message


# --- Messages from a template: the email package parses every header value into its registry's
# objects, then folds each again (half a millisecond a message, more than the SMTP exchange). A job
# that sends thousands of one kind checks the fixed headers once; each message's own values are
# checked, encoded and folded here, to the same RFC 5322 / 2045 / 2047 form.


@dataclass(frozen=True)
class WireMessage:
    """A message as SMTP carries it: the envelope's two addresses and the DATA (CRLF lines, 7-bit)."""

    sender: str
    recipient: str
    data: bytes

    def __post_init__(self) -> None:
        """The SMTP client would take the first address it finds in "a@x\\r\\nb@y" or "a@x, b@y":
        an envelope address must be one address exactly as written, or nothing is sent."""
        for address in (self.sender, self.recipient):
            if not _PLAIN_ADDRESS.fullmatch(address) and parseaddr(address)[1] != address:
                raise UnsendableMessage(f"envelope address {address!r} is not exactly one address")


# RFC 5322 dot-atoms: what an address or a Message-ID is in the plain form, written as it is.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = rf"{_ATOM}(?:\.{_ATOM})*"
_PLAIN_ADDRESS = re.compile(rf"{_DOT_ATOM}@{_DOT_ATOM}")
_PLAIN_MESSAGE_ID = re.compile(rf"<{_DOT_ATOM}@{_DOT_ATOM}>")
# RFC 5321's limit on a path; a longer address, or Message-ID, goes the email package's way.
_ADDRESS_MAX = 254
_MESSAGE_ID_MAX = _ADDRESS_MAX + 2
# Lines of a header or a 7bit body: RFC 5322's recommended limit, the email package's too.
_LINE_MAX = 78
# RFC 2047: an encoded-word is at most 75 characters, a line holding one at most 76.
_ENCODED_LINE_MAX = 76
_ENCODED_WORD = "=?utf-8?b?{}?="
_ENCODED_WORD_OVERHEAD = len(_ENCODED_WORD.format(""))
# Text a 7bit body may hold as it is: lines of printable ASCII and tabs (no NUL, no lone CR).
_NOT_SEVEN_BIT = re.compile(rb"[^\t\n\x20-\x7e]")
# Compose's policy, with bodies made 7-bit up front: what the fallback below flattens.
_SEVEN_BIT = email.policy.SMTP.clone(cte_type="7bit")


class MessageTemplate:
    """Messages from one sender (and in one language), from the headers they share, checked and
    encoded once. `message()` makes the same message `compose()` does, as the bytes SMTP sends:
    the same headers (From, To, Subject, Reply-To, Date, Message-ID, Auto-Submitted, the MIME
    headers, Content-Language), the same parts and text once parsed. Values are folded with
    `header_text` as there; the subject is folded at spaces, or written as RFC 2047 encoded-words
    when it holds anything but ASCII (or text that would read as an encoded-word); bodies go as
    7bit when they can, else quoted-printable, so no server needs 8BITMIME.

    A recipient, Reply-To or Message-ID not in the plain `local@domain` form (a display name, a
    quoted local part, several addresses) is left to `compose()` and its checks, the message then
    flattened by the email package: the same message, the same refusals, only slower.
    """

    def __init__(self, *, sender: str, language: str | None = None) -> None:
        """Raises UnsendableMessage when the sender (or the language) cannot head a message."""
        headers = EmailMessage(policy=email.policy.SMTP)
        try:
            headers["From"] = header_text(sender)
            self._from = headers.policy.fold_binary("From", headers["From"])
            addresses = headers["From"].addresses
            self._language = b""
            if language is not None:
                headers["Content-Language"] = header_text(language)
                self._language = headers.policy.fold_binary("Content-Language", headers["Content-Language"])
        except (ValueError, TypeError, MessageError) as error:
            raise UnsendableMessage(f"cannot build the message: {error}") from None
        if not addresses:  # as aiosmtplib, which takes the envelope's sender from the first
            raise UnsendableMessage(f"sender {sender!r} holds no address")
        self._sender, self._language_tag = sender, language
        self._envelope_sender = addresses[0].addr_spec

    def message(
        self,
        *,
        recipient: str,
        subject: str,
        message_id: str,
        text: str,
        html: str | None = None,
        sent_at: datetime | None = None,
        reply_to: str | None = None,
    ) -> WireMessage:
        """Raises UnsendableMessage as `compose()` does: the recipient is not exactly one address,
        or a value cannot be written."""
        plain = (
            _is_plain_address(recipient)
            and (not reply_to or _is_plain_address(reply_to))
            and len(message_id) <= _MESSAGE_ID_MAX
            and _PLAIN_MESSAGE_ID.fullmatch(message_id) is not None
        )
        if not plain:
            return self._composed(recipient, subject, message_id, text, html, sent_at, reply_to)
        try:
            head = [
                self._from,
                b"To: %s\r\n" % recipient.encode(),
                _unstructured("Subject", subject),
                b"Reply-To: %s\r\n" % reply_to.encode() if reply_to else b"",
                b"Date: %s\r\n" % format_datetime((sent_at or datetime.now(UTC)).astimezone(UTC)).encode(),
                b"Message-ID: %s\r\n" % message_id.encode(),
                b"Auto-Submitted: auto-generated\r\nMIME-Version: 1.0\r\n",
            ]
            plain_part = _text_part("plain", text)
            if html is None:
                data = [*head, plain_part[0], self._language, b"\r\n", plain_part[1]]
            else:
                html_part = _text_part("html", html)
                boundary = _boundary(plain_part[1], html_part[1])
                data = [
                    *head,
                    b'Content-Type: multipart/alternative;\r\n boundary="%s"\r\n' % boundary,
                    self._language,
                    b"\r\n--%s\r\n%s\r\n%s" % (boundary, *plain_part),
                    b"\r\n--%s\r\n%s\r\n%s" % (boundary, *html_part),
                    b"\r\n--%s--\r\n" % boundary,
                ]
        except UnicodeEncodeError as error:  # a lone surrogate: no UTF-8 for it
            raise UnsendableMessage(f"cannot build the message: {error}") from None
        return WireMessage(self._envelope_sender, recipient, b"".join(data))

    def _composed(
        self,
        recipient: str,
        subject: str,
        message_id: str,
        text: str,
        html: str | None,
        sent_at: datetime | None,
        reply_to: str | None,
    ) -> WireMessage:
        """The email package's way, for the values not in the plain form."""
        message = compose(
            sender=self._sender,
            recipient=recipient,
            subject=subject,
            message_id=message_id,
            text=text,
            html=html,
            sent_at=sent_at,
            policy=_SEVEN_BIT,
            reply_to=reply_to,
        )
        if self._language_tag is not None:
            message["Content-Language"] = header_text(self._language_tag)
        address = message["To"].addresses[0].addr_spec
        if not address.isascii():
            raise UnsendableMessage(f"invalid email address {recipient!r}: not ASCII (SMTPUTF8 is not used)")
        try:
            data = message.as_bytes(policy=_SEVEN_BIT)
        except (ValueError, TypeError, MessageError) as error:
            raise UnsendableMessage(f"cannot build the message: {error}") from None
        return WireMessage(self._envelope_sender, address, data)


def _is_plain_address(address: str) -> bool:
    return len(address) <= _ADDRESS_MAX and _PLAIN_ADDRESS.fullmatch(address) is not None


def _unstructured(name: str, value: str) -> bytes:
    """An unstructured header (RFC 5322 3.2.5) holding `value` folded with header_text: ASCII folded
    at spaces, else RFC 2047 encoded-words (UTF-8, base64). Text that a reader would take for an
    encoded-word ("=?") is encoded too, so it reads back as written, never decoded."""
    value = header_text(value)
    if value.isascii() and "=?" not in value:
        lines = _folded(f"{name}: ", value)
        if max(map(len, lines)) <= _LINE_MAX:
            return "\r\n".join(lines).encode("ascii") + b"\r\n"
    return _encoded_words(f"{name}: ", value)


def _folded(prefix: str, value: str) -> list[str]:
    """Lines of at most _LINE_MAX where the words allow, each break made before a space and only
    before a word: unfolding (removing the CRLFs) gives the value back, and no line is all blank."""
    lines: list[str] = []
    line, words = prefix, value.split(" ")
    line += words[0]
    filled = bool(words[0])
    for word in words[1:]:
        if word and filled and len(line) + 1 + len(word) > _LINE_MAX:
            lines.append(line)
            line = ""
        line += " " + word
        filled = filled or bool(word)
    lines.append(line)
    return lines


def _encoded_words(prefix: str, value: str) -> bytes:
    """The whole value as encoded-words, one a line, each cut between characters (RFC 2047 6.3: the
    white space between two encoded-words is not part of the text, so the text is exactly theirs)."""
    data = value.encode("utf-8")
    lines: list[bytes] = []
    room = _ENCODED_LINE_MAX - len(prefix)
    start = 0
    while start < len(data) or not lines:
        size = (room - _ENCODED_WORD_OVERHEAD) // 4 * 3
        end = min(start + size, len(data))
        while end < len(data) and data[end] & 0xC0 == 0x80:  # inside a UTF-8 sequence
            end -= 1
        word = _ENCODED_WORD.format(base64.b64encode(data[start:end]).decode("ascii"))
        lines.append(word.encode("ascii"))
        start, room = end, _ENCODED_LINE_MAX - 1
    return prefix.encode("ascii") + b"\r\n ".join(lines) + b"\r\n"


def _text_part(subtype: str, text: str) -> tuple[bytes, bytes]:
    """(headers, body) of a text part as `set_content` makes it: lines as bytes.splitlines() cuts
    them (CR, LF, CRLF), each ended with CRLF; 7bit when short printable ASCII, else quoted-printable."""
    lines = text.encode("utf-8").splitlines()
    body = b"\n".join(lines) + b"\n"
    if max(map(len, lines), default=0) <= _LINE_MAX and not _NOT_SEVEN_BIT.search(body):
        encoding = b"7bit"
    else:
        encoding, body = b"quoted-printable", binascii.b2a_qp(body)
    headers = b'Content-Type: text/%s; charset="utf-8"\r\nContent-Transfer-Encoding: %s\r\n' % (
        subtype.encode("ascii"),
        encoding,
    )
    return headers, body.replace(b"\n", b"\r\n")


def _boundary(*bodies: bytes) -> bytes:
    """A random multipart boundary none of the bodies holds. With "=_" in it, no quoted-printable
    text can (an "=" there starts a hex pair or a soft line break)."""
    while True:
        boundary = b"=_" + secrets.token_hex(16).encode("ascii")
        if not any(boundary in body for body in bodies):
            return boundary


class _ParsedAddressHeader(Protocol):
    """What the email package's header registry makes of an address header."""

    @property
    def addresses(self) -> tuple[Address, ...]: ...
    @property
    def defects(self) -> tuple[MessageDefect, ...]: ...


def _require_one_address(recipient: str, header: _ParsedAddressHeader) -> None:
    """SMTP clients send to every address of the To header: "a@x, b@y" would reach both people."""
    addresses = header.addresses
    if len(addresses) != 1:
        raise UnsendableMessage(
            f"recipient {recipient!r} holds {len(addresses)} addresses where exactly one is expected"
        )
    if header.defects or not addresses[0].domain:
        raise UnsendableMessage(f"invalid email address {recipient!r}")


# 421 "service not available" closes the session whatever command it answers: the server's fault.
_SERVER_CLOSING = 421


def _classify(error: aiosmtplib.SMTPRecipientsRefused | aiosmtplib.SMTPResponseException) -> DeliveryError:
    """5xx to the recipient or the content: this message is refused. 5xx elsewhere (the sender,
    EHLO, AUTH): the server refuses us. 4xx to the recipient (450/451/452: mailbox full,
    greylisting): this message is deferred. 421, or 4xx elsewhere: the server, try again later."""
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        codes = [refusal.code for refusal in error.recipients]
        detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in error.recipients)
        permanent: type[DeliveryError] = DeliveryRejected
        transient: type[DeliveryUnavailable] = DeliveryDeferred
    else:
        codes = [error.code]
        detail = f"{error.code} {error.message}"
        permanent = DeliveryRejected if isinstance(error, aiosmtplib.SMTPDataError) else DeliveryMisconfigured
        transient = DeliveryUnavailable
    if all(500 <= code < 600 for code in codes):
        return permanent(f"refused: {detail}")
    if _SERVER_CLOSING in codes or not all(400 <= code < 600 for code in codes):
        return DeliveryUnavailable(f"deferred: {detail}")
    return transient(f"deferred: {detail}")


async def _quit_quietly(client: aiosmtplib.SMTP) -> None:
    try:
        if client.is_connected:
            await client.quit()
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        client.close()
