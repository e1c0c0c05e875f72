"""The low-stock / discrepancy alert email of one store and run."""

from __future__ import annotations

from datetime import date
from email.message import EmailMessage
from uuid import UUID

from activities.stock.alert_reservations import ReservedAlert
from petcare.mail import compose

# An email listing thousands of products helps nobody; the rest is in the report.
MAX_LISTED = 200


def _line(alert: ReservedAlert) -> str:
    if alert.kind == "discrepancy":
        recorded = alert.recorded or 0
        return (
            f"- {alert.sku} {alert.name}: recorded {recorded}, computed from movements {alert.computed} "
            f"(difference {alert.computed - recorded:+d})"
        )
    return f"- {alert.sku} {alert.name}: {alert.computed} in stock, threshold {alert.threshold}"


def build_alert_email(
    *,
    from_address: str,
    recipient: str,
    store_name: str,
    business_date: date,
    reconciliation_id: UUID,
    message_id: str,
    alerts: list[ReservedAlert],
) -> EmailMessage:
    discrepancies = [alert for alert in alerts if alert.kind == "discrepancy"]
    low_stock = [alert for alert in alerts if alert.kind == "low_stock"]
    day = business_date.isoformat()
    sections = [f"Stock reconciliation of {store_name} for {day} found {len(alerts)} new item(s)."]
    for title, items in (("Stock discrepancies", discrepancies), ("Low stock", low_stock)):
        if items:
            listed = [_line(alert) for alert in items[:MAX_LISTED]]
            if len(items) > MAX_LISTED:
                listed.append(f"... and {len(items) - MAX_LISTED} more")
            sections.append(f"{title} ({len(items)}):\n" + "\n".join(listed))
    sections.append(f"Full report: reconciliation {reconciliation_id}.")
    return compose(
        sender=from_address,
        recipient=recipient,
        subject=f"Stock alert: {store_name}, {len(alerts)} new item(s) on {day}",
        message_id=message_id,
        text="\n\n".join(sections) + "\n",
    )
