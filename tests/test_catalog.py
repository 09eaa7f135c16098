"""The schema comes from Alembic and matches the models; read-only SQL is enforced by the database."""
from __future__ import annotations

import pytest
from sqlalchemy import inspect

from archive.catalog.db import current_revision, get_engine, upgrade
from archive.catalog.provenance import readonly_query
from archive.catalog.readonly import StatementRefused


def test_migrations_create_every_table_and_view(settings):
    insp = inspect(get_engine(settings.db_url))
    tables = set(insp.get_table_names())
    from archive.catalog.models import Base

    assert set(Base.metadata.tables) <= tables
    assert {"product_provenance", "product_reference_provenance"} <= set(insp.get_view_names())
    from alembic.script import ScriptDirectory

    from archive.catalog.db import alembic_config

    head = ScriptDirectory.from_config(alembic_config(settings.db_url)).get_current_head()
    assert current_revision(settings.db_url) == head
    upgrade(settings.db_url)  # idempotent
    assert current_revision(settings.db_url) == head


def test_models_and_migrations_agree(settings):
    """Autogenerate finds nothing to add: the models describe exactly the migrated schema."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from archive.catalog.models import Base

    with get_engine(settings.db_url).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_sql_refuses_writes(settings):
    cols, rows = readonly_query(settings, "SELECT count(*) AS n FROM exposures")
    assert cols == ["n"] and rows == [(0,)]
    with pytest.raises(StatementRefused) as info:
        readonly_query(settings, "INSERT INTO crds_contexts (name, first_seen, in_use) "
                                 "VALUES ('jwst_x.pmap', CURRENT_TIMESTAMP, false)")
    # from the database itself: 'not authorized' (SQLite's authorizer), or PostgreSQL's parser (one SELECT only)
    assert "authorized" in str(info.value) or "syntax error" in str(info.value)
    assert readonly_query(settings, "SELECT count(*) FROM crds_contexts")[1] == [(0,)]
    with pytest.raises(StatementRefused):
        readonly_query(settings, "DROP TABLE exposures")
    assert readonly_query(settings, "SELECT count(*) FROM exposures")[1] == [(0,)]


def test_cli_sql_refuses_insert(settings, monkeypatch):
    from typer.testing import CliRunner

    from archive.cli import app

    monkeypatch.setenv("ARCHIVE_DB_URL", settings.db_url)
    if settings.readonly_db_url:
        monkeypatch.setenv("ARCHIVE_READONLY_DB_URL", settings.readonly_db_url)
    runner = CliRunner()
    res = runner.invoke(app, ["--data-dir", str(settings.data_dir), "sql",
                              "INSERT INTO crds_contexts (name, first_seen, in_use) "
                              "VALUES ('a', CURRENT_TIMESTAMP, false)"])
    assert res.exit_code == 1
    res = runner.invoke(app, ["--data-dir", str(settings.data_dir), "sql", "SELECT count(*) AS n FROM crds_contexts",
                              "--json"])
    assert res.exit_code == 0, res.output
    assert '"n": 0' in res.output


def test_migration_0009_merges_repeated_rejections(db_url):
    """Rejections recorded once per run before 0009 are merged into one row per (path, content,
    kind, reason), attempts counted, the latest time kept; another reason stays its own row."""
    from sqlalchemy import text

    from archive.catalog.db import get_engine, upgrade
    from archive.catalog.models import rejection_key

    upgrade(db_url, "0008")
    eng = get_engine(db_url)
    rows = [("/in/bad.fits", "a" * 64, "rejected", "truncated", "2026-12-01 10:00:00+00:00"),
            ("/in/bad.fits", "a" * 64, "rejected", "truncated", "2026-12-03 10:00:00+00:00"),
            ("/in/bad.fits", "a" * 64, "rejected", "truncated", "2026-12-02 10:00:00+00:00"),
            ("/in/bad.fits", None, "rejected", "unreadable", "2026-12-01 09:00:00+00:00")]
    with eng.begin() as conn:
        for path, sha, kind, reason, at in rows:
            conn.execute(text("INSERT INTO ingest_rejections (path, filename, sha256, kind, reason, rejected_at) "
                              "VALUES (:p, 'bad.fits', :s, :k, :r, :t)"),
                         {"p": path, "s": sha, "k": kind, "r": reason, "t": at})
    upgrade(db_url)
    with eng.connect() as conn:
        got = conn.execute(text("SELECT id, reason, attempts, rejected_at, rejection_key FROM ingest_rejections "
                                "ORDER BY id")).all()
    assert [(g[0], g[1], g[2]) for g in got] == [(1, "truncated", 3), (4, "unreadable", 1)]
    assert str(got[0][3]).startswith("2026-12-03 10:00:00")
    assert got[0][4] == rejection_key("/in/bad.fits", "a" * 64, "rejected", "truncated")
    assert got[1][4] == rejection_key("/in/bad.fits", None, "rejected", "unreadable")
