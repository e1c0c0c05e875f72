"""Sending SMS through Twilio's Messages API (or a log line), answers classified as `petcare.errors`."""

from __future__ import annotations

import logging
from typing import Protocol

import aiohttp

from petcare.config import SmsSettings
from petcare.errors import (
    DeliveryDeferred,
    DeliveryMisconfigured,
    DeliveryRejected,
    DeliveryUnavailable,
    SmsNumberRefused,
    SmsOptedOut,
)

log = logging.getLogger(__name__)


# Twilio error codes that blame our settings, not the recipient: authentication (20003), unknown
# resource (20404), an invalid, missing, foreign or incapable From number (21212, 21603, 21606, 21659,
# 21660). Recipient codes (21211 invalid To, 21614 not a mobile, 21610 unsubscribed...) are rejections.
ACCOUNT_FAULT_CODES = frozenset({"20003", "20404"})
SENDER_FAULT_CODES = frozenset({"21212", "21603", "21606", "21659", "21660"})
# 4xx codes that name one recipient and pass with time: 14107, too many messages between our number
# and this one in a short period (Twilio lifts it after 30 s); 30003, the handset is unreachable
# (switched off, out of coverage). Other recipient codes (21211 invalid, 21610 unsubscribed,
# 21612 unroutable, 21614 not a mobile) stay final: trying again later would meet the same answer.
RECIPIENT_BUSY_CODES = frozenset({"14107", "30003"})
# 21611: our From number's queue at Twilio is full. Not this recipient's doing: every text would
# meet it, so the page waits and retries, as on a 429 or a 5xx.
SENDER_BUSY_CODES = frozenset({"21611"})
# Rejections that say this number will not take our texts, though the customer may be reached
# otherwise: 21610, "Attempt to send to unsubscribed recipient" (the number texted STOP); 21614,
# "'To' number is not a valid mobile number" (a landline).
OPTED_OUT_CODE = "21610"
NOT_MOBILE_CODE = "21614"


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
            raise DeliveryMisconfigured(f"SMS provider twilio needs {', '.join(missing)}")
        self._http = http
        self._url = f"{settings.base_url.rstrip('/')}/2010-04-01/Accounts/{sid}/Messages.json"
        self._headers = {"Authorization": aiohttp.encode_basic_auth(sid, token.get_secret_value())}
        self._from = sender
        self._timeout = aiohttp.ClientTimeout(total=settings.timeout_seconds)

    async def send(self, to: str, body: str) -> str:
        form = {"To": to, "From": self._from, "Body": body}
        try:
            # No redirect is followed: a redirect is not the API's answer (a 307 would post the form
            # somewhere else, a 301/302 turns it into a GET whose 200 would look like a send).
            async with self._http.post(
                self._url, data=form, headers=self._headers, timeout=self._timeout, allow_redirects=False
            ) as answer:
                status = answer.status
                payload = await _json_or_empty(answer)
        except (aiohttp.ClientError, TimeoutError) as error:
            raise DeliveryUnavailable(f"SMS gateway: {type(error).__name__}: {error}") from None
        if 200 <= status < 300:
            sid = payload.get("sid")
            if not isinstance(sid, str) or not sid:
                # Without the sid nothing says the gateway queued this message: not recorded as sent.
                raise DeliveryRejected(f"SMS gateway answered {status} without a message sid")
            return sid
        if 300 <= status < 400:
            # Nothing was sent. A gateway that redirects (http to https, a moved API) is a wrong
            # setting for every message, not a fault of this one.
            raise DeliveryMisconfigured(
                f"SMS gateway answered {status} (a redirect, not followed): check PETCARE_SMS__BASE_URL"
            )
        code = str(payload.get("code", ""))
        detail = f"{status} {code} {payload.get('message', '')}".strip()
        if 400 <= status < 500 and code in RECIPIENT_BUSY_CODES:
            raise DeliveryDeferred(f"SMS gateway deferred this number: {detail}")
        if status == 429 or status >= 500 or code in SENDER_BUSY_CODES:
            raise DeliveryUnavailable(f"SMS gateway deferred: {detail}")
        # Credentials, account or sender number are wrong for every message, not just this one.
        if code in SENDER_FAULT_CODES:
            raise DeliveryMisconfigured(f"SMS gateway refused PETCARE_SMS__FROM_NUMBER: {detail}")
        if status in (401, 403, 404) or code in ACCOUNT_FAULT_CODES:
            raise DeliveryMisconfigured(
                "SMS gateway refused the account (PETCARE_SMS__ACCOUNT_SID, PETCARE_SMS__AUTH_TOKEN, "
                f"PETCARE_SMS__BASE_URL): {detail}"
            )
        if code == OPTED_OUT_CODE:
            raise SmsOptedOut(f"SMS gateway rejected (the number unsubscribed): {detail}")
        if code == NOT_MOBILE_CODE:
            raise SmsNumberRefused(f"SMS gateway rejected (not a mobile number): {detail}")
        raise DeliveryRejected(f"SMS gateway rejected: {detail}")


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
        raise DeliveryMisconfigured(self._problem)


def build_gateway(http: aiohttp.ClientSession, settings: SmsSettings) -> SmsGateway:
    if settings.provider == "log":
        return LogGateway()
    try:
        return TwilioGateway(http, settings)
    except DeliveryMisconfigured as error:
        log.error("%s", error)
        return UnconfiguredGateway(str(error))


SMS_RATE_LIMIT = "sms"  # the rate_limit_slots row of the SMS provider's limit
