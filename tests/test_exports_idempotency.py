"""POST /api/v1/financial-exports with an Idempotency-Key, over the real app, dev server and
PostgreSQL: a retry answers the first export, another body is a 409, two at once make one."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from devstack.rows import add_store
from tests.support.api import AUTH

EXPORTS = "/api/v1/financial-exports"
BODY = {"periodStart": "2026-10-01", "periodEnd": "2026-10-31", "format": "csv"}


async def post(client: TestClient[Any, Any], body: Any, key: str | None) -> tuple[int, dict[str, Any]]:
    headers = AUTH if key is None else {**AUTH, "Idempotency-Key": key}
    response = await client.post(EXPORTS, json=body, headers=headers)
    answer: dict[str, Any] = await response.json()
    return response.status, answer


async def exports(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM financial_exports")
    return count


async def test_same_key_same_body_answers_the_first_export(
    api_client: TestClient[Any, Any], pool: asyncpg.Pool
) -> None:
    status, first = await post(api_client, BODY, "order-2026-10/csv")
    assert status == 202
    # The same request, its fields in another order: the same export, 200, nothing new.
    status, again = await post(api_client, dict(reversed(BODY.items())), "order-2026-10/csv")
    assert status == 200
    assert again == first
    assert await exports(pool) == 1
    row = await pool.fetchrow("SELECT origin, workflow_id FROM financial_exports")
    assert row is not None
    assert row["origin"] == "api"
    assert row["workflow_id"] == first["workflowId"]
    # Without a key, or with another key, a request is a new export.
    assert (await post(api_client, BODY, None))[0] == 202
    assert (await post(api_client, BODY, "another-key"))[0] == 202
    assert await exports(pool) == 3


async def test_same_key_other_body_is_409(api_client: TestClient[Any, Any], pool: asyncpg.Pool) -> None:
    store = await add_store(pool, "Downtown")
    status, first = await post(api_client, BODY, "k-1")
    assert status == 202
    for other in ({**BODY, "format": "json"}, {**BODY, "storeId": str(store)}):
        status, body = await post(api_client, other, "k-1")
        assert status == 409, body
        assert body["error"]["code"] == "idempotency_conflict"
        assert first["id"] in body["error"]["message"]
    assert await exports(pool) == 1


async def test_two_requests_at_once_with_one_key_create_one_export(
    api_client: TestClient[Any, Any], pool: asyncpg.Pool
) -> None:
    answers = await asyncio.gather(*(post(api_client, BODY, "burst") for _ in range(6)))
    assert sorted(status for status, _ in answers) == [200] * 5 + [202]
    assert len({body["id"] for _, body in answers}) == 1
    assert await exports(pool) == 1


async def test_keys_are_kept_at_least_24_hours(api_client: TestClient[Any, Any], pool: asyncpg.Pool) -> None:
    status, first = await post(api_client, BODY, "day-old")
    assert status == 202
    await pool.execute("UPDATE financial_export_requests SET created_at = now() - interval '23 hours'")
    await post(api_client, BODY, "fresh")  # a new key purges keys past their retention only
    status, again = await post(api_client, BODY, "day-old")
    assert (status, again["id"]) == (200, first["id"])
    await pool.execute(
        """UPDATE financial_export_requests SET created_at = now() - interval '25 hours'
           WHERE idempotency_key = 'day-old'"""
    )
    await post(api_client, BODY, "fresher")
    keys = {
        row["idempotency_key"]
        for row in await pool.fetch("SELECT idempotency_key FROM financial_export_requests")
    }
    assert keys == {"fresh", "fresher"}


@pytest.mark.parametrize("key", ["", "has space", "x" * 201, "naïve", "tab\there"])
async def test_malformed_keys_are_400(api_client: TestClient[Any, Any], pool: asyncpg.Pool, key: str) -> None:
    response = await api_client.post(EXPORTS, json=BODY, headers={**AUTH, "Idempotency-Key": key})
    body = await response.json()
    assert response.status == 400, body
    assert body["error"]["code"] == "invalid_idempotency_key"
    assert await exports(pool) == 0


async def test_a_key_of_200_characters_is_accepted(api_client: TestClient[Any, Any]) -> None:
    assert (await post(api_client, BODY, "~" * 200))[0] == 202
