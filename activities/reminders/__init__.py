"""Appointment reminder side effects: due-appointment SQL, rendering, email and SMS delivery."""

from __future__ import annotations

from activities.reminders.activities import ReminderActivities
from activities.reminders.sms import build_gateway

__all__ = ["ReminderActivities", "build_gateway"]
