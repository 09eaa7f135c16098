"""The read-only path (archive.catalog.readonly, `archive sql`) tried as a hostile user would.

Every class of attack from issue 11 is tried in several forms on the real PostgreSQL (as
the role `archive db grant` makes) and on SQLite; each must be refused and leave the
catalog unchanged: the row count of every table and a full dump are compared before and
after. Files the attacks try to create must not exist afterwards.
"""
from __future__ import annotations

import sqlite3
import subprocess
import uuid

import psycopg
import pytest
from sqlalchemy import inspect
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from archive.catalog.db import get_engine, session_scope
from archive.catalog.models import CrdsContext
from archive.catalog.readonly import (
    StatementRefused,
    StatementTimeout,
    UnsafeRole,
    readonly_engine,
    run_readonly,
)
from archive.cli import app


@pytest.fixture
def catalog(settings):
    """A catalog with a few rows in it."""
    with session_scope(settings.db_url) as s:
        for i in range(3):
            s.add(CrdsContext(name=f"jwst_{1000 + i}.pmap", in_use=(i == 2)))
    return settings


def _pg_conninfo(url: str) -> str:
    u = make_url(url)
    return f"host={u.host} port={u.port or 5432} user={u.username} dbname={u.database}"


def snapshot(s) -> tuple[dict, str]:
    """Row counts of every table, and a full dump (schema, data, privileges)."""
    tables = sorted(inspect(get_engine(s.db_url)).get_table_names())
    with get_engine(s.db_url).connect() as conn:
        from sqlalchemy import text

        counts = {t: conn.execute(text(f'SELECT count(*) FROM "{t}"')).scalar() for t in tables}
    if s.db_url.startswith("sqlite"):
        conn = sqlite3.connect(make_url(s.db_url).database)
        dump = "\n".join(conn.iterdump())
        conn.close()
    else:
        u = make_url(s.db_url)
        dump = subprocess.run(["pg_dump", "-h", u.host, "-p", str(u.port or 5432), "-U", u.username,
                               "--no-sync", u.database], check=True, capture_output=True, text=True).stdout
        # pg_dump's \restrict line carries a random key per run
        dump = "\n".join(line for line in dump.splitlines() if not line.startswith(("\\restrict", "\\unrestrict")))
    return counts, dump


def is_pg(s) -> bool:
    return not s.db_url.startswith("sqlite")


def refused_all(s, statements, tmp_path, error=StatementRefused, **kw):
    """Run every statement; each must raise ``error``; the catalog and tmp_path stay as they were."""
    before = snapshot(s)
    files = set(tmp_path.rglob("*"))
    for sql in statements:
        with pytest.raises(error):
            run_readonly(s, sql.format(tmp=tmp_path), **kw)
    after = snapshot(s)
    assert after[0] == before[0]
    assert after[0]["crds_contexts"] == 3
    assert after[1] == before[1]
    assert set(tmp_path.rglob("*")) == files, "an attack created a file"


def test_reads_work_and_rows_are_capped(catalog):
    r = run_readonly(catalog, "SELECT name FROM crds_contexts ORDER BY name")
    assert r.columns == ["name"] and [x[0] for x in r.rows] == ["jwst_1000.pmap", "jwst_1001.pmap", "jwst_1002.pmap"]
    assert not r.truncated
    r = run_readonly(catalog, "SELECT name FROM crds_contexts WHERE in_use = :u", {"u": True})
    assert r.rows == [("jwst_1002.pmap",)]
    r = run_readonly(catalog, "SELECT name FROM crds_contexts ORDER BY name", limit=2)
    assert len(r.rows) == 2 and r.truncated
    # rows stream: a query of a billion rows returns its first ones well inside a 5 s timeout
    r = run_readonly(catalog, "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 1000000000) "
                              "SELECT n FROM c", limit=7, statement_timeout_s=5)
    assert [x[0] for x in r.rows] == list(range(1, 8)) and r.truncated
    assert run_readonly(catalog, "SELECT '100%' AS p").rows == [("100%",)]
    with readonly_engine(catalog).connect() as conn:
        from sqlalchemy import text

        assert conn.execute(text("SELECT count(*) FROM crds_contexts")).scalar() == 3


def test_multiple_statements_refused(catalog, tmp_path):
    refused_all(catalog, [
        "SELECT 1; DELETE FROM crds_contexts",
        "SELECT 1; COMMIT; SET default_transaction_read_only = off; DROP TABLE exposures",
        "SELECT 1;\nINSERT INTO crds_contexts (name, first_seen, in_use) VALUES ('x', CURRENT_TIMESTAMP, false)",
        "/* a comment; */ SELECT 1 ; CREATE TABLE evil (a int)",
        "SELECT 1; ROLLBACK; DELETE FROM crds_contexts",
    ], tmp_path)


def test_plain_writes_refused(catalog, tmp_path):
    refused_all(catalog, [
        "INSERT INTO crds_contexts (name, first_seen, in_use) VALUES ('x', CURRENT_TIMESTAMP, false)",
        "UPDATE crds_contexts SET in_use = false",
        "DELETE FROM crds_contexts",
        "DROP TABLE exposures",
        "CREATE TABLE evil (a int)",
        "CREATE TEMP TABLE evil (a int)",
        "ALTER TABLE crds_contexts ADD COLUMN evil int",
        "CREATE VIEW evil AS SELECT 1",
        "CREATE INDEX evil ON crds_contexts (in_use)",
    ] + (["TRUNCATE crds_contexts", "GRANT ALL ON crds_contexts TO PUBLIC",
          "SELECT * FROM crds_contexts FOR UPDATE", "SELECT nextval('crds_contexts_id_seq')",
          "SELECT setval('crds_contexts_id_seq', 100)", "CALL evil()", "DO $$ BEGIN DELETE FROM crds_contexts; END $$"]
         if is_pg(catalog) else ["REPLACE INTO crds_contexts (id, name, first_seen, in_use) "
                                 "VALUES (1, 'x', CURRENT_TIMESTAMP, false)", "REINDEX", "ANALYZE"]), tmp_path)


def test_dml_inside_ctes_refused(catalog, tmp_path):
    if is_pg(catalog):
        statements = [
            "WITH d AS (DELETE FROM crds_contexts RETURNING *) SELECT * FROM d",
            "WITH u AS (UPDATE crds_contexts SET in_use = false RETURNING id) SELECT count(*) FROM u",
            "WITH i AS (INSERT INTO crds_contexts (name, first_seen, in_use) VALUES ('x', now(), false) "
            "RETURNING 1) SELECT 1",
            "SELECT * FROM (WITH d AS (DELETE FROM crds_contexts RETURNING 1) SELECT * FROM d) s",
        ]
    else:
        statements = [
            "WITH c AS (SELECT id FROM crds_contexts) DELETE FROM crds_contexts WHERE id IN (SELECT id FROM c)",
            "WITH c AS (SELECT 1) UPDATE crds_contexts SET in_use = 0",
            "WITH c AS (SELECT 'x') INSERT INTO crds_contexts (name, first_seen, in_use) "
            "SELECT 'x', CURRENT_TIMESTAMP, 0 FROM c",
        ]
    refused_all(catalog, statements, tmp_path)


def test_turning_read_only_off_refused(catalog, tmp_path):
    if not is_pg(catalog):
        refused_all(catalog, ["PRAGMA query_only = OFF", "PRAGMA query_only = 0", "PRAGMA query_only=false"], tmp_path)
        return
    refused_all(catalog, [
        "SET TRANSACTION READ WRITE",
        "SET default_transaction_read_only = off",
        "SET transaction_read_only = off",
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
        "RESET default_transaction_read_only",
        "BEGIN READ WRITE",
        "COMMIT",
        "SELECT set_config('transaction_read_only', 'off', true)",
        "SELECT set_config('transaction_read_only', 'off', false)",
    ], tmp_path)
    # set_config() is a function a SELECT may call: any change of the session's settings is
    # refused (the change would die with the statement's own connection anyway), wherever in
    # the result the call is made, through dynamic SQL too
    refused_all(catalog, [
        "SELECT set_config('default_transaction_read_only', 'off', false)",
        "SELECT set_config('statement_timeout', '0', false)",
        "SELECT set_config('lock_timeout', '0', true)",
        "SELECT CASE WHEN n = 2500 THEN set_config('default_transaction_read_only', 'off', false) END "
        "FROM generate_series(1, 3000) n",
        "SELECT query_to_xml('SELECT set_config(''default_transaction_read_only'', ''off'', false)', false, false, '')",
    ], tmp_path)
    assert run_readonly(catalog, "SELECT current_setting('default_transaction_read_only')").rows == [("on",)]
    refused_all(catalog, ["DELETE FROM crds_contexts",
                          "SELECT set_config('default_transaction_read_only', 'off', false) "
                          "FROM (SELECT 1) s, LATERAL (SELECT 1 FROM crds_contexts FOR UPDATE) x"], tmp_path)


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)  # a PostgreSQL attack class
def test_copy_refused(catalog, tmp_path):
    refused_all(catalog, [
        "COPY crds_contexts TO '{tmp}/dump.csv'",
        "COPY (SELECT 1) TO PROGRAM 'touch {tmp}/owned'",
        "COPY crds_contexts FROM '/etc/hostname'",
        "COPY crds_contexts FROM PROGRAM 'id'",
        "COPY crds_contexts TO STDOUT",
    ], tmp_path)


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)  # a PostgreSQL attack class
def test_large_objects_refused(catalog, tmp_path):
    refused_all(catalog, [
        "SELECT lo_import('/etc/hostname')",
        "SELECT lo_create(0)",
        "SELECT lo_creat(-1)",
        "SELECT lo_from_bytea(0, 'x')",
        "SELECT lo_export(1, '{tmp}/lo')",
        "SELECT lo_unlink(1)",
    ], tmp_path)
    admin = psycopg.connect(_pg_conninfo(catalog.db_url))
    assert admin.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()[0] == 0
    admin.close()


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)  # a PostgreSQL attack class
def test_server_file_functions_refused(catalog, tmp_path):
    refused_all(catalog, [
        "SELECT pg_read_file('/etc/passwd')",
        "SELECT pg_read_file('postgresql.conf')",
        "SELECT pg_read_binary_file('/etc/passwd')",
        "SELECT pg_ls_dir('.')",
        "SELECT pg_stat_file('/etc/passwd')",
        "SELECT * FROM pg_ls_logdir()",
        "SELECT pg_reload_conf()",
    ], tmp_path)


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)  # a PostgreSQL attack class
def test_terminating_backends_refused(catalog, tmp_path):
    victim = psycopg.connect(_pg_conninfo(catalog.db_url))
    pid = victim.execute("SELECT pg_backend_pid()").fetchone()[0]
    refused_all(catalog, [
        f"SELECT pg_terminate_backend({pid})",
        f"SELECT pg_cancel_backend({pid})",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity",
        "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid()",
    ], tmp_path)
    assert victim.execute("SELECT 1").fetchone() == (1,)  # still alive
    victim.close()


def test_lock_and_sleep_bounded(catalog, tmp_path):
    if is_pg(catalog):
        refused_all(catalog, ["LOCK TABLE crds_contexts IN ACCESS EXCLUSIVE MODE",
                              "SELECT pg_advisory_xact_lock(1), 1 FROM crds_contexts FOR SHARE"], tmp_path)
        refused_all(catalog, ["SELECT pg_sleep(30)",
                              "SELECT set_config('statement_timeout', '0', false), pg_sleep(30)",
                              "SELECT pg_sleep(1) FROM generate_series(1, 30)"],
                    tmp_path, error=StatementTimeout, statement_timeout_s=0.5)
        # a writer holding a lock delays a reader by the lock timeout, no more
        writer = psycopg.connect(_pg_conninfo(catalog.db_url))
        writer.execute("LOCK TABLE crds_contexts IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(StatementTimeout, match="lock timeout"):
            run_readonly(catalog, "SELECT count(*) FROM crds_contexts", lock_timeout_s=0.3)
        writer.rollback()
        writer.close()
    else:
        refused_all(catalog, ["WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c) "
                              "SELECT count(*) FROM c",
                              "SELECT count(*) FROM crds_contexts a, crds_contexts b, (WITH RECURSIVE c(n) AS "
                              "(SELECT 1 UNION ALL SELECT n + 1 FROM c) SELECT n FROM c) x"],
                    tmp_path, error=StatementTimeout, statement_timeout_s=0.5)
        writer = sqlite3.connect(make_url(catalog.db_url).database)
        writer.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StatementTimeout):
            run_readonly(catalog, "SELECT count(*) FROM crds_contexts", lock_timeout_s=0.3)
        writer.rollback()
        writer.close()
    assert run_readonly(catalog, "SELECT count(*) FROM crds_contexts").rows == [(3,)]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # SQLite's own attack classes
def test_sqlite_file_and_extension_attacks_refused(catalog, tmp_path):
    refused_all(catalog, [
        "ATTACH DATABASE '{tmp}/evil.db' AS evil",
        "ATTACH '{tmp}/evil2.db' AS e2",
        "DETACH DATABASE main",
        "VACUUM",
        "VACUUM INTO '{tmp}/copy.db'",
        "VACUUM main INTO '{tmp}/copy2.db'",
        "PRAGMA user_version = 7",
        "PRAGMA journal_mode = WAL",
        "PRAGMA writable_schema = ON",
        "PRAGMA foreign_keys = OFF",
        "PRAGMA temp_store_directory = '{tmp}'",
        "PRAGMA wal_checkpoint",
        "PRAGMA optimize",
        "PRAGMA incremental_vacuum",
        "SELECT load_extension('/usr/lib/x86_64-linux-gnu/libsqlite3.so.0')",
        "SELECT load_extension('mod_spatialite')",
        "SELECT writefile('{tmp}/w', 'x')",
    ], tmp_path)
    assert run_readonly(catalog, "PRAGMA table_info(crds_contexts)").rows  # a read of the schema is fine


def test_unsafe_roles_refused(catalog, tmp_path):
    if not is_pg(catalog):
        # the catalog file itself is opened read-only: a write fails even on the writer's URL
        refused_all(catalog.with_(readonly_db_url=catalog.db_url), ["DELETE FROM crds_contexts"], tmp_path)
        return
    with pytest.raises(UnsafeRole, match="superuser"):
        run_readonly(catalog.with_(readonly_db_url=catalog.db_url), "SELECT 1")
    with pytest.raises(UnsafeRole, match="ARCHIVE_READONLY_DB_URL"):
        run_readonly(catalog.with_(readonly_db_url=None), "SELECT 1")
    # a non-superuser that may write one table is no read-only role either
    role = f"rw_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(_pg_conninfo(catalog.db_url), autocommit=True)
    try:
        admin.execute(f"CREATE ROLE {role} LOGIN")
        admin.execute(f"GRANT SELECT, INSERT ON crds_contexts TO {role}")
        url = make_url(catalog.db_url).set(username=role).render_as_string(hide_password=False)
        with pytest.raises(UnsafeRole, match="may write 1 catalog table"):
            run_readonly(catalog.with_(readonly_db_url=url), "SELECT 1")
        with pytest.raises(UnsafeRole):
            with readonly_engine(catalog.with_(readonly_db_url=url)).connect():
                pass
    finally:
        admin.execute(f"REVOKE ALL ON crds_contexts FROM {role}")
        admin.execute(f"DROP ROLE {role}")
        admin.close()


def test_cli_sql(catalog, monkeypatch, tmp_path):
    monkeypatch.setenv("ARCHIVE_DB_URL", catalog.db_url)
    if catalog.readonly_db_url:
        monkeypatch.setenv("ARCHIVE_READONLY_DB_URL", catalog.readonly_db_url)
    runner = CliRunner()
    base = ["--data-dir", str(catalog.data_dir), "sql"]
    before = snapshot(catalog)
    res = runner.invoke(app, base + ["SELECT name FROM crds_contexts ORDER BY name", "--json", "--limit", "2"])
    assert res.exit_code == 0, res.output
    assert res.stdout.count('"name"') == 2 and "jwst_1001.pmap" in res.stdout and "jwst_1002" not in res.stdout
    for hostile in ("SELECT 1; DELETE FROM crds_contexts", "DELETE FROM crds_contexts",
                    "WITH d AS (DELETE FROM crds_contexts RETURNING 1) SELECT 1"):
        res = runner.invoke(app, base + [hostile])
        assert res.exit_code == 1, (hostile, res.output)
    if is_pg(catalog):
        monkeypatch.setenv("ARCHIVE_READONLY_DB_URL", catalog.db_url)  # the superuser
        res = runner.invoke(app, base + ["SELECT 1"])
        assert res.exit_code == 2 and "superuser" in res.output
        monkeypatch.delenv("ARCHIVE_READONLY_DB_URL")
        res = runner.invoke(app, base + ["SELECT 1"])
        assert res.exit_code == 2 and "archive db grant" in res.output
    assert snapshot(catalog) == before


def test_cli_db_grant(pg_url, tmp_path, monkeypatch):
    """`archive db grant` makes a role that `archive sql` accepts and that can only read."""
    from tests.conftest import readonly_role

    monkeypatch.setenv("ARCHIVE_DB_URL", pg_url)
    runner = CliRunner()
    res = runner.invoke(app, ["--data-dir", str(tmp_path / "d"), "init"])
    assert res.exit_code == 0, res.output
    role = readonly_role(pg_url)
    res = runner.invoke(app, ["--data-dir", str(tmp_path / "d"), "db", "grant", "--role", role])
    assert res.exit_code == 0, res.output
    monkeypatch.setenv("ARCHIVE_READONLY_DB_URL", make_url(pg_url).set(username=role)
                       .render_as_string(hide_password=False))
    res = runner.invoke(app, ["--data-dir", str(tmp_path / "d"), "sql", "SELECT count(*) AS n FROM exposures",
                              "--json"])
    assert res.exit_code == 0, res.output
    assert '"n": 0' in res.stdout
    res = runner.invoke(app, ["--data-dir", str(tmp_path / "d"), "db", "grant", "--role", "Bad-Name"])
    assert res.exit_code == 2


def test_owner_that_is_not_superuser(pg_url):
    """docker-compose's layout: the application role owns the schema but is no superuser; an
    administrator made the read-only role; `grant_readonly` as the owner only grants."""
    from archive.catalog.db import dispose_engines, upgrade
    from archive.catalog.readonly import grant_readonly
    from archive.config import load_settings

    tag = uuid.uuid4().hex[:8]
    owner, ro = f"own_{tag}", f"ro_{tag}"
    u = make_url(pg_url)
    admin = psycopg.connect(_pg_conninfo(pg_url), autocommit=True)
    try:
        admin.execute(f"CREATE ROLE {owner} LOGIN NOSUPERUSER NOCREATEROLE")
        admin.execute(f"CREATE ROLE {ro} LOGIN NOSUPERUSER")
        admin.execute(f'ALTER DATABASE "{u.database}" OWNER TO {owner}')
        with psycopg.connect(_pg_conninfo(pg_url), autocommit=True) as db:
            db.execute(f"ALTER SCHEMA public OWNER TO {owner}")
        owner_url = u.set(username=owner).render_as_string(hide_password=False)
        upgrade(owner_url)
        done = grant_readonly(owner_url, ro)
        assert any("exists" in line for line in done) and any("SELECT" in line for line in done)
        with pytest.raises(ValueError, match="may not create roles"):
            grant_readonly(owner_url, f"missing_{tag}")
        s = load_settings("/nonexistent-data-dir").with_(
            db_url=owner_url, readonly_db_url=u.set(username=ro).render_as_string(hide_password=False))
        assert run_readonly(s, "SELECT count(*) FROM exposures").rows == [(0,)]
        with pytest.raises(StatementRefused):
            run_readonly(s, "DELETE FROM exposures")
        with pytest.raises(UnsafeRole, match="owns or may write"):
            run_readonly(s.with_(readonly_db_url=owner_url), "SELECT 1")
    finally:
        dispose_engines()
        with psycopg.connect(_pg_conninfo(pg_url), autocommit=True) as db:
            for role in (owner, ro):
                db.execute(f"REASSIGN OWNED BY {role} TO postgres")
                db.execute(f"DROP OWNED BY {role}")
        admin.execute(f'ALTER DATABASE "{u.database}" OWNER TO postgres')
        admin.execute(f"DROP ROLE IF EXISTS {owner}")
        admin.execute(f"DROP ROLE IF EXISTS {ro}")
        admin.close()


def test_readonly_engine_refuses_writes(catalog, tmp_path):
    """The web view's engine is the same read-only path: its connections cannot write."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    before = snapshot(catalog)
    engine = readonly_engine(catalog)
    for sql in ("DELETE FROM crds_contexts", "UPDATE crds_contexts SET in_use = false",
                "CREATE TABLE evil (a int)", "DROP TABLE exposures"):
        with engine.connect() as conn, pytest.raises(DBAPIError):
            conn.execute(text(sql))
    if not is_pg(catalog):
        with engine.connect() as conn, pytest.raises(DBAPIError):
            conn.execute(text(f"ATTACH DATABASE '{tmp_path / 'evil.db'}' AS evil"))
        assert not (tmp_path / "evil.db").exists()
    engine.dispose()
    assert snapshot(catalog) == before


def test_timeouts_default_to_30_and_2_seconds_and_are_configurable(catalog, monkeypatch):
    """The read-only path's statement and lock timeouts: 30 s and 2 s unless the settings
    (ARCHIVE_SQL_STATEMENT_TIMEOUT / ARCHIVE_SQL_LOCK_TIMEOUT) or `archive sql`'s options say
    otherwise; on PostgreSQL the session itself shows them."""
    from archive.config import load_settings

    for var in ("ARCHIVE_SQL_STATEMENT_TIMEOUT", "ARCHIVE_SQL_LOCK_TIMEOUT", "ARCHIVE_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    s = load_settings(catalog.data_dir)
    assert (s.sql_statement_timeout, s.sql_lock_timeout) == (30.0, 2.0)
    monkeypatch.setenv("ARCHIVE_SQL_STATEMENT_TIMEOUT", "0.5")
    monkeypatch.setenv("ARCHIVE_SQL_LOCK_TIMEOUT", "0.25")
    assert (load_settings(catalog.data_dir).sql_statement_timeout,
            load_settings(catalog.data_dir).sql_lock_timeout) == (0.5, 0.25)
    monkeypatch.setenv("ARCHIVE_DB_URL", catalog.db_url)
    if catalog.readonly_db_url:
        monkeypatch.setenv("ARCHIVE_READONLY_DB_URL", catalog.readonly_db_url)
    base = ["--data-dir", str(catalog.data_dir), "sql", "--json"]
    endless = ("SELECT pg_sleep(30)" if is_pg(catalog) else
               "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c) SELECT count(*) FROM c")
    res = CliRunner().invoke(app, base + [endless])  # the environment's 0.5 s
    assert res.exit_code == 1 and "timed out" in res.output and "0.5 s" in res.output, res.output
    if is_pg(catalog):
        show = "SELECT current_setting('statement_timeout') AS st, current_setting('lock_timeout') AS lt"
        assert run_readonly(catalog, show).rows == [("30s", "2s")]
        assert run_readonly(catalog.with_(sql_statement_timeout=7, sql_lock_timeout=0.5), show).rows == \
            [("7s", "500ms")]
        res = CliRunner().invoke(app, base + [show])
        assert res.exit_code == 0 and '"st": "500ms"' in res.stdout and '"lt": "250ms"' in res.stdout, res.output
        res = CliRunner().invoke(app, base + [show, "--statement-timeout", "9", "--lock-timeout", "1"])
        assert '"st": "9s"' in res.stdout and '"lt": "1s"' in res.stdout, res.output


def test_cli_sql_streams_with_a_default_cap_of_10000_rows(catalog, monkeypatch):
    """`archive sql` without --limit: the first 10,000 rows of a billion-row statement, read in
    batches (the statement does not run to its end: it would not finish in its timeout)."""
    monkeypatch.setenv("ARCHIVE_DB_URL", catalog.db_url)
    if catalog.readonly_db_url:
        monkeypatch.setenv("ARCHIVE_READONLY_DB_URL", catalog.readonly_db_url)
    # (a recursive WITH yields rows as it makes them on both back ends; PostgreSQL's
    # generate_series in FROM would first materialise its billion rows on the server)
    billion = "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 1000000000) SELECT n FROM c"
    res = CliRunner().invoke(app, ["--data-dir", str(catalog.data_dir), "sql", billion, "--json",
                                   "--statement-timeout", "20"])
    assert res.exit_code == 0, res.output[-500:]
    import json

    rows = json.loads(res.stdout)
    assert [r["n"] for r in rows] == list(range(1, 10_001))
    assert "more rows than --limit 10000" in res.stderr


def test_docker_compose_roles(tmp_path):
    """docker-compose's catalog roles as deploy/postgres-init.sql makes them (run here with its
    role and database names made unique): the application role (ARCHIVE_DB_URL) owns the
    catalog but is no superuser and cannot run programs or read server files; `archive init`
    and `archive db grant` as that role give a read-only role (ARCHIVE_READONLY_DB_URL) that
    `archive sql` accepts."""
    import re
    from pathlib import Path

    import yaml

    from archive.catalog.db import dispose_engines
    from archive.config import load_settings
    from tests.conftest import PG_ADMIN

    root = Path(__file__).resolve().parents[1]
    compose = yaml.safe_load((root / "docker-compose.yml").read_text())
    env = compose["x-archive-env"]
    app_url, ro_url = make_url(env["ARCHIVE_DB_URL"]), make_url(env["ARCHIVE_READONLY_DB_URL"])
    assert (app_url.username, ro_url.username) == ("archive", "archive_readonly")
    assert "archive init && archive db grant --role archive_readonly" in " ".join(compose["services"]["init"]
                                                                                 ["entrypoint"])
    for name, service in compose["services"].items():  # no archive service gets the cluster's superuser
        if name != "postgres":
            assert "postgres@" not in str(service.get("environment", "")), name

    tag = uuid.uuid4().hex[:8]
    own, ro = f"cmp_own_{tag}", f"cmp_ro_{tag}"
    script = (root / "deploy" / "postgres-init.sql").read_text()
    script = re.sub(r"\barchive_readonly\b", ro, script)
    script = re.sub(r"\barchive\b", own, script)  # the application role and its database
    admin = make_url(PG_ADMIN)
    psql = ["psql", "-v", "ON_ERROR_STOP=1", "-q", "-h", admin.host, "-p", str(admin.port or 5432), "-U",
            admin.username, "-d", admin.database]
    base = admin.set(database=own)
    owner_url = base.set(username=own, password=own).render_as_string(hide_password=False)
    reader_url = base.set(username=ro, password="readonly").render_as_string(hide_password=False)
    try:
        subprocess.run(psql, input=script, text=True, check=True, capture_output=True)
        s = load_settings(tmp_path / "data").with_(db_url=owner_url, readonly_db_url=reader_url)
        with psycopg.connect(_pg_conninfo(owner_url)) as conn:
            assert conn.execute("SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles "
                                "WHERE rolname = current_user").fetchone() == (False, False, False)
            for hostile in ("COPY (SELECT 1) TO PROGRAM 'id'", "SELECT pg_read_file('/etc/passwd')",
                            "SELECT pg_terminate_backend(pg_backend_pid())"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(hostile)
                conn.rollback()
        env = {"ARCHIVE_DB_URL": owner_url, "ARCHIVE_READONLY_DB_URL": reader_url, "ARCHIVE_CONFIG": ""}
        runner = CliRunner()
        for args in (["init"], ["db", "grant", "--role", ro]):
            res = runner.invoke(app, ["--data-dir", str(tmp_path / "data"), *args], env=env)
            assert res.exit_code == 0, res.output
        res = runner.invoke(app, ["--data-dir", str(tmp_path / "data"), "sql", "SELECT count(*) AS n FROM exposures",
                                  "--json"], env=env)
        assert res.exit_code == 0 and '"n": 0' in res.stdout, res.output
        with pytest.raises(UnsafeRole, match="owns or may write"):
            run_readonly(s.with_(readonly_db_url=owner_url), "SELECT 1")  # the owner is no read-only role
        with pytest.raises(StatementRefused):
            run_readonly(s, "SELECT pg_terminate_backend(pg_backend_pid())")
    finally:
        dispose_engines()
        with psycopg.connect(_pg_conninfo(PG_ADMIN), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{own}" WITH (FORCE)')
            conn.execute(f'DROP ROLE IF EXISTS "{ro}"')
            conn.execute(f'DROP ROLE IF EXISTS "{own}"')
