"""The completion notice of an export: who gets it, what it says, and that each run sends one.

A store's export goes to the store's email; an export of all stores, or of a store without an
email, to PETCARE_EXPORT__NOTIFY_EMAIL, which takes every notice when PETCARE_EXPORT__NOTIFY_OVERRIDE
is set. The notice is recorded per workflow run in `financial_export_notices` (claimed before the
send, marked sent after it), so a retried activity sends nothing more; its Message-ID comes from
the run id, so should a crash between the send and the mark ever send it twice, mail clients show one.
"""

from __future__ import annotations

from email.message import EmailMessage

import asyncpg
from temporalio import activity

from petcare import exports_repository
from petcare.config import ExportSettings
from petcare.errors import DeliveryError, ErrorType, application_error, delivery_failure
from petcare.mail import Mailer, compose, stable_message_id
from petcare.models.exports import ExportedFile, NoticeOutcome, NoticeRequest
from petcare.summaries import export_summary, period_words

NOTICE_ACTIVITY = "financial_export.notify_completed"


class ExportNoticeActivities:
    def __init__(self, pool: asyncpg.Pool, mailer: Mailer, settings: ExportSettings, *, sender: str) -> None:
        self._pool = pool
        self._mailer = mailer
        self._settings = settings
        self._sender = sender

    @activity.defn(name=NOTICE_ACTIVITY)
    async def notify_completed(self, request: NoticeRequest) -> NoticeOutcome:
        """Send the run's notice unless it was sent; without a recipient, log and send nothing."""
        async with self._pool.acquire() as connection:
            target = await exports_repository.notice_target(connection, request.export_id)
        if target is None:
            raise application_error(
                f"financial export {request.export_id} does not exist", ErrorType.EXPORT_NOT_FOUND
            )
        recipient = self._recipient(target["store_email"])
        if recipient is None:
            activity.logger.warning(
                "financial export %s completed; no recipient for its notice (the store has no email "
                "and PETCARE_EXPORT__NOTIFY_EMAIL is not set)",
                request.export_id,
            )
            return NoticeOutcome(sent=False, reason="no recipient")
        async with self._pool.acquire() as connection:
            already_sent = await exports_repository.claim_notice(
                connection, request.run_id, request.export_id, recipient
            )
        if already_sent:
            return NoticeOutcome(sent=False, reason="already sent", recipient=recipient)
        try:
            # A recipient of several addresses, or data the email package refuses, is this
            # notice's fault for good (MailRejected), like an address the server refuses.
            message = notice_email(
                request,
                target,
                sender=self._sender,
                recipient=recipient,
                message_id=stable_message_id("financial-export-notice", request.run_id, self._sender),
            )
            await self._mailer.send(message)
        except DeliveryError as error:
            raise delivery_failure(error) from None
        async with self._pool.acquire() as connection:
            await exports_repository.mark_notice_sent(connection, request.run_id)
        activity.logger.info("financial export %s: notice sent", request.export_id)
        return NoticeOutcome(sent=True, reason="sent", recipient=recipient)

    def _recipient(self, store_email: str | None) -> str | None:
        if self._settings.notify_override:
            return self._settings.notify_email
        return (store_email or "").strip() or self._settings.notify_email


def notice_email(
    request: NoticeRequest, target: asyncpg.Record, *, sender: str, recipient: str, message_id: str
) -> EmailMessage:
    """The notice: period, format, and each file with its rows, bytes, sha256 and remote path.
    `compose` folds the subject (a store name is data) and refuses a recipient of several addresses."""
    store = target["store_name"]
    summary = export_summary(target["period_start"], target["period_end"], target["format"], store)
    where = f"store {store} ({target['store_id']})" if target["store_id"] is not None else "all stores"
    lines = [
        f"{summary} is complete: its files are on the export destination.",
        "",
        f"Export:  {request.export_id}",
        f"Period:  {target['period_start'].isoformat()} to {target['period_end'].isoformat()} "
        f"({period_words(target['period_start'], target['period_end'])}; each store's local calendar days)",
        f"Format:  {target['format']}",
        f"Scope:   {where}",
        "",
        "Files:",
    ]
    lines += [line for file in request.files for line in _file_lines(file)]
    lines += [
        "",
        "Each file can also be downloaded from the API:",
        f"  GET /api/v1/financial-exports/{request.export_id}/files/<name>",
        "The manifest lists the data files with their sha256; check each file against it.",
    ]
    return compose(
        sender=sender,
        recipient=recipient,
        subject=f"[petcare] {summary}: ready",
        message_id=message_id,
        text="\n".join(lines) + "\n",
    )


def _file_lines(file: ExportedFile) -> list[str]:
    rows = "(lists the files)" if file.kind == "manifest" else f"{file.rows} rows"
    return [
        f"  {file.name}: {rows}, {file.bytes} bytes",
        f"    sha256 {file.sha256}",
        f"    {file.remote_path}",
    ]
