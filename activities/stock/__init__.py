"""Stock reconciliation activities: which stores are due, the per-store report, the alert email."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar
from uuid import UUID

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.stock import alert_repository as alerts_sql
from activities.stock import repository
from activities.stock.due import due_business_date, valid_timezone
from activities.stock.email import alert_message_id, build_alert_email
from petcare.db import Connection
from petcare.mail import Mailer, MailRejected, MailUnavailable
from petcare.models.stock import (
    AlertOutcome,
    AlertRequest,
    AlertStatus,
    DueStores,
    DueStoresRequest,
    ReconcileRequest,
    ReconciliationSummary,
    StoreOutcome,
    StoreTarget,
)

T = TypeVar("T")
HEARTBEAT_EVERY = 5.0  # seconds; call sites use a heartbeat timeout well above this


async def _heartbeating(work: Awaitable[T]) -> T:
    """Await one long statement while telling Temporal the worker is still alive."""
    task = asyncio.ensure_future(work)
    while True:
        done, _ = await asyncio.wait({task}, timeout=HEARTBEAT_EVERY)
        if done:
            return task.result()
        activity.heartbeat()


class StockActivities:
    def __init__(
        self, pool: asyncpg.Pool, mailer: Mailer, *, from_address: str, fallback_recipient: str | None
    ) -> None:
        self._pool = pool
        self._mailer = mailer
        self._from_address = from_address
        # Stores without an email address get their alerts here (PETCARE_OPS_EMAIL), if set.
        self._fallback_recipient = fallback_recipient

    @activity.defn(name="stock_due_stores")
    async def due_stores(self, request: DueStoresRequest) -> DueStores:
        """Stores to reconcile now: past local 02:00 without a run for that day, or all those forced."""
        async with self._pool.acquire() as connection:
            stores = await repository.stores_with_last_run(connection, request.store_id)
        if request.store_id is not None and not stores:
            raise ApplicationError(
                f"unknown store {request.store_id}", type="UnknownStore", non_retryable=True
            )
        due = DueStores()
        for store_id, timezone, last_scheduled in stores:
            if not valid_timezone(timezone):
                due.invalid.append(
                    StoreOutcome(
                        store_id=store_id,
                        business_date=None,
                        status="failed",
                        error=f"store time zone {timezone!r} is not an IANA time zone",
                    )
                )
            elif request.force or request.store_id is not None:
                # A manual run always happens; it is dated, but never counts as the nightly one.
                day = due_business_date(request.now, timezone, None)
                assert day is not None
                due.targets.append(
                    StoreTarget(store_id=store_id, timezone=timezone, business_date=day, trigger="manual")
                )
            elif (day := due_business_date(request.now, timezone, last_scheduled)) is not None:
                due.targets.append(
                    StoreTarget(store_id=store_id, timezone=timezone, business_date=day, trigger="schedule")
                )
        return due

    @activity.defn(name="stock_reconcile_store")
    async def reconcile_store(self, request: ReconcileRequest) -> ReconciliationSummary:
        """Computed vs recorded stock of one store, persisted as one report (idempotent per run)."""
        run_id = activity.info().workflow_run_id
        if run_id is None:  # only standalone activities lack one; this one always runs in a workflow
            raise ApplicationError("reconcile_store must run inside a workflow", non_retryable=True)
        summary = await _heartbeating(
            repository.reconcile(self._pool, request.target, request.workflow_id, run_id)
        )
        activity.logger.info(
            "stock of store %s for %s: %d products, %d discrepancies, %d low (report %s)",
            request.target.store_id,
            request.target.business_date,
            summary.products_checked,
            summary.discrepancies,
            summary.low_stock,
            summary.reconciliation_id or "already done by another run",
        )
        return summary

    @activity.defn(name="stock_alert_store")
    async def alert_store(self, request: AlertRequest) -> AlertOutcome:
        """Open/resolve alerts against the report and email what is new, at most once per run."""
        async with self._pool.acquire() as connection, connection.transaction():
            run = await alerts_sql.lock_run(connection, request.reconciliation_id)
            if run is None:
                raise ApplicationError(
                    f"unknown reconciliation {request.reconciliation_id}",
                    type="UnknownReconciliation",
                    non_retryable=True,
                )
            if run.alert_status in ("sent", "nothing", "no_recipient"):  # an earlier attempt finished
                return await self._outcome(connection, run.id, run.alert_status, run.message_id)
            if not run.diffed:
                if run.superseded:  # a later run of this store already owns the alerts
                    await alerts_sql.set_status(connection, run.id, "nothing")
                    return await self._outcome(connection, run.id, "nothing", None)
                await alerts_sql.diff_alerts(connection, run)
            pending = await alerts_sql.pending_alerts(connection, run.store_id)
            recipient = run.store_email or self._fallback_recipient
            if not pending or recipient is None:
                status: AlertStatus = "nothing" if not pending else "no_recipient"
                await alerts_sql.set_status(connection, run.id, status)
                return await self._outcome(connection, run.id, status, None)
            message_id = run.message_id or alert_message_id(run.id, self._from_address)
            # Recorded before sending: a retry resends the same set under the same Message-ID.
            await alerts_sql.set_status(
                connection, run.id, "sending", message_id=message_id, recipient=recipient
            )

        message = build_alert_email(
            from_address=self._from_address,
            recipient=recipient,
            store_name=run.store_name,
            business_date=run.business_date,
            reconciliation_id=run.id,
            message_id=message_id,
            alerts=pending,
        )
        try:
            await self._mailer.send(message)
        except MailRejected as error:
            await alerts_sql.set_status(self._pool, run.id, "failed", error=str(error))
            raise ApplicationError(str(error), type="MailRejected", non_retryable=True) from None
        except MailUnavailable as error:
            raise ApplicationError(str(error), type="MailUnavailable") from None
        await alerts_sql.mark_sent(self._pool, run.id, [alert.id for alert in pending])
        activity.logger.info(
            "stock alert %s sent for store %s: %d item(s)", message_id, run.store_id, len(pending)
        )
        async with self._pool.acquire() as connection:
            return await self._outcome(connection, run.id, "sent", message_id)

    @staticmethod
    async def _outcome(
        connection: Connection,
        reconciliation_id: UUID,
        status: AlertStatus,
        message_id: str | None,
    ) -> AlertOutcome:
        opened, recovered = await alerts_sql.counts(connection, reconciliation_id)
        return AlertOutcome(status=status, new_alerts=opened, resolved=recovered, message_id=message_id)
