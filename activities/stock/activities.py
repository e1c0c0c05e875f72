"""The stock reconciliation activities: which stores are due, the per-store report, the alert email."""

from __future__ import annotations

from uuid import UUID

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeat import heartbeating, statement_timeout
from activities.stock import alert_repository as alerts_sql
from activities.stock import alert_reservations as reservations
from activities.stock import repository
from activities.stock.alert_plan import prepare_email
from activities.stock.due import store_target
from activities.stock.email import build_alert_email
from petcare.db import Connection
from petcare.errors import DeliveryMisconfigured, DeliveryRejected, DeliveryUnavailable
from petcare.mail import Mailer
from petcare.models.stock import (
    AlertOutcome,
    AlertRequest,
    AlertStatus,
    DueStores,
    DueStoresRequest,
    ReconcileRequest,
    ReconciliationSummary,
    StoreOutcome,
)
from petcare.timezones import InvalidTimeZone

FINISHED: tuple[AlertStatus, ...] = ("sent", "nothing", "no_recipient")


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
        """One page of stores: every one if forced, else those past local 02:00 without that day's run."""
        async with self._pool.acquire() as connection:
            # One more than a page: whether a next page exists, without an empty last run.
            stores = await repository.stores_page(
                connection, request.store_id, request.after_store_id, request.limit + 1
            )
        if request.store_id is not None and not stores and request.after_store_id is None:
            raise ApplicationError(
                f"unknown store {request.store_id}", type="UnknownStore", non_retryable=True
            )
        more, stores = len(stores) > request.limit, stores[: request.limit]
        due = DueStores(next_after=stores[-1][0] if more else None)
        for store_id, timezone, last_scheduled in stores:
            try:
                target = store_target(request.now, store_id, timezone, last_scheduled, force=request.force)
            except InvalidTimeZone as error:
                failed = StoreOutcome(
                    store_id=store_id, business_date=None, status="failed", error=str(error)
                )
                due.invalid.append(failed)
                continue
            if target is not None:
                due.targets.append(target)
        return due

    @activity.defn(name="stock_reconcile_store")
    async def reconcile_store(self, request: ReconcileRequest) -> ReconciliationSummary:
        """Computed vs recorded stock of one store, persisted as one report (idempotent per run)."""
        info = activity.info()
        if info.workflow_id is None or info.workflow_run_id is None:
            raise ApplicationError("reconcile_store must run inside a workflow", non_retryable=True)
        # The ticker stops with the statement, also when Temporal cancels the activity.
        async with heartbeating():
            summary = await repository.reconcile(
                self._pool,
                request.target,
                info.workflow_id,
                info.workflow_run_id,
                aggregate_timeout=statement_timeout(),
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
        """Open/resolve alerts against the report and email what is new, at most once per alert."""
        async with self._pool.acquire() as connection, connection.transaction():
            run = await alerts_sql.lock_run(connection, request.reconciliation_id)
            if run is None:
                raise ApplicationError(
                    f"unknown reconciliation {request.reconciliation_id}",
                    type="UnknownReconciliation",
                    non_retryable=True,
                )
            if run.alert_status in FINISHED:  # an earlier attempt finished
                return await _outcome(connection, run.id, run.alert_status, run.message_id)
            email = await prepare_email(
                connection, run, from_address=self._from_address, fallback_recipient=self._fallback_recipient
            )
            if isinstance(email, str):
                return await _outcome(connection, run.id, email, None)
        try:
            # Built inside: a store email holding several addresses is this alert's fault, recorded
            # like an address the server refuses (UnsendableMessage is a DeliveryRejected).
            message = build_alert_email(
                from_address=self._from_address,
                recipient=email.recipient,
                store_name=run.store_name,
                business_date=run.business_date,
                reconciliation_id=run.id,
                message_id=email.message_id,
                alerts=email.alerts,
            )
            await self._mailer.send(message)
        except DeliveryRejected as error:  # this address refuses it: the store's address needs fixing
            await reservations.release(self._pool, run.id, "failed", str(error))
            raise ApplicationError(str(error), type="MailRejected", non_retryable=True) from None
        except DeliveryMisconfigured as error:  # our login or sender: no address is at fault
            await reservations.release(self._pool, run.id, "pending", f"mail configuration: {error}")
            raise ApplicationError(
                f"mail configuration: {error}", type="MailMisconfigured", non_retryable=True
            ) from None
        except DeliveryUnavailable as error:  # retried; the reservation holds meanwhile
            raise ApplicationError(str(error), type="MailUnavailable") from None
        await reservations.mark_sent(self._pool, run.id, [alert.id for alert in email.alerts])
        activity.logger.info(
            "stock alert %s sent for store %s: %d item(s)", email.message_id, run.store_id, len(email.alerts)
        )
        async with self._pool.acquire() as connection:
            return await _outcome(connection, run.id, "sent", email.message_id)


async def _outcome(
    connection: Connection, reconciliation_id: UUID, status: AlertStatus, message_id: str | None
) -> AlertOutcome:
    opened, recovered = await alerts_sql.counts(connection, reconciliation_id)
    return AlertOutcome(status=status, new_alerts=opened, resolved=recovered, message_id=message_id)
