"""The web view's only ways into the catalog: the read-only path of ``archive sql``.

Both functions here stand on :mod:`archive.catalog.readonly`: SQLite opened through a
``mode=ro`` URI with ``query_only`` and a read-only authorizer, PostgreSQL as the
read-only role (``ARCHIVE_READONLY_DB_URL``, made by ``archive db grant``) in read-only
transactions with statement and lock timeouts, so the database itself refuses any write,
whatever a page or the SQL page sends.
"""
from __future__ import annotations

from sqlalchemy.engine import Engine

from ..catalog.readonly import ReadonlyResult, readonly_engine, run_readonly
from ..config import Settings

#: the SQL page reads at most this many rows of a result
SQL_ROW_LIMIT = 10000

_ENGINES: dict[tuple, Engine] = {}


def catalog_engine(settings: Settings) -> Engine:
    """Return the read-only engine every page and endpoint reads the catalog through.

    Parameters
    ----------
    settings : Settings
        The archive's settings (``db_url``, ``readonly_db_url``, SQL timeouts).

    Returns
    -------
    sqlalchemy.engine.Engine
        :func:`archive.catalog.readonly.readonly_engine`, one per read-only URL per process.

    Raises
    ------
    archive.catalog.readonly.UnsafeRole
        On PostgreSQL without a read-only URL, or (on first connect) with a role that can write.
    """
    key = (settings.db_url, settings.readonly_db_url)
    engine = _ENGINES.get(key)
    if engine is None:
        engine = _ENGINES[key] = readonly_engine(settings)
    return engine


def dispose() -> None:
    """Close the web view's engines (tests, shutdown)."""
    for engine in _ENGINES.values():
        engine.dispose()
    _ENGINES.clear()


def run_sql(settings: Settings, sql: str) -> ReadonlyResult:
    """Run the SQL page's statement on the read-only path of ``archive sql``.

    Parameters
    ----------
    settings : Settings
        The archive's settings.
    sql : str
        One statement, as typed.

    Returns
    -------
    archive.catalog.readonly.ReadonlyResult
        Columns, at most :data:`SQL_ROW_LIMIT` rows, and whether there were more.

    Raises
    ------
    archive.catalog.readonly.ReadonlyError
        StatementRefused (e.g. a write, refused by the database), StatementTimeout, UnsafeRole.
    """
    return run_readonly(settings, sql, limit=SQL_ROW_LIMIT)
