"""The API's middlewares: bearer-token auth, and the one JSON shape of every answer that is not a success.

Every failure is answered as {"error": {"code", "message"}}; what becomes which answer:

    ApiError(status, code, message)  raised by the handlers and the bounded backend calls:
                                     400 malformed_json / malformed_id / invalid_cursor /
                                     invalid_idempotency_key, 401 unauthorized, 404 not_found,
                                     409 idempotency_conflict / export_not_completed / file_changed,
                                     422 validation_error, 503 temporal_unavailable /
                                     temporal_misconfigured / database_unavailable / dry_run_failed /
                                     destination_unavailable
    web.HTTPException                aiohttp's own (404 no route, 405 method): code from the status
    json.JSONDecodeError             400 malformed_json (a handler that read request.json() itself)
    any other exception              500 internal_error; the traceback stays in the server log
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Mapping
from http import HTTPStatus

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from petcare.config import ApiSettings
from petcare.models.base import CamelModel

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
# The only routes a caller may use without the token: load balancers and API clients need them.
PUBLIC_ROUTES = frozenset({("GET", "/api/v1/workers/health"), ("GET", "/api/v1/openapi.json")})

_CHALLENGE = {str(hdrs.WWW_AUTHENTICATE): 'Bearer realm="petcare"'}
# Headers of aiohttp's own HTTPExceptions worth keeping (405 says which methods are allowed).
_KEPT_HEADERS = (hdrs.ALLOW, hdrs.WWW_AUTHENTICATE, hdrs.RETRY_AFTER)


class ApiError(Exception):
    """An answer that is not a success, with its status, its stable code and a message for people."""

    def __init__(
        self, status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


class ErrorBody(CamelModel):
    code: str
    message: str


class ErrorResponse(CamelModel):
    error: ErrorBody


def is_public(method: str, path: str) -> bool:
    # HEAD is GET without a body: aiohttp registers it with every GET route.
    return ((method if method != "HEAD" else "GET"), path) in PUBLIC_ROUTES


def error_response(
    status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None
) -> web.Response:
    body = ErrorResponse(error=ErrorBody(code=code, message=message))
    return web.json_response(text=body.model_dump_json(by_alias=True), status=status, headers=headers)


def _code_for(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


def _message_for(request: web.Request, error: web.HTTPException) -> str:
    if error.status == 404:
        return f"nothing at {request.path}"
    if error.status == 405:
        return f"{request.method} is not allowed on {request.path}"
    return error.reason


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure as {"error": {"code", "message"}}; a bug is a 500 whose traceback stays in the log."""
    try:
        return await handler(request)
    except ApiError as error:
        return error_response(error.status, error.code, error.message, headers=error.headers)
    except web.HTTPException as error:
        if error.status < 400:  # redirects and the like are answers, not errors
            raise
        kept = {str(name): error.headers[name] for name in _KEPT_HEADERS if name in error.headers}
        return error_response(
            error.status, _code_for(error.status), _message_for(request, error), headers=kept
        )
    except json.JSONDecodeError as error:
        return error_response(400, "malformed_json", f"the request body is not valid JSON: {error.msg}")
    except Exception:
        log.exception("unhandled error answering %s %s", request.method, request.path)
        return error_response(500, "internal_error", "internal error: the details are in the server log")


def auth_middleware(settings: ApiSettings) -> Middleware:
    """Every /api/v1 route but the public ones requires `Authorization: Bearer <token>`."""

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(API_PREFIX) and not is_public(request.method, request.path):
            _check_token(request, settings.accepted_tokens())
        return await handler(request)

    return authenticate


def _check_token(request: web.Request, accepted: list[str]) -> None:
    scheme, _, given = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
    if not given or scheme.lower() != "bearer":
        raise ApiError(401, "unauthorized", "missing bearer token", headers=_CHALLENGE)
    # Without a configured token nothing is allowed in: failing closed beats an open API. Every
    # accepted token is compared, in constant time, whichever matches: the timing tells nothing.
    presented = given.strip().encode()
    matches = [hmac.compare_digest(presented, token.encode()) for token in accepted]
    if not any(matches):
        raise ApiError(401, "unauthorized", "invalid bearer token", headers=_CHALLENGE)
