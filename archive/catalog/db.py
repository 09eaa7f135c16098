"""Engines, sessions and schema migration of the catalog.

The schema is created and upgraded only by Alembic (``migrations/``): :func:`upgrade`
runs ``alembic upgrade head`` programmatically. Sessions are short: open one around
database work with :func:`session_scope`, never across a calibration.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

#: the Alembic environment (``migrations/``, a package beside ``archive``)
MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


_ENGINES: dict[str, Engine] = {}


def get_engine(url: str) -> Engine:
    """Return the process-wide engine for a database URL (created on first use).

    SQLite gets foreign keys and a busy timeout; PostgreSQL a small pool with pre-ping so a
    restarted server costs a reconnect, not a failed job.
    """
    engine = _ENGINES.get(url)
    if engine is None:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"timeout": 30})
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = create_engine(url, pool_size=5, max_overflow=5, pool_pre_ping=True)
        _ENGINES[url] = engine
    return engine


def dispose_engines() -> None:
    """Close and forget every engine (after a fork, and in tests)."""
    for engine in _ENGINES.values():
        engine.dispose()
    _ENGINES.clear()


@contextlib.contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """Open a short transaction: commit on success, roll back on error, always close.

    Parameters
    ----------
    url : str
        The catalog's database URL.

    Yields
    ------
    sqlalchemy.orm.Session
        A session whose objects stay usable after the commit (``expire_on_commit=False``).
    """
    factory = sessionmaker(bind=get_engine(url), expire_on_commit=False)
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def alembic_config(url: str):
    """Return an Alembic Config pointing at this project's migrations and the given database."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the catalog schema to ``revision`` with ``alembic upgrade`` (idempotent)."""
    from alembic import command

    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(url), revision)


def current_revision(url: str) -> str | None:
    """Return the Alembic revision the catalog is at, or None if it was never migrated."""
    from alembic.runtime.migration import MigrationContext

    with get_engine(url).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
