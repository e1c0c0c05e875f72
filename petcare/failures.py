"""The root cause of a failure, as operators want to read it (I/O-free: workflows import it)."""

from __future__ import annotations

from temporalio.exceptions import ApplicationError


def root_cause(error: BaseException) -> BaseException:
    """The innermost cause: what actually went wrong, not the "activity task failed" around it."""
    while error.__cause__ is not None:
        error = error.__cause__
    return error


def describe_failure(error: BaseException) -> tuple[str, str]:
    """`(type, message)` of the root cause: an ApplicationError's own type, else the class name."""
    cause = root_cause(error)
    kind = (cause.type if isinstance(cause, ApplicationError) else None) or type(cause).__name__
    # FailureError.message is the text without the "type: " prefix str() may add.
    message = getattr(cause, "message", None) or str(cause) or type(cause).__name__
    return kind, message
