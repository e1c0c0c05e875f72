"""The one cursor of the API's paged lists: round trip, and a 400 for malformed or foreign ones."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from api.exports import ExportListQuery
from api.middlewares import ApiError
from api.models import Keyset, cursor_scope, decode_cursor, encode_cursor

SCOPE = cursor_scope("financial-exports", ExportListQuery(status="completed"))


def test_keyset_round_trip_keeps_microseconds_and_zone() -> None:
    key = Keyset(time=datetime(2026, 10, 31, 22, 30, 0, 123456, tzinfo=UTC), id=uuid4())
    assert Keyset.from_cursor(SCOPE, key.cursor(SCOPE)) == key
    assert Keyset.from_cursor(SCOPE, None) is None


def test_token_round_trip() -> None:
    token = base64.b64encode(b"\x00\xffpage").decode()
    assert decode_cursor(SCOPE, encode_cursor(SCOPE, token), size=1) == [token]


def test_scope_depends_on_list_and_filters_not_on_the_limit() -> None:
    completed = ExportListQuery(status="completed")
    assert cursor_scope("exports", completed) == cursor_scope(
        "exports", ExportListQuery(status="completed", limit=5)
    )
    assert cursor_scope("exports", completed) != cursor_scope("exports", ExportListQuery(status="failed"))
    assert cursor_scope("exports", completed) != cursor_scope("runs", completed)


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "not base64 !",
        "%%%%",
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        base64.urlsafe_b64encode(b"{}").decode(),
        base64.urlsafe_b64encode(json.dumps([99, SCOPE, "x", "y"]).encode()).decode(),
        base64.urlsafe_b64encode(json.dumps([1, SCOPE, 1, "y"]).encode()).decode(),
        encode_cursor(SCOPE, "yesterday", str(uuid4())),
        encode_cursor(SCOPE, "2026-10-31T00:00:00", str(uuid4())),  # no zone
        encode_cursor(SCOPE, "2026-10-31T00:00:00+00:00", "not-a-uuid"),
        encode_cursor(SCOPE, "only-one"),
        "A" * 5000,
    ],
)
def test_malformed_cursor_is_400(cursor: str) -> None:
    with pytest.raises(ApiError) as raised:
        Keyset.from_cursor(SCOPE, cursor)
    assert (raised.value.status, raised.value.code) == (400, "invalid_cursor")
    assert "malformed" in raised.value.message


def test_foreign_cursor_is_400() -> None:
    key = Keyset(time=datetime.now(UTC), id=uuid4())
    others = (
        cursor_scope("stock-reconciliations"),
        cursor_scope("financial-exports", ExportListQuery(status="failed")),
    )
    for other in others:
        with pytest.raises(ApiError) as raised:
            Keyset.from_cursor(SCOPE, key.cursor(other))
        assert (raised.value.status, raised.value.code) == (400, "invalid_cursor")
        assert "another list" in raised.value.message


def test_a_keyset_with_a_second_time_round_trips_and_refuses_other_shapes() -> None:
    """Reminder deliveries order by (updated_at, appointment, start): the third part is checked too."""
    moment = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    key = Keyset(time=moment, id=uuid4(), then=datetime(2026, 3, 30, 9, 0, 0, 5, tzinfo=UTC))
    assert Keyset.from_cursor(SCOPE, key.cursor(SCOPE), with_then=True) == key
    two_parts = Keyset(time=moment, id=uuid4()).cursor(SCOPE)
    naive_then = encode_cursor(SCOPE, moment.isoformat(), str(uuid4()), "2026-03-30T09:00:00")
    for cursor in (two_parts, naive_then, encode_cursor(SCOPE, moment.isoformat(), str(uuid4()), "soon")):
        with pytest.raises(ApiError) as raised:
            Keyset.from_cursor(SCOPE, cursor, with_then=True)
        assert (raised.value.status, raised.value.code) == (400, "invalid_cursor")
    with pytest.raises(ApiError):
        Keyset.from_cursor(SCOPE, key.cursor(SCOPE))  # a three-part cursor where two are expected
