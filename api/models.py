"""The API's wire format: camelCase models shared by the routes, requests read into models
(400 malformed, 422 naming each invalid field) or models sent back as JSON, and the one opaque
cursor every paged list uses (400 when malformed or from another list)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeVar
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.middlewares import ApiError
from petcare.models.base import CamelModel as CamelModel  # the one definition, re-exported

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

# Temporal's own names (as in visibility queries: ExecutionStatus="Running"), so operators can
# paste them into `temporal workflow list --query` and the Web UI.
RunStatus = Literal["Running", "Completed", "Failed", "Canceled", "Terminated", "ContinuedAsNew", "TimedOut"]


class CamelRequest(CamelModel):
    """A request body: an unknown field is a 422 naming it, not silently ignored (typos)."""

    model_config = ConfigDict(extra="forbid")


# What every job start answers: the run started, or the one already running under its id. (No
# docstring on the wire models that had none: it would become a description in the OpenAPI document.)
class StartedRun(CamelModel):
    workflow_id: str
    run_id: str
    already_running: bool


class RunFailure(CamelModel):
    message: str
    type: str


class RunResponse(CamelModel):
    workflow_id: str
    run_id: str
    type: str
    status: RunStatus
    started_at: datetime
    closed_at: datetime | None
    result: Any = None  # the workflow's return value as JSON, once it completed
    failure: RunFailure | None = None


async def read_model(request: web.Request, model: type[M], *, optional: bool = False) -> M:
    """The body as `model`: 400 when it is not JSON, 422 naming each invalid field.

    With `optional`, an empty body means the model's defaults (the old endpoints took no body).
    """
    text = await request.text()
    if not text.strip():
        if optional:
            return model()
        raise ApiError(400, "malformed_json", "the request body is empty: a JSON object is expected")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ApiError(
            400,
            "malformed_json",
            f"the request body is not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})",
        ) from None
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ApiError(422, "validation_error", describe_validation_error(error)) from None


def read_query(request: web.Request, model: type[M]) -> M:
    """The query string as `model`: 422 naming each invalid or unknown parameter."""
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as error:
        raise ApiError(422, "validation_error", describe_validation_error(error)) from None


def path_uuid(request: web.Request, name: str) -> UUID:
    """The path parameter `name` as a UUID: 400 when it is not one."""
    try:
        return UUID(request.match_info[name])
    except ValueError:
        raise ApiError(400, "malformed_id", f"{name} must be a UUID") from None


def describe_validation_error(error: ValidationError) -> str:
    """One clause per problem, naming the field as the client spelled it; never echoes the input."""
    problems = []
    for detail in error.errors(include_input=False, include_url=False):
        where = ".".join(str(part) for part in detail["loc"]) or "body"
        problems.append(f"{where}: {detail['msg']}")
    return "invalid request: " + "; ".join(problems)


def json_model(body: BaseModel, *, status: int = 200) -> web.Response:
    return web.json_response(text=body.model_dump_json(by_alias=True), status=status)


# --- Paged lists: one opaque cursor ---
#
# A cursor is base64url(JSON [version, scope, *position]). The scope names the list and a digest
# of its filters, so a cursor is only good for the list (and filters) that made it: anything else
# is a 400 `invalid_cursor`, never a page of something unrelated. The position is what the list
# needs to resume: a keyset (time, id) for lists read from PostgreSQL newest first, or a page
# token for lists read from Temporal's visibility.

CURSOR_VERSION = 1
# Far above any cursor this API writes (a visibility page token is a few hundred bytes).
MAX_CURSOR_LENGTH = 4096
CURSOR_DESCRIPTION = "opaque: the nextCursor of the previous page, with the same filters"


class PageQuery(CamelRequest):
    """The paging parameters of every list; a list's filters are the fields its query adds."""

    limit: int = Field(default=20, ge=1, le=100)
    cursor: str | None = Field(default=None, max_length=MAX_CURSOR_LENGTH, description=CURSOR_DESCRIPTION)


def cursor_scope(list_name: str, query: PageQuery | None = None) -> str:
    """The scope of one list with these filters: `list_name` and a digest of the query's filters
    (its fields but the limit, which may change from page to page, and the cursor)."""
    filters = {} if query is None else query.model_dump(mode="json", exclude={"cursor", "limit"})
    described = json.dumps(filters, sort_keys=True, default=str)
    return f"{list_name}:{hashlib.sha256(described.encode()).hexdigest()[:16]}"


def encode_cursor(scope: str, *position: str) -> str:
    """The cursor to the page after `position` in the list `scope`."""
    raw = json.dumps([CURSOR_VERSION, scope, *position], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(scope: str, cursor: str, *, size: int) -> list[str]:
    """The `size` position values of a cursor `encode_cursor(scope, ...)` made; a 400 otherwise."""
    try:
        if len(cursor) > MAX_CURSOR_LENGTH:
            raise ValueError("too long")
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ApiError(400, "invalid_cursor", "cursor is malformed: pass nextCursor unchanged") from None
    if not (
        isinstance(data, list)
        and len(data) >= 2
        and data[0] == CURSOR_VERSION
        and all(isinstance(item, str) for item in data[1:])
    ):
        raise ApiError(400, "invalid_cursor", "cursor is malformed: pass nextCursor unchanged")
    if data[1] != scope:
        raise ApiError(
            400,
            "invalid_cursor",
            "cursor belongs to another list or other filters: page with the same filters, "
            "or start again without a cursor",
        )
    if len(data) != size + 2:
        raise ApiError(400, "invalid_cursor", "cursor is malformed: pass nextCursor unchanged")
    return list(data[2:])


@dataclass(frozen=True)
class Keyset:
    """Where a page read newest first ended: the last item's time and id (the tie-breaker), and
    for a list with several rows per (time, id), one more time that orders them (`then`)."""

    time: datetime
    id: UUID
    then: datetime | None = None

    def cursor(self, scope: str) -> str:
        position = [self.time.isoformat(), str(self.id)]
        if self.then is not None:
            position.append(self.then.isoformat())
        return encode_cursor(scope, *position)

    @classmethod
    def from_cursor(cls, scope: str, cursor: str | None, *, with_then: bool = False) -> Keyset | None:
        """The keyset a cursor names (None without one); a 400 when it is not one of `scope`'s."""
        if cursor is None:
            return None
        time, key, *then = decode_cursor(scope, cursor, size=3 if with_then else 2)
        try:
            times = [datetime.fromisoformat(value) for value in (time, *then)]
            parsed = cls(time=times[0], id=UUID(key), then=times[1] if then else None)
        except ValueError:
            raise ApiError(400, "invalid_cursor", "cursor is malformed: pass nextCursor unchanged") from None
        if any(value.tzinfo is None for value in times):
            raise ApiError(400, "invalid_cursor", "cursor is malformed: pass nextCursor unchanged")
        return parsed


def keyset_page(
    rows: list[T], limit: int, scope: str, key: Callable[[T], Keyset]
) -> tuple[list[T], str | None]:
    """The page of `rows` (read with `limit + 1`, to know whether more follow) and the cursor to
    the next page, or None when this is the last one."""
    page = rows[:limit]
    return page, key(page[-1]).cursor(scope) if len(rows) > limit else None
