"""The asyncpg pools every process owns once, and how long anything waits for one of their connections."""

from __future__ import annotations

import inspect
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, TypeAlias
from uuid import UUID

import asyncpg
from asyncpg.pool import PoolAcquireContext, PoolConnectionProxy
from temporalio.exceptions import ApplicationError

from petcare.config import Settings
from petcare.errors import ErrorType

# What SQL helpers take: a plain connection or one borrowed from the pool.
Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"

# Generic in asyncpg's stubs only: subscripted at run time, they raise TypeError.
if TYPE_CHECKING:
    _AcquireBase: TypeAlias = PoolAcquireContext[asyncpg.Record]
    _PoolBase: TypeAlias = asyncpg.Pool[asyncpg.Record]
else:
    _AcquireBase = PoolAcquireContext
    _PoolBase = asyncpg.Pool


class DatabaseBusy(ApplicationError, TimeoutError):
    """No connection of a pool came free (or could be opened) within the acquire timeout.

    An ApplicationError so an activity's attempt fails retryably under this type and message, and a
    TimeoutError so the API's 503 and the reminders' short in-activity retries (`is_unreachable`,
    `is_transient` below) treat it as the database not serving now, which it is.
    """

    def __init__(self, pool_name: str, max_size: int, timeout: float) -> None:
        super().__init__(
            f"no database connection free within {timeout:g} s: all {max_size} connections of the "
            f"{pool_name} pool are in use (or PostgreSQL does not accept new ones); the attempt is retried",
            type=str(ErrorType.DATABASE_BUSY),
        )


class _TimedAcquire(_AcquireBase):
    """asyncpg's acquire context, its TimeoutError said as DatabaseBusy (its pool and timeout are
    the base's own `pool` and `timeout`)."""

    pool: TimedPool
    timeout: float  # never None: TimedPool.acquire always passes one

    async def __aenter__(self) -> PoolConnectionProxy[asyncpg.Record]:
        try:
            return await super().__aenter__()
        except TimeoutError:
            raise self._busy() from None

    def __await__(self) -> Generator[Any, None, PoolConnectionProxy[asyncpg.Record]]:
        # `connection = await pool.acquire()` (released by hand) says it alike.
        try:
            return (yield from super().__await__())
        except TimeoutError:
            raise self._busy() from None

    def _busy(self) -> DatabaseBusy:
        return DatabaseBusy(self.pool.name, self.pool.get_max_size(), self.timeout)


class TimedPool(_PoolBase):
    """A pool whose `acquire()` (also inside `pool.execute()`, `fetch()`, ...) waits at most
    `acquire_timeout` seconds, then raises DatabaseBusy: asyncpg's default waits forever, so a
    busy pool would hold an activity until Temporal timed it out, with no word of why."""

    def __init__(self, *args: Any, name: str, acquire_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.name = name
        self._acquire_timeout = acquire_timeout

    def acquire(self, *, timeout: float | None = None) -> PoolAcquireContext[asyncpg.Record]:
        return _TimedAcquire(self, self._acquire_timeout if timeout is None else timeout)


def create_pool(
    settings: Settings,
    *,
    dsn: str | None = None,
    name: str = "main",
    min_size: int | None = None,
    max_size: int | None = None,
    command_timeout: float | None = None,
) -> TimedPool:
    """A pool to be entered with `async with`; `dsn` overrides the settings' URL (tests), the
    keywords the settings' sizes and command timeout (the worker's upload pool)."""
    database = settings.database
    # asyncpg.create_pool has no pool class parameter: the rest of its keywords keep its own
    # defaults, read from its signature so an asyncpg upgrade cannot leave them behind.
    return TimedPool(
        dsn or settings.require_database_url(),
        **_CREATE_POOL_DEFAULTS,
        name=name,
        acquire_timeout=database.acquire_timeout_seconds,
        min_size=database.pool_min_size if min_size is None else min_size,
        max_size=database.pool_max_size if max_size is None else max_size,
        command_timeout=database.command_timeout_seconds if command_timeout is None else command_timeout,
    )


_CREATE_POOL_DEFAULTS: dict[str, Any] = {
    name: parameter.default
    for name, parameter in inspect.signature(asyncpg.create_pool).parameters.items()
    if name in {"max_queries", "max_inactive_connection_lifetime", "loop", "connection_class", "record_class"}
}


def create_upload_pool(settings: Settings) -> TimedPool:
    """The worker's pool for the exports' COPYs, one connection per upload slot, opened on demand.

    Its command timeout is the COPY's (PETCARE_EXPORT__COPY_TIMEOUT_SECONDS), not the short
    statements': asyncpg prepares a COPY's query (to quote its arguments) under the command
    timeout, so a table lock held longer than that would otherwise fail the export there.
    """
    return create_pool(
        settings,
        name="export upload",
        min_size=0,
        max_size=settings.export.upload_concurrency,
        command_timeout=settings.export.copy_timeout_seconds,
    )


# Class 08 (connection exceptions) and 57 (operator intervention: shutdown, starting up), and the
# server's connection limit: the database cannot serve now, whatever the request.
_UNAVAILABLE = (
    OSError,  # refused, reset, unreachable host
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.TooManyConnectionsError,
)


def is_unreachable(error: BaseException) -> bool:
    """True for errors that mean "cannot talk to PostgreSQL" rather than "PostgreSQL said no"."""
    if isinstance(error, _UNAVAILABLE):
        return True
    # asyncpg's InterfaceError also covers misuse (a bug): only a closed connection or pool counts.
    return isinstance(error, asyncpg.InterfaceError) and ("closed" in str(error) or "closing" in str(error))


def is_transient(error: BaseException) -> bool:
    """Faults that pass within seconds: unreachable (a dropped connection, a failover) or a
    serialization conflict. Worth a short wait and another try."""
    return is_unreachable(error) or isinstance(error, asyncpg.exceptions.TransactionRollbackError)


async def store_exists(connection: Connection, store_id: UUID) -> bool:
    """Whether the store exists: the one check every API route naming a store makes first (the
    stores table belongs to the main backend; every job reads it)."""
    return bool(await connection.fetchval("SELECT EXISTS (SELECT 1 FROM stores WHERE id = $1)", store_id))
