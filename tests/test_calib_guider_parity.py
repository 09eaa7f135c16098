"""Parity of calwebb_guider with jwst 3.0's GuiderPipeline on the same FGS exposures and references.

Cases: the REAL FGS_ACQ1 exposure of program 1019 (GUIDER2, 6 x 2 x 128 x 128, real pixels)
and simulated FGS_FINEGUIDE and FGS_ID-IMAGE exposures made from real GUIDER2 header
templates (their windows and readout timing; fewer FINEGUIDE integrations than the
template's 2048), all with the simulator's full-frame GUIDER2 references (mask, gain,
readnoise, flat) in the real formats. jwst runs in one background process
(tests/parity_support.py), offline under the real jwst_0541 context, every reference given
as ``override_<reftype>``.

Criterion (the detector1 parity suite's): on >= 99.9 % of the good pixels of jwst's _cal
(DQ without DO_NOT_USE, finite), |ours - jwst| <= 1e-4 |jwst| + 0.01 ERR_jwst; DQ identical;
ERR and VAR_FLAT within 1e-3 relative on >= 99.9 %; the same S_* keywords.
"""
from __future__ import annotations

import numpy as np
import pytest

from calib.pipelines import get_pipeline, run_pipeline
from simulation import ramps as sim
from tests.conftest import shared
from tests.parity_support import JwstBackground, agreement, close_fraction

ACQ1 = "jw01019001001_gs-acq1_2022117003102_uncal.fits"
#: case -> (header template, uncal name, NINTS (None: the template's), seed)
SIMULATED = {
    "fineguide_sim": ("fgs_fineguide_guider2.fits", "jw01019001001_gs-fg_2022117004012_uncal.fits", 96, 41),
    "id_image_sim": ("fgs_id-image_guider2.fits", "jw01019001001_gs-id-1-image_2022117002911_uncal.fits", None, 42),
}
CASES = ["acq1_real", *SIMULATED]

_STEPS = ('{"dq_init": {"override_mask": r["mask"]},'
          ' "guider_cds": {"override_gain": r["gain"], "override_readnoise": r["readnoise"]},'
          ' "flat_field": {"override_flat": r["flat"], "override_fflat": "N/A", "override_sflat": "N/A",'
          ' "override_dflat": "N/A"}}')


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("guider_parity")
    det = sim.make_detector("FGS", "GUIDER2", seed=19)
    refs = {rt: str(p) for rt, p in sim.write_guider_references(det, base / "refs").items()}
    cases = {"acq1_real": {"uncal": str(shared("raw", ACQ1)), "refs": refs, "out": str(base / "acq1_real")}}
    truths = {}
    for name, (template, fname, nints, seed) in SIMULATED.items():
        path, truths[name] = sim.guider_exposure(det, shared("headers", template), base / name / fname,
                                                 nints=nints, seed=seed)
        cases[name] = {"uncal": str(path), "refs": refs, "out": str(base / name / "jwst")}
    bg = JwstBackground(base, "GuiderPipeline", _STEPS, cases)
    yield bg, truths, sim.flat_response(det)
    bg.close()


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_cal_parity_with_jwst(runs, case):
    from stdatamodels.jwst import datamodels

    bg = runs[0]
    c = bg.cases[case]
    ours = run_pipeline("calwebb_guider", c["uncal"], c["refs"])
    assert ours.step_status == {"dq_init": "COMPLETE", "guider_cds": "COMPLETE", "flat_field": "COMPLETE"}
    o = ours.products["cal"]
    with datamodels.open(bg.product(case, "cal")) as j:
        assert isinstance(j, datamodels.GuiderCalModel)
        assert o.data.shape == j.data.shape and o.dq.shape == j.dq.shape
        good = np.broadcast_to((j.dq & 1) == 0, j.data.shape) & np.isfinite(j.data)
        assert good.mean() > 0.95
        frac, n = agreement(o.data, j.data, j.err, good)
        assert frac >= 0.999, f"{case}: SCI parity {frac:.5f} over {n} good pixels"
        np.testing.assert_array_equal(o.dq, j.dq)
        for ext in ("err", "var_flat"):
            close = close_fraction(getattr(o, ext), getattr(j, ext), good, 1e-3)
            assert close >= 0.999, f"{case}: {ext} {close:.5f} within 1e-3"
        for step, st in ours.step_status.items():
            assert getattr(j.meta.cal_step, get_pipeline("calwebb_guider").step(step).cal_step) == st, step
        assert o.meta.bunit_data == j.meta.bunit_data == "DN/s"
        assert o.meta.exposure.type == j.meta.exposure.type
        identical = all(np.array_equal(getattr(o, e), getattr(j, e), equal_nan=True)
                        for e in ("data", "err", "var_flat", "dq"))
        print(f"\n{case}: SCI {100 * frac:.4f} % of {n} good pixels within tolerance; "
              f"bit-identical SCI/ERR/VAR_FLAT/DQ: {identical}")


@pytest.mark.slow
def test_cal_product_written_and_reopened(runs, tmp_path):
    """The saved _cal opens with datamodels.open as a GuiderCalModel with jwst's extensions
    and the provenance keywords."""
    from astropy.io import fits
    from stdatamodels.jwst import datamodels

    from calib.products import save_products

    c = runs[0].cases["acq1_real"]
    res = run_pipeline("calwebb_guider", c["uncal"], c["refs"])
    names = {rt: p.rsplit("/", 1)[-1] for rt, p in c["refs"].items()}
    out = save_products(res, tmp_path, ACQ1.replace("_uncal.fits", ""),
                        {"crds_context": "jwst_0541.pmap", "crds_version": "test", "references": names})
    assert list(out) == ["cal"] and out["cal"].name.endswith("_cal.fits")
    with fits.open(out["cal"]) as h:
        assert [x.name for x in h] == ["PRIMARY", "SCI", "ERR", "DQ", "ASDF"]
        hdr = h[0].header
        assert (hdr["S_DQINIT"], hdr["S_GUICDS"], hdr["S_FLAT"]) == ("COMPLETE",) * 3
        assert hdr["R_FLAT"] == "crds://" + names["flat"] and hdr["R_READNO"] == "crds://" + names["readnoise"]
        assert hdr["DATAMODL"] == "GuiderCalModel" and h["SCI"].header["BUNIT"] == "DN/s"
    with datamodels.open(out["cal"]) as m:
        assert isinstance(m, datamodels.GuiderCalModel)
        assert m.data.shape == (6, 128, 128) and m.var_flat.shape == (6, 128, 128)


@pytest.mark.slow
@pytest.mark.parametrize("case, ratio", [("id_image_sim", (0.9, 1.05)), ("fineguide_sim", (3.7, 4.2))])
def test_simulated_rates_against_truth(runs, case, ratio):
    """Bright pixels' calibrated rate over the simulated scene rate: ~1 for ID (CDS over one
    TGROUP; a few % low from the minimum of two noisy integrations and from IPC), ~4 for
    FINEGUIDE, where jwst divides the difference of the means of the last and first 4 groups
    (4 TGROUP apart in the header's up-the-ramp timing) by one TGROUP."""
    bg, truths, response = runs
    c = bg.cases[case]
    cal = run_pipeline("calwebb_guider", c["uncal"], c["refs"]).products["cal"]
    x1, y1, xs, ys = (cal.meta.subarray.xstart, cal.meta.subarray.ystart, cal.meta.subarray.xsize,
                      cal.meta.subarray.ysize)
    with np.errstate(invalid="ignore", divide="ignore"):      # dead pixels: NaN response
        scene = truths[case].rate / response[y1 - 1:y1 - 1 + ys, x1 - 1:x1 - 1 + xs]
    bright = np.isfinite(scene) & (scene > 1000.0) & ((cal.dq & 1) == 0)
    assert bright.sum() >= 5
    r = np.median(cal.data[:, bright] / scene[bright])
    print(f"\n{case}: median calibrated / simulated rate on {bright.sum()} bright pixels: {r:.3f}")
    assert ratio[0] < r < ratio[1], r
