"""resample: drizzle one calibrated image onto a distortion-free sky grid (``_i2d``).

As jwst's resample step does in calwebb_image2 (jwst documentation "resample"): the output
WCS from the input's footprint (jwst's ``resampled_wcs_from_models``), inverse-variance
weights, drizzle's C kernel (the ``drizzle`` package, as jwst uses it through stcal) for
SCI and for the square roots of VAR_POISSON, VAR_RNOISE and VAR_FLAT, ERR from the
resampled variances, the context image, and the i2d's metadata, through jwst's
``ResampleImage`` object. What is this project's own is the pixel map (each input pixel's
position in the output grid), which jwst computes by evaluating the gwcs pipeline on every
pixel (4 M evaluations of the distortion polynomials and two sky projections for a
full frame, about 40 % of jwst's resample time): :func:`pixel_map` evaluates the exact gwcs
transforms only on a coarse grid of nodes, interpolates them with bicubic splines, and
checks the result against exact evaluations at the centre of every grid cell (where
spline interpolation errs most), halving the node spacing until the largest difference is
below ``PIXMAP_TOLERANCE`` (1e-4 output px, ten times tighter than issue 12's 1e-3 px
agreement). Only exposures of jwst's ``Image2Pipeline.image_exptypes`` (NRC_IMAGE,
NIS_IMAGE, MIR_IMAGE, FGS_IMAGE) are resampled; the step is SKIPPED for others, as in jwst.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
from types import SimpleNamespace

import numba
import numpy as np

from calib.background import wait_for_writes
from calib.drizzle import corner_map, drizzle_square
from calib.errors import InputError
from calib.params import SUPPORT_DEFAULT_ONLY, SUPPORT_IGNORED, SUPPORT_NATIVE, Param
from calib.step import StepSpec

__all__ = ["STEP", "STEP_IMAGE3", "resample_image", "make_resampler", "pixel_map", "pixel_map_splines", "pixel_corners",
           "PIXMAP_TOLERANCE"]

#: jwst's ``Image2Pipeline.image_exptypes``
IMAGE_EXP_TYPES = ("MIR_IMAGE", "NRC_IMAGE", "NIS_IMAGE", "FGS_IMAGE")
#: largest allowed difference (output px) between the interpolated and the exact pixel map
#: at the centres of the node grid's cells
PIXMAP_TOLERANCE = 1e-4

#: rows per task of the row-parallel kernels that run beside the ``_cal``'s background write:
#: handed out one task at a time (``numba.parallel_chunksize``) instead of one equal share
#: per thread, so a thread that loses its core to the writer does not hold the others up
#: (the static split made the corner map 2-6x slower during the write)
DYNAMIC_ROWS = 64


@numba.njit(cache=True, nogil=True, parallel=True)
def _count_unmatched(data, err, dq, var_rnoise, var_poisson, var_flat):
    """Pixels invalid somewhere (NaN in an array or DO_NOT_USE) but not NaN + DO_NOT_USE everywhere."""
    ny, nx = data.shape
    bad = 0
    for y in numba.prange(ny):
        for x in range(nx):
            n = (np.isnan(data[y, x]) + np.isnan(err[y, x]) + np.isnan(var_rnoise[y, x])
                 + np.isnan(var_poisson[y, x]) + np.isnan(var_flat[y, x]))
            flagged = (dq[y, x] & 1) != 0
            if (n > 0 or flagged) and not (n == 5 and flagged):
                bad += 1
    return bad


#: float32 bits numpy stores for ``np.nan`` (what ``match_nans_and_flags`` writes)
NAN_BITS = np.uint32(np.array(np.nan, np.float32).view(np.uint32))


@numba.njit(cache=True, nogil=True, inline="always")
def _bits(b, swapped):
    """Return a float32/uint32 value's bits from a uint32 view of its array (byte-swapped when ``swapped``)."""
    if swapped:
        return ((b & np.uint32(0xFF)) << np.uint32(24)) | ((b & np.uint32(0xFF00)) << np.uint32(8)) \
            | ((b >> np.uint32(8)) & np.uint32(0xFF00)) | (b >> np.uint32(24))
    return b


@numba.njit(cache=True, nogil=True, inline="always")
def _nan_bits(b):
    return (b & np.uint32(0x7F800000)) == np.uint32(0x7F800000) and (b & np.uint32(0x007FFFFF)) != 0


@numba.njit(cache=True, nogil=True, parallel=True)
def _match_flags_bits(f0, f1, f2, f3, f4, dq, fsw, dqsw, mask, flag, apply):
    """``dq |= flag`` where ``mask``, then jwst's ``match_nans_and_flags`` on the bits of the arrays.

    ``f0..f4``: uint32 views of the five float32 arrays (SCI, ERR, VAR_*), ``dq`` of DQ, byte-swapped
    when ``fsw``/``dqsw``; ``mask`` bool (ny, nx) or (0, 0) for none. A pixel is invalid when NaN in
    one of the five or DO_NOT_USE (after the flag); it gets DO_NOT_USE and numpy's NaN (``NAN_BITS``)
    in all five. With ``apply`` the arrays are changed; without, nothing is written and the count of
    pixels where a byte would change is returned (0: ``match_nans_and_flags`` changes nothing).
    """
    ny, nx = dq.shape
    use_mask = mask.shape[0] > 0
    nanb = _bits(NAN_BITS, fsw)
    changes = 0
    for y in numba.prange(ny):
        for x in range(nx):
            d = _bits(dq[y, x], dqsw)
            if use_mask and mask[y, x]:
                d |= flag
            if not ((d & np.uint32(1)) != 0 or _nan_bits(_bits(f0[y, x], fsw)) or _nan_bits(_bits(f1[y, x], fsw))
                    or _nan_bits(_bits(f2[y, x], fsw)) or _nan_bits(_bits(f3[y, x], fsw))
                    or _nan_bits(_bits(f4[y, x], fsw))):
                if d != _bits(dq[y, x], dqsw):
                    changes += 1
                    if apply:
                        dq[y, x] = _bits(d, dqsw)
                continue
            d |= np.uint32(1)
            if apply:
                dq[y, x] = _bits(d, dqsw)
                f0[y, x] = nanb
                f1[y, x] = nanb
                f2[y, x] = nanb
                f3[y, x] = nanb
                f4[y, x] = nanb
            elif (d != _bits(dq[y, x], dqsw) or f0[y, x] != nanb or f1[y, x] != nanb or f2[y, x] != nanb
                  or f3[y, x] != nanb or f4[y, x] != nanb):
                changes += 1
    return changes


def _bit_views(model):
    """uint32 views of SCI, ERR, VAR_RNOISE, VAR_POISSON, VAR_FLAT and DQ with their byte orders, or None.

    None unless all six are 2-D arrays of SCI's shape, the five float32 of one byte order and
    DQ uint32 (either byte order).
    """
    inst = model.instance
    arrays = [inst.get(n) for n in ("data", "err", "var_rnoise", "var_poisson", "var_flat", "dq")]
    if any(not isinstance(a, np.ndarray) or a.ndim != 2 or a.shape != arrays[0].shape for a in arrays):
        return None
    floats, dq = arrays[:5], arrays[5]
    order = floats[0].dtype.newbyteorder("=")
    if any(a.dtype.kind != "f" or a.dtype.itemsize != 4 or a.dtype != floats[0].dtype for a in floats) \
            or order != np.float32 or dq.dtype.kind != "u" or dq.dtype.itemsize != 4:
        return None
    views = [np.asarray(a).view(np.uint32) for a in arrays]
    return views, not floats[0].dtype.isnative, not dq.dtype.isnative


def match_nans_and_flags_fast(model, mask=None, flag: int = 0) -> bool:
    """``model.dq |= mask * flag`` then jwst's ``match_nans_and_flags``, in one numba pass on the bits.

    Parameters
    ----------
    model : stdatamodels.jwst.datamodels.ImageModel
        SCI, ERR, VAR_RNOISE, VAR_POISSON, VAR_FLAT float32 (ny, nx) (either byte order), DQ
        uint32 (ny, nx); changed in place.
    mask : numpy.ndarray, optional
        bool (ny, nx): pixels that get ``flag`` in DQ first.
    flag : int
        DQ bits set where ``mask``.

    Returns
    -------
    bool
        False when the arrays are not as above (nothing was done: use jwst's function); True
        when done: every pixel NaN in one of the five arrays or with DO_NOT_USE has DO_NOT_USE
        and numpy's NaN (the same bytes ``match_nans_and_flags`` writes) in all five.
    """
    got = _bit_views(model)
    if got is None:
        return False
    (f0, f1, f2, f3, f4, dq), fsw, dqsw = got
    m = np.zeros((0, 0), np.bool_) if mask is None else np.ascontiguousarray(mask, np.bool_)
    _match_flags_bits(f0, f1, f2, f3, f4, dq, fsw, dqsw, m, np.uint32(flag), True)
    return True


def match_changes_nothing(model) -> bool:
    """Whether jwst's ``match_nans_and_flags`` would leave every byte of ``model``'s arrays as it is.

    True only when the six arrays are as :func:`match_nans_and_flags_fast` takes them and every
    invalid pixel already has DO_NOT_USE and numpy's NaN bytes in all five float arrays.
    """
    got = _bit_views(model)
    if got is None:
        return False
    (f0, f1, f2, f3, f4, dq), fsw, dqsw = got
    with numba.parallel_chunksize(DYNAMIC_ROWS):
        return _match_flags_bits(f0, f1, f2, f3, f4, dq, fsw, dqsw, np.zeros((0, 0), np.bool_), np.uint32(0),
                                 False) == 0


def nans_and_flags_matched(model) -> bool:
    """Whether jwst's ``match_nans_and_flags`` would leave ``model`` as it is.

    Parameters
    ----------
    model : stdatamodels.jwst.datamodels.ImageModel
        SCI, ERR, VAR_RNOISE, VAR_POISSON, VAR_FLAT float32 (ny, nx), DQ uint32 (ny, nx).

    Returns
    -------
    bool
        True when all six arrays are present with SCI's shape and every pixel that is NaN in
        one of the five float arrays or has DO_NOT_USE is NaN in all five and has DO_NOT_USE
        (calib's flat_field leaves its output so); False otherwise (then it must run).
    """
    inst = model.instance
    names = ("data", "err", "dq", "var_rnoise", "var_poisson", "var_flat")
    arrays = [inst.get(n) for n in names]
    if any(not isinstance(a, np.ndarray) or a.shape != arrays[0].shape or a.ndim != 2 for a in arrays):
        return False
    data, err, dq, vr, vp, vf = arrays
    if any(a.dtype != np.float32 for a in (data, err, vr, vp, vf)) or dq.dtype != np.uint32:
        return False
    with numba.parallel_chunksize(DYNAMIC_ROWS):   # see DYNAMIC_ROWS
        return _count_unmatched(data, err, dq, vr, vp, vf) == 0


@numba.njit(cache=True, nogil=True, inline="always")
def _variance_weight(sq_rn, ivm, texp):
    """Return stcal's resample weight of one output pixel (float64).

    ``float32(1 / VAR_RNOISE)`` where VAR_RNOISE (the float32 square of its drizzled square
    root ``sq_rn``) is > 0 and finite when ``ivm``, else 0; ``texp`` without ``ivm``.
    """
    if ivm:
        rn = sq_rn * sq_rn
        return np.float64(np.float32(1.0) / rn) if (rn > 0 and np.isfinite(rn)) else 0.0
    return texp


@numba.njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def _accumulate_variance(sq, sq_rn, ivm, texp, wsum, wt):
    """Add one input's resampled variance to stcal's running sums, with stcal's arithmetic.

    ``sq``/``sq_rn``: float32 (my, mx) drizzled square roots of the variance and of
    VAR_RNOISE (variance = their float32 square). Weight w (float64): ``float32(1 / VAR_RNOISE)``
    where VAR_RNOISE > 0 and finite (``ivm``), else ``texp``; where w > 0 and the variance is
    finite and >= 0: ``wsum = float32(nan_to_0(wsum) + var w w)`` (double), ``wt = float32(wt + w)``.
    """
    my, mx = sq.shape
    for y in numba.prange(my):
        for x in range(mx):
            w = _variance_weight(sq_rn[y, x], ivm, texp)
            if not w > 0.0:
                continue
            s = sq[y, x]
            v = s * s
            if not (v >= 0 and np.isfinite(v)):
                continue
            old = wsum[y, x]
            acc = 0.0 if np.isnan(old) else np.float64(old)
            term = np.float64(v) * w * w
            if not np.isnan(term):
                acc += term
            wsum[y, x] = np.float32(acc)
            wt[y, x] = np.float32(np.float64(wt[y, x]) + w)


@numba.njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def _usable_alike(block, rn, ivm, texp):
    """Return whether an input's variances are usable (finite, >= 0) all alike wherever its weight is > 0.

    ``block`` (k, my, mx): their drizzled square roots; ``rn``: the index of VAR_RNOISE's.
    """
    k, my, mx = block.shape
    bad = 0
    for y in numba.prange(my):
        for x in range(mx):
            w = _variance_weight(block[rn, y, x], ivm, texp)
            if not w > 0.0:
                continue
            n_ok = 0
            for e in range(k):
                s = block[e, y, x]
                v = s * s
                if v >= 0 and np.isfinite(v):
                    n_ok += 1
            if n_ok != 0 and n_ok != k:
                bad += 1
    return bad == 0


@numba.njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def _accumulate_variances_shared(block, rn, ivm, texp, wsum, wt):
    """Add every plane of ``block`` (k, my, mx) to ``wsum`` (k, my, mx) as :func:`_accumulate_variance` does.

    With one weight sum ``wt`` (my, mx) for all: valid where :func:`_usable_alike` holds (then each
    plane's own weight sum would be this one, bit for bit).
    """
    k, my, mx = block.shape
    for y in numba.prange(my):
        for x in range(mx):
            w = _variance_weight(block[rn, y, x], ivm, texp)
            if not w > 0.0:
                continue
            added = False
            for e in range(k):
                s = block[e, y, x]
                v = s * s
                if not (v >= 0 and np.isfinite(v)):
                    continue
                old = wsum[e, y, x]
                acc = 0.0 if np.isnan(old) else np.float64(old)
                term = np.float64(v) * w * w
                if not np.isnan(term):
                    acc += term
                wsum[e, y, x] = np.float32(acc)
                added = True
            if added:
                wt[y, x] = np.float32(np.float64(wt[y, x]) + w)


@numba.njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def _final_variance(wsum, wt, scaling, out):
    """Return stcal's final variance in float32: ``wsum * scaling / wt / wt``."""
    my, mx = wsum.shape
    for y in numba.prange(my):
        for x in range(mx):
            out[y, x] = wsum[y, x] * scaling / wt[y, x] / wt[y, x]


@numba.njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def _final_variance_one(sq, sq_rn, ivm, texp, scaling, out):
    """Make the final variance of a single input from its drizzled square roots (``out`` may be ``sq``).

    What :func:`_accumulate_variance` into fresh sums (NaN, 0) and :func:`_final_variance`
    give, without the sums: ``float32(var w w) * scaling / float32(w) / float32(w)`` in float32
    where w > 0 and the variance is finite and >= 0, NaN elsewhere.
    """
    my, mx = sq.shape
    nan = np.float32(np.nan)
    for y in numba.prange(my):
        for x in range(mx):
            w = _variance_weight(sq_rn[y, x], ivm, texp)
            s = sq[y, x]
            v = s * s
            if not (w > 0.0 and v >= 0 and np.isfinite(v)):
                out[y, x] = nan
                continue
            wsum = np.float32(0.0 + np.float64(v) * w * w)
            wt = np.float32(w)
            out[y, x] = wsum * scaling / wt / wt


@numba.njit(cache=True, nogil=True, parallel=True)
def _error_from_variances(var, out):
    """ERR = sqrt of the NaN-skipping float32 sum over ``var`` (k, my, mx) in order; NaN where all are NaN."""
    k, my, mx = var.shape
    for y in numba.prange(my):
        for x in range(mx):
            acc = np.float32(0.0)
            n = 0
            for e in range(k):
                v = var[e, y, x]
                if np.isnan(v):
                    v = np.float32(0.0)
                    n += 1
                acc = v if e == 0 else acc + v
            out[y, x] = np.float32(np.nan) if n == k else np.sqrt(acc)


@numba.njit(cache=True, nogil=True, parallel=True)
def _ivm_weight(var, dq, bad, out):
    """Make stcal's ivm weights: ``float32(1 / var)`` (0 where not finite) times 1 where ``dq & bad == 0``, else 0."""
    ny, nx = var.shape
    one = np.float32(1.0)
    for y in numba.prange(ny):
        for x in range(nx):
            inv = one / var[y, x]
            if not np.isfinite(inv):
                inv = np.float32(0.0)
            out[y, x] = inv * (one if (dq[y, x] & bad) == 0 else np.float32(0.0))


def driz_weight(model: dict, weight_type, good_bits, flag_name_map) -> np.ndarray:
    """Make the drizzle weights as stcal's ``build_driz_weight``, in one numba pass for ivm weights.

    Parameters
    ----------
    model : dict
        stcal's input dict: ``data`` (ny, nx), ``dq`` unsigned integer (ny, nx), ``var_rnoise``
        float32 (ny, nx) (MJy/sr)**2.
    weight_type : str or None
        "ivm" here; anything else (and a missing or odd VAR_RNOISE or DQ) goes to stcal.
    good_bits, flag_name_map
        As stcal's: the DQ bits ignored (an int, a flag string such as jwst's
        ``"~DO_NOT_USE+NON_SCIENCE"``, or None).

    Returns
    -------
    numpy.ndarray
        float32 (ny, nx): ``float32(1 / VAR_RNOISE)`` where that is finite, else 0, times
        the DQ mask (1 where no bit outside ``good_bits`` is set, else 0), bit-identical to
        ``stcal.resample.utils.build_driz_weight``.
    """
    from astropy.nddata.bitmask import interpret_bit_flags
    from stcal.resample.utils import build_driz_weight

    data, dq, var = model["data"], model.get("dq"), model.get("var_rnoise")
    bits = interpret_bit_flags(good_bits, flag_name_map=flag_name_map)
    if (weight_type != "ivm" or not isinstance(var, np.ndarray) or var.dtype != np.float32
            or var.shape != data.shape or not isinstance(dq, np.ndarray) or dq.shape != data.shape
            or dq.dtype.kind != "u" or not (bits is None or isinstance(bits, int))):
        return build_driz_weight(model, weight_type=weight_type, good_bits=good_bits, flag_name_map=flag_name_map)
    width = (1 << (8 * dq.dtype.itemsize)) - 1
    bad = 0 if bits is None else (~bits) & width
    out = np.empty(data.shape, np.float32)
    with numba.parallel_chunksize(DYNAMIC_ROWS):
        _ivm_weight(var, dq, dq.dtype.type(bad), out)
    return out


def _bbox_limits(wcs, shape):
    """Integer pixel limits (xmin, xmax, ymin, ymax) of a gwcs bounding box within ``shape``."""
    ny, nx = shape
    bbox = getattr(wcs, "bounding_box", None)
    if bbox is None:
        return 0, nx - 1, 0, ny - 1
    try:
        (x0, x1), (y0, y1) = bbox.bounding_box(order="F")
    except AttributeError:
        (x0, x1), (y0, y1) = tuple(bbox)
    return (max(0, math.ceil(x0)), min(nx - 1, math.floor(x1)), max(0, math.ceil(y0)), min(ny - 1, math.floor(y1)))


def _nodes(lo: int, hi: int, step: int) -> np.ndarray:
    out = np.arange(lo, hi + 1, step, dtype=np.float64)
    if out[-1] != hi:
        out = np.append(out, float(hi))
    return out


@numba.njit(cache=True)
def _cubic_basis(t, x, out):
    """Return the knot span of x and its 4 nonzero cubic B-splines.

    The span m has t[m] <= x < t[m+1] (clamped to the spline's range); ``out`` receives
    N[m-3..m](x) by de Boor's recurrence ("The NURBS Book", algorithm A2.2).
    """
    n = t.size
    m = np.searchsorted(t, x, side="right") - 1
    m = min(max(m, 3), n - 5)
    left = np.empty(4)
    right = np.empty(4)
    out[0] = 1.0
    for j in range(1, 4):
        left[j] = x - t[m + 1 - j]
        right[j] = t[m + j] - x
        saved = 0.0
        for r in range(j):
            temp = out[r] / (right[r + 1] + left[j - r])
            out[r] = saved + right[r + 1] * temp
            saved = left[j - r] * temp
        out[j] = saved
    return m


@numba.njit(cache=True)
def _basis_table(t, xa, m, b):
    """Knot spans ``m`` (n,) and nonzero cubic B-splines ``b`` (n, 4) at each of ``xa`` (:func:`_cubic_basis`)."""
    for i in range(xa.size):
        m[i] = _cubic_basis(t, xa[i], b[i])


@numba.njit(cache=True, nogil=True)
def _column_sums(c, mx, bx, q):
    """``q[row, i] = sum_b bx[i, b] c[row, mx[i] - 3 + b]`` (b = 0..3, summed in that order).

    The inner sums of a bicubic spline at the columns ``i``, for every coefficient row: a
    value at (row r, column i) is then ``sum_a by[r, a] q[my[r] - 3 + a, i]``, the same
    operations in the same order as the direct double sum (so bit-identical to it) at a
    quarter of its cost per point. Serial: a few hundred thousand multiply-adds at most
    (~0.3 ms for a full frame's 2048 columns), less than waking numba's threads costs
    beside the ``_cal``'s background write (1-9 ms measured for the parallel form).
    """
    nrow = c.shape[0]
    for row in range(nrow):
        for i in range(mx.size):
            p = 0.0
            for b in range(4):
                p += bx[i, b] * c[row, mx[i] - 3 + b]
            q[row, i] = p


@numba.njit(cache=True, inline="always")
def _spline_row(qx, qy, m, by, i0, out):
    """One row of the two splines from their column sums: ``out[i0 + k] = (x, y)`` for every column k."""
    for k in range(qx.shape[1]):
        vx = 0.0
        vy = 0.0
        for a in range(4):
            vx += by[a] * qx[m - 3 + a, k]
            vy += by[a] * qy[m - 3 + a, k]
        out[i0 + k, 0] = vx
        out[i0 + k, 1] = vy


def _spline_tables(t, xa):
    m = np.empty(xa.size, np.int64)
    b = np.empty((xa.size, 4))
    _basis_table(t, xa, m, b)
    return m, b


def _column_tables(tx, cx, cy, xa):
    mx, bx = _spline_tables(tx, xa)
    qx = np.empty((cx.shape[0], xa.size))
    qy = np.empty_like(qx)
    _column_sums(cx, mx, bx, qx)
    _column_sums(cy, mx, bx, qy)
    return qx, qy


@numba.njit(cache=True, nogil=True, parallel=True)
def _spline_rows(qx, qy, my, by, out):
    """Rows of the two splines on a grid from their column sums (:func:`_column_sums`): out (ny, nx, 2)."""
    for r in numba.prange(my.size):
        _spline_row(qx, qy, my[r], by[r], 0, out[r])


@numba.njit(cache=True, nogil=True)
def _spline_rows_serial(qx, qy, my, by, out):
    """:func:`_spline_rows` in one thread (the same values): for grids too small to share out.

    Written out, not ``numba.njit(...)(_spline_rows.py_func)``: numba's on-disk cache keys a
    function by its bytecode and signature, not by ``parallel``, so the two would share a cache
    entry (whichever compiled first).
    """
    for r in range(my.size):
        _spline_row(qx, qy, my[r], by[r], 0, out[r])


#: grid points below which :func:`_spline_grid` evaluates in one thread (the fit's check
#: grid, ~1000 points: waking numba's threads costs more than the evaluation)
SERIAL_GRID = 65536


def _spline_grid(ty, tx, cx, cy, ya, xa, out):
    """Evaluate two bicubic splines sharing knots (ty, tx) on the grid ya x xa.

    ``cx``/``cy``: their coefficients (len(ty) - 4, len(tx) - 4); ``out`` (len(ya), len(xa), 2)
    receives (x value, y value) at each grid point: for each, ``sum_a by_a (sum_b bx_b c_ab)``
    in that order, the inner sums shared by every row (:func:`_column_sums`).
    """
    qx, qy = _column_tables(tx, cx, cy, xa)
    my, by = _spline_tables(ty, ya)
    if ya.size * xa.size < SERIAL_GRID:
        _spline_rows_serial(qx, qy, my, by, out)
    else:
        _spline_rows(qx, qy, my, by, out)


@numba.njit(cache=True, inline="always")
def _cell(v, n):
    """Index of the grid cell [i, i + 1] (0 <= i <= n - 2) bilinear interpolation at ``v`` uses."""
    i = int(v)
    if i < 0:
        return 0
    if i > n - 2:
        return n - 2
    return i


@numba.njit(cache=True, nogil=True, parallel=True)
def _spline_corners(qx, qy, ty, limits, ny, nx, xmin, xmax, ymin, ymax, chunk, nbuf, cx, cy):
    """Output positions of the input pixel corners, interpolated in the splines' pixel map.

    What :func:`calib.drizzle.corner_map` gives on the pixel map :func:`pixel_map` makes from
    these splines (``qx``/``qy``: their column sums at columns ``limits[0]..limits[1]``;
    NaN outside the rows and columns of ``limits``), bit for bit, without the map: each
    task of ``chunk`` corner rows evaluates the map rows it interpolates between into its
    thread's buffer (``nbuf``: numba's thread count, ``NUMBA_NUM_THREADS``); the corners'
    cells and weights along x, the same for every row, are computed once.
    """
    lx0, ly0, ly1 = limits[0], limits[2], limits[3]
    ncr = ymax - ymin + 2
    ncc = xmax - xmin + 2
    nchunk = (ncr + chunk - 1) // chunk
    ci0 = np.empty(ncc, np.int64)
    cfx = np.empty(ncc)
    cgx = np.empty(ncc)
    for ci in range(ncc):
        x = xmin + ci - 0.5
        i0 = _cell(x, nx)
        ci0[ci] = i0
        cfx[ci] = x - i0
        cgx[ci] = 1.0 - (x - i0)
    bufs = np.empty((nbuf, chunk + 2, nx, 2))
    for c in numba.prange(nchunk):
        r0 = c * chunk
        r1 = min(r0 + chunk, ncr)
        jlo = min(max(int(ymin + r0 - 0.5), 0), ny - 2)
        jhi = min(max(int(ymin + r1 - 1 - 0.5), 0), ny - 2) + 1
        buf = bufs[numba.get_thread_id()][:jhi - jlo + 1]     # this task's thread's alone
        buf[:] = np.nan
        by = np.empty(4)
        for j in range(max(jlo, ly0), min(jhi, ly1) + 1):
            m = _cubic_basis(ty, np.float64(j), by)
            _spline_row(qx, qy, m, by, lx0, buf[j - jlo])
        for cj in range(r0, r1):
            y = ymin + cj - 0.5
            j0 = _cell(y, ny)
            fy = y - j0
            gy = 1.0 - fy
            p = buf[j0 - jlo]
            q = buf[j0 + 1 - jlo]
            for ci in range(ncc):
                i0 = ci0[ci]
                fx = cfx[ci]
                gx = cgx[ci]
                cx[cj, ci] = (p[i0, 0] * gx * gy + p[i0 + 1, 0] * fx * gy
                              + q[i0, 0] * gx * fy + q[i0 + 1, 0] * fx * fy)
                cy[cj, ci] = (p[i0, 1] * gx * gy + p[i0 + 1, 1] * fx * gy
                              + q[i0, 1] * gx * fy + q[i0 + 1, 1] * fx * fy)


@dataclasses.dataclass
class _MapSplines:
    """The checked interpolation of a pixel map (:func:`_fit_pixel_map`)."""

    shape: tuple[int, int]
    limits: tuple[int, int, int, int]       # xmin, xmax, ymin, ymax of the valid pixels
    ty: np.ndarray
    tx: np.ndarray
    cx: np.ndarray
    cy: np.ndarray
    max_error: float
    step: int


#: the fits of one calwebb_image3 run (:func:`pixel_fit_cache`), or None outside one
_FIT_CACHE: dict | None = None


@contextlib.contextmanager
def pixel_fit_cache():
    """Reuse the pixel-map fits of one member onto one output grid while the block runs.

    calwebb_image3 maps each member onto the same grid three times (outlier_detection's
    single, its blot, the final resample): inside this block :func:`pixel_map` and
    :func:`pixel_corners` fit the splines once per member and output transform. A fit is
    reused for the same input WCS object (held here, so its ``id`` is not reused) with the
    same shape, tolerance and step, when the output WCS is the same object or its backward
    transform returns bit-identical values at every sky position the fit evaluated (the fit
    is a function of those values only): the result is then the one a new fit would make.
    The input WCS objects must not change inside the block (image3: tweakreg, which
    changes them, runs before any pixel map). Exact maps (no spline fit) are not kept.
    The fits are released when the block ends.
    """
    global _FIT_CACHE
    saved, _FIT_CACHE = _FIT_CACHE, {}
    try:
        yield
    finally:
        _FIT_CACHE = saved


def _fit_pixel_map(wcs_from, wcs_to, shape, tolerance, step):
    """Fit the splines of :func:`pixel_map` (a :class:`_MapSplines`), or make the exact map (ny, nx, 2) if needed.

    Inside :func:`pixel_fit_cache`, a fit already made for the same input and an equal output
    transform is returned instead.
    """
    cache = _FIT_CACHE
    if cache is None:
        return _fit_pixel_map_new(wcs_from, wcs_to, shape, tolerance, step)[0]
    key = (id(wcs_from), tuple(shape), float(tolerance), int(step))
    entry = cache.setdefault(key, (wcs_from, []))
    back = None
    for to, calls, fit in entry[1]:
        if to is wcs_to:
            return fit
        if back is None:
            back = wcs_to.backward_transform
        if all(_same_values(back(*sky), out) for sky, out in calls):
            entry[1].append((wcs_to, calls, fit))
            return fit
    fit, calls = _fit_pixel_map_new(wcs_from, wcs_to, shape, tolerance, step)
    if isinstance(fit, _MapSplines):
        entry[1].append((wcs_to, calls, fit))
    return fit


def _same_values(a, b) -> bool:
    """Whether two transform outputs (tuples of arrays) are bit-identical."""
    a, b = tuple(np.asarray(v) for v in a), tuple(np.asarray(v) for v in b)
    return len(a) == len(b) and all(u.dtype == v.dtype and u.shape == v.shape and u.tobytes() == v.tobytes()
                                    for u, v in zip(a, b, strict=True))


def _fit_pixel_map_new(wcs_from, wcs_to, shape, tolerance, step):
    """:func:`_fit_pixel_map` without the cache; also return the (sky, output) of every exact evaluation."""
    from scipy.interpolate import RectBivariateSpline

    ny, nx = shape
    xmin, xmax, ymin, ymax = _bbox_limits(wcs_from, shape)
    fwd, back = wcs_from.forward_transform, wcs_to.backward_transform
    calls = []

    def exact(x, y):
        sky = fwd(x, y)
        out = back(*sky)
        calls.append((sky, out))
        return out

    step = min(step, (min(xmax - xmin, ymax - ymin) + 1) // 8)      # at least 8 cells per axis
    while True:
        if step <= 2:
            pixmap = np.full((ny, nx, 2), np.nan)      # NaN outside the bounding box
            yy, xx = np.mgrid[ymin:ymax + 1, xmin:xmax + 1].astype(np.float64)
            ox, oy = back(*fwd(xx, yy))        # not recorded: an exact map is not kept
            pixmap[ymin:ymax + 1, xmin:xmax + 1, 0] = ox
            pixmap[ymin:ymax + 1, xmin:xmax + 1, 1] = oy
            return pixmap, None
        xs, ys = _nodes(xmin, xmax, step), _nodes(ymin, ymax, step)
        gx, gy = np.meshgrid(xs, ys)
        ox, oy = exact(gx, gy)
        if not (np.isfinite(ox).all() and np.isfinite(oy).all()):
            step = 2                      # a map with holes: evaluate every pixel
            continue
        sx = RectBivariateSpline(ys, xs, ox, kx=3, ky=3, s=0)
        sy = RectBivariateSpline(ys, xs, oy, kx=3, ky=3, s=0)
        (ty, tx), (ty2, tx2) = sx.get_knots(), sy.get_knots()
        if not (np.array_equal(ty, ty2) and np.array_equal(tx, tx2)):   # s=0 on one grid: never
            raise RuntimeError("pixel_map: the two interpolating splines have different knots")
        shape_c = (ty.size - 4, tx.size - 4)
        cx, cy = sx.get_coeffs().reshape(shape_c), sy.get_coeffs().reshape(shape_c)
        xm, ym = 0.5 * (xs[:-1] + xs[1:]), 0.5 * (ys[:-1] + ys[1:])
        mx, my = np.meshgrid(xm, ym)
        ex, ey = exact(mx, my)
        at = np.empty((ym.size, xm.size, 2))
        _spline_grid(ty, tx, cx, cy, ym, xm, at)
        max_error = float(np.max(np.hypot(at[..., 0] - ex, at[..., 1] - ey)))
        if max_error <= tolerance:
            return _MapSplines((ny, nx), (xmin, xmax, ymin, ymax), ty, tx, cx, cy, max_error, step), calls
        step //= 2


def pixel_map(wcs_from, wcs_to, shape: tuple[int, int], tolerance: float = PIXMAP_TOLERANCE,
              step: int = 64) -> tuple[np.ndarray, float, int]:
    """Positions of the input pixels in the output grid, interpolated with a checked error.

    Parameters
    ----------
    wcs_from : gwcs.WCS
        The input image's WCS (detector -> world), its bounding box marking valid pixels.
    wcs_to : gwcs.WCS
        The output (resampled) WCS; its inverse is used without its bounding box, as jwst's
        ``calc_pixmap`` does.
    shape : tuple of int
        (ny, nx) of the input image.
    tolerance : float
        Largest allowed difference, output px, between the interpolation and exact
        evaluations at the centres of the node cells.
    step : int
        Initial node spacing, px (halved until the tolerance holds; exact evaluation of
        every pixel when it reaches 2).

    Returns
    -------
    pixmap : numpy.ndarray
        float64 (ny, nx, 2): output x and y (0-based) of each input pixel centre; NaN outside
        the input's bounding box (drizzle's ``pixmap`` layout).
    max_error : float
        The largest difference found at the cell centres, output px (0 when exact).
    step : int
        The node spacing used, px.

    Notes
    -----
    The map is smooth (polynomial distortion, a gnomonic projection and an affine output
    grid), so bicubic interpolation errs at O(step**4) times its fourth derivatives; the
    error is checked, not assumed: at the centre of every cell of the node grid (the
    points farthest from nodes) the exact map is evaluated and compared.
    """
    fit = _fit_pixel_map(wcs_from, wcs_to, shape, tolerance, step)
    if isinstance(fit, np.ndarray):
        return fit, 0.0, 1
    ny, nx = shape
    xmin, xmax, ymin, ymax = fit.limits
    pixmap = np.empty((ny, nx, 2))
    pixmap[:ymin] = np.nan                # outside the bounding box
    pixmap[ymax + 1:] = np.nan
    pixmap[:, :xmin] = np.nan
    pixmap[:, xmax + 1:] = np.nan
    xa, ya = np.arange(xmin, xmax + 1, dtype=np.float64), np.arange(ymin, ymax + 1, dtype=np.float64)
    _spline_grid(fit.ty, fit.tx, fit.cx, fit.cy, ya, xa, pixmap[ymin:ymax + 1, xmin:xmax + 1])
    return pixmap, fit.max_error, fit.step


def pixel_map_splines(wcs_from, wcs_to, shape: tuple[int, int], tolerance: float = PIXMAP_TOLERANCE,
                      step: int = 64):
    """:func:`pixel_map` as tables from which a numba kernel evaluates its rows (no (ny, nx, 2) map).

    Parameters
    ----------
    wcs_from, wcs_to, shape, tolerance, step
        As for :func:`pixel_map`.

    Returns
    -------
    numpy.ndarray or tuple
        The exact map (float64 (ny, nx, 2), as :func:`pixel_map` returns it) when no spline
        fit holds; else ``(qx, qy, ty, limits)``: the splines' column sums (float64 (k,
        xmax - xmin + 1), :func:`_column_sums` at columns xmin..xmax), their y knots and
        int64 (xmin, xmax, ymin, ymax) of the mapped pixels. Row j (ymin <= j <= ymax) of
        :func:`pixel_map`'s map at columns xmin..xmax is then ``_spline_row(qx, qy, m, by, 0,
        out)`` with ``m = _cubic_basis(ty, float(j), by)``, bit for bit; NaN elsewhere.
    """
    fit = _fit_pixel_map(wcs_from, wcs_to, shape, tolerance, step)
    if isinstance(fit, np.ndarray):
        return fit
    lx0, lx1 = fit.limits[0], fit.limits[1]
    qx, qy = _column_tables(fit.tx, fit.cx, fit.cy, np.arange(lx0, lx1 + 1, dtype=np.float64))
    return qx, qy, fit.ty, np.array(fit.limits, np.int64)


#: corner rows per task of :func:`pixel_corners`
CORNER_ROWS = 32


def pixel_corners(wcs_from, wcs_to, shape: tuple[int, int], bounds, tolerance: float = PIXMAP_TOLERANCE,
                  step: int = 64):
    """Map the input pixel corners to the output: ``corner_map(pixel_map(...), bounds)`` without the map.

    Parameters
    ----------
    wcs_from, wcs_to, shape, tolerance, step
        As for :func:`pixel_map`.
    bounds : tuple of int
        (xmin, xmax, ymin, ymax), the inclusive input range drizzled.

    Returns
    -------
    corners : tuple of numpy.ndarray
        (cx, cy), float64 (ymax - ymin + 2, xmax - xmin + 2), bit-identical to
        :func:`calib.drizzle.corner_map` of :func:`pixel_map`'s map (for
        :func:`calib.drizzle.drizzle_square` with ``pixfrac`` 1); the (ny, nx, 2) map itself
        (67 MB for a full frame) is never made when the splines hold.
    max_error : float
        As for :func:`pixel_map`.
    step : int
        As for :func:`pixel_map`.
    """
    rows, max_error, step = pixel_corner_rows(wcs_from, wcs_to, shape, bounds, tolerance, step)
    ymin, ymax = int(bounds[2]), int(bounds[3])
    return (rows(ymin, ymax) if callable(rows) else rows), max_error, step


def pixel_corner_rows(wcs_from, wcs_to, shape: tuple[int, int], bounds, tolerance: float = PIXMAP_TOLERANCE,
                      step: int = 64):
    """:func:`pixel_corners` on demand, for any block of input rows (a form ``drizzle_square`` takes).

    Parameters
    ----------
    wcs_from, wcs_to, shape, bounds, tolerance, step
        As for :func:`pixel_corners`.

    Returns
    -------
    corners : callable or tuple of numpy.ndarray
        ``corners(j0, j1)``: the rows of :func:`pixel_corners`' corners (float64 (j1 - j0 + 2,
        xmax - xmin + 2)) of input rows ``j0..j1`` (inclusive, inside ``bounds``), bit-identical
        to them (each corner row is evaluated from the same spline rows whatever the block);
        the whole (cx, cy) when the map is exact (no spline fit).
    max_error, step : float, int
        As for :func:`pixel_map`.
    """
    fit = _fit_pixel_map(wcs_from, wcs_to, shape, tolerance, step)
    if isinstance(fit, np.ndarray):
        return corner_map(fit, bounds), 0.0, 1
    ny, nx = shape
    xmin, xmax = int(bounds[0]), int(bounds[1])
    lx0, lx1 = fit.limits[0], fit.limits[1]
    qx, qy = _column_tables(fit.tx, fit.cx, fit.cy, np.arange(lx0, lx1 + 1, dtype=np.float64))
    limits = np.array(fit.limits, np.int64)

    def corners(j0, j1):
        cx = np.empty((j1 - j0 + 2, xmax - xmin + 2))
        cy = np.empty_like(cx)
        with numba.parallel_chunksize(1):       # tasks of CORNER_ROWS rows handed out one at a time (DYNAMIC_ROWS)
            _spline_corners(qx, qy, fit.ty, limits, ny, nx, xmin, xmax, int(j0), int(j1),
                            CORNER_ROWS, numba.config.NUMBA_NUM_THREADS, cx, cy)
        return cx, cy

    return corners, fit.max_error, fit.step


@numba.njit(cache=True, nogil=True, parallel=True)
def _merge_kernel(out_img, out_wht, img, wht, has_ctx, out_ctx, ctx, ctx_bit):
    my, mx = wht.shape
    for y in numba.prange(my):
        for x in range(mx):
            if has_ctx and ctx[y, x] != 0:
                out_ctx[y, x] |= ctx_bit
            w32 = wht[y, x]
            if not w32 > 0:
                continue
            o = out_wht[y, x]
            if o > 0:
                vc = np.float64(o)
                w = np.float64(w32)
                out_img[y, x] = np.float32((np.float64(out_img[y, x]) * vc + np.float64(img[y, x]) * w) / (vc + w))
            else:
                out_img[y, x] = img[y, x]
            out_wht[y, x] = np.float32(np.float64(o) + np.float64(w32))


def _merge(out_img, out_wht, img, wht, out_ctx=None, ctx=None, bit: int = 0) -> None:
    """Merge one input's drizzled image into the running output, in place (numba, one pass).

    ``out_img``/``out_wht`` and ``img``/``wht`` are float32 (my, mx) weighted means and
    their weights; the merged mean is ``(out_img out_wht + img wht) / (out_wht + wht)``
    (in float64, rounded to float32) where ``wht > 0`` and ``out_wht > 0``, ``img`` where
    ``wht > 0`` and nothing was there yet, and ``out_wht`` becomes ``float32(out_wht + wht)``
    where ``wht > 0``: as drizzle's running mean gives when the input's drops are added one by
    one (equal up to float32 rounding). With ``out_ctx`` (int32 (my, mx), one context plane)
    and ``ctx`` (the input's context, int32 (my, mx)), bit ``bit`` of ``out_ctx`` is set where
    ``ctx`` is nonzero. No temporaries (numpy's masked form made ~150 MB of them per
    full-frame input).
    """
    if out_ctx is None:
        none = np.zeros((1, 1), np.int32)
        _merge_kernel(out_img, out_wht, img, wht, False, none, none, np.int32(0))
    else:
        _merge_kernel(out_img, out_wht, img, wht, True, out_ctx, ctx, np.uint32(1 << bit).view(np.int32))


def _one_block(sq: dict, names: list):
    """Return the 3-D array whose planes, in ``names`` order, are ``sq``'s arrays (views of one block), else None."""
    if list(sq) != names or not names:
        return None
    base = sq[names[0]].base
    if not (isinstance(base, np.ndarray) and base.ndim == 3 and base.shape[0] == len(names)
            and base.dtype == np.float32 and base.flags.c_contiguous):
        return None
    for e, n in enumerate(names):
        a = sq[n]
        if (a.base is not base or a.shape != base.shape[1:] or a.dtype != base.dtype
                or a.__array_interface__["data"][0] != base[e].__array_interface__["data"][0]):
            return None
    return base


def _resampler_class():
    """Make jwst's ResampleImage with this project's pixel map.

    Made on first use: jwst is imported only when a resample runs.
    """
    from jwst.resample.resample import ResampleImage
    from stcal.resample.utils import get_tmeasure, is_imaging_wcs, resample_range

    class PixmapResample(ResampleImage):
        """A ResampleImage whose pixel map is :func:`pixel_map`'s.

        Everything else (output WCS, weights, drizzle calls, variances, metadata) is jwst's
        and stcal's.
        """

        pixmap_errors: list
        #: drizzle with :func:`calib.drizzle.drizzle_square` (square kernel, one input) instead of
        #: four calls of drizzle's C kernel
        own_kernel = True

        def create_output_jwst_model(self, ref_input_model=None):
            """Make the blank i2d ImageModel as jwst does, without validation on assignment.

            Skips ~1 s of asdf schema checks for a full frame; the values set are the
            resampler's own, and the model is validated when it is written.
            """
            from stdatamodels.jwst import datamodels

            output_model = datamodels.ImageModel(None, validate_on_assignment=False)
            if ref_input_model is not None:
                output_model.update(ref_input_model)
            output_model.meta.wcs = self.output_wcs
            return output_model

        def add_model(self, model):
            """Add one input ImageModel (the sequence of stcal's ``Resample.add_model``)."""
            d = self.input_model_to_dict(model, weight_type=self.weight_type, enable_var=self._enable_var,
                                         compute_err=self._compute_err)
            if getattr(self, "consume_inputs", False):
                # the input is not used after this (its _cal is written): the dict holds its arrays
                # alone, so that _add can free the DQ once the weights are made
                _drop_arrays(model, [k for k, v in d.items() if isinstance(v, np.ndarray)])
            release = getattr(self, "release_input", None)
            if release is not None:
                def refresh(dd, _model=model):
                    """After the weights and the sky-subtracted SCI exist: DQ and SCI's pages go (calib.spill)."""
                    dd.pop("dq", None)                  # in the weights now (as with consume_inputs)
                    release(_model)
                    for k, v in list(dd.items()):
                        new = _model.instance.get(k)
                        if isinstance(v, np.ndarray) and isinstance(new, np.ndarray) and new.shape == v.shape:
                            dd[k] = new                 # the fresh, untouched views
                self._refresh_input = refresh
            # consumed: the output model is made from the input's metadata while the _cal's writer
            # still holds the arrays (see _add), not after the drizzle
            self._early_output_ref = model if getattr(self, "consume_inputs", False) else None
            try:
                self._add(d)
            finally:
                self._refresh_input = None
                self._early_output_ref = None
            del d
            if self.output_jwst_model is None:
                self.output_jwst_model = self.create_output_jwst_model(ref_input_model=model)
            if self.blendheaders:
                self._blender.accumulate(model)
            if release is not None:
                release(model)          # image3: the pages of this member read so far leave the process

        def _drizzle_once(self, model, data, weight, pixmap, bounds, iscale, corners=None) -> None:
            """Drizzle SCI and the square roots of the variances of one input in one pass.

            :func:`calib.drizzle.drizzle_square` into arrays of this input alone (jwst: four
            passes of drizzle's C kernel with the same overlaps); SCI is then merged into the
            running output as drizzle's running weighted mean would have it (out = (out W +
            img w) / (W + w)), the context bit of the input (its index: plane k // 32, bit
            k % 32, as drizzle numbers inputs) is set where it added weight, and the resampled
            variances of this input alone stand in for stcal's per-input variance resamplings.
            """
            self._driz = None                  # stcal's Drizzle object and its output arrays: unused
            if getattr(self, "_pending_var", None) is None:
                # the previous input's variances are in the running sums already (its block is kept
                # only while it may be the single input): drop it before this input's arrays exist
                self._own_block = (None, None)
            names = [n for n in self.variance_array_names
                     if self._enable_var and self._check_var_array(model, n)]
            shape = tuple(self.output_array_shape)
            fill = str(self.fillval).strip().upper()
            fill = np.nan if fill in ("NAN", "INDEF", "NONE") else float(fill)
            k = self._own_count
            self._own_count += 1
            img = np.empty(shape, np.float32)                     # fill / NaN set by the kernel's tasks
            wht = np.zeros(shape, np.float32)
            ctx = np.zeros(shape, np.int32) if self._enable_ctx else None
            out_extra = np.empty((len(names), *shape), np.float32)
            drizzle_square(data, [model[n] for n in names], weight, pixmap, bounds, self.pixfrac, img, out_extra, wht,
                           ctx, bit=1, iscale=iscale, corners=corners, sqrt_extra=True, init_fill=fill)
            own = self._own
            if own is None:
                out_ctx = None if ctx is None else ctx[None]      # the context image (1, my, mx): no copy
                own = self._own = SimpleNamespace(out_img=img, out_wht=wht, out_ctx=out_ctx, out_dq=None)
            else:
                if ctx is not None:
                    plane, bit = divmod(k, 32)
                    if own.out_ctx.shape[0] <= plane:
                        own.out_ctx = np.concatenate([own.out_ctx, np.zeros((1, *shape), np.int32)])
                    _merge(own.out_img, own.out_wht, img, wht, own.out_ctx[plane], ctx, bit)
                else:
                    _merge(own.out_img, own.out_wht, img, wht)
            self._driz = own
            self._own_sqrt_var = {n: out_extra[e] for e, n in enumerate(names)}
            self._own_block = (out_extra, names)

        def reset_arrays(self, n_input_models=None):
            """Reset the outputs (stcal's) and this engine's running arrays for a new output."""
            super().reset_arrays(n_input_models=n_input_models)
            self._own = None
            self._own_count = 0

        def init_variance_arrays(self):
            """Defer stcal's running variance sums until a second input needs them (:meth:`_variance_sums`)."""
            self._variance_info = {n: {} for n in self.variance_array_names}
            self._pending_var = None

        def _variance_sums(self, shared: bool = False):
            """Allocate stcal's running sums (NaN and 0) where missing and add a deferred first input.

            With ``shared`` (every variance array float32, drizzled by :meth:`_drizzle_once`), the
            sums are one block and the arrays share one weight sum while their usable pixels
            agree (:meth:`_accumulate_own`); :meth:`_unshare_weights` gives each its own.
            """
            shape = tuple(self.output_array_shape)
            names = list(self.variance_array_names)
            if shared and not any("wsum" in self._variance_info.get(n, {}) for n in names):
                block = np.full((len(names), *shape), np.nan, np.float32)
                wt = np.zeros(shape, np.float32)
                for e, n in enumerate(names):
                    self._variance_info[n] = {"wsum": block[e], "wt": wt}
                self._shared_sums = (block, wt)
            elif not shared:
                self._unshare_weights()
            for n in names:
                d = self._variance_info.setdefault(n, {})
                if "wsum" not in d:
                    d["wsum"] = np.full(shape, np.nan, dtype=self.output_array_types[n])
                    d["wt"] = np.zeros(shape, dtype=self.output_array_types[n])
            pending, self._pending_var = getattr(self, "_pending_var", None), None
            if pending is not None:
                self._accumulate_own(*pending)

        def _unshare_weights(self):
            """Give each variance array its own weight sum (a copy of the shared one)."""
            if getattr(self, "_shared_sums", None) is not None:
                self._shared_sums = None
                for d in self._variance_info.values():
                    if "wt" in d:
                        d["wt"] = d["wt"].copy()

        def _accumulate_own(self, sq: dict, ivm: bool, texp: float) -> None:
            """Add one input's drizzled variances (``sq``: name -> square roots) to the running sums."""
            info = self._variance_info
            shared = getattr(self, "_shared_sums", None)
            names = list(self.variance_array_names)
            planes = _one_block(sq, names) if shared is not None and (not ivm or "var_rnoise" in sq) else None
            if planes is not None:
                rn = names.index("var_rnoise") if ivm else 0
                if _usable_alike(planes, rn, ivm, texp):
                    _accumulate_variances_shared(planes, rn, ivm, texp, shared[0], shared[1])
                    return
            self._unshare_weights()
            for n in sq:
                _accumulate_variance(sq[n], sq["var_rnoise"] if ivm else sq[n], ivm, texp, info[n]["wsum"],
                                     info[n]["wt"])

        def _resample_one_variance_array(self, name, model, **kwargs):
            """Return the variance resampled by :meth:`_drizzle_once` when it ran, else stcal's."""
            own = getattr(self, "_own_sqrt_var", {})
            if name in own:
                return own.pop(name) ** 2
            return super()._resample_one_variance_array(name, model=model, **kwargs)

        def resample_variance_arrays(self, model, pixmap, pixel_scale_ratio, iscale, weight_map, xmin, xmax, ymin,
                                     ymax):
            """Add the variances drizzled by :meth:`_drizzle_once` to the running sums in numba.

            stcal's ``resample_variance_arrays`` (ivm or exptime weights, NaN-skipping weighted
            sums in double stored as float32) in one pass per array, bit for bit; stcal's own
            code for anything else.
            """
            own = getattr(self, "_own_sqrt_var", None) or {}
            names = [n for n in self.variance_array_names if self._check_var_array(model, n)]
            ivm = str(self.weight_type).startswith("ivm")
            if (not names or any(n not in own for n in names) or (ivm and "var_rnoise" not in own)
                    or not (ivm or self.weight_type == "exptime")
                    or any(self.output_array_types[n] != np.float32 for n in self.variance_array_names)):
                self._variance_sums()
                return super().resample_variance_arrays(model, pixmap, pixel_scale_ratio, iscale, weight_map,
                                                        xmin, xmax, ymin, ymax)
            texp = 0.0 if ivm else float(get_tmeasure(model)[0])
            self._own_sqrt_var = {}
            if self._pending_var is None and not any(d for d in self._variance_info.values()):
                # the first input: its final variances are made in place by finalize_resample_variance
                # unless another input comes
                self._pending_var = ({n: own[n] for n in names}, ivm, texp)
                return
            self._variance_sums(shared=True)
            self._accumulate_own({n: own[n] for n in names}, ivm, texp)

        def finalize_resample_variance(self, output_model):
            """Make stcal's final variances (running sums / weights**2, times the pixel-area scaling) in numba.

            And, when :meth:`finalize` asked for it, ERR from them (stcal: the square root of the
            NaN-skipping sum of the variances, NaN where all are NaN).
            """
            names = list(self.variance_array_names)
            stacked = None
            if self.pixel_scale_ratio is None:
                scaling = 1.0
            elif is_imaging_wcs(self.output_wcs):
                scaling = 1.0 / self.pixel_scale_ratio**2
            else:
                scaling = self.pixel_scale_ratio
            pending = getattr(self, "_pending_var", None)
            if pending is not None and all(self.output_array_types[n] == np.float32 for n in names):
                # one input: the variances in place of its drizzled square roots (VAR_RNOISE, the
                # weights of the others, last)
                sq, ivm, texp = pending
                self._pending_var = None
                for n in sorted(sq, key=lambda n: n == "var_rnoise"):
                    _final_variance_one(sq[n], sq["var_rnoise"] if ivm else sq[n], ivm, texp, np.float32(scaling),
                                        sq[n])
                for n in names:
                    output_model[n] = sq[n] if n in sq else np.full(tuple(self.output_array_shape), np.nan,
                                                                    np.float32)
                block, block_names = getattr(self, "_own_block", (None, None))
                if block is not None and block_names == names and all(sq.get(n) is not None for n in names):
                    stacked = block
                del self._variance_info
                self._finalized = True
            elif any(self.output_array_types[n] != np.float32 for n in names):
                self._variance_sums()
                super().finalize_resample_variance(output_model)
            else:
                self._variance_sums(shared=True)
                info = self._variance_info
                out = stacked = np.empty((len(names), *self.output_array_shape), np.float32)
                for k, n in enumerate(names):
                    _final_variance(info[n]["wsum"], info[n]["wt"], np.float32(scaling), out[k])
                    output_model[n] = out[k]
                del self._variance_info
                self._finalized = True
            if getattr(self, "_own_err", False):
                include = self.variance_array_names if self.error_from_variances is None \
                    else self.error_from_variances
                err = np.empty(tuple(self.output_array_shape), np.float32)
                var = stacked if stacked is not None and list(include) == names \
                    else np.stack([output_model[n] for n in include])
                _error_from_variances(var, err)
                output_model["err"] = err

        def finalize(self):
            """Finalize as jwst does, with ERR from the variances made by :meth:`finalize_resample_variance`."""
            saved = self._compute_err
            self._own_err = bool(self._enable_var and saved == "from_var" and not self._finalized)
            if self._own_err:
                self._compute_err = "own"          # stcal's finalize then leaves ERR to us
            try:
                super().finalize()
            finally:
                self._compute_err = saved
                self._own_err = False

        def _add(self, model: dict) -> None:
            if self._finalized:
                raise RuntimeError("resampling was finalized")
            self.validate_input_model(model)
            self._n_res_models += 1
            data, wcs = model["data"], model["wcs"]
            if data.ndim != 2:
                raise InputError("resample: the input is not a 2-D image")
            self._compute_pixel_scale_ratio(model)
            iscale = self._get_intensity_scale(model)
            xmin, xmax, ymin, ymax = resample_range(data.shape, wcs.bounding_box)
            own = self.own_kernel and self.kernel == "square" and not self._propagate_dq \
                and self._compute_err != "driz_err"
            corners = pixmap = None
            if own and self.pixfrac == 1.0:     # the corners are all the kernel needs: no pixel map
                corners, err, step = pixel_corner_rows(wcs, self.output_model["wcs"], data.shape,
                                                       (xmin, xmax, ymin, ymax))
            else:
                pixmap, err, step = pixel_map(wcs, self.output_model["wcs"], data.shape)
            self.pixmap_errors = [*getattr(self, "pixmap_errors", []), (err, step)]
            weight = driz_weight(model, self.weight_type, self.good_bits, self.dq_flag_name_map)
            if not model["subtracted"] and model["level"] is not None:
                data = data - model["level"]
            if own and getattr(self, "_refresh_input", None) is not None:
                self._refresh_input(model)
            if own:
                if getattr(self, "consume_inputs", False):
                    model.pop("dq", None)           # in the weights now; freed before the outputs exist
                bounds = (xmin, xmax, ymin, ymax)
                if getattr(self, "consume_inputs", False):
                    ref = getattr(self, "_early_output_ref", None)
                    if ref is not None and self.output_jwst_model is None:
                        # what add_model would make after the drizzle from the same metadata (nothing
                        # here changes the input model), made while the writer's file writes run
                        self.output_jwst_model = self.create_output_jwst_model(ref_input_model=ref)
                    wait_for_writes()       # the _cal's writer holds its arrays: let it end before the outputs exist
                self._drizzle_once(model, data, weight, pixmap, bounds, iscale, corners=corners)
                corners = None
                hook = {"pixmap": pixmap, "pixel_scale_ratio": self.pixel_scale_ratio, "iscale": iscale,
                        "xmin": xmin, "xmax": xmax, "ymin": ymin, "ymax": ymax}
                self.add_model_hook(model=model, weight_map=weight, **hook)
                hook["pixmap"] = pixmap = None      # freed: the variances were drizzled with SCI
                if (group_id := model["group_id"]) not in self._group_ids:
                    self.update_time(model)
                    self._group_ids.append(group_id)
                    self._output_model["pointings"] += 1
                if self._enable_var:
                    self.resample_variance_arrays(model=model, weight_map=weight, **hook)
                self._output_model["data"] = self._driz.out_img
                self._output_model["wht"] = self._driz.out_wht
                if self._driz.out_ctx is not None:
                    self._output_model["con"] = self._driz.out_ctx
                return
            kw = {"exptime": model["exposure_time"], "pixmap": pixmap, "pixel_scale_ratio": self.pixel_scale_ratio,
                  "iscale": iscale, "weight_map": weight, "wht_scale": 1.0, "pixfrac": self.pixfrac,
                  "in_units": "cps", "xmin": xmin, "xmax": xmax, "ymin": ymin, "ymax": ymax}
            if self._propagate_dq:
                self._driz.add_image(data, dq=model["dq"], **kw)
            else:
                self._driz.add_image(data, **kw)
            hook = {k: kw[k] for k in ("pixmap", "pixel_scale_ratio", "iscale", "xmin", "xmax", "ymin", "ymax")}
            self.add_model_hook(model=model, weight_map=weight, **hook)
            if (group_id := model["group_id"]) not in self._group_ids:
                self.update_time(model)
                self._group_ids.append(group_id)
                self._output_model["pointings"] += 1
            if self._compute_err == "driz_err":
                self._driz_error.add_image(model["err"], **kw)
            if self._enable_var:
                self.resample_variance_arrays(model=model, weight_map=weight, **hook)
            self._output_model["data"] = self._driz.out_img
            self._output_model["wht"] = self._driz.out_wht
            if self._driz.out_ctx is not None:
                self._output_model["con"] = self._driz.out_ctx
            if self._propagate_dq:
                self._output_model["dq"] = self._driz.out_dq
            if self._compute_err == "driz_err":
                self._output_model["err"] = self._driz_error.out_img

    return PixmapResample


_RESAMPLER = None


def _drop_arrays(model, names) -> None:
    """Remove arrays from a datamodel (and from the ASDF tree it was read or written with)."""
    tree = getattr(getattr(model, "_asdf", None), "tree", None)
    for name in names:
        model.instance.pop(name, None)
        if isinstance(tree, dict):
            tree.pop(name, None)


@contextlib.contextmanager
def _read_in_place(wcs):
    """While open, ``copy.deepcopy(wcs)`` returns ``wcs`` itself.

    jwst's ``resampled_wcs_from_models`` deep-copies the input's gwcs (~0.01 s for a NIRCam
    full frame, beside the ``_cal``'s background write) before it only reads it: it
    evaluates it and its inverse at the fiducial point and takes its input and output
    frames for the output WCS. For a consumed input, whose gwcs nothing changes afterwards,
    the original is read instead (the output WCS then shares the two frame objects with
    it; their values, and so the products, are the same).
    """
    try:
        wcs.__deepcopy__ = lambda memo: wcs
    except AttributeError:          # no instance attributes: copied as usual
        yield
        return
    try:
        yield
    finally:
        del wcs.__deepcopy__


def resample_image(model, params: dict, *, consume: bool = False):
    """Resample one calibrated image into its ``_i2d`` ImageModel.

    Parameters
    ----------
    model : stdatamodels.jwst.datamodels.ImageModel
        The ``_cal`` image with its gwcs (``meta.wcs``): SCI/ERR float32 (ny, nx) MJy/sr,
        DQ, VAR_* (MJy/sr)**2. Not modified (a copy is resampled) unless ``consume``.
    params : dict
        The step's resolved parameters (jwst's names).
    consume : bool
        The ``_cal`` was handed to its writer (:func:`calib.products.run_and_save`, which may
        still be writing it from the same arrays) and ``model`` is not used afterwards: it is
        resampled itself (no copy) and its arrays' values are not changed (when jwst's
        ``match_nans_and_flags`` has something to do, it runs on a copy and the model's
        arrays are dropped);
        its ERR and AREA, which resample does not read after that, are dropped before the
        output is allocated, its other arrays handed to the resampler (the model keeps
        none) and the DQ freed once the drizzle weights are made.

    Returns
    -------
    stdatamodels.jwst.datamodels.ImageModel
        SCI/ERR/VAR_* float32 (my, mx) MJy/sr, WHT float32, CON int32 (1, my, mx), with the
        output gwcs.
    """
    from jwst.datamodels import ModelLibrary
    from jwst.lib.pipe_utils import match_nans_and_flags

    if consume:
        if not nans_and_flags_matched(model):
            # the _cal may still be being written from these arrays: match a copy, drop the originals
            copy = model.copy()
            _drop_arrays(model, [k for k, v in model.instance.items() if isinstance(v, np.ndarray)])
            model = copy
            match_nans_and_flags(model)
        _drop_arrays(model, ("err", "area"))    # read by match_nans_and_flags only (ERR from the variances)
        with _read_in_place(model.meta.wcs):
            resampler = make_resampler(ModelLibrary([model], on_disk=False), params, blendheaders=False)
        resampler.consume_inputs = True
        return resampler.resample_many_to_one()
    if nans_and_flags_matched(model):
        # nothing for match_nans_and_flags to do: a copy sharing the arrays (resample reads
        # them only) and the gwcs, with its own metadata (the ModelLibrary writes to it)
        shared = {id(v): v for v in model.instance.values() if isinstance(v, np.ndarray)}
        shared[id(model.meta.wcs)] = model.meta.wcs
        m = model.copy(memo=shared)
    else:
        m = model.copy()
        match_nans_and_flags(m)
    return make_resampler(ModelLibrary([m], on_disk=False), params, blendheaders=False).resample_many_to_one()


def make_resampler(library, params: dict, *, blendheaders: bool, output: str | None = None, **overrides):
    """Make jwst's ResampleImage, with this project's pixel map and drizzle kernel, for a library.

    Parameters
    ----------
    library : jwst.datamodels.ModelLibrary
        The calibrated images (NaN and DO_NOT_USE matched, as jwst's resample step does).
    params : dict
        The resample step's resolved parameters (jwst's names).
    blendheaders : bool
        Whether the output header blends the inputs' (jwst: True for several inputs).
    output : str, optional
        The output product name (an association product's ``name``).
    **overrides
        Keyword arguments of ``ResampleImage`` that replace those derived from ``params``
        (outlier_detection's singles: ``enable_ctx=False, enable_var=False, compute_err=None``).

    Returns
    -------
    jwst.resample.resample.ResampleImage
        Whose ``resample_many_to_one`` / ``resample_many_to_many`` drizzle the library.
    """
    from jwst.resample.resample_step import GOOD_BITS
    from jwst.resample.resample_utils import load_custom_wcs

    shape = params.get("output_shape")
    global _RESAMPLER
    if _RESAMPLER is None:
        _RESAMPLER = _resampler_class()
    enable_err = params.get("enable_err", False)
    kw = dict(
        output=output, enable_ctx=params.get("enable_ctx", False), enable_var=enable_err,
        report_var=enable_err and params.get("report_var", False),
        compute_err="from_var" if enable_err else None,
        pixfrac=params["pixfrac"], kernel=params["kernel"], fillval=params["fillval"],
        weight_type=params["weight_type"], good_bits=params.get("good_bits", GOOD_BITS), blendheaders=blendheaders,
        pixmap_stepsize=params["pixmap_stepsize"], pixmap_order=params["pixmap_order"],
        propagate_dq=params.get("propagate_dq", False),
        output_wcs=load_custom_wcs(params.get("output_wcs", ""), shape),
        wcs_pars={"crpix": params.get("crpix"), "crval": params.get("crval"), "rotation": params.get("rotation"),
                  "pixel_scale": params.get("pixel_scale"), "pixel_scale_ratio": params.get("pixel_scale_ratio", 1.0),
                  "output_shape": None if shape is None else shape[::-1]})
    kw.update(overrides)
    return _RESAMPLER(library, **kw)


def _run(state, ctx) -> str:
    if not hasattr(state, "background"):
        raise InputError(f"{state.path}: the calib engine's resample runs on calibrated images (calwebb_image2)")
    if state.keys.exp_type not in IMAGE_EXP_TYPES or state.model.data.ndim != 2:
        return "SKIPPED"
    if state.model.meta.wcs is None:
        raise InputError(f"{state.path}: resample needs the WCS of assign_wcs (was it skipped?)")
    state.i2d = resample_image(state.model, dict(ctx.params), consume=getattr(state, "cal_written", False))
    return "COMPLETE"


STEP = StepSpec(
    name="resample", jwst_class="jwst.resample.ResampleStep", reftypes=(), run=_run,
    params=(Param("pixfrac", "float", 1.0, min=0.0, max=1.0, doc="drop shrink factor"),
            Param("kernel", "option", "square", choices=("square", "gaussian", "point", "turbo", "lanczos2",
                                                          "lanczos3"), doc="drizzle kernel"),
            Param("fillval", "string", "NAN", doc="value of output pixels without weight"),
            Param("weight_type", "option", "ivm", choices=("ivm", "exptime", None), nullable=True,
                  doc="input weighting"),
            Param("output_shape", "int_list", None, min=1, doc="[nx, ny] of the output"),
            Param("crpix", "float_list", None, doc="0-based output reference pixel"),
            Param("crval", "float_list", None, doc="RA, Dec of the reference pixel, deg"),
            Param("rotation", "float", None, doc="output Y axis PA, deg"),
            Param("pixel_scale_ratio", "float", 1.0, doc="output / input pixel scale"),
            Param("pixel_scale", "float", None, doc="output pixel scale, arcsec"),
            Param("output_wcs", "string", "", doc="an ASDF file with a custom output gwcs"),
            Param("single", "boolean", False, support=SUPPORT_DEFAULT_ONLY, doc="one output per input (image3)"),
            Param("blendheaders", "boolean", True, support=SUPPORT_IGNORED, doc="blend input headers (one input)"),
            Param("in_memory", "boolean", True, support=SUPPORT_IGNORED, doc="keep models in memory"),
            Param("enable_ctx", "boolean", True, doc="make the context (CON) image"),
            Param("enable_err", "boolean", True, doc="make ERR from the resampled variances"),
            Param("report_var", "boolean", True, doc="write the VAR_* arrays"),
            Param("propagate_dq", "boolean", False, doc="OR the input DQ into the output"),
            Param("pixmap_stepsize", "float", 1.0, doc="pixel-map evaluation step, px"),
            Param("pixmap_order", "integer", 1, doc="pixel-map interpolation order (1 or 3)")),
    doc="drizzle the cal image onto a sky grid (own pixel map, checked to 1e-4 px; drizzle C kernel) -> _i2d.",
)


def _run_image3(state, ctx) -> str:
    from jwst.lib.pipe_utils import match_nans_and_flags

    if not hasattr(state, "library"):
        raise InputError(f"{state.path}: calwebb_image3's resample runs on a Level-3 association's members")
    if any(np.ndim(m.data) != 2 for m in state.models):
        raise InputError(f"{state.path}: resample needs 2-D images")
    release = getattr(state, "release_member", None)
    for m in state.models:                # as jwst's resample step does to its library's models
        if not match_changes_nothing(m):      # (outlier_detection leaves its members so: nothing to do)
            match_nans_and_flags(m)
        if release is not None:
            release(m)
    p = dict(ctx.params)
    resamp = make_resampler(state.library, p, blendheaders=p["blendheaders"], output=state.product_name or None)
    resamp.release_input = release        # one member's arrays resident at a time (calib.spill)
    state.i2d = resamp.resample_many_to_one()
    return "COMPLETE"


#: resample in calwebb_image3: every member drizzled onto one grid (the ``_i2d`` mosaic)
STEP_IMAGE3 = StepSpec(
    name="resample", jwst_class="jwst.resample.ResampleStep", reftypes=(), run=_run_image3,
    params=tuple(dataclasses.replace(p, support=SUPPORT_NATIVE) if p.name == "blendheaders" else p
                 for p in STEP.params),
    doc="drizzle every member onto one sky grid (jwst's output WCS from all footprints; own pixel maps and "
        "square kernel) -> _i2d.",
)
