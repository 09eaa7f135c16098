"""Simulated imaging exposures for stages 2 and 3.

``_rate.fits`` files are written directly from a
:class:`simulation.sky.SkyScene`. (Raw ramps carry the same scene when the SkyScene is given
as ``scene`` to :func:`simulation.ramps.simulate_ramp`, as ``simulate_pool(imaging=True)``
does.)

:func:`write_rate` makes what calwebb_detector1 would make of an imaging exposure, without
running stage 1: an ``ImageModel`` with SCI (DN/s), ERR, DQ, VAR_POISSON and VAR_RNOISE
and the header of a rate product (instrument, exposure, timing, subarray, observation and
pointing keywords; S_* statuses of the detector1 steps). Noise and defects are those of the
simulated detector (:func:`simulation.ramps.make_detector`: gain, read noise, dark current,
dead, hot and reference pixels):

* the slope of a pixel with true rate r (DN/s, the scene's) and dark current d is
  ``Poisson((r + d) * gain * t) / (gain * t) - d`` with t = (NGROUPS - 1) x TGROUP, plus the
  read noise of a least-squares slope over NGROUPS groups,
  ``sigma^2 = 12 s_g^2 / (N (N^2 - 1) TGROUP^2)`` (s_g: one group's read noise, the
  detector's single-read noise over sqrt(NFRAMES));
* VAR_POISSON = max(slope, 0) / (gain t) and VAR_RNOISE = sigma^2, as jwst's ramp_fit
  reports them for a one-segment ramp; ERR = sqrt of their sum;
* cosmic rays hit pixels at ``cr_rate`` per pixel per second during the integration with
  200 - 20000 e- (log-uniform). With NGROUPS >= 3 the jump step would flag them (JUMP_DET,
  no effect on the slope); with NGROUPS <= 2 it cannot, and each hit adds its least-squares
  step to the slope — the residual cosmic rays stage 3's outlier_detection removes;
* DO_NOT_USE pixels (dead, or saturated before the second group) have SCI NaN and ERR/VAR 0,
  reference pixels carry read noise only and DQ REFERENCE_PIXEL, as jwst's rate files.

Subarray placement comes from the SIAF aperture (:func:`simulation.siaf.subarray_geometry`),
frame times from :func:`simulation.ramps.readout` (the PRD).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from simulation import optics, siaf
from simulation.sky import Pointing, SkyScene

# jwst DQ bits (stdatamodels dqflags.pixel)
DO_NOT_USE, SATURATED, JUMP_DET, DEAD, HOT = 1, 2, 4, 1024, 2048
REFERENCE_PIXEL = 2**31

#: detector1 steps and the status a rate of each instrument family carries
_DETECTOR1_STATUS = {
    "near_ir": {"group_scale": "SKIPPED", "dq_init": "COMPLETE", "saturation": "COMPLETE",
                "ipc": "COMPLETE", "superbias": "COMPLETE", "refpix": "COMPLETE",
                "linearity": "COMPLETE", "persistence": "SKIPPED", "dark_sub": "COMPLETE",
                "charge_migration": "SKIPPED", "jump": "COMPLETE", "clean_flicker_noise": "SKIPPED",
                "picture_frame": "SKIPPED", "ramp_fit": "COMPLETE", "gain_scale": "SKIPPED"},
    "miri": {"group_scale": "SKIPPED", "dq_init": "COMPLETE", "emicorr": "SKIPPED",
             "saturation": "COMPLETE", "firstframe": "SKIPPED", "lastframe": "COMPLETE",
             "reset": "COMPLETE", "linearity": "COMPLETE", "rscd": "COMPLETE",
             "dark_sub": "COMPLETE", "refpix": "COMPLETE", "jump": "COMPLETE",
             "clean_flicker_noise": "SKIPPED", "ramp_fit": "COMPLETE", "gain_scale": "SKIPPED"},
}
#: (FASTAXIS, SLOWAXIS) by instrument and the SIAF DetSciYAngle of the detector (as in real
#: headers: NIRCam A2 (180) 1/-2, A3 (0) -1/2; FGS GUIDER1 (180) -2/-1, GUIDER2 (0) 2/-1)
_AXES = {("NIRCAM", 0): (-1, 2), ("NIRCAM", 180): (1, -2), ("NIRISS", 180): (-2, -1),
         ("FGS", 180): (-2, -1), ("FGS", 0): (2, -1), ("MIRI", 0): (1, 2)}


@dataclass
class ImagingExposure:
    """One imaging exposure: where (SIAF aperture), through what, and how it is read out.

    aperture : SIAF aperture name (APERNAME), e.g. "NRCA1_SUB640", "NIS_SUB256",
        "MIRIM_BRIGHTSKY", "FGS1_FULL"; it fixes the subarray (SUBARRAY is the part after
        the detector prefix, FULL for full-frame apertures) and its placement.
    """

    instrument: str
    detector: str
    aperture: str
    filter: str | None = None
    pupil: str | None = None
    readpatt: str | None = None
    ngroups: int = 2
    nints: int = 1
    exp_type: str | None = None

    def __post_init__(self):
        """Normalise the names (upper case) and default the readout pattern."""
        from simulation.ramps import DEFAULT_READPATT

        self.instrument = self.instrument.upper()
        self.detector = self.detector.upper()
        self.readpatt = (self.readpatt or DEFAULT_READPATT[self.instrument]).upper()
        self.exp_type = (self.exp_type or optics.EXP_TYPES[self.instrument]).upper()
        if self.ngroups < 2:
            raise ValueError("an imaging rate needs NGROUPS >= 2")

    @property
    def subarray(self) -> str:
        """SUBARRAY keyword: FULL for a full-frame aperture, else the name after the prefix."""
        ap = siaf.aperture(self.instrument, self.aperture)
        if ap.AperType == "FULLSCA" or self.aperture.endswith(("_FULL", "_CEN")):
            return "FULL"
        return self.aperture.split("_", 1)[1]

    def geometry(self) -> tuple[int, int, int, int]:
        """(SUBSTRT1, SUBSTRT2, SUBSIZE1, SUBSIZE2) from the SIAF."""
        if self.subarray == "FULL":
            ny, nx = optics.full_shape(self.instrument)
            return 1, 1, nx, ny
        return siaf.subarray_geometry(self.instrument, self.aperture)

    def readout(self):
        """Return the :class:`simulation.ramps.Readout` of the exposure.

        PRD readout pattern and frame time, or the JDox frame-time formula on the SIAF
        window's size (:func:`simulation.ramps.readout`).
        """
        from simulation import ramps as sim

        return sim.readout(self.instrument, self.readpatt, self.subarray, self.detector, self.geometry())


def exposure_keywords(exp: ImagingExposure, pointing: Pointing, expstart: float = 60000.0,
                      filename: str | None = None, observation: dict | None = None) -> dict:
    """FITS keywords of the exposure (primary and SCI header, set through the datamodel).

    ``observation`` gives the program/visit identity (PROGRAM, OBSERVTN, VISIT, VISITGRP,
    SEQ_ID, ACT_ID, EXPOSURE, TARGNAME, PATT_NUM, NUMDTHPT, ...); defaults describe program
    99999 observation 1 visit 1 exposure 1. jwst's stage 3 groups exposures by these
    (tweakreg, outlier_detection), so each exposure of an association needs its own
    EXPOSURE (or ACT_ID/SEQ_ID). Times: EXPSTART (MJD) and the readout.
    """
    from astropy.time import Time

    ro = exp.readout()
    x1, y1, xs, ys = exp.geometry()
    obs = {"PROGRAM": "99999", "OBSERVTN": "001", "VISIT": "001", "VISITGRP": "01",
           "SEQ_ID": "1", "ACT_ID": "01", "EXPOSURE": "00001", "TARGNAME": "SIMULATED-FIELD"}
    obs.update({k: v for k, v in (observation or {}).items() if v is not None})
    obs.setdefault("VISIT_ID", f"{obs['PROGRAM']}{obs['OBSERVTN']}{obs['VISIT']}")
    obs.setdefault("OBS_ID", f"V{obs['VISIT_ID']}P00000000{obs['VISITGRP']}{obs['SEQ_ID']}{obs['ACT_ID']}")
    inttime = ro.tframe * (exp.ngroups * (ro.nframes + ro.groupgap) - ro.groupgap)
    duration = exp.nints * (exp.ngroups * ro.tgroup + ro.tframe)
    t0 = Time(expstart, format="mjd")
    ap_full = siaf.full_frame_aperture(exp.instrument, exp.detector)
    fast, slow = _AXES.get((exp.instrument, int(round(ap_full.DetSciYAngle)) % 360), (1, 2))
    kw = {
        "TELESCOP": "JWST", "INSTRUME": exp.instrument, "DETECTOR": exp.detector,
        "EXP_TYPE": exp.exp_type, "SUBARRAY": exp.subarray, "SUBSTRT1": x1, "SUBSTRT2": y1,
        "SUBSIZE1": xs, "SUBSIZE2": ys, "FASTAXIS": fast, "SLOWAXIS": slow,
        "READPATT": exp.readpatt, "NGROUPS": exp.ngroups, "NINTS": exp.nints,
        "NFRAMES": ro.nframes, "GROUPGAP": ro.groupgap, "FRMDIVSR": ro.nframes,
        "NOUTPUTS": ro.noutputs, "TFRAME": ro.tframe, "TGROUP": ro.tgroup,
        "EFFINTTM": inttime, "EFFEXPTM": inttime * exp.nints, "DURATION": duration,
        "XPOSURE": inttime * exp.nints, "TELAPSE": duration,
        "DATE-OBS": t0.isot[:10], "TIME-OBS": t0.isot[11:23], "DATE-BEG": t0.isot[:23],
        "DATE-END": Time(expstart + duration / 86400.0, format="mjd").isot[:23],
        "EXPSTART": expstart, "EXPMID": expstart + duration / 2 / 86400.0,
        "EXPEND": expstart + duration / 86400.0,
        **obs, **pointing.keywords(),
    }
    if exp.instrument == "NIRCAM":
        kw["MODULE"] = exp.detector[3]
        kw["CHANNEL"] = "LONG" if exp.detector.endswith("LONG") else "SHORT"
    if exp.filter is not None and optics._norm(exp.filter) != "N/A":
        kw["FILTER"] = exp.filter.upper()
    if exp.pupil is not None and optics._norm(exp.pupil) != "N/A":
        kw["PUPIL"] = exp.pupil.upper()
    if filename:
        kw["FILENAME"] = filename
    return kw


def _set_keywords(model, keywords: dict) -> None:
    for key, value in keywords.items():
        paths = [p for p in model.find_fits_keyword(key) if p.startswith("meta.")]
        if not paths:
            raise KeyError(f"{key}: no {type(model).__name__} path for this FITS keyword")
        # V2_REF, ROLL_REF, ... also name FGS guide-star keywords: the science WCS ones win
        wcs = [p for p in paths if p.startswith("meta.wcsinfo.")]
        for p in wcs or paths:
            model[p] = value


@dataclass
class RateTruth:
    """What a simulated rate was made of (window of the exposure).

    rate : float32 (ny, nx) DN/s, the scene's noiseless rate (0 on reference and dead pixels).
    star_x, star_y : float64 (n,) 0-based positions of the field's stars in the window.
    star_rate : float64 (n,) total DN/s of each star (pixel response 1).
    cosmic_rays : int32 (m, 2) (y, x) of each hit; cr_slope : float32 (m,) DN/s it added to
        the slope (0 where the jump step would have flagged it).
    """

    rate: np.ndarray
    star_x: np.ndarray
    star_y: np.ndarray
    star_rate: np.ndarray
    cosmic_rays: np.ndarray
    cr_slope: np.ndarray
    keywords: dict = field(default_factory=dict)


def _ols_step_weights(ngroups: int) -> np.ndarray:
    """Return the least-squares slope per unit step at each group.

    Index g: the step is seen from group g on: ``sum_{i >= g} (i - mean) / sum_i (i - mean)^2``
    (in units of 1/TGROUP).
    """
    i = np.arange(ngroups, dtype=np.float64)
    d = i - i.mean()
    return np.array([d[g:].sum() for g in range(ngroups)]) / (d * d).sum()


def write_rate(path, exp: ImagingExposure, scene: SkyScene, seed: int = 0, expstart: float = 60000.0,
               observation: dict | None = None, detector_seed: int = 0, cr_rate: float = 5e-5,
               detector=None) -> tuple[Path, RateTruth]:
    """Write ``<path>`` (a ``*_rate.fits``) of ``exp`` seeing ``scene``; see the module docstring.

    Parameters
    ----------
    path : output file (its name becomes FILENAME).
    exp : the exposure; scene : what it sees (its pointing gives the header's pointing).
    seed : seed of the exposure's noise and cosmic rays; same inputs -> identical bytes.
    expstart : MJD of the exposure start.
    observation : program/visit keywords (see :func:`exposure_keywords`).
    detector_seed : seed of the simulated detector (as ``archive simulate --seed``).
    cr_rate : cosmic-ray hits per pixel per second.
    detector : a :class:`simulation.ramps.Detector` to reuse (else made from the seed).

    Returns
    -------
    (path, RateTruth)
    """
    from stdatamodels.jwst import datamodels as dm

    from simulation import ramps as sim

    path = Path(path)
    det = detector if detector is not None else sim.make_detector(exp.instrument, exp.detector, detector_seed)
    ro = exp.readout()
    x1, y1, nx, ny = exp.geometry()
    rows, cols = slice(y1 - 1, y1 - 1 + ny), slice(x1 - 1, x1 - 1 + nx)
    rng = np.random.default_rng(sim.derive_seed("rate", exp.instrument, exp.detector, exp.aperture, seed))
    truth = scene.rate(cols.start, rows.start, nx, ny, det.shape)
    refpix, dead, hot = det.refpix[rows, cols], det.dead[rows, cols], det.hot[rows, cols]
    truth[refpix | dead] = 0.0
    gain = det.gain[rows, cols].astype(np.float64)
    dark = det.dark_rate[rows, cols].astype(np.float64)
    n, tg = exp.ngroups, ro.tgroup
    t = (n - 1) * tg
    counts = rng.poisson(np.clip(truth + dark, 0.0, None) * gain * t)
    slope = counts / (gain * t) - dark
    sig_g = det.readnoise[rows, cols].astype(np.float64) / np.sqrt(ro.nframes)
    var_rn = 12.0 * sig_g**2 / (n * (n * n - 1) * tg * tg)
    slope += rng.standard_normal((ny, nx)) * np.sqrt(var_rn)
    dq = np.zeros((ny, nx), np.uint32)
    dq[hot] |= HOT
    dq[refpix] |= np.uint32(REFERENCE_PIXEL)
    # cosmic rays over the frames up to the last group read
    nframes_int = n * (ro.nframes + ro.groupgap) - ro.groupgap
    ncr = int(rng.poisson(cr_rate * ny * nx * nframes_int * ro.tframe * exp.nints))
    cy, cx = rng.integers(0, ny, ncr), rng.integers(0, nx, ncr)
    frame = rng.integers(0, nframes_int, ncr)
    q = np.exp(rng.uniform(np.log(200.0), np.log(2.0e4), ncr))
    on = ~(refpix[cy, cx] | dead[cy, cx])
    cy, cx, frame, q = cy[on], cx[on], frame[on], q[on]
    # the group averages see the hit in the frames at and after it: its step in group units
    per = ro.nframes + ro.groupgap
    g_first = frame // per
    in_group = frame % per
    frac_first = np.where(in_group < ro.nframes, (ro.nframes - in_group) / ro.nframes, 0.0)
    w = _ols_step_weights(n)
    wpad = np.append(w, 0.0)
    step = q / gain[cy, cx]                                # DN
    # a hit during group g's frames is seen by a fraction of g's average and fully from g+1 on
    cr_slope = step * (frac_first * wpad[np.minimum(g_first, n)]
                       + (1.0 - frac_first) * wpad[np.minimum(g_first + 1, n)]) / tg
    if n >= 3:                                             # jump detection flags them
        dq[cy, cx] |= JUMP_DET
        cr_slope = np.zeros_like(cr_slope)
    else:
        np.add.at(slope, (cy, cx), cr_slope)
    # saturation: pixels whose charge reaches the saturation level by the second group
    full_well = (det.saturation[rows, cols] - det.superbias[rows, cols]).astype(np.float64)
    level2 = (truth + dark) * (ro.tframe * (per + (ro.nframes + 1) / 2.0))
    sat_any = (truth + dark) * sim.group_times(ro, n)[-1] >= full_well
    sat_early = level2 >= full_well
    dq[sat_any] |= SATURATED
    bad = dead | sat_early
    dq[dead] |= DEAD
    dq[bad] |= DO_NOT_USE
    var_p = np.clip(slope, 0.0, None) / (gain * t)
    var_p[refpix] = 0.0
    data = slope.astype(np.float32)
    var_p = var_p.astype(np.float32)
    var_r = var_rn.astype(np.float32)
    data[bad] = np.nan
    var_p[bad] = 0.0
    var_r[bad] = 0.0
    err = np.sqrt(var_p + var_r).astype(np.float32)

    kw = exposure_keywords(exp, scene.pointing, expstart, path.name, observation)
    model = dm.ImageModel(data=data, err=err, dq=dq, var_poisson=var_p, var_rnoise=var_r)
    _set_keywords(model, kw)
    model.meta.model_type = "ImageModel"
    model.meta.bunit_data = "DN/s"
    model.meta.bunit_err = "DN/s"
    family = "miri" if exp.instrument == "MIRI" else "near_ir"
    for step_name, status in _DETECTOR1_STATUS[family].items():
        setattr(model.meta.cal_step, step_name, status)
    if exp.instrument != "MIRI" and det.ipc_alpha == 0.0:
        model.meta.cal_step.ipc = "SKIPPED"
    model.meta.filename = path.name
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path, overwrite=True)
    model.close()
    xs, ys = scene.star_pixels()
    rt = RateTruth(rate=truth.astype(np.float32), star_x=xs - cols.start, star_y=ys - rows.start,
                   star_rate=scene.star_rates(), cosmic_rays=np.stack([cy, cx], 1).astype(np.int32),
                   cr_slope=cr_slope.astype(np.float32), keywords=kw)
    return path, rt
