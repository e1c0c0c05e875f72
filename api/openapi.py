"""The OpenAPI 3.1 document: each route's contract, declared on its handler, and the document built
from the app's router and the pydantic models of each route.

A handler declares its contract with `@documented(...)`; `api.app.setup_routes` gives it its path:

    @documented("Request a financial export", request=ExportRequest, response=ExportAccepted,
                status=202, errors=(409, 422))
    async def create_export(request: web.Request) -> web.Response: ...

Every registered route appears in the document, documented or not, so none can be forgotten.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from api.middlewares import ErrorResponse, is_public

HandlerT = TypeVar("HandlerT", bound=Callable[..., Any])
SchemaKey = tuple[type[BaseModel], JsonSchemaMode]

# Where `documented` puts a handler's Operation.
DOC_ATTRIBUTE = "__petcare_openapi__"
_PATH_PARAMETER = re.compile(r"\{(\w+)(?::[^}]*)?\}")
TITLE = "petcare-workers API"
VERSION = "1"


@dataclass(frozen=True)
class Operation:
    """What one route takes and answers, for the document."""

    summary: str
    response: type[BaseModel] | None = None
    status: int = 200
    request: type[BaseModel] | None = None
    query: type[BaseModel] | None = None  # each field is one query parameter
    errors: tuple[int, ...] = ()  # answered with ErrorResponse
    other_responses: Mapping[int, type[BaseModel]] = field(default_factory=dict)  # e.g. health's 503
    path_formats: Mapping[str, str] = field(default_factory=dict)  # e.g. {"exportId": "uuid"}
    tags: tuple[str, ...] = ()
    headers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # request header: schema
    file_types: tuple[str, ...] = ()  # a success answered with a file of one of these media types


def documented(
    summary: str,
    *,
    response: type[BaseModel] | None = None,
    status: int = 200,
    request: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    errors: Iterable[int] = (),
    other_responses: Mapping[int, type[BaseModel]] | None = None,
    path_formats: Mapping[str, str] | None = None,
    tags: Iterable[str] = (),
    headers: Mapping[str, Mapping[str, Any]] | None = None,
    file_types: Iterable[str] = (),
) -> Callable[[HandlerT], HandlerT]:
    """Attach the route's contract to its handler (read back by `build_document`)."""
    operation = Operation(
        summary,
        response,
        status,
        request,
        query,
        tuple(errors),
        dict(other_responses or {}),
        dict(path_formats or {}),
        tuple(tags),
        dict(headers or {}),
        tuple(file_types),
    )

    def attach(handler: HandlerT) -> HandlerT:
        setattr(handler, DOC_ATTRIBUTE, operation)
        return handler

    return attach


def build_document(app: web.Application) -> dict[str, Any]:
    operations: list[tuple[str, str, Operation]] = []
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else None
        if path is None or route.method in ("HEAD", "*"):
            continue
        operation = getattr(route.handler, DOC_ATTRIBUTE, None)
        summary = f"{route.method} {path}"
        operations.append((route.method, _PATH_PARAMETER.sub(r"{\1}", path), operation or Operation(summary)))
    schemas, refs = _schemas(operations)
    paths: dict[str, dict[str, Any]] = {}
    for method, path, operation in sorted(operations, key=lambda item: (item[1], item[0])):
        paths.setdefault(path, {})[method.lower()] = _operation(method, path, operation, refs, schemas)
    return {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": VERSION},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _schemas(operations: list[tuple[str, str, Operation]]) -> tuple[dict[str, Any], dict[SchemaKey, Any]]:
    keys: dict[SchemaKey, None] = {(ErrorResponse, "serialization"): None}
    for _, _, operation in operations:
        for model in (operation.response, *operation.other_responses.values()):
            if model is not None:
                keys[(model, "serialization")] = None
        if operation.request is not None:
            keys[(operation.request, "validation")] = None
        if operation.query is not None:
            keys[(operation.query, "validation")] = None
    refs, top = models_json_schema(list(keys), ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = top.get("$defs", {})
    return schemas, {
        (model, mode): ref for (model, mode), ref in refs.items() if issubclass(model, BaseModel)
    }


def _operation(
    method: str,
    path: str,
    operation: Operation,
    refs: Mapping[SchemaKey, Any],
    schemas: Mapping[str, Any],
) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    if operation.response is not None:
        responses[str(operation.status)] = _json(
            _phrase(operation.status), refs[(operation.response, "serialization")]
        )
    elif operation.file_types:
        binary = {"schema": {"type": "string", "format": "binary"}}
        responses[str(operation.status)] = {
            "description": _phrase(operation.status),
            "content": {media_type: binary for media_type in operation.file_types},
        }
    else:
        responses[str(operation.status)] = {"description": _phrase(operation.status)}
    error_ref = refs[(ErrorResponse, "serialization")]
    protected = not is_public(method, path)
    for status in sorted({*operation.errors, *((401,) if protected else ()), 500}):
        responses[str(status)] = _json(_phrase(status), error_ref)
    for status, model in operation.other_responses.items():
        responses[str(status)] = _json(_phrase(status), refs[(model, "serialization")])
    described: dict[str, Any] = {
        "summary": operation.summary,
        "operationId": _operation_id(method, path),
        "parameters": _parameters(path, operation, refs, schemas),
        "responses": responses,
        "security": [{"bearer": []}] if protected else [],
    }
    if operation.tags:
        described["tags"] = list(operation.tags)
    if operation.request is not None:
        described["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs[(operation.request, "validation")]}},
        }
    return described


def _parameters(
    path: str, operation: Operation, refs: Mapping[SchemaKey, Any], schemas: Mapping[str, Any]
) -> list[dict[str, Any]]:
    parameters: list[dict[str, Any]] = []
    for name in _PATH_PARAMETER.findall(path):
        schema: dict[str, Any] = {"type": "string"}
        if name in operation.path_formats:
            schema["format"] = operation.path_formats[name]
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
    for name, header_schema in operation.headers.items():
        parameters.append({"name": name, "in": "header", "required": False, "schema": dict(header_schema)})
    if operation.query is not None:
        # The query model's own component, so nested references resolve within the document.
        ref = refs[(operation.query, "validation")]["$ref"]
        schema = schemas[ref.rsplit("/", 1)[-1]]
        required = set(schema.get("required", []))
        for name, property_schema in schema.get("properties", {}).items():
            parameters.append(
                {"name": name, "in": "query", "required": name in required, "schema": property_schema}
            )
    return parameters


def _json(description: str, schema: Any) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return str(status)


def _operation_id(method: str, path: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", path.removeprefix("/api/v1"))
    return method.lower() + "".join(word[:1].upper() + word[1:] for word in words)


@documented("This OpenAPI document", tags=("meta",))
async def openapi_document(request: web.Request) -> web.Response:
    return web.json_response(build_document(request.app))
