"""Tests of the exposure simulator (simulation.ramps) and of pool simulation for MIRI."""
from __future__ import annotations

import numpy as np
import pytest

from simulation import ramps as sim
from tests.conftest import SHARED

POOLS = SHARED / "pools"


@pytest.fixture(scope="module")
def nrca1():
    return sim.make_detector("NIRCAM", "NRCA1", seed=0)


def _spec(readpatt="DEEP8", ngroups=3, nints=1, subarray="SUB400P"):
    # a corner window of NRCA1 (4 reference rows and columns) the size of the named subarray
    # (SIAF places SUB400P/SUB64P on NRCA3, NRCA4, NRCA5, NRCB1, NRCB5, not in NRCA1's corner)
    size = sim.subarray_geometry("NIRCAM", subarray, "NRCA3")[2:]
    return sim.ExposureSpec("NIRCAM", "NRCA1", subarray, readpatt, ngroups, nints,
                            geometry_override=(1, 1, *size))


# ------------------------------------------------------------------------- geometry, timing

def test_subarray_geometry_from_siaf_and_prd_and_unknown_name():
    """Windows come from pysiaf's SIAF, else the PRD; per detector (the old hand table gave
    one detector's window to all: NRCB1 SUB640, NRCA3 SUB400P, NIS SUB64, MIRI SUB128 were
    wrong), NIRSpec per GRATING (the old SUB512 was PRISM's window)."""
    assert sim.subarray_geometry("NIRCAM", "FULL") == (1, 1, 2048, 2048)
    assert sim.subarray_geometry("nircam", "subgrism256") == (1, 1, 2048, 256)
    assert sim.subarray_geometry("NIRCAM", "SUB640", "NRCA1") == (1409, 1409, 640, 640)
    assert sim.subarray_geometry("NIRCAM", "SUB640", "NRCB1") == (1, 1, 640, 640)
    assert sim.subarray_geometry("NIRCAM", "SUB400P", "NRCA3") == (1649, 1, 400, 400)
    assert sim.subarray_geometry("NIRISS", "SUB64", "NIS") == (1985, 1985, 64, 64)
    assert sim.subarray_geometry("MIRI", "SUB128", "MIRIMAGE") == (1, 891, 136, 128)
    assert sim.subarray_geometry("NIRSPEC", "SUB512") == (1025, 975, 512, 32)          # MIRROR
    assert sim.subarray_geometry("NIRSPEC", "SUB512", grating="PRISM") == (1025, 957, 512, 32)
    assert sim.subarray_geometry("NIRSPEC", "S200A2", "NRS1", grating="G140M") == (1, 1018, 2048, 64)
    assert sim.subarray_geometry("MIRI", "FULL") == (1, 1, 1032, 1024)
    assert sim.subarray_geometry("MIRI", "FULL", "MIRIFULONG") == (1, 1, 1032, 1024)
    assert sim.subarray_geometry("MIRI", "MASK1065")[2:] == (288, 224)
    assert sim.subarray_geometry("MIRI", "SUBPRISM") == (1, 529, 72, 416)
    assert sim.subarray_geometry("FGS", "8X8")[2:] == (8, 8)
    assert sim.subarray_geometry("NIRCAM", "MASKA210R", "NRCA2", apername="NRCA2_MASK210R")[2:] == (640, 640)
    with pytest.raises(ValueError, match="no subarray 'SUBNOPE'"):
        sim.subarray_geometry("NIRCAM", "SUBNOPE")
    with pytest.raises(ValueError, match="unknown instrument"):
        sim.subarray_geometry("WFC3", "FULL")


def test_readout_timing():
    full = sim.readout("NIRCAM", "RAPID", "FULL")
    assert (full.nframes, full.groupgap, full.tframe, full.tgroup) == (1, 0, 10.73677, 10.73677)
    deep8 = sim.readout("NIRCAM", "DEEP8", "FULL")
    assert (deep8.nframes, deep8.groupgap) == (8, 12)
    assert deep8.tgroup == pytest.approx(20 * 10.73677)
    sub = sim.readout("NIRCAM", "RAPID", "SUB400P")   # PRD: one output, (ncols + 12)(nrows + 2) 10 us
    assert sub.tframe == pytest.approx((400 + 12) * 402 * 1e-5, abs=1e-5) and sub.noutputs == 1
    # NIRSpec fast axis is DMS y: SUB512 is 512 x 32 in DMS, 32 pixels along the fast axis
    assert sim.readout("NIRSPEC", "NRSRAPID", "SUB512").tframe == pytest.approx(0.2257, abs=1e-3)
    assert sim.readout("MIRI", "FAST", "FULL").tframe == pytest.approx(2.77504)
    assert sim.readout("NIRCAM", "SHALLOW4").tgroup == pytest.approx(5 * 10.73677)
    with pytest.raises(ValueError, match="READPATT"):
        sim.readout("NIRCAM", "NRSRAPID")
    with pytest.raises(ValueError, match="no MIRI SLOW readout"):   # MIRI reads SLOW in full frame only
        sim.readout("MIRI", "SLOW", "SUB128")
    t = sim.group_times(deep8, 3)
    assert np.allclose(np.diff(t), deep8.tgroup)


# ------------------------------------------------------------------------- ramps

def test_ramp_shape_dtype_and_seeding(nrca1):
    spec = _spec("RAPID", ngroups=4, nints=2, subarray="SUB64P")
    r1, t1 = sim.simulate_ramp(nrca1, spec, seed=7)
    r2, _ = sim.simulate_ramp(nrca1, spec, seed=7)
    r3, _ = sim.simulate_ramp(nrca1, spec, seed=8)
    assert r1.shape == (2, 4, 64, 64) and r1.dtype == np.uint16
    assert r1.tobytes() == r2.tobytes()
    assert r1.tobytes() != r3.tobytes()
    assert t1.rate.shape == (64, 64) and t1.rate.dtype == np.float32
    # reference pixels (corner subarray: 4 rows, 4 columns) carry no light
    assert np.all(t1.rate[:4, :] == 0) and np.all(t1.rate[:, :4] == 0)
    # bias level
    assert 10000 < np.median(r1[:, 0]) < 20000


def test_group_increments_match_true_rate_plus_dark(nrca1):
    spec = _spec("DEEP8", ngroups=3)
    ramp, truth = sim.simulate_ramp(nrca1, spec, seed=3)
    ro = spec.readout()
    rows, cols = sim.window(nrca1, spec)
    data = ramp[0].astype(np.float64) - nrca1.superbias[rows, cols]
    ref = nrca1.refpix[rows, cols]
    # refpix correction: one amplifier in this corner subarray
    data -= np.array([g[ref].mean() for g in data])[:, None, None]
    lin = sim.apply_linearity(data, nrca1.linearity_coeffs()[:, rows, cols])
    good = ~(ref | nrca1.dead[rows, cols] | truth.saturated[0].any(axis=0))
    if len(truth.cosmic_rays):
        good[truth.cosmic_rays[:, 2], truth.cosmic_rays[:, 3]] = False
    measured = np.diff(lin, axis=0)[:, good] / ro.tgroup          # DN/s per group step
    expected = (truth.rate + truth.dark_rate)[good]
    resid = measured.mean(axis=1) - expected.mean()
    # noise of the mean over ~1.5e5 pixels: read noise + Poisson << 0.01 DN/s
    assert np.all(np.abs(resid) < 0.01), resid
    # per-pixel scatter is consistent with read + Poisson noise (not e.g. a wrong gain)
    per_pix = (measured - expected[None, :]) * ro.tgroup
    gain = nrca1.gain[rows, cols][good]
    rn = nrca1.readnoise[rows, cols][good] / np.sqrt(ro.nframes)
    pred_var = 2 * rn**2 + expected * ro.tgroup / gain
    ratio = per_pix.var(axis=1) / pred_var.mean()
    assert np.all((ratio > 0.7) & (ratio < 1.6)), ratio


def test_linearity_coefficients_invert_nonlinearity(nrca1):
    spec = _spec("DEEP8", ngroups=3)
    scene = sim.Scene(sky=400.0, sky_gradient=300.0)
    ramp, truth = sim.simulate_ramp(nrca1, spec, seed=1, scene=scene, noise=False)
    rows, cols = sim.window(nrca1, spec)
    counts = ramp[0].astype(np.float64) - nrca1.superbias[rows, cols]
    lin = sim.apply_linearity(counts, nrca1.linearity_coeffs()[:, rows, cols])
    t = sim.group_times(spec.readout(), 3)
    expected = (truth.rate + truth.dark_rate)[None] * t[:, None, None]
    # the simulated IPC moves charge between neighbours (electrons: rate x gain x t)
    gain = nrca1.gain[rows, cols].astype(np.float64)
    ref = nrca1.refpix[rows, cols]
    expected = np.stack([sim._couple(e * gain, nrca1.ipc_alpha, ref) / gain for e in expected])
    ok = (expected > 2000) & ~truth.saturated[0]
    assert ok.sum() > 10000
    # the ramp really is non-linear (several % at high counts) ...
    assert np.max((expected - counts)[ok] / expected[ok]) > 0.02
    # ... and the LINEARITY coefficients give back the linear counts within 0.1 %
    assert np.max(np.abs(lin[ok] - expected[ok]) / expected[ok]) < 1e-3


def test_linearity_roundtrip_arrays_nir_and_miri():
    for instr, detname in (("NIRCAM", "NRCB2"), ("MIRI", "MIRIMAGE")):
        det = sim.make_detector(instr, detname, seed=2)
        sl = (slice(100, 140), slice(100, 140))
        lin = np.linspace(100, 45000, 40)[:, None] * np.ones((40, 40))
        s = sim.nonlinear(lin, det.lin_a2[sl], det.lin_a3[sl])
        coeffs = det.linearity_coeffs()[:, sl[0], sl[1]]
        if instr == "MIRI":     # MIRI coefficients apply to raw counts, bias included
            back = sim.apply_linearity(s + det.superbias[sl], coeffs) - det.superbias[sl]
        else:
            back = sim.apply_linearity(s, coeffs)
        assert np.max(np.abs(back - lin) / lin) < 1e-3, instr


def test_saturation_clips_at_reference_level(nrca1):
    spec = _spec("DEEP8", ngroups=3)
    star = sim.Scene(sky=1.0, stars=[(200.0, 200.0, 5000.0, 3.0)])
    ramp, truth = sim.simulate_ramp(nrca1, spec, seed=4, scene=star)
    rows, cols = sim.window(nrca1, spec)
    sat = nrca1.saturation[rows, cols]
    assert truth.saturated.any()
    assert np.all(ramp[truth.saturated] >= np.broadcast_to(sat, ramp.shape)[truth.saturated])
    assert np.all(ramp <= np.broadcast_to(sat, ramp.shape))
    # once saturated, a pixel stays saturated in later groups
    s = truth.saturated[0]
    assert np.all(s[1:] >= s[:-1])


def test_cosmic_rays_are_jumps(nrca1):
    spec = _spec("DEEP8", ngroups=3)
    ramp, truth = sim.simulate_ramp(nrca1, spec, seed=5, scene=sim.Scene(sky=0.5), cr_rate=2e-4)
    assert len(truth.cosmic_rays) > 20
    big = truth.cr_charge > 5000          # electrons: > 2000 DN at gain 2
    i, g, y, x = truth.cosmic_rays[big].T
    ok = g > 0
    step = ramp[i[ok], g[ok], y[ok], x[ok]].astype(float) - ramp[i[ok], g[ok] - 1, y[ok], x[ok]]
    assert np.median(step) > 1000


def test_reference_files_and_uncal_open_with_datamodels(tmp_path):
    from stdatamodels.jwst import datamodels as dm

    det = sim.make_detector("MIRI", "MIRIMAGE", seed=0)
    names = {rt: f"jwst_sim_miri_{rt}_t.fits" for rt in
             ("mask", "saturation", "superbias", "linearity", "gain", "readnoise")}
    written = sim.write_references(det, tmp_path, names)
    assert "superbias" not in written          # MIRI has no superbias step
    classes = {"mask": dm.MaskModel, "saturation": dm.SaturationModel, "linearity": dm.LinearityModel,
               "gain": dm.GainModel, "readnoise": dm.ReadnoiseModel}
    for rt, path in written.items():
        with dm.open(path) as m:
            assert isinstance(m, classes[rt])
            assert m.meta.reftype.lower() == rt
            assert m.meta.instrument.name == "MIRI" and m.meta.instrument.detector == "MIRIMAGE"
            assert m.meta.pedigree == "DUMMY" and m.meta.subarray.name == "GENERIC"
    with dm.open(written["mask"]) as m:
        assert m.dq.dtype == np.uint32 and m.dq.shape == (1024, 1032)
        assert np.all(m.dq[:, :4] & sim.REFERENCE_PIXEL)
    with dm.open(written["linearity"]) as m:
        assert m.coeffs.shape == (4, 1024, 1032) and m.coeffs.dtype.newbyteorder("=") == np.float32

    spec = sim.ExposureSpec("MIRI", "MIRIMAGE", "SUB64", "FAST", 4, 2)
    dark = sim.write_dark(det, spec, 6, tmp_path / "jwst_sim_miri_dark_t.fits")
    with dm.open(dark) as m:
        assert isinstance(m, dm.DarkMIRIModel)
        assert m.data.shape == (1, 6, 64, 72) and m.data.dtype.newbyteorder("=") == np.float32
        assert (m.meta.exposure.nframes, m.meta.exposure.groupgap, m.meta.exposure.ngroups) == (1, 0, 6)
        assert m.meta.exposure.readpatt == "FAST" and m.meta.subarray.name == "SUB64"

    ramp, _ = sim.simulate_ramp(det, spec, seed=0)
    ro = spec.readout()
    out = sim.write_uncal(tmp_path / "jw_test_uncal.fits", ramp,
                          {"INSTRUME": "MIRI", "DETECTOR": "MIRIMAGE", "SUBARRAY": "SUB64",
                           "NGROUPS": 4, "NINTS": 2, "TFRAME": ro.tframe, "TGROUP": ro.tgroup,
                           "EXPSTART": 60000.0})
    with dm.open(out) as m:
        assert isinstance(m, dm.Level1bModel)
        assert m.data.shape == (2, 4, 64, 72) and m.data.dtype.newbyteorder("=") == np.uint16
        assert len(m.group) == 8 and len(m.int_times) == 2
        assert m.meta.filename == "jw_test_uncal.fits"


def test_simulate_pool_miri(tmp_path):
    from astropy.io import fits
    from stdatamodels.jwst import datamodels as dm

    from archive.crds import cache as crdscache
    from simulation import pools

    res = pools.simulate_pool(POOLS / "pool_002_image_miri.csv", tmp_path / "out",
                              tmp_path / "crds", limit=2, ngroups=2, seed=0)
    assert [p.name for p in res.files] == ["jw_00001_uncal.fits", "jw_00002_uncal.fits"]
    for path in res.files:
        with dm.open(path) as m:
            assert isinstance(m, dm.Level1bModel)
            assert m.data.shape == (1, 2, 1024, 1032)
            assert m.meta.instrument.name == "MIRI" and m.meta.exposure.readpatt == "FAST"
            assert m.meta.exposure.frame_time == pytest.approx(2.77504)
        hdr = dict(fits.getheader(path))
        assert hdr["EXP_TYPE"] == "MIR_IMAGE" and hdr["OBSERVTN"] == "001"
        assert "MODULE" not in hdr and "CORONMSK" not in hdr
        used = res.references[path.name]
        got = crdscache.bestrefs(hdr, res.context, sorted(used) + ["superbias"])
        assert got == dict(used, superbias="N/A")
        truth = np.load(res.truths[path.name])
        assert truth["rate"].shape == (1024, 1032)
    # same seed -> identical raw pixels
    res2 = pools.simulate_pool(POOLS / "pool_002_image_miri.csv", tmp_path / "out2",
                               tmp_path / "crds2", limit=1, ngroups=2, seed=0)
    a = fits.getdata(res.files[0], "SCI")
    b = fits.getdata(res2.files[0], "SCI")
    assert a.tobytes() == b.tobytes()


@pytest.mark.slow
@pytest.mark.parametrize("pool_name, subarray, readpatt, ngroups, sky_tol", [
    ("pool_003_image_nircam.csv", "sub400p", "rapid", 8, 0.03),    # has reference pixels
    ("pool_002_image_miri.csv", "brightsky", "null", 10, 0.5),     # none: drifts stay
])
def test_jwst_detector1_recovers_true_rate(tmp_path, pool_name, subarray, readpatt, ngroups, sky_tol):
    """The official jwst calwebb_detector1, run with the synthetic context on a simulated
    subarray exposure, gives back the true rate: the files and references are jwst-valid."""
    import os

    from astropy.io import fits

    from archive.crds import cache as crdscache
    from archive.ingest.pools import pool_rows
    from simulation import pools

    # a one-row pool: the pool's first exposure, as a subarray exposure
    row = pool_rows(POOLS / pool_name)[0]
    row.update(SUBARRAY=subarray, READPATT=readpatt, FILENAME="jw_sub_uncal.fits")
    pool = tmp_path / "pool.csv"
    pool.write_text("|".join(row) + "\n" + "|".join(str(v) for v in row.values()) + "\n")
    res = pools.simulate_pool(pool, tmp_path / "out", tmp_path / "crds", ngroups=ngroups, seed=3)
    uncal = res.files[0]
    assert fits.getheader(uncal)["SUBARRAY"] == subarray.upper()
    from jwst import pipeline as jwst_pipeline
    crdscache.configure(tmp_path / "crds")
    os.environ["CRDS_CONTEXT"] = res.context
    try:
        result = jwst_pipeline.Detector1Pipeline.call(
            str(uncal), steps={"persistence": {"skip": True}, "charge_migration": {"skip": True}})
    finally:
        os.environ.pop("CRDS_CONTEXT", None)
    rate = result.data
    truth = np.load(res.truths[uncal.name])
    usable = np.isfinite(rate) & (result.dq & 1 == 0)
    bright = (truth["rate"] > 20) & usable
    assert bright.sum() > 20
    assert abs(np.median(rate[bright] / truth["rate"][bright] - 1)) < 0.01
    sky = (truth["rate"] > 0) & (truth["rate"] < 2) & usable
    assert abs(np.median(rate[sky] - truth["rate"][sky])) < sky_tol     # DN/s
    assert result.meta.ref_file.dark.name.endswith(res.references[uncal.name]["dark"])
    # jwst's ERR matches the simulated noise (READNOISE holds the CDS noise, as jwst expects)
    if pool_name.startswith("pool_003"):
        good = usable & (result.err > 0)
        z = (rate[good] - truth["rate"][good]) / result.err[good]
        assert 0.85 < np.std(z[np.abs(z) < 10]) < 1.15


def test_exposure_keywords_for_templates_of_each_instrument():
    from archive.ingest.pools import pool_rows
    from simulation import pools

    base = pool_rows(POOLS / "pool_003_image_nircam.csv")[0]
    cases = {
        "niriss": ("nis", "sub64", "nis_image", "NISRAPID", (1985, 1985, 64, 64)),
        "nirspec": ("nrs1", "sub512", "nrs_image", "NRSRAPID", (1025, 975, 512, 32)),
        "fgs": ("guider1", "null", "fgs_image", "FGSRAPID", (1, 1, 2048, 2048)),
        "miri": ("mirimage", "mask1065", "mir_4qpm", "FAST", (1, 21, 288, 224)),
    }
    for i, (instr, (det, sub, exp, patt, geom)) in enumerate(cases.items()):
        row = dict(base, INSTRUME=instr, DETECTOR=det, SUBARRAY=sub, EXP_TYPE=exp, PUPIL="null", MODULE="null",
                   CHANNEL="null", FILENAME=f"jw_{instr}_uncal.fits")
        kw = pools.exposure_keywords(row, i, ngroups=3)
        assert kw["INSTRUME"] == instr.upper() and kw["DETECTOR"] == det.upper()
        assert kw["READPATT"] == patt and kw["NGROUPS"] == 3
        assert (kw["SUBSTRT1"], kw["SUBSTRT2"], kw["SUBSIZE1"], kw["SUBSIZE2"]) == geom
        assert kw["TGROUP"] == pytest.approx(kw["TFRAME"] * (kw["NFRAMES"] + kw["GROUPGAP"]))
        assert kw["OBSERVTN"] == "001" and kw["PROGRAM"] == "99009"
        if instr in ("miri", "nirspec"):
            assert kw["MODULE"] is None and kw["CORONMSK"] is None   # NIRCam-only, removed
    with pytest.raises(ValueError, match="no subarray 'SUB999'"):
        pools.exposure_keywords(dict(base, SUBARRAY="sub999"), 0)


def test_readout_patterns_and_frame_times_come_from_the_prd():
    """NFRAMES/GROUPGAP/TFRAME are the PRD's (the database the jwst package ships), not a copy."""
    from simulation import prd

    assert prd.prd_version().startswith("PRDOPSSOC-")
    assert prd.datamode("NIRCAM", "DEEP8") == (8, 12) and prd.datamode("NIRCAM", "MEDIUM8") == (8, 2)
    assert prd.datamode("NIRISS", "NIS") == prd.datamode("FGS", "FGS") == (4, 0)   # NIS-Guider rows
    assert prd.datamode("NIRSPEC", "NRSRAPID") == (1, 0) and prd.datamode("MIRI", "FAST") == (1, 0)
    with pytest.raises(ValueError, match="unknown NIRCAM READPATT 'FAST'.*PRD"):
        prd.datamode("NIRCAM", "FAST")
    assert prd.frame_time("NIRCAM", "FULL", "RAPID") == (10.73677, 4)
    assert prd.frame_time("NIRCAM", "SUBGRISM64", "RAPID") == (0.34061, 4)
    assert prd.frame_time("MIRI", "SUB64", "FAST") == (0.08512, 4)     # = EMICORR's 8512 frame clocks
    ro = sim.readout("MIRI", "FAST", "SUB64")
    assert ro.tframe * 1e5 == pytest.approx(sim.MIRI_EMI_CLOCKS["SUB64"][1])
    assert prd.frame_time("NIRCAM", "NOSUCH", "RAPID") is None


def test_simulate_pool_reports_rows_it_cannot_make_and_goes_on(tmp_path):
    """A placeholder row (INSTRUME 'INSTRUME') and a duplicate FILENAME are skipped with their
    reasons; the other rows are written (minimal: headers, constant ramps, no references)."""
    from astropy.io import fits

    from archive.ingest.pools import pool_rows
    from simulation import pools

    rows = pool_rows(POOLS / "pool_013_coron_nircam.csv")[:3]
    rows.append(dict(rows[1]))                                   # duplicate FILENAME
    pool = tmp_path / "pool.csv"
    cols = list(rows[0])
    pool.write_text("|".join(cols) + "\n" + "\n".join("|".join(r[c] for c in cols) for r in rows) + "\n")
    res = pools.simulate_pool(pool, tmp_path / "out", tmp_path / "crds", ngroups=1, nints=1, minimal=True)
    assert [r.status for r in res.rows] == ["skipped", "simulated", "simulated", "skipped"]
    assert "INSTRUME 'INSTRUME' is not a JWST instrument" in res.rows[0].reason
    assert "already made from row 1" in res.rows[3].reason
    assert res.context is None and len(res.files) == 2
    hdr = fits.getheader(res.files[0])
    assert (hdr["SUBARRAY"], hdr["SUBSIZE1"], hdr["SUBSIZE2"]) == ("MASKA210R", 640, 640)
    assert "APERNAME NRCA2_MASK210R" in res.rows[1].note
    assert fits.getdata(res.files[0], "SCI").shape == (1, 1, 640, 640)
