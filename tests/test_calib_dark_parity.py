"""Parity of calwebb_dark with jwst 3.0's DarkPipeline on the same dark exposures and references.

Cases, made by simulation.ramps (no light: bias, dark current with hot pixels, read noise,
amplifier drifts, IPC, non-linearity, cosmic rays; MIRI's reset anomaly), with the
simulator's full-frame references in the real formats:

* NRC_DARK: NIRCam NRCA2 SUB160 RAPID, 2 x 6 groups, from the real NRCA2 header template
  (mask, saturation, superbias, ipc, linearity; refpix with the reference pixels of the
  detector corner);
* MIR_DARKIMG: MIRI MIRIMAGE SUB64 FASTR1, 2 x 8 groups (mask, saturation, linearity, the
  SUB64/FASTR1 RESET and the RSCD table; no IPC reference: ipc SKIPPED).

jwst runs in one background process (tests/parity_support.py), offline under the real
jwst_0541 context, every reference given as ``override_<reftype>``; it names its product
``<root>_darkpipeline.fits``. Criterion (the detector1 parity suite's, for a ramp): on
>= 99.9 % of the samples of good pixels (no DO_NOT_USE in PIXELDQ),
|ours - jwst| <= 1e-4 |jwst| + 0.01 sigma, sigma the read noise of one group (DN); PIXELDQ and
GROUPDQ identical; the same S_* keywords (and MIRI's RSCD keywords); the same extensions.
"""
from __future__ import annotations

import numpy as np
import pytest

from calib.pipelines import get_pipeline, run_pipeline
from simulation import ramps as sim
from tests.conftest import shared
from tests.parity_support import JwstBackground, agreement

_STEPS = ('{"dq_init": {"override_mask": r["mask"]},'
          ' "saturation": {"override_saturation": r["saturation"], "override_superbias": r.get("superbias", "N/A")},'
          ' "superbias": {"override_superbias": r.get("superbias", "N/A")},'
          ' "ipc": {"override_ipc": r.get("ipc", "N/A")},'
          ' "refpix": {"override_refpix": "N/A", "override_sirskernel": "N/A"},'
          ' "linearity": {"override_linearity": r["linearity"]},'
          ' "reset": {"override_reset": r.get("reset", "N/A")},'
          ' "rscd": {"override_rscd": r.get("rscd", "N/A")}}')

NIRCAM_TEMPLATE = "jw01075001001_03105_00009_nrca2_uncal.fits"
CASES = ["nrc_dark", "miri_darkimg"]


def _keywords(spec: sim.ExposureSpec, exp_type: str) -> dict:
    ro = spec.readout()
    x1, y1, xs, ys = spec.geometry()
    return {"INSTRUME": spec.instrument, "DETECTOR": spec.detector, "EXP_TYPE": exp_type,
            "SUBARRAY": spec.subarray, "SUBSTRT1": x1, "SUBSTRT2": y1, "SUBSIZE1": xs, "SUBSIZE2": ys,
            "READPATT": ro.readpatt, "NGROUPS": spec.ngroups, "NINTS": spec.nints, "NFRAMES": ro.nframes,
            "GROUPGAP": ro.groupgap, "FRMDIVSR": ro.nframes, "NOUTPUTS": ro.noutputs,
            "TFRAME": ro.tframe, "TGROUP": ro.tgroup}


def _dark_case(base, instrument, detector, subarray, readpatt, ngroups, nints, exp_type, seed):
    det = sim.make_detector(instrument, detector, seed=seed)
    spec = sim.ExposureSpec(instrument, detector, subarray, readpatt, ngroups=ngroups, nints=nints)
    ramp, _ = sim.simulate_ramp(det, spec, seed=seed, scene=sim.Scene(sky=0.0, sky_gradient=0.0))
    kw = _keywords(spec, exp_type)
    d = base / exp_type.lower()
    if instrument == "MIRI":     # no real MIRI header is shipped: the keywords jwst reads
        kw.update({"TELESCOP": "JWST", "FILTER": "OPAQUE", "FASTAXIS": 1, "SLOWAXIS": 2,
                   "DATE-OBS": "2022-07-01", "TIME-OBS": "00:00:00.000", "EXPSTART": 59761.0})
        uncal = sim.write_uncal(d / "jw09999002001_02101_00001_mirimage_uncal.fits", ramp, kw)
        refs = sim.write_references(det, d, {rt: f"miri_{rt}.fits" for rt in ("mask", "saturation", "linearity",
                                                                              "rscd")})
        refs["reset"] = sim.write_reset(det, spec, d / "miri_reset.fits")
    else:
        kw.update({"PUPIL": "CLEAR", "FILTER": "F210M"})
        uncal = sim.write_uncal(d / "jw09999001001_02101_00001_nrca2_uncal.fits", ramp, kw,
                                template=shared("headers", NIRCAM_TEMPLATE), removed=("CORONMSK",))
        refs = sim.write_references(det, d, {rt: f"nrca2_{rt}.fits" for rt in ("mask", "saturation", "superbias",
                                                                               "ipc", "linearity")})
    rows, cols = sim.window(det, spec)
    sigma = det.readnoise[rows, cols] / np.float32(np.sqrt(spec.readout().nframes))   # DN, one group
    return {"uncal": str(uncal), "refs": {rt: str(p) for rt, p in refs.items()}, "out": str(d / "jwst")}, sigma


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("dark_parity")
    cases, sigmas = {}, {}
    cases["nrc_dark"], sigmas["nrc_dark"] = _dark_case(base, "NIRCAM", "NRCA2", "SUB160", "RAPID", 6, 2,
                                                       "NRC_DARK", seed=7)
    cases["miri_darkimg"], sigmas["miri_darkimg"] = _dark_case(base, "MIRI", "MIRIMAGE", "SUB64", "FASTR1", 8, 2,
                                                               "MIR_DARKIMG", seed=8)
    bg = JwstBackground(base, "DarkPipeline", _STEPS, cases)
    yield bg, sigmas
    bg.close()


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_dark_parity_with_jwst(runs, case):
    from stdatamodels.jwst import datamodels

    bg, sigmas = runs
    c = bg.cases[case]
    ours = run_pipeline("calwebb_dark", c["uncal"], c["refs"])
    o = ours.products["dark"]
    with datamodels.open(bg.product(case, "darkpipeline")) as j:
        assert isinstance(j, datamodels.RampModel)
        assert o.data.shape == j.data.shape and o.data.dtype == j.data.dtype.newbyteorder("=") == np.float32
        # every sample of a good pixel (groups flagged DO_NOT_USE by rscd or lastframe keep
        # their values in the product)
        good = np.broadcast_to(((j.pixeldq & 1) == 0)[None, None], j.data.shape) & np.isfinite(j.data)
        assert good.mean() > 0.95
        frac, n = agreement(o.data, j.data, np.broadcast_to(sigmas[case], j.data.shape), good)
        assert frac >= 0.999, f"{case}: SCI parity {frac:.5f} over {n} good samples"
        np.testing.assert_array_equal(o.pixeldq, j.pixeldq)
        np.testing.assert_array_equal(o.groupdq, j.groupdq)
        for step, st in ours.step_status.items():
            assert getattr(j.meta.cal_step, get_pipeline("calwebb_dark").step(step).cal_step) == st, step
        if ours.step_status.get("rscd") == "COMPLETE":
            assert o.meta.rscd.instance == j.meta.rscd.instance
        identical = (np.array_equal(o.data, j.data) and np.array_equal(o.pixeldq, j.pixeldq)
                     and np.array_equal(o.groupdq, j.groupdq))
        print(f"\n{case}: SCI {100 * frac:.4f} % of {n} good samples within tolerance; "
              f"bit-identical SCI/PIXELDQ/GROUPDQ: {identical}; steps {ours.step_status}")
    expected = {"nrc_dark": {"group_scale": "SKIPPED", "dq_init": "COMPLETE", "saturation": "COMPLETE",
                             "ipc": "COMPLETE", "superbias": "COMPLETE", "refpix": "COMPLETE",
                             "linearity": "COMPLETE"},
                "miri_darkimg": {"group_scale": "SKIPPED", "dq_init": "COMPLETE", "emicorr": "SKIPPED",
                                 "saturation": "COMPLETE", "ipc": "SKIPPED", "firstframe": "SKIPPED",
                                 "lastframe": "COMPLETE", "reset": "COMPLETE", "linearity": "COMPLETE",
                                 "rscd": "COMPLETE"}}[case]
    assert ours.step_status == expected


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_dark_product_written_as_jwst_writes_it(runs, case, tmp_path):
    """The saved _dark opens with datamodels.open as a RampModel with jwst's extensions (no
    ERR; GROUP and INT_TIMES carried) and the provenance keywords; the NIR dark ramp is
    centred on 0 DN once bias and reference pixels are removed (no light, ~0.01 DN/s dark)."""
    from astropy.io import fits
    from stdatamodels.jwst import datamodels

    from calib.products import save_products

    bg = runs[0]
    c = bg.cases[case]
    res = run_pipeline("calwebb_dark", c["uncal"], c["refs"])
    root = c["uncal"].rsplit("/", 1)[-1].replace("_uncal.fits", "")
    names = {rt: p.rsplit("/", 1)[-1] for rt, p in c["refs"].items()}
    out = save_products(res, tmp_path, root, {"crds_context": "jwst_0541.pmap", "crds_version": "test",
                                              "references": names})
    assert list(out) == ["dark"] and out["dark"].name == f"{root}_dark.fits"
    with fits.open(out["dark"]) as h, fits.open(bg.product(case, "darkpipeline")) as hj:
        assert [x.name for x in h] == [x.name for x in hj]
        assert h[0].header["DATAMODL"] == "RampModel" and h[0].header["S_LINEAR"] == "COMPLETE"
        assert h[0].header["R_LINEAR"] == "crds://" + names["linearity"]
    with datamodels.open(out["dark"]) as m:
        assert isinstance(m, datamodels.RampModel) and m.data.ndim == 4
        if case == "nrc_dark":
            good = ((m.pixeldq & 1) == 0)[None, None] & ((m.groupdq & 3) == 0)
            assert abs(float(np.median(m.data[good]))) < 1.0
