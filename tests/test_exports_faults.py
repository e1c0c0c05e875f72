"""Exports that go wrong half-way or on bad data, on real servers (PostgreSQL, the asyncssh SFTP
server or a local directory, the Temporal dev server):

- a forced re-export that fails after some files never leaves a manifest beside files it does not
  describe, at any moment, and the export row lists exactly what is on the destination;
- a store whose time zone PostgreSQL accepts but the project does not (POSIX `UTC+3`, whose sign is
  inverted) fails the export with a message naming the store and zone, instead of shifting its days.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.exports import ExportActivities
from activities.exports import activities as export_activities
from activities.exports.destinations import Destination, LocalDestination, SftpDestination
from activities.exports.streaming import StreamLimits
from petcare.db import Connection
from petcare.models.exports import MANIFEST_NAME, BeginRequest, FileRequest
from tests.support.exports import (
    POISON,
    POISON_MESSAGE,
    export_status,
    export_worker,
    poison_text_cells,
    request_export,
    seed,
    start_export,
    started_attempts,
    tables_locked,
)
from tests.support.polling import poll
from tests.support.sftp import SftpFixture

PERIOD_DIR = "2025-10-01_2025-10-31"
DATA_NAMES = ["invoices.csv", "transactions.csv", "credit_notes.csv"]


@dataclass(frozen=True)
class Target:
    """A destination, and where its files are on this machine's disk."""

    destination: Destination
    root: Path  # the local directory behind the destination's export root
    local_path: Callable[[str], Path]  # a file's `remotePath` as a path on this machine

    def folder(self, export_id: UUID) -> Path:
        return self.root / PERIOD_DIR / str(export_id)


def local_target(tmp_path: Path) -> Target:
    root = (tmp_path / "exports").resolve()
    return Target(LocalDestination(root), root, Path)


def sftp_target(sftp: SftpFixture) -> Target:
    return Target(
        SftpDestination(sftp.settings()),
        sftp.root / sftp.remote_dir.lstrip("/"),
        lambda remote: sftp.root / remote.lstrip("/"),
    )


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def on_disk(folder: Path) -> dict[str, tuple[int, str]]:
    """Each final file (temporary files are hidden dot files) with its size and sha256."""
    if not folder.exists():
        return {}
    found = {}
    for path in folder.iterdir():
        if path.name.startswith("."):
            continue
        try:
            found[path.name] = (path.stat().st_size, sha256(path))
        except FileNotFoundError:
            continue  # removed while listed (the manifest, retracted)
    return found


def hidden_files(folder: Path) -> list[str]:
    return [path.name for path in folder.iterdir() if path.name.startswith(".")]


def manifest_mismatch(folder: Path) -> str | None:
    """Why the manifest does not describe exactly the data files beside it, None if it does (or if
    there is no manifest), "torn" if the folder changed while it was being read."""
    manifest = folder / MANIFEST_NAME
    try:
        before = manifest.stat()
        text = manifest.read_bytes()
    except FileNotFoundError:
        return None
    files = {name: facts for name, facts in on_disk(folder).items() if name != MANIFEST_NAME}
    try:
        after = manifest.stat()
        still = manifest.read_bytes()
    except FileNotFoundError:
        return "torn"
    if (before.st_ino, before.st_mtime_ns, text) != (after.st_ino, after.st_mtime_ns, still):
        return "torn"
    # The manifest stood unchanged while the files were read: they are the ones beside it.
    listed = {entry["name"]: (entry["bytes"], entry["sha256"]) for entry in json.loads(text)["files"]}
    return None if listed == files else f"manifest lists {listed}, beside it are {files}"


@dataclass
class Watch:
    violations: list[str] = field(default_factory=list)
    snapshots: int = 0


@asynccontextmanager
async def watching_manifest(folder: Path) -> AsyncIterator[Watch]:
    """Check, as often as the machine allows while the block runs, that the manifest on the
    destination (when there is one) describes exactly the files beside it."""
    watch = Watch()

    async def watch_folder() -> None:
        while True:
            mismatch = await asyncio.to_thread(manifest_mismatch, folder)
            if mismatch != "torn":
                watch.snapshots += 1
                if mismatch is not None:
                    watch.violations.append(mismatch)
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch_folder())
    try:
        yield watch
    finally:
        watcher.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watcher
    # A last look, with everything settled.
    final = await asyncio.to_thread(manifest_mismatch, folder)
    if final is not None:
        watch.violations.append(final)


async def row_files(pool: asyncpg.Pool, export_id: UUID) -> list[dict[str, Any]]:
    files: list[dict[str, Any]] = json.loads(
        await pool.fetchval("SELECT files FROM financial_exports WHERE id = $1", export_id)
    )
    return files


async def assert_row_matches_destination(pool: asyncpg.Pool, target: Target, export_id: UUID) -> None:
    """The row's `files` lists exactly the final files on the destination, in the manifest's order."""
    listed = await row_files(pool, export_id)
    folder = target.folder(export_id)
    assert [target.local_path(entry["remotePath"]) for entry in listed] == [
        folder / entry["name"] for entry in listed
    ]
    assert {entry["name"]: (entry["bytes"], entry["sha256"]) for entry in listed} == await asyncio.to_thread(
        on_disk, folder
    )
    order = [*DATA_NAMES, MANIFEST_NAME]
    assert [entry["name"] for entry in listed] == sorted((entry["name"] for entry in listed), key=order.index)


async def add_october_rows(connection: Connection, store: UUID, *, poisoned: bool) -> None:
    """A new invoice, transaction and credit note, so a re-export's files differ from the first
    export's; with `poisoned`, also a transaction whose reference makes PostgreSQL fail the
    transactions query."""
    invoice = await connection.fetchval(
        """INSERT INTO invoices (number, store_id, issued_at, currency, subtotal_cents, tax_cents,
                                 total_cents, status)
           VALUES ('LATE-1', $1, '2025-10-20T12:00:00Z', 'USD', 1000, 200, 1200, 'paid') RETURNING id""",
        store,
    )
    await connection.execute(
        """INSERT INTO credit_notes (number, invoice_id, store_id, issued_at, amount_cents, currency, reason)
           VALUES ('CN-LATE-1', $1, $2, '2025-10-21T12:00:00Z', 300, 'USD', 'late refund')""",
        invoice,
        store,
    )
    if poisoned:
        await poison_text_cells(connection)
    for reference in ("LATE-1", POISON) if poisoned else ("LATE-1",):
        await connection.execute(
            """INSERT INTO transactions (invoice_id, store_id, occurred_at, amount_cents, currency, method,
                                         reference)
               VALUES ($1, $2, '2025-10-20T12:00:00Z', 1200, 'USD', 'card', $3)""",
            invoice,
            store,
            reference,
        )


@pytest.mark.parametrize(
    ("destination", "fault"),
    [("local", "postgresql-error"), ("sftp", "postgresql-error"), ("sftp", "writes-refused")],
)
async def test_a_forced_re_export_failing_half_way_never_leaves_a_manifest_beside_other_files(
    dev_client: Client,
    task_queue: str,
    pool: asyncpg.Pool,
    database_url: str,
    sftp_server: SftpFixture,
    tmp_path: Path,
    destination: str,
    fault: str,
) -> None:
    target = sftp_target(sftp_server) if destination == "sftp" else local_target(tmp_path)
    async with pool.acquire() as connection:
        seeded = await seed(connection)
        export_id = await request_export(connection)
    folder = target.folder(export_id)

    async with export_worker(dev_client, task_queue, pool, target.destination):
        await (await start_export(dev_client, task_queue, export_id)).result()
        first = await asyncio.to_thread(on_disk, folder)
        assert sorted(first) == sorted([*DATA_NAMES, MANIFEST_NAME])
        await assert_row_matches_destination(pool, target, export_id)

        async with pool.acquire() as connection:
            await add_october_rows(connection, seeded.new_york, poisoned=fault == "postgresql-error")

        async with watching_manifest(folder) as watch:
            # The transactions file waits on its query while the two others replace theirs.
            async with tables_locked(database_url, "transactions"):
                forced = await start_export(dev_client, task_queue, export_id, force=True)

                async def others_replaced() -> bool:
                    now = await asyncio.to_thread(on_disk, folder)
                    return all(
                        now.get(name, first[name]) != first[name]
                        for name in ("invoices.csv", "credit_notes.csv")
                    )

                await poll(others_replaced, timeout=60, every=0.05)
                if fault == "writes-refused":
                    sftp_server.server.refuse_writes()
            # Released: the transactions file now meets the fault, which no retry can fix.
            with pytest.raises(WorkflowFailureError):
                await forced.result()

            after_failure = await asyncio.to_thread(on_disk, folder)
            status, error = await export_status(pool, export_id)
            assert status == "failed"
            assert error is not None
            assert (POISON_MESSAGE if fault == "postgresql-error" else "denied writing") in error
            # The new invoices and credit notes, the old transactions, and no manifest.
            assert sorted(after_failure) == sorted(DATA_NAMES)
            assert after_failure["transactions.csv"] == first["transactions.csv"]
            assert after_failure["invoices.csv"] != first["invoices.csv"]
            assert after_failure["credit_notes.csv"] != first["credit_notes.csv"]
            assert await asyncio.to_thread(hidden_files, folder) == []  # no temporary file left
            await assert_row_matches_destination(pool, target, export_id)

            # The fault is gone: processing the failed export again completes it.
            sftp_server.server.refuse_writes(False)
            await pool.execute("DELETE FROM transactions WHERE reference = $1", POISON)
            await (await start_export(dev_client, task_queue, export_id)).result()

        assert watch.violations == []
        assert watch.snapshots > 10  # the watcher really looked, throughout
    final = await asyncio.to_thread(on_disk, folder)
    assert sorted(final) == sorted([*DATA_NAMES, MANIFEST_NAME])
    # Same data, same bytes: the files the failed run wrote are the ones the retry wrote.
    assert final["invoices.csv"] == after_failure["invoices.csv"]
    assert final["credit_notes.csv"] == after_failure["credit_notes.csv"]
    assert final["transactions.csv"] != first["transactions.csv"]  # the late transaction is in
    assert await export_status(pool, export_id) == ("completed", None)
    await assert_row_matches_destination(pool, target, export_id)


async def test_a_store_zone_postgresql_accepts_but_the_project_does_not_fails_the_export(
    dev_client: Client, task_queue: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    target = local_target(tmp_path)
    async with pool.acquire() as connection:
        seeded = await seed(connection)
        # POSIX reads `UTC+3` as three hours *behind* UTC: PostgreSQL takes it and would put this
        # store's local midnight at 03:00 UTC, where Moscow's (UTC+3) is 21:00 UTC the day before.
        midnight = await connection.fetchval("SELECT '2025-10-01'::timestamp AT TIME ZONE 'UTC+3'")
        assert midnight == datetime(2025, 10, 1, 3, 0, tzinfo=UTC)
        posix = await connection.fetchval(
            "INSERT INTO stores (name, timezone) VALUES ('Arbat', 'UTC+3') RETURNING id"
        )
        await connection.execute(
            """INSERT INTO invoices (number, store_id, issued_at, currency, subtotal_cents, tax_cents,
                                     total_cents, status)
               VALUES ('ARBAT-FIRST', $1, '2025-09-30T22:00:00Z', 'RUB', 100, 0, 100, 'paid')""",
            posix,
        )
        every_store = await request_export(connection)
        only_arbat = await request_export(connection, store_id=posix)
        only_tokyo = await request_export(connection, store_id=seeded.tokyo)

    async with export_worker(dev_client, task_queue, pool, target.destination):
        for export_id in (every_store, only_arbat):
            handle = await start_export(dev_client, task_queue, export_id)
            with pytest.raises(WorkflowFailureError):
                await handle.result()
            status, error = await export_status(pool, export_id)
            assert status == "failed"
            assert error == (
                f"cannot export: store 'Arbat' ({posix}): store time zone 'UTC+3' is not an IANA time "
                "zone (local calendar days unknown: fix stores.timezone, then process the export again)"
            )
            assert not await asyncio.to_thread(target.folder(export_id).exists)  # not one file written
            assert set(await started_attempts(handle)) == {1}  # not retried: the zone stays wrong

        # An export of another store does not convert with that zone: it completes.
        await (await start_export(dev_client, task_queue, only_tokyo)).result()
        assert await export_status(pool, only_tokyo) == ("completed", None)

        # Fixed, the failed export runs again; 01:00 on 1 October in Moscow is October's.
        await pool.execute("UPDATE stores SET timezone = 'Europe/Moscow' WHERE id = $1", posix)
        await (await start_export(dev_client, task_queue, every_store)).result()
    invoices = await asyncio.to_thread((target.folder(every_store) / "invoices.csv").read_text)
    assert "ARBAT-FIRST" in invoices
    assert ",2025-10-01," in next(line for line in invoices.splitlines() if "ARBAT-FIRST" in line)


async def test_an_export_names_at_most_five_stores_with_bad_zones(pool: asyncpg.Pool, tmp_path: Path) -> None:
    zones = ["UTC+3", "GMT-5", "EST5", "Europe/paris", "Mars/Olympus_Mons", "UTC+1", "<+0330>-3:30"]
    async with pool.acquire() as connection:
        await seed(connection)
        for index, zone in enumerate(zones):
            await connection.execute(
                "INSERT INTO stores (name, timezone) VALUES ($1, $2)", f"Bad {index}", zone
            )
        export_id = await request_export(connection)
    activities = ExportActivities(pool, LocalDestination(tmp_path), StreamLimits())
    begin = BeginRequest(export_id=export_id, force=False, workflow_id="test")
    plan = await ActivityEnvironment().run(activities.begin, begin)
    with pytest.raises(ApplicationError) as raised:
        await ActivityEnvironment().run(activities.write_file, FileRequest(plan=plan, kind="invoices"))
    assert (raised.value.type, raised.value.non_retryable) == ("ExportDataError", True)
    named = [
        f"store 'Bad {index}'" for index in range(len(zones)) if f"'Bad {index}'" in raised.value.message
    ]
    assert named == [f"store 'Bad {index}'" for index in range(5)]  # in name order
    assert "and 2 more stores" in raised.value.message
    assert "'UTC+3' is not an IANA time zone" in raised.value.message
    assert await asyncio.to_thread(hidden_files, tmp_path) == []
    assert await asyncio.to_thread(on_disk, tmp_path) == {}  # nothing written at all


async def test_a_zone_the_project_knows_but_postgresql_lacks_fails_a_single_store_export_for_good(
    dev_client: Client, task_queue: str, pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store's bounds are read before the COPY: PostgreSQL refusing the zone there is bad data
    too (not retried, recorded), as it is in the COPY."""
    target = local_target(tmp_path)
    # A zone database newer than PostgreSQL's: the project's check accepts what PostgreSQL lacks.
    monkeypatch.setattr(export_activities, "parse_zone", lambda name: ZoneInfo("UTC"))
    async with pool.acquire() as connection:
        lunar = await connection.fetchval(
            "INSERT INTO stores (name, timezone) VALUES ('Lunar', 'Moon/Tranquility') RETURNING id"
        )
        export_id = await request_export(connection, store_id=lunar)

    async with export_worker(dev_client, task_queue, pool, target.destination):
        handle = await start_export(dev_client, task_queue, export_id)
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        status, error = await export_status(pool, export_id)
        assert status == "failed"
        assert error is not None
        assert error.startswith(f'cannot export store {lunar}: time zone "Moon/Tranquility" not recognized')
        assert set(await started_attempts(handle)) == {1}  # not retried: the zone stays unknown
