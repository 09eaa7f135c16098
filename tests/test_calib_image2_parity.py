"""Parity of calwebb_image2 (calib) with jwst 3.0's Image2Pipeline on the same rates and references.

Cases: simulated ``_rate`` images (simulation.exposures.write_rate: stars through each
exposure's pointing and SIAF distortion, sky, Poisson and read noise, cosmic rays, bad
pixels) of NIRCam NRCA1 SUB640 F200W, NIRISS NIS SUB256 F150W and MIRI MIRIMAGE
BRIGHTSKY F770W, with the simulator's stage-2 imaging references (DISTORTION,
FILTEROFFSET, FLAT, PHOTOM, AREA in the real formats, simulation.imaging_refs). jwst runs
in one background process (tests/parity_support.py), offline under the real jwst_0541
context with every reference given as ``override_<reftype>``.

Criteria (issue 12): ``_cal``: >= 99.9 % of good pixels (jwst's DQ without DO_NOT_USE,
finite) within 1e-4 |jwst| + 0.01 ERR_jwst, DQ equal on >= 99.9 %, ERR and VAR_* within
1e-3 relative; WCS: sky positions of ``_cal`` and ``_i2d`` agree with jwst's to 1e-3 px over
the array; ``_i2d``: >= 99 % of the pixels with weight > 0 within 1e-3 relative, WHT and
CON equal.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from calib.pipelines import get_pipeline, run_pipeline
from tests.parity_support import JwstBackground, agreement, close_fraction

TARGET = (80.0, -69.5)
#: case -> (instrument, detector, aperture, filter, pupil, readpatt, ngroups, field radius ", stars)
CASES = {
    "nircam": ("NIRCAM", "NRCA1", "NRCA1_SUB640", "F200W", "CLEAR", "MEDIUM8", 2, 16.0, 80),
    "niriss": ("NIRISS", "NIS", "NIS_SUB256", "CLEAR", "F150W", "NIS", 3, 14.0, 60),
    "miri": ("MIRI", "MIRIMAGE", "MIRIM_BRIGHTSKY", "F770W", None, "FAST", 5, 45.0, 80),
}
#: every reference jwst's steps ask for, given (the others N/A: the real context names files
#: that are not in the offline cache, or reftypes it does not know)
_NA_WCS = ("specwcs", "regions", "wavelengthrange", "camera", "chromcorr", "collimator", "disperser", "fore",
           "fpa", "msa", "ote", "ifupost", "ifufore", "ifuslicer")
_STEPS = ('{"assign_wcs": {"override_distortion": r["distortion"], "override_filteroffset": r["filteroffset"], '
          + ", ".join(f'"override_{rt}": "N/A"' for rt in _NA_WCS) + '},'
          ' "flat_field": {"override_flat": r["flat"], "override_fflat": "N/A", "override_sflat": "N/A",'
          ' "override_dflat": "N/A"},'
          ' "photom": {"override_photom": r["photom"], "override_area": r["area"]}}')


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from simulation import exposures, imaging_refs, sky

    base = tmp_path_factory.mktemp("image2_parity")
    cases = {}
    for k, (name, (instr, det, ap, filt, pup, patt, ng, radius, nstars)) in enumerate(CASES.items()):
        written = imaging_refs.write_imaging_references(base / "refs" / name, instr, det, [(filt, pup)], seed=k)
        refs = {rt: str(paths[0]) for rt, paths in written.items() if paths}
        f = sky.random_star_field(*TARGET, radius, nstars, seed=k, flux_range=(5.0, 200.0), min_separation=1.0)
        p = sky.make_pointing(instr, ap, *TARGET, 20.0 + 40 * k)
        exp = exposures.ImagingExposure(instr, det, ap, filt, pup, patt, ng)
        path, _truth = exposures.write_rate(
            base / name / f"jw99999{k + 2:03d}001_01101_00001_{det.lower()}_rate.fits", exp,
            sky.SkyScene(f, p, instr, det, filt, pup), seed=k, expstart=60100.0 + k,
            observation={"OBSERVTN": f"{k + 2:03d}"})
        cases[name] = {"uncal": str(path), "refs": refs, "out": str(base / name / "jwst"),
                       "root": path.name[: -len("_rate.fits")]}
        if name == "nircam":                   # and a Level-2 association with two background members
            members = [{"expname": str(path), "exptype": "science"}]   # absolute: jwst reads from the cwd
            for b in range(2):
                offsky = sky.make_pointing(instr, ap, TARGET[0] + 0.1, TARGET[1] + 0.05 * b, 20.0)
                few = sky.random_star_field(TARGET[0] + 0.1, TARGET[1] + 0.05 * b, radius, 3, seed=20 + b,
                                            flux_range=(5.0, 50.0), min_separation=1.0)
                bpath, _ = exposures.write_rate(
                    path.parent / f"jw99999{k + 2:03d}001_01101_{b + 2:05d}_{det.lower()}_rate.fits", exp,
                    sky.SkyScene(few, offsky, instr, det, filt, pup), seed=30 + b, expstart=60100.1 + b,
                    observation={"OBSERVTN": f"{k + 2:03d}", "EXPOSURE": f"{b + 2:05d}"})
                members.append({"expname": str(bpath), "exptype": "background"})
            root = path.name[: -len("_rate.fits")]
            asn = path.parent / "jw99999-o002_20260101t000000_image2_00001_asn.json"
            asn.write_text(json.dumps({"asn_type": "image2", "asn_rule": "Asn_Lv2Image", "asn_id": "o002",
                                       "asn_pool": "simulated", "program": "99999", "code_version": "test",
                                       "products": [{"name": root, "members": members}]}))
            cases["nircam_bkg"] = {"uncal": str(asn), "refs": refs, "out": str(base / "nircam_bkg" / "jwst"),
                                   "root": root}
    bg = JwstBackground(base, "Image2Pipeline", _STEPS, cases)
    ours = {name: run_pipeline("calwebb_image2", c["uncal"], c["refs"]) for name, c in cases.items()}
    yield bg, ours, cases
    bg.close()


def _jwst_product(bg, name, suffix):
    from stdatamodels.jwst import datamodels

    bg.product(name, "cal")                     # waits for the case (and raises with jwst's log)
    case = bg.cases[name]
    from pathlib import Path

    path = Path(case["out"]) / f"{case['root']}_{suffix}.fits"
    return datamodels.open(path)


def _wcs_offset_px(ours, theirs, shape, step=16):
    """Largest distance (px) between the sky positions two gwcs objects give a grid of pixels
    (forward transforms only; the angle in units of the local pixel size of ``theirs``)."""
    ny, nx = shape
    yy, xx = np.mgrid[0:ny:step, 0:nx:step].astype(float)
    ra1, dec1 = ours(xx, yy)
    ra2, dec2 = theirs(xx, yy)
    ra3, dec3 = theirs(xx + 1.0, yy)
    ok = np.isfinite(ra1) & np.isfinite(ra2) & np.isfinite(ra3)
    assert ok.mean() > 0.99

    def sep(a1, d1, a2, d2):                  # degrees, small angles
        return np.hypot((a1 - a2) * np.cos(np.radians(d2)), d1 - d2)

    return float(np.max(sep(ra1, dec1, ra2, dec2)[ok] / sep(ra3, dec3, ra2, dec2)[ok]))


@pytest.mark.slow
@pytest.mark.parametrize("case", [*CASES, "nircam_bkg"])
def test_cal_parity_with_jwst(runs, case):
    bg, ours, _ = runs
    res = ours[case]
    cal = res.products["cal"]
    with _jwst_product(bg, case, "cal") as j:
        good = ((j.dq & 1) == 0) & np.isfinite(j.data)
        frac, n = agreement(cal.data, j.data, j.err, good)
        dq_equal = float((cal.dq == j.dq).mean())
        print(f"\n{case}: SCI agreement {frac:.6f} of {n} good pixels; DQ equal {dq_equal:.6f}")
        assert n > 0.5 * cal.data.size
        assert frac >= 0.999 and dq_equal >= 0.999
        for arr in ("err", "var_poisson", "var_rnoise", "var_flat"):
            assert close_fraction(getattr(cal, arr), getattr(j, arr), good, 1e-3) >= 0.999, arr
        np.testing.assert_array_equal(np.isnan(cal.data), np.isnan(j.data))
        np.testing.assert_allclose(cal.area, j.area)
        pj, po = j.meta.photometry, cal.meta.photometry
        assert po.conversion_megajanskys == pytest.approx(pj.conversion_megajanskys, rel=1e-6)
        assert po.conversion_microjanskys == pytest.approx(pj.conversion_microjanskys, rel=1e-6)
        assert po.pixelarea_steradians == pytest.approx(pj.pixelarea_steradians, rel=1e-9)
        assert po.pixelarea_arcsecsq == pytest.approx(pj.pixelarea_arcsecsq, rel=1e-9)
        assert cal.meta.bunit_data == j.meta.bunit_data == "MJy/sr"
        for step in ("assign_wcs", "flat_field", "photom"):
            assert getattr(cal.meta.cal_step, step) == getattr(j.meta.cal_step, step) == "COMPLETE", step
        assert cal.meta.cal_step.resample is None and j.meta.cal_step.resample is None   # the cal precedes it
        if case == "nircam_bkg":           # the background members' clipped mean was subtracted
            assert cal.meta.cal_step.bkg_subtract == j.meta.cal_step.bkg_subtract == "COMPLETE"
            assert cal.meta.asn.table_name == j.meta.asn.table_name
            plain = ours["nircam"].products["cal"]
            sky_drop = np.nanmedian(plain.data - cal.data)
            assert sky_drop > 0.5 * np.nanmedian(plain.data)
        # WCS: the same sky over the whole array (1e-3 px), the same SIP header fit and S_REGION
        off = _wcs_offset_px(cal.meta.wcs, j.meta.wcs, cal.data.shape)
        print(f"{case}: cal WCS max offset from jwst's {off:.2e} px")
        assert off < 1e-3
        assert cal.meta.wcsinfo.s_region == j.meta.wcsinfo.s_region
        assert cal.meta.wcsinfo.ctype1 == j.meta.wcsinfo.ctype1


@pytest.mark.slow
@pytest.mark.parametrize("case", [*CASES, "nircam_bkg"])
def test_i2d_parity_with_jwst(runs, case):
    bg, ours, _ = runs
    i2d = ours[case].products["i2d"]
    with _jwst_product(bg, case, "i2d") as j:
        assert i2d.data.shape == j.data.shape
        assert i2d.meta.cal_step.resample == j.meta.cal_step.resample == "COMPLETE"
        w = j.wht > 0
        ok = np.isclose(i2d.data, j.data, rtol=1e-3, atol=0) | (np.isnan(i2d.data) & np.isnan(j.data))
        print(f"\n{case}: i2d {ok[w].mean():.6f} of {w.sum()} weighted pixels within 1e-3")
        assert w.sum() > 0.3 * w.size and ok[w].mean() >= 0.99
        assert close_fraction(i2d.wht, j.wht, w, 1e-3) >= 0.99
        np.testing.assert_array_equal(i2d.con, j.con)
        for attr in ("resample.pixfrac", "resample.kernel", "resample.weight_type", "resample.pointings",
                     "exposure.exposure_time", "exposure.start_time", "exposure.end_time", "bunit_data",
                     "wcsinfo.s_region", "photometry.conversion_megajanskys"):
            a, b = i2d.meta, j.meta
            for part in attr.split("."):
                a, b = getattr(a, part), getattr(b, part)
            assert a == b, attr
        assert i2d.meta.photometry.pixelarea_steradians == pytest.approx(j.meta.photometry.pixelarea_steradians,
                                                                          rel=1e-9)
        for arr in ("err", "var_poisson", "var_rnoise", "var_flat"):
            assert close_fraction(getattr(i2d, arr), getattr(j, arr), w, 1e-3) >= 0.99, arr
        off = _wcs_offset_px(i2d.meta.wcs, j.meta.wcs, i2d.data.shape)
        print(f"{case}: i2d WCS max offset from jwst's {off:.2e} px")
        assert off < 1e-3


@pytest.mark.slow
def test_products_written_and_reopened(runs, tmp_path):
    """``_cal`` and ``_i2d`` written by save_products open as ImageModels with the gwcs, the
    S_* keywords and the R_* keywords of the references read."""
    from stdatamodels.jwst import datamodels

    from calib.products import save_products

    _, ours, cases = runs
    res = ours["nircam"]
    refs = res.references_used
    assert set(refs) == {"distortion", "filteroffset", "flat", "photom", "area"}
    out = save_products(res, tmp_path, "jw_image2_test",
                        {"crds_context": "jwst_sim_0001.pmap", "crds_version": "13.0.0", "cal_version": "0",
                         "references": {rt: p.rsplit("/", 1)[-1] for rt, p in refs.items()}})
    assert set(out) == {"cal", "i2d"}
    with datamodels.open(out["cal"]) as cal:
        assert isinstance(cal, datamodels.ImageModel)
        assert cal.meta.ref_file.distortion.name.startswith("crds://")
        assert cal.meta.ref_file.flat.name.startswith("crds://")
        assert cal.meta.cal_step.flat_field == "COMPLETE" and cal.meta.cal_step.bkg_subtract == "SKIPPED"
        off = _wcs_offset_px(cal.meta.wcs, res.products["cal"].meta.wcs, cal.data.shape)
        assert off < 1e-6
    with datamodels.open(out["i2d"]) as i2d:
        assert isinstance(i2d, datamodels.ImageModel) and i2d.wht.shape == i2d.data.shape
        assert i2d.con.ndim == 3


@pytest.mark.slow
def test_run_and_save_writes_the_cal_before_resample(runs, tmp_path):
    """run_and_save (the archive's way: the _cal written before resample, its ERR/AREA released
    for it) writes the same files as run_pipeline + save_products, and leaves none on failure."""
    from astropy.io import fits

    from calib.products import run_and_save, save_products

    _, ours, cases = runs
    c = cases["nircam"]
    prov = {"crds_context": "jwst_sim_0001.pmap", "crds_version": "13.0.0", "cal_version": "0",
            "references": {rt: p.rsplit("/", 1)[-1] for rt, p in ours["nircam"].references_used.items()}}
    res, files = run_and_save("calwebb_image2", c["uncal"], c["refs"], None, tmp_path / "early", c["root"], prov)
    assert set(files) == {"cal", "i2d"} and set(res.written) == {"cal"} and set(res.products) == {"i2d"}
    plain = save_products(ours["nircam"], tmp_path / "plain", c["root"], prov)
    for suffix in ("cal", "i2d"):
        assert files[suffix].name == plain[suffix].name
        with fits.open(files[suffix]) as a, fits.open(plain[suffix]) as b:
            assert [h.name for h in a] == [h.name for h in b]
            for ha, hb in zip(a, b, strict=True):
                if ha.name == "ASDF":
                    continue
                skip = ("DATE", "CHECKSUM", "DATASUM")
                assert {k: v for k, v in ha.header.items() if k not in skip} == \
                    {k: v for k, v in hb.header.items() if k not in skip}, (suffix, ha.name)
                if ha.data is not None:
                    np.testing.assert_array_equal(ha.data, hb.data, err_msg=f"{suffix} {ha.name}")
    # a target that exists: refused before anything runs
    (tmp_path / "exists").mkdir()
    (tmp_path / "exists" / f"{c['root']}_i2d.fits").write_bytes(b"")
    with pytest.raises(FileExistsError):
        run_and_save("calwebb_image2", c["uncal"], c["refs"], None, tmp_path / "exists", c["root"], prov)
    assert sorted(p.name for p in (tmp_path / "exists").iterdir()) == [f"{c['root']}_i2d.fits"]
    # resample failing after the _cal was written: the _cal is removed
    with pytest.raises(Exception):  # noqa: B017 - whatever jwst raises for a missing output WCS file
        run_and_save("calwebb_image2", c["uncal"], c["refs"], {"resample": {"output_wcs": str(tmp_path / "no.asdf")}},
                     tmp_path / "failed", c["root"], prov)
    assert not list((tmp_path / "failed").iterdir())


@pytest.mark.slow
def test_consumed_cal_arrays_keep_their_values(runs):
    """resample consuming a _cal still being written (run_and_save's background write) never
    changes its arrays' values: when match_nans_and_flags has work (a NaN without DO_NOT_USE),
    it runs on a copy, and the i2d equals the one resampled from an untouched copy."""
    from calib.pipelines import get_pipeline
    from calib.steps.resample import nans_and_flags_matched, resample_image

    _, ours, _ = runs
    params = get_pipeline("calwebb_image2").resolve_params(None)["resample"]
    models = [ours["nircam"].products["cal"].copy() for _ in range(2)]
    for m in models:
        m.data[10, 12] = np.nan             # NaN in SCI only, DQ without DO_NOT_USE
        m.dq[10, 12] = 0
    assert not nans_and_flags_matched(models[0])
    arrays = {k: v for k, v in models[0].instance.items() if isinstance(v, np.ndarray)}
    before = {k: v.copy() for k, v in arrays.items()}
    consumed = resample_image(models[0], params, consume=True)
    plain = resample_image(models[1], params)
    for k, v in arrays.items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    for name in ("data", "wht", "con", "err", "var_rnoise", "var_poisson", "var_flat"):
        np.testing.assert_array_equal(getattr(consumed, name), getattr(plain, name), err_msg=name)


def test_required_reftypes_and_bad_input(tmp_path):
    from calib.errors import InputError
    from calib.pipelines import required_reftypes

    hdr = {"INSTRUME": "NIRCAM", "DETECTOR": "NRCA1", "EXP_TYPE": "NRC_IMAGE"}
    assert required_reftypes("calwebb_image2", hdr) == ["distortion", "filteroffset", "flat", "photom", "area"]
    assert required_reftypes("calwebb_image2", hdr, {"flat_field": {"skip": True}, "photom": {"skip": "true"}}) \
        == ["distortion", "filteroffset"]
    bad = tmp_path / "bad_rate.fits"
    bad.write_bytes(b"not a fits file")
    with pytest.raises(InputError, match="bad_rate.fits"):
        run_pipeline("calwebb_image2", bad, {})
    assert get_pipeline("Image2Pipeline").name == "calwebb_image2"


@pytest.mark.slow
def test_archive_calibrate_runs_image2_on_a_rate(runs, tmp_path, monkeypatch):
    """``archive calibrate calwebb_image2 X_rate.fits``: CRDS selects the simulator's imaging
    references from a synthetic context; ``X_cal.fits`` and ``X_i2d.fits`` are written with
    R_* keywords naming them."""
    from astropy.io import fits
    from typer.testing import CliRunner

    from archive.cli import app
    from archive.crds import cache as crdscache

    _, _, cases = runs
    case = cases["nircam"]
    crds = tmp_path / "crds"
    context = crdscache.write_synthetic_context(crds, list(case["refs"].values()))
    for var in ("ARCHIVE_DB_URL", "ARCHIVE_BROKER_URL", "ARCHIVE_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ARCHIVE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CRDS_PATH", str(crds))
    monkeypatch.setenv("CRDS_CONTEXT", context)
    rate = case["uncal"]
    r = CliRunner().invoke(app, ["calibrate", "calwebb_image2", rate, "--output-dir", str(tmp_path / "out")],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    root = rate.rsplit("/", 1)[-1][: -len("_rate.fits")]
    cal, i2d = tmp_path / "out" / f"{root}_cal.fits", tmp_path / "out" / f"{root}_i2d.fits"
    assert cal.is_file() and i2d.is_file()
    hdr = fits.getheader(cal)
    assert hdr["CRDS_CTX"] == context
    assert hdr["R_FLAT"] == "crds://" + case["refs"]["flat"].rsplit("/", 1)[-1]
    assert hdr["R_DISTOR"] == "crds://" + case["refs"]["distortion"].rsplit("/", 1)[-1]
    assert hdr["S_PHOTOM"] == "COMPLETE" and "S_RESAMP" not in hdr
    assert fits.getheader(i2d)["S_RESAMP"] == "COMPLETE"
    # a Level-2 association as input (strun calwebb_image2 x_asn.json): references are
    # selected with the science member's header, products are named after the asn product
    asn = cases["nircam_bkg"]
    r = CliRunner().invoke(app, ["calibrate", "calwebb_image2", asn["uncal"], "--output-dir", str(tmp_path / "asn")],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    hdr = fits.getheader(tmp_path / "asn" / f"{asn['root']}_cal.fits")
    assert hdr["S_BKDSUB"] == "COMPLETE" and hdr["R_FLAT"] == "crds://" + case["refs"]["flat"].rsplit("/", 1)[-1]
    assert hdr["ASNTABLE"] == asn["uncal"].rsplit("/", 1)[-1]


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_pixel_map_agrees_with_every_exact_gwcs_evaluation(runs, case):
    """The interpolated pixel map against the exact gwcs transforms at every input pixel:
    within 1e-3 output px (the check at the cell centres promises 1e-4)."""
    from calib.steps.resample import PIXMAP_TOLERANCE, pixel_map

    _, ours, _ = runs
    cal, i2d = ours[case].products["cal"], ours[case].products["i2d"]
    pixmap, err, step = pixel_map(cal.meta.wcs, i2d.meta.wcs, cal.data.shape)
    yy, xx = np.mgrid[0:cal.data.shape[0], 0:cal.data.shape[1]].astype(float)
    ex, ey = i2d.meta.wcs.backward_transform(*cal.meta.wcs.forward_transform(xx, yy))
    diff = np.hypot(pixmap[..., 0] - ex, pixmap[..., 1] - ey)
    print(f"\n{case}: node spacing {step} px, check at cell centres {err:.1e} px, "
          f"largest difference over all {diff.size} pixels {diff.max():.1e} px")
    assert step > 1 and err <= PIXMAP_TOLERANCE
    assert diff.max() < 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_pixel_corners_equal_the_corner_map_of_the_pixel_map(runs, case):
    """pixel_corners (the drizzle corners straight from the splines, no pixel map) is bit-identical
    to corner_map of pixel_map's map, over the bounding box resample drizzles and over a
    smaller range."""
    from stcal.resample.utils import resample_range

    from calib.drizzle import corner_map
    from calib.steps.resample import pixel_corner_rows, pixel_corners, pixel_map

    _, ours, _ = runs
    cal, i2d = ours[case].products["cal"], ours[case].products["i2d"]
    shape = cal.data.shape
    pixmap, err, step = pixel_map(cal.meta.wcs, i2d.meta.wcs, shape)
    full = resample_range(shape, cal.meta.wcs.bounding_box)
    inner = (full[0] + 3, full[1] - 5, full[2] + 7, full[3] - 2)
    for bounds in (full, inner):
        (cx, cy), err2, step2 = pixel_corners(cal.meta.wcs, i2d.meta.wcs, shape, bounds)
        ex, ey = corner_map(pixmap, bounds)
        assert (err2, step2) == (err, step)
        np.testing.assert_array_equal(cx, ex)
        np.testing.assert_array_equal(cy, ey)
        rows, err3, step3 = pixel_corner_rows(cal.meta.wcs, i2d.meta.wcs, shape, bounds)
        assert (err3, step3) == (err, step)
        for j0, j1 in ((bounds[2], bounds[2]), (bounds[2] + 5, bounds[2] + 40), (bounds[3] - 3, bounds[3])):
            bx, by = rows(j0, j1)       # a block of rows: the rows of the whole corner map
            np.testing.assert_array_equal(bx, ex[j0 - bounds[2]:j1 - bounds[2] + 2])
            np.testing.assert_array_equal(by, ey[j0 - bounds[2]:j1 - bounds[2] + 2])


@pytest.mark.slow
def test_pixel_fit_cache_reuses_a_fit_only_for_an_equal_output_transform(runs, monkeypatch):
    """Inside pixel_fit_cache, a copy of the output WCS (another object, same transform) reuses
    the member's fit and gives the bit-identical map; a shifted output grid gets its own fit."""
    import copy

    from astropy.modeling.models import Shift

    import calib.steps.resample as R

    _, ours, _ = runs
    cal, i2d = ours["nircam"].products["cal"], ours["nircam"].products["i2d"]
    shape = cal.data.shape
    ref, _, _ = R.pixel_map(cal.meta.wcs, i2d.meta.wcs, shape)
    fits = []
    new = R._fit_pixel_map_new
    monkeypatch.setattr(R, "_fit_pixel_map_new", lambda *a: fits.append(a) or new(*a))
    same = copy.deepcopy(i2d.meta.wcs)
    shifted = copy.deepcopy(i2d.meta.wcs)
    shifted.insert_transform(shifted.input_frame, Shift(0.5) & Shift(0.0), after=True)
    with R.pixel_fit_cache():
        a, _, _ = R.pixel_map(cal.meta.wcs, i2d.meta.wcs, shape)
        b, _, _ = R.pixel_map(cal.meta.wcs, same, shape)
        assert len(fits) == 1
        c, _, _ = R.pixel_map(cal.meta.wcs, shifted, shape)
        assert len(fits) == 2
    assert R._FIT_CACHE is None
    assert a.tobytes() == ref.tobytes() and b.tobytes() == ref.tobytes()
    np.testing.assert_allclose(c[..., 0], ref[..., 0] - 0.5, atol=1e-6)
    np.testing.assert_allclose(c[..., 1], ref[..., 1], atol=1e-6)


def test_shared_schema_parsing_still_validates(tmp_path):
    """calib.images makes asdf parse each schema resource once per process; a datamodel is still
    checked against its schema (every time), and a product written with it is read by a fresh
    process without calib (stdatamodels validating it on reading)."""
    import subprocess
    import sys

    import asdf.schema
    from asdf.exceptions import ValidationError
    from stdatamodels.jwst import datamodels

    from calib import images

    assert images._share_parsed_schemas() and asdf.schema._make_schema_loader._calib_shared
    load = asdf.schema._make_schema_loader()
    uri = "http://stsci.edu/schemas/jwst_datamodel/core.schema"
    assert load(uri) is load(uri)
    for _ in range(2):
        model = datamodels.ImageModel((8, 8), strict_validation=True)
        with pytest.raises(ValidationError, match="start_time"):
            model.meta.exposure.start_time = "not a number"
        model.meta.exposure.start_time = 60000.5
        model.validate()
    path = tmp_path / "x_i2d.fits"
    model.save(path)
    code = ("import sys\nfrom stdatamodels.jwst import datamodels\nassert 'calib' not in sys.modules\n"
            f"m = datamodels.open({str(path)!r}, strict_validation=True)\n"
            "assert m.meta.exposure.start_time == 60000.5 and m.data.shape == (8, 8)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)


def test_driz_weight_equals_stcals():
    """calib's ivm drizzle weights against stcal's build_driz_weight, bit for bit (NaN, 0, inf and
    negative variances, every DQ bit, jwst's good_bits and others)."""
    from stcal.resample.utils import build_driz_weight
    from stdatamodels.jwst.datamodels.dqflags import pixel

    from calib.steps.resample import driz_weight

    rng = np.random.default_rng(1)
    n = 256
    var = rng.normal(1, 1, (n, n)).astype(np.float32)
    for value, frac in ((np.nan, 0.05), (0.0, 0.05), (np.inf, 0.01), (1e-45, 0.01)):
        var[rng.random((n, n)) < frac] = value
    dq = rng.integers(0, 2**32, (n, n), dtype=np.uint32)
    dq[rng.random((n, n)) < 0.5] = 0
    model = {"data": var.copy(), "dq": dq, "var_rnoise": var}
    for good_bits in ("~DO_NOT_USE+NON_SCIENCE", None, 0, 4, "~0"):
        ours = driz_weight(model, "ivm", good_bits, pixel)
        with np.errstate(all="ignore"):
            ref = build_driz_weight(model, weight_type="ivm", good_bits=good_bits, flag_name_map=pixel)
        assert ours.dtype == ref.dtype == np.float32
        np.testing.assert_array_equal(ours.view(np.uint32), ref.view(np.uint32))


@pytest.mark.parametrize("pixfrac", [1.0, 0.7])
def test_drizzle_square_equals_drizzles_c_kernel(pixfrac):
    """calib.drizzle.drizzle_square against the drizzle package's square kernel (as jwst runs it,
    one call per array) on a rotated, sheared map with unmapped pixels and zero weights: SCI,
    WHT, CON and a companion array bit-identical."""
    rng = np.random.default_rng(1)
    n, th = 120, 0.3
    yy, xx = np.mgrid[0:n, 0:n].astype(float)
    pixmap = np.dstack([np.cos(th) * xx * 1.02 - np.sin(th) * yy + 70.3 + 1e-4 * xx * yy,
                        np.sin(th) * xx + np.cos(th) * yy * 0.98 + 5.7])
    pixmap[40:43, 20:30] = np.nan
    data = rng.normal(size=(n, n)).astype(np.float32)
    var = rng.random((1, n, n)).astype(np.float32)
    weight = rng.random((n, n)).astype(np.float32)
    weight[5:9, 5:9] = 0
    shape = (int(np.nanmax(pixmap[..., 1])) + 3, int(np.nanmax(pixmap[..., 0])) + 3)
    _assert_square_kernel_equals_drizzles(data, var, weight, pixmap, shape, pixfrac)


def _assert_square_kernel_equals_drizzles(data, var, weight, pixmap, shape, pixfrac, from_corners=False):
    """calib.drizzle.drizzle_square (from the pixel map, or from its corner map alone) and the
    drizzle package's square kernel (one call per array, as jwst runs it) on the same input:
    SCI, WHT, CON and a companion (variance) array bit-identical."""
    from drizzle.resample import Drizzle

    from calib.drizzle import corner_map, drizzle_square

    ny, nx = data.shape
    kw = {"exptime": 1.0, "pixmap": pixmap, "weight_map": weight, "pixfrac": pixfrac,
          "xmin": 0, "xmax": nx - 1, "ymin": 0, "ymax": ny - 1}
    c_sci = Drizzle(out_shape=shape, kernel="square", fillval="NAN")
    c_sci.add_image(data, **kw)
    c_var = Drizzle(out_shape=shape, kernel="square", fillval=np.nan, disable_ctx=True)
    c_var.add_image(var[0], **kw)
    img, wht = np.full(shape, np.nan, np.float32), np.zeros(shape, np.float32)
    extra, ctx = np.full((1, *shape), np.nan, np.float32), np.zeros(shape, np.int32)
    bounds = (0, nx - 1, 0, ny - 1)
    if from_corners == "blocks":    # the corners made block by block (blocks of 7 rows), never the whole map
        import calib.drizzle as D
        saved, D.CORNER_BLOCK_ROWS = D.CORNER_BLOCK_ROWS, 7
        try:
            drizzle_square(data, var, weight, None, bounds, pixfrac, img, extra, wht, ctx, bit=1,
                           corners=lambda j0, j1: corner_map(pixmap, (0, nx - 1, j0, j1)), init_fill=np.nan)
        finally:
            D.CORNER_BLOCK_ROWS = saved
    elif from_corners:      # the pixel map freed: the kernel (and its scan limits) from the corner map
        drizzle_square(data, var, weight, None, bounds, pixfrac, img, extra, wht, ctx, bit=1,
                       corners=corner_map(pixmap, bounds))
    else:
        drizzle_square(data, var, weight, pixmap, bounds, pixfrac, img, extra, wht, ctx, bit=1)
    np.testing.assert_array_equal(img, c_sci.out_img)
    np.testing.assert_array_equal(wht, c_sci.out_wht)
    np.testing.assert_array_equal(ctx, c_sci.out_ctx[0])
    np.testing.assert_array_equal(extra[0], c_var.out_img)


# the corner-map path is the one resample takes at pixfrac 1 (the pixel map freed)
@pytest.mark.parametrize(("pixfrac", "corners"), [(1.0, False), (1.0, True), (1.0, "blocks"), (0.7, False)])
@pytest.mark.parametrize(("th", "shift"), [
    (0.0, (-10.3, -7.6)),      # past the left and bottom edges
    (0.0, (20.2, 15.4)),       # past the right and top edges, most of it outside
    (0.0, (-30.0, 40.7)),      # wholly outside
    (0.3, (-10.3, -7.6)),
    (0.3, (20.2, 15.4)),
    (-0.7, (-10.3, -7.6)),
    (-0.7, (-30.0, 40.7)),     # rotated out past the left and top edges
    (2.0, (-10.3, -7.6)),
    (2.0, (20.2, 15.4)),
    (0.02, (-3.0, -3.0)),      # larger than the output: crosses all four edges
])
def test_drizzle_square_equals_drizzles_c_kernel_at_the_edges(th, shift, pixfrac, corners):
    """calib.drizzle.drizzle_square against the drizzle package's square kernel on maps that run
    past the output's edges (partly and wholly outside, rotated, over all four edges): SCI, WHT,
    CON and a companion array bit-identical. Drizzle processes only the input pixels wholly
    inside the input box's mapped outline clipped to the output frame, so input pixels whose
    drops straddle an output edge add nothing there; calib.drizzle.scan_limits does the same."""
    rng = np.random.default_rng(3)
    n = 60
    yy, xx = np.mgrid[0:n, 0:n].astype(float)
    pixmap = np.dstack([np.cos(th) * xx * 1.02 - np.sin(th) * yy + shift[0] + 30 + 1e-4 * xx * yy,
                        np.sin(th) * xx + np.cos(th) * yy * 0.98 + shift[1] + 20])
    if th == 0.02:
        pixmap = np.dstack([pixmap[..., 0] * 0.9, pixmap[..., 1] * 0.8])
    data = rng.normal(size=(n, n)).astype(np.float32)
    var = rng.random((1, n, n)).astype(np.float32)
    weight = rng.random((n, n)).astype(np.float32)
    _assert_square_kernel_equals_drizzles(data, var, weight, pixmap, (50, 55), pixfrac, from_corners=corners)


def _stcal_variances(inputs, names, scaling):
    """stcal's running variance sums and final variances/ERR as its numpy code computes them (the oracle).

    ``inputs``: one dict ``{name: resampled variance float32 (my, mx)}`` per input, ivm weights.
    """
    shape = inputs[0][names[0]].shape
    wsum = {n: np.full(shape, np.nan, np.float32) for n in names}
    wt = {n: np.zeros(shape, np.float32) for n in names}
    for var in inputs:
        rn = var["var_rnoise"]
        ok = (rn > 0) & np.isfinite(rn)
        weight = np.zeros(shape)
        weight[ok] = np.reciprocal(rn[ok])
        for n in names:
            mask = (var[n] >= 0) & np.isfinite(var[n]) & (weight > 0)
            wsum[n][mask] = np.nansum([wsum[n][mask], var[n][mask] * weight[mask] * weight[mask]], axis=0)
            wt[n][mask] += weight[mask]
    with np.errstate(invalid="ignore", divide="ignore"):
        final = {n: (wsum[n] * scaling / wt[n] / wt[n]).astype(np.float32) for n in names}
        stack = [final[n] for n in names]
        err = np.sqrt(np.nansum(stack, axis=0))
    err[np.all(np.isnan(stack), axis=0)] = np.nan
    return final, err


def test_variance_kernels_equal_stcals_arithmetic():
    """The numba variance bookkeeping of calib.steps.resample (running sums, final variances, the
    one-input shortcut in place, ERR from the variances) against stcal's numpy expressions on
    drizzled square roots with NaN, zeros and negatives: bit-identical."""
    from calib.steps import resample as rs

    rng = np.random.default_rng(5)
    names = ["var_rnoise", "var_flat", "var_poisson"]
    shape = (64, 80)

    def drizzled():
        sq = (rng.random((3, *shape)) * 3).astype(np.float32)
        sq[:, rng.random(shape) < 0.1] = np.nan                  # no drop there
        sq[0, rng.random(shape) < 0.05] = 0.0                     # zero read noise: weight 0
        sq[1, rng.random(shape) < 0.05] = np.nan                  # one variance missing
        return sq

    scaling = 1.0 / 0.97**2
    a, b = drizzled(), drizzled()
    for inputs in ([a], [a, b]):
        final, err = _stcal_variances([{n: s[k] ** 2 for k, n in enumerate(names)} for s in inputs], names, scaling)
        out = np.empty((3, *shape), np.float32)
        wsum = {n: np.full(shape, np.nan, np.float32) for n in names}
        wt = {n: np.zeros(shape, np.float32) for n in names}
        for s in inputs:
            for k, n in enumerate(names):
                rs._accumulate_variance(s[k], s[0], True, 0.0, wsum[n], wt[n])
        for k, n in enumerate(names):
            rs._final_variance(wsum[n], wt[n], np.float32(scaling), out[k])
            np.testing.assert_array_equal(out[k], final[n])
        e = np.empty(shape, np.float32)
        rs._error_from_variances(out, e)
        np.testing.assert_array_equal(e, err)
        if len(inputs) == 1:                      # the one-input shortcut, in place, VAR_RNOISE last
            sq = a.copy()
            for k in (1, 2, 0):
                rs._final_variance_one(sq[k], sq[0], True, 0.0, np.float32(scaling), sq[k])
            for k, n in enumerate(names):
                np.testing.assert_array_equal(sq[k], final[n])
