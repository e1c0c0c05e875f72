"""The export workflow end to end: real PostgreSQL, a real SFTP server, the Temporal dev server.

Not the time-skipping server: it refuses to cancel an activity that completed in the same
workflow task (sdk-java#2391), which the workflow does when one file fails beside the others.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from pathlib import Path
from uuid import UUID

import asyncpg
import asyncssh
import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.worker import Replayer

from activities.exports.destinations import SftpDestination
from activities.exports.streaming import StreamLimits
from devstack.ssh_keys import write_known_hosts
from petcare.config import SftpSettings
from petcare.temporal_client import PetcarePlugin
from tests.support.exports import export_worker, request_export, seed, start_export, started_attempts
from tests.support.sftp import SftpFixture
from workflows.exports import FinancialExportWorkflow

LIMITS = StreamLimits(block_bytes=64 * 1024, queue_blocks=2, heartbeat_seconds=0.5)


def export_worker_for(
    client: Client, task_queue: str, pool: asyncpg.Pool, sftp: SftpSettings
) -> AbstractAsyncContextManager[None]:
    return export_worker(client, task_queue, pool, SftpDestination(sftp), LIMITS)


async def export_row(pool: asyncpg.Pool, export_id: UUID) -> asyncpg.Record:
    async with pool.acquire() as connection:
        row = await connection.fetchrow("SELECT * FROM financial_exports WHERE id = $1", export_id)
    assert row is not None
    return row


def export_dir(sftp: SftpFixture, export_id: UUID) -> Path:
    return sftp.root / "exports" / f"2025-10-01_2025-10-31/{export_id}"


def untrusted_known_hosts(sftp: SftpFixture, path: Path) -> SftpSettings:
    write_known_hosts(path, sftp.host, sftp.port, asyncssh.generate_private_key("ssh-ed25519"))
    return sftp.settings().model_copy(update={"known_hosts_path": path})


async def test_export_to_sftp_with_manifest(
    dev_client: Client, task_queue: str, pool: asyncpg.Pool, sftp_server: SftpFixture
) -> None:
    async with pool.acquire() as connection:
        await seed(connection)
        export_id = await request_export(connection)
    async with export_worker_for(dev_client, task_queue, pool, sftp_server.settings()):
        handle = await start_export(dev_client, task_queue, export_id)
        result = await handle.result()
    # Determinism: the recorded history replays against the workflow code.
    replayer = Replayer(workflows=[FinancialExportWorkflow], plugins=[PetcarePlugin()])
    await replayer.replay_workflow(await handle.fetch_history())

    folder = export_dir(sftp_server, export_id)
    assert sorted(path.name for path in folder.iterdir()) == [
        "credit_notes.csv",
        "invoices.csv",
        "manifest.json",
        "transactions.csv",
    ]
    manifest = json.loads((folder / "manifest.json").read_bytes())
    assert manifest["periodStart"] == "2025-10-01"
    assert [entry["name"] for entry in manifest["files"]] == [
        "invoices.csv",
        "transactions.csv",
        "credit_notes.csv",
    ]
    for entry in manifest["files"]:
        data = (folder / entry["name"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["bytes"] == len(data)
        assert entry["rows"] == 4

    row = await export_row(pool, export_id)
    assert row["status"] == "completed"
    assert row["completed_at"] is not None
    stored = json.loads(row["files"])
    assert [file["remotePath"] for file in stored] == [
        f"/exports/2025-10-01_2025-10-31/{export_id}/{name}"
        for name in ("invoices.csv", "transactions.csv", "credit_notes.csv", "manifest.json")
    ]
    assert stored == [file.model_dump(mode="json", by_alias=True) for file in result.files]
    manifest_bytes = (folder / "manifest.json").read_bytes()
    assert stored[-1]["sha256"] == hashlib.sha256(manifest_bytes).hexdigest()


async def test_unknown_host_key_fails_once_with_a_clear_message(
    dev_client: Client,
    task_queue: str,
    pool: asyncpg.Pool,
    sftp_server: SftpFixture,
    tmp_path: Path,
) -> None:
    async with pool.acquire() as connection:
        export_id = await request_export(connection)
    untrusted = untrusted_known_hosts(sftp_server, tmp_path / "untrusted_known_hosts")
    async with export_worker_for(dev_client, task_queue, pool, untrusted):
        handle = await start_export(dev_client, task_queue, export_id)
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    assert "does not trust" in str(failure.value.cause)
    row = await export_row(pool, export_id)
    assert row["status"] == "failed"
    assert "host key" in row["error"]
    assert "untrusted_known_hosts" in row["error"]
    # No retry storm: begin, the uploads (a sibling of the first to fail may be cancelled before it
    # starts) and the failure record, each on its first attempt.
    attempts = await started_attempts(handle)
    assert set(attempts) == {1}
    assert 3 <= len(attempts) <= 5
    assert not export_dir(sftp_server, export_id).exists()


@asynccontextmanager
async def watching(folder: Path, names: list[str]) -> AsyncIterator[Callable[[str], set[int]]]:
    """Record every size seen under each final name while the export runs."""
    seen: dict[str, set[int]] = {name: set() for name in names}

    async def watch() -> None:
        while True:
            for name in names:
                with suppress(FileNotFoundError):
                    seen[name].add((folder / name).stat().st_size)
            await asyncio.sleep(0.002)

    watcher = asyncio.create_task(watch())
    try:
        yield lambda name: seen[name]
    finally:
        watcher.cancel()


async def test_connection_cut_mid_upload_is_retried_and_never_leaves_a_partial_file(
    dev_client: Client, task_queue: str, pool: asyncpg.Pool, sftp_server: SftpFixture
) -> None:
    async with pool.acquire() as connection:
        seeded = await seed(connection)
        # About 2 MB of invoices, so the cut lands in the middle of the upload.
        await connection.execute(
            """INSERT INTO invoices (number, store_id, issued_at, currency, subtotal_cents, tax_cents,
                                     total_cents, status)
               SELECT 'BULK-' || n, $1, '2025-10-10T12:00:00Z'::timestamptz + n * interval '1 second', 'USD',
                      n, 0, n, 'paid'
               FROM generate_series(1, 20000) AS n""",
            seeded.new_york,
        )
        export_id = await request_export(connection)
    sftp_server.server.cut_uploads_after(600_000)
    names = ["invoices.csv", "transactions.csv", "credit_notes.csv", "manifest.json"]
    async with (
        export_worker_for(dev_client, task_queue, pool, sftp_server.settings()),
        watching(export_dir(sftp_server, export_id), names) as sizes,
    ):
        handle = await start_export(dev_client, task_queue, export_id)
        result = await handle.result()
        await asyncio.sleep(0.05)  # the watcher sees the final files too

    assert sorted(await started_attempts(handle))[-1] == 2  # the cut upload ran again
    folder = export_dir(sftp_server, export_id)
    by_name = {file.name: file for file in result.files}
    assert by_name["invoices.csv"].rows == 20004
    for name in names:
        final_size = (folder / name).stat().st_size
        assert final_size == by_name[name].bytes
        assert sizes(name) == {final_size}  # only ever seen complete under its final name
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == by_name[name].sha256
    assert sorted(path.name for path in folder.iterdir()) == sorted(names)  # no temporary files left


async def test_failed_export_runs_again_and_completed_is_not_reuploaded_unless_forced(
    dev_client: Client,
    task_queue: str,
    pool: asyncpg.Pool,
    sftp_server: SftpFixture,
    tmp_path: Path,
) -> None:
    async with pool.acquire() as connection:
        export_id = await request_export(connection, export_format="json")
    untrusted = untrusted_known_hosts(sftp_server, tmp_path / "untrusted_known_hosts")
    async with export_worker_for(dev_client, task_queue, pool, untrusted):
        with pytest.raises(WorkflowFailureError):
            await (await start_export(dev_client, task_queue, export_id)).result()
    assert (await export_row(pool, export_id))["status"] == "failed"

    async with export_worker_for(dev_client, task_queue, pool, sftp_server.settings()):
        first = await (await start_export(dev_client, task_queue, export_id)).result()
        manifest = export_dir(sftp_server, export_id) / "manifest.json"
        uploaded_at = manifest.stat().st_mtime_ns
        again = await (await start_export(dev_client, task_queue, export_id)).result()
        assert manifest.stat().st_mtime_ns == uploaded_at
        forced = await (await start_export(dev_client, task_queue, export_id, force=True)).result()
        assert manifest.stat().st_mtime_ns != uploaded_at

    assert (first.skipped, again.skipped, forced.skipped) == (False, True, False)
    assert again.files == first.files
    assert [file.name for file in first.files] == [
        "invoices.jsonl",
        "transactions.jsonl",
        "credit_notes.jsonl",
        "manifest.json",
    ]
    row = await export_row(pool, export_id)
    assert row["status"] == "completed"
    assert row["error"] is None
