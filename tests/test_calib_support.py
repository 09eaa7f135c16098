"""Seeded, physically honest small exposures and reference files for the calib tests.

Not a test module (no tests): ``from tests.test_calib_support import ...``.
Ramps are made frame by frame: Poisson electrons from a known rate, dark current, a
quadratic non-linearity, per-group reference-pixel drift (even/odd columns), bias, read
noise per frame, frame averaging into groups, cosmic-ray jumps, 16-bit clipping.
References are the real CRDS formats (stdatamodels models) written to disk.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from astropy.io import fits
from stdatamodels.jwst import datamodels

from calib import dqflags

BETA = 4.0e-7          # non-linearity: measured = true * (1 - BETA * true), DN
SAT_DN = 42000.0       # saturation threshold, raw DN
BIAS_DN = 11000.0


@dataclass
class Sim:
    uncal: str
    refs: dict[str, str]
    truth_rate: np.ndarray          # DN/s (ny, nx)
    jumps: list[tuple[int, int, int, int]]   # (int, group, y, x)
    saturating: list[tuple[int, int]]        # (y, x) pixels that saturate mid-ramp
    refpix_mask: np.ndarray                  # bool (ny, nx)
    bad_pixels: list[tuple[int, int]] = field(default_factory=list)
    info: dict = field(default_factory=dict)


def _set_sub(meta, xstart, ystart, xsize, ysize, name, fast=1, slow=-2):
    meta.subarray.name = name
    meta.subarray.xstart = xstart
    meta.subarray.ystart = ystart
    meta.subarray.xsize = xsize
    meta.subarray.ysize = ysize
    meta.subarray.fastaxis = fast
    meta.subarray.slowaxis = slow


def _ref_meta(m, instrument, detector, reftype, sub, readpatt=None):
    m.meta.instrument.name = instrument
    m.meta.instrument.detector = detector
    m.meta.reftype = reftype.upper()
    m.meta.author = "calib tests"
    m.meta.pedigree = "DUMMY"
    m.meta.useafter = "2022-01-01T00:00:00"
    m.meta.description = f"synthetic {reftype} for calib tests"
    try:
        m.meta.telescope = "JWST"
    except Exception:  # noqa: BLE001
        pass
    try:
        _set_sub(m.meta, *sub, "GENERIC")
    except AttributeError:   # e.g. IPCModel has no subarray keywords
        pass
    if readpatt is not None:
        m.meta.exposure.readpatt = readpatt


def make_nircam(tmp_path, *, seed=1234, nints=2, ngroups=10, ny=160, nx=160, nframes=1,
                groupgap=0, tframe=0.27864, readpatt="RAPID", with_refpix=True,
                dark_nframes=1, sat_jump=True, full_refs=True, xstart=1, ystart=1, noutputs=1,
                subarray="SUB160", ipc_alpha=0.0, instrument="NIRCAM", real_refs=None):
    """A NIRCam NRCA2 subarray (default SUB160-sized at the detector corner, SUBSTRT 1,1),
    whose pixels in the 4-pixel full-frame border are reference pixels, and its reference
    files. ``instrument="NIRISS"`` makes the same exposure on NIRISS (detector NIS,
    FASTAXIS -2, SLOWAXIS -1: detector columns run along DMS rows), ``"NIRSPEC"`` on NRS1
    (FASTAXIS 2, SLOWAXIS 1), ``"FGS"`` on GUIDER1 (FASTAXIS -2, SLOWAXIS -1), as in real
    headers. ``real_refs`` {reftype: path} replaces those synthetic references by real
    ones (a real superbias also becomes the simulated bias). Returns a Sim."""
    det, (fast, slow), exp_type = {
        "NIRCAM": ("NRCA2", (1, -2), "NRC_IMAGE"), "NIRISS": ("NIS", (-2, -1), "NIS_IMAGE"),
        "NIRSPEC": ("NRS1", (2, 1), "NRS_IMAGE"), "FGS": ("GUIDER1", (-2, -1), "FGS_IMAGE"),
    }[instrument]
    real_refs = dict(real_refs or {})
    rng = np.random.default_rng(seed)
    tgroup = tframe * (nframes + groupgap)
    gain = (2.0 + 0.1 * rng.standard_normal((ny, nx))).astype(np.float32)
    gain_ref = gain.copy()
    gain_ref[12, 13] = np.nan     # -> NO_GAIN_VALUE | DO_NOT_USE
    gain_ref[13, 30 if nx > 34 else 9] = 0.0
    rn_cds = (9.0 + 0.5 * rng.standard_normal((ny, nx))).astype(np.float32)   # DN, CDS
    bias = (BIAS_DN + 80.0 * rng.standard_normal((ny, nx))).astype(np.float32)
    if "superbias" in real_refs:
        real_bias = fits.getdata(real_refs["superbias"], "SCI").astype(np.float32)
        bias = np.where(np.isfinite(real_bias), real_bias, np.float32(BIAS_DN))
    dark_rate = np.float32(0.02) + np.float32(0.01) * rng.random((ny, nx), dtype=np.float32)  # DN/s
    rate = (10.0 ** rng.uniform(0.0, 3.0, (ny, nx))).astype(np.float32)   # 1 .. 1000 DN/s
    refmask = np.zeros((ny, nx), bool)
    if with_refpix:
        rows = ystart - 1 + np.arange(ny)
        cols = xstart - 1 + np.arange(nx)
        refmask = ((rows[:, None] < 4) | (rows[:, None] >= 2044)
                   | (cols[None, :] < 4) | (cols[None, :] >= 2044))
    rate[refmask] = 0.0
    dark_rate[refmask] = 0.0       # reference pixels have no photodiode: no dark current
    def X(x):   # keep the default positions, wrapped inside smaller arrays
        return x if x < nx - 4 else x % (nx - 8) + 4

    saturating = [(min(80, ny - 10), X(80)), (min(100, ny - 8), X(30)), (33 % (ny - 6), X(120))]
    for (y, x) in saturating:
        rate[y, x] = 4.0e4 / (ngroups * tgroup) * 1.6
    # frames
    nfr_total = ngroups * nframes + (ngroups - 1) * groupgap
    t_end = np.arange(1, nfr_total + 1) * tframe
    data = np.zeros((nints, ngroups, ny, nx), np.float64)
    jumps = []
    cr_list = [(0, 5, 50 % (ny - 8) + 4, X(60), 1500.0), (1, 3, 120 % (ny - 8) + 4, X(40), 900.0),
               (0, 7, 20 % (ny - 8) + 4, X(140), 2500.0)]
    for i in range(nints):
        e = np.zeros((ny, nx))
        frames = np.zeros((nfr_total, ny, nx))
        for f in range(nfr_total):
            e = e + rng.poisson(np.maximum(rate, 0) * gain * tframe)
            frames[f] = e / gain
        for (ii, gg, y, x, amp) in cr_list:
            if ii == i:
                f0 = gg * (nframes + groupgap)
                frames[f0:, y, x] += amp
        if ipc_alpha > 0:   # capacitive coupling: a fraction alpha to each of 4 neighbours
            c = frames.copy()
            frames = (1 - 4 * ipc_alpha) * c
            frames[:, 1:, :] += ipc_alpha * c[:, :-1, :]
            frames[:, :-1, :] += ipc_alpha * c[:, 1:, :]
            frames[:, :, 1:] += ipc_alpha * c[:, :, :-1]
            frames[:, :, :-1] += ipc_alpha * c[:, :, 1:]
            frames[:, refmask] = 0.0     # reference pixels have no photodiode to couple to
        true_dn = frames + dark_rate[None] * t_end[:, None, None]
        meas = true_dn * (1.0 - BETA * true_dn)
        drift = rng.normal(0.0, 6.0, (nfr_total, 2))      # even/odd column drift per frame
        colpar = (np.arange(nx) % 2)[None, None, :]
        meas = meas + np.where(colpar == 0, drift[:, 0, None, None], drift[:, 1, None, None])
        meas = meas + bias[None] + rng.standard_normal((nfr_total, ny, nx)) * (rn_cds / np.sqrt(2))[None]
        for g in range(ngroups):
            f0 = g * (nframes + groupgap)
            data[i, g] = meas[f0:f0 + nframes].mean(axis=0)
    for (ii, gg, y, x, _amp) in cr_list:
        if ii < nints and gg < ngroups:
            jumps.append((ii, gg, y, x))
    raw = np.clip(np.round(data), 0, 65535).astype(np.uint16)

    # science file
    m = datamodels.Level1bModel(data=raw)
    meta = m.meta
    meta.telescope = "JWST"
    meta.instrument.name = instrument
    meta.instrument.detector = det
    if instrument == "NIRCAM":
        meta.instrument.channel = "SHORT"
        meta.instrument.module = "A"
        meta.instrument.filter = "F210M"
        meta.instrument.pupil = "CLEAR"
        meta.exposure.type = "NRC_IMAGE"
    elif instrument == "NIRISS":
        meta.instrument.filter = "CLEAR"
        meta.instrument.pupil = "F150W"
    elif instrument == "NIRSPEC":
        meta.instrument.filter = "F110W"
        meta.instrument.grating = "MIRROR"
    meta.exposure.type = exp_type
    meta.exposure.readpatt = readpatt
    meta.exposure.nints = nints
    meta.exposure.ngroups = ngroups
    meta.exposure.nframes = nframes
    meta.exposure.groupgap = groupgap
    meta.exposure.frame_divisor = nframes
    meta.exposure.frame_time = tframe
    meta.exposure.group_time = tgroup
    meta.exposure.integration_time = tgroup * (ngroups - 1)
    meta.exposure.noutputs = noutputs
    meta.exposure.nresets_at_start = 1
    meta.exposure.nresets_between_ints = 1
    meta.exposure.sample_time = 10
    meta.exposure.start_time = 59700.0
    meta.exposure.mid_time = 59700.001
    meta.exposure.end_time = 59700.002
    meta.observation.date = "2022-05-14"
    meta.observation.time = "18:15:30.545"
    _set_sub(meta, xstart, ystart, nx, ny, subarray, fast=fast, slow=slow)
    fname = f"jw09999001001_01101_00001_{det.lower()}_uncal.fits"
    meta.filename = fname
    uncal = str(tmp_path / fname)
    m.save(uncal)
    m.close()

    # reference files: a larger 320x320 window at the corner for most, exact for bias/dark
    big = (1, 1, 320, 320) if full_refs else (xstart, ystart, nx, ny)
    by, bx = big[3], big[2]

    def pad(a, fill):
        out = np.full((by, bx), fill, dtype=a.dtype)
        out[:ny, :nx] = a
        return out

    refs = {}
    mask_dq = np.zeros((ny, nx), np.uint32)
    mask_dq[refmask] = dqflags.REFERENCE_PIXEL
    bad = [(70 % (ny - 8) + 4, X(70)), (140 % (ny - 8) + 4, X(10))]
    for (y, x) in bad:
        mask_dq[y, x] |= dqflags.DO_NOT_USE | dqflags.HOT
    mm = datamodels.MaskModel(dq=pad(mask_dq, np.uint32(0)))
    _ref_meta(mm, instrument, det, "mask", big)
    refs["mask"] = str(tmp_path / "nrca2_mask.fits")
    mm.save(refs["mask"])

    sat = np.full((ny, nx), SAT_DN, np.float32)
    sat_dq = np.zeros((ny, nx), np.uint32)
    sat[5, 6] = np.nan
    sm = datamodels.SaturationModel(data=pad(sat, np.float32(SAT_DN)), dq=pad(sat_dq, np.uint32(0)))
    _ref_meta(sm, instrument, det, "saturation", big)
    refs["saturation"] = str(tmp_path / "nrca2_saturation.fits")
    sm.save(refs["saturation"])

    sb = datamodels.SuperBiasModel(data=bias.copy(), dq=np.zeros((ny, nx), np.uint32),
                                   err=np.zeros((ny, nx), np.float32))
    _ref_meta(sb, instrument, det, "superbias", (xstart, ystart, nx, ny), readpatt="ANY")
    refs["superbias"] = str(tmp_path / "nrca2_superbias.fits")
    sb.save(refs["superbias"])

    coeffs = np.zeros((4, ny, nx), np.float32)
    coeffs[1] = 1.0
    coeffs[2] = BETA
    coeffs[3] = 2 * BETA ** 2
    coeffs[:, 10, X(150)] = np.nan     # -> NO_LIN_CORR
    lm = datamodels.LinearityModel(coeffs=np.stack([pad(c, np.float32(0)) for c in coeffs]),
                                   dq=pad(np.zeros((ny, nx), np.uint32), np.uint32(0)))
    _ref_meta(lm, instrument, det, "linearity", big)
    refs["linearity"] = str(tmp_path / "nrca2_linearity.fits")
    lm.save(refs["linearity"])

    # dark: cumulative dark per frame (dark_nframes=1) or per averaged group
    d_ngroups = nfr_total if dark_nframes == 1 else ngroups
    if dark_nframes == 1:
        dk = (dark_rate[None] * (np.arange(1, d_ngroups + 1) * tframe)[:, None, None]).astype(np.float32)
    else:
        dk = np.stack([dark_rate * tframe * (g * (nframes + groupgap) + (nframes + 1) / 2.0)
                       for g in range(ngroups)]).astype(np.float32)
    dm = datamodels.DarkModel(data=dk, dq=np.zeros((ny, nx), np.uint32),
                              err=np.zeros_like(dk))
    _ref_meta(dm, instrument, det, "dark", (xstart, ystart, nx, ny), readpatt="ANY")
    dm.meta.exposure.nframes = dark_nframes
    dm.meta.exposure.groupgap = 0 if dark_nframes == 1 else groupgap
    dm.meta.exposure.ngroups = d_ngroups
    refs["dark"] = str(tmp_path / "nrca2_dark.fits")
    dm.save(refs["dark"])

    if ipc_alpha > 0:
        a = ipc_alpha / (1 - 4 * ipc_alpha)    # first-order deconvolution kernel
        kern = np.array([[0, -a, 0], [-a, 1 + 4 * a, -a], [0, -a, 0]], np.float32)
        im = datamodels.IPCModel(data=kern)
        _ref_meta(im, instrument, det, "ipc", big)
        refs["ipc"] = str(tmp_path / "nrca2_ipc.fits")
        im.save(refs["ipc"])

    gm = datamodels.GainModel(data=pad(gain_ref, np.float32(2.0)))
    _ref_meta(gm, instrument, det, "gain", big)
    refs["gain"] = str(tmp_path / "nrca2_gain.fits")
    gm.save(refs["gain"])

    rm = datamodels.ReadnoiseModel(data=pad(rn_cds, np.float32(9.0)))
    _ref_meta(rm, instrument, det, "readnoise", big)
    refs["readnoise"] = str(tmp_path / "nrca2_readnoise.fits")
    rm.save(refs["readnoise"])

    refs.update(real_refs)
    return Sim(uncal=uncal, refs=refs, truth_rate=rate.astype(np.float64), jumps=jumps,
               saturating=saturating, refpix_mask=refmask, bad_pixels=bad,
               info=dict(tgroup=tgroup, gain=gain, rn=rn_cds, bias=bias, dark_rate=dark_rate,
                         raw=raw))


def make_miri(tmp_path, *, seed=99, nints=1, ngroups=8, ny=64, nx=72, full_frame=False,
              reset_rscd=True, rscd_skip=(1, 2), bright=False, ipc_alpha=0.0):
    """A MIRI MIRIMAGE SUB64-like exposure (SUBSTRT 1, 779) with full-frame (1024x1032)
    mask/saturation/gain/readnoise/linearity references and a 4-D MIRI dark.
    ``reset_rscd``: the ramp carries a reset anomaly (2 integrations x 3 groups, ~40 DN,
    decaying) and RESET (subarray-sized, as jwst needs) and RSCD references are written;
    the RSCD table's row for this SUBARRAY/FASTR1 has GROUP_SKIP1, GROUP_SKIP = rscd_skip.
    ``bright``: three pixels on row 12 saturate in group 3, group 4 and group 1 (SUB64
    timing), so that rscd lowers its skip count for the first two (listed in saturating).
    ``ipc_alpha`` > 0: an IPC reference (3x3 first-order deconvolution kernel) is written;
    the ramp itself has no coupling (for parity runs only).
    ``full_frame=True``: the whole 1024x1032 detector, whose 4 left and 4 right columns are
    reference pixels, with a per-group drift of each amplifier and row parity."""
    if full_frame:
        ny, nx = 1024, 1032
    y0, x0 = (0, 0) if full_frame else (778, 0)
    rng = np.random.default_rng(seed)
    refcols = np.zeros(nx, bool)
    if full_frame:
        refcols[:4] = refcols[-4:] = True
    tframe = 0.08552
    tgroup = tframe
    gain = np.full((ny, nx), 5.5, np.float32)
    rn_cds = np.full((ny, nx), 6.0, np.float32)
    bias = (8000.0 + 50.0 * rng.standard_normal((ny, nx))).astype(np.float32)
    rate = (10.0 ** rng.uniform(2.0, 4.0, (ny, nx))).astype(np.float32)   # 100..10000 DN/s
    if full_frame:
        tframe = tgroup = 2.77504
        rate = (10.0 ** rng.uniform(0.0, 2.5, (ny, nx))).astype(np.float32)
    rate[:, refcols] = 0.0
    saturating = []
    if bright:      # DN per group 20000, 15000, 60000 above an 8000 DN bias, 60000 DN limit
        for x, r in ((12, 2.0e4), (20, 1.5e4), (28, 6.0e4)):
            rate[12, x] = r / tframe
            saturating.append((12, x))
    data = np.zeros((nints, ngroups, ny, nx))
    amp = np.arange(nx) % 4
    rowpar = np.arange(ny) % 2
    for i in range(nints):
        e = np.zeros((ny, nx))
        for g in range(ngroups):
            e = e + rng.poisson(rate * gain * tframe)
            data[i, g] = bias + e / gain + rng.standard_normal((ny, nx)) * rn_cds / np.sqrt(2)
            if full_frame:
                drift = rng.normal(0, 5.0, (2, 4))
                data[i, g] += drift[rowpar[:, None], amp[None, :]]
    data[0, 4:, 30, 30] += 3000.0
    if reset_rscd:       # reset anomaly: own random stream, the rest of the ramp unchanged
        rr = np.random.default_rng(seed + 7)
        reset_tab = (40.0 * (1 + 0.2 * rr.standard_normal((2, 3, ny, nx)))
                     * np.array([1.0, 0.5, 0.2])[None, :, None, None]
                     * np.array([1.0, 0.6])[:, None, None, None]).astype(np.float32)
        for i in range(nints):
            data[i, :3] += reset_tab[min(i, 1), :min(3, ngroups)]
    raw = np.clip(np.round(data), 0, 65535).astype(np.uint16)
    m = datamodels.Level1bModel(data=raw)
    meta = m.meta
    meta.telescope = "JWST"
    meta.instrument.name = "MIRI"
    meta.instrument.detector = "MIRIMAGE"
    meta.instrument.filter = "F770W"
    meta.exposure.type = "MIR_IMAGE"
    meta.exposure.readpatt = "FASTR1"
    meta.exposure.nints = nints
    meta.exposure.ngroups = ngroups
    meta.exposure.nframes = 1
    meta.exposure.groupgap = 0
    meta.exposure.frame_divisor = 1
    meta.exposure.frame_time = tframe
    meta.exposure.group_time = tgroup
    meta.exposure.noutputs = 4
    meta.observation.date = "2022-07-01"
    meta.observation.time = "00:00:00"
    _set_sub(meta, x0 + 1, y0 + 1, nx, ny, "FULL" if full_frame else "SUB64", fast=1, slow=2)
    uncal = str(tmp_path / "jw09999002001_01101_00001_mirimage_uncal.fits")
    m.save(uncal)
    full = (1, 1, 1032, 1024)

    def embed(a, fill):
        out = np.full((1024, 1032), fill, dtype=a.dtype)
        out[y0:y0 + ny, x0:x0 + nx] = a
        return out

    refs = {}
    mdq = np.zeros((ny, nx), np.uint32)
    mdq[:, refcols] = dqflags.REFERENCE_PIXEL
    mm = datamodels.MaskModel(dq=embed(mdq, np.uint32(0)))
    _ref_meta(mm, "MIRI", "MIRIMAGE", "mask", full)
    refs["mask"] = str(tmp_path / "miri_mask.fits")
    mm.save(refs["mask"])
    sm = datamodels.SaturationModel(data=embed(np.full((ny, nx), 60000, np.float32), np.float32(6e4)),
                                    dq=embed(np.zeros((ny, nx), np.uint32), np.uint32(0)))
    _ref_meta(sm, "MIRI", "MIRIMAGE", "saturation", full)
    refs["saturation"] = str(tmp_path / "miri_saturation.fits")
    sm.save(refs["saturation"])
    c = np.zeros((3, 1024, 1032), np.float32)
    c[1] = 1.0
    lm = datamodels.LinearityModel(coeffs=c, dq=np.zeros((1024, 1032), np.uint32))
    _ref_meta(lm, "MIRI", "MIRIMAGE", "linearity", full)
    refs["linearity"] = str(tmp_path / "miri_linearity.fits")
    lm.save(refs["linearity"])
    dk = np.zeros((1 if full_frame else 2, ngroups + 2, ny, nx), np.float32)
    dm = datamodels.DarkMIRIModel(data=dk, dq=np.zeros(dk.shape, np.uint32), err=np.zeros_like(dk))
    _ref_meta(dm, "MIRI", "MIRIMAGE", "dark", (x0 + 1, y0 + 1, nx, ny))
    dm.meta.exposure.nframes = 1
    dm.meta.exposure.groupgap = 0
    refs["dark"] = str(tmp_path / "miri_dark.fits")
    dm.save(refs["dark"])
    gm = datamodels.GainModel(data=embed(gain, np.float32(5.5)))
    _ref_meta(gm, "MIRI", "MIRIMAGE", "gain", full)
    refs["gain"] = str(tmp_path / "miri_gain.fits")
    gm.save(refs["gain"])
    rm = datamodels.ReadnoiseModel(data=embed(rn_cds, np.float32(6.0)))
    _ref_meta(rm, "MIRI", "MIRIMAGE", "readnoise", full)
    refs["readnoise"] = str(tmp_path / "miri_readnoise.fits")
    rm.save(refs["readnoise"])
    if ipc_alpha > 0:
        a = ipc_alpha / (1 - 4 * ipc_alpha)
        im = datamodels.IPCModel(data=np.array([[0, -a, 0], [-a, 1 + 4 * a, -a], [0, -a, 0]],
                                               np.float32))
        _ref_meta(im, "MIRI", "MIRIMAGE", "ipc", full)
        refs["ipc"] = str(tmp_path / "miri_ipc.fits")
        im.save(refs["ipc"])
    if reset_rscd:
        rs = datamodels.ResetModel(data=reset_tab, err=np.zeros_like(reset_tab),
                                   dq=np.zeros((ny, nx), np.uint32))
        _ref_meta(rs, "MIRI", "MIRIMAGE", "reset", (x0 + 1, y0 + 1, nx, ny), readpatt="FASTR1")
        rs.meta.exposure.nints, rs.meta.exposure.ngroups = 2, 3
        refs["reset"] = str(tmp_path / "miri_reset.fits")
        rs.save(refs["reset"])
        rc = datamodels.RSCDModel()
        _ref_meta(rc, "MIRI", "MIRIMAGE", "rscd", full)
        rc.rscd_group_skip_table = np.array(
            [("FULL" if full_frame else "SUB64", "FASTR1", *rscd_skip),
             ("SUB128", "FASTR1", 3, 4)],
            dtype=[("subarray", "S17"), ("readpatt", "S12"), ("group_skip1", "<i4"),
                   ("group_skip", "<i4")])
        refs["rscd"] = str(tmp_path / "miri_rscd.fits")
        rc.save(refs["rscd"])
    return Sim(uncal=uncal, refs=refs, truth_rate=rate.astype(np.float64),
               jumps=[(0, 4, 30, 30)], saturating=saturating,
               refpix_mask=np.broadcast_to(refcols[None, :], (ny, nx)).copy(),
               info=dict(tgroup=tgroup, raw=raw))
