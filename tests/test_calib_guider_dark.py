"""calwebb_guider and calwebb_dark without jwst runs: declarations, references asked for,
bad input, and the guider kernels against plain numpy oracles (the parity with jwst is in
test_calib_guider_parity.py and test_calib_dark_parity.py)."""
from __future__ import annotations

import numpy as np
import pytest

from calib import dqflags
from calib.errors import InputError, ReferenceFileError
from calib.params import ParamError
from calib.pipelines import get_pipeline, required_reftypes, run_pipeline, step_order, validate_params
from calib.pipelines import dark as dark_pipeline
from calib.pipelines import guider as guider_pipeline
from calib.steps.flat_field import flat_field_rates
from calib.steps.guider_cds import guider_cds
from tests.conftest import shared

ACQ1 = ("raw", "jw01019001001_gs-acq1_2022117003102_uncal.fits")
GUIDE_HEADER = {"INSTRUME": "FGS", "DETECTOR": "GUIDER2", "EXP_TYPE": "FGS_ACQ1", "READPATT": "ACQ1",
                "SUBARRAY": "128X128"}


def test_exp_types_come_from_jwst():
    from jwst.associations.lib.dms_base import EXPTYPE_MAP
    from jwst.lib.exposure_types import FGS_GUIDE_EXP_TYPES

    assert set(guider_pipeline.exp_types()) == {t.upper() for t in FGS_GUIDE_EXP_TYPES} == {
        "FGS_ACQ1", "FGS_ACQ2", "FGS_TRACK", "FGS_FINEGUIDE", "FGS_ID-IMAGE", "FGS_ID-STACK"}
    assert {"NRC_DARK", "NIS_DARK", "NRS_DARK", "MIR_DARKIMG", "MIR_DARKMRS", "MIR_DARKALL"} <= set(
        dark_pipeline.exp_types())
    assert all(EXPTYPE_MAP[t.lower()] == "dark" for t in dark_pipeline.exp_types())


def test_registry_names_and_products():
    assert get_pipeline("GuiderPipeline").name == "calwebb_guider"
    assert get_pipeline("calwebb_dark.cfg").name == "calwebb_dark"
    assert [(p.suffix, p.model) for p in get_pipeline("calwebb_guider").products] == [("cal", "GuiderCalModel")]
    assert [(p.suffix, p.model) for p in get_pipeline("calwebb_dark").products] == [("dark", "RampModel")]


def test_reftypes_asked_for():
    # flat_field declares jwst's four reftypes but reads only FLAT outside NIRSpec spectroscopy
    assert required_reftypes("calwebb_guider", GUIDE_HEADER) == ["mask", "gain", "readnoise", "flat"]
    assert required_reftypes("calwebb_guider", GUIDE_HEADER, {"flat_field": {"skip": True}}) == [
        "mask", "gain", "readnoise"]
    assert step_order("calwebb_guider", GUIDE_HEADER) == [
        ("dq_init", ("mask",)), ("guider_cds", ("gain", "readnoise")), ("flat_field", ("flat",))]
    nrc = {"INSTRUME": "NIRCAM", "DETECTOR": "NRCA1", "EXP_TYPE": "NRC_DARK"}
    assert required_reftypes("calwebb_dark", nrc) == ["mask", "saturation", "superbias", "ipc", "linearity"]
    assert required_reftypes("calwebb_dark", nrc, {"ipc": {"skip": True}}) == [
        "mask", "saturation", "superbias", "linearity"]
    miri = {"INSTRUME": "MIRI", "DETECTOR": "MIRIMAGE", "EXP_TYPE": "MIR_DARKIMG"}
    assert required_reftypes("calwebb_dark", miri) == ["mask", "saturation", "ipc", "reset", "linearity", "rscd"]
    # a changed superbias on a near-IR dark restarts at saturation, which reads it first
    first = next(s for s, rts in step_order("calwebb_dark", nrc) if "superbias" in rts)
    assert first == "saturation"


def test_parameters_checked_before_anything_is_opened():
    with pytest.raises(ParamError, match="guider_cds"):
        validate_params("calwebb_guider", {"guider_cds": {"skip": True}})
    with pytest.raises(ParamError, match="user_supplied_flat"):
        validate_params("calwebb_guider", {"flat_field": {"user_supplied_flat": "my_flat.fits"}})
    assert validate_params("calwebb_guider", {"flat_field": {"inverse": "true"}})["flat_field"]["inverse"] is True
    with pytest.raises(ParamError, match="dark_current"):
        validate_params("calwebb_dark", {"dark_current": {"skip": True}})
    with pytest.raises(ParamError):
        run_pipeline("calwebb_guider", "/nonexistent_uncal.fits", {}, {"guider_cds": {"skip": "maybe"}})


def test_guider_refuses_other_exposures_and_missing_count_rate_references(tmp_path):
    nircam = shared("headers", "jw01075001001_03105_00009_nrca2_uncal.fits")
    with pytest.raises(InputError, match="not an? FGS guiding mode|FGS guiding mode"):
        run_pipeline("calwebb_guider", nircam, {})
    with pytest.raises(InputError, match="cannot open"):
        run_pipeline("calwebb_guider", tmp_path / "missing_uncal.fits", {})
    # GAIN/READNOISE N/A: guider_cds SKIPPED as in jwst, and no _cal can be made
    acq1 = shared(*ACQ1)
    with pytest.raises(ReferenceFileError, match=acq1.name):
        run_pipeline("calwebb_guider", acq1, {"gain": "N/A"})
    bad = tmp_path / "not_a_mask.fits"
    bad.write_text("not fits")
    with pytest.raises(ReferenceFileError, match="not_a_mask.fits"):
        run_pipeline("calwebb_guider", acq1, {"mask": str(bad)})


def _oracle_cds(data, exp_type, tgroup, gain, rn):
    """The jwst documentation's formulas, one pixel at a time, in float64."""
    n, ng, ny, nx = data.shape
    d = data.astype(np.float64)
    if exp_type.startswith("FGS_ID"):
        diff = np.minimum(d[0, 1] - d[0, 0], d[1, 1] - d[1, 0])[None]
    elif exp_type == "FGS_FINEGUIDE":
        diff = d[:, 4:8].mean(axis=1) - d[:, 0:4].mean(axis=1)
    else:
        diff = d[:, 1] - d[:, 0]
    var = 2 * (rn / tgroup) ** 2 + np.maximum(diff / (gain * tgroup), 0.0)
    return diff / tgroup, np.sqrt(var)


@pytest.mark.parametrize("exp_type, ngroups", [("FGS_ACQ1", 2), ("FGS_TRACK", 2), ("FGS_FINEGUIDE", 8),
                                               ("FGS_ID-IMAGE", 2), ("FGS_ID-STACK", 2)])
def test_guider_cds_against_oracle(exp_type, ngroups):
    rng = np.random.default_rng(3)
    n, ny, nx, tgroup = 3, 5, 6, 0.05418
    slope = rng.uniform(-5.0, 300.0, (ny, nx))
    data = (1.2e4 + slope[None, None] * np.arange(ngroups)[None, :, None, None]
            + rng.normal(0, 4.0, (n, ngroups, ny, nx))).astype(np.float32)
    gain = rng.uniform(1.8, 2.2, (ny, nx)).astype(np.float32)
    rn = rng.uniform(8.0, 12.0, (ny, nx)).astype(np.float32)
    rate, err = guider_cds(data, exp_type, tgroup, gain, rn)
    want_rate, want_err = _oracle_cds(data, exp_type, tgroup, gain, rn)
    assert rate.shape == err.shape == ((1,) if exp_type.startswith("FGS_ID") else (n,)) + (ny, nx)
    assert rate.dtype == err.dtype == np.float32
    # float32 group means of ~1.4e4 DN are exact to ~2e-3 DN, i.e. ~0.04 DN/s after / TGROUP
    np.testing.assert_allclose(rate, want_rate, rtol=2e-5, atol=0.1)
    np.testing.assert_allclose(err, want_err, rtol=2e-5)
    with pytest.raises(InputError):
        guider_cds(data[:, :1], exp_type, tgroup, gain, rn)


def test_flat_field_rates_flags_and_inverse():
    data = np.full((2, 2, 3), 100.0, np.float32)
    err = np.full((2, 2, 3), 3.0, np.float32)
    dq = np.zeros((2, 3), np.uint32)
    flat = np.array([[2.0, np.nan, 0.0], [0.5, 4.0, 1.0]], np.float32)
    ferr = np.full((2, 3), 0.1, np.float32)
    fdq = np.array([[0, 0, 0], [262144, 0, dqflags.DO_NOT_USE]], np.uint32)
    out, oerr, odq, var = flat_field_rates(data, err, dq, flat, ferr, fdq)
    bad = dqflags.DO_NOT_USE | 262144
    np.testing.assert_array_equal(odq, [[0, bad, bad], [bad, 0, dqflags.DO_NOT_USE]])
    # bad flat values are replaced by 1 (no correction)
    np.testing.assert_allclose(out[0], [[50.0, 100.0, 100.0], [100.0, 25.0, 100.0]])
    np.testing.assert_allclose(var[0, 0, 0], 50.0**2 / 4.0 * 0.01)
    np.testing.assert_allclose(oerr[0, 0, 0], np.sqrt(9.0 + 50.0**2 / 4.0 * 0.01), rtol=1e-6)
    assert data[0, 0, 0] == 100.0 and dq.sum() == 0          # inputs untouched
    back, berr, _, bvar = flat_field_rates(out, err, dq, flat, ferr, fdq, inverse=True)
    np.testing.assert_allclose(back, data, rtol=1e-6)
    assert not bvar.any() and np.array_equal(berr, err)
    nan_err = err.copy()
    nan_err[1, 1, 1] = np.nan
    out, oerr, _, var = flat_field_rates(data, nan_err, dq, flat, ferr, fdq)
    assert np.isnan(out[1, 1, 1]) and np.isnan(var[1, 1, 1]) and np.isfinite(out[0, 1, 1])


def test_id_stack_uses_the_mean_of_a_reference_that_does_not_cover_it():
    """ID-STACK data (stacked strips, SUBSIZE1 2304 in real headers) do not map onto the
    detector: as jwst, a full-frame GAIN/READNOISE is replaced by its mean; any other mode
    with a window outside the reference is an error naming the file."""
    from stdatamodels.jwst import datamodels

    from calib.references import ExposureInfo
    from calib.steps.guider_cds import _reference_plane

    gain = datamodels.GainModel(data=np.linspace(1.5, 2.5, 64 * 64, dtype=np.float32).reshape(64, 64))
    gain.meta.subarray.xstart = gain.meta.subarray.ystart = 1
    gain.meta.subarray.xsize = gain.meta.subarray.ysize = 64
    info = ExposureInfo(path="x_uncal.fits", instrument="FGS", detector="GUIDER1", exp_type="FGS_ID-STACK",
                        nints=2, ngroups=2, nframes=1, groupgap=0, frame_divisor=1, group_time=0.34,
                        frame_time=0.34, xstart=1, ystart=1, xsize=72, ysize=64, fastaxis=-2, slowaxis=-1,
                        noutputs=1, subarray="2048X64")
    plane = _reference_plane(gain, info, "gain.fits", "guider_cds", stacked=True)
    assert plane.shape == (64, 72) and plane.dtype == np.float32
    np.testing.assert_array_equal(plane, np.zeros((64, 72), np.float32) + np.mean(gain.data))
    with pytest.raises(ReferenceFileError, match="gain.fits"):
        _reference_plane(gain, info, "gain.fits", "guider_cds", stacked=False)
