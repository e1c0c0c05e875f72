"""The channel rule exists twice on purpose: in Python (choose_route, for each claim) and in SQL
(the dry run's set-based counts). This holds them to the same answer on real PostgreSQL, a customer
who opted out of SMS included."""

from __future__ import annotations

import itertools

import asyncpg

from activities.reminders.decisions import choose_route
from activities.reminders.sql import _CHANNEL

ADDRESSES = [None, "", " ", "\t\n", "\u00a0", "a@example.com", "  a@example.com\n", "\u00a0a@example.com"]
PHONES = [None, "", "  ", "\u2003", "+15550100", " +15550100 "]


async def test_the_sql_channel_rule_agrees_with_choose_route(pool: asyncpg.Pool) -> None:
    cases = list(itertools.product(["email", "sms"], ADDRESSES, PHONES, [False, True]))
    query = f"""SELECT {_CHANNEL}
        FROM (VALUES ($1::text, $2::text, $3::text, CASE WHEN $4 THEN now() END))
            AS c(preferred_channel, email, phone, sms_opted_out_at)"""
    disagreements = []
    for preferred, email, phone, opted_out in cases:
        in_sql = await pool.fetchval(query, preferred, email, phone, opted_out)
        route = choose_route(preferred, email, phone, sms_opted_out=opted_out)
        in_python = None if route is None else route.channel
        if in_sql != in_python:
            disagreements.append((preferred, email, phone, opted_out, in_sql, in_python))
    assert disagreements == []
