"""The export's destination and stream limits as the settings configure them."""

from __future__ import annotations

from activities.exports.destinations import Destination, LocalDestination
from activities.exports.sftp import SftpDestination
from activities.exports.streaming import StreamLimits
from petcare.config import Settings


def destination_for(settings: Settings) -> Destination:
    if settings.export.destination == "local":
        return LocalDestination(settings.export.local_dir)
    return SftpDestination(settings.sftp)


def stream_limits(settings: Settings) -> StreamLimits:
    export = settings.export
    return StreamLimits(
        block_bytes=export.block_bytes,
        queue_blocks=export.queue_blocks,
        timeout_seconds=export.copy_timeout_seconds,
        stall_seconds=export.stall_seconds,
    )
