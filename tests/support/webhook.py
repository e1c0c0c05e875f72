"""A chat webhook on loopback (Slack's incoming-webhook shape): records each JSON body it accepts,
and answers what the test tells it to (200, a 503 outage, a 404 revoked URL, a redirect)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from aiohttp import web

# The path stands for the secret part of a real webhook URL.
SECRET_PATH = "/services/T000/B000/wh-secret-5e1f"


class WebhookReceiver:
    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.status = 200
        self.redirected: list[str] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        if self.status == 302:
            raise web.HTTPFound("/elsewhere")
        if self.status != 200:
            return web.Response(status=self.status, text="no")
        self.received.append(await request.json())
        return web.Response(text="ok")

    async def elsewhere(self, request: web.Request) -> web.Response:
        self.redirected.append(await request.text())
        return web.Response(text="ok")


@pytest_asyncio.fixture
async def webhook() -> AsyncIterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    app = web.Application()
    app.router.add_post(SECRET_PATH, receiver.handle)
    app.router.add_post("/elsewhere", receiver.elsewhere)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    receiver.url = f"http://127.0.0.1:{runner.addresses[0][1]}{SECRET_PATH}"
    yield receiver
    await runner.cleanup()
