"""MIRI reset and rscd steps: kernels on hand-made arrays, the pipeline on a simulated MIRI
exposure with a reset anomaly, and bad references (parity with jwst is in
test_calib_jwst_parity.py, case miri_2ints)."""
from __future__ import annotations

import numpy as np
import pytest
from stdatamodels.jwst import datamodels

from calib import dqflags
from calib.errors import ReferenceFileError
from calib.pipelines import run_pipeline
from calib.steps import reset as _reset
from calib.steps import rscd as _rscd
from tests.test_calib_support import make_miri

SAT, DNU = dqflags.SATURATED, dqflags.DO_NOT_USE
TABLE_DTYPE = [("subarray", "S17"), ("readpatt", "S12"), ("group_skip1", "<i4"),
               ("group_skip", "<i4")]


def test_reset_subtracts_first_groups_per_integration():
    data = np.zeros((4, 5, 2, 3), np.float32)
    ref = np.zeros((3, 4, 2, 3), np.float32)          # the file holds 3 ints x 4 groups
    ref[0] = 10.0
    ref[1] = 20.0
    ref[2] = np.nan                                   # never used: NINTS keyword is 2
    ref[:, 3] = 99.0                                  # beyond the NGROUPS keyword (3)
    rdq = np.zeros((2, 3), np.uint32)
    rdq[1, 2] = dqflags.DO_NOT_USE
    prep = _reset.prepare_reset(ref, rdq, ref_nints=2, ref_ngroups=3, path="r.fits")
    pdq = np.zeros((2, 3), np.uint32)
    out, pdq, st = _reset.reset(data, pdq, prep)
    assert st == "COMPLETE"
    np.testing.assert_array_equal(out[0, :3], -10.0)
    np.testing.assert_array_equal(out[1:, :3], -20.0)   # ints beyond NINTS reuse the last
    np.testing.assert_array_equal(out[:, 3:], 0.0)
    assert pdq[1, 2] == dqflags.DO_NOT_USE and pdq.sum() == dqflags.DO_NOT_USE
    # a segment starting at integration 1 (INTSTART 1 -> ref int 0); INTSTART 2 -> ref int 1
    seg = np.zeros((1, 5, 2, 3), np.float32)
    _reset.reset(seg, np.zeros((2, 3), np.uint32), prep, integration_start=2)
    np.testing.assert_array_equal(seg[0, :3], -20.0)
    # NaN in the used part becomes 0, as in jwst
    ref2 = np.full((1, 2, 2, 3), np.nan, np.float32)
    table, _ = _reset.prepare_reset(ref2, rdq, None, None, "r.fits")
    assert np.all(table == 0)
    with pytest.raises(ReferenceFileError, match="r.fits.*NINTS=5"):
        _reset.prepare_reset(ref, rdq, 5, 3, "r.fits")
    with pytest.raises(ReferenceFileError, match="r.fits.*4-D"):
        _reset.prepare_reset(ref[0], rdq, None, None, "r.fits")


def _gdq_case():
    # 2 integrations x 8 groups, 3 pixels: p0 never saturates; p1 saturates from group 2 in
    # integration 0 and from group 3 in integration 1; p2 is saturated from group 0
    gdq = np.zeros((2, 8, 1, 3), np.uint8)
    gdq[0, 2:, 0, 1] = SAT
    gdq[1, 3:, 0, 1] = SAT
    gdq[:, :, 0, 2] = SAT
    return gdq


def test_rscd_flags_and_lowers_for_early_saturation():
    gdq = _gdq_case()
    pdq = np.zeros((1, 3), np.uint32)
    gdq, pdq, st, kw = _rscd.rscd(gdq, pdq, (1, 2), exposure_nints=2)
    assert st == "COMPLETE"
    dnu = (gdq & DNU) != 0
    # integration 0, skip 1: p0 and p2 lose group 0; p1 (saturated at group 2 = skip + 1)
    # keeps all its groups (skip lowered to 0)
    assert dnu[0, :, 0, 0].tolist() == [True] + [False] * 7
    assert not dnu[0, :, 0, 1].any()
    assert dnu[0, 0, 0, 2] and not dnu[0, 1:, 0, 2].any()
    # integration 1, skip 2: p1 saturates at group 3 = skip + 1 -> skip 1
    assert dnu[1, :, 0, 0].tolist() == [True, True] + [False] * 6
    assert dnu[1, :, 0, 1].tolist() == [True] + [False] * 7
    assert dnu[1, :2, 0, 2].all()
    assert pdq[0, 1] == dqflags.FLUX_ESTIMATED and pdq[0, 0] == 0 and pdq[0, 2] == 0
    assert kw == {"keep_bright_firstgroup_int1": 1, "keep_groups_saturation_int1": 1,
                  "ngroups_skip_int1": 1, "keep_bright_firstgroup_int2p": 0,
                  "keep_groups_saturation_int2p": 1, "ngroups_skip_int2p": 2}


def test_rscd_rules_on_group_counts():
    # NGROUPS <= 5: one group everywhere; segment (INTSTART 3): no first integration
    gdq = np.zeros((2, 5, 1, 1), np.uint8)
    _, _, st, kw = _rscd.rscd(gdq, np.zeros((1, 1), np.uint32), (3, 4), exposure_nints=10,
                              integration_start=3)
    assert st == "COMPLETE" and kw["ngroups_skip_int2p"] == 1 and "ngroups_skip_int1" not in kw
    assert ((gdq & DNU) != 0)[:, :, 0, 0].tolist() == [[True] + [False] * 4] * 2
    # counts leaving fewer than 3 groups are lowered to NGROUPS - 3; deprecated -1 -> 1
    gdq = np.zeros((1, 7, 1, 1), np.uint8)
    _, _, _, kw = _rscd.rscd(gdq, np.zeros((1, 1), np.uint32), (6, 6), exposure_nints=1)
    assert kw == {"keep_bright_firstgroup_int1": 0, "keep_groups_saturation_int1": 0,
                  "ngroups_skip_int1": 4}
    _, _, _, kw = _rscd.rscd(np.zeros((1, 7, 1, 1), np.uint8), np.zeros((1, 1), np.uint32),
                             (-1, 2), exposure_nints=1)
    assert kw["ngroups_skip_int1"] == 1
    # fewer than 3 groups or no table row: SKIPPED, nothing flagged
    g2 = np.zeros((1, 2, 1, 1), np.uint8)
    assert _rscd.rscd(g2, np.zeros((1, 1), np.uint32), (1, 1), exposure_nints=1)[2] == "SKIPPED"
    assert _rscd.rscd(gdq, np.zeros((1, 1), np.uint32), None, exposure_nints=1)[2] == "SKIPPED"
    assert not g2.any()


def test_rscd_table_lookup():
    table = np.array([("SUB64", "FASTR1", 1, 2), ("SLITLESSPRISM", "FAST", 3, 4)], TABLE_DTYPE)
    assert _rscd.rscd_parameters(table, "sub64", "FASTR1", "x.fits") == (1, 2)
    assert _rscd.rscd_parameters(table, "SUBPRISM", "FAST", "x.fits") == (3, 4)   # old name
    assert _rscd.rscd_parameters(table, "FULL", "FAST", "x.fits") is None
    with pytest.raises(ReferenceFileError, match="x.fits.*group_skip1"):
        _rscd.rscd_parameters(np.array([("A", "B", 1)], TABLE_DTYPE[:2] + TABLE_DTYPE[3:]),
                              "A", "B", "x.fits")


@pytest.fixture(scope="module")
def miri_reset(tmp_path_factory):
    sim = make_miri(tmp_path_factory.mktemp("miri_reset"), nints=2, ngroups=8, bright=True)
    return sim, run_pipeline("calwebb_detector1", sim.uncal, sim.refs)


def test_pipeline_reset_removes_the_anomaly(miri_reset):
    sim, res = miri_reset
    assert res.step_status["reset"] == "COMPLETE" and res.step_status["rscd"] == "COMPLETE"
    assert res.references_used["reset"] == sim.refs["reset"]
    good = ((res.products["rate"].dq & DNU) == 0) & ~sim.refpix_mask
    good[12] = False                                  # the bright saturating row
    faint = good & (sim.truth_rate < 300)
    err = (res.products["rate"].data - sim.truth_rate) / res.products["rate"].err
    without = run_pipeline("calwebb_detector1", sim.uncal, {k: v for k, v in sim.refs.items() if k != "reset"})
    assert without.step_status["reset"] == "SKIPPED"
    err_without = (without.products["rate"].data - sim.truth_rate) / without.products["rate"].err
    # the decaying anomaly makes slopes too low unless subtracted
    assert abs(np.median(err[faint])) < 0.1
    assert np.median(err_without[faint]) < -0.5
    # rscd: keywords; the two pixels saturating early are FLUX_ESTIMATED, not the one
    # saturated from group 0
    assert res.products["rate"].meta.rscd.ngroups_skip_int1 == 1
    assert res.products["rate"].meta.rscd.ngroups_skip_int2p == 2
    assert res.products["rate"].meta.rscd.keep_groups_saturation_int1 >= 1
    fe = (res.products["rate"].dq & dqflags.FLUX_ESTIMATED) != 0
    # saturation grows one pixel (n_pix_grow_sat=1), so their 3x3 neighbourhoods too
    expect = np.zeros_like(fe)
    expect[11:14, 11:14] = expect[11:14, 19:22] = True
    np.testing.assert_array_equal(fe, expect)


def test_bad_reset_and_rscd_references(tmp_path):
    sim = make_miri(tmp_path, nints=1, ngroups=6)
    bad = datamodels.ResetModel(data=np.zeros((1, 3, 10, 10), np.float32))
    bad.meta.instrument.name = "MIRI"
    bad.meta.subarray.xstart, bad.meta.subarray.ystart = 1, 1
    bad.meta.subarray.xsize, bad.meta.subarray.ysize = 10, 10
    path = str(tmp_path / "small_reset.fits")
    bad.save(path)
    with pytest.raises(ReferenceFileError, match="reset.*small_reset.fits"):
        run_pipeline("calwebb_detector1", sim.uncal, dict(sim.refs, reset=path))
    with pytest.raises(ReferenceFileError, match="rscd.*no_rscd.fits"):
        run_pipeline("calwebb_detector1", sim.uncal, dict(sim.refs, rscd=str(tmp_path / "no_rscd.fits")))
    # a table without this SUBARRAY/READPATT: SKIPPED, as jwst
    rc = datamodels.RSCDModel()
    rc.rscd_group_skip_table = np.array([("FULL", "SLOW", 1, 2)], TABLE_DTYPE)
    other = str(tmp_path / "other_rscd.fits")
    rc.save(other)
    res = run_pipeline("calwebb_detector1", sim.uncal, dict(sim.refs, rscd=other))
    assert res.step_status["rscd"] == "SKIPPED"
