"""Deciding, under a store's alert lock, what one run's alert email holds: a retry's, a new one, or none."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from activities.stock import alert_repository as alerts_sql
from activities.stock import alert_reservations as reservations
from activities.stock.alert_repository import RunForAlerts
from activities.stock.alert_reservations import ReservedAlert
from petcare.db import Connection
from petcare.mail import stable_message_id
from petcare.models.stock import ALERT_DEADLINE, AlertStatus

# A run holds the alerts it emails past its last possible attempt (plus slack for clock skew
# between Temporal and PostgreSQL), so a lapsed reservation never belongs to a live sender.
RESERVATION = ALERT_DEADLINE + timedelta(minutes=5)


@dataclass(frozen=True)
class AlertEmail:
    recipient: str
    message_id: str
    alerts: list[ReservedAlert]


async def prepare_email(
    connection: Connection, run: RunForAlerts, *, from_address: str, fallback_recipient: str | None
) -> AlertEmail | AlertStatus:
    """The email to send, recorded as `sending` before it goes; or the final status when there is none."""
    if run.alert_status == "sending" and run.recipient and run.message_id:
        # A retry resends what the first attempt reserved, to the same address, same Message-ID.
        alerts = await reservations.reserved(connection, run.id)
        if alerts:
            return AlertEmail(run.recipient, run.message_id, alerts)
        return await _final(connection, run, "nothing")
    if not run.diffed:
        if run.superseded:  # a later run of this store already owns the alerts
            return await _final(connection, run, "nothing")
        await alerts_sql.diff_alerts(connection, run)
    recipient = run.store_email or fallback_recipient
    if recipient is None:
        pending = await reservations.pending_count(connection, run.store_id)
        return await _final(connection, run, "no_recipient" if pending else "nothing")
    # Alerts another live run is emailing are skipped: they are in its email.
    alerts = await reservations.reserve(connection, run.id, run.store_id, RESERVATION)
    if not alerts:
        return await _final(connection, run, "nothing")
    message_id = stable_message_id("stock-alert", run.id, from_address)
    await reservations.set_status(connection, run.id, "sending", message_id=message_id, recipient=recipient)
    return AlertEmail(recipient, message_id, alerts)


async def _final(connection: Connection, run: RunForAlerts, status: AlertStatus) -> AlertStatus:
    await reservations.set_status(connection, run.id, status)
    return status
