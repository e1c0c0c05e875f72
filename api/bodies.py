"""Request bodies, query strings and path ids parsed (400 malformed, 422 invalid); models sent as JSON."""

from __future__ import annotations

import json
from typing import TypeVar
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel, ValidationError

from api.errors import ApiError

M = TypeVar("M", bound=BaseModel)


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
