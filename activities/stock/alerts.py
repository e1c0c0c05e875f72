"""A run's stock alert email: what it holds, decided under the store's alert lock (a retry's, a new
one, or none), and the message itself: a summary, the worst items of each kind, and past that the
full list as a CSV attachment (a store whose every product is flagged gets a readable email)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, timedelta
from email.message import EmailMessage
from uuid import UUID

from petcare import stock_repository as sql
from petcare.db import Connection
from petcare.mail import compose, stable_message_id
from petcare.models.stock import ALERT_DEADLINE, AlertStatus

# A run holds the alerts it emails past its last possible attempt (plus slack for clock skew
# between Temporal and PostgreSQL), so a lapsed reservation never belongs to a live sender.
RESERVATION = ALERT_DEADLINE + timedelta(minutes=5)
# An email listing thousands of products helps nobody: the worst few of each kind are listed, every
# item is in the attached CSV and in the report the API serves.
MAX_LISTED = 20
REPORT_PATH = "/api/v1/stock-reconciliations/{id}"
CSV_COLUMNS = ("kind", "sku", "name", "recorded", "computed", "difference", "threshold")


@dataclass(frozen=True)
class AlertEmail:
    recipient: str
    message_id: str
    alerts: list[sql.ReservedAlert]


async def prepare_email(
    connection: Connection, run: sql.RunForAlerts, *, from_address: str, fallback_recipient: str | None
) -> AlertEmail | AlertStatus:
    """The email to send, recorded as `sending` before it goes; or the final status when there is none."""
    if run.alert_status == "sending" and run.recipient and run.message_id:
        # A retry resends what the first attempt reserved, to the same address, same Message-ID.
        alerts = await sql.reserved(connection, run.id)
        if alerts:
            return AlertEmail(run.recipient, run.message_id, alerts)
        return await _final(connection, run, "nothing")
    recipient = run.store_email or fallback_recipient
    if not run.diffed:
        if run.superseded:  # a later run of this store already owns the alerts
            return await _final(connection, run, "nothing")
        await sql.diff_alerts(connection, run, reserve_for=RESERVATION if recipient else None)
    if recipient is None:
        pending = await sql.pending_count(connection, run.store_id)
        return await _final(connection, run, "no_recipient" if pending else "nothing")
    # Alerts another live run is emailing are skipped: they are in its email.
    alerts = await sql.reserve(connection, run.id, run.store_id, RESERVATION)
    if not alerts:
        return await _final(connection, run, "nothing")
    message_id = stable_message_id("stock-alert", run.id, from_address)
    await sql.set_status(connection, run.id, "sending", message_id=message_id, recipient=recipient)
    return AlertEmail(recipient, message_id, alerts)


async def _final(connection: Connection, run: sql.RunForAlerts, status: AlertStatus) -> AlertStatus:
    await sql.set_status(connection, run.id, status)
    return status


def _line(alert: sql.ReservedAlert) -> str:
    if alert.kind == "discrepancy":
        recorded = alert.recorded or 0
        return (
            f"- {alert.sku} {alert.name}: recorded {recorded}, computed from movements {alert.computed} "
            f"(difference {alert.computed - recorded:+d})"
        )
    return f"- {alert.sku} {alert.name}: {alert.computed} in stock, threshold {alert.threshold}"


def alerts_csv(alerts: list[sql.ReservedAlert]) -> bytes:
    """Every alert of the email, one row each, in the email's order (worst first within a kind)."""
    out = io.StringIO(newline="")
    writer = csv.writer(out)  # RFC 4180: CRLF record ends
    writer.writerow(CSV_COLUMNS)
    for alert in alerts:
        difference = None if alert.recorded is None else alert.computed - alert.recorded
        writer.writerow(
            (alert.kind, alert.sku, alert.name, alert.recorded, alert.computed, difference, alert.threshold)
        )
    return out.getvalue().encode()


def build_alert_email(
    *,
    from_address: str,
    recipient: str,
    store_name: str,
    business_date: date,
    reconciliation_id: UUID,
    message_id: str,
    alerts: list[sql.ReservedAlert],
) -> EmailMessage:
    """`alerts` come worst first within each kind (sql.RESERVED's order)."""
    discrepancies = [alert for alert in alerts if alert.kind == "discrepancy"]
    low_stock = [alert for alert in alerts if alert.kind == "low_stock"]
    day = business_date.isoformat()
    attached = len(discrepancies) > MAX_LISTED or len(low_stock) > MAX_LISTED
    sections = [
        f"Stock reconciliation of {store_name} for {day} found {len(alerts)} new item(s): "
        f"{len(discrepancies)} stock discrepancies, {len(low_stock)} low stock."
    ]
    for title, items in (("Stock discrepancies", discrepancies), ("Low stock", low_stock)):
        if items:
            head = f"{title} ({len(items)}" + (
                f", the {MAX_LISTED} largest" if len(items) > MAX_LISTED else ""
            )
            listed = [_line(alert) for alert in items[:MAX_LISTED]]
            if len(items) > MAX_LISTED:
                listed.append(f"... and {len(items) - MAX_LISTED} more (all in the attached CSV)")
            sections.append(f"{head}):\n" + "\n".join(listed))
    sections.append(
        f"Full report: reconciliation {reconciliation_id} "
        f"(GET {REPORT_PATH.format(id=reconciliation_id)} on the petcare API)."
    )
    message = compose(
        sender=from_address,
        recipient=recipient,
        subject=f"Stock alert: {store_name}, {len(alerts)} new item(s) on {day}",
        message_id=message_id,
        text="\n\n".join(sections) + "\n",
    )
    if attached:
        message.add_attachment(
            alerts_csv(alerts), maintype="text", subtype="csv", filename=f"stock-alerts-{day}.csv"
        )
    return message
