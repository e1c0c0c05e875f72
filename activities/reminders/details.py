"""What rendering needs from an appointment: the shared SELECT list, its joins, and the row's reading."""

from __future__ import annotations

import asyncpg

from activities.reminders.planning import Route, choose_route
from activities.reminders.render import ReminderContext

DETAILS = """
    SELECT a.id, a.starts_at, c.first_name, c.email, c.phone, c.locale, c.preferred_channel,
           p.name AS pet_name, s.name AS service_name,
           st.name AS store_name, st.phone AS store_phone, st.timezone AS store_timezone
"""
DETAILS_JOINS = """
    JOIN pets p ON p.id = a.pet_id
    JOIN services s ON s.id = a.service_id
    JOIN stores st ON st.id = a.store_id
"""


def context_of(row: asyncpg.Record) -> ReminderContext:
    return ReminderContext(
        appointment_id=str(row["id"]),
        first_name=row["first_name"],
        pet_name=row["pet_name"],
        service_name=row["service_name"],
        store_name=row["store_name"],
        store_phone=row["store_phone"],
        store_timezone=row["store_timezone"],
        starts_at=row["starts_at"],
        locale=row["locale"],
    )


def route_of(row: asyncpg.Record) -> Route | None:
    return choose_route(row["preferred_channel"], row["email"], row["phone"])
