"""Simulated stage-2/3 imaging inputs (issue 10, item 5), proven with the real jwst 3.0.

One module fixture builds, in a temporary directory and fully offline:

* a one-row NIRCam pool (NRCA1 SUB640, F200W) simulated with ``imaging=True``: a raw ramp
  that shows a star field through the exposure's pointing and distortion, and a synthetic
  context with its stage-1 and stage-2/3 references;
* the stage-2/3 imaging references of NIRCam NRCB1, NIRISS, MIRI and FGS added to it;
* fast ``_rate.fits`` files (simulation.exposures.write_rate): one per instrument, and a
  4-point dithered NIRCam association of one star field with pointing errors and cosmic
  rays (NGROUPS 2, so stage 1 could not have removed them);
* a derived context that re-delivers the NRCA1 F200W flat.

jwst runs in one subprocess (CRDS_PATH, CRDS_SERVER_URL and CRDS_CONTEXT set before jwst is
imported: crds reads them once per process): Detector1 + Image2 on the raw ramp, Image2 on
every rate, Image3 on the association. The tests then read the products.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SHARED

POOLS = SHARED / "pools"
TARGET = (80.0, -69.5)          # deg: the association's field (LMC)
DITHERS = ((0.0, 0.0), (1.13, 0.57), (0.41, 1.71), (1.52, 2.29))     # ideal arcsec
POINTING_ERROR = 0.05           # arcsec rms per axis in the association's headers

_JWST_SCRIPT = textwrap.dedent(
    r'''
    import json, os, sys, time, traceback
    cfg = json.loads(open(sys.argv[1]).read())
    os.environ["CRDS_PATH"] = cfg["crds_path"]
    os.environ["CRDS_SERVER_URL"] = "https://jwst-serverless-mode.stsci.edu"
    os.environ["CRDS_MODE"] = "local"
    os.environ["CRDS_CONTEXT"] = cfg["context"]
    from jwst.pipeline import Detector1Pipeline, Image2Pipeline, Image3Pipeline
    timings, failures = {}, {}
    for job in cfg["jobs"]:
        kind, name, path, out = job["kind"], job["name"], job["input"], job["output_dir"]
        os.makedirs(out, exist_ok=True)
        t0 = time.perf_counter()
        try:
            if kind == "asn":
                json.dump(job["asn"], open(path, "w"), indent=1)
                continue
            cls = {"detector1": Detector1Pipeline, "image2": Image2Pipeline,
                   "image3": Image3Pipeline}[kind]
            cls.call(path, save_results=True, output_dir=out, steps=job.get("steps", {}))
            timings[name] = time.perf_counter() - t0
        except BaseException:
            failures[name] = traceback.format_exc()
    json.dump({"timings": timings, "failures": failures}, open(cfg["result"], "w"), indent=1)
    '''
)


@dataclass
class World:
    base: Path
    crds: Path
    context: str = ""
    derived: str = ""
    rates: dict = field(default_factory=dict)        # name -> (path, RateTruth, ImagingExposure, SkyScene)
    assoc: list = field(default_factory=list)        # [(path, RateTruth, SkyScene)]
    stars: object = None
    refcat: Path | None = None
    uncal: Path | None = None
    uncal_truth: Path | None = None                  # its truth .npz (cosmic-ray hits)
    pool_stars: Path | None = None
    redelivered_flat: Path | None = None
    jwst: dict = field(default_factory=dict)
    log: Path | None = None


def _one_row_pool(tmp: Path) -> Path:
    from archive.ingest.pools import pool_rows

    row = pool_rows(POOLS / "pool_003_image_nircam.csv")[0]      # NRCA1, NRC_IMAGE
    row.update(SUBARRAY="sub640", FILTER="f200w", PUPIL="clear", FILENAME="jw_sub_uncal.fits")
    pool = tmp / "pool.csv"
    pool.write_text("|".join(row) + "\n" + "|".join(str(v) for v in row.values()) + "\n")
    return pool


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from archive.crds import cache as crdscache
    from simulation import pools as pool_sim
    from simulation import ramps as sim
    from simulation import exposures, imaging_refs, sky

    base = tmp_path_factory.mktemp("stage2")
    w = World(base=base, crds=base / "crds")
    # 1. a raw NIRCam exposure with stars, and its context (stage 1 + stage 2/3 references)
    with pytest.MonkeyPatch.context() as mp:          # a denser field: stars in a subarray
        mp.setattr("simulation.imaging.STAR_DENSITY", 0.08)
        res = pool_sim.simulate_pool(_one_row_pool(base), base / "raw", w.crds, ngroups=3, seed=0,
                                     imaging=True)
    w.uncal = res.files[0]
    w.uncal_truth = res.truths[w.uncal.name]
    w.pool_stars = next((base / "raw" / "truth").glob("*_stars.ecsv"))
    # 2. more imaging references: a second NIRCam detector, NIRISS, MIRI, FGS
    refdir = w.crds / "references" / "jwst"
    more = []
    for instr, det, fp, per_instr in (("NIRCAM", "NRCB1", ("F200W", "CLEAR"), False),
                                      ("NIRISS", "NIS", ("CLEAR", "F150W"), True),
                                      ("MIRI", "MIRIMAGE", ("F770W", None), True),
                                      ("FGS", "GUIDER1", (None, None), True)):
        out = imaging_refs.write_imaging_references(refdir / instr.lower(), instr, det, [fp], seed=0,
                                                    per_instrument=per_instr)
        more += [p for ps in out.values() for p in ps]
    w.context = crdscache.write_synthetic_context(w.crds, more, base_pmap=res.context)
    # 3. one rate per instrument (no pointing error) ...
    cases = {
        "nircam": ("NIRCAM", "NRCA1", "NRCA1_SUB640", "F200W", "CLEAR", "MEDIUM8", 2, 16.0, 80),
        "niriss": ("NIRISS", "NIS", "NIS_SUB256", "CLEAR", "F150W", "NIS", 3, 14.0, 60),
        "miri": ("MIRI", "MIRIMAGE", "MIRIM_BRIGHTSKY", "F770W", None, "FAST", 5, 45.0, 80),
        "fgs": ("FGS", "GUIDER1", "FGS1_SUB128CNTR", None, None, "FGSRAPID", 5, 7.0, 20),
    }
    rates_dir = base / "rates"
    for k, (name, (instr, det, ap, filt, pup, patt, ng, radius, nstars)) in enumerate(cases.items()):
        f = sky.random_star_field(*TARGET, radius, nstars, seed=k, flux_range=(5.0, 200.0),
                                  min_separation=1.0)
        p = sky.make_pointing(instr, ap, *TARGET, 20.0 + 40 * k)
        exp = exposures.ImagingExposure(instr, det, ap, filt, pup, patt, ng)
        scene = sky.SkyScene(f, p, instr, det, filt, pup)
        path, truth = exposures.write_rate(
            rates_dir / f"jw99999{k + 2:03d}001_01101_00001_{det.lower()}_rate.fits", exp, scene,
            seed=k, expstart=60100.0 + k, observation={"OBSERVTN": f"{k + 2:03d}"})
        w.rates[name] = (path, truth, exp, scene)
    # ... and a 4-point dithered NIRCam association of one field, with pointing errors
    w.stars = sky.random_star_field(*TARGET, 16.0, 80, seed=1, flux_range=(2.0, 100.0),
                                    min_separation=1.0)
    w.refcat = w.stars.write_ecsv(base / "refcat.ecsv")
    det = sim.make_detector("NIRCAM", "NRCA1", 0)
    exp = exposures.ImagingExposure("NIRCAM", "NRCA1", "NRCA1_SUB640", "F200W", "CLEAR", "MEDIUM8", 2)
    for i, dither in enumerate(DITHERS):
        p = sky.make_pointing("NIRCAM", "NRCA1_SUB640", *TARGET, 20.0, dither=dither,
                              pointing_error=POINTING_ERROR, seed=i)
        scene = sky.SkyScene(w.stars, p, "NIRCAM", "NRCA1", "F200W", "CLEAR")
        path, truth = exposures.write_rate(
            base / "assoc" / f"jw99999001001_01101_{i + 1:05d}_nrca1_rate.fits", exp, scene,
            seed=10 + i, expstart=60000.0 + 0.01 * i, detector=det,
            observation={"EXPOSURE": f"{i + 1:05d}", "PATT_NUM": i + 1, "NUMDTHPT": 4})
        w.assoc.append((path, truth, scene))
    # 4. a re-delivered flat for one detector, in a derived context
    w.redelivered_flat = imaging_refs.write_flat(
        base / "delivery" / "jwst_sim_nircam_flat_nrca1_f200w_clear_s0_v2.fits",
        "NIRCAM", "NRCA1", "F200W", "CLEAR", seed=0, version=2)
    w.derived = crdscache.derive_context(w.crds, w.context,
                                         {("nircam", "flat", "NRCA1"): w.redelivered_flat})
    crdscache.configure(w.crds)            # this process asks crds for best references too
    return w


@pytest.fixture(scope="module")
def jwst(world):
    """jwst 3.0, offline on the context, in one subprocess: Detector1 + Image2 on the raw
    ramp, Image2 on every rate, Image3 on the association. Returns the World with
    ``jwst = {"timings": {job: s}, "failures": {job: traceback}}``."""
    w, base = world, world.base
    jobs = [{"kind": "detector1", "name": "detector1 nircam (ramp)", "input": str(w.uncal),
             "output_dir": str(base / "chain"),
             "steps": {"persistence": {"skip": True}, "charge_migration": {"skip": True}}},
            {"kind": "image2", "name": "image2 nircam (from ramp)",
             "input": str(base / "chain" / "jw_sub_rate.fits"), "output_dir": str(base / "chain")}]
    for name, (path, *_rest) in w.rates.items():
        jobs.append({"kind": "image2", "name": f"image2 {name}", "input": str(path),
                     "output_dir": str(base / "image2")})
    cals = []
    for i, (path, _, _) in enumerate(w.assoc):
        jobs.append({"kind": "image2", "name": f"image2 nircam dither {i + 1}", "input": str(path),
                     "output_dir": str(base / "assoc"), "steps": {"resample": {"skip": True}}})
        cals.append(path.name.replace("_rate", "_cal"))
    asn_path = base / "assoc" / "jw99999-c1000_image3_00001_asn.json"
    asn = {"asn_type": "image3", "asn_rule": "candidate_Asn_Lv3Image", "asn_id": "c1000",
           "asn_pool": "simulated", "program": "99999", "target": "t001", "version_id": None,
           "code_version": "simulation",
           "products": [{"name": "jw99999-c1000_t001_nircam_clear-f200w-sub640",
                         "members": [{"expname": c, "exptype": "science"} for c in cals]}]}
    jobs.append({"kind": "asn", "name": "asn", "input": str(asn_path), "asn": asn,
                 "output_dir": str(base / "assoc")})
    jobs.append({"kind": "image3", "name": "image3 nircam 4 dithers", "input": str(asn_path),
                 "output_dir": str(base / "assoc"),
                 # the cal images still hold the cosmic rays stage 1 could not flag (NGROUPS 2);
                 # some are detected as sources, and with the default 0.7" matching tolerance
                 # they pair with stars and spoil the fit: 0.2" is 4x the pointing errors
                 "steps": {"tweakreg": {"abs_refcat": str(w.refcat), "tolerance": 0.2,
                                        "abs_tolerance": 0.2}}})
    cfg = {"crds_path": str(w.crds), "context": w.context, "jobs": jobs,
           "result": str(base / "jwst_result.json")}
    (base / "jwst_cfg.json").write_text(json.dumps(cfg))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRDS_")}
    w.log = base / "jwst.log"
    with open(w.log, "w") as log:
        proc = subprocess.run([sys.executable, "-c", _JWST_SCRIPT, str(base / "jwst_cfg.json")],
                              env=env, stdout=log, stderr=subprocess.STDOUT, timeout=1500)
    result_path = base / "jwst_result.json"
    if proc.returncode != 0 or not result_path.exists():
        pytest.fail(f"jwst subprocess failed ({proc.returncode}):\n{w.log.read_text()[-4000:]}")
    w.jwst = json.loads(result_path.read_text())
    return w


def _jwst_ok(w: World, *names):
    for name in names:
        if name in w.jwst["failures"]:
            pytest.fail(f"jwst {name} failed:\n{w.jwst['failures'][name][-3000:]}")


def _header(path) -> dict:
    from astropy.io import fits

    hdr = dict(fits.getheader(path, 0))
    hdr.update(fits.getheader(path, 1))
    return {k: v for k, v in hdr.items() if k not in ("", "COMMENT", "HISTORY")}


# --------------------------------------------------------------------------- no jwst needed

def test_distortion_model_is_the_siaf_transformation():
    """The DISTORTION model is pysiaf's own sci -> ideal -> V2/V3 (planar) transformation of
    the full-frame aperture, for every instrument; its inverse agrees to < 0.2 px."""
    from simulation import optics, siaf

    rng = np.random.default_rng(0)
    for instr, det in (("NIRCAM", "NRCA1"), ("NIRCAM", "NRCBLONG"), ("NIRISS", "NIS"),
                       ("MIRI", "MIRIMAGE"), ("FGS", "GUIDER2")):
        ny, nx = optics.full_shape(instr)
        x, y = rng.uniform(0, nx - 1, 500), rng.uniform(0, ny - 1, 500)
        model = siaf.distortion_model(instr, det)
        ap = siaf.full_frame_aperture(instr, det)
        v2, v3 = model(x, y)
        ev2, ev3 = ap.idl_to_tel(*ap.sci_to_idl(x + 1, y + 1))
        assert np.max(np.hypot(v2 - ev2, v3 - ev3)) < 1e-9              # arcsec
        xb, yb = model.inverse(v2, v3)                                  # Idl2Sci polynomials
        assert np.max(np.hypot(xb - x, yb - y)) < 0.2
        area = optics.relative_area(instr, det)
        assert area.shape == (ny, nx) and 0.9 < area.min() and area.max() < 1.1


def test_subarray_placement_from_the_siaf():
    from simulation import siaf

    assert siaf.subarray_geometry("NIRCAM", "NRCA1_SUB640") == (1409, 1409, 640, 640)
    assert siaf.subarray_geometry("NIRCAM", "NRCB1_SUB640") == (1, 1, 640, 640)
    assert siaf.subarray_geometry("MIRI", "MIRIM_BRIGHTSKY") == (457, 51, 512, 512)
    # the aperture's reference pixel lands where its V2Ref/V3Ref is in the full frame
    for instr, name in (("NIRCAM", "NRCB1_SUB400P"), ("NIRISS", "NIS_SUB256"), ("FGS", "FGS1_SUB128LL")):
        ap, full = siaf.aperture(instr, name), siaf.parent_full_frame(instr, name)
        x1, y1, _, _ = siaf.subarray_geometry(instr, name)
        xs, ys = full.tel_to_sci(ap.V2Ref, ap.V3Ref)
        assert abs(xs - (x1 - 1 + ap.XSciRef)) < 0.1 and abs(ys - (y1 - 1 + ap.YSciRef)) < 0.1


def test_photometric_numbers_are_physical():
    from simulation import optics

    from astropy import constants

    # photon counting: 1 MJy/sr on a 31 mas pixel (pysiaf's solid angle) through F200W
    # (R = 0.25) with JWST's 25.4 m^2, throughput 0.35 and gain 2 e/DN gives 0.384 DN/s
    import pysiaf

    c = optics.photmjsr("NIRCAM", "NRCA1", "F200W", "CLEAR")
    # the pixel's solid angle straight from pysiaf's SIAF (not through the simulator)
    full = pysiaf.Siaf("NIRCam")["NRCA1_FULL"]
    omega = full.XSciScale * full.YSciScale / 206264.80624709636 ** 2
    assert optics.pixar_sr("NIRCAM", "NRCA1") == pytest.approx(omega, rel=1e-9)
    assert omega == pytest.approx((0.031 / 206264.806) ** 2, rel=0.05)
    # photons counted with units over the band, not the simulator's formula: a flat F_nu over a
    # top hat lam0 (1 -+ R/2) gives F_nu / h * ln(lam_hi / lam_lo) photons per s and m^2. The
    # simulator's linear bandwidth R undercounts that integral (ln((1 + R/2) / (1 - R/2)) > R), by
    # ~R**2 / 12 = 0.5 % for R = 0.25: its rate must lie below the count and within 1 % of it. A slip
    # of a unit, the area, the throughput or the gain (all >= 10 %) fails, and so does a rate above
    # the photon count
    import astropy.units as u

    lam0 = optics.wavelength_um("F200W", "CLEAR", "NIRCAM") * u.um
    frac = optics.fractional_bandwidth("F200W", "CLEAR", "NIRCAM")
    assert lam0.to_value(u.um) == pytest.approx(2.0, rel=0.05) and frac == pytest.approx(0.25, rel=0.1)
    f_nu = (1.0 * u.MJy / u.sr) * (omega * u.sr)
    photons = f_nu / constants.h * np.log((1 + frac / 2) / (1 - frac / 2))
    dn_per_s = (photons * u.electron * 25.4 * u.m**2 * 0.35 / (2.0 * u.electron / u.adu)).to(u.adu / u.s).value
    assert 0.99 * dn_per_s < 1.0 / c < dn_per_s
    # a narrow filter passes ~25x fewer photons than a wide one
    assert optics.photmjsr("NIRCAM", "NRCA1", "F212N", "CLEAR") == pytest.approx(25 * c)
    # AB - Vega offsets near the published ones (F200W ~1.7, F444W ~3.2, F770W ~4.4 mag)
    assert optics.abvega_offset("NIRCAM", "F200W", "CLEAR") == pytest.approx(1.7, abs=0.15)
    assert optics.abvega_offset("NIRCAM", "F444W", "CLEAR") == pytest.approx(3.2, abs=0.2)
    assert optics.abvega_offset("MIRI", "F770W", None) == pytest.approx(4.4, abs=0.3)
    assert optics.band_name("CLEAR", "F150W") == "F150W"      # NIRISS: pupil-wheel filter
    # the simulated detectors' gain is the one the conversion assumes
    from simulation import ramps as sim

    det = sim.make_detector("NIRCAM", "NRCA1", 0)
    assert np.median(det.gain) == pytest.approx(optics.NOMINAL_GAIN["NIRCAM"], rel=0.01)


def test_stars_fall_on_consistent_pixels_across_dithers():
    """A star projected into two dithered exposures comes back to its sky position through
    pysiaf's own pixel -> sky transformation of each exposure's attitude."""
    from simulation import optics, siaf, sky

    f = sky.random_star_field(*TARGET, 10.0, 20, seed=3)
    ap = siaf.full_frame_aperture("NIRCAM", "NRCA1")
    col, row = optics.filter_offset("NIRCAM", "NRCA1", "F090W", "CLEAR")
    assert (col, row) != (0.0, 0.0)
    xy = []
    for dither in ((0.0, 0.0), (3.0, -2.0)):
        p = sky.make_pointing("NIRCAM", "NRCA1_SUB640", *TARGET, 33.0, dither=dither)
        x, y = sky.sky_to_detector(f.ra, f.dec, p.attitude, "NIRCAM", "NRCA1", "F090W", "CLEAR")
        ap.set_attitude_matrix(p.attitude)
        ra, dec = ap.sci_to_sky(x + col + 1, y + row + 1)
        err = np.hypot((ra - f.ra) * np.cos(np.radians(dec)), dec - f.dec) * 3.6e6
        assert err.max() < 1e-3                                      # mas
        xy.append((x, y))
    shift = np.hypot(xy[1][0] - xy[0][0], xy[1][1] - xy[0][1]) * 0.031
    assert np.allclose(shift, np.hypot(3.0, 2.0), rtol=0.02)      # the dither, in arcsec


def test_rate_file_noise_truth_and_seeding(world):
    from stdatamodels.jwst import datamodels as dm

    from simulation import exposures

    path, truth, exp, scene = world.rates["nircam"]
    with dm.open(path) as m:
        assert isinstance(m, dm.ImageModel) and m.data.shape == (640, 640)
        assert m.meta.bunit_data == "DN/s" and m.meta.cal_step.ramp_fit == "COMPLETE"
        assert m.meta.subarray.xstart == 1409 and m.meta.aperture.name == "NRCA1_SUB640"
        assert m.meta.wcsinfo.v2_ref == pytest.approx(98.558508)
        good = (m.dq == 0)
        crs = np.zeros(m.data.shape, bool)
        crs[truth.cosmic_rays[:, 0], truth.cosmic_rays[:, 1]] = True
        z = ((m.data - truth.rate) / m.err)[good & ~crs]
        assert abs(z.mean()) < 0.1 and 0.9 < z.std() < 1.1           # honest ERR
        assert np.allclose(m.err[good] ** 2, m.var_poisson[good] + m.var_rnoise[good], rtol=1e-5)
        assert (m.dq & 2**31).sum() > 0 and np.isnan(m.data[(m.dq & 1) > 0]).all()
        # NGROUPS 2: cosmic rays stay in the slope (jump cannot flag them)
        assert len(truth.cosmic_rays) > 500 and (m.dq & 4).sum() == 0
        data = m.data.copy()
    again, _ = exposures.write_rate(world.base / "again_rate.fits", exp, scene, seed=0,
                                    expstart=60100.0, observation={"OBSERVTN": "002"})
    with dm.open(again) as m2:
        np.testing.assert_array_equal(m2.data, data)                # same seed, same pixels


def test_ramp_carries_the_stars(world):
    """The pool's raw ramp shows the star field where the WCS puts it; its header carries
    the pointing; CRDS best references under the context are the stage-1 and stage-2/3
    files the simulation wrote."""
    from astropy.io import fits
    from astropy.table import Table

    from archive.crds import cache as crdscache

    hdr = _header(world.uncal)
    assert hdr["APERNAME"] == "NRCA1_SUB640" and hdr["PPS_APER"] == "NRCALL_FULL"
    assert "V2_REF" not in fits.getheader(world.uncal, 0)            # science WCS keyword only
    ramp = fits.getdata(world.uncal, "SCI").astype(np.float64)
    signal = ramp[0, -1] - ramp[0, 0]                                # DN over the ramp
    stars = Table.read(world.pool_stars)
    from pysiaf.utils import rotations

    from simulation import sky

    att = rotations.attitude(hdr["V2_REF"], hdr["V3_REF"], hdr["RA_REF"], hdr["DEC_REF"], hdr["ROLL_REF"])
    x, y = sky.sky_to_detector(stars["RA"], stars["DEC"], att, "NIRCAM", "NRCA1", "F200W", "CLEAR")
    x, y = x - (hdr["SUBSTRT1"] - 1), y - (hdr["SUBSTRT2"] - 1)
    inside = (x > 8) & (x < 631) & (y > 8) & (y < 631) & (stars["FLUX"] > 10)
    assert inside.sum() >= 10
    hits = np.load(world.uncal_truth)["cosmic_rays"]                # (int, group, y, x)
    checked = 0
    for sx, sy in zip(x[inside], y[inside], strict=True):
        ix, iy = int(round(sx)), int(round(sy))
        if np.any((np.abs(hits[:, 2] - iy) <= 3) & (np.abs(hits[:, 3] - ix) <= 3)):
            continue                                                 # a cosmic ray in the stamp
        checked += 1
        stamp = signal[iy - 3:iy + 4, ix - 3:ix + 4]
        assert np.unravel_index(np.argmax(stamp), stamp.shape) in [(3, 3), (2, 3), (3, 2), (4, 3), (3, 4)]
    assert checked >= 10
    refs = crdscache.bestrefs(hdr, world.context, ["dark", "distortion", "filteroffset", "flat",
                                                   "photom", "area", "apcorr", "abvegaoffset"])
    assert refs["flat"] == "jwst_sim_nircam_flat_nrca1_f200w_clear_s0.fits"
    assert refs["distortion"] == "jwst_sim_nircam_distortion_nrca1.asdf"
    assert refs["dark"].startswith("jwst_sim_nircam_dark_nrca1_sub640")


def test_redelivered_flat_changes_only_that_detector(world):
    """A derived context that re-delivers NRCA1's F200W flat changes the FLAT best reference
    of NRCA1 exposures only: not NRCB1's, not another instrument's, no other reftype."""
    from archive.crds import cache as crdscache

    assert crdscache.context_reftypes_diff(world.context, world.derived) == {("nircam", "flat")}
    reftypes = ["distortion", "filteroffset", "flat", "photom", "area", "apcorr", "abvegaoffset"]
    a1 = _header(world.rates["nircam"][0])
    b1 = dict(a1, DETECTOR="NRCB1")
    for hdr, changes in ((a1, True), (b1, False), (_header(world.rates["niriss"][0]), False),
                         (_header(world.rates["miri"][0]), False), (_header(world.rates["fgs"][0]), False)):
        old = crdscache.bestrefs(hdr, world.context, reftypes)
        new = crdscache.bestrefs(hdr, world.derived, reftypes)
        assert {rt for rt in reftypes if old[rt] != new[rt]} == ({"flat"} if changes else set())
        assert old["flat"] != "N/A" and old["distortion"] != "N/A"
    assert crdscache.bestrefs(a1, world.derived, ["flat"])["flat"] == world.redelivered_flat.name
    assert crdscache.bestrefs(b1, world.derived, ["flat"])["flat"] == "jwst_sim_nircam_flat_nrcb1_f200w_clear_s0.fits"


# --------------------------------------------------------------------------- with jwst 3.0

@pytest.mark.slow
@pytest.mark.parametrize("name", ["nircam", "niriss", "miri", "fgs"])
def test_image2_offline_wcs_flat_photom(jwst, name):
    """jwst's Image2Pipeline runs offline on the context; its cal/i2d name our references;
    the WCS it builds from our DISTORTION file equals pysiaf's sci -> sky with the same
    attitude; the cal image is rate / flat x PHOTMJSR and the sky comes out in MJy/sr."""
    from astropy.stats import sigma_clipped_stats
    from pysiaf.utils import rotations
    from stdatamodels.jwst import datamodels as dm

    from simulation import optics, siaf

    world = jwst
    _jwst_ok(world, f"image2 {name}")
    rate_path, truth, exp, scene = world.rates[name]
    cal_path = world.base / "image2" / rate_path.name.replace("_rate", "_cal")
    i2d_path = world.base / "image2" / rate_path.name.replace("_rate", "_i2d")
    instr, det = exp.instrument, exp.detector
    with dm.open(cal_path) as cal, dm.open(rate_path) as rate, dm.open(i2d_path) as i2d:
        assert isinstance(cal, dm.ImageModel) and isinstance(i2d, dm.ImageModel)
        assert i2d.meta.cal_step.resample == "COMPLETE"
        for step in ("assign_wcs", "flat_field", "photom"):
            assert getattr(cal.meta.cal_step, step) == "COMPLETE"
        rf = cal.meta.ref_file
        assert rf.distortion.name == f"crds://jwst_sim_{instr.lower()}_distortion_{det.lower()}.asdf"
        assert rf.flat.name.startswith(f"crds://jwst_sim_{instr.lower()}_flat_{det.lower()}_")
        assert rf.photom.name == f"crds://jwst_sim_{instr.lower()}_photom_{det.lower()}.fits"
        assert rf.area.name == f"crds://jwst_sim_{instr.lower()}_area_{det.lower()}.fits"
        assert cal.meta.ref_file.crds.context_used == world.context
        # WCS: jwst (our DISTORTION + pointing keywords) against pysiaf, over the array
        ny, nx = cal.data.shape
        yy, xx = np.mgrid[0:ny:5, 0:nx:5]
        xx, yy = xx.ravel().astype(float), yy.ravel().astype(float)
        ra, dec = cal.meta.wcs(xx, yy)
        wi = cal.meta.wcsinfo
        ap = siaf.full_frame_aperture(instr, det)
        ap.set_attitude_matrix(rotations.attitude(wi.v2_ref, wi.v3_ref, wi.ra_ref, wi.dec_ref, wi.roll_ref))
        col, row = optics.filter_offset(instr, det, exp.filter, exp.pupil)
        pra, pdec = ap.sci_to_sky(xx + exp.geometry()[0] + col, yy + exp.geometry()[1] + row)
        dpix = np.hypot((ra - pra) * np.cos(np.radians(dec)), dec - pdec) * 3600 / optics.pixel_scale(instr, det)
        print(f"\n{name}: jwst WCS vs pysiaf over {dpix.size} pixels: max {dpix.max():.2e} px")
        assert dpix.max() < 1e-3
        # the simulated stars come back to their true sky positions through jwst's WCS
        on = (truth.star_x > 0) & (truth.star_x < nx - 1) & (truth.star_y > 0) & (truth.star_y < ny - 1)
        sra, sdec = cal.meta.wcs(truth.star_x[on], truth.star_y[on])
        serr = np.hypot((sra - scene.stars.ra[on]) * np.cos(np.radians(sdec)), sdec - scene.stars.dec[on]) * 3.6e6
        assert on.sum() >= 3 and serr.max() < 1.0                       # mas
        # flat and photom: cal = rate / flat * PHOTMJSR (MJy/sr)
        x1, y1 = exp.geometry()[:2]
        flat = optics.flat_field(instr, det, exp.filter, exp.pupil)[y1 - 1:y1 - 1 + ny, x1 - 1:x1 - 1 + nx]
        conv = optics.photmjsr(instr, det, exp.filter, exp.pupil)
        ok = (np.isfinite(cal.data) & np.isfinite(rate.data) & ((cal.dq & 1) == 0)
              & ((cal.dq & 2**31) == 0) & (np.abs(rate.data) > 1e-3))
        ratio = cal.data[ok] / (rate.data[ok] / flat[ok])
        assert np.allclose(ratio, conv, rtol=1e-5)
        assert cal.meta.photometry.conversion_megajanskys == pytest.approx(conv, rel=1e-6)
        assert cal.meta.photometry.conversion_microjanskys == pytest.approx(
            conv * 1e12 * optics.ARCSEC2_TO_SR, rel=1e-5)                # PHOTUJA2, uJy/arcsec^2
        assert cal.meta.photometry.pixelarea_steradians == pytest.approx(optics.pixar_sr(instr, det))
        assert cal.meta.bunit_data == "MJy/sr"
        sky_px = ok & (truth.rate < 1.2 * np.median(truth.rate))
        sky_mean = sigma_clipped_stats(cal.data[sky_px], sigma=5.0)[0]  # the median of few counts is biased
        assert sky_mean == pytest.approx(scene.sky_mjysr, rel=0.03)
        np.testing.assert_allclose(cal.area, optics.relative_area(instr, det)[y1 - 1:y1 - 1 + ny, x1 - 1:x1 - 1 + nx])


@pytest.mark.slow
def test_detector1_then_image2_from_the_simulated_ramp(jwst):
    """jwst's Detector1 and Image2 on the pool's raw ramp, offline on the same context: the
    stars sit in the cal image where the truth and the cal's WCS put them."""
    from astropy.table import Table
    from photutils.centroids import centroid_2dg
    from stdatamodels.jwst import datamodels as dm

    world = jwst
    _jwst_ok(world, "detector1 nircam (ramp)", "image2 nircam (from ramp)")
    stars = Table.read(world.pool_stars)
    with dm.open(world.base / "chain" / "jw_sub_cal.fits") as cal:
        assert cal.meta.cal_step.flat_field == "COMPLETE" and cal.meta.cal_step.jump == "COMPLETE"
        assert cal.meta.ref_file.flat.name == "crds://jwst_sim_nircam_flat_nrca1_f200w_clear_s0.fits"
        x, y = cal.meta.wcs.invert(np.asarray(stars["RA"]), np.asarray(stars["DEC"]))
        ny, nx = cal.data.shape
        sel = np.isfinite(x) & (x > 8) & (x < nx - 9) & (y > 8) & (y < ny - 9) & (stars["FLUX"] > 10)
        assert sel.sum() >= 10
        offsets = []
        for sx, sy in zip(x[sel], y[sel], strict=True):
            ix, iy = int(round(sx)), int(round(sy))
            stamp = np.nan_to_num(cal.data[iy - 5:iy + 6, ix - 5:ix + 6])
            cx, cy = centroid_2dg(stamp - np.median(cal.data[np.isfinite(cal.data)]))
            offsets.append(np.hypot(cx + ix - 5 - sx, cy + iy - 5 - sy))
        print(f"\nramp -> rate -> cal: {sel.sum()} stars, centroid - WCS truth: {np.round(offsets, 3)} px")
        assert np.median(offsets) < 0.1


@pytest.mark.slow
def test_image3_dithered_association(jwst):
    """jwst's Image3Pipeline on 4 dithered NIRCam exposures: crf, i2d, cat.ecsv and segm;
    tweakreg matches the stars and removes the pointing errors; source_catalog finds the
    stars at their true positions with their true fluxes; outlier_detection flags the
    injected cosmic rays."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord
    from astropy.table import Table
    from stdatamodels.jwst import datamodels as dm

    world = jwst
    _jwst_ok(world, *[f"image2 nircam dither {i + 1}" for i in range(4)], "image3 nircam 4 dithers")
    adir = world.base / "assoc"
    product = "jw99999-c1000_t001_nircam_clear-f200w-sub640"
    for suffix in ("_i2d.fits", "_cat.ecsv", "_segm.fits"):
        assert (adir / f"{product}{suffix}").exists(), suffix
    field = world.stars
    print()
    for i, (rate_path, truth, _scene) in enumerate(world.assoc):
        stem = rate_path.name.replace("_rate.fits", "")
        crf_path = adir / f"{stem}_c1000_crf.fits"
        with dm.open(adir / f"{stem}_cal.fits") as cal, dm.open(crf_path) as crf:
            assert crf.meta.cal_step.tweakreg == "COMPLETE"
            assert crf.meta.cal_step.outlier_detection == "COMPLETE"
            on = (truth.star_x > 2) & (truth.star_x < 637) & (truth.star_y > 2) & (truth.star_y < 637)
            errs = []
            for m in (cal, crf):            # WCS at the true star pixels: before / after tweakreg
                ra, dec = m.meta.wcs(truth.star_x[on], truth.star_y[on])
                errs.append(np.hypot((ra - field.ra[on]) * np.cos(np.radians(dec)), dec - field.dec[on]) * 3.6e6)
            # outliers: the injected cosmic rays (slope > 1 DN/s, > 10 sigma) are flagged
            outlier = (crf.dq & 16) != 0
            cy, cx = truth.cosmic_rays[:, 0], truth.cosmic_rays[:, 1]
            big = truth.cr_slope > 1.0
            caught = outlier[cy[big], cx[big]].mean()
            hit = np.zeros(outlier.shape, bool)
            hit[cy, cx] = True
            false = (outlier & ~hit).mean()
            print(f"dither {i + 1}: {on.sum()} stars; WCS error before tweakreg {np.median(errs[0]):.1f} mas, "
                  f"after {np.median(errs[1]):.2f} mas (max {errs[1].max():.2f}); cosmic rays > 1 DN/s "
                  f"flagged {caught:.3f} of {big.sum()}; other pixels flagged {false:.5f}")
            assert np.median(errs[1]) < 5.0 and errs[1].max() < 10.0     # 5 mas = 0.16 px
            assert caught > 0.9 and false < 1e-3
    # the headers' pointing errors were really there (and tweakreg removed them)
    before = []
    for rate_path, truth, _scene in world.assoc:
        with dm.open(adir / rate_path.name.replace("_rate", "_cal")) as cal:
            on = (truth.star_x > 2) & (truth.star_x < 637) & (truth.star_y > 2) & (truth.star_y < 637)
            ra, dec = cal.meta.wcs(truth.star_x[on], truth.star_y[on])
            sep = np.hypot((ra - field.ra[on]) * np.cos(np.radians(dec)), dec - field.dec[on])
            before.append(np.median(sep) * 3.6e6)
    assert max(before) > 30.0
    # source_catalog: stars found at their true positions with their true fluxes
    cat = Table.read(adir / f"{product}_cat.ecsv")
    with dm.open(adir / f"{product}_i2d.fits") as i2d:
        assert i2d.meta.cal_step.resample == "COMPLETE"
        x, y = i2d.meta.wcs.invert(field.ra, field.dec)
        wht = i2d.wht
        ny, nx = wht.shape
        ix, iy = np.round(np.nan_to_num(x, nan=-99)).astype(int), np.round(np.nan_to_num(y, nan=-99)).astype(int)
        inside = (ix > 10) & (ix < nx - 11) & (iy > 10) & (iy < ny - 11)
        covered = np.zeros(len(field), bool)
        covered[inside] = [wht[b - 10:b + 11, a - 10:a + 11].min() > 0
                           for a, b in zip(ix[inside], iy[inside], strict=True)]
    truth = SkyCoord(field.ra * u.deg, field.dec * u.deg)
    found = SkyCoord(cat["sky_centroid"])
    idx, sep, _ = truth.match_to_catalog_sky(found)
    sep = sep.to_value(u.mas)
    recovered = covered & (sep < 10.0)
    flux_ratio = np.asarray(cat["aper_total_flux"])[idx[recovered]] * 1e6 / field.flux[recovered]
    print(f"source_catalog: {len(cat)} sources; {recovered.sum()} of {covered.sum()} stars in full coverage "
          f"within 10 mas (median {np.median(sep[recovered]):.2f} mas, max {sep[recovered].max():.2f}); "
          f"aperture-corrected flux / true: median {np.median(flux_ratio):.4f}, "
          f"16-84% {np.percentile(flux_ratio, 16):.3f}-{np.percentile(flux_ratio, 84):.3f}")
    assert covered.sum() >= 20
    assert recovered.sum() >= 0.95 * covered.sum()
    assert np.median(sep[recovered]) < 3.0
    assert abs(np.median(flux_ratio) - 1) < 0.02
    print("jwst run times (s): " + ", ".join(f"{k} {v:.1f}" for k, v in world.jwst["timings"].items()))
