"""The one error vocabulary: the exceptions raised, the ApplicationError types, how a failure reads.

`ErrorType` names what crosses into Temporal (histories, retry policies, alerts, the API's run
views); `describe_failure` is how a failure reads to an operator. I/O-free: workflows import it.

Exceptions raised inside the project (caught and classified before they reach Temporal)::

    Exception
    ├── DeliveryError                a provider's answer about one message, from petcare.mail
    │   │                            (SMTP) or petcare.sms (the SMS gateway) alike
    │   ├── DeliveryRejected         this message is refused for good (5xx to its recipient,
    │   │   │                        an invalid or unsubscribed number): record it failed
    │   │   ├── UnsendableMessage    it cannot even be built from its data (several addresses
    │   │   │                        in one field, a header the email package refuses)
    │   │   └── SmsNumberRefused     this number cannot take SMS (Twilio 21614, not a mobile):
    │   │       │                    another channel may still reach the customer
    │   │       └── SmsOptedOut      the number unsubscribed (Twilio 21610, texted STOP):
    │   │                            recorded on the customer, no SMS until re-consent
    │   ├── DeliveryUnavailable      the provider cannot take anything now (down, 421, a 5xx
    │   │   │                        gateway, a timeout): the sender retries later
    │   │   └── DeliveryDeferred     only this recipient, for now (450/451/452 on RCPT TO,
    │   │                            a busy handset): only this message waits
    │   └── DeliveryMisconfigured    the provider refuses *our* settings (login, sender address,
    │                                account, From number): every message would fail alike
    ├── SettingsError                (petcare.config) a setting is missing or malformed
    ├── InvalidTimeZone              (petcare.timezones, a ValueError) not an IANA zone
    ├── DatabaseBusy                 (petcare.db, a TimeoutError and an ApplicationError of type
    │                                DATABASE_BUSY) no pool connection came free in time
    ├── TemporalUnreachable          (petcare.temporal_client) no answer at the address
    ├── TemporalConfigurationError   (petcare.temporal_client) the namespace lacks what we need
    │   └── SearchAttributesMissing
    ├── ClaimLost                    (activities.reminders.sending) a newer attempt holds a
    │                                reminder's claim: the page stops, as REMINDER_CLAIM_LOST
    ├── StreamStalled                (activities.exports.streaming) no byte moved for too long:
    │                                EXPORT_STALLED
    ├── ApiError                     (api.middlewares) rendered as {"error": {"code", "message"}}
    └── DevStackError, TemporalServerError, BinaryNotFound   (devstack) `petcare dev`
                                     cannot start a part of the local stack

What crosses into Temporal is an `ApplicationError` whose `type` is one `ErrorType`, used both
where it is raised (`application_error`, `delivery_failure`) and in the retry policies that name it
(`non_retryable`), so the two cannot drift apart. tests/test_errors.py keeps every other spelling out.
"""

from __future__ import annotations

from enum import StrEnum

from temporalio.exceptions import ApplicationError


class ErrorType(StrEnum):
    """Every `ApplicationError.type` the activities and workflows raise. The values are recorded
    in workflow histories: never rename one."""

    # Any job sending mail (stock alerts, ops alerts); reminders record these per message instead.
    MAIL_REJECTED = "MailRejected"
    MAIL_MISCONFIGURED = "MailMisconfigured"
    MAIL_UNAVAILABLE = "MailUnavailable"
    # Ops alerts to PETCARE_OPS_WEBHOOK_URL: it refuses our request (a wrong or revoked URL, a
    # redirect), or cannot take it now (timeout, 429, 5xx).
    OPS_WEBHOOK_MISCONFIGURED = "OpsWebhookMisconfigured"
    OPS_WEBHOOK_UNAVAILABLE = "OpsWebhookUnavailable"
    # Appointment reminders.
    REMINDER_CLAIM_LOST = "ReminderClaimLost"
    REMINDER_PROVIDER_UNAVAILABLE = "ReminderProviderUnavailable"
    REMINDER_CONFIGURATION_ERROR = "ReminderConfigurationError"
    # Financial exports.
    EXPORT_NOT_FOUND = "ExportNotFound"
    EXPORT_NOT_PROCESSING = "ExportNotProcessing"
    EXPORT_DATA_ERROR = "ExportDataError"
    EXPORT_STALLED = "ExportStalled"
    FINANCIAL_EXPORT_FAILED = "FinancialExportFailed"
    SFTP_HOST_KEY_REJECTED = "SftpHostKeyRejected"
    SFTP_AUTHENTICATION_FAILED = "SftpAuthenticationFailed"
    SFTP_CONFIGURATION_ERROR = "SftpConfigurationError"
    SFTP_PERMISSION_DENIED = "SftpPermissionDenied"
    # Stock reconciliation.
    UNKNOWN_STORE = "UnknownStore"
    UNKNOWN_RECONCILIATION = "UnknownReconciliation"
    RECONCILIATION_LOST = "ReconciliationLost"
    # Any job using PostgreSQL: no pooled connection free in time; a long statement past its budget.
    DATABASE_BUSY = "DatabaseBusy"
    STATEMENT_TIMEOUT = "StatementTimeout"
    # Any job: a programming error (a long statement in an activity started without a bound).
    MISSING_ACTIVITY_TIMEOUT = "MissingActivityTimeout"
    # An activity that records its workflow's ids, started outside a workflow (a programming error).
    NOT_IN_WORKFLOW = "NotInWorkflow"


# Faults no retry can fix: raised as non-retryable and named in every retry policy that could
# meet them (a policy that names one more than its activity raises costs nothing).
PERMANENT: frozenset[ErrorType] = frozenset(
    {
        ErrorType.MAIL_REJECTED,
        ErrorType.MAIL_MISCONFIGURED,
        ErrorType.OPS_WEBHOOK_MISCONFIGURED,
        ErrorType.REMINDER_CONFIGURATION_ERROR,
        ErrorType.FINANCIAL_EXPORT_FAILED,
        ErrorType.EXPORT_NOT_FOUND,
        ErrorType.EXPORT_NOT_PROCESSING,
        ErrorType.EXPORT_DATA_ERROR,
        ErrorType.SFTP_HOST_KEY_REJECTED,
        ErrorType.SFTP_AUTHENTICATION_FAILED,
        ErrorType.SFTP_CONFIGURATION_ERROR,
        ErrorType.SFTP_PERMISSION_DENIED,
        ErrorType.UNKNOWN_STORE,
        ErrorType.UNKNOWN_RECONCILIATION,
        ErrorType.MISSING_ACTIVITY_TIMEOUT,
        ErrorType.NOT_IN_WORKFLOW,
    }
)


def non_retryable(*types: ErrorType) -> list[str]:
    """For `RetryPolicy(non_retryable_error_types=...)`: the given types, each a permanent one."""
    assert all(error_type in PERMANENT for error_type in types), types
    return [str(error_type) for error_type in types]


def application_error(message: str, error_type: ErrorType) -> ApplicationError:
    """The one way an activity reports a classified fault: non-retryable exactly when permanent."""
    return ApplicationError(message, type=str(error_type), non_retryable=error_type in PERMANENT)


class DeliveryError(Exception):
    """A provider's answer about one message. The message names servers and variables, never a
    secret."""


class DeliveryRejected(DeliveryError):
    """This message is refused for good: the delivery is recorded failed, the others go on."""


class UnsendableMessage(DeliveryRejected):
    """The message cannot be built from its data: that message fails, never the whole job."""


class SmsNumberRefused(DeliveryRejected):
    """The SMS provider refuses this number for good, but not the customer: reminders fall back to
    email when the customer has an address."""


class SmsOptedOut(SmsNumberRefused):
    """The number unsubscribed from our texts (it texted STOP): recorded on the customer
    (`customers.sms_opted_out_at`), and no SMS is tried again until the backend clears it."""


class DeliveryUnavailable(DeliveryError):
    """The provider cannot take anything now: retry later (with backoff, by Temporal)."""


class DeliveryDeferred(DeliveryUnavailable):
    """Refused for now for this one recipient only: the session and the other messages are fine.
    A DeliveryUnavailable, so whoever sends a single message simply retries it."""


class DeliveryMisconfigured(DeliveryError):
    """The provider refuses our settings: every message would fail the same way, so no message
    may be recorded as undeliverable because of it."""


_MAIL_TYPES: dict[type[DeliveryError], ErrorType] = {
    DeliveryRejected: ErrorType.MAIL_REJECTED,
    DeliveryMisconfigured: ErrorType.MAIL_MISCONFIGURED,
    DeliveryUnavailable: ErrorType.MAIL_UNAVAILABLE,
}


def delivery_failure(error: DeliveryError) -> ApplicationError:
    """A provider's error as the activity's failure, for jobs that send one message per attempt
    (stock and ops alerts): a rejection or our settings fail for good, the rest is retried."""
    for kind, error_type in _MAIL_TYPES.items():
        if isinstance(error, kind):
            prefix = "mail configuration: " if kind is DeliveryMisconfigured else ""
            return application_error(f"{prefix}{error}", error_type)
    return application_error(str(error), ErrorType.MAIL_UNAVAILABLE)


def webhook_failure(error: DeliveryError) -> ApplicationError:
    """The ops webhook's error as the activity's failure: our settings fail for good, the rest is
    retried (a webhook refusing one message is a webhook refusing them all)."""
    if isinstance(error, DeliveryUnavailable):
        return application_error(str(error), ErrorType.OPS_WEBHOOK_UNAVAILABLE)
    return application_error(str(error), ErrorType.OPS_WEBHOOK_MISCONFIGURED)


# How a failure reads to an operator (alerts, run views, a failed export's record).


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
