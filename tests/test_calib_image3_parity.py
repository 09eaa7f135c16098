"""Parity of calwebb_image3 (calib) with jwst 3.0's Image3Pipeline on the same ``_cal`` members.

The scene: two dithered NIRCam NRCA1 SUB640 F200W exposures of one star field (3" and 1"
apart in the ideal frame), simulated as ``_rate`` images (simulation.exposures.write_rate:
stars through each pointing and SIAF distortion, sky, Poisson and read noise, cosmic rays,
bad pixels), calibrated by this project's calwebb_image2 with the simulator's imaging
references into ``_cal`` files; a Level-3 association (asn_type image3) names both. jwst runs
in one background process (tests/parity_support.py), offline under the real jwst_0541
context, on the same association and ``_cal`` files.

Not yet compared (the calib engine does not run these steps yet; skipped on both sides):
tweakreg, outlier_detection, source_catalog. assign_mtwcs: jwst runs it for moving targets
only (the scene is a fixed target) and records nothing; calib records SKIPPED.

Criteria (issue 12): ``_i2d``: >= 99 % of the pixels with weight > 0 within 1e-3 relative,
WHT within 1e-3 on >= 99 %, CON equal; ERR/VAR_* within 1e-3 on >= 99 %; the output WCS
gives sky positions within 1e-3 px of jwst's.
Measured when written: SCI 99.79 % of 489,396 weighted pixels within 1e-3 (the rest are
near-zero sky pixels where 1e-3 relative is below float32 rounding of the merged means),
ERR 99.85 %, VAR_RNOISE 99.85 %, VAR_POISSON 100 %, VAR_FLAT 99.98 %, CON equal, WCS
offset 0 px.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.parity_support import JwstBackground, close_fraction

TARGET = (80.0, -69.5)
INSTR, DET, AP, FILT, PUP = "NIRCAM", "NRCA1", "NRCA1_SUB640", "F200W", "CLEAR"
#: ideal-frame dithers (arcsec) of the members
DITHERS = ((0.0, 0.0), (3.0, 1.0))
ASN_ID = "o002"
PRODUCT = "jw99999-o002_t001_nircam_clear-f200w"
#: the steps the calib engine does not run yet, skipped on both sides
SKIPPED = {"tweakreg": {"skip": True}, "outlier_detection": {"skip": True}, "source_catalog": {"skip": True}}


def make_association(base: Path, dithers=DITHERS, seed: int = 0) -> tuple[Path, dict]:
    """Simulate dithered ``_rate`` members, calibrate them with calwebb_image2 (calib) and
    write a Level-3 association of their ``_cal`` files; return its path and the references."""
    from calib.pipelines import run_pipeline
    from simulation import exposures, imaging_refs, sky

    written = imaging_refs.write_imaging_references(base / "refs", INSTR, DET, [(FILT, PUP)], seed=seed)
    refs = {rt: str(paths[0]) for rt, paths in written.items() if paths}
    field = sky.random_star_field(*TARGET, 40.0, 160, seed=seed, flux_range=(5.0, 300.0), min_separation=1.0)
    exp = exposures.ImagingExposure(INSTR, DET, AP, FILT, PUP, "MEDIUM8", 2)
    members = []
    for k, dither in enumerate(dithers):
        pointing = sky.make_pointing(INSTR, AP, *TARGET, 30.0, dither=dither)
        rate, _ = exposures.write_rate(
            base / "rate" / f"jw99999002001_01101_{k + 1:05d}_{DET.lower()}_rate.fits", exp,
            sky.SkyScene(field, pointing, INSTR, DET, FILT, PUP), seed=seed * 100 + k, expstart=60100.0 + 0.01 * k,
            observation={"OBSERVTN": "002", "EXPOSURE": f"{k + 1:05d}"})
        res = run_pipeline("calwebb_image2", rate, refs, {"resample": {"skip": True}})
        cal = base / f"{rate.name[: -len('_rate.fits')]}_cal.fits"
        res.products["cal"].save(cal)
        members.append({"expname": cal.name, "exptype": "science"})
    asn = base / f"jw99999-{ASN_ID}_20260101t000000_image3_00001_asn.json"
    asn.write_text(json.dumps({"asn_type": "image3", "asn_rule": "Asn_Lv3Image", "asn_id": ASN_ID,
                               "asn_pool": "simulated", "program": "99999", "code_version": "test",
                               "products": [{"name": PRODUCT, "members": members}]}))
    return asn, refs


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from calib.pipelines.image3 import PIPELINE
    from calib.runner import run

    base = tmp_path_factory.mktemp("image3_parity")
    asn, refs = make_association(base)
    cases = {"nircam": {"uncal": str(asn), "refs": refs, "out": str(base / "jwst")}}
    bg = JwstBackground(base, "Image3Pipeline", repr(SKIPPED), cases)
    ours = run(PIPELINE, asn, {}, SKIPPED)
    yield bg, ours, cases
    bg.close()


def _jwst(bg, suffix):
    from stdatamodels.jwst import datamodels

    bg.product("nircam", "i2d")                 # waits for jwst (and raises with its log)
    return datamodels.open(Path(bg.cases["nircam"]["out"]) / f"{PRODUCT}_{suffix}.fits")


def _wcs_offset_px(ours, theirs, shape, step=16):
    """Largest distance (px) between the sky positions two gwcs give a grid of pixels."""
    ny, nx = shape
    yy, xx = np.mgrid[0:ny:step, 0:nx:step].astype(float)
    ra1, dec1 = ours(xx, yy)
    ra2, dec2 = theirs(xx, yy)
    ra3, dec3 = theirs(xx + 1.0, yy)

    def sep(a1, d1, a2, d2):
        return np.hypot((a1 - a2) * np.cos(np.radians(d2)), d1 - d2)

    return float(np.max(sep(ra1, dec1, ra2, dec2) / sep(ra3, dec3, ra2, dec2)))


@pytest.mark.slow
def test_i2d_parity_with_jwst(runs):
    bg, ours, _ = runs
    i2d = ours.products["i2d"]
    assert ours.step_status == {"assign_mtwcs": "SKIPPED", "tweakreg": "SKIPPED", "skymatch": "COMPLETE",
                                "outlier_detection": "SKIPPED", "resample": "COMPLETE", "source_catalog": "SKIPPED"}
    with _jwst(bg, "i2d") as j:
        assert i2d.data.shape == j.data.shape
        w = j.wht > 0
        ok = np.isclose(i2d.data, j.data, rtol=1e-3, atol=0) | (np.isnan(i2d.data) & np.isnan(j.data))
        print(f"\ni2d: {ok[w].mean():.6f} of {w.sum()} weighted pixels within 1e-3")
        assert w.sum() > 0.5 * w.size and ok[w].mean() >= 0.99
        assert close_fraction(i2d.wht, j.wht, w, 1e-3) >= 0.99
        assert i2d.con.shape == j.con.shape
        np.testing.assert_array_equal(i2d.con, j.con)
        assert set(np.unique(j.con)) >= {1, 2, 3}                 # both members, apart and together
        for arr in ("err", "var_poisson", "var_rnoise", "var_flat"):
            frac = close_fraction(getattr(i2d, arr), getattr(j, arr), w, 1e-3)
            print(f"i2d {arr}: {frac:.6f} within 1e-3")
            assert frac >= 0.99, arr
        for attr in ("resample.pixfrac", "resample.kernel", "resample.weight_type", "resample.pointings",
                     "exposure.exposure_time", "exposure.start_time", "exposure.end_time", "bunit_data",
                     "wcsinfo.s_region", "asn.table_name", "cal_step.resample", "cal_step.skymatch",
                     "cal_step.tweakreg", "cal_step.outlier_detection"):
            a, b = i2d.meta, j.meta
            for part in attr.split("."):
                a, b = getattr(a, part), getattr(b, part)
            assert a == b, attr
        assert i2d.meta.resample.pointings == 2
        off = _wcs_offset_px(i2d.meta.wcs, j.meta.wcs, i2d.data.shape)
        print(f"i2d WCS max offset from jwst's {off:.2e} px")
        assert off < 1e-3
