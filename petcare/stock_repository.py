"""All of stock reconciliation's SQL: which stores are due, the set-based per-store report, the
alerts diffed against it and the reservations of their emails, and the reports as the API reads them.

An alert is emailed once the run holding it (`notified_by`) has sent its email: that run's
`alert_status` is 'sent' (migration 0015; alerts emailed before also carry `notified_at`). It is
pending while open and not emailed. A run reserves the pending alerts no other live run holds
(`notified_by` = the run, until `reserved_until`), emails them, then records the send on its own
report row alone: the alert rows are written once, when opened (or again when reserved by a later
run). A run whose email is refused releases its reservation; one that stops retrying lets it lapse.
Either way the next run lists those alerts again; a sent run's alerts are never taken over.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import NamedTuple
from uuid import UUID

import asyncpg

from petcare.db import Connection
from petcare.errors import ErrorType, application_error
from petcare.models.stock import AlertStatus, ReconciliationSummary, StoreTarget

# --- The reconciliation: which stores are due, and one store's report ---

# One page of stores in id order (a run's share of a chain), each with its latest scheduled day.
STORES_PAGE = """
SELECT s.id, s.timezone,
       (SELECT max(r.business_date) FROM stock_reconciliations r
         WHERE r.store_id = s.id AND r.trigger = 'schedule') AS last_scheduled
  FROM stores s
 WHERE ($1::uuid IS NULL OR s.id = $1) AND ($2::uuid IS NULL OR s.id > $2)
 ORDER BY s.id
 LIMIT $3
"""

# ON CONFLICT covers both keys: a retry of this run (workflow run, store) and a second
# scheduled run for the same store and local day. The caller tells them apart afterwards.
INSERT_RUN = """
INSERT INTO stock_reconciliations
       (store_id, business_date, trigger, workflow_id, workflow_run_id, started_at, finished_at,
        products_checked, discrepancy_count, low_stock_count)
VALUES ($1, $2, $3, $4, $5, now(), now(), 0, 0, 0)
ON CONFLICT DO NOTHING
RETURNING id
"""

FIND_RUN = """
SELECT id, products_checked, discrepancy_count, low_stock_count
  FROM stock_reconciliations WHERE workflow_run_id = $1 AND store_id = $2
"""

# --- Computed stock: checkpoint sums plus the movements since, or (full) every movement ---
#
# stock_checkpoint_totals holds, per product, the sum of its movements with id <= the checkpoint's
# `upto` (migration 0013). A report's computed stock is that sum plus the product's movements above
# `upto`: the same number the full aggregate gives at that snapshot, for the cost of the movements
# since the checkpoint. `upto` only moves over ids no transaction can still commit (ADVANCE below),
# so movements committed out of id order are never skipped nor counted twice.

# The store's products with their stock; $4 is the checkpoint's `upto`, read under SHARE_CHECKPOINT
# in the same transaction (as a parameter, so the planner sees how few ids lie above it and takes
# the primary key's range). $3 true: the full aggregate over every movement, which also yields each
# product's sum up to the checkpoint (rebuilt into the totals by COMPUTE_AND_STORE).
_COMPUTED = """
WITH recent AS (
    SELECT m.product_id, sum(m.quantity) AS quantity
      FROM stock_movements m JOIN products p ON p.id = m.product_id AND p.store_id = $2
     WHERE NOT $3 AND m.id > $4
     GROUP BY m.product_id
), everything AS (
    SELECT m.product_id, sum(m.quantity) AS quantity,
           sum(m.quantity) FILTER (WHERE m.id <= $4) AS upto_quantity
      FROM stock_movements m JOIN products p ON p.id = m.product_id AND p.store_id = $2
     WHERE $3
     GROUP BY m.product_id
), computed AS MATERIALIZED (
    SELECT p.id, p.sku, p.name, p.stock_quantity AS recorded, p.low_stock_threshold AS threshold,
           CASE WHEN $3 THEN COALESCE(e.quantity, 0)
                ELSE COALESCE(t.total, 0) + COALESCE(r.quantity, 0) END AS computed,
           COALESCE(e.upto_quantity, 0) AS upto_total
      FROM products p
      LEFT JOIN stock_checkpoint_totals t ON NOT $3 AND t.product_id = p.id
      LEFT JOIN recent r ON r.product_id = p.id
      LEFT JOIN everything e ON e.product_id = p.id
     WHERE p.store_id = $2
)"""

# The report in one statement: the computed stock, the flagged lines, the counts; with $3 (full)
# the store's checkpoint sums are rebuilt from the same scan.
COMPUTE_AND_STORE = (
    _COMPUTED
    + """, flagged AS (
    INSERT INTO stock_reconciliation_lines
           (reconciliation_id, product_id, sku, name, recorded, computed, threshold, discrepancy, low_stock)
    SELECT $1, id, sku, name, recorded, computed, threshold, computed <> recorded, computed <= threshold
      FROM computed
     WHERE computed <> recorded OR computed <= threshold
    RETURNING discrepancy, low_stock
), rebuilt AS (
    INSERT INTO stock_checkpoint_totals (product_id, total)
    SELECT id, upto_total FROM computed WHERE $3
    ON CONFLICT (product_id) DO UPDATE SET total = EXCLUDED.total
)
UPDATE stock_reconciliations
   SET products_checked = (SELECT count(*) FROM computed),
       discrepancy_count = (SELECT count(*) FROM flagged WHERE discrepancy),
       low_stock_count = (SELECT count(*) FROM flagged WHERE low_stock),
       checkpoint_upto = CASE WHEN $3 THEN NULL ELSE $4::bigint END,
       finished_at = clock_timestamp()
 WHERE id = $1
RETURNING id, products_checked, discrepancy_count, low_stock_count
"""
)

# Moving the checkpoint, in its own short transaction before a report. The row lock serialises
# the stores of a run (one advances, the others skip it: SKIP LOCKED); a report holds it in share
# mode, so `upto` and the sums cannot move between reading `upto` and the aggregate.
LOCK_CHECKPOINT = """
SELECT upto, candidate_upto,
       candidate_xmax IS NOT NULL AND pg_snapshot_xmin(pg_current_snapshot()) >= candidate_xmax AS settled
  FROM stock_checkpoint FOR UPDATE SKIP LOCKED
"""
SHARE_CHECKPOINT = "SELECT upto FROM stock_checkpoint FOR SHARE"

# Every movement in (upto, candidate] has committed or never will: folded into the sums.
FOLD = """
WITH folded AS (
    INSERT INTO stock_checkpoint_totals (product_id, total)
    SELECT product_id, sum(quantity) FROM stock_movements WHERE id > $1 AND id <= $2 GROUP BY product_id
    ON CONFLICT (product_id) DO UPDATE SET total = stock_checkpoint_totals.total + EXCLUDED.total
)
UPDATE stock_checkpoint SET upto = $2, candidate_upto = NULL, candidate_xmax = NULL, advanced_at = now()
"""

# The next candidate: the highest id visible now, and the xmax of a snapshot taken no earlier.
# A movement with a lower id that is not visible belongs to a transaction in progress now (its
# xid below that xmax): the candidate waits until all of those have ended. Kept while it waits,
# so a steady stream of new transactions cannot postpone it forever. (One gap remains in theory:
# a writer that took its id with nextval() but had no transaction id yet at this snapshot and
# stays open until the next run; with the id's default, both happen within one INSERT.)
PROPOSE = """
UPDATE stock_checkpoint
   SET candidate_upto = m.top, candidate_xmax = pg_snapshot_xmax(pg_current_snapshot())
  FROM (SELECT max(id) AS top FROM stock_movements) m
 WHERE candidate_upto IS NULL AND m.top > upto
"""


async def advance_checkpoint(connection: Connection, *, timeout: float) -> None:
    """Fold the settled candidate into the sums, then propose the next one; skipped while another
    run does it. A night's fold reads that day's movements (the first one reads them all)."""
    async with connection.transaction():
        row = await connection.fetchrow(LOCK_CHECKPOINT)
        if row is None:
            return
        if row["settled"] and row["candidate_upto"] > row["upto"]:
            await connection.execute(FOLD, row["upto"], row["candidate_upto"], timeout=timeout)
        await connection.execute(PROPOSE)


async def stores_page(
    connection: Connection, store_id: UUID | None, after: UUID | None, limit: int
) -> list[tuple[UUID, str, date | None]]:
    rows = await connection.fetch(STORES_PAGE, store_id, after, limit)
    return [(row["id"], row["timezone"], row["last_scheduled"]) for row in rows]


def _summary(row: asyncpg.Record) -> ReconciliationSummary:
    return ReconciliationSummary(
        reconciliation_id=row["id"],
        products_checked=row["products_checked"],
        discrepancies=row["discrepancy_count"],
        low_stock=row["low_stock_count"],
    )


async def reconcile(
    pool: asyncpg.Pool,
    target: StoreTarget,
    workflow_id: str,
    workflow_run_id: str,
    *,
    aggregate_timeout: float,
) -> ReconciliationSummary:
    """Compute and persist one store's report in one transaction; a retry returns the first one.

    `workflow_id` / `workflow_run_id` name the per-store child workflow execution making it. The
    aggregate may run `aggregate_timeout` seconds: a large store's takes far longer than the
    pool's command timeout, which is sized for short statements.
    """
    async with pool.acquire() as connection:
        if not target.full_recompute:
            await advance_checkpoint(connection, timeout=aggregate_timeout)
        return await _report(connection, target, workflow_id, workflow_run_id, aggregate_timeout)


async def _report(
    connection: Connection,
    target: StoreTarget,
    workflow_id: str,
    workflow_run_id: str,
    aggregate_timeout: float,
) -> ReconciliationSummary:
    async with connection.transaction():
        run_id = await connection.fetchval(
            INSERT_RUN,
            target.store_id,
            target.business_date,
            target.trigger,
            workflow_id,
            workflow_run_id,
        )
        if run_id is None:
            existing = await connection.fetchrow(FIND_RUN, workflow_run_id, target.store_id)
            if existing is None:  # another scheduled run already reconciled this local day
                return ReconciliationSummary(reconciliation_id=None)
            return _summary(existing)
        upto = await connection.fetchval(SHARE_CHECKPOINT)
        try:
            row = await connection.fetchrow(
                COMPUTE_AND_STORE,
                run_id,
                target.store_id,
                target.full_recompute,
                upto,
                timeout=aggregate_timeout,
            )
        except TimeoutError:
            # asyncpg has cancelled the statement; the transaction rolls back. Retryable: the next
            # attempt may find a quieter database, and the operator learns which budget to raise.
            raise application_error(
                f"stock aggregate of store {target.store_id} ran past its statement timeout of "
                f"{aggregate_timeout:g} s (90 % of the reconcile activity's attempt budget)",
                ErrorType.STATEMENT_TIMEOUT,
            ) from None
        if row is None:  # the row inserted above, in this transaction: only a broken database loses it
            raise application_error(
                f"reconciliation {run_id} vanished inside its own transaction", ErrorType.RECONCILIATION_LOST
            )
        return _summary(row)


# --- Alerts: a store's alert lock, and diffing a report against the open alerts ---


@dataclass(frozen=True)
class RunForAlerts:
    id: UUID
    store_id: UUID
    store_name: str
    store_email: str | None
    business_date: date
    alert_status: AlertStatus
    diffed: bool
    superseded: bool  # a later reconciliation of the store already diffed its alerts
    message_id: str | None
    recipient: str | None  # who the alert email went (or is going) to, once decided


# Serialises alert work per store (two runs never open the same alert twice, nor diff an older
# report over a newer one). Taken before anything about the run is read.
LOCK_STORE = """
SELECT pg_advisory_xact_lock(hashtextextended('stock-alerts:' || store_id, 0))
  FROM stock_reconciliations WHERE id = $1
"""

READ_RUN = """
SELECT r.id, r.store_id, s.name AS store_name, s.email AS store_email, r.business_date,
       r.alert_status, r.alerts_diffed_at IS NOT NULL AS diffed, r.alert_message_id AS message_id,
       r.alert_recipient AS recipient,
       EXISTS (SELECT 1 FROM stock_reconciliations later
                WHERE later.store_id = r.store_id AND later.alerts_diffed_at IS NOT NULL
                  AND later.finished_at > r.finished_at) AS superseded
  FROM stock_reconciliations r JOIN stores s ON s.id = r.store_id
 WHERE r.id = $1
   FOR UPDATE OF r
"""

# What this report flags, one row per (product, kind) with the numbers that kind is about.
_CURRENT = """
WITH current_flags AS (
    SELECT product_id, 'discrepancy'::text AS kind, recorded, computed, NULL::integer AS threshold
      FROM stock_reconciliation_lines WHERE reconciliation_id = $1 AND discrepancy
    UNION ALL
    SELECT product_id, 'low_stock', NULL, computed, threshold
      FROM stock_reconciliation_lines WHERE reconciliation_id = $1 AND low_stock
)
"""

# Open alerts no longer flagged with the same numbers close: recovered, or changed (a new alert
# with the new numbers is opened by OPEN_NEW right after, in the same transaction).
RESOLVE_STALE = (
    _CURRENT
    + """
UPDATE stock_alerts a
   SET resolved_at = now(), resolved_by = $1,
       resolution = CASE WHEN EXISTS (SELECT 1 FROM current_flags c
                                       WHERE c.product_id = a.product_id AND c.kind = a.kind)
                         THEN 'changed' ELSE 'recovered' END
 WHERE a.store_id = $2 AND a.resolved_at IS NULL
   AND NOT EXISTS (SELECT 1 FROM current_flags c
                    WHERE c.product_id = a.product_id AND c.kind = a.kind
                      AND c.recorded IS NOT DISTINCT FROM a.recorded AND c.computed = a.computed
                      AND c.threshold IS NOT DISTINCT FROM a.threshold)
"""
)

# $3 (an interval, or NULL when the run has nobody to email): the new alerts are reserved for this
# run's email as they are written, rather than updated once more by RESERVE.
OPEN_NEW = (
    _CURRENT
    + """
INSERT INTO stock_alerts
       (store_id, product_id, kind, recorded, computed, threshold, opened_by, notified_by, reserved_until)
SELECT $2, c.product_id, c.kind, c.recorded, c.computed, c.threshold, $1,
       CASE WHEN $3::interval IS NOT NULL THEN $1::uuid END, now() + $3::interval
  FROM current_flags c
-- Still open (unchanged numbers): its row stays. The open-alert unique index decides, with no
-- anti-join to plan: on a table the planner believes empty, a nested-loop probe per row rescanned
-- the rows the statement itself was inserting (3 s for 20 000 alerts, quadratic).
ON CONFLICT (store_id, product_id, kind) WHERE resolved_at IS NULL DO NOTHING
"""
)

COUNTS = """
SELECT count(*) FILTER (WHERE opened_by = $1) AS opened,
       count(*) FILTER (WHERE resolved_by = $1 AND resolution = 'recovered') AS recovered
  FROM stock_alerts WHERE opened_by = $1 OR resolved_by = $1
"""


async def lock_run(connection: Connection, reconciliation_id: UUID) -> RunForAlerts | None:
    """Take the store's alert lock, then read the run: what it sees cannot change until commit."""
    if await connection.fetchrow(LOCK_STORE, reconciliation_id) is None:
        return None
    row = await connection.fetchrow(READ_RUN, reconciliation_id)
    return None if row is None else RunForAlerts(**dict(row))


async def diff_alerts(
    connection: Connection, run: RunForAlerts, reserve_for: timedelta | None = None
) -> None:
    """Resolve what no longer holds, open what is new (reserved for `reserve_for` if given)."""
    await connection.execute(RESOLVE_STALE, run.id, run.store_id)
    await connection.execute(OPEN_NEW, run.id, run.store_id, reserve_for)


async def counts(connection: Connection, reconciliation_id: UUID) -> tuple[int, int]:
    """(alerts opened, alerts recovered) by this reconciliation."""
    row = await connection.fetchrow(COUNTS, reconciliation_id)
    assert row is not None  # an aggregate without GROUP BY answers exactly one row
    return row["opened"], row["recovered"]


# --- Alert emails: reserving a store's pending alerts for one run, then recording the send ---


class ReservedAlert(NamedTuple):
    """One line of an alert email (a tuple: an all-flagged store's email holds 20 000)."""

    kind: str
    sku: str
    name: str
    recorded: int | None
    computed: int
    threshold: int | None


# An alert `a` is emailed: the run holding it has sent its email. (A released alert has no holder;
# a lapsed one's holder never sent.)
_EMAILED = """EXISTS (SELECT 1 FROM stock_reconciliations sender
                WHERE sender.id = a.notified_by AND sender.alert_status = 'sent')"""

# The pending alerts of earlier runs that no live run holds (those this run opened are reserved
# already, by OPEN_NEW); the email then lists everything the run holds (RESERVED). A sent run's
# alerts keep their lapsed `reserved_until`: the run's status says they went out.
RESERVE = f"""
UPDATE stock_alerts a
   SET notified_by = $1, reserved_until = now() + $3::interval
 WHERE a.store_id = $2 AND a.resolved_at IS NULL
   AND (a.notified_by IS NULL OR a.reserved_until < now()) AND NOT {_EMAILED}
"""

# What the run holds (also what a retry resends; only read before the run's email is sent), worst
# first within a kind (the email lists the head of each): the largest difference, the deepest
# under its threshold.
RESERVED = """
SELECT a.kind, p.sku, p.name, a.recorded, a.computed, a.threshold  -- ReservedAlert's fields, in order
  FROM stock_alerts a JOIN products p ON p.id = a.product_id
 WHERE a.notified_by = $1
 ORDER BY a.kind, abs(a.computed - coalesce(a.recorded, a.computed)) DESC,
          a.computed - coalesce(a.threshold, 0), p.sku
"""

PENDING_COUNT = f"""
SELECT count(*) FROM stock_alerts a WHERE a.store_id = $1 AND a.resolved_at IS NULL AND NOT {_EMAILED}
"""

SET_STATUS = """
UPDATE stock_reconciliations
   SET alerts_diffed_at = coalesce(alerts_diffed_at, now()), alert_status = $2,
       alert_message_id = coalesce($3, alert_message_id), alert_recipient = coalesce($4, alert_recipient),
       alert_error = NULL
 WHERE id = $1
"""

# Every alert the run holds went out in its one email (the same set RESERVED reads on a retry):
# the run's status says so for all of them (_EMAILED), not a write per alert.
MARK_SENT = """
UPDATE stock_reconciliations SET alert_status = 'sent', alert_sent_at = now(), alert_error = NULL
 WHERE id = $1
"""

# Only before a send: a run whose email went out never releases.
RELEASE = """
WITH released AS (
    UPDATE stock_alerts SET notified_by = NULL, reserved_until = NULL WHERE notified_by = $1
)
UPDATE stock_reconciliations SET alert_status = $2, alert_error = $3 WHERE id = $1
"""


async def reserve(
    connection: Connection, reconciliation_id: UUID, store_id: UUID, lease: timedelta
) -> list[ReservedAlert]:
    """The store's pending alerts not held by another live run, now held by this one."""
    await connection.execute(RESERVE, reconciliation_id, store_id, lease)
    return await reserved(connection, reconciliation_id)


async def reserved(connection: Connection, reconciliation_id: UUID) -> list[ReservedAlert]:
    rows = await connection.fetch(RESERVED, reconciliation_id)
    return list(map(ReservedAlert._make, rows))


async def pending_count(connection: Connection, store_id: UUID) -> int:
    return int(await connection.fetchval(PENDING_COUNT, store_id))


async def set_status(
    connection: Connection,
    reconciliation_id: UUID,
    status: AlertStatus,
    *,
    message_id: str | None = None,
    recipient: str | None = None,
) -> None:
    await connection.execute(SET_STATUS, reconciliation_id, status, message_id, recipient)


async def mark_sent(pool: asyncpg.Pool, reconciliation_id: UUID) -> None:
    await pool.execute(MARK_SENT, reconciliation_id)


async def release(pool: asyncpg.Pool, reconciliation_id: UUID, status: AlertStatus, error: str) -> None:
    """The email will not go out in this run: its alerts are free for the next one."""
    await pool.execute(RELEASE, reconciliation_id, status, error)


# --- Reports as the API reads them (no activity code involved) ---

_REPORT = """
SELECT r.id, r.store_id, r.business_date, r.trigger, r.workflow_id, r.workflow_run_id, r.started_at,
       r.finished_at, r.products_checked, r.discrepancy_count, r.low_stock_count, r.alert_status,
       r.alert_sent_at
  FROM stock_reconciliations r"""

BY_ID = f"""{_REPORT}
 WHERE r.id = $1
"""

# Newest first; with $2 only each store's latest one.
RECENT = f"""{_REPORT}
 WHERE ($1::uuid IS NULL OR r.store_id = $1)
   AND (NOT $2 OR r.id IN (SELECT DISTINCT ON (l.store_id) l.id
                             FROM stock_reconciliations l
                            WHERE $1::uuid IS NULL OR l.store_id = $1
                            ORDER BY l.store_id, l.finished_at DESC))
   AND ($4::timestamptz IS NULL OR (r.finished_at, r.id) < ($4, $5::uuid))
 ORDER BY r.finished_at DESC, r.id DESC
 LIMIT $3
"""

LINES = """
SELECT reconciliation_id, product_id, sku, name, recorded, computed, computed - recorded AS difference,
       threshold, discrepancy, low_stock
  FROM stock_reconciliation_lines
 WHERE reconciliation_id = ANY($1::uuid[])
 ORDER BY sku
"""


async def report(connection: Connection, reconciliation_id: UUID) -> dict[str, object] | None:
    row = await connection.fetchrow(BY_ID, reconciliation_id)
    if row is None:
        return None
    return (await _with_lines(connection, [row]))[0]


async def recent_reports(
    connection: Connection,
    store_id: UUID | None,
    *,
    latest_only: bool,
    limit: int,
    after: tuple[datetime, UUID] | None = None,
) -> list[dict[str, object]]:
    """Newest first; `after` is the (finished_at, id) of the previous page's last report."""
    after_time, after_id = after or (None, None)
    rows = await connection.fetch(RECENT, store_id, latest_only, limit, after_time, after_id)
    return await _with_lines(connection, rows)


async def _with_lines(connection: Connection, rows: list[asyncpg.Record]) -> list[dict[str, object]]:
    """Each report with its flagged lines split into discrepancies and low-stock items."""
    lines = await connection.fetch(LINES, [row["id"] for row in rows])
    by_report: dict[UUID, list[asyncpg.Record]] = defaultdict(list)
    for line in lines:
        by_report[line["reconciliation_id"]].append(line)
    reports = []
    for row in rows:
        flagged = by_report[row["id"]]
        reports.append(
            {
                **dict(row),
                "discrepancies": [dict(line) for line in flagged if line["discrepancy"]],
                "low_stock": [dict(line) for line in flagged if line["low_stock"]],
            }
        )
    return reports
