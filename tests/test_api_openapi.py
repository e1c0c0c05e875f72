"""GET /api/v1/openapi.json: a complete OpenAPI 3.1 document generated from the routes and models."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Literal

from aiohttp import web
from aiohttp.test_utils import TestClient

import api
from api.app import create_app
from api.models import CamelModel, CamelRequest
from api.openapi import DOC_ATTRIBUTE, build_document, documented
from petcare.config import Settings


def refs_in(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in refs_in(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in refs_in(value)]
    return []


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part]
    return node


async def test_document_describes_every_route(api_client: TestClient[Any, Any]) -> None:
    response = await api_client.get("/api/v1/openapi.json")  # public: no token
    assert response.status == 200
    document = await response.json()
    assert document["openapi"].startswith("3.1")
    assert document["info"]["title"]
    paths = document["paths"]
    for path in ("/api/v1/workers/health", "/api/v1/workers/runs/{workflowId}", "/api/v1/openapi.json"):
        assert "get" in paths[path], path
    for ref in refs_in(document):
        resolve(document, ref)  # every reference points into the document

    schemas = document["components"]["schemas"]
    assert {"HealthResponse", "WorkerHealth", "RunResponse", "ErrorResponse"} <= set(schemas)
    assert {"isRunning", "lastRun", "nextRunAt", "schedulePaused"} <= set(
        schemas["WorkerHealth"]["properties"]
    )
    assert set(schemas["RunResponse"]["required"]) >= {"workflowId", "runId", "status", "result", "failure"}

    health = paths["/api/v1/workers/health"]["get"]
    assert health["security"] == []
    for status in ("200", "503"):
        # Health answers 503 with its usual body, saying which dependency is down.
        schema = health["responses"][status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/HealthResponse"}
    run = paths["/api/v1/workers/runs/{workflowId}"]["get"]
    assert run["security"] == [{"bearer": []}]
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert {"401", "404", "503"} <= set(run["responses"])
    assert run["parameters"] == [
        {"name": "workflowId", "in": "path", "required": True, "schema": {"type": "string"}}
    ]
    operation_ids = [op["operationId"] for item in paths.values() for op in item.values()]
    assert len(operation_ids) == len(set(operation_ids))


class ThingRequest(CamelRequest):
    store_id: str | None = None
    format: Literal["csv", "json"]


class ThingAccepted(CamelModel):
    thing_id: str


class ThingQuery(CamelModel):
    page_size: int = 10
    status: Literal["pending", "done"] | None = None


@documented(
    "Create a thing",
    request=ThingRequest,
    response=ThingAccepted,
    status=202,
    query=ThingQuery,
    errors=(400, 422),
    path_formats={"storeId": "uuid"},
)
async def create_thing(request: web.Request) -> web.Response:
    return web.json_response({}, status=202)


async def undocumented(request: web.Request) -> web.Response:
    return web.json_response({})


def test_job_routes_bring_their_own_schemas() -> None:
    # What a route module does: a documented handler, given its path by setup_routes.
    app = create_app(Settings(_env_file=None))
    app.router.add_post("/api/v1/stores/{storeId}/things", create_thing)
    app.router.add_get("/api/v1/forgotten", undocumented)
    document = build_document(app)

    operation = document["paths"]["/api/v1/stores/{storeId}/things"]["post"]
    assert operation["summary"] == "Create a thing"
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ThingRequest"
    }
    assert set(operation["responses"]) == {"202", "400", "401", "422", "500"}
    parameters = {(p["in"], p["name"]): p for p in operation["parameters"]}
    assert parameters[("path", "storeId")]["schema"] == {"type": "string", "format": "uuid"}
    assert parameters[("query", "pageSize")]["required"] is False
    assert ("query", "status") in parameters
    request_schema = document["components"]["schemas"]["ThingRequest"]
    assert set(request_schema["properties"]) == {"storeId", "format"}
    assert request_schema["required"] == ["format"]
    assert request_schema["additionalProperties"] is False
    # A route nobody documented still shows up, so the document can never silently miss one.
    assert document["paths"]["/api/v1/forgotten"]["get"]["summary"] == "GET /api/v1/forgotten"


def test_setup_routes_registers_each_documented_handler_and_the_document_lists_each_route() -> None:
    app = create_app(Settings(_env_file=None))
    registered = {
        (route.method, route.resource.canonical): route.handler
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    document = build_document(app)
    listed = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    assert listed == set(registered)
    # A handler written and documented but left out of setup_routes would be missing from both.
    modules = [importlib.import_module(f"api.{found.name}") for found in pkgutil.iter_modules(api.__path__)]
    documented_handlers = {
        value for module in modules for value in vars(module).values() if hasattr(value, DOC_ATTRIBUTE)
    }
    assert set(registered.values()) == documented_handlers
