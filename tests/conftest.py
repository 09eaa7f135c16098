"""Shared fixtures: catalogs on SQLite and on the real PostgreSQL, settings, real data.

Database tests run against the real PostgreSQL at 127.0.0.1:5432 (a fresh database per
test, dropped afterwards) and against SQLite; queue tests against the real Redis at
127.0.0.1:6379. A missing server is a test failure (never a skip), with how to start it.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
PG_ADMIN = os.environ.get("ARCHIVE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("ARCHIVE_TEST_REDIS", "redis://127.0.0.1:6379/0")
START = {
    "PostgreSQL": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    "Redis": 'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no',
}


def need_server(what: str, exc: Exception):
    """Fail the test when a real server it needs is not there (the tests of the catalog and
    the queue are about those servers: a skip would hide that they did not run)."""
    hint = next((cmd for name, cmd in START.items() if what.startswith(name)), "")
    pytest.fail(f"{what} not reachable: {exc}" + (f"; start it with: {hint}" if hint else ""))


def shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"missing real test material {path} (../shared beside the checkout)")
    return path


@pytest.fixture
def pg_url():
    """A fresh PostgreSQL database for one test; dropped afterwards."""
    import psycopg
    from sqlalchemy.engine import make_url

    admin = make_url(PG_ADMIN)
    name = f"archive_test_{uuid.uuid4().hex[:10]}"
    conninfo = f"host={admin.host} port={admin.port or 5432} user={admin.username} dbname={admin.database}"
    try:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        need_server("PostgreSQL at 127.0.0.1:5432", exc)
    url = str(admin.set(database=name).render_as_string(hide_password=False))
    yield url
    from archive.catalog.db import dispose_engines

    dispose_engines()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'DROP ROLE IF EXISTS "{readonly_role(url)}"')


def readonly_role(url: str) -> str:
    """The read-only role of a test database (one per database: roles are cluster-wide)."""
    from sqlalchemy.engine import make_url

    return "ro_" + make_url(url).database


def with_readonly(s):
    """Settings with the catalog's read-only path: on PostgreSQL a role made by
    ``grant_readonly`` for this database (``archive db grant``); SQLite needs none."""
    from sqlalchemy.engine import make_url

    from archive.catalog.readonly import grant_readonly

    if s.db_url.startswith("sqlite"):
        return s
    role = readonly_role(s.db_url)
    grant_readonly(s.db_url, role)
    return s.with_(readonly_db_url=make_url(s.db_url).set(username=role, password=None)
                   .render_as_string(hide_password=False))


@pytest.fixture
def redis_url():
    """The real Redis at 127.0.0.1:6379 (ARCHIVE_TEST_REDIS), checked reachable."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        need_server("Redis at 127.0.0.1:6379", exc)
    return REDIS_URL


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    """Each catalog test runs twice: on SQLite and on the real PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    else:
        yield request.getfixturevalue("pg_url")


def embedded_archive(data: Path):
    """Settings of a migrated archive in ``data`` on the embedded default (SQLite, no broker)."""
    from archive.catalog.db import upgrade
    from archive.config import load_settings

    s = load_settings(data).with_(db_url=f"sqlite:///{data / 'catalog.sqlite'}", broker_url=None,
                                  crds_path=data / "crds", crds_context=None)
    for d in (s.raw_dir, s.products_dir, s.associations_dir, s.crds_path):
        d.mkdir(parents=True, exist_ok=True)
    upgrade(s.db_url)
    return s


@pytest.fixture
def settings(tmp_path, db_url, monkeypatch):
    """Settings of a fresh archive in tmp_path, catalog migrated to head."""
    from archive.config import load_settings
    from archive.catalog.db import upgrade

    for var in ("ARCHIVE_DB_URL", "ARCHIVE_BROKER_URL", "CRDS_CONTEXT", "ARCHIVE_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    s = load_settings(tmp_path / "data").with_(db_url=db_url, crds_path=tmp_path / "data" / "crds")
    for d in (s.raw_dir, s.products_dir, s.associations_dir, s.crds_path):
        d.mkdir(parents=True, exist_ok=True)
    upgrade(s.db_url)
    return with_readonly(s)


# Disk use of the suite. tmp_path_retention_policy = "failed" (pyproject.toml) deletes a passed
# test's tmp_path at its teardown; the directories module-scoped fixtures make with
# tmp_path_factory.mktemp (simulated exposures, jwst outputs: up to GBs per module) would stay
# until the session ends. They are deleted when their module is done, unless a test of the
# module failed (then they are kept for inspection, like pytest keeps failed tests' tmp_path).
_FAILED_MODULES: set[str] = set()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        _FAILED_MODULES.add(item.module.__name__ if item.module else item.nodeid)
    return report


@pytest.fixture(scope="module", autouse=True)
def _delete_module_temp_dirs(request, tmp_path_factory):
    import shutil

    base = tmp_path_factory.getbasetemp()
    before = set(base.iterdir())
    yield
    if request.module.__name__ in _FAILED_MODULES:
        return
    for path in set(base.iterdir()) - before:
        shutil.rmtree(path, ignore_errors=True)
