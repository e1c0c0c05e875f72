"""Bearer-token auth and the JSON error shape, over the real app factory."""

from __future__ import annotations

import logging
from datetime import date
from typing import Any, Literal

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient
from temporalio.client import Client

from api.app import create_app
from api.models import CamelRequest, json_model, read_model
from petcare.config import Settings
from tests.support.api import API_TOKEN, AUTH, with_token

RUNS = "/api/v1/workers/runs/api-test-no-such-workflow"


class EchoRequest(CamelRequest):
    period_start: date
    format: Literal["csv", "json"]


async def echo(request: web.Request) -> web.Response:
    return json_model(await read_model(request, EchoRequest))


async def raw_json(request: web.Request) -> web.Response:
    return web.json_response(await request.json())


async def broken(request: web.Request) -> web.Response:
    raise RuntimeError("db password is hunter2")


@pytest.fixture
async def client(
    aiohttp_client: AiohttpClient, api_settings: Settings, dev_client: Client, pool: asyncpg.Pool
) -> TestClient[Any, Any]:
    app = create_app(api_settings, temporal=dev_client, pool=pool)
    # Test-only routes behind the same middlewares (no job POST route exists in this module).
    app.router.add_post("/api/v1/test/echo", echo)
    app.router.add_post("/api/v1/test/raw-json", raw_json)
    app.router.add_get("/api/v1/test/broken", broken)
    return await aiohttp_client(app)


async def assert_error(response: Any, status: int, code: str) -> str:
    assert response.status == status
    assert response.content_type == "application/json"
    body = await response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    message: str = body["error"]["message"]
    assert message
    return message


async def test_missing_token_is_401_with_challenge(client: TestClient[Any, Any]) -> None:
    response = await client.get(RUNS)
    assert "missing" in await assert_error(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "authorization",
    ["Bearer wrong-token", f"Basic {API_TOKEN}", f"Bearer {API_TOKEN}x", "Bearer"],
)
async def test_wrong_token_is_401_and_never_echoed(client: TestClient[Any, Any], authorization: str) -> None:
    response = await client.get(RUNS, headers={"Authorization": authorization})
    await assert_error(response, 401, "unauthorized")
    assert API_TOKEN not in await response.text()


async def test_right_token_passes(client: TestClient[Any, Any]) -> None:
    # 404 from the handler, not 401: the request got through auth.
    await assert_error(await client.get(RUNS, headers=AUTH), 404, "not_found")


async def test_health_and_openapi_need_no_token(client: TestClient[Any, Any]) -> None:
    assert (await client.get("/api/v1/workers/health")).status == 200
    assert (await client.get("/api/v1/openapi.json")).status == 200
    # Public by method too: a POST to the health path still needs the token.
    await assert_error(await client.post("/api/v1/workers/health"), 401, "unauthorized")


async def test_no_configured_token_lets_nobody_in(
    aiohttp_client: AiohttpClient, settings: Settings, dev_client: Client, pool: asyncpg.Pool
) -> None:
    client = await aiohttp_client(create_app(with_token(settings, None), temporal=dev_client, pool=pool))
    await assert_error(await client.get(RUNS, headers=AUTH), 401, "unauthorized")
    await assert_error(await client.get(RUNS, headers={"Authorization": "Bearer "}), 401, "unauthorized")


async def test_during_a_rotation_the_new_and_the_previous_token_pass(
    aiohttp_client: AiohttpClient, settings: Settings, dev_client: Client, pool: asyncpg.Pool
) -> None:
    # Configured as a secret file or `echo` leaves them: with a trailing newline, stripped at load
    # like a presented token is (once, neither matched a correct Authorization header).
    rotating = with_token(settings, "new-token-5d1e\n", previous=f"  {API_TOKEN}\r\n")
    client = await aiohttp_client(create_app(rotating, temporal=dev_client, pool=pool))
    for token in ("new-token-5d1e", API_TOKEN, " new-token-5d1e "):
        await assert_error(
            await client.get(RUNS, headers={"Authorization": f"Bearer {token}"}), 404, "not_found"
        )
    for wrong in ("old-token-0000", "new-token-5d1", ""):
        response = await client.get(RUNS, headers={"Authorization": f"Bearer {wrong}"})
        await assert_error(response, 401, "unauthorized")


def test_a_blank_previous_token_accepts_nothing(settings: Settings) -> None:
    api = with_token(settings, "current", previous=" \n ").api
    assert api.previous_token is None
    assert api.accepted_tokens() == ["current"]


async def test_unknown_route_is_404_json(client: TestClient[Any, Any]) -> None:
    await assert_error(await client.get("/api/v1/nope", headers=AUTH), 404, "not_found")
    await assert_error(await client.get("/nope"), 404, "not_found")


async def test_wrong_method_is_405_json_with_allow(client: TestClient[Any, Any]) -> None:
    response = await client.delete("/api/v1/workers/health", headers=AUTH)
    await assert_error(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]


@pytest.mark.parametrize("body", ['{"periodStart": "2026-10-01",', "not json", ""])
async def test_malformed_json_is_400(client: TestClient[Any, Any], body: str) -> None:
    response = await client.post("/api/v1/test/echo", data=body, headers=AUTH)
    await assert_error(response, 400, "malformed_json")


async def test_request_json_in_a_handler_is_400_too(client: TestClient[Any, Any]) -> None:
    response = await client.post("/api/v1/test/raw-json", data="{oops", headers=AUTH)
    await assert_error(response, 400, "malformed_json")


async def test_invalid_fields_are_422_naming_them(client: TestClient[Any, Any]) -> None:
    response = await client.post(
        "/api/v1/test/echo", json={"periodStart": "yesterday", "format": "xml", "extra": 1}, headers=AUTH
    )
    message = await assert_error(response, 422, "validation_error")
    for field in ("periodStart", "format", "extra"):
        assert field in message
    assert "yesterday" not in message  # the input itself is never echoed back


async def test_valid_body_is_parsed_with_camel_case(client: TestClient[Any, Any]) -> None:
    response = await client.post(
        "/api/v1/test/echo", json={"periodStart": "2026-10-01", "format": "csv"}, headers=AUTH
    )
    assert response.status == 200
    assert await response.json() == {"periodStart": "2026-10-01", "format": "csv"}


async def test_bug_is_500_without_details(
    client: TestClient[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="api.middlewares"):
        response = await client.get("/api/v1/test/broken", headers=AUTH)
    await assert_error(response, 500, "internal_error")
    text = await response.text()
    assert "hunter2" not in text
    assert "Traceback" not in text
    # The traceback is in the log, for operators.
    assert any(record.exc_info and "hunter2" in str(record.exc_info[1]) for record in caplog.records)
