"""Appointment reminder side effects: what the worker registers (the SMS gateway is `petcare.sms`)."""

from __future__ import annotations

from activities.reminders.activities import ReminderActivities
from petcare.sms import build_gateway

__all__ = ["ReminderActivities", "build_gateway"]
