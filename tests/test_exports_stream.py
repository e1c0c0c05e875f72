"""The stream of one export file on real PostgreSQL: CRLF record ends that survive quoted newlines,
heartbeats carrying the bytes sent, and a stalled query failing the attempt (retryably)."""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.exports import ExportActivities
from activities.exports.destinations import LocalDestination
from activities.exports.streaming import StreamLimits
from petcare.models.exports import BeginRequest, ExportedFile, FileRequest
from tests.support.exports import request_export, seed, tables_locked, upload_environment

MULTILINE = 'first line\nsecond "quoted" line'


def files_in(root: Path) -> list[str]:
    return [path.name for path in root.rglob("*") if path.is_file()]


def outside_quotes(data: bytes) -> bytes:
    """The bytes of `data` that are not inside a quoted CSV cell."""
    return b"".join(data.split(b'"')[0::2])


async def export_transactions(
    pool: asyncpg.Pool, root: Path, limits: StreamLimits, environment: ActivityEnvironment | None = None
) -> ExportedFile:
    activities = ExportActivities(pool, LocalDestination(root), limits)
    async with pool.acquire() as connection:
        export_id = await request_export(connection)
    begin = BeginRequest(export_id=export_id, force=False, workflow_id="test")
    plan = await ActivityEnvironment().run(activities.begin, begin)
    request = FileRequest(plan=plan, kind="transactions")
    exported: ExportedFile = await (environment or upload_environment()).run(activities.write_file, request)
    return exported


async def test_csv_records_end_with_crlf_and_quoted_newlines_survive(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    async with pool.acquire() as connection:
        seeded = await seed(connection)
        await connection.execute(
            """INSERT INTO transactions (store_id, occurred_at, amount_cents, currency, method, reference)
               VALUES ($1, '2025-10-15T12:00:00Z', 100, 'USD', 'card', $2)""",
            seeded.tokyo,
            MULTILINE,
        )
        stored = await connection.fetchval(
            "SELECT count(*) FROM transactions WHERE reference = $1", MULTILINE
        )
    # Blocks of 4 KiB: a quoted cell can straddle two of them.
    exported = await export_transactions(pool, tmp_path, StreamLimits(block_bytes=4096, queue_blocks=2))
    data = await asyncio.to_thread(Path(exported.remote_path).read_bytes)

    records = list(csv.reader(io.StringIO(data.decode(), newline="")))
    assert [row[-1] for row in records].count(MULTILINE) == stored == 1  # LF and quotes kept in the cell
    ends = outside_quotes(data)
    assert ends.count(b"\r\n") == len(records) == exported.rows + 1  # every record, the header too
    assert ends.replace(b"\r\n", b"").count(b"\n") == 0  # no bare LF ends a record
    assert b'"first line\nsecond ""quoted"" line"' in data  # the cell's own LF is not converted
    assert exported.bytes == len(data)  # counted (and hashed) after the conversion


async def test_heartbeats_carry_the_bytes_sent(pool: asyncpg.Pool, tmp_path: Path) -> None:
    async with pool.acquire() as connection:
        seeded = await seed(connection)
        await connection.execute(
            """INSERT INTO transactions (store_id, occurred_at, amount_cents, currency, method, reference)
               SELECT $1, '2025-10-10T12:00:00Z'::timestamptz + n * interval '1 second', n, 'USD', 'card',
                      'ref ' || n
               FROM generate_series(1, 30000) AS n""",
            seeded.new_york,
        )
    beats: list[Any] = []
    environment = upload_environment()
    environment.on_heartbeat = lambda *details: beats.append(details)
    limits = StreamLimits(block_bytes=4096, queue_blocks=2, heartbeat_seconds=0.001)
    exported = await export_transactions(pool, tmp_path, limits, environment)
    sent = [details[0] for details in beats]
    assert sent == sorted(sent)
    assert len(set(sent)) > 3  # progress, not a constant
    assert 0 < sent[-1] <= exported.bytes


async def test_a_stalled_query_fails_the_attempt_retryably(
    pool: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    limits = StreamLimits(stall_seconds=1.0, heartbeat_seconds=0.2)
    async with tables_locked(database_url, "transactions"):  # the COPY waits, sending nothing
        with pytest.raises(ApplicationError) as raised:
            await export_transactions(pool, tmp_path, limits)
    assert raised.value.type == "ExportStalled"
    assert not raised.value.non_retryable
    assert "no data moved for 1 s" in raised.value.message
    assert files_in(tmp_path) == []  # the temporary file removed
