"""The OpenAPI contract of each route, declared on its handler, and the route serving the document.

A handler declares its contract with `@documented(...)` under its route decorator:

    @routes.post("/api/v1/financial-exports")
    @documented("Request a financial export", request=ExportRequest, response=ExportAccepted,
                status=202, errors=(409, 422))
    async def create_export(request: web.Request) -> web.Response: ...

`api.openapi_document.build_document` reads them back into the document.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel

from api.openapi_document import DOC_ATTRIBUTE, Operation, build_document

HandlerT = TypeVar("HandlerT", bound=Callable[..., Any])

routes = web.RouteTableDef()


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
    )

    def attach(handler: HandlerT) -> HandlerT:
        setattr(handler, DOC_ATTRIBUTE, operation)
        return handler

    return attach


@routes.get("/api/v1/openapi.json")
@documented("This OpenAPI document", tags=("meta",))
async def openapi_document(request: web.Request) -> web.Response:
    return web.json_response(build_document(request.app))
