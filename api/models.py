"""The API's wire format: camelCase models shared by the routes, and requests read into models
(400 malformed, 422 naming each invalid field) or models sent back as JSON."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal, TypeVar
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from api.middlewares import ApiError
from petcare.models.base import CamelModel as CamelModel  # the one definition, re-exported

M = TypeVar("M", bound=BaseModel)

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
