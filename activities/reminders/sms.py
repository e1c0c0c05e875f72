"""SMS gateways (Twilio's Messages API, or a log line) and a rate limit toward them."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

import aiohttp

from petcare.config import SmsSettings

log = logging.getLogger(__name__)


class SmsRejected(Exception):
    """The gateway refused this message for good (4xx: invalid number, unsubscribed...)."""


class SmsUnavailable(Exception):
    """The gateway could not take it now (5xx, 429, timeout, connection refused): retry later."""


class SmsConfigurationError(Exception):
    """The provider cannot work with these settings; names the variable, never a secret."""


class SmsGateway(Protocol):
    async def send(self, to: str, body: str) -> str | None:
        """Send one message; returns the provider's id for it, if any."""


class LogGateway:
    """For development: records that a message would go out, without its content."""

    async def send(self, to: str, body: str) -> str | None:
        log.info("SMS (provider log) to %s...%s, %d characters", to[:3], to[-2:], len(body))
        return None


class TwilioGateway:
    """POST {base_url}/2010-04-01/Accounts/{sid}/Messages.json with basic auth, as Twilio does."""

    def __init__(self, http: aiohttp.ClientSession, settings: SmsSettings) -> None:
        missing = [
            f"PETCARE_SMS__{name.upper()}"
            for name in ("account_sid", "auth_token", "from_number")
            if not getattr(settings, name)
        ]
        if missing:
            raise SmsConfigurationError(f"SMS provider twilio needs {', '.join(missing)}")
        assert settings.account_sid
        assert settings.auth_token
        assert settings.from_number
        self._http = http
        self._url = (
            f"{settings.base_url.rstrip('/')}/2010-04-01/Accounts/{settings.account_sid}/Messages.json"
        )
        self._headers = {
            "Authorization": aiohttp.encode_basic_auth(
                settings.account_sid, settings.auth_token.get_secret_value()
            )
        }
        self._from = settings.from_number
        self._timeout = aiohttp.ClientTimeout(total=settings.timeout_seconds)

    async def send(self, to: str, body: str) -> str | None:
        form = {"To": to, "From": self._from, "Body": body}
        try:
            async with self._http.post(
                self._url, data=form, headers=self._headers, timeout=self._timeout
            ) as answer:
                status = answer.status
                payload = await _json_or_empty(answer)
        except (aiohttp.ClientError, TimeoutError) as error:
            raise SmsUnavailable(f"SMS gateway: {type(error).__name__}: {error}") from None
        if 200 <= status < 300:
            sid = payload.get("sid")
            return str(sid) if sid else None
        detail = f"{status} {payload.get('code', '')} {payload.get('message', '')}".strip()
        if status == 429 or status >= 500:
            raise SmsUnavailable(f"SMS gateway deferred: {detail}")
        if status in (401, 403, 404):
            # Credentials or account are wrong for every message, not just this one.
            raise SmsConfigurationError(f"SMS gateway refused the account: {detail}")
        raise SmsRejected(f"SMS gateway rejected: {detail}")


async def _json_or_empty(answer: aiohttp.ClientResponse) -> dict[str, object]:
    try:
        payload = await answer.json(content_type=None)
    except (ValueError, aiohttp.ContentTypeError):
        return {}
    return payload if isinstance(payload, dict) else {}


class UnconfiguredGateway:
    """Stands in for a misconfigured provider: the worker still runs the other jobs, and every
    reminder run that needs SMS fails with the configuration message."""

    def __init__(self, problem: str) -> None:
        self._problem = problem

    async def send(self, to: str, body: str) -> str | None:
        raise SmsConfigurationError(self._problem)


def build_gateway(http: aiohttp.ClientSession, settings: SmsSettings) -> SmsGateway:
    if settings.provider == "log":
        return LogGateway()
    try:
        return TwilioGateway(http, settings)
    except SmsConfigurationError as error:
        log.error("%s", error)
        return UnconfiguredGateway(str(error))


class RateLimiter:
    """At most `rate` acquisitions per second, spaced evenly, shared by every task of a worker."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            now = time.monotonic()
            wait = self._next - now
            self._next = max(now, self._next) + self._interval
        if wait > 0:
            await asyncio.sleep(wait)
