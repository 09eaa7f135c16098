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


def _private_cache(result, tmp_path, drop: set[str]):
    """A copy of the simulated CRDS cache without the reference files of ``drop`` reftypes
    (the context still names them: bestrefs would pick files the cache does not hold)."""
    src = crdscache.locate(result.references[result.files[0].name]["gain"]).parents[3]
    dst = tmp_path / "crds"
    shutil.copytree(src, dst, symlinks=True)
    gone = []
    for f in result.files:
        for reftype, name in result.references[f.name].items():
            if reftype in drop:
                for p in dst.rglob(name):
                    p.unlink()
                    gone.append(name)
    assert gone
    return dst


def test_a_skipped_step_needs_no_reference(env, tmp_path, monkeypatch):
    """strun behaviour: a skipped step's reftype is not asked of CRDS, so a cache lacking
    its file is no obstacle; without the skip the file is missing (exit 1, named)."""
    result = env
    f = result.files[0]
    monkeypatch.setenv("CRDS_PATH", str(_private_cache(result, tmp_path, {"ipc", "linearity"})))
    r = _run("calwebb_detector1", f, "--output-dir", tmp_path / "a", "--steps.ipc.skip=true",
             "--steps.linearity.skip=true")
    assert r.exit_code == 0, r.output
    hdr = fits.getheader(tmp_path / "a" / f"{f.name[:-len('_uncal.fits')]}_rate.fits")
    assert hdr["S_IPC"] == "SKIPPED" and hdr["S_LINEAR"] == "SKIPPED"
    assert "R_IPC" not in hdr and "R_LINEAR" not in hdr
    r = _run("calwebb_detector1", f, "--output-dir", tmp_path / "b", "--steps.ipc.skip=true", "--json")
    assert r.exit_code == 1 and result.references[f.name]["linearity"] in r.output


def test_all_references_overridden_needs_no_selection(env, tmp_path, monkeypatch):
    """With every reference a running step reads given as override_<reftype>, calibrate runs
    under a context whose cache holds none of those files."""
    result = env
    f = result.files[0]
    refs = result.references[f.name]
    local = {}
    for reftype, name in refs.items():
        local[reftype] = tmp_path / f"my_{reftype}.fits"
        shutil.copy(crdscache.locate(name), local[reftype])
    monkeypatch.setenv("CRDS_PATH", str(_private_cache(result, tmp_path, set(refs))))
    by_step = {"mask": "dq_init", "saturation": "saturation", "superbias": "superbias", "ipc": "ipc",
               "linearity": "linearity", "dark": "dark_current", "gain": "jump", "readnoise": "jump"}
    args = [f"--steps.{by_step[rt]}.override_{rt}={p}" for rt, p in local.items() if rt in by_step]
    r = _run("calwebb_detector1", f, "--output-dir", tmp_path / "o", *args)
    assert r.exit_code == 0, r.output
    hdr = fits.getheader(tmp_path / "o" / f"{f.name[:-len('_uncal.fits')]}_rate.fits")
    assert hdr["R_DARK"] == "my_dark.fits" and hdr["R_GAIN"] == "my_gain.fits"
    assert hdr["R_SUPERB"] == "my_superbias.fits"


def test_bad_values_are_usage_errors_before_any_file_is_opened(env, tmp_path):
    missing = tmp_path / "never_opened_uncal.fits"
    for arg, words in (("--steps.refpix.side_smoothing_length=-5", ("refpix", "side_smoothing_length", "-5",
                                                                     "[1, 2048]")),
                       ("--steps.jump.rejection_threshold=abc", ("jump", "rejection_threshold", "abc")),
                       ("--steps.ramp_fit.algorithm=LIKELY", ("ramp_fit", "algorithm", "jwst engine")),
                       ("--steps.jump.override_dark=x.fits", ("jump", "dark")),
                       ("--steps.persistence.skip=false", ("persistence", "not implemented"))):
        r = _run("calwebb_detector1", missing, arg)
        assert r.exit_code == 2, (arg, r.output)
        text = " ".join(r.output.split())
        for w in words:
            assert w in text, (arg, w, r.output)
