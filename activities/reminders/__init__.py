"""Appointment reminder side effects: the activities (activities.py) over the reminder SQL (sql.py),
the pure decisions (decisions.py), the page sender (sending.py) and the messages (messages.py,
templates.py). The SMS gateway lives beside the mailer (`petcare.sms`); re-exported for the worker."""

from __future__ import annotations

from activities.reminders.activities import ReminderActivities
from petcare.sms import build_gateway

__all__ = ["ReminderActivities", "build_gateway"]
