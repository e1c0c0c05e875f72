"""Sending email over a few reused SMTP connections, answers classified as `petcare.errors`."""

from __future__ import annotations

import asyncio
import logging
import re
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

    async def send(self, message: EmailMessage) -> None:
        """Deliver one message or raise a DeliveryError: DeliveryRejected (UnsendableMessage),
        DeliveryUnavailable (DeliveryDeferred) or DeliveryMisconfigured."""
        async with self._slots:
            client = await self._checkout()
            # Back to the idle list only after an answer that leaves the session clean (aiosmtplib
            # sends RSET after a refusal); anything else, a cancellation included, closes it, so
            # a cancelled send never leaves a half-used session behind or open.
            reusable = False
            try:
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
    domain = parseaddr(from_address)[1].rpartition("@")[2] or "petcare.invalid"
    return f"<{kind}-{key}@{domain}>"


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
