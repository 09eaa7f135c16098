"""Seeded, physically honest simulation of JWST raw ramps and of matching reference files.

Raw telescope pixels cannot be downloaded here, so test exposures pair real headers with
ramps made by this module. The model, per pixel and per frame (times from the reset):

* charge ``Q`` (electrons) accumulates from the scene (smooth sky + Gaussian stars), the
  dark current and cosmic-ray hits, each frame's increment drawn from a Poisson law;
* the linear signal ``S = Q / gain`` (DN) is made non-linear by inverting the polynomial
  ``S = s + a2 s^2 + a3 s^3`` (``s`` the recorded, non-linear signal), so the LINEARITY
  reference's coefficients applied to the recorded counts give back the linear counts;
* a group is the average of ``NFRAMES`` frames; ``GROUPGAP`` frames are dropped after it;
* the recorded value is ``superbias + s + amplifier drift + read noise`` (DN), where the
  read noise of one read is ``readnoise`` DN and averages down as ``1/sqrt(NFRAMES)``;
  reference pixels carry bias, drift and noise but no charge;
* the value is clipped at the pixel's saturation level (an integer DN) and at 65535 and
  stored as uint16.

Dead pixels collect no charge; hot pixels have a large dark current; both are flagged in
the MASK reference. MIRI has no superbias step in calwebb_detector1, so its linearity
coefficients are expressed on the raw counts (bias included), as the pipeline applies them.

This module is pure numpy (and stdatamodels for writing files); it never imports archive,
tasks or crds. Units: DN (data numbers), DN/s, electrons (e-), seconds.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numba
import numpy as np

NEAR_IR = ("NIRCAM", "NIRISS", "NIRSPEC", "FGS")
INSTRUMENTS = (*NEAR_IR, "MIRI")

# jwst DQ bits (stdatamodels.jwst.datamodels.dqflags.pixel)
DO_NOT_USE = 1
SATURATED = 2
JUMP_DET = 4
DEAD = 1024
HOT = 2048
NO_LIN_CORR = 1048576
REFERENCE_PIXEL = 2**31

# ------------------------------------------------------------------------------------------
# detector geometry

#: full-frame (ny, nx) per instrument and reference-pixel border widths
FULL_SHAPE = {"NIRCAM": (2048, 2048), "NIRISS": (2048, 2048), "NIRSPEC": (2048, 2048),
              "FGS": (2048, 2048), "MIRI": (1024, 1032)}
NREF_NIR = 4      # reference pixels on every side of a near-IR detector
NREF_MIRI = 4     # reference columns at each side of a MIRI detector
#: inter-pixel capacitance: fraction of a pixel's signal seen by each of its 4 neighbours
#: (near-IR H2RGs measure ~0.5-0.6 %); 0 means no IPC is simulated and no IPC reference
IPC_ALPHA = {"NIRCAM": 0.005, "NIRISS": 0.005, "NIRSPEC": 0.005, "FGS": 0.005, "MIRI": 0.0}
#: MIRI reset anomaly: integrations and groups with an offset (RESET reference NINTS/NGROUPS)
RESET_NINTS, RESET_NGROUPS = 2, 4
#: RSCD_GROUP_SKIP rows of the synthetic RSCD reference: (SUBARRAY, READPATT, GROUP_SKIP1,
#: GROUP_SKIP); the counts are illustrative (the real jwst_miri_rscd files are not shipped)
RSCD_GROUP_SKIP = tuple((sub, patt, 1, 3) for sub in ("FULL", "BRIGHTSKY", "SUB256", "SUB128",
                                                       "SUB64", "MASK1065", "MASK1140",
                                                       "MASK1550", "MASKLYOT", "SLITLESSPRISM")
                        for patt in ("FAST", "FASTR1", "SLOW", "SLOWR1"))

#: a detector of each instrument, for callers that name no detector
REPRESENTATIVE_DETECTOR = {"NIRCAM": "NRCA1", "NIRSPEC": "NRS1", "NIRISS": "NIS", "FGS": "GUIDER1",
                           "MIRI": "MIRIMAGE"}

#: instruments whose fast readout axis is DMS y (detector rotated in DMS orientation)
FAST_AXIS_Y = {"NIRSPEC", "NIRISS", "FGS"}


def subarray_geometry(instrument: str, name: str, detector: str | None = None, *,
                      apername: str | None = None, grating: str | None = None) -> tuple[int, int, int, int]:
    """Return (SUBSTRT1, SUBSTRT2, SUBSIZE1, SUBSIZE2) of a subarray on a detector (1-based, DMS).

    From pysiaf's SIAF and the PRD the jwst package ships, never a hand table:
    :func:`simulation.siaf.readout_window` (which also says where a window came from).
    ``detector`` defaults to :data:`REPRESENTATIVE_DETECTOR`; ``apername`` and ``grating``
    (the exposure's APERNAME and GRATING) place obsolete NIRCam names and NIRSpec subarrays.

    Raises
    ------
    ValueError
        If the instrument is unknown or neither the SIAF nor the PRD defines the subarray.
    """
    from simulation import siaf

    instrument = instrument.upper()
    if instrument not in INSTRUMENTS:
        raise ValueError(f"unknown instrument {instrument!r}; known: {sorted(INSTRUMENTS)}")
    det = (detector or REPRESENTATIVE_DETECTOR[instrument]).upper()
    return siaf.readout_window(instrument, det, name, apername=apername, grating=grating).geometry


# ------------------------------------------------------------------------------------------
# readout patterns and timing

DEFAULT_READPATT = {"NIRCAM": "RAPID", "NIRSPEC": "NRSRAPID", "NIRISS": "NISRAPID",
                    "FGS": "FGSRAPID", "MIRI": "FAST"}


@dataclass(frozen=True)
class Readout:
    """Timing of a readout: frames per group, dropped frames, frame and group time (s)."""

    readpatt: str
    nframes: int
    groupgap: int
    tframe: float
    tgroup: float
    noutputs: int


def readout(instrument: str, readpatt: str, subarray: str = "FULL", detector: str | None = None,
            geometry: tuple[int, int, int, int] | None = None) -> Readout:
    """Return NFRAMES, GROUPGAP, TFRAME (s), TGROUP (s) and NOUTPUTS of a readout.

    NFRAMES and GROUPGAP come from the PRD's Datamode table, TFRAME and NOUTPUTS from its
    SubarrayFrameTime table (:mod:`simulation.prd`, the PRD the jwst package ships). A
    near-IR window the PRD has no frame time for (an obsolete name placed by its SIAF
    aperture) is read through one output in the JDox frame-time formula
    ``(ncols + 12) x (nrows + 2) x 10 us`` (NIRCam "Detector Subarrays"), ``ncols`` along
    the fast axis (DMS x for NIRCam, DMS y for NIRSpec, NIRISS and FGS).

    Parameters
    ----------
    geometry : (SUBSTRT1, SUBSTRT2, SUBSIZE1, SUBSIZE2), optional
        The window, when already known (else from :func:`subarray_geometry`).

    Raises
    ------
    ValueError
        For an unknown instrument or readout pattern, or a MIRI readout the PRD does not
        define (MIRI reads SLOW in full frame only).
    """
    from simulation import prd

    instrument, readpatt = instrument.upper(), readpatt.upper()
    subarray = (subarray or "FULL").upper()
    if subarray in ("GENERIC", "N/A", "NULL", ""):
        subarray = "FULL"
    if instrument not in INSTRUMENTS:
        raise ValueError(f"unknown instrument {instrument!r}")
    nframes, groupgap = prd.datamode(instrument, readpatt)
    timed = prd.frame_time(instrument, subarray, readpatt)
    if timed is None and not subarray.startswith("SUB"):
        timed = prd.frame_time(instrument, "SUB" + subarray, readpatt)    # obsolete NIRSpec names
    if timed is not None:
        tframe, namps = timed
    elif instrument == "MIRI":
        raise ValueError(f"the PRD ({prd.prd_version()}) defines no MIRI {readpatt} readout of "
                         f"subarray {subarray}")
    else:
        _, _, xs, ys = geometry or subarray_geometry(instrument, subarray, detector)
        ncols, nrows = (ys, xs) if instrument in FAST_AXIS_Y else (xs, ys)
        tframe, namps = round((ncols + 12) * (nrows + 2) * 10e-6, 5), 1
    return Readout(readpatt, nframes, groupgap, tframe, (nframes + groupgap) * tframe, namps)


def group_times(ro: Readout, ngroups: int) -> np.ndarray:
    """Mean time (s since reset) of the frames averaged into each group, shape (ngroups,).

    Frame k (0-based) is read at ``(k + 1) * TFRAME``; group g averages frames
    ``g * (NFRAMES + GROUPGAP) + [0, NFRAMES)``.
    """
    g = np.arange(ngroups)
    return ro.tframe * (g * (ro.nframes + ro.groupgap) + (ro.nframes + 1) / 2.0)


# ------------------------------------------------------------------------------------------
# the detector

@dataclass
class Detector:
    """Full-frame properties of one simulated detector (arrays (ny, nx), DMS orientation).

    superbias : float32 DN, bias level of a zero-charge read.
    saturation : float32 DN (integers), raw level at which a pixel saturates (bias included).
    gain : float32 e-/DN.
    readnoise : float32 DN, noise of one read (one frame); the READNOISE reference file
        holds sqrt(2) times this (CDS noise, the JWST convention).
    dark_rate : float32 DN/s (0 on reference pixels; large on hot pixels).
    lin_a2, lin_a3 : float32, non-linearity: linear = s + a2 s^2 + a3 s^3 (s = recorded
        signal above bias, DN).
    dead, hot, refpix : bool masks.
    """

    instrument: str
    detector: str
    seed: int
    superbias: np.ndarray
    saturation: np.ndarray
    gain: np.ndarray
    readnoise: np.ndarray
    dark_rate: np.ndarray
    lin_a2: np.ndarray
    lin_a3: np.ndarray
    dead: np.ndarray
    hot: np.ndarray
    refpix: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        """Full-frame shape (ny, nx)."""
        return self.superbias.shape

    def amp_index(self) -> np.ndarray:
        """Return the amplifier (output) index of every column, shape (nx,) int.

        Near-IR: 512-column stripes (x // 512); MIRI: interleaved columns (x % 4).
        """
        nx = self.shape[1]
        x = np.arange(nx)
        if self.instrument == "MIRI":
            return x % 4
        return np.minimum(x // 512, 3)

    @property
    def ipc_alpha(self) -> float:
        """IPC coupling to each of the 4 nearest neighbours (:data:`IPC_ALPHA`)."""
        return IPC_ALPHA[self.instrument]

    def ipc_kernel(self) -> np.ndarray:
        """Return the IPC reference kernel, float32 (3, 3).

        The first-order inverse of the simulated coupling (centre 1 + 4a', neighbours -a',
        a' = alpha / (1 - 4 alpha)); the jwst ipc step convolves each group with it.
        Residual error O(alpha^2) (~3e-5).
        """
        a = self.ipc_alpha / (1.0 - 4.0 * self.ipc_alpha)
        return np.array([[0.0, -a, 0.0], [-a, 1.0 + 4.0 * a, -a], [0.0, -a, 0.0]], np.float32)

    def reset_anomaly(self) -> np.ndarray | None:
        """Return the MIRI reset anomaly, float32 (RESET_NINTS, RESET_NGROUPS, ny, nx) DN.

        It is added to the raw ramp (None for near-IR): a per-pixel amplitude of ~30 DN
        decaying as exp(-g / 1.2) over the first groups, 0.6 times as large after the first
        integration (integrations beyond RESET_NINTS repeat the last). Deterministic in
        (detector, seed).
        """
        if self.instrument != "MIRI":
            return None
        rng = np.random.default_rng(derive_seed("reset", self.instrument, self.detector, self.seed))
        amp = (30.0 * (1.0 + 0.2 * rng.standard_normal(self.shape))).astype(np.float32)
        decay = (np.exp(-np.arange(RESET_NGROUPS) / 1.2)[None, :]
                 * np.where(np.arange(RESET_NINTS) == 0, 1.0, 0.6)[:, None]).astype(np.float32)
        return decay[:, :, None, None] * amp[None, None]

    def dq(self) -> np.ndarray:
        """MASK DQ (uint32): DEAD|DO_NOT_USE, HOT, REFERENCE_PIXEL.

        Reference pixels are not DO_NOT_USE in the mask (as in real NIRCam masks): the jwst
        refpix step ignores reference pixels flagged DO_NOT_USE in subarrays.
        """
        dq = np.zeros(self.shape, np.uint32)
        dq[self.dead] |= DEAD | DO_NOT_USE
        dq[self.hot] |= HOT
        dq[self.refpix] |= np.uint32(REFERENCE_PIXEL)
        return dq

    def linearity_coeffs(self) -> np.ndarray:
        """Return the LINEARITY coefficients, float32 (4, ny, nx).

        linear = sum_k c_k x^k where x is the count the jwst linearity step sees: signal
        above bias for near-IR (after superbias and refpix), the raw count with bias for
        MIRI (re-expanded around the superbias).
        """
        if self.instrument != "MIRI":
            c = np.empty((4, *self.shape), np.float32)
            c[0] = 0.0
            c[1] = 1.0
            c[2] = self.lin_a2
            c[3] = self.lin_a3
            c[:, self.refpix] = 0.0
            c[1, self.refpix] = 1.0
            return c
        # MIRI: x = s + b and linear_total = b + P(x - b), expanded in powers of x
        a2 = self.lin_a2.astype(np.float64)
        a3 = self.lin_a3.astype(np.float64)
        b = self.superbias.astype(np.float64)
        c = np.stack([a2 * b**2 - a3 * b**3,
                      1.0 - 2 * a2 * b + 3 * a3 * b**2,
                      a2 - 3 * a3 * b,
                      a3])
        c[:, self.refpix] = 0.0
        c[1, self.refpix] = 1.0
        return c.astype(np.float32)


def derive_seed(*parts) -> int:
    """Return a 64-bit seed derived from any values (stable across runs and platforms)."""
    h = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "little")


def make_detector(instrument: str, detector: str, seed: int = 0) -> Detector:
    """Build a detector's full-frame properties, deterministic in (instrument, detector, seed).

    Typical values: superbias 12-18 kDN with column/row structure and per-pixel scatter,
    saturation 60-65 kDN (integers), gain 2.0 e-/DN near-IR / 5.5 e-/DN MIRI, read noise
    ~6-8 DN (near-IR) / ~14 DN (MIRI) per read, dark 0.002-0.01 DN/s with 0.1% hot pixels
    (0.5-5 DN/s) and 0.05% dead pixels, non-linearity ~5% at 45 kDN.

    Raises
    ------
    ValueError
        For an unknown instrument.
    """
    instrument, detector = instrument.upper(), detector.upper()
    if instrument not in FULL_SHAPE:
        raise ValueError(f"unknown instrument {instrument!r}; known: {sorted(FULL_SHAPE)}")
    rng = np.random.default_rng(derive_seed("detector", instrument, detector, seed))
    ny, nx = FULL_SHAPE[instrument]
    f32 = np.float32
    refpix = np.zeros((ny, nx), bool)
    if instrument == "MIRI":
        refpix[:, :NREF_MIRI] = True
        refpix[:, -NREF_MIRI:] = True
        gain0, rn0, dark0 = 5.5, 14.0, 0.02
    else:
        refpix[:NREF_NIR, :] = refpix[-NREF_NIR:, :] = True
        refpix[:, :NREF_NIR] = refpix[:, -NREF_NIR:] = True
        gain0, rn0, dark0 = 2.0, 7.0, 0.005
    base = rng.uniform(12000.0, 16000.0)
    col = rng.normal(0.0, 300.0, nx).astype(f32)
    row = (np.linspace(-400.0, 400.0, ny) + rng.normal(0.0, 50.0, ny)).astype(f32)
    superbias = (base + col[None, :] + row[:, None]
                 + rng.normal(0.0, 150.0, (ny, nx)).astype(f32)).astype(f32)
    saturation = np.round(rng.normal(62500.0, 800.0, (ny, nx))).clip(60000, 65000).astype(f32)
    gain = (gain0 * (1.0 + rng.normal(0.0, 0.02, (ny, nx)))).astype(f32)
    readnoise = (rn0 * (1.0 + rng.normal(0.0, 0.1, (ny, nx)))).clip(0.5 * rn0).astype(f32)
    dark_rate = (dark0 * rng.lognormal(0.0, 0.3, (ny, nx))).astype(f32)
    u = rng.random((ny, nx))
    hot = (u < 0.001) & ~refpix
    dead = (u > 0.9995) & ~refpix
    dark_rate[hot] = rng.uniform(0.5, 5.0, int(hot.sum())).astype(f32)
    dark_rate[refpix] = 0.0
    lin_a2 = (1.2e-6 * (1.0 + rng.normal(0.0, 0.05, (ny, nx)))).astype(f32)
    lin_a3 = (4.0e-12 * (1.0 + rng.normal(0.0, 0.05, (ny, nx)))).astype(f32)
    return Detector(instrument, detector, seed, superbias, saturation, gain, readnoise,
                    dark_rate, lin_a2, lin_a3, dead, hot, refpix)


def nonlinear(linear: np.ndarray, a2: np.ndarray, a3: np.ndarray, iterations: int = 3) -> np.ndarray:
    """Return the recorded (non-linear) signal s of a linear signal L (DN): L = s + a2 s^2 + a3 s^3.

    Starts from the series inverse ``s = L - a2 L^2`` and refines with Newton iterations
    (quadratic convergence: 3 iterations reach float64 round-off for a few-% non-linearity).
    Negative L is returned unchanged. float64 (same shape as L).
    """
    L = np.asarray(linear, np.float64)
    a2 = np.asarray(a2, np.float64)
    a3 = np.asarray(a3, np.float64)
    pos = L > 0
    Lp = np.where(pos, L, 0.0)
    s = Lp - a2 * Lp * Lp
    for _ in range(iterations):
        s2 = s * s
        f = s + a2 * s2 + a3 * s2 * s - Lp
        fp = 1.0 + 2.0 * a2 * s + 3.0 * a3 * s2
        s -= f / fp
    return np.where(pos, s, L)


def apply_linearity(counts: np.ndarray, coeffs: np.ndarray) -> np.ndarray:
    """Evaluate sum_k coeffs[k] * counts**k (Horner), float64; coeffs (ncoeffs, ny, nx)."""
    x = np.asarray(counts, np.float64)
    out = np.zeros_like(x)
    for c in coeffs[::-1]:
        out = out * x + c
    return out


def _couple(q: np.ndarray, alpha: float, refpix: np.ndarray) -> np.ndarray:
    """Return the charge q (ny, nx) as seen through IPC.

    (1 - 4 alpha) q + alpha x (sum of the 4 nearest neighbours inside the window);
    reference pixels (no photodiode) stay 0.
    """
    out = (1.0 - 4.0 * alpha) * q
    out[1:, :] += alpha * q[:-1, :]
    out[:-1, :] += alpha * q[1:, :]
    out[:, 1:] += alpha * q[:, :-1]
    out[:, :-1] += alpha * q[:, 1:]
    out[refpix] = 0.0
    return out


@numba.njit(cache=True, parallel=True)
def _finish_group(avg_q, gain, a2, a3, bias, offset_col, noise, sat, out, saturated):  # pragma: no cover - jit
    """One group: electrons -> linear DN -> non-linear DN -> + bias, offsets, noise -> clip.

    avg_q, gain, bias, noise, sat: float64/float32 (ny, nx); offset_col (nx,); out uint16,
    saturated bool (ny, nx) written in place. Same arithmetic as :func:`nonlinear`.
    """
    ny, nx = avg_q.shape
    for y in numba.prange(ny):
        for x in range(nx):
            L = avg_q[y, x] / gain[y, x]
            if L > 0.0:
                b2 = np.float64(a2[y, x])
                b3 = np.float64(a3[y, x])
                s = L - b2 * L * L
                for _ in range(3):
                    s2 = s * s
                    s -= (s + b2 * s2 + b3 * s2 * s - L) / (1.0 + 2.0 * b2 * s + 3.0 * b3 * s2)
            else:
                s = L
            raw = bias[y, x] + s + offset_col[x] + noise[y, x]
            st = sat[y, x]
            if raw >= st:
                raw = st
                saturated[y, x] = True
            if raw >= 65535.0:
                raw = 65535.0
                saturated[y, x] = True
            if raw < 0.0:
                raw = 0.0
            out[y, x] = np.uint16(np.rint(raw))


# ------------------------------------------------------------------------------------------
# the scene

@dataclass
class Scene:
    """Sky and stars in DN/s (linear), positions in full-frame 0-based pixels (x, y)."""

    sky: float = 0.3
    sky_gradient: float = 0.1          # DN/s across the detector
    stars: list[tuple[float, float, float, float]] = field(default_factory=list)  # x, y, peak DN/s, sigma px

    def rate(self, x0: int, y0: int, nx: int, ny: int, full_shape: tuple[int, int]) -> np.ndarray:
        """Rate (float64 DN/s, (ny, nx)) of the window starting at 0-based (x0, y0)."""
        fy, fx = full_shape
        y = np.arange(y0, y0 + ny, dtype=np.float64)[:, None]
        x = np.arange(x0, x0 + nx, dtype=np.float64)[None, :]
        r = self.sky + self.sky_gradient * (0.5 * x / fx + 0.5 * y / fy)
        r = np.broadcast_to(r, (ny, nx)).copy()
        for sx, sy, peak, sig in self.stars:
            xs = slice(max(int(sx - 6 * sig), x0), min(int(sx + 6 * sig) + 1, x0 + nx))
            ys = slice(max(int(sy - 6 * sig), y0), min(int(sy + 6 * sig) + 1, y0 + ny))
            if xs.start >= xs.stop or ys.start >= ys.stop:
                continue
            xx = np.arange(xs.start, xs.stop)[None, :]
            yy = np.arange(ys.start, ys.stop)[:, None]
            r[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0] += peak * np.exp(
                -0.5 * ((xx - sx) ** 2 + (yy - sy) ** 2) / sig**2)
        return r


def random_scene(rng: np.random.Generator, x0: int, y0: int, nx: int, ny: int, nstars: int = 8,
                 bright_peak: float = 20000.0) -> Scene:
    """Make a smooth sky plus ``nstars`` Gaussian stars inside the window (peaks 5-2000 DN/s).

    One of them is bright (``bright_peak`` DN/s) so that long ramps saturate.
    """
    stars = []
    for i in range(nstars):
        sx = rng.uniform(x0 + 2, x0 + nx - 2)
        sy = rng.uniform(y0 + 2, y0 + ny - 2)
        peak = bright_peak if i == 0 else float(np.exp(rng.uniform(np.log(5.0), np.log(2000.0))))
        stars.append((sx, sy, peak, float(rng.uniform(1.0, 2.5))))
    return Scene(sky=float(rng.uniform(0.2, 1.0)), sky_gradient=0.1, stars=stars)


# ------------------------------------------------------------------------------------------
# the ramp

@dataclass
class ExposureSpec:
    """What to simulate: instrument/detector/subarray and the readout."""

    instrument: str
    detector: str
    subarray: str = "FULL"
    readpatt: str = ""
    ngroups: int = 5
    nints: int = 1
    #: (SUBSTRT1, SUBSTRT2, SUBSIZE1, SUBSIZE2) of a real header, in place of the SIAF/PRD's
    geometry_override: tuple[int, int, int, int] | None = None
    #: the readout timing of a real header, in place of :func:`readout`'s PRD values
    readout_override: "Readout | None" = None

    def __post_init__(self):
        """Normalise the names (upper case, defaults) and check the values."""
        self.instrument = self.instrument.upper()
        self.detector = self.detector.upper()
        self.subarray = (self.subarray or "FULL").upper()
        self.readpatt = (self.readpatt or DEFAULT_READPATT[self.instrument]).upper()
        if self.ngroups < 1 or self.nints < 1:
            raise ValueError(f"ngroups and nints must be >= 1 (got {self.ngroups}, {self.nints})")
        if self.readpatt in ("NRSIRS2", "NRSIRS2RAPID"):
            raise ValueError("IRS2 readouts (interleaved reference pixels, 3200 rows) are not simulated")

    def geometry(self) -> tuple[int, int, int, int]:
        """Return the subarray's (SUBSTRT1, SUBSTRT2, SUBSIZE1, SUBSIZE2) on this detector."""
        if self.geometry_override is not None:
            return self.geometry_override
        return subarray_geometry(self.instrument, self.subarray, self.detector)

    def readout(self) -> Readout:
        """Return the readout timing of this exposure's pattern and subarray."""
        if self.readout_override is not None:
            return self.readout_override
        return readout(self.instrument, self.readpatt, self.subarray, self.detector, self.geometry())


@dataclass
class Truth:
    """What the ramp was made of (window of the exposure, DMS orientation).

    rate : float32 (ny, nx) DN/s, linear source+sky rate (0 on dead and reference pixels).
    dark_rate : float32 (ny, nx) DN/s.
    cosmic_rays : int32 (n, 4) rows (integration, first affected group, y, x);
    cr_charge : float32 (n,) electrons of each hit.
    saturated : bool (nints, ngroups, ny, nx), groups clipped at the saturation level.
    """

    rate: np.ndarray
    dark_rate: np.ndarray
    cosmic_rays: np.ndarray
    cr_charge: np.ndarray
    saturated: np.ndarray

    def save(self, path: str | Path) -> Path:
        """Write a compressed .npz with the fields above."""
        path = Path(path)
        np.savez_compressed(path, rate=self.rate, dark_rate=self.dark_rate,
                            cosmic_rays=self.cosmic_rays, cr_charge=self.cr_charge,
                            saturated=self.saturated)
        return path


def window(det: Detector, spec: ExposureSpec) -> tuple[slice, slice]:
    """(rows, cols) slices of the exposure's window in the detector's full frame."""
    x1, y1, xs, ys = spec.geometry()
    ny, nx = det.shape
    if x1 - 1 + xs > nx or y1 - 1 + ys > ny:
        raise ValueError(f"subarray {spec.subarray} does not fit the {det.instrument} full frame")
    return slice(y1 - 1, y1 - 1 + ys), slice(x1 - 1, x1 - 1 + xs)


def _add_cosmic_rays(q: np.ndarray, hits: tuple[np.ndarray, ...], f_lo: int, f_hi: int) -> None:
    """Add to ``q`` (electrons, in place) the charge of the hits in frames ``f_lo <= frame < f_hi``.

    ``hits`` is (frame, y, x, charge in electrons), one element per cosmic ray.
    """
    frame, y, x, charge = hits
    m = (frame >= f_lo) & (frame < f_hi)
    np.add.at(q, (y[m], x[m]), charge[m])


def simulate_ramp(det: Detector, spec: ExposureSpec, seed: int = 0, scene: Scene | None = None,
                  cr_rate: float = 5e-5, noise: bool = True) -> tuple[np.ndarray, Truth]:
    """Simulate the raw ramp of one exposure.

    Parameters
    ----------
    det : the detector (full-frame properties).
    spec : instrument/detector/subarray/readout/ngroups/nints.
    seed : seed of everything random in the exposure (scene when not given, Poisson and
        read noise, drifts, cosmic rays); same seed -> identical ramp.
    scene : DN/s scene; default :func:`random_scene` from the seed.
    cr_rate : cosmic-ray hits per pixel per second (JWST: ~5 /cm^2/s, 1.6e-5 per 18 um
        pixel; default a bit higher so short tests see some).
    noise : False gives a noiseless ramp (no Poisson, read noise, drift or cosmic rays):
        useful to test linearity and timing.

    Returns
    -------
    ramp : uint16 (nints, ngroups, ny, nx), DN.
    truth : :class:`Truth`.
    """
    rng = np.random.default_rng(derive_seed("exposure", spec.instrument, spec.detector, seed))
    ro = spec.readout()
    rows, cols = window(det, spec)
    ny, nx = rows.stop - rows.start, cols.stop - cols.start
    if scene is None:
        scene = random_scene(rng, cols.start, rows.start, nx, ny)
    refpix = det.refpix[rows, cols]
    dead = det.dead[rows, cols]
    rate = scene.rate(cols.start, rows.start, nx, ny, det.shape)
    rate[refpix | dead] = 0.0
    dark = det.dark_rate[rows, cols].astype(np.float64)
    dark[dead] = 0.0
    gain = np.ascontiguousarray(det.gain[rows, cols])
    bias = np.ascontiguousarray(det.superbias[rows, cols])
    sat = np.ascontiguousarray(det.saturation[rows, cols])
    rn_group = (det.readnoise[rows, cols] / np.float32(np.sqrt(ro.nframes))).astype(np.float32)
    a2 = np.ascontiguousarray(det.lin_a2[rows, cols])
    a3 = np.ascontiguousarray(det.lin_a3[rows, cols])
    amp = det.amp_index()[cols]
    alpha = det.ipc_alpha
    reset = det.reset_anomaly()
    if reset is not None:
        reset = np.ascontiguousarray(reset[:, :, rows, cols])
    e_per_frame = (rate + dark) * gain.astype(np.float64) * ro.tframe       # electrons per frame (mean)
    nfr, ngap = ro.nframes, ro.groupgap
    frames_per_int = spec.ngroups * (nfr + ngap) - ngap    # frames up to the last group read

    # cosmic rays: Poisson number over the window and integration time, uniform frame
    n_expected = cr_rate * ny * nx * frames_per_int * ro.tframe * spec.nints
    ncr = int(rng.poisson(n_expected)) if noise else 0
    cr_int = rng.integers(0, spec.nints, ncr)
    cr_frame = rng.integers(0, frames_per_int, ncr)
    cr_y = rng.integers(0, ny, ncr)
    cr_x = rng.integers(0, nx, ncr)
    cr_q = np.exp(rng.uniform(np.log(200.0), np.log(2.0e4), ncr))   # electrons, log-uniform
    onpix = ~(refpix[cr_y, cr_x] | dead[cr_y, cr_x])
    cr_int, cr_frame, cr_y, cr_x, cr_q = (a[onpix] for a in (cr_int, cr_frame, cr_y, cr_x, cr_q))

    ramp = np.empty((spec.nints, spec.ngroups, ny, nx), np.uint16)
    saturated = np.zeros(ramp.shape, bool)
    for i in range(spec.nints):
        q = np.zeros((ny, nx), np.float64)               # accumulated electrons
        sel = cr_int == i
        hits = (cr_frame[sel], cr_y[sel], cr_x[sel], cr_q[sel])   # this integration's cosmic rays
        drift0 = rng.normal(0.0, 20.0, 4) if noise else np.zeros(4)
        for g in range(spec.ngroups):
            f0 = g * (nfr + ngap)
            acc = np.zeros((ny, nx), np.float64)
            for j in range(nfr):
                q += rng.poisson(e_per_frame) if noise else e_per_frame
                if noise:
                    _add_cosmic_rays(q, hits, f0 + j, f0 + j + 1)
                acc += q
            avg_q = acc / nfr
            if alpha > 0.0:          # IPC: the voltage of each pixel sees its neighbours' charge
                avg_q = _couple(avg_q, alpha, refpix)
            if ngap and g < spec.ngroups - 1:
                q += rng.poisson(e_per_frame * ngap) if noise else e_per_frame * ngap
                if noise:
                    _add_cosmic_rays(q, hits, f0 + nfr, f0 + nfr + ngap)
            if noise:
                drift = drift0 + rng.normal(0.0, 3.0, 4)     # per-amplifier offset, DN
                offset_col = drift[amp].astype(np.float64)
                read = rng.standard_normal((ny, nx), dtype=np.float32) * rn_group
            else:
                offset_col = np.zeros(nx)
                read = np.zeros((ny, nx), np.float32)
            if reset is not None and g < reset.shape[1]:      # MIRI reset anomaly, DN
                read = read + reset[min(i, reset.shape[0] - 1), g]
            _finish_group(avg_q, gain, a2, a3, bias, offset_col, read, sat, ramp[i, g], saturated[i, g])
    # first group affected by each cosmic ray: the group whose frames include or follow it
    cr_group = np.minimum(cr_frame // (nfr + ngap) + ((cr_frame % (nfr + ngap)) >= nfr), spec.ngroups - 1)
    truth = Truth(rate=rate.astype(np.float32), dark_rate=dark.astype(np.float32),
                  cosmic_rays=np.stack([cr_int, cr_group, cr_y, cr_x], axis=1).astype(np.int32)
                  if len(cr_int) else np.zeros((0, 4), np.int32),
                  cr_charge=cr_q.astype(np.float32), saturated=saturated)
    return ramp, truth


# ------------------------------------------------------------------------------------------
# files: reference files and uncal

USEAFTER = "2000-01-01T00:00:00"
AUTHOR = "simulation.ramps"


def _ref_meta(model, det: Detector, reftype: str, description: str, subarray: str = "GENERIC",
              geometry: tuple[int, int, int, int] | None = None) -> None:
    model.meta.instrument.name = det.instrument
    model.meta.instrument.detector = det.detector
    model.meta.reftype = reftype.upper()
    model.meta.useafter = USEAFTER
    model.meta.author = AUTHOR
    model.meta.pedigree = "DUMMY"
    model.meta.description = description
    model.meta.telescope = "JWST"
    if reftype.lower() in ("rscd", "ipc"):   # models without subarray keywords
        return
    x1, y1, xs, ys = geometry or (1, 1, det.shape[1], det.shape[0])
    model.meta.subarray.name = subarray
    model.meta.subarray.xstart = x1
    model.meta.subarray.ystart = y1
    model.meta.subarray.xsize = xs
    model.meta.subarray.ysize = ys
    model.meta.subarray.fastaxis = 1
    model.meta.subarray.slowaxis = 2


def _dq_def():
    return np.array([(0, 1, "DO_NOT_USE", "Bad pixel"), (1, 2, "SATURATED", ""),
                     (10, 1024, "DEAD", "Dead pixel"), (11, 2048, "HOT", "Hot pixel"),
                     (31, 2**31, "REFERENCE_PIXEL", "Reference pixel")],
                    dtype=[("BIT", "<i4"), ("VALUE", "<u4"), ("NAME", "S40"), ("DESCRIPTION", "S80")])


def write_references(det: Detector, out_dir: str | Path, names: dict[str, str]) -> dict[str, Path]:
    """Write the full-frame reference files of a detector (GENERIC subarray).

    ``names`` maps reftype ('mask', 'saturation', 'superbias', 'linearity', 'gain',
    'readnoise', 'ipc', and for MIRI 'rscd') to a file name; only those reftypes are written. MIRI
    gets no superbias (calwebb_detector1 has no superbias step for MIRI); a 'superbias'
    entry is ignored, as are 'rscd' for near-IR detectors and 'ipc' for detectors without
    simulated IPC (:data:`IPC_ALPHA` 0). RESET references are per
    subarray and readout pattern, like darks: :func:`write_reset`.

    Arrays: MASK dq uint32; SATURATION data float32 DN; SUPERBIAS data/err float32 DN;
    LINEARITY coeffs float32 (4, ny, nx); GAIN float32 e-/DN; READNOISE float32 DN, the
    correlated-double-sampling noise ``sqrt(2) * Detector.readnoise`` (JWST convention).
    RSCD (RSCDModel): the RSCD_GROUP_SKIP table :data:`RSCD_GROUP_SKIP`. IPC (IPCModel):
    SCI float32 (3, 3) kernel :meth:`Detector.ipc_kernel`.

    Returns reftype -> written path.
    """
    from stdatamodels.jwst import datamodels as dm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    dq = det.dq()
    zero_dq = np.zeros(det.shape, np.uint32)
    for reftype, name in names.items():
        reftype = reftype.lower()
        if reftype == "superbias" and det.instrument == "MIRI":
            continue
        if (reftype == "rscd" and det.instrument != "MIRI") or (reftype == "ipc"
                                                               and det.ipc_alpha == 0.0):
            continue
        if reftype == "mask":
            m = dm.MaskModel(dq=dq, dq_def=_dq_def())
        elif reftype == "saturation":
            m = dm.SaturationModel(data=det.saturation, dq=zero_dq, dq_def=_dq_def())
        elif reftype == "superbias":
            m = dm.SuperBiasModel(data=det.superbias, err=np.full(det.shape, 1.0, np.float32),
                                  dq=zero_dq, dq_def=_dq_def())
        elif reftype == "linearity":
            m = dm.LinearityModel(coeffs=det.linearity_coeffs(), dq=zero_dq, dq_def=_dq_def())
        elif reftype == "gain":
            m = dm.GainModel(data=det.gain)
        elif reftype == "readnoise":
            # JWST READNOISE references hold the CDS noise (of a difference of two reads):
            # stcal's ramp_fit uses readnoise / sqrt(2 * nframes) as the group read noise
            m = dm.ReadnoiseModel(data=(det.readnoise * np.float32(np.sqrt(2.0))).astype(np.float32))
        elif reftype == "ipc":
            m = dm.IPCModel(data=det.ipc_kernel())
        elif reftype == "rscd":
            m = dm.RSCDModel()
            m.rscd_group_skip_table = np.array(
                list(RSCD_GROUP_SKIP), dtype=[("subarray", "S17"), ("readpatt", "S12"),
                                        ("group_skip1", "<i4"), ("group_skip", "<i4")])
        else:
            raise ValueError(f"write_references: unsupported reftype {reftype!r}")
        _ref_meta(m, det, reftype, f"Simulated {reftype} for {det.detector} (seed {det.seed})")
        if reftype == "mask" and det.instrument != "MIRI":
            pass
        path = out_dir / name
        m.save(path, overwrite=True)
        m.close()
        written[reftype] = path
    return written


def dark_frames(det: Detector, spec: ExposureSpec, ngroups: int) -> np.ndarray:
    """Return the dark reference cube, float32 (ngroups, ny, nx) DN.

    dark_rate x mean group time, at the exposure's NFRAMES/GROUPGAP (as the jwst
    dark_current step expects when they match).
    """
    rows, cols = window(det, spec)
    t = group_times(spec.readout(), ngroups).astype(np.float32)
    return t[:, None, None] * det.dark_rate[rows, cols][None, :, :]


def write_dark(det: Detector, spec: ExposureSpec, ngroups: int, path: str | Path) -> Path:
    """Write a DARK reference for the exposure's subarray and readout pattern.

    Near-IR: DarkModel, SCI float32 (ngroups, ny, nx) DN (see :func:`dark_frames`), DQ
    uint32 (ny, nx). MIRI: DarkMIRIModel, SCI/DQ/ERR (1, ngroups, ny, nx). Meta
    exposure.readpatt/nframes/groupgap/ngroups and the subarray of ``spec``.
    """
    from stdatamodels.jwst import datamodels as dm

    ro = spec.readout()
    rows, cols = window(det, spec)
    data = dark_frames(det, spec, ngroups)
    dq = np.zeros(data.shape[1:], np.uint32)
    dq[det.hot[rows, cols]] |= HOT
    if det.instrument == "MIRI":     # MIRI darks are per integration: (nints, ngroups, ny, nx)
        m = dm.DarkMIRIModel(data=data[None], dq=np.broadcast_to(dq, data.shape)[None].copy(),
                             err=np.zeros((1, *data.shape), np.float32), dq_def=_dq_def())
    else:
        m = dm.DarkModel(data=data, dq=dq, dq_def=_dq_def())
    _ref_meta(m, det, "dark", f"Simulated dark for {det.detector} {spec.subarray} {ro.readpatt}",
              subarray=spec.subarray, geometry=spec.geometry())
    m.meta.exposure.readpatt = ro.readpatt
    m.meta.exposure.nframes = ro.nframes
    m.meta.exposure.groupgap = ro.groupgap
    m.meta.exposure.ngroups = ngroups
    m.meta.exposure.nints = 1
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    m.save(path, overwrite=True)
    m.close()
    return path


def write_deep_dark(det: Detector, path: str | Path, nframes: int = 200, seed: int = 0) -> Path:
    """Write a deep full-frame near-IR DARK reference, one frame per group, as CRDS darks are.

    Real NIRCam darks hold hundreds of RAPID frames (several GB); exposures with another
    readout (MEDIUM8: 8 frames averaged per group, 2 dropped) are matched to them by the
    dark_current step. DarkModel: SCI float32 (nframes, 2048, 2048) DN, frame f =
    ``dark_rate * (f + 1) * TFRAME`` plus 3 DN of Gaussian noise and a few NaN pixels
    (every 17th frame), so averaging and NaN handling are exercised; DQ uint32 (2048, 2048)
    with the detector's HOT pixels; READPATT RAPID, NFRAMES 1, GROUPGAP 0, NGROUPS
    ``nframes``; subarray FULL. Written frame by frame (astropy ``StreamingHDU``): memory
    stays at a few frames whatever ``nframes`` is (200 frames: 3.4 GB on disk).

    Raises
    ------
    ValueError
        For a MIRI detector (MIRI darks are per integration: :func:`write_dark`).
    """
    from astropy.io import fits
    from stdatamodels.jwst import datamodels as dm

    if det.instrument == "MIRI":
        raise ValueError("write_deep_dark: near-IR detectors only (MIRI darks: write_dark)")
    ny, nx = det.shape
    spec = ExposureSpec(det.instrument, det.detector, "FULL", "RAPID", ngroups=nframes)
    tframe = spec.readout().tframe
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    head = path.with_name(path.name + ".head.fits")
    part = path.with_name(path.name + ".part")
    # the headers and small extensions as stdatamodels writes them, with a one-frame SCI
    m = dm.DarkModel(data=np.zeros((1, ny, nx), np.float32), dq=np.zeros((ny, nx), np.uint32),
                     dq_def=_dq_def())
    _ref_meta(m, det, "dark", f"Simulated deep dark for {det.detector} FULL RAPID ({nframes} frames)",
              subarray="FULL", geometry=spec.geometry())
    m.meta.exposure.readpatt = "RAPID"
    m.meta.exposure.nframes, m.meta.exposure.groupgap = 1, 0
    m.meta.exposure.ngroups, m.meta.exposure.nints = nframes, 1
    m.save(head, overwrite=True)
    m.close()
    try:
        with fits.open(head) as hl:
            primary = hl[0].header.copy()
            sci_header = hl["SCI"].header.copy()
            rest = [h.copy() for h in hl[2:] if h.name not in ("ASDF", "ERR")]
        fits.PrimaryHDU(header=primary).writeto(str(part), overwrite=True)
        sci_header["NAXIS3"] = nframes
        stream = fits.StreamingHDU(str(part), sci_header)
        rng = np.random.default_rng(seed)
        rate = det.dark_rate.astype(np.float32)
        for f in range(nframes):
            frame = (rate * np.float32((f + 1) * tframe)
                     + rng.standard_normal((ny, nx), dtype=np.float32) * np.float32(3))
            if f % 17 == 3:
                frame[rng.integers(0, ny, 50), rng.integers(0, nx, 50)] = np.nan
            stream.write(frame.astype(">f4"))
        stream.close()
        dq = np.zeros((ny, nx), np.uint32)
        dq[det.hot] |= HOT
        with fits.open(str(part), mode="append") as hl:
            for h in rest:
                if h.name == "DQ":
                    h.data = dq
                hl.append(h)
        part.replace(path)
    finally:
        head.unlink(missing_ok=True)
        part.unlink(missing_ok=True)
    return path


def write_reset(det: Detector, spec: ExposureSpec, path: str | Path) -> Path:
    """Write a MIRI RESET reference for the exposure's subarray and readout pattern.

    ResetModel: SCI/ERR float32 (RESET_NINTS, RESET_NGROUPS, ny, nx) DN, the anomaly
    :meth:`Detector.reset_anomaly` adds to simulated ramps, cut to the subarray (jwst's reset
    step subtracts the reference without cutting it, so RESET files are per subarray);
    DQ uint32 (ny, nx) zero; NINTS/NGROUPS/READPATT keywords.
    Raises ValueError for a near-IR detector.
    """
    from stdatamodels.jwst import datamodels as dm

    table = det.reset_anomaly()
    if table is None:
        raise ValueError(f"write_reset: {det.instrument} has no reset anomaly (MIRI only)")
    rows, cols = window(det, spec)
    table = np.ascontiguousarray(table[:, :, rows, cols])
    ro = spec.readout()
    m = dm.ResetModel(data=table, err=np.zeros_like(table),
                      dq=np.zeros(table.shape[-2:], np.uint32), dq_def=_dq_def())
    _ref_meta(m, det, "reset", f"Simulated reset anomaly for {det.detector} {spec.subarray} "
              f"{ro.readpatt}", subarray=spec.subarray, geometry=spec.geometry())
    m.meta.exposure.readpatt = ro.readpatt
    m.meta.exposure.nints, m.meta.exposure.ngroups = table.shape[:2]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    m.save(path, overwrite=True)
    m.close()
    return path


def write_uncal(path: str | Path, ramp: np.ndarray, keywords: dict, template: str | Path | None = None,
                group_time0_mjd: float | None = None, removed: list[str] | tuple = (),
                tables: bool = True) -> Path:
    """Write a raw exposure as a Level1bModel ``_uncal.fits``.

    Parameters
    ----------
    path : output file.
    ramp : uint16 (nints, ngroups, ny, nx) DN.
    keywords : FITS keyword -> value for the primary header (e.g. DETECTOR, SUBARRAY,
        NGROUPS, TFRAME, DATE-OBS...); each is set through its datamodel path.
    template : a real uncal file whose primary-header values fill in everything else.
    group_time0_mjd : EXPSTART (MJD) for the GROUP and INT_TIMES tables (default from
        keywords['EXPSTART']).
    removed : FITS keywords of the template to drop (e.g. NIRCam-only keywords when a
        NIRCam template is adapted to another instrument).
    tables : write the GROUP and INT_TIMES tables (real FGS guiding files have neither).

    Raises
    ------
    KeyError
        If a keyword has no datamodel path in the Level1bModel schema.
    """
    from stdatamodels.jwst import datamodels as dm

    ramp = np.asarray(ramp)
    if ramp.dtype != np.uint16 or ramp.ndim != 4:
        raise ValueError(f"ramp must be uint16 (nints, ngroups, ny, nx); got {ramp.dtype} {ramp.shape}")
    model = dm.Level1bModel(data=ramp)
    if template is not None:
        with dm.Level1bModel(str(template)) as tmpl:
            model.update(tmpl, only="PRIMARY")
    for kw, value in keywords.items():
        paths = model.find_fits_keyword(kw)
        if not paths:
            raise KeyError(f"{kw}: no Level1bModel path for this FITS keyword")
        # V2_REF, ROLL_REF, ... also name FGS guide-star keywords: the science WCS ones win
        wcs = [p for p in paths if p.startswith("meta.wcsinfo.")]
        for p in wcs or paths:
            if p.startswith("meta."):
                model[p] = value
    for kw in removed:
        for p in model.find_fits_keyword(kw):
            if p.startswith("meta."):
                model[p] = None
    nints, ngroups = ramp.shape[:2]
    tgroup = float(keywords.get("TGROUP", model.meta.exposure.group_time or 1.0))
    tframe = float(keywords.get("TFRAME", model.meta.exposure.frame_time or tgroup))
    nframes = int(keywords.get("NFRAMES", model.meta.exposure.nframes or 1))
    t0 = group_time0_mjd
    if t0 is None:
        t0 = float(keywords.get("EXPSTART", model.meta.exposure.start_time or 60000.0))
    # GROUP table (one row per integration and group, end time of the group's last frame)
    # and INT_TIMES (MJD UTC; the BJD columns repeat UTC: no barycentric correction here)
    from astropy.time import Time

    group_dtype = [("integration_number", "<i4"), ("group_number", "<i2"), ("end_day", "<i2"),
                   ("end_milliseconds", "<i4"), ("end_submilliseconds", "<i2"),
                   ("group_end_time", "S26"), ("number_of_columns", "<i2"),
                   ("number_of_rows", "<i2"), ("number_of_gaps", "<i2"),
                   ("completion_code_number", "<i2"), ("completion_code_text", "S36"),
                   ("bary_end_time", "<f8"), ("helio_end_time", "<f8")]
    int_dtype = [("integration_number", "<i4"), ("int_start_MJD_UTC", "<f8"),
                 ("int_mid_MJD_UTC", "<f8"), ("int_end_MJD_UTC", "<f8"),
                 ("int_start_BJD_TDB", "<f8"), ("int_mid_BJD_TDB", "<f8"), ("int_end_BJD_TDB", "<f8")]
    ny, nx = ramp.shape[2:]
    inttime = ngroups * tgroup + tframe            # one reset frame between integrations
    rows, it_rows = [], []
    for i in range(nints):
        start = t0 + i * inttime / 86400.0
        for g in range(ngroups):
            tend = start + (g * tgroup + nframes * tframe) / 86400.0
            iso = Time(tend, format="mjd").isot.replace("T", " ")
            day = int(tend - 36204)                # days since 1958-01-01 (JWST epoch)
            ms = int(round((tend - int(tend)) * 86400e3))
            rows.append((i + 1, g + 1, day % 32768, ms, 0, iso.encode(), nx, ny, 0, 0, b"COMPLETE", tend, tend))
        end = start + (ngroups * tgroup) / 86400.0
        mid = 0.5 * (start + end)
        it_rows.append((i + 1, start, mid, end, start, mid, end))
    if tables:
        model.group = np.array(rows, dtype=group_dtype)
        model.int_times = np.array(it_rows, dtype=int_dtype)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.meta.filename = path.name
    model.save(path, overwrite=True)
    model.close()
    return path


# ------------------------------------------------------------------------------------------
# MIRI EMICORR reference (electromagnetic interference waveforms)

#: MIRI readout clocks (10 us pixel-clock ticks) per subarray case of an EMICORR reference:
#: (ROWCLOCKS, FRAMECLOCKS), FRAMECLOCKS = ny * ROWCLOCKS + (1024 - ny) * 7. Full frame is
#: split by read speed (FULL_FAST, FULL_SLOW), as jwst's emicorr looks it up.
MIRI_EMI_CLOCKS: dict[str, tuple[int, int]] = {
    "FULL_FAST": (271, 277504), "FULL_SLOW": (2333, 2388992), "BRIGHTSKY": (162, 86528),
    "SUB256": (96, 29952), "SUB128": (44, 11904), "SUB64": (28, 8512),
    "MASK1065": (82, 23968), "MASK1140": (82, 23968), "MASK1550": (82, 23968),
    "MASKLYOT": (90, 32400), "SLITLESSPRISM": (28, 15904),
}
MIRI_DETECTORS = ("MIRIMAGE", "MIRIFULONG", "MIRIFUSHORT")

#: EMI frequency name -> Hz (the names and values used by the jwst EMICORR files: 390.625 Hz
#: in most subarrays, ~218.5 Hz, and ~10 Hz in full frame)
EMI_FREQUENCIES: dict[str, float] = {"Hz390": 390.625, "Hz218a": 218.52055, "Hz10": 10.039216}


def emi_waveform(frequency: float, nbins: int | None = None, amplitude: float = 1.0,
                 seed: int = 0) -> np.ndarray:
    """One period of a synthetic EMI waveform, float32 (nbins,) DN, peak |value| = amplitude.

    A fundamental plus 2nd and 3rd harmonics (relative amplitudes 0.35 and 0.12, phases from
    ``seed``), zero mean. ``nbins`` defaults to ``min(period / 2, 500)`` samples, ``period =
    1 / (frequency * 10 us)`` pixel-clock ticks, as the jwst on-the-fly reference waves.
    """
    if not (frequency > 0):
        raise ValueError(f"emi_waveform: frequency must be > 0 Hz, got {frequency!r}")
    if nbins is None:
        nbins = min(int((1.0 / frequency) / 10.0e-6 / 2.0), 500)
    if nbins < 4:
        raise ValueError(f"emi_waveform: need at least 4 samples per period, got {nbins}")
    rng = np.random.default_rng(derive_seed("emi", frequency, seed))
    p = 2.0 * np.pi * np.arange(nbins) / nbins
    ph = rng.uniform(0.0, 2.0 * np.pi, 2)
    w = np.sin(p) + 0.35 * np.sin(2 * p + ph[0]) + 0.12 * np.sin(3 * p + ph[1])
    w -= w.mean()
    return (amplitude * w / np.abs(w).max()).astype(np.float32)


def write_emicorr_reference(path: str | Path, frequencies: dict | None = None,
                            subarray_cases: dict | None = None, *, amplitude: float = 1.0,
                            seed: int = 0, useafter: str = USEAFTER,
                            description: str = "Simulated MIRI EMI reference waves") -> Path:
    """Write a MIRI EMICORR reference file (stdatamodels ``EmiModel``, the real CRDS format).

    An ASDF tree with ``frequencies`` and ``subarray_cases``; use a ``.asdf`` path.

    Parameters
    ----------
    path : output file.
    frequencies : name -> Hz, or name -> (Hz, waveform 1-D array DN). Default
        :data:`EMI_FREQUENCIES` plus ``Hz10_slow_<DETECTOR>`` (10.039216 Hz) for each MIRI
        detector, with :func:`emi_waveform` waves of peak ``amplitude`` DN.
    subarray_cases : case name (SUBARRAY, or FULL_FAST / FULL_SLOW) -> list of frequency
        names, used for FAST and, for every detector, SLOW reads; or -> a complete case dict
        ``{"rowclocks", "frameclocks", "freqs": {"FAST": [...], "SLOW": {DET: [...]}}}``.
        Rowclocks/frameclocks of a list-form case come from :data:`MIRI_EMI_CLOCKS`.
        Default: Hz390 for every MIRI subarray (SUB64, SUB128, ..., FAST and SLOW), Hz10 for
        FULL_FAST and Hz10_slow_<DETECTOR> for FULL_SLOW.

    Returns the written path. Raises ValueError for a case with unknown clocks or a listed
    frequency that is not defined.
    """
    from stdatamodels.jwst import datamodels as dm

    if frequencies is None:
        frequencies = dict(EMI_FREQUENCIES)
        for det in MIRI_DETECTORS:
            frequencies[f"Hz10_slow_{det}"] = EMI_FREQUENCIES["Hz10"]
    freq_tree = {}
    for name, val in frequencies.items():
        if isinstance(val, (tuple, list)):
            hz, wave = float(val[0]), np.asarray(val[1], np.float32)
        else:
            hz = float(val)
            wave = emi_waveform(hz, amplitude=amplitude, seed=seed)
        freq_tree[str(name)] = {"frequency": hz, "phase_amplitudes": wave}
    if subarray_cases is None:
        subarray_cases = {s: ["Hz390"] for s in MIRI_EMI_CLOCKS if not s.startswith("FULL")}
        subarray_cases["FULL_FAST"] = {"FAST": ["Hz10"]}
        subarray_cases["FULL_SLOW"] = {"SLOW": {d: [f"Hz10_slow_{d}"] for d in MIRI_DETECTORS}}
    cases = {}
    for sub, spec in subarray_cases.items():
        if isinstance(spec, dict) and "freqs" in spec:
            case = {"rowclocks": int(spec["rowclocks"]), "frameclocks": int(spec["frameclocks"]),
                    "freqs": spec["freqs"]}
        else:
            if sub not in MIRI_EMI_CLOCKS:
                raise ValueError(f"write_emicorr_reference: no MIRI clocks known for {sub!r}; "
                                 "give rowclocks/frameclocks in a full case dict")
            rc, fc = MIRI_EMI_CLOCKS[sub]
            freqs = (dict(spec) if isinstance(spec, dict)
                     else {"FAST": list(spec), "SLOW": {d: list(spec) for d in MIRI_DETECTORS}})
            case = {"rowclocks": rc, "frameclocks": fc, "freqs": freqs}
        listed = list(case["freqs"].get("FAST", []))
        for lst in (case["freqs"].get("SLOW") or {}).values():
            listed += list(lst)
        missing = [n for n in listed if n not in freq_tree]
        if missing:
            raise ValueError(f"write_emicorr_reference: case {sub!r} lists undefined "
                             f"frequencies {missing}")
        cases[str(sub)] = case
    m = dm.EmiModel()
    m.frequencies = freq_tree
    m.subarray_cases = cases
    m.meta.instrument.name = "MIRI"
    m.meta.reftype = "EMICORR"
    m.meta.useafter = useafter
    m.meta.author = AUTHOR
    m.meta.pedigree = "DUMMY"
    m.meta.description = description
    m.meta.telescope = "JWST"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".fits":
        m.save(path, overwrite=True)
    else:
        m.save(path)          # ASDF (the CRDS format); replaces an existing file
    m.close()
    return path


# ------------------------------------------------------------------------------------------
# FGS guiding modes (calwebb_guider): the flat field, the GUIDER references, exposures from
# real guiding-mode header templates

NO_FLAT_FIELD = 262144            # jwst DQ bit 18
UNRELIABLE_FLAT = 33554432        # jwst DQ bit 25


def flat_response(det: Detector) -> np.ndarray:
    """Pixel-to-pixel response of a detector (the FLAT reference's SCI), float32 (ny, nx).

    Mean 1 over the light-sensitive pixels: a smooth large-scale variation (a few %) times a
    1 % per-pixel scatter; 0.3-0.6 on ~1e-4 low-response pixels; exactly 0 on ~1e-5 pixels
    (no response measured: the jwst flat_field step flags those); NaN on dead pixels; 1.0 on
    reference pixels. Deterministic in (instrument, detector, seed). Simulated exposures
    see the scene multiplied by it (:func:`guider_exposure`), so dividing by the FLAT
    reference gives back the scene.
    """
    rng = np.random.default_rng(derive_seed("flat", det.instrument, det.detector, det.seed))
    ny, nx = det.shape
    y = np.linspace(-1.0, 1.0, ny, dtype=np.float32)[:, None]
    x = np.linspace(-1.0, 1.0, nx, dtype=np.float32)[None, :]
    c = rng.normal(0.0, 0.015, 5).astype(np.float32)
    flat = (1.0 + c[0] * x + c[1] * y + c[2] * x * x + c[3] * y * y + c[4] * x * y).astype(np.float32)
    flat *= (1.0 + 0.01 * rng.standard_normal((ny, nx), dtype=np.float32))
    light = ~(det.refpix | det.dead)
    flat /= np.float32(flat[light].mean())
    u = rng.random((ny, nx))
    low = (u < 1e-4) & light
    flat[low] = rng.uniform(0.3, 0.6, int(low.sum())).astype(np.float32)
    flat[(u > 1.0 - 1e-5) & light] = 0.0
    flat[det.refpix] = 1.0
    flat[det.dead] = np.nan
    return flat


def write_flat(det: Detector, path: str | Path) -> Path:
    """Write a full-frame FLAT reference (stdatamodels FlatModel, GENERIC subarray).

    SCI float32 (ny, nx) :func:`flat_response` (dimensionless); ERR float32 0.4 % of it
    (0 where NaN); DQ uint32: DO_NOT_USE | NO_FLAT_FIELD on dead pixels (SCI NaN),
    UNRELIABLE_FLAT on low-response pixels (< 0.7), 0 elsewhere.
    """
    from stdatamodels.jwst import datamodels as dm

    flat = flat_response(det)
    err = np.nan_to_num(np.float32(0.004) * flat, nan=0.0).astype(np.float32)
    dq = np.zeros(det.shape, np.uint32)
    dq[det.dead] |= DO_NOT_USE | NO_FLAT_FIELD
    dq[(flat < 0.7) & (flat > 0.0)] |= UNRELIABLE_FLAT
    dq_def = np.concatenate([_dq_def(), np.array(
        [(18, NO_FLAT_FIELD, "NO_FLAT_FIELD", "Flat field cannot be measured"),
         (25, UNRELIABLE_FLAT, "UNRELIABLE_FLAT", "Flat variance large")], dtype=_dq_def().dtype)])
    m = dm.FlatModel(data=flat, err=err, dq=dq, dq_def=dq_def)
    _ref_meta(m, det, "flat", f"Simulated pixel flat for {det.detector} (seed {det.seed})")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    m.save(path, overwrite=True)
    m.close()
    return path


#: reftypes calwebb_guider reads (dq_init: mask; guider_cds: gain, readnoise; flat_field: flat)
GUIDER_REFTYPES = ("mask", "gain", "readnoise", "flat")


def write_guider_references(det: Detector, out_dir: str | Path,
                            names: dict[str, str] | None = None) -> dict[str, Path]:
    """Write the full-frame references calwebb_guider reads for an FGS detector.

    ``names`` maps each of :data:`GUIDER_REFTYPES` to a file name (default
    ``jwst_sim_fgs_<reftype>_<detector>.fits``). MASK, GAIN and READNOISE as
    :func:`write_references` writes them, FLAT as :func:`write_flat`.

    Returns reftype -> written path. Raises ValueError for a detector that is not FGS.
    """
    if det.instrument != "FGS":
        raise ValueError(f"write_guider_references: {det.instrument} {det.detector} is not an FGS detector")
    names = dict(names or {rt: f"jwst_sim_fgs_{rt}_{det.detector.lower()}.fits" for rt in GUIDER_REFTYPES})
    out_dir = Path(out_dir)
    written = write_references(det, out_dir, {rt: n for rt, n in names.items() if rt != "flat"})
    if "flat" in names:
        written["flat"] = write_flat(det, out_dir / names["flat"])
    return written


@dataclass
class _SeenScene:
    """A scene as the pixels see it: its rate times the detector's response (flat)."""

    scene: Scene
    response: np.ndarray       # float32 (ny, nx), full frame; NaN -> no response

    def rate(self, x0: int, y0: int, nx: int, ny: int, full_shape: tuple[int, int]) -> np.ndarray:
        r = self.scene.rate(x0, y0, nx, ny, full_shape)
        return r * np.nan_to_num(self.response[y0:y0 + ny, x0:x0 + nx], nan=0.0)


def guider_exposure(det: Detector, template: str | Path, path: str | Path, *, nints: int | None = None,
                    seed: int = 0, guide_star: float = 3.0e4) -> tuple[Path, Truth]:
    """Simulate an FGS guiding-mode exposure (ID, ACQ1, ACQ2, TRACK, FINEGUIDE) from a real header.

    The template (a real guiding-mode ``_uncal`` header, e.g. ``fgs_fineguide_guider2.fits``)
    gives everything but the pixels: EXP_TYPE, READPATT, the window (SUBSTRT1/2,
    SUBSIZE1/2) and the timing (NFRAMES, GROUPGAP, TFRAME, TGROUP, NGROUPS, NINTS). The
    scene is a guide star (``guide_star`` DN/s at the peak, sigma 1.3 px) at the window's
    centre on a faint sky, plus fainter stars in windows larger than 64 x 64, seen through
    :func:`flat_response`; the ramp is :func:`simulate_ramp`'s (bias, non-linearity,
    Poisson and read noise, drifts, IPC, cosmic rays, saturation). As in real guiding
    files there are no GROUP or INT_TIMES tables.

    Parameters
    ----------
    det : an FGS detector (its DETECTOR should be the template's).
    template : the real header template.
    path : the ``_uncal.fits`` to write.
    nints : NINTS (default the template's; fewer keeps tests small).
    seed : seed of the exposure.
    guide_star : peak rate of the guide star, DN/s.

    Returns
    -------
    path : Path of the file written.
    truth : :class:`Truth`; ``truth.rate`` is the rate the pixels see (scene x response).

    Raises
    ------
    ValueError
        If the template is not an FGS guiding exposure of ``det``'s detector.
    """
    from astropy.io import fits

    hdr = fits.getheader(template, 0)
    exp_type = str(hdr.get("EXP_TYPE", "")).upper()
    if str(hdr.get("INSTRUME", "")).upper() != "FGS" or not exp_type.startswith(("FGS_ID", "FGS_ACQ",
                                                                                  "FGS_TRACK", "FGS_FINEGUIDE")):
        raise ValueError(f"{template}: not an FGS guiding-mode exposure (EXP_TYPE {exp_type!r})")
    if str(hdr.get("DETECTOR", "")).upper() != det.detector:
        raise ValueError(f"{template}: DETECTOR {hdr.get('DETECTOR')!r} is not {det.detector!r}")
    geometry = tuple(int(hdr[k]) for k in ("SUBSTRT1", "SUBSTRT2", "SUBSIZE1", "SUBSIZE2"))
    ro = Readout(str(hdr["READPATT"]).upper(), int(hdr["NFRAMES"]), int(hdr["GROUPGAP"]),
                 float(hdr["TFRAME"]), float(hdr["TGROUP"]), int(hdr.get("NOUTPUTS") or 1))
    nints = int(nints if nints is not None else hdr["NINTS"])
    spec = ExposureSpec("FGS", det.detector, str(hdr.get("SUBARRAY") or "FULL"), ro.readpatt,
                        ngroups=int(hdr["NGROUPS"]), nints=nints, geometry_override=geometry,
                        readout_override=ro)
    x1, y1, xs, ys = geometry
    rng = np.random.default_rng(derive_seed("guider scene", det.detector, exp_type, seed))
    stars = [(x1 - 1 + (xs - 1) / 2.0 + rng.uniform(-0.5, 0.5), y1 - 1 + (ys - 1) / 2.0 + rng.uniform(-0.5, 0.5),
              guide_star, 1.3)]
    if xs * ys > 64 * 64:
        stars += random_scene(rng, x1 - 1, y1 - 1, xs, ys, nstars=8).stars[1:]
    scene = _SeenScene(Scene(sky=float(rng.uniform(0.2, 1.0)), sky_gradient=0.1, stars=stars),
                       flat_response(det))
    ramp, truth = simulate_ramp(det, spec, seed=seed, scene=scene)
    path = Path(path)
    write_uncal(path, ramp, {"NINTS": nints}, template=template, tables=False)
    return path, truth
