"""The stock reconciliation activities: which stores are due (once per local day, after 02:00), the
per-store report, the alert email."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from uuid import UUID

import asyncpg
from temporalio import activity

from activities.heartbeat import heartbeating, statement_timeout
from activities.stock.alerts import build_alert_email, prepare_email
from petcare import stock_repository as sql
from petcare.db import Connection
from petcare.errors import (
    DeliveryError,
    DeliveryMisconfigured,
    DeliveryRejected,
    ErrorType,
    application_error,
    delivery_failure,
)
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
    StoreTarget,
)
from petcare.timezones import InvalidTimeZone, parse_zone

FINISHED: tuple[AlertStatus, ...] = ("sent", "nothing", "no_recipient")
# Each store is reconciled once per local day, once this local time has passed.
RECONCILE_AFTER = time(2, 0)


def business_date(now: datetime, timezone: str) -> date:
    """The local day whose 02:00 most recently passed at `now` in `timezone`.

    Before 02:00 local it is still the previous day: a store reconciled late (the worker was
    down across midnight) catches up the day it missed instead of skipping it. On a day whose
    02:00 does not exist (clocks jump 02:00 → 03:00) local time reads 03:00 or later once the
    jump has happened, so that day's run starts right after the jump. Raises InvalidTimeZone.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    local = now.astimezone(parse_zone(timezone))
    today = local.date()
    return today if local.time() >= RECONCILE_AFTER else today - timedelta(days=1)


def due_business_date(now: datetime, timezone: str, last_scheduled: date | None) -> date | None:
    """The day to reconcile now, or None when the store's latest scheduled run already covers it."""
    current = business_date(now, timezone)
    if last_scheduled is not None and last_scheduled >= current:
        return None
    return current


def store_target(
    now: datetime, store_id: UUID, timezone: str, last_scheduled: date | None, *, force: bool
) -> StoreTarget | None:
    """What a run does with one store: reconcile it for a local day, or nothing. Raises InvalidTimeZone."""
    if force:  # a forced run always happens; it is dated, but never counts as the nightly one
        day = business_date(now, timezone)
        return StoreTarget(store_id=store_id, timezone=timezone, business_date=day, trigger="manual")
    due = due_business_date(now, timezone, last_scheduled)
    if due is None:
        return None
    return StoreTarget(store_id=store_id, timezone=timezone, business_date=due, trigger="schedule")


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
            stores = await sql.stores_page(
                connection, request.store_id, request.after_store_id, request.limit + 1
            )
        if request.store_id is not None and not stores and request.after_store_id is None:
            raise application_error(f"unknown store {request.store_id}", ErrorType.UNKNOWN_STORE)
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
                due.targets.append(target.model_copy(update={"full_recompute": request.full_recompute}))
        return due

    @activity.defn(name="stock_reconcile_store")
    async def reconcile_store(self, request: ReconcileRequest) -> ReconciliationSummary:
        """Computed vs recorded stock of one store, persisted as one report (idempotent per run)."""
        info = activity.info()
        if info.workflow_id is None or info.workflow_run_id is None:
            raise application_error("reconcile_store must run inside a workflow", ErrorType.NOT_IN_WORKFLOW)
        # The ticker stops with the statement, also when Temporal cancels the activity.
        async with heartbeating():
            summary = await sql.reconcile(
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
            run = await sql.lock_run(connection, request.reconciliation_id)
            if run is None:
                raise application_error(
                    f"unknown reconciliation {request.reconciliation_id}", ErrorType.UNKNOWN_RECONCILIATION
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
        except DeliveryError as error:
            failure = delivery_failure(error)
            if isinstance(error, DeliveryRejected):  # this address refuses it: the store's needs fixing
                await sql.release(self._pool, run.id, "failed", failure.message)
            elif isinstance(error, DeliveryMisconfigured):  # our login or sender: no address is at fault
                await sql.release(self._pool, run.id, "pending", failure.message)
            # Unavailable: retried, and the reservation holds meanwhile.
            raise failure from None
        await sql.mark_sent(self._pool, run.id)
        activity.logger.info(
            "stock alert %s sent for store %s: %d item(s)", email.message_id, run.store_id, len(email.alerts)
        )
        async with self._pool.acquire() as connection:
            return await _outcome(connection, run.id, "sent", email.message_id)


async def _outcome(
    connection: Connection, reconciliation_id: UUID, status: AlertStatus, message_id: str | None
) -> AlertOutcome:
    opened, recovered = await sql.counts(connection, reconciliation_id)
    return AlertOutcome(status=status, new_alerts=opened, resolved=recovered, message_id=message_id)
