"""``archive calibrate``: strun-like runs on files without the catalog."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from astropy.io import fits
from typer.testing import CliRunner

from archive.cli import app
from archive.crds import cache as crdscache

from .test_end_to_end import simulated  # noqa: F401 - the module-scoped simulation fixture


@pytest.fixture
def env(tmp_path, simulated, monkeypatch):  # noqa: F811
    pool, result, crds_path = simulated
    for var in ("ARCHIVE_DB_URL", "ARCHIVE_BROKER_URL", "ARCHIVE_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ARCHIVE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CRDS_PATH", str(crds_path))
    monkeypatch.setenv("CRDS_CONTEXT", result.context)
    crdscache.configure(crds_path)  # for the test's own lookups
    return result


def _run(*args):
    return CliRunner().invoke(app, ["calibrate", *map(str, args)], catch_exceptions=False)


def test_calibrate_files_like_strun(env, tmp_path):
    result = env
    files = result.files[:2]
    out = tmp_path / "out"
    r = _run("calwebb_detector1", *files, "--output-dir", out, "--json")
    assert r.exit_code == 0, r.output
    for f in files:
        root = f.name[: -len("_uncal.fits")]
        rate, rateints = out / f"{root}_rate.fits", out / f"{root}_rateints.fits"
        assert rate.is_file() and rateints.is_file()
        hdr = fits.getheader(rate)
        best = crdscache.bestrefs(dict(fits.getheader(f)), result.context, ["dark", "gain", "superbias"])
        assert hdr["CRDS_CTX"] == result.context
        assert hdr["R_DARK"] == f"crds://{best['dark']}"
        assert hdr["R_GAIN"] == f"crds://{best['gain']}"
        assert hdr["S_JUMP"] == "COMPLETE" and hdr["S_RAMP"] == "COMPLETE"
    # a product is never overwritten: the same run again fails for each file (exit 1)
    again = _run("calwebb_detector1", files[0], "--output-dir", out)
    assert again.exit_code == 1
    assert "refusing to overwrite" in again.output


def test_override_skip_and_exit_codes(env, tmp_path):
    result = env
    f = result.files[0]
    root = f.name[: -len("_uncal.fits")]
    r = _run("Detector1Pipeline", f, "--output-dir", tmp_path / "a")
    assert r.exit_code == 0, r.output
    base = fits.getdata(tmp_path / "a" / f"{root}_rate.fits", "SCI")
    dark_name = fits.getheader(tmp_path / "a" / f"{root}_rate.fits")["R_DARK"][len("crds://"):]

    # the same dark under another name: recorded by its plain name, identical numbers
    mine = tmp_path / "my_dark.fits"
    shutil.copy(crdscache.locate(dark_name), mine)
    r = _run("calwebb_detector1", f, "--output-dir", tmp_path / "b", f"--steps.dark_current.override_dark={mine}")
    assert r.exit_code == 0, r.output
    hdr = fits.getheader(tmp_path / "b" / f"{root}_rate.fits")
    assert hdr["R_DARK"] == "my_dark.fits"
    np.testing.assert_array_equal(fits.getdata(tmp_path / "b" / f"{root}_rate.fits", "SCI"), base)

    # a dark with 1 DN more per group lowers the rate by 1 DN per group time
    with fits.open(mine) as hdul:
        hdul["SCI"].data = hdul["SCI"].data + np.arange(hdul["SCI"].data.shape[0], dtype=np.float32)[:, None, None]
        hdul.writeto(tmp_path / "dark_plus.fits")
    r = _run("calwebb_detector1", f, "--output-dir", tmp_path / "c",
             f"--steps.dark_current.override_dark={tmp_path / 'dark_plus.fits'}", "--steps.jump.skip=true")
    assert r.exit_code == 0, r.output
    with fits.open(tmp_path / "c" / f"{root}_rate.fits") as hdul:
        assert hdul[0].header["S_JUMP"] == "SKIPPED"
        tgroup = hdul[0].header["TGROUP"]
        ok = (hdul["DQ"].data & 1) == 0
        diff = (hdul["SCI"].data - base)[ok]
    # frame-averaged dark: each MEDIUM8/BRIGHT frame average of the +1 DN/frame ramp still
    # rises by (frames per group + groupgap) DN per group -> rate falls by that / TGROUP
    assert np.median(diff) < 0 and abs(np.median(diff)) > 0.5 / tgroup

    # strun's exit codes: 2 for bad usage, 1 when a file fails (the others still run)
    assert _run("calwebb_spec9", f).exit_code == 2
    assert _run("calwebb_detector1", f, "--steps.jump.no_such_param=1").exit_code == 2
    assert _run("calwebb_detector1", f, "--steps.dark_current.override_dark=/no/such.fits").exit_code == 2
    bad = tmp_path / "bad_uncal.fits"
    bad.write_bytes(b"SIMPLE  =                    T" + b" " * 100)
    r = _run("calwebb_detector1", bad, f, "--output-dir", tmp_path / "d", "--json")
    assert r.exit_code == 1
    assert (tmp_path / "d" / f"{root}_rate.fits").is_file()
    assert "bad_uncal.fits" in r.output
