"""The one error vocabulary holds: no `ApplicationError` type and no retry policy's list is spelled
as a string outside petcare/errors.py, every type raised as non-retryable is a permanent one, and
a provider's error becomes the failure the jobs expect."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from petcare.errors import (
    PERMANENT,
    DeliveryDeferred,
    DeliveryError,
    DeliveryMisconfigured,
    DeliveryRejected,
    DeliveryUnavailable,
    ErrorType,
    UnsendableMessage,
    application_error,
    delivery_failure,
    non_retryable,
)

ROOT = Path(__file__).resolve().parent.parent
VOCABULARY = Path("petcare/errors.py")
# Tests raise made-up failures on purpose; the rest is the project's own code.
SKIPPED_DIRS = {"tests", ".venv", ".data", ".git", "node_modules", "build", "dist"}
# Not wired yet (owned by other work in progress). Each must still hold a literal: once it is
# wired, this test fails until its line here is removed, so the list only shrinks.
PENDING: set[Path] = set()


def _sources() -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT)
        if SKIPPED_DIRS.isdisjoint(relative.parts[:-1]) and relative != VOCABULARY:
            yield relative, ast.parse(path.read_text(encoding="utf-8"), filename=str(relative))


def _calls(tree: ast.AST, name: str) -> Iterator[ast.Call]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if called == name:
                yield node


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((keyword.value for keyword in call.keywords if keyword.arg == name), None)


def _literal_types(tree: ast.AST) -> list[tuple[str, bool]]:
    """(type, non_retryable) of each `ApplicationError(..., type="...")` spelled with a literal."""
    found = []
    for call in _calls(tree, "ApplicationError"):
        kind = _keyword(call, "type")
        if isinstance(kind, ast.Constant) and isinstance(kind.value, str):
            flag = _keyword(call, "non_retryable")
            found.append((kind.value, isinstance(flag, ast.Constant) and flag.value is True))
    return found


def _literal_policies(tree: ast.AST) -> list[int]:
    """Lines of `non_retryable_error_types=` given anything but a name or a `non_retryable(...)`."""
    lines = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.keyword) and node.arg == "non_retryable_error_types"):
            continue
        value = node.value
        if isinstance(value, ast.Call):
            wired = bool(list(_calls(value, "non_retryable")))
        else:
            wired = isinstance(value, ast.Name)
        if not wired:
            lines.append(value.lineno)
    return lines


def test_no_error_type_or_retry_list_is_spelled_outside_the_vocabulary() -> None:
    spelled: dict[Path, list[str]] = {}
    for path, tree in _sources():
        found = [f"type={kind!r}" for kind, _ in _literal_types(tree)]
        found += [f"non_retryable_error_types at line {line}" for line in _literal_policies(tree)]
        if found:
            spelled[path] = found
    assert {path: found for path, found in spelled.items() if path not in PENDING} == {}
    # A pending file that has been wired leaves the list.
    assert sorted(PENDING - spelled.keys()) == []


def test_every_literal_left_is_in_the_vocabulary_and_permanent_when_non_retryable() -> None:
    values = {str(error_type) for error_type in ErrorType}
    for path in sorted(PENDING):
        for kind, permanent in _literal_types(ast.parse((ROOT / path).read_text(encoding="utf-8"))):
            assert kind in values, (path, kind)
            assert (ErrorType(kind) in PERMANENT) == permanent, (path, kind)


def test_every_type_a_retry_policy_names_is_permanent() -> None:
    named = 0
    for path, tree in _sources():
        for call in _calls(tree, "non_retryable"):
            for argument in call.args:
                assert isinstance(argument, ast.Attribute), (path, argument.lineno)
                assert ErrorType[argument.attr] in PERMANENT, (path, argument.attr)
                named += 1
    assert named  # the scan sees the workflows' policies


def test_application_error_is_non_retryable_exactly_when_permanent() -> None:
    for error_type in ErrorType:
        error = application_error("boom", error_type)
        assert (error.type, error.non_retryable) == (str(error_type), error_type in PERMANENT)
    with pytest.raises(AssertionError):
        non_retryable(ErrorType.MAIL_UNAVAILABLE)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (DeliveryRejected("refused: 550 no such user"), ("MailRejected", True, "refused: 550 no such user")),
        (UnsendableMessage("holds 2 addresses"), ("MailRejected", True, "holds 2 addresses")),
        (
            DeliveryMisconfigured("SMTP server h:25 refused the login"),
            ("MailMisconfigured", True, "mail configuration: SMTP server h:25 refused the login"),
        ),
        (DeliveryUnavailable("deferred: 421 busy"), ("MailUnavailable", False, "deferred: 421 busy")),
        (
            DeliveryDeferred("deferred: 452 mailbox full"),
            ("MailUnavailable", False, "deferred: 452 mailbox full"),
        ),
        (
            DeliveryError("an answer nobody classified"),
            ("MailUnavailable", False, "an answer nobody classified"),
        ),
    ],
)
def test_a_provider_error_becomes_the_failure_the_jobs_expect(
    error: DeliveryError, expected: tuple[str, bool, str]
) -> None:
    failure = delivery_failure(error)
    assert (failure.type, failure.non_retryable, failure.message) == expected
