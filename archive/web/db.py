"""The web view's only ways into the catalog: a read-only engine and read-only SQL.

Both are built on the read-only path of ``archive sql`` (:mod:`archive.catalog.provenance`):
SQLite opened through a ``mode=ro`` URI with ``PRAGMA query_only``, PostgreSQL with
``default_transaction_read_only`` on (plus a statement timeout), so the database itself
refuses any write, whatever a page or the SQL page sends.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url

from ..catalog.provenance import readonly_query
from ..config import Settings

#: a page's statement is cancelled by PostgreSQL after this long (milliseconds)
STATEMENT_TIMEOUT_MS = 15000
#: the SQL page shows at most this many rows of a result
SQL_ROW_LIMIT = 10000

_ENGINES: dict[str, Engine] = {}


def catalog_engine(settings: Settings) -> Engine:
    """Return the read-only engine every page and endpoint reads the catalog through.

    Parameters
    ----------
    settings : Settings
        The archive's settings (``db_url``).

    Returns
    -------
    sqlalchemy.engine.Engine
        A pooled engine (one per URL per process) on which the database refuses writes.

    Raises
    ------
    ValueError
        For an in-memory SQLite catalog (there is no file to open read-only).
    """
    engine = _ENGINES.get(settings.db_url)
    if engine is not None:
        return engine
    url = make_url(settings.db_url)
    if url.get_backend_name() == "sqlite":
        db = url.database
        if not db or db == ":memory:":
            raise ValueError("the web view needs a file catalog (an in-memory SQLite cannot be opened read-only)")
        uri = f"file:{Path(db).resolve()}?mode=ro"

        def connect():
            return sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=30)

        engine = create_engine("sqlite://", creator=connect)

        @event.listens_for(engine, "connect")
        def _query_only(dbapi_connection, _record):
            dbapi_connection.execute("PRAGMA query_only = ON")
    else:
        options = f"-c default_transaction_read_only=on -c statement_timeout={STATEMENT_TIMEOUT_MS}"
        engine = create_engine(settings.db_url, connect_args={"options": options}, pool_size=5, max_overflow=5,
                               pool_pre_ping=True)
    _ENGINES[settings.db_url] = engine
    return engine


def dispose() -> None:
    """Close the web view's engines (tests, shutdown)."""
    for engine in _ENGINES.values():
        engine.dispose()
    _ENGINES.clear()


def run_sql(settings: Settings, sql: str) -> tuple[list[str], list[tuple]]:
    """Run the SQL page's statement on the read-only path of ``archive sql``.

    Parameters
    ----------
    settings : Settings
        The archive's settings.
    sql : str
        The statement as typed.

    Returns
    -------
    tuple of (list of str, list of tuple)
        Column names and at most :data:`SQL_ROW_LIMIT` rows.

    Raises
    ------
    Exception
        The database's own error, e.g. for a write ("read-only transaction").
    """
    cols, rows = readonly_query(settings, sql)
    return cols, rows[:SQL_ROW_LIMIT]
