"""CSV record ends as RFC 4180 wants them (CRLF), converted in the stream from PostgreSQL's LF.

COPY ... CSV ends each record with LF and quotes every cell that holds a quote, comma, CR or LF.
So a LF outside quotes ends a record (it becomes CRLF) and a LF inside quotes is cell text (it
stays). The quote parity is carried from one chunk to the next; an escaped quote ("") toggles it
twice, so it needs no special case.
"""

from __future__ import annotations


class CrlfRecords:
    """Called with each chunk of a CSV stream, in order; returns the converted chunk."""

    def __init__(self) -> None:
        self._in_quotes = False

    def __call__(self, chunk: bytes) -> bytes:
        if b'"' not in chunk:
            # The common case: no quoted cell starts or ends here, one C-speed replace.
            return chunk if self._in_quotes else chunk.replace(b"\n", b"\r\n")
        segments = chunk.split(b'"')
        # Segment i is outside quotes when i quotes precede it (with the carried parity) in even number.
        first_outside = 1 if self._in_quotes else 0
        segments[first_outside::2] = [
            segment.replace(b"\n", b"\r\n") for segment in segments[first_outside::2]
        ]
        if len(segments) % 2 == 0:  # an odd number of quotes in this chunk
            self._in_quotes = not self._in_quotes
        return b'"'.join(segments)
