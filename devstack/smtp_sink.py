"""A real SMTP server (aiosmtpd) that keeps what it receives, in memory and as .eml files."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import multiprocessing
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from devstack.ports import free_port

log = logging.getLogger(__name__)


@dataclass
class ReceivedMail:
    sender: str
    recipients: list[str]
    message: EmailMessage


@dataclass
class SinkHandler:
    """aiosmtpd handler: stores messages; refuses the recipients and senders it is told to."""

    mail_dir: Path | None = None
    received: list[ReceivedMail] = field(default_factory=list)
    rejected_recipients: set[str] = field(default_factory=set)
    rejected_senders: set[str] = field(default_factory=set)

    async def handle_MAIL(  # noqa: N802 - the name aiosmtpd calls
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.lower() in self.rejected_senders:
            return "553 5.7.1 sender not allowed to relay"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(  # noqa: N802 - the name aiosmtpd calls
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.lower() in self.rejected_recipients:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - the name aiosmtpd calls
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        raw = envelope.original_content or b""
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.received.append(ReceivedMail(str(envelope.mail_from), list(envelope.rcpt_tos), message))
        if self.mail_dir is not None:
            self.mail_dir.mkdir(parents=True, exist_ok=True)
            (self.mail_dir / f"{time.time_ns()}.eml").write_bytes(raw)
        return "250 Message accepted for delivery"


class SmtpSink:
    """Runs on the caller's event loop; `stop()` then `start()` again simulates an outage."""

    def __init__(self, host: str, port: int, handler: SinkHandler | None = None) -> None:
        self.host = host
        self.port = port
        self.handler = handler or SinkHandler()
        self._server: asyncio.Server | None = None
        self._sessions: list[SMTP] = []

    @property
    def received(self) -> list[ReceivedMail]:
        return self.handler.received

    @property
    def open_sessions(self) -> int:
        """Client connections open right now (aiosmtpd drops a session's transport when it ends)."""
        return sum(session.transport is not None for session in self._sessions)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, self.host, self.port)
        sockets = self._server.sockets
        self.port = sockets[0].getsockname()[1]
        log.info("SMTP sink listening on %s:%s", self.host, self.port)

    def _protocol(self) -> SMTP:
        session = SMTP(self.handler, hostname="petcare-smtp-sink", ident="petcare SMTP sink")
        self._sessions.append(session)
        return session

    async def stop(self) -> None:
        """Stop listening and drop open connections, as a crashed mail server would."""
        if self._server is not None:
            self._server.close()
            for session in self._sessions:
                if session.transport is not None:
                    session.transport.close()
            self._sessions.clear()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> SmtpSink:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()


def _serve(port: int, ready: Event, stop: Event) -> None:
    """A sink in its own process until `stop`: it keeps what it receives in that process's memory."""

    async def main() -> None:
        async with SmtpSink("127.0.0.1", port):
            ready.set()
            await asyncio.to_thread(stop.wait)

    asyncio.run(main())


@asynccontextmanager
async def sink_process() -> AsyncIterator[int]:
    """A sink in a child process, as a real server is not in the sender's (its parsing of every
    message does not run on the sender's event loop); yields its port on 127.0.0.1."""
    port, context = free_port(), multiprocessing.get_context("spawn")
    ready, stop = context.Event(), context.Event()
    child = context.Process(target=_serve, args=(port, ready, stop), daemon=True)
    child.start()
    try:
        if not await asyncio.to_thread(ready.wait, 30):
            raise RuntimeError("the SMTP sink did not start")
        yield port
    finally:
        stop.set()
        await asyncio.to_thread(child.join, 10)
