"""Reminder rendering: store time zones across DST, locales and fallback, SMS length, email parts."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import pytest

from activities.reminders.decisions import Route, choose_route
from activities.reminders.messages import (
    ReminderContext,
    build_email,
    fit_segments,
    reminder_message_id,
    render_reminder,
    sms_segments,
)


def context(
    starts_at: datetime,
    timezone: str,
    locale: str = "en",
    *,
    pet_name: str = "Rex",
    service_name: str = "Full grooming",
    store_name: str = "Paws & Co",
    store_phone: str = "+15550001111",
) -> ReminderContext:
    return ReminderContext(
        appointment_id="a1",
        first_name="Alex",
        pet_name=pet_name,
        service_name=service_name,
        store_name=store_name,
        store_phone=store_phone,
        store_timezone=timezone,
        starts_at=starts_at,
        locale=locale,
    )


@pytest.mark.parametrize(
    ("starts_at", "expected"),
    [
        # New York springs forward on 2026-03-08: the same 10:00 local is 15:00 UTC before, 14:00 after.
        (datetime(2026, 3, 7, 15, 0, tzinfo=UTC), "Saturday, March 7 at 10:00 AM (EST)"),
        (datetime(2026, 3, 9, 14, 0, tzinfo=UTC), "Monday, March 9 at 10:00 AM (EDT)"),
        # Falls back on 2026-11-01: 01:30 happens twice and each instant keeps its own offset.
        (datetime(2026, 11, 1, 5, 30, tzinfo=UTC), "Sunday, November 1 at 1:30 AM (EDT)"),
        (datetime(2026, 11, 1, 6, 30, tzinfo=UTC), "Sunday, November 1 at 1:30 AM (EST)"),
    ],
)
def test_new_york_times_follow_daylight_saving(starts_at: datetime, expected: str) -> None:
    rendered = render_reminder(context(starts_at, "America/New_York"))
    assert rendered.starts_at_local == expected
    assert expected in rendered.text
    assert expected in rendered.sms


@pytest.mark.parametrize(
    ("starts_at", "expected"),
    [
        (datetime(2026, 3, 28, 9, 0, tzinfo=UTC), "samedi 28 mars à 10:00 (CET)"),
        (datetime(2026, 3, 29, 8, 0, tzinfo=UTC), "dimanche 29 mars à 10:00 (CEST)"),
        (datetime(2026, 10, 25, 9, 0, tzinfo=UTC), "dimanche 25 octobre à 10:00 (CET)"),
    ],
)
def test_paris_times_in_french_follow_daylight_saving(starts_at: datetime, expected: str) -> None:
    rendered = render_reminder(context(starts_at, "Europe/Paris", locale="fr-FR"))
    assert rendered.locale == "fr"
    assert rendered.starts_at_local == expected
    assert rendered.subject.startswith("Rappel : rendez-vous de Rex")


def test_spanish_and_unknown_locales() -> None:
    starts_at = datetime(2026, 6, 3, 16, 0, tzinfo=UTC)
    spanish = render_reminder(context(starts_at, "Europe/Madrid", locale="es_ES"))
    assert spanish.locale == "es"
    assert "miércoles 3 de junio a las 18:00 (CEST)" in spanish.text
    german = render_reminder(context(starts_at, "Europe/Berlin", locale="de"))
    assert german.locale == "en"
    assert german.subject == "Reminder: Rex's appointment at Paws & Co on Wednesday, June 3"


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "posix/Europe/Paris", "localtime"])
def test_unknown_store_zone_renders_in_utc(zone: str) -> None:
    rendered = render_reminder(context(datetime(2026, 6, 3, 16, 0, tzinfo=UTC), zone))
    assert rendered.starts_at_local == "Wednesday, June 3 at 4:00 PM (UTC)"


def test_html_part_escapes_names_and_text_part_keeps_them() -> None:
    rendered = render_reminder(
        context(datetime(2026, 6, 3, 16, 0, tzinfo=UTC), "UTC", pet_name="<b>Rex</b>", store_name="A & B")
    )
    assert "&lt;b&gt;Rex&lt;/b&gt;" in rendered.html
    assert "<b>Rex</b>" not in rendered.html
    assert "A &amp; B" in rendered.html
    assert "<b>Rex</b> has an appointment" in rendered.text


def test_store_without_phone_leaves_out_the_call_us_sentence() -> None:
    rendered = render_reminder(context(datetime(2026, 6, 3, 16, 0, tzinfo=UTC), "UTC", store_phone=""))
    assert "call us" not in rendered.text
    assert "call us" not in rendered.sms


@pytest.mark.parametrize("locale", ["en", "fr", "es"])
def test_sms_never_exceeds_two_segments(locale: str) -> None:
    long_names = context(
        datetime(2026, 6, 3, 16, 0, tzinfo=UTC),
        "America/Los_Angeles",
        locale=locale,
        pet_name="Sir Reginald Fluffington the Third of Woofshire " * 3,
        store_name="The Very Long Named Grooming Salon and Veterinary Clinic of Downtown " * 2,
        service_name="Deluxe full grooming with nail trim and ear cleaning",
    )
    for ctx in (long_names, context(datetime(2026, 6, 3, 16, 0, tzinfo=UTC), "UTC", locale=locale)):
        sms = render_reminder(ctx).sms
        assert sms_segments(sms) <= 2, sms
        assert "Rex" in sms or "Reginald" in sms


def test_segment_arithmetic() -> None:
    assert sms_segments("a" * 160) == 1
    assert sms_segments("a" * 161) == 2
    assert sms_segments("a" * 306) == 2
    assert sms_segments("a" * 307) == 3
    assert sms_segments("€" * 80) == 1  # extension characters take two septets each
    assert sms_segments("ê" * 70) == 1  # not GSM-7: UCS-2
    assert sms_segments("ê" * 71) == 2
    cut = fit_segments("ê" * 500)
    assert sms_segments(cut) == 2
    assert cut.endswith("...")


def test_email_has_text_and_html_parts_and_a_stable_message_id() -> None:
    rendered = render_reminder(context(datetime(2026, 6, 3, 16, 0, tzinfo=UTC), "UTC"))
    appointment_id = UUID("3f1c1b9e-4d44-4e7a-9a65-2c6d8f0e1a01")
    message = build_email(
        rendered,
        sender="Petcare <r@petcare.local>",
        recipient="a@example.com",
        message_id=reminder_message_id(
            appointment_id, datetime(2026, 3, 27, 13, 30, tzinfo=UTC), "Petcare <r@petcare.local>"
        ),
    )
    # In the sender's domain, the same on every attempt at one start time (a moved appointment's
    # reminder is a new message): a name-based UUID of the appointment and its start.
    assert message["Message-ID"] == "<reminder-98e44c72-6feb-5daa-80c5-35cf92bd19d9@petcare.local>"
    assert message.get_content_type() == "multipart/alternative"
    kinds = [part.get_content_type() for part in message.iter_parts()]
    assert kinds == ["text/plain", "text/html"]
    assert message["Content-Language"] == "en"
    assert message["Subject"] == rendered.subject


@pytest.mark.parametrize(
    ("preferred", "email", "phone", "expected"),
    [
        ("email", "a@example.com", "+15550002222", Route("email", "a@example.com")),
        ("sms", "a@example.com", "+15550002222", Route("sms", "+15550002222")),
        ("sms", "a@example.com", None, Route("email", "a@example.com")),
        ("email", "  ", "+15550002222", Route("sms", "+15550002222")),
        ("email", None, None, None),
    ],
)
def test_channel_falls_back_to_the_other_address(
    preferred: str, email: str | None, phone: str | None, expected: Route | None
) -> None:
    assert choose_route(preferred, email, phone) == expected
