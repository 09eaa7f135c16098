"""End-to-end tests of calib's calwebb_detector1 on seeded, physically simulated exposures."""
from __future__ import annotations

import os

import numba
import numpy as np
import pytest
from astropy.io import fits
from stdatamodels.jwst import datamodels

import calib
from calib import dqflags
from calib.errors import CalibError, InputError, ReferenceFileError
from calib.pipelines import (PipelineResult, release_unreachable, required_reftypes, run_pipeline,
                             validate_params)
from calib.pipelines.detector1 import MIRI_STEPS, NIR_STEPS, steps_for
from calib.step import ExposureKeys
from calib.products import save_products
from calib.steps.group_scale import group_scale
from tests.test_calib_support import make_miri, make_nircam

DNU, SAT, JUMP = dqflags.DO_NOT_USE, dqflags.SATURATED, dqflags.JUMP_DET


@pytest.fixture(scope="module")
def nrc(tmp_path_factory):
    sim = make_nircam(tmp_path_factory.mktemp("nrc"), ipc_alpha=0.006)
    return sim, run_pipeline("calwebb_detector1", sim.uncal, sim.refs)


@pytest.fixture(scope="module")
def miri(tmp_path_factory):
    sim = make_miri(tmp_path_factory.mktemp("miri"))
    return sim, run_pipeline("calwebb_detector1", sim.uncal, sim.refs)


def _zscores(sim, model, extra_mask=None):
    good = ((model.dq & (DNU | SAT)) == 0) & ~sim.refpix_mask & np.isfinite(model.data)
    if extra_mask is not None:
        good &= extra_mask
    return ((model.data - sim.truth_rate) / model.err)[good]


NIR_NAMES = [s.name for s in NIR_STEPS]
MIRI_NAMES = [s.name for s in MIRI_STEPS]


def test_interface_lists():
    assert steps_for(ExposureKeys("NIRCAM")) == NIR_STEPS
    assert steps_for(ExposureKeys.from_header({"INSTRUME": "nirspec"})) == NIR_STEPS
    assert steps_for(ExposureKeys("MIRI")) == MIRI_STEPS
    assert NIR_NAMES[0] == "group_scale" and NIR_NAMES[-1] == "gain_scale"
    # only the reftypes of steps that run by default, in first-use order (emicorr is off)
    assert required_reftypes("calwebb_detector1", {"INSTRUME": "NIRCAM", "EXP_TYPE": "NRC_IMAGE"}) == [
        "mask", "saturation", "superbias", "ipc", "linearity", "dark", "gain", "readnoise"]
    assert required_reftypes("calwebb_detector1", {"INSTRUME": "MIRI", "DETECTOR": "MIRIMAGE"}) == [
        "mask", "saturation", "ipc", "reset", "linearity", "rscd", "dark", "gain", "readnoise"]
    assert "emicorr" in required_reftypes("calwebb_detector1", {"INSTRUME": "MIRI", "DETECTOR": "MIRIMAGE"},
                                          {"emicorr": {"skip": False}})
    with pytest.raises(InputError):
        steps_for(ExposureKeys("HST"))


def test_statuses_and_references(nrc):
    sim, res = nrc
    assert isinstance(res, PipelineResult)
    assert list(res.step_status) == NIR_NAMES
    expect_skipped = {"group_scale", "persistence", "charge_migration", "gain_scale",
                      "picture_frame", "clean_flicker_noise"}
    if "ipc" not in sim.refs:
        expect_skipped.add("ipc")
    for step, st in res.step_status.items():
        assert st == ("SKIPPED" if step in expect_skipped else "COMPLETE"), step
    assert res.references_used == sim.refs
    assert set(res.timings) == set(NIR_NAMES)


def test_rate_agrees_with_truth_within_err(nrc):
    sim, res = nrc
    assert isinstance(res.products["rate"], datamodels.ImageModel)
    assert res.products["rate"].data.dtype == np.float32 and res.products["rate"].dq.dtype == np.uint32
    z = _zscores(sim, res.products["rate"])
    assert z.size > 0.95 * (160 * 160 - sim.refpix_mask.sum() - 40)
    assert abs(z.mean()) < 0.05, z.mean()
    assert 0.9 < z.std() < 1.1, z.std()
    # reference pixels carry no light: rate ~ 0
    refrate = res.products["rate"].data[sim.refpix_mask]
    assert abs(np.nanmedian(refrate)) < 0.5


def test_rateints_per_integration(nrc):
    sim, res = nrc
    ri = res.products.get("rateints")
    assert isinstance(ri, datamodels.CubeModel)
    assert ri.data.shape == (2, 160, 160)
    for i in range(2):
        good = ((ri.dq[i] & (DNU | SAT)) == 0) & ~sim.refpix_mask
        z = ((ri.data[i] - sim.truth_rate) / ri.err[i])[good]
        assert abs(z.mean()) < 0.06 and 0.88 < z.std() < 1.12


def test_jumps_flagged_where_injected(nrc):
    sim, res = nrc
    for (i, g, y, x) in sim.jumps:
        assert res.products.get("rateints").dq[i, y, x] & JUMP, (i, g, y, x)
        assert res.products["rate"].dq[y, x] & JUMP
        # the jump does not bias the rate
        assert abs(res.products["rate"].data[y, x] - sim.truth_rate[y, x]) < 4 * res.products["rate"].err[y, x]
        for (yy, xx) in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
            assert res.products.get("rateints").dq[i, yy, xx] & JUMP      # flag_4_neighbors
    # false detections stay rare (4 sigma over 18 differences per pixel)
    assert ((res.products["rate"].dq & JUMP) != 0).mean() < 0.01


def test_saturation_flagged(nrc):
    sim, res = nrc
    for (y, x) in sim.saturating:
        assert res.products["rate"].dq[y, x] & SAT
        assert np.isfinite(res.products["rate"].data[y, x])   # early groups still fit
        assert abs(res.products["rate"].data[y, x] - sim.truth_rate[y, x]) < 5 * res.products["rate"].err[y, x]
        assert res.products["rate"].dq[y + 1, x + 1] & SAT    # n_pix_grow_sat = 1
    # NaN threshold -> NO_SAT_CHECK; NaN linearity coefficients -> NO_LIN_CORR
    assert res.products["rate"].dq[5, 6] & dqflags.NO_SAT_CHECK
    assert res.products["rate"].dq[10, 150] & dqflags.NO_LIN_CORR
    for (y, x) in sim.bad_pixels:
        assert res.products["rate"].dq[y, x] & DNU and np.isnan(res.products["rate"].data[y, x])
    assert np.all(res.products["rate"].dq[sim.refpix_mask] & dqflags.REFERENCE_PIXEL)
    for (y, x) in ((12, 13), (13, 30)):      # NaN and 0 gain
        assert res.products["rate"].dq[y, x] & dqflags.NO_GAIN_VALUE and res.products["rate"].dq[y, x] & DNU
        assert np.isnan(res.products["rate"].data[y, x])


def test_products_written_with_provenance(nrc, tmp_path):
    sim, res = nrc
    prov = {"crds_context": "jwst_1234.pmap", "crds_version": "14.0.3",
            "cal_version": calib.__version__,
            "references": {rt: os.path.basename(p) for rt, p in sim.refs.items()}}
    root = "jw09999001001_01101_00001_nrca2"
    paths = save_products(res, tmp_path, root, prov)
    assert paths["rate"].name == f"{root}_rate.fits"
    assert paths["rateints"].name == f"{root}_rateints.fits"
    assert sorted(os.listdir(tmp_path)) == sorted([f"{root}_rate.fits", f"{root}_rateints.fits"])
    for path in paths.values():
        h = fits.getheader(path, 0)
        assert h["CAL_VER"] == calib.__version__
        assert h["CRDS_CTX"] == "jwst_1234.pmap" and h["CRDS_VER"] == "14.0.3"
        assert h["R_MASK"] == "crds://nrca2_mask.fits"
        assert h["R_SATURA"] == "crds://nrca2_saturation.fits"
        assert h["R_SUPERB"] == "crds://nrca2_superbias.fits"
        assert h["R_LINEAR"] == "crds://nrca2_linearity.fits"
        assert h["R_DARK"] == "crds://nrca2_dark.fits"
        assert h["R_GAIN"] == "crds://nrca2_gain.fits"
        assert h["R_READNO"] == "crds://nrca2_readnoise.fits"
        assert h["R_IPC"] == "crds://nrca2_ipc.fits" and h["S_IPC"] == "COMPLETE"
        assert h["S_DQINIT"] == "COMPLETE" and h["S_SATURA"] == "COMPLETE"
        assert h["S_SUPERB"] == "COMPLETE" and h["S_REFPIX"] == "COMPLETE"
        assert h["S_LINEAR"] == "COMPLETE" and h["S_DARK"] == "COMPLETE"
        assert h["S_JUMP"] == "COMPLETE" and h["S_RAMP"] == "COMPLETE"
        assert h["S_PERSIS"] == "SKIPPED"
        assert h["S_GRPSCL"] == "SKIPPED" and h["S_GANSCL"] == "SKIPPED"
        assert h["S_CHGMIG"] == "SKIPPED"
        assert h["FILENAME"] == path.name
        with fits.open(path) as hdul:
            for ext in ("SCI", "ERR", "DQ", "VAR_POISSON", "VAR_RNOISE"):
                assert ext in hdul
            assert hdul["SCI"].header["BUNIT"] == "DN/s"
    with datamodels.open(paths["rate"]) as m:
        assert type(m) is datamodels.ImageModel
        np.testing.assert_array_equal(m.data, res.products["rate"].data)
        assert m.var_poisson.dtype.name == "float32" and m.dq.dtype.name == "uint32"
    with datamodels.open(paths["rateints"]) as m:
        assert type(m) is datamodels.CubeModel
        assert m.data.shape == (2, 160, 160)
    # never overwrite
    before = paths["rate"].read_bytes()
    with pytest.raises(FileExistsError):
        save_products(res, tmp_path, root, prov)
    assert paths["rate"].read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == sorted([f"{root}_rate.fits", f"{root}_rateints.fits"])


def test_save_products_leaves_nothing_on_error(nrc, tmp_path):
    _, res = nrc
    with pytest.raises(ValueError):
        save_products(res, tmp_path, "x", {"references": {"not_a_reftype": "a.fits"}})
    assert os.listdir(tmp_path) == []


def _arrays(res):
    rate = res.products["rate"]
    out = [rate.data, rate.dq, rate.err, rate.var_poisson, rate.var_rnoise]
    if res.products.get("rateints") is not None:
        out += [res.products.get("rateints").data, res.products.get("rateints").dq, res.products.get("rateints").err]
    return [np.asarray(a).tobytes() for a in out]


def test_rerun_is_bit_identical_with_1_and_2_threads(nrc):
    sim, res = nrc
    ref = _arrays(res)
    old = numba.get_num_threads()
    try:
        for n in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(n)
            assert _arrays(run_pipeline("calwebb_detector1", sim.uncal, sim.refs)) == ref
    finally:
        numba.set_num_threads(old)


def test_concurrent_runs_in_threads(nrc):
    from concurrent.futures import ThreadPoolExecutor

    sim, res = nrc
    with ThreadPoolExecutor(2) as pool:
        outs = list(pool.map(lambda _: run_pipeline("calwebb_detector1", sim.uncal, sim.refs), range(2)))
    for out in outs:
        assert _arrays(out) == _arrays(res)


def test_params_and_skips(nrc):
    sim, _ = nrc
    with pytest.raises(ValueError, match="nosuchstep"):
        run_pipeline("calwebb_detector1", sim.uncal, sim.refs, {"nosuchstep": {}})
    with pytest.raises(ValueError, match="bogus"):
        run_pipeline("calwebb_detector1", sim.uncal, sim.refs, {"jump": {"bogus": 1}})
    with pytest.raises(ValueError, match="persistence"):
        run_pipeline("calwebb_detector1", sim.uncal, sim.refs, {"persistence": {"skip": False}})
    refs = dict(sim.refs, linearity="N/A", dark=None)
    res = run_pipeline("calwebb_detector1", sim.uncal, refs, {"refpix": {"skip": True}, "firstframe": {"skip": True},
                                          "jump": {"rejection_threshold": 1e9,
                                                   "four_group_rejection_threshold": 1e9,
                                                   "three_group_rejection_threshold": 1e9}})
    assert res.step_status["refpix"] == "SKIPPED"
    assert res.step_status["linearity"] == "SKIPPED"
    assert res.step_status["dark_current"] == "SKIPPED"
    assert "linearity" not in res.references_used and "dark" not in res.references_used
    assert not (res.products["rate"].dq & JUMP).any()
    assert "firstframe" not in res.step_status         # a MIRI step: ignored for NIRCam


def test_validate_params():
    p = validate_params("calwebb_detector1", {"jump": {"rejection_threshold": "5", "flag_4_neighbors": "false"},
                         "refpix": {"skip": "true", "side_smoothing_length": 13}})
    assert p["jump"]["rejection_threshold"] == 5.0 and p["jump"]["flag_4_neighbors"] is False
    assert p["refpix"]["skip"] is True and p["refpix"]["side_smoothing_length"] == 13
    assert p["persistence"]["skip"] and p["emicorr"]["skip"] and not p["dq_init"]["skip"]
    assert p["firstframe"]["skip"] and p["charge_migration"]["skip"]
    # jwst allows None for emicorr's use_n_cycles (use all integrations), not for others
    checked = validate_params("calwebb_detector1", {"emicorr": {"use_n_cycles": "None"}})
    assert checked["emicorr"]["use_n_cycles"] is None
    with pytest.raises(ValueError, match="rejection_threshold"):
        validate_params("calwebb_detector1", {"jump": {"rejection_threshold": None}})
    for bad, word in (({"jump": {"rejection_threshold": "abc"}}, "rejection_threshold"),
                      ({"refpix": {"side_smoothing_length": 1.5}}, "side_smoothing_length"),
                      ({"jump": {"flag_4_neighbors": "maybe"}}, "flag_4_neighbors"),
                      ({"ramp_fit": {"skip": True}}, "ramp_fit"),
                      ({"persistence": {"skip": False}}, "persistence"),
                      ({"bogus": {}}, "bogus")):
        with pytest.raises(ValueError, match=word):
            validate_params("calwebb_detector1", bad)


def test_bad_references_and_inputs(nrc, tmp_path):
    sim, _ = nrc
    # wrong shape: a 100x100 gain cannot cover the 160x160 subarray
    g = datamodels.GainModel(data=np.ones((100, 100), np.float32))
    g.meta.subarray.xstart = 1
    g.meta.subarray.ystart = 1
    g.meta.subarray.xsize = 100
    g.meta.subarray.ysize = 100
    g.meta.instrument.name = "NIRCAM"
    bad = str(tmp_path / "bad_gain.fits")
    g.save(bad)
    with pytest.raises(ReferenceFileError, match="bad_gain.fits") as ei:
        run_pipeline("calwebb_detector1", sim.uncal, dict(sim.refs, gain=bad))
    assert "jump" in str(ei.value)
    assert isinstance(ei.value, ValueError) and isinstance(ei.value, CalibError)
    # a gain file without its SCI extension
    h = fits.PrimaryHDU()
    h.header["INSTRUME"] = "NIRCAM"
    h.header["REFTYPE"] = "GAIN"
    h.header["DATAMODL"] = "GainModel"
    nosci = str(tmp_path / "nosci_gain.fits")
    fits.HDUList([h]).writeto(nosci)
    with pytest.raises(ReferenceFileError, match="nosci_gain.fits"):
        run_pipeline("calwebb_detector1", sim.uncal, dict(sim.refs, gain=nosci))
    # an IPC kernel with NaN
    ipc_m = datamodels.IPCModel(data=np.full((3, 3), np.nan, np.float32))
    nan_ipc = str(tmp_path / "nan_ipc.fits")
    ipc_m.save(nan_ipc)
    with pytest.raises(ReferenceFileError, match="ipc.*nan_ipc.fits"):
        run_pipeline("calwebb_detector1", sim.uncal, dict(sim.refs, ipc=nan_ipc))
    with pytest.raises(ReferenceFileError, match="missing_mask.fits"):
        run_pipeline("calwebb_detector1", sim.uncal, dict(sim.refs, mask=str(tmp_path / "missing_mask.fits")))
    with pytest.raises(InputError, match="nothere_uncal.fits"):
        run_pipeline("calwebb_detector1", tmp_path / "nothere_uncal.fits", sim.refs)
    img = datamodels.ImageModel(data=np.zeros((10, 10), np.float32))
    p = str(tmp_path / "image_uncal.fits")
    img.save(p)
    with pytest.raises(InputError, match="image_uncal.fits"):
        run_pipeline("calwebb_detector1", p, sim.refs)


def test_miri_pipeline(miri):
    sim, res = miri
    assert list(res.step_status) == MIRI_NAMES
    for step in ("emicorr", "refpix", "group_scale", "gain_scale", "firstframe"):
        assert res.step_status[step] == "SKIPPED"
    for step in ("dq_init", "saturation", "lastframe", "reset", "linearity", "rscd",
                 "dark_current", "jump", "ramp_fit"):
        assert res.step_status[step] == "COMPLETE"
    assert res.products.get("rateints") is None          # NINTS == 1
    z = _zscores(sim, res.products["rate"])
    assert abs(z.mean()) < 0.08 and 0.85 < z.std() < 1.15
    assert res.products["rate"].dq[30, 30] & JUMP
    res2 = run_pipeline("calwebb_detector1", sim.uncal, sim.refs, {"firstframe": {"skip": False}})
    assert res2.step_status["firstframe"] == "COMPLETE"
    z2 = _zscores(sim, res2.products["rate"])
    assert abs(z2.mean()) < 0.08 and 0.85 < z2.std() < 1.15
    assert np.all(res2.products["rate"].err[10:20, 10:20] >= res.products["rate"].err[10:20, 10:20])


def test_miri_full_frame_refpix(tmp_path):
    sim = make_miri(tmp_path, ngroups=5, full_frame=True)
    res = run_pipeline("calwebb_detector1", sim.uncal, sim.refs)
    assert res.step_status["refpix"] == "COMPLETE"
    z = _zscores(sim, res.products["rate"])
    assert abs(z.mean()) < 0.05 and 0.9 < z.std() < 1.1
    noref = run_pipeline("calwebb_detector1", sim.uncal, sim.refs, {"refpix": {"skip": True}})
    zn = _zscores(sim, noref.products["rate"])
    assert zn.std() > 1.1 * z.std()      # the simulated amplifier drift is removed


def test_frame_averaged_groups_and_dark_averaging(tmp_path):
    # SHALLOW4-like: 4 frames averaged per group, 1 dropped; the dark has 1 frame per group
    sim = make_nircam(tmp_path, seed=7, nints=1, ngroups=6, nframes=4, groupgap=1,
                      readpatt="SHALLOW4", tframe=0.27864, full_refs=False)
    res = run_pipeline("calwebb_detector1", sim.uncal, sim.refs)
    assert res.step_status["dark_current"] == "COMPLETE"
    assert res.products.get("rateints") is None
    z = _zscores(sim, res.products["rate"])
    assert abs(z.mean()) < 0.08 and 0.85 < z.std() < 1.15


def test_group_scale():
    d = np.ones((1, 2, 2, 2), np.float32)
    out, st = group_scale(d, 8, 8)
    assert st == "SKIPPED" and np.all(out == 1)
    out, st = group_scale(d, 5, 4)
    assert st == "COMPLETE" and np.allclose(out, 0.8)


def test_release_unreachable_frees_a_dropped_result(nrc):
    import weakref

    sim, _ = nrc
    res = run_pipeline("calwebb_detector1", sim.uncal, sim.refs)
    rate, ints = weakref.ref(res.products["rate"]), weakref.ref(res.products["rateints"])
    del res
    release_unreachable()
    assert rate() is None and ints() is None
    release_unreachable()               # frozen survivors: cheap, and still correct


@pytest.mark.parametrize("nc", [2, 3, 4, 5, 6, 7, 8])
def test_linearity_kernel_float32_horner_bit_for_bit(nc):
    """linearity_kernel == Horner's rule in float32, one numpy operation per coefficient.

    The kernel fuses the polynomial into one expression per pixel for up to 6 coefficients:
    the float32 operations and their order must stay those of the per-coefficient passes
    (bit for bit, NaN and infinities included); SATURATED groups are left unchanged.
    """
    from calib.steps.linearity import linearity_kernel

    rng = np.random.default_rng(nc)
    shape = (2, 3, 7, 37)
    data = rng.uniform(-100.0, 60000.0, shape).astype(np.float32)
    data.flat[rng.integers(0, data.size, 20)] = np.nan
    data.flat[rng.integers(0, data.size, 5)] = np.inf
    gdq = np.where(rng.random(shape) < 0.2, np.uint8(SAT), np.uint8(0)).astype(np.uint8)
    gdq[rng.random(shape) < 0.1] |= np.uint8(DNU)
    coeffs = (rng.normal(0.0, 1.0, (nc, 7, 37)) * 10.0 ** -np.arange(nc)[:, None, None] * 3).astype(np.float32)
    coeffs[1] += 1.0
    want = data.copy()
    r = coeffs[nc - 1] * data
    for k in range(nc - 2, 0, -1):
        r = (r + coeffs[k]) * data
    r = r + coeffs[0]
    keep = (gdq & SAT) == 0
    want[keep] = r[keep]
    got = data.copy()
    linearity_kernel(got, gdq, coeffs)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize("length", [1, 3, 11, 21])
def test_refpix_sliding_median_equals_selection(length):
    """refpix's sliding-window median == the per-row selection (np.median) bit for bit.

    Blocks with ties, unusable pixels (rows without any), infinities, a NaN and a -0.0
    (those two take the selection path), and reflection at both ends.
    """
    from calib.steps.refpix import _running_median_rows_serial, _sliding_median_rows

    rng = np.random.default_rng(length)
    for trial in range(16):
        nrows = int(rng.integers(length // 2 + 1, 90))
        block = np.round(rng.normal(0.0, 5.0, (nrows, 4)), 1 if trial % 2 else 0)
        ok = rng.random((nrows, 4)) > 0.25
        ok[nrows // 2] = False
        if trial == 2:
            block[0, 0] = np.inf
            block[1, 1] = -np.inf
        if trial == 3:
            block[nrows - 1, 2] = np.nan
            ok[nrows - 1, 2] = True
        if trial == 4:
            block[0, 3] = -0.0
            ok[0, 3] = True
        if trial == 5:
            ok[:] = False
        want = _running_median_rows_serial(block, ok, length)
        got = _sliding_median_rows(block, ok, length)
        np.testing.assert_array_equal(got.view(np.uint64), want.view(np.uint64))


@pytest.mark.parametrize("nints,ngroups", [(1, 5), (2, 20), (1, 40), (9, 6), (8, 33)])
def test_saturation_group_masks_equal_plane_kernel(nints, ngroups):
    """The bit-mask kernels (masks of uint16/32/64 by NGROUPS; rows or integrations in
    parallel) flag the same GROUPDQ as the plane-by-plane kernel: saturation, growing,
    A/D floor and both read-pattern tests."""
    from calib.steps import saturation as sat

    rng = np.random.default_rng(ngroups * 10 + nints)
    ny, nx = 23, 41
    thresh = rng.uniform(3000.0, 5000.0, (ny, nx)).astype(np.float32)
    sdq = np.zeros((ny, nx), np.uint32)
    sdq[rng.random((ny, nx)) < 0.05] = dqflags.pixel["NO_SAT_CHECK"]
    thresh[rng.random((ny, nx)) < 0.03] = np.nan
    slope = rng.uniform(-300.0, 8000.0, (nints, 1, ny, nx))
    data = (slope * np.arange(1, ngroups + 1)[None, :, None, None] / ngroups
            + rng.normal(0.0, 30.0, (nints, ngroups, ny, nx))).astype(np.float32)
    gdq0 = np.zeros(data.shape, np.uint8)
    gdq0[rng.random(data.shape) < 0.02] = DNU
    bias = rng.uniform(0.0, 200.0, (ny, nx)).astype(np.float32)
    prepared = sat.prepare_threshold(thresh, sdq)
    for nframes in (1, 4):
        for grow in (0, 1, 2):
            got = gdq0.copy()
            sat.saturation(data, got, np.zeros((ny, nx), np.uint32), None, None, nframes, bias=bias,
                           n_pix_grow_sat=grow, prepared=prepared)
            want = gdq0.copy()
            t, no_check, _ = prepared
            rp = [[x + 1 + g * nframes for x in range(nframes)] for g in range(ngroups)]
            dil = np.array([np.mean(r) / r[-1] for r in rp], np.float64)
            m0, l2 = (float(np.mean(rp[0])), float(rp[2][-1])) if ngroups > 2 else (1.0, 1.0)
            sat.saturation_kernel(data, want, t, no_check, bias, dil, grow, m0, l2, float(nframes), True)
            assert (got & SAT).any()
            np.testing.assert_array_equal(got, want)
