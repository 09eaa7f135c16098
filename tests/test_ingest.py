"""Ingest of real and bad files: checks, checksums, idempotence, conflicts, rejections."""
from __future__ import annotations

import hashlib
import shutil

from astropy.io import fits
from sqlalchemy import func, select

from archive.catalog.db import session_scope
from archive.catalog.models import Exposure, IngestRejection
from archive.ingest.batch import ingest
from archive.ingest.headers import read_raw_header

from .conftest import shared

FGS = "jw01019001001_gs-acq1_2022117003102_uncal.fits"


def _count(settings, model):
    with session_scope(settings.db_url) as s:
        return s.scalar(select(func.count()).select_from(model))


def test_real_fgs_exposure_ingests(settings):
    src = shared("raw", FGS)
    report = ingest(settings, [src])
    [o] = report.outcomes
    assert o.status == "ingested", o.reason
    with session_scope(settings.db_url) as s:
        exp = s.execute(select(Exposure)).scalar_one()
        assert exp.sha256 == hashlib.sha256(src.read_bytes()).hexdigest()
        assert (exp.instrume, exp.detector, exp.exp_type, exp.readpatt, exp.subarray) == \
               ("FGS", "GUIDER2", "FGS_ACQ1", "ACQ1", "128X128")
        assert (exp.nints, exp.ngroups, exp.program) == (6, 2, "01019")
        assert exp.stage1_pipeline == "calwebb_guider"
        stored = exp.storage_path
    assert stored == f"raw/01019/{FGS}"  # relative to the data directory
    assert hashlib.sha256((settings.data_dir / stored).read_bytes()).hexdigest() == o.sha256


def test_reingest_is_idempotent_and_conflicts_are_not_overwritten(settings, tmp_path):
    src = shared("raw", FGS)
    assert ingest(settings, [src]).outcomes[0].status == "ingested"
    again = ingest(settings, [src])
    assert again.outcomes[0].status == "unchanged" and again.ok
    assert _count(settings, Exposure) == 1
    # a different file under the same name
    other = tmp_path / "other" / FGS
    other.parent.mkdir()
    with fits.open(src) as hdul:
        hdul[0].header["TARGNAME"] = "SOMETHING ELSE"
        hdul.writeto(other)
    res = ingest(settings, [other])
    assert res.outcomes[0].status == "conflict" and not res.ok
    assert "not overwritten" in res.outcomes[0].reason
    with session_scope(settings.db_url) as s:
        exp = s.execute(select(Exposure)).scalar_one()
        assert exp.sha256 == hashlib.sha256(src.read_bytes()).hexdigest()
        assert s.execute(select(IngestRejection.kind)).scalars().all() == ["conflict"]


def test_bad_files_are_rejected_with_reasons_and_the_batch_goes_on(settings, tmp_path):
    src = shared("raw", FGS)
    data = src.read_bytes()
    truncated = tmp_path / "jw_trunc_uncal.fits"
    truncated.write_bytes(data[: len(data) // 2])
    not_fits = tmp_path / "jw_text_uncal.fits"
    not_fits.write_text("this is not FITS\n" * 200)
    wrong_tel = tmp_path / "jw_hst_uncal.fits"
    missing = tmp_path / "jw_missing_uncal.fits"
    with fits.open(src) as hdul:
        hdul[0].header["TELESCOP"] = "HST"
        hdul.writeto(wrong_tel)
    with fits.open(src) as hdul:
        del hdul[0].header["EXP_TYPE"]
        hdul.writeto(missing)
    templates = sorted(shared("headers").glob("*.fits"))
    good = tmp_path / FGS
    shutil.copy(src, good)
    report = ingest(settings, [truncated, not_fits, wrong_tel, missing, *templates, good])
    by = {o.filename: o for o in report.outcomes}
    assert by[FGS].status == "ingested"
    assert "truncated" in by[truncated.name].reason
    assert "not a readable FITS" in by[not_fits.name].reason
    assert "TELESCOP" in by[wrong_tel.name].reason
    assert "EXP_TYPE" in by[missing.name].reason
    for t in templates:  # real headers whose pixels were cut to 1x1x1x1
        assert by[t.name].status == "rejected"
        assert "SCI shape (1, 1, 1, 1)" in by[t.name].reason
    assert not report.ok
    assert _count(settings, Exposure) == 1
    assert _count(settings, IngestRejection) == 4 + len(templates)
    # the same rejections again: recorded once each, their attempts counted
    again = ingest(settings, [truncated, not_fits, good])
    assert [o.status for o in again.outcomes] == ["rejected", "rejected", "unchanged"]
    assert _count(settings, IngestRejection) == 4 + len(templates)
    with session_scope(settings.db_url) as s:
        attempts = dict(s.execute(select(IngestRejection.filename, IngestRejection.attempts)).all())
    assert attempts[truncated.name] == attempts[not_fits.name] == 2 and attempts[wrong_tel.name] == 1


def test_header_only_read_gives_shape_and_keywords():
    kw = read_raw_header(shared("raw", FGS))
    assert kw["_SCI_SHAPE"] == [6, 2, 128, 128]
    assert kw["TELESCOP"] == "JWST" and kw["SUBSTRT1"] == 887


def test_cli_ingest_exit_code(settings, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from archive.cli import app

    monkeypatch.setenv("ARCHIVE_DB_URL", settings.db_url)
    bad = tmp_path / "jw_bad_uncal.fits"
    bad.write_bytes(b"SIMPLE  =")
    runner = CliRunner()
    ok = runner.invoke(app, ["--data-dir", str(settings.data_dir), "ingest", str(shared("raw", FGS)), "--json"])
    assert ok.exit_code == 0, ok.output
    assert '"status": "ingested"' in ok.output
    res = runner.invoke(app, ["--data-dir", str(settings.data_dir), "ingest", str(bad), str(shared("raw", FGS))])
    assert res.exit_code == 1
