"""emicorr (MIRI): remove electromagnetic-interference (EMI) waveforms from raw ramps.

Source: jwst documentation "emicorr" (step description, arguments) and "EMICORR reference
file" (``EmiModel``, ASDF); behaviour matched to jwst 3.0.0 ``EmiCorrStep``. jwst cites no
paper for the method: the 'sequential' algorithm is the translation of E. Bergeron's IDL
procedure ``fix_miri_emi.pro``; the 'joint' algorithm (the jwst default) follows an
internal MIRI write-up (chi-squared of straight-line ramp fits as a function of the phase
and amplitude of the reference waveform). This module is an independent implementation.

Timing model (the one jwst assumes). Time runs in 10 us pixel-clock ticks. The four MIRI
outputs are read simultaneously, so the 4 interleaved columns ``4k .. 4k+3`` of a row share a
read time. In one frame, channel column ``k`` (``0 <= k < nx // 4``) of row ``y`` is read at
``y * ROWCLOCKS + k * NSAMPLES`` (NSAMPLES = 1 for FAST, 9 for SLOW); a frame (group, as
MIRI has NFRAMES = 1) lasts ``ny * ROWCLOCKS + (1024 - ny) * 7`` ticks; an integration of a
FASTR1/SLOWR1 exposure is followed by one reset frame of FRAMECLOCKS ticks (0 otherwise).
The EMI signal at a read is ``A * w(frac(t / P + phi))`` with period ``P = 1 / (f * 10 us)``
ticks and ``w`` the reference waveform (one period, ``phase_amplitudes`` of the reference
file) interpolated by a periodic not-a-knot cubic spline, and it is identical in the 4
outputs.

Joint algorithm: pixels whose group-to-group standard deviation is below twice the median and
whose PIXELDQ is 0 are summed by their phase bin (channel columns 1 and 2, a bad reference
column, are excluded); for 500 trial phases the amplitude minimising the chi-squared of
straight-line fits to all ramps (ramp + A * waveform) is found analytically; a parabola
through the three chi-squared values around the best trial phase gives the phase; the
waveform is evaluated at each read and ``A * w`` subtracted from all 4 outputs. One phase
and amplitude for all integrations (``fit_ints_separately=False``) or one per integration.

Sequential algorithm: per integration a crude line fit and a median "self-superbias" are
removed, the 4 outputs are averaged, the cleaned values are binned by phase
(sigma-clipped mean per bin, astropy ``sigma_clipped_stats``) over the first
``nints_to_phase`` integrations, the reference waveform is circularly shifted to the
best-correlated lag and optionally scaled to the binned wave (linear fit), and the
resulting look-up table (one entry per tick of the period) is subtracted.

Each frequency of the reference file's list for the exposure's configuration is fitted and
removed in turn, on the data already corrected for the previous ones.

Skips, as jwst: READPATT not FAST/FASTR1/SLOW/SLOWR1, NGROUPS < 3, or no entry in the
reference's ``subarray_cases`` for ``SUBARRAY`` (``FULL_FAST``/``FULL_SLOW`` for full
frame) with a frequency list for the read speed (FAST: a list; SLOW: a list per DETECTOR).
Units: DN throughout (data float32 (nints, ngroups, ny, nx)).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numba
import numpy as np

from calib.errors import InputError, ReferenceFileError
from calib.params import SUPPORT_DEFAULT_ONLY, SUPPORT_IGNORED, Param
from calib.step import StepSpec

__all__ = ["EmiSelection", "select_frequencies", "emicorr", "emicorr_joint",
           "emicorr_sequential", "ALLOWED_READPATTS", "ALGORITHMS", "STEP"]

ALLOWED_READPATTS = ("FAST", "FASTR1", "SLOW", "SLOWR1")
ALGORITHMS = ("joint", "sequential")
PIXEL_CLOCK_S = 10.0e-6          # one pixel-clock tick, seconds
_NPHASES_OPT = 500               # trial phases of the joint fit
_BAD_CHANNEL_COLUMNS = (1, 2)    # channel columns (x // 4) left out (bad reference column)


@dataclass(frozen=True)
class EmiSelection:
    """The reference file's entry for one exposure configuration.

    rowclocks, frameclocks : int, pixel-clock ticks per row / per (reset) frame.
    names : frequency names (keys of the reference's ``frequencies``), in correction order.
    frequencies : Hz, one per name.
    waveforms : one float64 1-D array per name (one period, DN, arbitrary scale).
    Empty ``names`` means no match: the step is skipped (as jwst).
    """

    subname: str
    rowclocks: int | None
    frameclocks: int | None
    names: tuple[str, ...]
    frequencies: tuple[float, ...]
    waveforms: tuple[np.ndarray, ...]

    @property
    def matched(self) -> bool:
        """Whether the reference gave row clocks and at least one frequency for the exposure."""
        return self.rowclocks is not None and len(self.names) > 0


def _get(node, key):
    """``node[key]`` for dicts and stdatamodels ObjectNodes; KeyError when absent."""
    if isinstance(node, dict):
        return node[key]
    try:
        return getattr(node, key)
    except AttributeError:
        raise KeyError(key) from None


def select_frequencies(model, subarray: str, readpatt: str, detector: str, path: str = "",
                       step: str = "emicorr") -> EmiSelection:
    """Look up rowclocks, frameclocks and the frequencies to correct in an EMICORR reference.

    model : an opened ``EmiModel`` (or a dict with ``subarray_cases`` and ``frequencies``).
    subarray, readpatt, detector : SUBARRAY, READPATT, DETECTOR of the exposure.
    Full frame is looked up as ``FULL_FAST`` / ``FULL_SLOW``. A configuration absent from
    ``subarray_cases`` gives an unmatched selection (jwst skips the step).
    Raises ReferenceFileError (naming ``path`` and ``step``) when a listed frequency is missing
    from ``frequencies`` or its value / waveform is unusable (jwst fails there too).
    """
    readpatt = str(readpatt or "").upper()
    speed = "SLOW" if "SLOW" in readpatt else "FAST" if "FAST" in readpatt else None
    subname = str(subarray or "")
    if speed is None:
        return EmiSelection(subname, None, None, (), (), ())
    if "FULL" in subname:
        subname = f"{subname}_{speed}"
    try:
        cases = _get(model, "subarray_cases")
        case = _get(cases, subname)
        rowclocks = int(_get(case, "rowclocks"))
        frameclocks = int(_get(case, "frameclocks"))
    except (KeyError, TypeError, ValueError):
        return EmiSelection(subname, None, None, (), (), ())
    try:
        names = _get(_get(case, "freqs"), speed)
        if speed == "SLOW":
            names = _get(names, str(detector))
    except (KeyError, TypeError):
        return EmiSelection(subname, rowclocks, frameclocks, (), (), ())
    if isinstance(names, str):
        names = [names]
    names = tuple(str(n) for n in (names or ()))
    freqs, waves = [], []
    for name in names:
        try:
            entry = _get(_get(model, "frequencies"), name)
            f = float(_get(entry, "frequency"))
            w = np.array(_get(entry, "phase_amplitudes"), dtype=np.float64).ravel()
        except (KeyError, TypeError, ValueError) as exc:
            raise ReferenceFileError(
                f"{step}: reference file {path!r} lists frequency {name!r} for {subname}/"
                f"{speed} but has no usable frequencies.{name} entry ({exc!r})") from None
        if not (np.isfinite(f) and f > 0) or w.size < 2 or not np.isfinite(w).all():
            raise ReferenceFileError(
                f"{step}: reference file {path!r} frequency {name!r} is unusable "
                f"(frequency={f}, {w.size} phase amplitudes, finite={bool(np.isfinite(w).all())})")
        w.setflags(write=False)
        freqs.append(f)
        waves.append(w)
    return EmiSelection(subname, rowclocks, frameclocks, names, tuple(freqs), tuple(waves))


# ------------------------------------------------------------------------------------------
# helpers

def _waveform_spline(wave: np.ndarray):
    """Return the periodic spline of one waveform period.

    Cubic (not-a-knot) spline of one waveform period on phase [0, 1), wrapped by one
    sample at each end: knots at ``(i - 0.5) / n`` for ``i = 0 .. n + 1``.
    """
    from scipy.interpolate import make_interp_spline

    n = wave.size
    x = (np.arange(n + 2) - 0.5) / n
    y = np.concatenate([wave[-1:], wave, wave[:1]])
    return make_interp_spline(x, y, k=3)


def _frame_geometry(ny: int, nx: int, rowclocks: int, nsamples: int, period: float):
    """Phase (0..1) of every (row, channel column) in a frame, and the phase step per frame."""
    nx4 = nx // 4
    t = (np.arange(ny, dtype=np.int64)[:, None] * int(rowclocks)
         + np.arange(nx4, dtype=np.int64)[None, :] * int(nsamples)).astype(np.float64)
    phase = (t / period) % 1
    frame_ticks = ny * rowclocks + (1024.0 - ny) * 7.0
    return phase, (frame_ticks / period) % 1


@numba.njit(cache=True)
def _phase_sums(data, ok, bin_of, nbins):
    """Sum the ramps of good pixels per phase bin.

    Sum ramps of good pixels per phase bin. data float32 (nints, ngroups, ny, nx); ok bool
    (nints, ny, nx); bin_of int64 (ny, nx4). Returns y float64 (nints, nbins, ngroups) and
    n float64 (nints, nbins).
    """
    nints, ngroups, ny, nx = data.shape
    nx4 = nx // 4
    y = np.zeros((nints, nbins, ngroups))
    n = np.zeros((nints, nbins))
    for j in range(ny):
        for k in range(nx4):
            if k == 1 or k == 2:
                continue
            b = bin_of[j, k]
            for c in range(4):
                x = 4 * k + c
                for i in range(nints):
                    if ok[i, j, x]:
                        for g in range(ngroups):
                            y[i, b, g] += data[i, g, j, x]
                        n[i, b] += 1.0
    return y, n


@numba.njit(cache=True)
def _subtract_channels(plane, emi, amp):
    """Subtract an EMI waveform from one plane, in place.

    plane float32 (ny, nx) -= amp * emi[:, x // 4] (computed in float64).
    """
    ny, nx = plane.shape
    nx4 = emi.shape[1]
    for j in range(ny):
        for k in range(nx4):
            v = amp * emi[j, k]
            for c in range(4):
                plane[j, 4 * k + c] = np.float32(np.float64(plane[j, 4 * k + c]) - v)


def _vertex(xs, ys):
    """Abscissa of the vertex of the parabola through three points (x distinct)."""
    (x0, x1, x2), (y0, y1, y2) = xs, ys
    d1 = (x1 - x0) * (y1 - y2)
    d2 = (x1 - x2) * (y1 - y0)
    den = d1 - d2
    if den == 0 or not math.isfinite(den):
        return x1
    return x1 - 0.5 * ((x1 - x0) * d1 - (x1 - x2) * d2) / den


def _best_phase(phaselist: np.ndarray, chisq: np.ndarray) -> float:
    """Return the phase of minimum chi-squared.

    Phase of minimum chi-squared: a parabola through the lowest trial and its two
    neighbours in the list (wrapping at both ends).
    """
    if not np.isfinite(chisq).any():
        return float(phaselist[0])
    ib = int(np.nanargmin(chisq))
    im, ip = ib - 1, (ib + 1 if ib + 1 < len(chisq) else 0)
    ys = (chisq[im], chisq[ib], chisq[ip])
    if not all(np.isfinite(ys)) or np.std(ys) == 0:
        return float(phaselist[ib])
    return float(_vertex((phaselist[im], phaselist[ib], phaselist[ip]), ys))


# ------------------------------------------------------------------------------------------
# joint algorithm

class _JointFit:
    """Chi-squared and amplitude of the waveform for all trial phases and integrations.

    For a pixel ramp y(t), t = 0..ngroups-1, the residual sum of squares of a straight-line
    fit to ``y - c z`` is ``Q(y) - 2 c R(y, z) + c^2 R(z, z)`` with
    ``R(u, v) = S_uv - (S_tt S_u S_v - S_t (S_u S_tv + S_v S_tu) + N S_tu S_tv) / D``,
    ``D = N S_tt - S_t^2``. Pixels sharing a phase bin share z, so only per-bin sums of the
    ramps are needed: over bins and integrations, ``chi2(c) = a c^2 + b c`` with
    ``a = sum n R(z, z)`` and ``b = -2 sum R(Y, z)``; the best ``c = -b / 2a``.
    """

    def __init__(self, y, n, spline, template, dphase_frame):
        self.y, self.n = y, n
        self.nints, self.nbins, self.ngroups = y.shape
        self.phaselist = np.arange(_NPHASES_OPT) * 1.0 / _NPHASES_OPT
        self.dphase_frame = dphase_frame
        t = np.arange(self.ngroups)
        N = self.ngroups
        s_t, s_tt = float(t.sum()), float((t * t).sum())
        delta = N * s_tt - s_t ** 2
        sy = y.sum(axis=2)                    # (nints, nbins)
        sty = (y * t).sum(axis=2)
        self.A = np.empty((self.nints, _NPHASES_OPT))
        self.B = np.empty((self.nints, _NPHASES_OPT))
        for q, p0 in enumerate(self.phaselist):
            z = spline((template + p0) % 1)   # (nbins, ngroups)
            sz = z.sum(axis=1)
            stz = (z * t).sum(axis=1)
            szz = (z * z).sum(axis=1)
            rzz = szz - (s_tt * sz * sz - 2.0 * s_t * sz * stz + N * stz * stz) / delta
            syz = (y * z).sum(axis=2)         # (nints, nbins)
            ryz = syz - (s_tt * sz * sy - s_t * (sz * sty + sy * stz) + N * stz * sty) / delta
            self.A[:, q] = (n * rzz).sum(axis=1)
            self.B[:, q] = -2.0 * ryz.sum(axis=1)

    def _index(self, phase: float, i: int) -> int:
        # trial phase at or just after ``phase`` shifted to integration i
        return int(np.argmin((self.phaselist - phase - self.dphase_frame * i) % 1))

    def solve(self, phases, ints):
        """Return chi-squared and amplitude at each trial phase.

        (chisq, amplitude) arrays at each phase (integration-0 convention), fit jointly
        over the integrations ``ints``.
        """
        chisq = np.full(len(phases), np.nan)
        amp = np.zeros(len(phases))
        for m, ph in enumerate(phases):
            a = b = 0.0
            for i in ints:
                q = self._index(ph, i)
                a += self.A[i, q]
                b += self.B[i, q]
            if abs(a) <= 1e-8 or not (np.isfinite(a) and np.isfinite(b)):
                continue
            c = -b / (2.0 * a)
            chisq[m] = a * c * c + b * c
            amp[m] = c
        return chisq, amp


def emicorr_joint(data: np.ndarray, pixeldq: np.ndarray, waveform: np.ndarray,
                  frequency: float, nsamples: int, rowclocks: int, frameclocks: int,
                  fit_ints_separately: bool = False
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit and subtract one EMI frequency with the joint (ramp + waveform) algorithm.

    data : float32 (nints, ngroups, ny, nx) DN, corrected in place (nx a multiple of 4).
    pixeldq : uint32 (ny, nx); only pixels with PIXELDQ == 0 enter the fit.
    waveform : 1-D float, one period of the reference waveform.
    frequency : Hz. nsamples : NSAMPLES (1 FAST, 9 SLOW). rowclocks : ticks per row.
    frameclocks : ticks of the reset frame between integrations (0 unless FASTR1/SLOWR1).
    Returns (data, amplitude per integration (nints,) DN, phase of the waveform at the
    first read of each integration (nints,), in periods).
    """
    nints, ngroups, ny, nx = data.shape
    period = (1.0 / frequency) / PIXEL_CLOCK_S
    phase, dphase = _frame_geometry(ny, nx, rowclocks, nsamples, period)
    dphase_frame = dphase * ngroups + frameclocks / period
    spline = _waveform_spline(np.asarray(waveform, np.float64))
    nb = waveform.size
    centres = (np.arange(1, nb + 1) - 0.5) / nb
    template = (centres[:, None] + np.arange(ngroups) * dphase) % 1     # (nb, ngroups)

    std = np.std(data, axis=1)
    ok = (std < 2 * np.median(std)) & (pixeldq == 0)
    bin_of = (phase * nb).astype(np.int64)
    y, n = _phase_sums(data, np.ascontiguousarray(ok), bin_of, nb)
    fit = _JointFit(y, n, spline, template, dphase_frame)
    if fit_ints_separately:
        amps = np.zeros(nints)
        phases = np.zeros(nints)
        for i in range(nints):
            chisq, _ = fit.solve(fit.phaselist, [i])
            best = _best_phase(fit.phaselist, chisq)
            phases[i] = best + i * dphase_frame
            amps[i] = fit.solve([best], [i])[1][0]
    else:
        chisq, _ = fit.solve(fit.phaselist, range(nints))
        best = _best_phase(fit.phaselist, chisq)
        amps = np.full(nints, fit.solve([best], range(nints))[1][0])
        phases = (best + np.arange(nints) * dphase_frame) % 1
    for i in range(nints):
        if amps[i] == 0.0:
            continue
        for g in range(ngroups):
            emi = spline((phase + dphase * g + phases[i]) % 1)
            _subtract_channels(data[i, g], np.ascontiguousarray(emi), float(amps[i]))
    return data, amps, phases


# ------------------------------------------------------------------------------------------
# sequential algorithm

def _nearest_lower_resample(arr: np.ndarray, size: float) -> np.ndarray:
    """Resample a 1-D array by nearest lower index (IDL congrid).

    Resample a 1-D array to ``ceil(size)`` samples by nearest lower index (IDL congrid
    without interpolation): index ``floor(i * len / size)``.
    """
    return arr[np.arange(0, arr.size, arr.size / size).astype(np.int32)]


@numba.njit(cache=True)
def _line_and_bias(plane_stack):
    """Per-pixel least-squares slope (per group index) over a (m, ny, nx) float32 stack."""
    m, ny, nx = plane_stack.shape
    sxy = np.zeros((ny, nx))
    sy = np.zeros((ny, nx))
    sx = 0.0
    sxx = 0.0
    for g in range(m):
        sx += g
        sxx += g * g
        for j in range(ny):
            for x in range(nx):
                v = np.float64(plane_stack[g, j, x])
                sxy[j, x] += g * v
                sy[j, x] += v
    den = m * sxx - sx * sx
    return (m * sxy - sx * sy) / den


def emicorr_sequential(data: np.ndarray, waveform: np.ndarray | None, frequency: float,
                       nsamples: int, rowclocks: int, frameclocks: int, r1: bool,
                       xstart: int, xsize: int, nints_to_phase: int | None = None,
                       nbins: int | None = None, scale_reference: bool = True,
                       use_n_cycles: int | None = 3) -> tuple[np.ndarray, int]:
    """Fit and subtract one EMI frequency with the sequential algorithm (jwst 'sequential').

    data : float32 (nints, ngroups, ny, nx) DN, corrected in place.
    waveform : reference waveform (1-D) or None (self-correction with the binned wave).
    frameclocks : ticks of one reset frame; ``r1`` True for FASTR1/SLOWR1 (a reset frame
    between integrations). xstart, xsize : SUBSTRT1, SUBSIZE1.
    nints_to_phase / use_n_cycles : integrations used to build the binned wave (default:
    enough integrations for ``use_n_cycles`` periods); nbins : bins per period (default
    period / 2, at most 500). scale_reference : scale the reference to the binned wave.
    Returns (data, the number of integrations phased). jwst carries that number over to the
    next frequency of the list as its ``nints_to_phase``; :func:`emicorr` does the same.
    """
    from astropy.stats import sigma_clipped_stats

    nints, ngroups, ny, nx = data.shape
    nx4 = nx // 4
    period = (1.0 / frequency) / PIXEL_CLOCK_S
    if nints_to_phase is None and use_n_cycles is None:
        nph = nints
    elif nints_to_phase is None:
        nph = int(np.ceil((use_n_cycles * period) / (frameclocks * ngroups)))
    else:
        nph = min(int(nints_to_phase), nints) if use_n_cycles == 3 else int(nints_to_phase)

    clean = np.zeros((nints, ngroups, ny, nx4))
    phase_all = np.zeros((nints, ngroups, ny, nx4))
    extra = (1024.0 - ny) * 7.0
    last_is_refcol = int(xsize / 4 + xstart - 1) == 258
    base_cols = np.arange(nx4, dtype=np.uint64) * np.uint64(nsamples)
    start = 0
    for i in range(nints):
        work = data[i].copy()
        slope = _line_and_bias(np.ascontiguousarray(data[i, 1:ngroups - 1]))
        for g in range(ngroups):
            work[g] = data[i, g] - slope * g
        mid = work[1:ngroups - 1]
        bias = np.nanmin(mid, axis=0) if mid.shape[0] <= 2 else np.nanmedian(mid, axis=0)
        for g in range(ngroups):
            work[g] = work[g] - bias
            d = (work[g, :, 0:nx:4] + work[g, :, 1:nx:4] + work[g, :, 2:nx:4]
                 + work[g, :, 3:nx:4]) / 4.0
            d[:, 1] = (d[:, 0] + d[:, 3]) / 2
            d[:, 2] = (d[:, 0] + d[:, 3]) / 2
            clean[i, g] = d - np.median(d)
        times = np.empty((ngroups, ny, nx4), np.uint64)
        for g in range(ngroups):
            for j in range(ny):
                times[g, j] = base_cols + start       # start may be a float: as uint64
                if last_is_refcol:
                    times[g, j, nx4 - 1] = times[g, j, nx4 - 1] + np.uint64(3 + 2 ** 32)
                start += rowclocks
            start += extra
        ph = times / period
        phase_all[i] = ph - ph.astype(np.uint64)
        if r1:
            start += frameclocks

    nb = int(period / 2.0) if nbins is None else int(nbins)
    if nb > 501:
        nb = 500
    pa = np.arange(nb, dtype=float)
    ph_sel = phase_all[:nph]
    cl_sel = clean[:nph]
    for b in range(nb):
        sel = (ph_sel > b / nb) & (ph_sel <= (b + 1) / nb)
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            pa[b] = sigma_clipped_stats(cl_sel[sel])[0]
    pa -= np.median(pa)
    lut = _nearest_lower_resample(pa, period)
    if waveform is not None:
        ref = np.asarray(waveform, np.float64)
        pa_r = _nearest_lower_resample(pa, ref.size)
        cc = np.zeros(ref.size)
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            for s in range(ref.size):
                cc[s] = np.corrcoef(np.roll(ref, s), pa_r)[0, 1]
            lut_ref = _nearest_lower_resample(np.roll(ref, int(np.argmax(cc))), period)
            slope = np.polyfit(lut_ref, lut, 1)[0]
        lut = lut_ref * slope if scale_reference else lut_ref
    noise = lut[(phase_all * period).astype(int)]
    noise[~np.isfinite(noise)] = 0.0
    for c in range(4):
        data[..., c::4] -= noise
    return data, nph


# ------------------------------------------------------------------------------------------
# the step

def emicorr(data: np.ndarray, pixeldq: np.ndarray, selection: EmiSelection | None, *,
            readpatt: str, nsamples: int | None, xstart: int = 1, xsize: int | None = None,
            algorithm: str = "joint", nints_to_phase: int | None = None,
            nbins: int | None = None, scale_reference: bool = True,
            use_n_cycles: int | None = 3, fit_ints_separately: bool = False,
            path: str = ""):
    """Apply the EMI correction (the pipeline's entry point).

    data : float32 (nints, ngroups, ny, nx) DN after dq_init, corrected in place.
    pixeldq : uint32 (ny, nx), PIXELDQ after dq_init.
    selection : :func:`select_frequencies` result for this exposure (None: no reference).
    readpatt : READPATT; nsamples : NSAMPLES; xstart, xsize : SUBSTRT1, SUBSIZE1.
    algorithm : 'joint' (default, as jwst 3.0) or 'sequential'; the other parameters are
    jwst's EmiCorrStep parameters of the same names.

    Returns ``(data, "COMPLETE")``, or ``(data, "SKIPPED")`` unchanged where jwst skips:
    READPATT not FAST/FASTR1/SLOW/SLOWR1, NGROUPS < 3, no reference, or no reference entry
    (subarray case / frequency list) for this SUBARRAY, read speed and DETECTOR.
    path : the exposure's file name, for messages.
    Raises ValueError for an unknown ``algorithm``; InputError (a ValueError naming ``path``)
    when NSAMPLES is missing and a correction is to be made (jwst fails there too), or when
    the data width is not a multiple of the 4 outputs.
    """
    algorithm = str(algorithm).lower()
    if algorithm not in ALGORITHMS:
        raise ValueError(f"emicorr: algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    if str(readpatt or "").upper() not in ALLOWED_READPATTS:
        return data, "SKIPPED"
    if data.ndim != 4 or data.shape[1] < 3:
        return data, "SKIPPED"
    if selection is None or not selection.matched:
        return data, "SKIPPED"
    if nsamples is None:
        raise InputError(f"{path}: emicorr: the exposure lacks NSAMPLES (samples per pixel "
                         "read), needed for the pixel read times")
    if data.shape[3] % 4:
        raise InputError(f"{path}: emicorr: data width {data.shape[3]} is not a multiple of "
                         "the 4 MIRI outputs")
    r1 = str(readpatt).upper() in ("FASTR1", "SLOWR1")
    nph = nints_to_phase
    for f, w in zip(selection.frequencies, selection.waveforms, strict=True):
        if algorithm == "joint":
            emicorr_joint(data, pixeldq, w, f, int(nsamples), selection.rowclocks,
                          selection.frameclocks if r1 else 0,
                          fit_ints_separately=bool(fit_ints_separately))
        else:
            _, nph = emicorr_sequential(data, w, f, int(nsamples), selection.rowclocks,
                               selection.frameclocks, r1, int(xstart),
                               int(xsize if xsize is not None else data.shape[3]),
                               nints_to_phase=nph, nbins=nbins,
                               scale_reference=scale_reference, use_n_cycles=use_n_cycles)
    return data, "COMPLETE"


# ------------------------------------------------------------------------------ declared step
def _run(state, ctx) -> str:
    c, info = ctx.params, state.info
    ex = state.model.meta.exposure
    key = (info.subarray, str(ex.readpatt or "").upper(), info.detector)
    sel = ctx.prepared("emicorr", ("select", *key),
                       lambda m, p: select_frequencies(m, *key, path=p, step=ctx.name))
    state.data, status = emicorr(
        state.data, state.pdq, sel, readpatt=str(ex.readpatt or ""),
        nsamples=None if ex.nsamples is None else int(ex.nsamples), xstart=info.xstart, xsize=info.xsize,
        algorithm=c["algorithm"], nints_to_phase=c["nints_to_phase"], nbins=c["nbins"],
        scale_reference=bool(c["scale_reference"]), use_n_cycles=c["use_n_cycles"],
        fit_ints_separately=bool(c["fit_ints_separately"]), path=state.path)
    return status


STEP = StepSpec(
    name="emicorr", jwst_class="jwst.emicorr.EmiCorrStep", reftypes=("emicorr",), run=_run, skip_default=True,
    params=(
        Param("algorithm", "option", "joint", choices=ALGORITHMS[::-1], doc="EMI fitting algorithm"),
        Param("nints_to_phase", "integer", None, min=1, doc="integrations used to phase the wave"),
        Param("nbins", "integer", None, min=1, doc="bins in one phased wave"),
        Param("scale_reference", "boolean", True, doc="scale the reference wave to the data's amplitude"),
        Param("onthefly_corr_freq", "float_list", None, support=SUPPORT_DEFAULT_ONLY,
              doc="frequencies (Hz) corrected without a reference (jwst engine only)"),
        Param("use_n_cycles", "integer", 3, min=1, nullable=True,
              doc="cycles used to phase; None: all integrations"),
        Param("fit_ints_separately", "boolean", False, doc="joint algorithm: fit each integration apart"),
        Param("user_supplied_reffile", "string", None, support=SUPPORT_DEFAULT_ONLY,
              doc="deprecated in jwst: use override_emicorr"),
        Param("save_intermediate_results", "boolean", False, support=SUPPORT_IGNORED,
              doc="writes an on-the-fly reference file; no effect on the products"),
    ),
    doc="MIRI: subtract electromagnetic-interference patterns phased on the pixel clock (jwst emicorr).",
)
