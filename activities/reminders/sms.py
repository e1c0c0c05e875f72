"""SMS gateways: Twilio's Messages API, or a log line."""

from __future__ import annotations

import logging
from typing import Protocol

import aiohttp

from petcare.config import SmsSettings

log = logging.getLogger(__name__)


class SmsRejected(Exception):
    """The gateway refused this recipient for good (invalid or landline number, unsubscribed...)."""


class SmsUnavailable(Exception):
    """The gateway could not take it now (5xx, 429, timeout, connection refused): retry later."""


class SmsConfigurationError(Exception):
    """The provider refuses our settings (missing, wrong credentials or sender number): every message
    would fail alike. Names the variable, never a secret."""


# Twilio error codes that blame our settings, not the recipient: authentication (20003), unknown
# resource (20404), an invalid, missing, foreign or incapable From number (21212, 21603, 21606, 21659,
# 21660). Recipient codes (21211 invalid To, 21614 not a mobile, 21610 unsubscribed...) stay rejections.
ACCOUNT_FAULT_CODES = frozenset({"20003", "20404"})
SENDER_FAULT_CODES = frozenset({"21212", "21603", "21606", "21659", "21660"})


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
        sid, token, sender = settings.account_sid, settings.auth_token, settings.from_number
        if not sid or not token or not sender:
            missing = [
                f"PETCARE_SMS__{name.upper()}"
                for name, value in (("account_sid", sid), ("auth_token", token), ("from_number", sender))
                if not value
            ]
            raise SmsConfigurationError(f"SMS provider twilio needs {', '.join(missing)}")
        self._http = http
        self._url = f"{settings.base_url.rstrip('/')}/2010-04-01/Accounts/{sid}/Messages.json"
        self._headers = {"Authorization": aiohttp.encode_basic_auth(sid, token.get_secret_value())}
        self._from = sender
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
        code = str(payload.get("code", ""))
        detail = f"{status} {code} {payload.get('message', '')}".strip()
        if status == 429 or status >= 500:
            raise SmsUnavailable(f"SMS gateway deferred: {detail}")
        # Credentials, account or sender number are wrong for every message, not just this one.
        if code in SENDER_FAULT_CODES:
            raise SmsConfigurationError(f"SMS gateway refused PETCARE_SMS__FROM_NUMBER: {detail}")
        if status in (401, 403, 404) or code in ACCOUNT_FAULT_CODES:
            raise SmsConfigurationError(
                "SMS gateway refused the account (PETCARE_SMS__ACCOUNT_SID, PETCARE_SMS__AUTH_TOKEN, "
                f"PETCARE_SMS__BASE_URL): {detail}"
            )
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


SMS_RATE_LIMIT = "sms"  # the rate_limit_slots row of the SMS provider's limit
