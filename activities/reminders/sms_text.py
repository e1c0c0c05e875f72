"""SMS segment arithmetic: GSM-7 fits 160 characters (153 when split), anything else UCS-2 70 (67)."""

from __future__ import annotations

import math

MAX_SEGMENTS = 2

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Characters sent as an escape plus a code: each costs two septets.
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")


def _units(text: str) -> tuple[int, int, int]:
    """(units used, units per single message, units per part of a split message)."""
    if all(char in GSM7_BASIC or char in GSM7_EXTENSION for char in text):
        return sum(2 if char in GSM7_EXTENSION else 1 for char in text), 160, 153
    utf16_units = len(text.encode("utf-16-le")) // 2
    return utf16_units, 70, 67


def sms_segments(text: str) -> int:
    used, single, part = _units(text)
    if used <= single:
        return 1
    return math.ceil(used / part)


def fit_segments(text: str, segments: int = MAX_SEGMENTS) -> str:
    """The longest prefix of `text` (ending in an ellipsis when cut) within `segments`."""
    if sms_segments(text) <= segments:
        return text
    cut = text
    while cut and sms_segments(cut + "...") > segments:
        cut = cut[:-1]
    return cut.rstrip() + "..."
