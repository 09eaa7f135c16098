"""The one read-only path into the catalog: ``archive sql``, the web view, provenance SQL.

Read-only is enforced by the database and by the role, never by parsing the statement:

PostgreSQL
    The connection uses its own URL (``ARCHIVE_READONLY_DB_URL``), a role that
    :func:`grant_readonly` (``archive db grant``) makes with SELECT on the catalog's tables
    and views and nothing else. Before any statement runs, the role is checked: a
    superuser, a member of ``pg_execute_server_program`` / ``pg_read_server_files`` /
    ``pg_write_server_files`` / ``pg_write_all_data`` / ``pg_signal_backend``, or a role
    that owns or may change any catalog table is refused (:class:`UnsafeRole`). The
    statement runs in a ``READ ONLY`` transaction with ``statement_timeout`` and
    ``lock_timeout`` set, through a server-side cursor (``DECLARE ... CURSOR FOR``), so
    exactly one SELECT/VALUES statement is accepted (a second statement, SET, COPY,
    data-modifying WITH are errors of the server), and rows are fetched in batches up to
    the row cap.
SQLite
    The catalog file is opened with a ``mode=ro`` URI and ``PRAGMA query_only``, and an
    authorizer allows only reads: ATTACH, VACUUM (INTO), writing PRAGMAs,
    ``load_extension``, temporary tables and every write are refused before the statement
    is prepared. Python's sqlite3 refuses a second statement; a progress handler ends a
    statement past its timeout.

Errors are typed: :class:`StatementRefused` (the database or the authorizer refused it),
:class:`StatementTimeout` (statement or lock timeout), :class:`UnsafeRole` (the
connection could write), :class:`CatalogUnreachable` (no connection).
"""
from __future__ import annotations

import contextlib
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url

from ..config import Settings

#: default row cap of :func:`run_readonly` and ``archive sql --limit``
DEFAULT_LIMIT = 10_000
#: rows fetched from the server per round trip
BATCH = 500


class ReadonlyError(Exception):
    """Base class of the read-only path's errors."""


class StatementRefused(ReadonlyError):
    """The database (or SQLite's authorizer) refused the statement, or it is not one statement."""


class StatementTimeout(ReadonlyError):
    """The statement ran past its statement timeout, or waited past its lock timeout."""


class UnsafeRole(ReadonlyError):
    """The read-only connection's role could write, run programs or read server files."""


class CatalogUnreachable(ReadonlyError):
    """The read-only connection could not be opened (server down, wrong URL, authentication)."""


@dataclass
class ReadonlyResult:
    """Columns and rows of one read-only statement.

    Attributes
    ----------
    columns : list of str
        Column names, in order.
    rows : list of tuple
        At most ``limit`` rows.
    truncated : bool
        True when the statement had more rows than the cap.
    """

    columns: list[str]
    rows: list[tuple]
    truncated: bool = False


# --- SQLite -------------------------------------------------------------------------------

#: PRAGMAs a read-only statement may read (never with an argument that sets a value)
_SQLITE_READ_PRAGMAS = frozenset({
    "table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo",
    "foreign_key_list", "collation_list", "function_list", "pragma_list", "user_version",
    "schema_version", "read_uncommitted", "foreign_keys", "query_only", "encoding", "page_size",
    "page_count", "compile_options"})
#: PRAGMAs whose argument is a table or index name, not a value to set
_SQLITE_NAME_PRAGMAS = frozenset({"table_info", "table_xinfo", "table_list", "index_list", "index_info",
                                  "index_xinfo", "foreign_key_list"})
#: SQL functions refused on the read-only path
_SQLITE_FUNCTIONS_REFUSED = frozenset({"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"})
_SQLITE_ALLOWED = frozenset({sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE,
                             sqlite3.SQLITE_TRANSACTION, sqlite3.SQLITE_SAVEPOINT})


def _sqlite_authorizer(action: int, arg1, arg2, _db, _trigger) -> int:
    if action in _SQLITE_ALLOWED:
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_FUNCTION:
        return sqlite3.SQLITE_DENY if (arg2 or "").lower() in _SQLITE_FUNCTIONS_REFUSED else sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_PRAGMA:
        name = (arg1 or "").lower()
        if name in _SQLITE_READ_PRAGMAS and (arg2 is None or name in _SQLITE_NAME_PRAGMAS):
            return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


def _sqlite_path(url: str) -> Path:
    db = make_url(url).database
    if not db or db == ":memory:":
        raise StatementRefused("read-only SQL needs a file catalog, not an in-memory SQLite database")
    return Path(db).resolve()


def sqlite_readonly_connect(url: str, lock_timeout_s: float = 2.0) -> sqlite3.Connection:
    """Open a SQLite catalog read-only: ``mode=ro`` URI, ``query_only``, the read authorizer.

    Parameters
    ----------
    url : str
        A ``sqlite:///`` URL of a catalog file.
    lock_timeout_s : float
        How long to wait for a writer's lock (SQLite's busy timeout), in seconds.

    Returns
    -------
    sqlite3.Connection

    Raises
    ------
    StatementRefused
        For an in-memory database (there is no file to open read-only).
    """
    path = _sqlite_path(url)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=lock_timeout_s, check_same_thread=False)
    conn.execute("PRAGMA query_only = ON")
    if hasattr(conn, "enable_load_extension"):  # builds without extension support lack it
        conn.enable_load_extension(False)
    conn.set_authorizer(_sqlite_authorizer)
    return conn


@contextlib.contextmanager
def _sqlite_deadline(conn: sqlite3.Connection, seconds: float):
    deadline = time.monotonic() + seconds
    conn.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, 10_000)
    try:
        yield
    finally:
        conn.set_progress_handler(None, 0)


def _sqlite_error(exc: sqlite3.Error, timeout_s: float) -> ReadonlyError:
    msg = str(exc)
    if "interrupted" in msg:
        return StatementTimeout(f"statement ran past its timeout of {timeout_s:g} s")
    if "locked" in msg or "busy" in msg:
        return StatementTimeout(f"catalog locked by a writer: {msg}")
    return StatementRefused(msg)


# --- PostgreSQL ---------------------------------------------------------------------------

_PG_ROLE_CHECK = """
SELECT r.rolsuper, r.rolbypassrls, r.rolcreaterole, r.rolcreatedb, r.rolreplication,
       pg_has_role(current_user, 'pg_execute_server_program', 'MEMBER'),
       pg_has_role(current_user, 'pg_read_server_files', 'MEMBER'),
       pg_has_role(current_user, 'pg_write_server_files', 'MEMBER'),
       pg_has_role(current_user, 'pg_write_all_data', 'MEMBER'),
       pg_has_role(current_user, 'pg_signal_backend', 'MEMBER'),
       has_database_privilege(current_user, current_database(), 'CREATE'),
       (SELECT count(*) FROM pg_namespace n WHERE n.nspname NOT LIKE 'pg\\_%%'
            AND n.nspname <> 'information_schema' AND has_schema_privilege(current_user, n.oid, 'CREATE')),
       (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname NOT LIKE 'pg\\_%%' AND n.nspname <> 'information_schema'
           AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
           AND (pg_has_role(current_user, c.relowner, 'USAGE')
                OR has_table_privilege(current_user, c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE, TRIGGER')))
  FROM pg_roles r WHERE r.rolname = current_user
"""
_PG_ROLE_PROBLEMS = ("is a superuser", "bypasses row security", "may create roles", "may create databases",
                     "may replicate", "may run programs on the server (pg_execute_server_program)",
                     "may read server files (pg_read_server_files)",
                     "may write server files (pg_write_server_files)", "may write every table (pg_write_all_data)",
                     "may signal other backends (pg_signal_backend)", "may create schemas in the database",
                     "may create objects in {} schema(s)", "owns or may write {} catalog table(s)")


def check_pg_role(dbapi_conn) -> None:
    """Refuse a PostgreSQL connection whose role could write or reach the server's host.

    Parameters
    ----------
    dbapi_conn : psycopg.Connection
        An open connection (as the read-only role).

    Raises
    ------
    UnsafeRole
        Naming the role and each thing it may do that a read-only role must not.
    """
    with dbapi_conn.cursor() as cur:
        cur.execute("SELECT current_user")
        role = cur.fetchone()[0]
        cur.execute(_PG_ROLE_CHECK)
        row = cur.fetchone()
    problems = [p.format(v) for p, v in zip(_PG_ROLE_PROBLEMS, row, strict=True) if v]
    if problems:
        raise UnsafeRole(f"role {role!r} is not a read-only role: it " + "; it ".join(problems)
                         + ". Make one with `archive db grant` and set ARCHIVE_READONLY_DB_URL to it")


def readonly_url(settings: Settings) -> str:
    """Return the URL of the read-only connection.

    SQLite: ``readonly_db_url`` or the catalog's own URL (opened read-only). PostgreSQL:
    ``readonly_db_url`` (``ARCHIVE_READONLY_DB_URL``), which must be set.

    Raises
    ------
    UnsafeRole
        On PostgreSQL when no read-only URL is configured.
    """
    if settings.readonly_db_url:
        return settings.readonly_db_url
    if make_url(settings.db_url).get_backend_name() == "sqlite":
        return settings.db_url
    raise UnsafeRole("read-only SQL on PostgreSQL needs its own role: run `archive db grant` and set "
                     "ARCHIVE_READONLY_DB_URL to that role's URL (the catalog's own role can write)")


def _pg_options(statement_timeout_s: float, lock_timeout_s: float) -> str:
    return (f"-c default_transaction_read_only=on -c statement_timeout={int(statement_timeout_s * 1000)} "
            f"-c lock_timeout={int(lock_timeout_s * 1000)} -c idle_in_transaction_session_timeout="
            f"{int(max(statement_timeout_s, 1) * 2000)}")


def _pg_conninfo(url: str) -> dict:
    u = make_url(url)
    if u.get_backend_name() != "postgresql":
        raise StatementRefused(f"{u.render_as_string()}: not a PostgreSQL or SQLite URL")
    kw = {"host": u.host, "port": u.port, "user": u.username, "password": u.password, "dbname": u.database}
    kw.update({k: v for k, v in u.query.items() if isinstance(v, str)})
    return {k: v for k, v in kw.items() if v is not None}


def _pg_error(exc: Exception, statement_timeout_s: float, lock_timeout_s: float) -> ReadonlyError:
    import psycopg.errors as pe

    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, pe.LockNotAvailable):
        return StatementTimeout(f"waited past the lock timeout of {lock_timeout_s:g} s: {msg}")
    if isinstance(exc, pe.QueryCanceled):
        return StatementTimeout(f"ran past the statement timeout of {statement_timeout_s:g} s: {msg}")
    if isinstance(exc, pe.SyntaxError) or "multiple commands" in msg:
        return StatementRefused(f"{msg} (the read-only path runs exactly one SELECT, WITH ... SELECT or "
                                f"VALUES statement)")
    return StatementRefused(msg)


def _pg_params(sql: str, params: dict | None) -> tuple[str, dict | None]:
    """Named parameters are written ``:name`` on both back ends; psycopg wants ``%(name)s``."""
    if not params:
        return sql, None
    from sqlalchemy.dialects import postgresql

    compiled = text(sql).compile(dialect=postgresql.psycopg.dialect())
    return str(compiled), dict(params)


# --- the API --------------------------------------------------------------------------------

@contextlib.contextmanager
def stream_readonly(settings: Settings, sql: str, params: dict | None = None, limit: int = DEFAULT_LIMIT,
                    statement_timeout_s: float | None = None,
                    lock_timeout_s: float | None = None) -> Iterator[tuple[list[str], Iterator[tuple]]]:
    """Run one read-only statement and stream its rows.

    Parameters
    ----------
    settings : Settings
        The archive's settings (``readonly_db_url``, ``db_url``, the default timeouts).
    sql : str
        Exactly one statement (SELECT, WITH ... SELECT, VALUES; on SQLite also reading
        PRAGMAs). Named parameters are written ``:name``.
    params : dict, optional
        Values of the named parameters.
    limit : int
        At most this many rows are yielded (the row cap); the iterator then stops.
    statement_timeout_s, lock_timeout_s : float, optional
        Seconds; default the settings' ``sql_statement_timeout`` / ``sql_lock_timeout``.

    Yields
    ------
    (list of str, iterator of tuple)
        The column names and an iterator over at most ``limit`` rows, fetched in batches.

    Raises
    ------
    StatementRefused, StatementTimeout, UnsafeRole
        Also while iterating: a timeout can strike during a fetch, and on PostgreSQL a
        statement that changed a session setting (``set_config``) is refused at the first
        batch fetched after the change, before that batch's rows are yielded.
    CatalogUnreachable
        When the PostgreSQL connection cannot be opened.
    """
    st = settings.sql_statement_timeout if statement_timeout_s is None else statement_timeout_s
    lt = settings.sql_lock_timeout if lock_timeout_s is None else lock_timeout_s
    if limit < 0:
        raise ValueError(f"limit={limit}: must be >= 0")
    url = readonly_url(settings)
    if make_url(url).get_backend_name() == "sqlite":
        conn = sqlite_readonly_connect(url, lt)
        try:
            with _sqlite_deadline(conn, st):
                try:
                    cur = conn.execute(sql, params or {})
                except (sqlite3.Error, sqlite3.Warning) as exc:
                    raise _sqlite_error(exc, st) from exc
                cols = [d[0] for d in cur.description or []]

                def rows_sqlite():
                    left = limit
                    while left > 0:
                        try:
                            batch = cur.fetchmany(min(BATCH, left))
                        except sqlite3.Error as exc:
                            raise _sqlite_error(exc, st) from exc
                        if not batch:
                            return
                        left -= len(batch)
                        yield from (tuple(r) for r in batch)

                yield cols, rows_sqlite()
        finally:
            conn.close()
        return

    import psycopg

    conninfo = {"connect_timeout": 10, **_pg_conninfo(url)}  # the URL's own connect_timeout wins
    try:
        conn = psycopg.connect(**conninfo, options=_pg_options(st, lt))
    except psycopg.Error as exc:
        raise CatalogUnreachable(f"cannot connect as the read-only role: {exc}") from exc
    try:
        check_pg_role(conn)
        conn.rollback()
        conn.read_only = True
        query, values = _pg_params(sql, params)
        settings_before = _pg_settings(conn)
        cur = conn.cursor(name="archive_readonly")
        try:
            cur.execute(query, values)
            cols = [d.name for d in cur.description or []]
        except psycopg.Error as exc:
            raise _pg_error(exc, st, lt) from exc

        def rows_pg():
            left = limit
            while left > 0:
                try:
                    batch = cur.fetchmany(min(BATCH, left))
                except psycopg.Error as exc:
                    raise _pg_error(exc, st, lt) from exc
                # set_config() is a function a SELECT may call: a statement that changed any
                # of the session's settings (read-only, timeouts, role ...) is refused before
                # its rows are passed on (its change dies with this connection anyway)
                if _pg_settings(conn) != settings_before:
                    raise StatementRefused("refused: the statement changed the session's settings (set_config); "
                                           "archive sql runs read-only statements only")
                if not batch:
                    return
                left -= len(batch)
                yield from (tuple(r) for r in batch)

        yield cols, rows_pg()
    finally:
        with contextlib.suppress(Exception):
            conn.rollback()
        conn.close()


def _pg_settings(conn) -> str:
    """Return a digest of every run-time setting of the connection's session (``pg_settings``)."""
    import psycopg

    with conn.cursor() as c:
        try:
            c.execute("SELECT md5(string_agg(name || '=' || coalesce(setting, ''), ',' ORDER BY name)) "
                      "FROM pg_catalog.pg_settings")
        except psycopg.Error as exc:
            raise StatementRefused(f"refused: {exc}") from exc
        return c.fetchone()[0]


def run_readonly(settings: Settings, sql: str, params: dict | None = None, limit: int = DEFAULT_LIMIT,
                 statement_timeout_s: float | None = None, lock_timeout_s: float | None = None) -> ReadonlyResult:
    """Run one read-only statement and return at most ``limit`` rows.

    See :func:`stream_readonly` for the parameters; this reads one row past the cap to say
    whether the result was truncated.

    Returns
    -------
    ReadonlyResult

    Raises
    ------
    StatementRefused, StatementTimeout, UnsafeRole
    """
    with stream_readonly(settings, sql, params, limit + 1, statement_timeout_s, lock_timeout_s) as (cols, it):
        rows = list(it)
    return ReadonlyResult(cols, rows[:limit], truncated=len(rows) > limit)


def readonly_engine(settings: Settings) -> Engine:
    """Return a SQLAlchemy engine on the read-only path (for the web view).

    SQLite connections are opened as :func:`sqlite_readonly_connect` does; PostgreSQL
    connections as the read-only role with ``default_transaction_read_only``, the
    statement and lock timeouts, and the role checked on every new connection.

    Raises
    ------
    UnsafeRole
        On PostgreSQL without ``readonly_db_url``; on first connect, for a role that can write.
    """
    url = readonly_url(settings)
    st, lt = settings.sql_statement_timeout, settings.sql_lock_timeout
    if make_url(url).get_backend_name() == "sqlite":
        return create_engine("sqlite://", creator=lambda: sqlite_readonly_connect(url, lt), pool_pre_ping=False)
    engine = create_engine(url, connect_args={"options": _pg_options(st, lt)}, pool_size=5, max_overflow=5,
                           pool_pre_ping=True)

    @event.listens_for(engine, "connect")
    def _check(dbapi_conn, _record):  # noqa: ARG001
        check_pg_role(dbapi_conn)
        dbapi_conn.rollback()
        dbapi_conn.read_only = True

    return engine


def grant_readonly(db_url: str, role: str = "archive_readonly", password: str | None = None) -> list[str]:
    """Create (or update) the read-only role of a PostgreSQL catalog.

    The role may log in and SELECT the catalog's tables and views (those that exist now
    and those the catalog's owner creates later), nothing else; its sessions default to
    read-only transactions with 30 s statement and 2 s lock timeouts. Where the granting
    role may (a superuser), EXECUTE on ``pg_terminate_backend``/``pg_cancel_backend`` and
    the large-object writers is revoked from PUBLIC in this database.

    Parameters
    ----------
    db_url : str
        The catalog's URL, as its owner (or a role with CREATEROLE that owns the tables).
    role : str
        Name of the read-only role.
    password : str, optional
        Its password (left unchanged when not given).

    Returns
    -------
    list of str
        What was done, one line per action.

    Raises
    ------
    ValueError
        For a SQLite URL (nothing to grant: ``archive sql`` opens the file read-only), a
        role name that is not a plain identifier, or a missing role that the granting role
        may not create (it then only grants; an administrator makes the role).
    psycopg.Error
        When the granting role lacks a privilege it needs.
    """
    import re

    import psycopg
    from psycopg import sql as q

    if make_url(db_url).get_backend_name() == "sqlite":
        raise ValueError("SQLite has no roles: `archive sql` opens the catalog file read-only")
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", role):
        raise ValueError(f"role {role!r}: not a plain lower-case identifier")
    done: list[str] = []
    r = q.Identifier(role)
    with psycopg.connect(**_pg_conninfo(db_url), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        may_alter = conn.execute("SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user"
                                 ).fetchone()[0]
        attrs = q.SQL("LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT")
        if not may_alter:
            if not exists:
                raise ValueError(f"role {role!r} does not exist and this role may not create roles: create it "
                                 f"as an administrator (docker-compose's postgres init does), then grant again")
            done.append(f"role {role} exists (made by an administrator; its attributes left as they are)")
        else:
            if exists:
                conn.execute(q.SQL("ALTER ROLE {} ").format(r) + attrs)
                done.append(f"role {role} exists: made NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
                            "NOBYPASSRLS")
            else:
                conn.execute(q.SQL("CREATE ROLE {} ").format(r) + attrs)
                done.append(f"created role {role}")
            if password is not None:
                conn.execute(q.SQL("ALTER ROLE {} PASSWORD {}").format(r, q.Literal(password)))
                done.append("set its password")
            for setting, value in (("default_transaction_read_only", "on"), ("statement_timeout", "30s"),
                                   ("lock_timeout", "2s"), ("idle_in_transaction_session_timeout", "60s")):
                conn.execute(q.SQL("ALTER ROLE {} SET {} = {}").format(r, q.Identifier(setting),
                                                                       q.Literal(value)))
            done.append("its sessions: read-only transactions, statement_timeout 30s, lock_timeout 2s")
        dbname = conn.execute("SELECT current_database()").fetchone()[0]
        owner = conn.execute("SELECT current_user").fetchone()[0]
        conn.execute(q.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(q.Identifier(dbname), r))
        conn.execute(q.SQL("REVOKE CREATE, TEMPORARY ON DATABASE {} FROM {}").format(q.Identifier(dbname), r))
        conn.execute(q.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {}").format(r))
        conn.execute(q.SQL("REVOKE CREATE ON SCHEMA public FROM {}").format(r))
        conn.execute(q.SQL("GRANT USAGE ON SCHEMA public TO {}").format(r))
        conn.execute(q.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(r))
        conn.execute(q.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public GRANT SELECT ON TABLES TO {}")
                     .format(q.Identifier(owner), r))
        done.append(f"granted SELECT on every table and view of schema public in {dbname} (and on those "
                    f"{owner} creates later); nothing else")
        is_super = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]
        if is_super:
            for fn in ("pg_terminate_backend(integer, bigint)", "pg_cancel_backend(integer)",
                       "lo_create(oid)", "lo_creat(integer)", "lo_from_bytea(oid, bytea)",
                       "lo_put(oid, bigint, bytea)", "lo_unlink(oid)"):
                conn.execute(f"REVOKE EXECUTE ON FUNCTION pg_catalog.{fn} FROM PUBLIC")
            done.append(f"revoked EXECUTE on pg_terminate_backend, pg_cancel_backend and the large-object "
                        f"writers from PUBLIC in {dbname}")
        else:
            done.append("not a superuser: EXECUTE on pg_terminate_backend/pg_cancel_backend stays with PUBLIC "
                        "(a read-only session can end only sessions of its own role)")
    return done
