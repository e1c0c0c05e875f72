"""Sending email over SMTP with a few reused connections, and telling permanent from transient faults."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import Policy
from email.utils import format_datetime, parseaddr
from types import TracebackType

import aiosmtplib

from petcare.config import SmtpSettings

log = logging.getLogger(__name__)


class MailRejected(Exception):
    """The server refused this message for good (5xx to its recipient or its content)."""


class MailMisconfigured(Exception):
    """The server refuses us, not the message (login, sender address, 5xx on EHLO): every message
    would fail the same way, so no message should be marked as undeliverable because of it."""


class MailUnavailable(Exception):
    """The server could not take the message now (down, 4xx, timeout): retry later."""


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
        """Deliver one message or raise MailRejected / MailMisconfigured / MailUnavailable."""
        async with self._slots:
            client = await self._checkout()
            try:
                await client.send_message(message)
            except (aiosmtplib.SMTPRecipientsRefused, aiosmtplib.SMTPResponseException) as error:
                await self._checkin(client)
                raise _classify(error) from None
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
                await _quit_quietly(client)  # the session is in an unknown state: never reuse it
                raise self._unavailable(error) from None
            await self._checkin(client)

    @property
    def _address(self) -> str:
        return f"{self._settings.host}:{self._settings.port}"

    def _unavailable(self, error: BaseException) -> MailUnavailable:
        return MailUnavailable(f"SMTP server {self._address}: {type(error).__name__}: {error}")

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
        except aiosmtplib.SMTPAuthenticationError:
            # Wrong credentials will not fix themselves; the message never names the password.
            raise MailMisconfigured(f"SMTP server {self._address} refused the login") from None
        except aiosmtplib.SMTPResponseException as error:
            if 500 <= error.code < 600:
                raise MailMisconfigured(
                    f"SMTP server {self._address}: {error.code} {error.message}"
                ) from None
            raise self._unavailable(error) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            raise self._unavailable(error) from None
        return client

    async def _checkin(self, client: aiosmtplib.SMTP) -> None:
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
) -> EmailMessage:
    """A plain-text message (with an HTML alternative if given) and the headers every mail of this
    service carries: `Date` (RFC 5322 requires it; the send time unless given), the caller's
    `stable_message_id`, and `Auto-Submitted` so auto-responders stay quiet (RFC 3834).

    Headers that describe the content (Content-Language) go on after this: set_content drops them.
    """
    message = EmailMessage(policy=policy)
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = format_datetime((sent_at or datetime.now(UTC)).astimezone(UTC))
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    return message


def _classify(error: aiosmtplib.SMTPRecipientsRefused | aiosmtplib.SMTPResponseException) -> Exception:
    """5xx to the recipient or the content: this message is refused. 5xx elsewhere (the sender,
    EHLO, AUTH): the server refuses us. 4xx anywhere: try again later."""
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        codes = [refusal.code for refusal in error.recipients]
        detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in error.recipients)
        permanent: type[Exception] = MailRejected
    else:
        codes = [error.code]
        detail = f"{error.code} {error.message}"
        permanent = MailRejected if isinstance(error, aiosmtplib.SMTPDataError) else MailMisconfigured
    if all(500 <= code < 600 for code in codes):
        return permanent(f"refused: {detail}")
    return MailUnavailable(f"deferred: {detail}")


async def _quit_quietly(client: aiosmtplib.SMTP) -> None:
    try:
        if client.is_connected:
            await client.quit()
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        client.close()
