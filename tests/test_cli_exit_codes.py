"""Exit codes across the CLI: 0 ok, 1 inputs rejected or jobs failed, 2 usage or
configuration, 3 an internal error (logged with its traceback, never silent)."""
from __future__ import annotations

from typer.testing import CliRunner

from archive.cli import app

from .conftest import shared

FGS = "jw01019001001_gs-acq1_2022117003102_uncal.fits"


def _run(tmp_path, monkeypatch, *args, env=None):
    for var in ("ARCHIVE_DB_URL", "ARCHIVE_BROKER_URL", "ARCHIVE_CONFIG", "ARCHIVE_UMASK", "ARCHIVE_READONLY_DB_URL"):
        monkeypatch.delenv(var, raising=False)
    for k, v in (env or {}).items():
        monkeypatch.setenv(k, v)
    return CliRunner().invoke(app, ["--data-dir", str(tmp_path / "data"), *args])


def test_ok_and_rejected_inputs(tmp_path, monkeypatch):
    assert _run(tmp_path, monkeypatch, "init").exit_code == 0
    assert _run(tmp_path, monkeypatch, "ingest", str(shared("raw", FGS))).exit_code == 0
    bad = tmp_path / "jw_bad_uncal.fits"
    bad.write_bytes(b"SIMPLE  =")
    assert _run(tmp_path, monkeypatch, "ingest", str(bad)).exit_code == 1
    assert _run(tmp_path, monkeypatch, "sql", "DELETE FROM exposures").exit_code == 1


def test_usage_and_configuration_errors_exit_2(tmp_path, monkeypatch):
    for args in (("no-such-command",), ("ingest",), ("sql", "SELECT 1", "--limit", "-3"),
                 ("status", "--no-such-option"), ("db", "grant", "--role")):
        res = _run(tmp_path, monkeypatch, *args)
        assert res.exit_code == 2, (args, res.output)
    for env in ({"ARCHIVE_UMASK": "999"}, {"ARCHIVE_UMASK": "rw-r--r--"},
                {"ARCHIVE_CONFIG": str(tmp_path / "missing.toml")}):
        res = _run(tmp_path, monkeypatch, "init", env=env)
        assert res.exit_code == 2 and "configuration" in res.output, (env, res.output)
    assert _run(tmp_path, monkeypatch, "init").exit_code == 0
    res = _run(tmp_path, monkeypatch, "provenance", "jw_nothing_rate.fits")
    assert res.exit_code == 2


def test_internal_errors_exit_3_with_the_traceback(tmp_path, monkeypatch, caplog):
    # a catalog that cannot be reached: not the user's input, an internal/operational error
    url = "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2"
    unreachable = {"ARCHIVE_DB_URL": url, "ARCHIVE_READONLY_DB_URL": url}
    for args in (("init",), ("status",), ("ingest", str(shared("raw", FGS))), ("provenance", "jw_x_rate.fits"),
                 ("previews",), ("associate",), ("plan",), ("reprocess",), ("crds", "status"),
                 ("crds", "use", "jwst_0541.pmap"), ("crds", "add", "jwst_0541.pmap", "--from",
                                                     str(shared("crds", "mappings"))),
                 ("db", "grant"), ("sql", "SELECT 1")):
        caplog.clear()
        res = _run(tmp_path, monkeypatch, *args, env=unreachable)
        assert res.exit_code == 3, (args, res.output)
        assert "internal error" in res.output
        assert any(r.exc_info for r in caplog.records), "the traceback is logged"
        assert "TypeError" not in res.output and ("OperationalError" in res.output
                                                   or "CatalogUnreachable" in res.output), res.output
