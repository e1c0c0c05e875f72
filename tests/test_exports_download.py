"""GET /api/v1/financial-exports/{id}/files/{name}: a completed export's files streamed back from
the destination (a real SFTP server, host key verified), byte for byte and by sha256; a 128 MiB
file through an API process of its own whose memory stays flat."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID

import aiohttp
import asyncpg
import psutil
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.exports.destinations import SftpDestination
from activities.exports.streaming import StreamLimits
from api.app import create_app
from devstack.ports import free_port
from petcare.config import ExportSettings, Settings
from petcare.models.exports import export_directory
from tests.support.api import API_TOKEN, AUTH
from tests.support.exports import OCTOBER, export_worker, request_export, seed, start_export
from tests.support.polling import poll
from tests.support.sftp import SftpFixture

EXPORTS = "/api/v1/financial-exports"
REPOSITORY = str(Path(__file__).resolve().parents[1])
LARGE_BYTES = 128 * 1024 * 1024
# What the API process may grow by while it streams LARGE_BYTES: a few blocks, buffers, not the file.
RSS_GROWTH_LIMIT = 48 * 1024 * 1024


@pytest.fixture
def sftp_api_settings(api_settings: Settings, sftp_server: SftpFixture) -> Settings:
    return api_settings.model_copy(
        update={"export": ExportSettings(destination="sftp"), "sftp": sftp_server.settings()}
    )


@pytest_asyncio.fixture
async def client(
    aiohttp_client: AiohttpClient, sftp_api_settings: Settings, dev_client: Client, pool: asyncpg.Pool
) -> TestClient[Any, Any]:
    return await aiohttp_client(create_app(sftp_api_settings, temporal=dev_client, pool=pool))


async def test_files_of_a_completed_export_come_back_byte_for_byte(
    client: TestClient[Any, Any],
    dev_client: Client,
    pool: asyncpg.Pool,
    task_queue: str,
    sftp_server: SftpFixture,
) -> None:
    async with pool.acquire() as connection:
        await seed(connection)
        export_id = await request_export(connection, export_format="csv")
        pending = await request_export(connection, export_format="json")
    response = await client.get(f"{EXPORTS}/{pending}/files/invoices.jsonl", headers=AUTH)
    assert response.status == 409
    assert (await response.json())["error"]["code"] == "export_not_completed"

    destination = SftpDestination(sftp_server.settings())
    async with export_worker(dev_client, task_queue, pool, destination, StreamLimits()):
        await (await start_export(dev_client, task_queue, export_id)).result()

    export = await (await client.get(f"{EXPORTS}/{export_id}", headers=AUTH)).json()
    assert [file["name"] for file in export["files"]] == [
        "invoices.csv",
        "transactions.csv",
        "credit_notes.csv",
        "manifest.json",
    ]
    for file in export["files"]:
        response = await client.get(f"{EXPORTS}/{export_id}/files/{file['name']}", headers=AUTH)
        assert response.status == 200, await response.text()
        body = await response.read()
        uploaded = (sftp_server.root / file["remotePath"].lstrip("/")).read_bytes()
        assert body == uploaded
        assert hashlib.sha256(body).hexdigest() == file["sha256"]
        assert response.headers["Content-Length"] == str(file["bytes"])
        assert response.headers["ETag"] == f'"{file["sha256"]}"'
        assert (
            response.headers["Digest"]
            == "sha-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()
        )
        assert (
            response.headers["Repr-Digest"]
            == "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"
        )
        assert response.headers["Content-Type"].startswith(
            "application/json" if file["name"].endswith("json") else "text/csv"
        )
        # The client's copy is current: nothing is sent again.
        again = await client.get(
            f"{EXPORTS}/{export_id}/files/{file['name']}",
            headers={**AUTH, "If-None-Match": f'"{file["sha256"]}"'},
        )
        assert again.status == 304
        # A list of tags, a weak tag (If-None-Match compares weakly) and `*` are current too.
        for current in (f'"other", "{file["sha256"]}"', f'W/"{file["sha256"]}"', "*"):
            listed = await client.get(
                f"{EXPORTS}/{export_id}/files/{file['name']}", headers={**AUTH, "If-None-Match": current}
            )
            assert listed.status == 304, current
        stale = await client.get(
            f"{EXPORTS}/{export_id}/files/{file['name']}", headers={**AUTH, "If-None-Match": '"other"'}
        )
        assert stale.status == 200
        await stale.read()

    for path, status in (
        (f"{EXPORTS}/{export_id}/files/orders.csv", 404),
        (f"{EXPORTS}/{export_id}/files/..%2F..%2Fetc%2Fpasswd", 404),
        (f"{EXPORTS}/{uuid.uuid4()}/files/invoices.csv", 404),
        (f"{EXPORTS}/not-a-uuid/files/invoices.csv", 400),
    ):
        response = await client.get(path, headers=AUTH)
        assert response.status == status, (path, await response.text())

    # A file removed at the destination after the export completed: a 404 that says so.
    invoices = export["files"][0]
    (sftp_server.root / invoices["remotePath"].lstrip("/")).unlink()
    response = await client.get(f"{EXPORTS}/{export_id}/files/invoices.csv", headers=AUTH)
    assert response.status == 404
    assert "gone" in (await response.json())["error"]["message"]


async def large_export(pool: asyncpg.Pool, sftp_server: SftpFixture) -> tuple[UUID, str]:
    """A completed export whose invoices file is LARGE_BYTES on the SFTP server; and its sha256."""
    export_id = uuid.uuid4()
    directory = sftp_server.root / sftp_server.remote_dir.lstrip("/") / export_directory(*OCTOBER, export_id)
    directory.mkdir(parents=True)
    digest = hashlib.sha256()

    def write() -> None:
        with (directory / "invoices.csv").open("wb") as file:
            for _ in range(LARGE_BYTES // (1024 * 1024)):
                block = os.urandom(1024 * 1024)
                digest.update(block)
                file.write(block)

    await asyncio.to_thread(write)
    remote = f"{sftp_server.remote_dir}/{export_directory(*OCTOBER, export_id)}/invoices.csv"
    files = [
        {
            "name": "invoices.csv",
            "kind": "invoices",
            "rows": 1,
            "bytes": LARGE_BYTES,
            "sha256": digest.hexdigest(),
            "remotePath": remote,
        }
    ]
    await pool.execute(
        """INSERT INTO financial_exports (id, period_start, period_end, format, status, files)
           VALUES ($1, $2, $3, 'csv', 'completed', $4::jsonb)""",
        export_id,
        *OCTOBER,
        json.dumps(files),
    )
    return export_id, digest.hexdigest()


@pytest_asyncio.fixture
async def api_process(
    sftp_api_settings: Settings, database_url: str, dev_server: WorkflowEnvironment, tmp_path: Path
) -> AsyncIterator[tuple[str, psutil.Process]]:
    """`python -m petcare api` on a free port, configured through its environment."""
    port = free_port()
    sftp = sftp_api_settings.sftp
    env = {
        **os.environ,
        "PYTHONPATH": REPOSITORY,
        "TEMPORAL_ADDRESS": dev_server.client.service_client.config.target_host,
        "TEMPORAL_CONFIG_FILE": os.devnull,
        "PETCARE_DATABASE_URL": database_url,
        "PETCARE_API__TOKEN": API_TOKEN,
        "PETCARE_API__PORT": str(port),
        "PETCARE_EXPORT__DESTINATION": "sftp",
        "PETCARE_SFTP__HOST": sftp.host,
        "PETCARE_SFTP__PORT": str(sftp.port),
        "PETCARE_SFTP__USERNAME": sftp.username,
        "PETCARE_SFTP__PRIVATE_KEY_PATH": str(sftp.private_key_path),
        "PETCARE_SFTP__KNOWN_HOSTS_PATH": str(sftp.known_hosts_path),
        "PETCARE_SFTP__REMOTE_DIR": sftp.remote_dir,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "petcare", "api", env=env, cwd=tmp_path
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:

            async def up() -> bool:
                try:
                    async with session.get(f"{base}/api/v1/openapi.json") as response:
                        return response.status == 200
                except aiohttp.ClientConnectionError:
                    return False

            await poll(up, timeout=30, what="the API process answers")
        yield base, psutil.Process(process.pid)
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 15)


async def test_a_large_file_streams_with_flat_memory(
    api_process: tuple[str, psutil.Process], pool: asyncpg.Pool, sftp_server: SftpFixture
) -> None:
    base, process = api_process
    export_id, sha256 = await large_export(pool, sftp_server)
    url = f"{base}{EXPORTS}/{export_id}/files/invoices.csv"
    peak = [0]
    sampling = True

    async def sample() -> None:
        while sampling:
            peak[0] = max(peak[0], process.memory_info().rss)
            await asyncio.sleep(0.02)

    async with aiohttp.ClientSession() as session:
        # A first read, dropped after 1 KiB, warms the process (imports, the SFTP client, the pool).
        async with session.get(url, headers=AUTH) as response:
            assert response.status == 200
            await response.content.readexactly(1024)
        baseline = process.memory_info().rss
        sampler = asyncio.create_task(sample())
        digest = hashlib.sha256()
        received = 0
        async with session.get(url, headers=AUTH) as response:
            assert response.status == 200
            assert response.headers["Content-Length"] == str(LARGE_BYTES)
            async for block in response.content.iter_chunked(1024 * 1024):
                digest.update(block)
                received += len(block)
        sampling = False
        await sampler
    assert received == LARGE_BYTES
    assert digest.hexdigest() == sha256
    growth = peak[0] - baseline
    print(f"API process RSS: {baseline / 2**20:.0f} MiB, grew by {growth / 2**20:.1f} MiB streaming 128 MiB")
    assert growth < RSS_GROWTH_LIMIT, f"the API process grew by {growth / 2**20:.0f} MiB streaming 128 MiB"
