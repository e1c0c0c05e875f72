"""Bearer-token auth and the JSON error shape of every answer that is not a success."""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Mapping
from http import HTTPStatus

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from api.errors import ApiError
from api.keys import SETTINGS
from api.models import ErrorBody, ErrorResponse

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
# The only routes a caller may use without the token: load balancers and API clients need them.
PUBLIC_ROUTES = frozenset({("GET", "/api/v1/workers/health"), ("GET", "/api/v1/openapi.json")})

_CHALLENGE = {str(hdrs.WWW_AUTHENTICATE): 'Bearer realm="petcare"'}
# Headers of aiohttp's own HTTPExceptions worth keeping (405 says which methods are allowed).
_KEPT_HEADERS = (hdrs.ALLOW, hdrs.WWW_AUTHENTICATE, hdrs.RETRY_AFTER)


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
    except json.JSONDecodeError as error:  # a handler that read request.json() itself
        return error_response(400, "malformed_json", f"the request body is not valid JSON: {error.msg}")
    except Exception:
        log.exception("unhandled error answering %s %s", request.method, request.path)
        return error_response(500, "internal_error", "internal error: the details are in the server log")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every /api/v1 route but the public ones requires `Authorization: Bearer <token>`."""
    if request.path.startswith(API_PREFIX) and not is_public(request.method, request.path):
        _check_token(request)
    return await handler(request)


def _check_token(request: web.Request) -> None:
    accepted = request.app[SETTINGS].api.accepted_tokens()
    scheme, _, given = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
    if not given or scheme.lower() != "bearer":
        raise ApiError(401, "unauthorized", "missing bearer token", headers=_CHALLENGE)
    # Without a configured token nothing is allowed in: failing closed beats an open API. Every
    # accepted token is compared, in constant time, whichever matches: the timing tells nothing.
    presented = given.strip().encode()
    matches = [hmac.compare_digest(presented, token.encode()) for token in accepted]
    if not any(matches):
        raise ApiError(401, "unauthorized", "invalid bearer token", headers=_CHALLENGE)
