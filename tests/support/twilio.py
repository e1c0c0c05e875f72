"""A local HTTP server speaking Twilio's Messages API, with faults to inject (bad numbers, 5xx, slowness)."""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import encode_basic_auth, web


@dataclass
class SentSms:
    sid: str
    to: str
    sender: str
    body: str
    received_at: float  # time.monotonic() when the request arrived


@dataclass
class TwilioGatewayServer:
    """POST /2010-04-01/Accounts/{sid}/Messages.json with basic auth and form fields To, From, Body."""

    account_sid: str = "AC00000000000000000000000000000001"
    auth_token: str = "test-auth-token"
    host: str = "127.0.0.1"
    invalid_numbers: set[str] = field(default_factory=set)
    # Valid numbers that cannot take SMS (landlines): Twilio's 21614.
    landline_numbers: set[str] = field(default_factory=set)
    # Numbers that texted STOP: Twilio's 21610 until they text START again.
    unsubscribed_numbers: set[str] = field(default_factory=set)
    # From numbers the account may not send from: Twilio's 21606 (our configuration, not the recipient).
    invalid_senders: set[str] = field(default_factory=set)
    # Numbers that have had too many messages from our number lately: Twilio's 429 with code 14107,
    # a refusal of this one recipient that passes with time.
    busy_numbers: set[str] = field(default_factory=set)
    # Numbers whose message is answered 201 without a sid (a gateway that lost track of it).
    sidless_numbers: set[str] = field(default_factory=set)
    # The API has moved: every request is answered 307 to the same path under /moved, which works.
    moved: bool = False
    # Set to a 5xx (or 429) status to make every request fail that way until reset to None.
    fail_status: int | None = None
    delay_seconds: float = 0.0
    messages: list[SentSms] = field(default_factory=list)
    requests: int = 0
    # Every number a message was asked for, refused or not, in order.
    attempted: list[str] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self._create_message)
        app.router.add_post("/moved/2010-04-01/Accounts/{sid}/Messages.json", self._create_message)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind((self.host, self.port))
        self.port = listener.getsockname()[1]
        await web.SockSite(self._runner, listener).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> TwilioGatewayServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    def _error(self, status: int, code: int, message: str) -> web.Response:
        return web.json_response({"code": code, "message": message, "status": status}, status=status)

    async def _create_message(self, request: web.Request) -> web.Response:
        self.requests += 1
        arrived = time.monotonic()
        if self.moved and not request.path.startswith("/moved/"):
            raise web.HTTPTemporaryRedirect(f"/moved{request.path}")
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        expected = encode_basic_auth(self.account_sid, self.auth_token)
        if request.match_info["sid"] != self.account_sid or request.headers.get("Authorization") != expected:
            return self._error(401, 20003, "Authenticate")
        if self.fail_status is not None:
            return self._error(self.fail_status, 20500, "Internal Server Error")
        form = await request.post()
        to, sender, body = (str(form.get(name, "")) for name in ("To", "From", "Body"))
        self.attempted.append(to)
        if not to or not sender or not body:
            return self._error(400, 21604, "A 'To', 'From' and 'Body' are required.")
        if sender in self.invalid_senders:
            return self._error(
                400, 21606, f"The From phone number {sender} is not a valid, SMS-capable inbound phone number"
            )
        if to in self.invalid_numbers:
            return self._error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if to in self.unsubscribed_numbers:
            return self._error(400, 21610, "Attempt to send to unsubscribed recipient")
        if to in self.landline_numbers:
            return self._error(400, 21614, f"'To' number {to} is not a valid mobile number")
        if to in self.busy_numbers:
            return self._error(429, 14107, f"Too many messages to {to} from {sender}: wait, then send again")
        if to in self.sidless_numbers:
            return web.json_response({"to": to, "status": "queued"}, status=201)
        sid = f"SM{next(self._ids):032x}"
        self.messages.append(SentSms(sid, to, sender, body, arrived))
        return web.json_response(
            {"sid": sid, "to": to, "from": sender, "body": body, "status": "queued"}, status=201
        )
