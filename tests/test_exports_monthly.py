"""The monthly close on the Temporal dev server with the real worker, PostgreSQL, SFTP and SMTP:
the declared schedule, fired twice for one month, makes one export per store of each store's
previous local month, uploads it once and sends one notice per export."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from temporalio.client import Client, ScheduleBackfill, ScheduleOverlapPolicy

from devstack.rows import add_store
from devstack.smtp_sink import SmtpSink
from petcare.config import ExportSettings, Settings
from petcare.jobs import MONTHLY_FINANCIAL_EXPORT
from petcare.models.exports import MonthlyExportResult, export_workflow_id, previous_month
from petcare.schedules import apply_schedules, declared_schedules
from tests.support.exports import NEW_YORK, TOKYO, seed
from tests.support.polling import poll, until_visible
from tests.support.sftp import SftpFixture
from tests.support.workers import real_worker

NOTIFY = "accounts@petcare.test"
# 02:00 UTC on 1 November 2025: Tokyo is at 11:00 on the 1st, New York still at 22:00 on 31 October.
CLOSE = datetime(2025, 11, 1, 2, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("moment", "zone", "month"),
    [
        (CLOSE, TOKYO, (date(2025, 10, 1), date(2025, 10, 31))),
        (CLOSE, NEW_YORK, (date(2025, 9, 1), date(2025, 9, 30))),
        (CLOSE, "Europe/London", (date(2025, 10, 1), date(2025, 10, 31))),
        (datetime(2026, 1, 1, 12, tzinfo=UTC), "Pacific/Kiritimati", (date(2025, 12, 1), date(2025, 12, 31))),
        (datetime(2024, 3, 1, 11, 59, tzinfo=UTC), "Etc/GMT+12", (date(2024, 1, 1), date(2024, 1, 31))),
        (datetime(2024, 3, 1, 12, 0, tzinfo=UTC), "Etc/GMT+12", (date(2024, 2, 1), date(2024, 2, 29))),
    ],
)
def test_previous_month_is_the_store_local_one(moment: datetime, zone: str, month: tuple[date, date]) -> None:
    assert previous_month(moment, ZoneInfo(zone)) == month


@pytest.fixture
def monthly_settings(
    settings: Settings, task_queue: str, smtp_sink: SmtpSink, sftp_server: SftpFixture, tmp_path: Path
) -> Settings:
    return settings.model_copy(
        update={
            "task_queue": task_queue,
            "smtp": settings.smtp.model_copy(update={"port": smtp_sink.port, "timeout_seconds": 5.0}),
            "sftp": sftp_server.settings(),
            # At 02:00 UTC, where the month boundary differs between the stores' zones.
            "export": ExportSettings(destination="sftp", notify_email=NOTIFY, monthly_hour=2),
        }
    )


async def monthly_rows(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            "SELECT id, store_id, period_start, period_end FROM financial_exports WHERE origin = 'monthly'"
        )
    )


async def all_done(client: Client, rows: list[asyncpg.Record]) -> None:
    for row in rows:
        await client.get_workflow_handle(export_workflow_id(row["id"])).result()


async def scheduled_runs(client: Client, schedule_id: str, count: int) -> list[MonthlyExportResult]:
    query = f'TemporalScheduledById="{schedule_id}"'
    await until_visible(client, query, count)
    runs = [execution async for execution in client.list_workflows(query)]
    return [
        MonthlyExportResult.model_validate(
            await client.get_workflow_handle(
                run.id, run_id=run.run_id, result_type=MonthlyExportResult
            ).result()
        )
        for run in runs
    ]


async def test_the_monthly_close_fired_twice_makes_one_export_and_notice_per_store(
    dev_client: Client,
    monthly_settings: Settings,
    pool: asyncpg.Pool,
    smtp_sink: SmtpSink,
    sftp_server: SftpFixture,
) -> None:
    async with pool.acquire() as connection:
        seeded = await seed(connection)
    await pool.execute("UPDATE stores SET email = 'tokyo@petcare.test' WHERE id = $1", seeded.tokyo)
    await pool.execute("UPDATE stores SET email = 'ny@petcare.test' WHERE id = $1", seeded.new_york)
    london = await add_store(pool, "London", "Europe/London")  # no email: the notice goes to NOTIFY
    # The declared schedule, under an id of the test's own (the dev server is shared).
    [declared] = [
        d for d in declared_schedules(monthly_settings) if d.schedule_id == MONTHLY_FINANCIAL_EXPORT.key
    ]
    schedule_id = f"{declared.schedule_id}-{uuid.uuid4().hex[:8]}"
    declaration = dataclasses.replace(declared, schedule_id=schedule_id)
    await apply_schedules(dev_client, [declaration], monthly_settings.task_queue)
    handle = dev_client.get_schedule_handle(schedule_id)
    try:
        async with real_worker(dev_client, monthly_settings, pool):
            # The close of 1 November 2025, long after it was due (as after downtime): the run
            # takes the time it was scheduled for, not the time it starts.
            window = ScheduleBackfill(
                start_at=CLOSE - timedelta(minutes=1),
                end_at=CLOSE + timedelta(minutes=1),
                overlap=ScheduleOverlapPolicy.ALLOW_ALL,
            )
            await handle.backfill(window)
            [result] = await scheduled_runs(dev_client, schedule_id, 1)
            assert (result.as_of, result.created, result.started) == (CLOSE, 3, 3)
            rows = await monthly_rows(pool)
            periods = {row["store_id"]: (row["period_start"], row["period_end"]) for row in rows}
            assert periods == {
                seeded.tokyo: (date(2025, 10, 1), date(2025, 10, 31)),
                london: (date(2025, 10, 1), date(2025, 10, 31)),
                seeded.new_york: (date(2025, 9, 1), date(2025, 9, 30)),
            }
            await all_done(dev_client, rows)
            await poll(lambda: len(smtp_sink.received) >= 3, what="three notices")

            # Triggered twice this month (a second apart: a triggered run's id carries its second):
            # one export per store, each started once.
            await handle.trigger(overlap=ScheduleOverlapPolicy.ALLOW_ALL)
            await asyncio.sleep(1.1)
            await handle.trigger(overlap=ScheduleOverlapPolicy.ALLOW_ALL)
            results = [r for r in await scheduled_runs(dev_client, schedule_id, 3) if r.as_of != CLOSE]
            assert sorted(r.created for r in results) == [0, 3]
            assert sum(r.started for r in results) == 3
            rows = await monthly_rows(pool)
            assert len(rows) == 6
            await all_done(dev_client, rows)
            await poll(lambda: len(smtp_sink.received) >= 6, what="six notices")

            # The close of 1 November 2025 again: it finds its exports done and starts nothing.
            await handle.backfill(window)
            results = await scheduled_runs(dev_client, schedule_id, 4)
            again = [r for r in results if r.as_of == CLOSE]
            assert sorted((r.created, r.started, r.done) for r in again) == [(0, 0, 3), (3, 3, 0)]
    finally:
        await handle.delete()

    for row in rows:
        query = f'WorkflowId="{export_workflow_id(row["id"])}"'
        export_runs = [execution async for execution in dev_client.list_workflows(query)]
        assert len(export_runs) == 1, export_runs
    statuses = await pool.fetch("SELECT status FROM financial_exports WHERE origin = 'monthly'")
    assert {row["status"] for row in statuses} == {"completed"}

    # One notice per export: three for the close of November 2025, three for this month's.
    assert len(smtp_sink.received) == 6
    close = [mail for mail in smtp_sink.received if "2025-" in mail.message["Subject"]]
    mails = {mail.recipients[0]: mail.message for mail in close}
    assert set(mails) == {"tokyo@petcare.test", "ny@petcare.test", NOTIFY}
    tokyo_text = mails["tokyo@petcare.test"].get_content()
    assert "2025-10" in mails["tokyo@petcare.test"]["Subject"]
    assert "2025-09" in mails["ny@petcare.test"]["Subject"]
    tokyo_export = next(row for row in rows if row["store_id"] == seeded.tokyo)
    files = await pool.fetchval("SELECT files FROM financial_exports WHERE id = $1", tokyo_export["id"])
    for file in _files(files):
        # Each file: name, rows, bytes, sha256 and remote path, as uploaded.
        assert file["name"] in tokyo_text
        assert file["sha256"] in tokyo_text
        assert file["remotePath"] in tokyo_text
        assert f"{file['bytes']} bytes" in tokyo_text
        local = sftp_server.root / file["remotePath"].lstrip("/")
        assert local.stat().st_size == file["bytes"]
    assert "2 rows" in tokyo_text  # TK-FIRST and TK-LAST are October's in Tokyo


def _files(value: Any) -> list[dict[str, Any]]:
    return list(json.loads(value) if isinstance(value, str) else value)


async def test_switched_off_the_schedule_is_removed(dev_client: Client, settings: Settings) -> None:
    off = settings.model_copy(update={"export": ExportSettings(monthly_enabled=False)})
    [declared] = [d for d in declared_schedules(off) if d.schedule_id == MONTHLY_FINANCIAL_EXPORT.key]
    schedule_id = f"{declared.schedule_id}-{uuid.uuid4().hex[:8]}"
    on = dataclasses.replace(declared, schedule_id=schedule_id, enabled=True)
    assert await apply_schedules(dev_client, [on], "q") == {schedule_id: "created"}
    off_declaration = dataclasses.replace(declared, schedule_id=schedule_id)
    assert await apply_schedules(dev_client, [off_declaration], "q") == {schedule_id: "deleted"}
    assert await apply_schedules(dev_client, [off_declaration], "q") == {schedule_id: "absent"}
