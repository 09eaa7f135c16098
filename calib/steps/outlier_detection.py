"""outlier_detection: cosmic rays and other outliers of the members of a Level-3 imaging association.

jwst's imaging outlier detection (jwst documentation "outlier_detection", imaging mode;
Fruchter & Hook 2002 for drizzle, the STScI drizzlepac "driz_cr" algorithm):

1. each exposure group is drizzled alone ("single") onto one common grid (jwst's output
   WCS from all members; this project's pixel maps and square kernel, ``pixfrac``,
   ``kernel``, ``weight_type``, ``good_bits``), without context or variances;
2. in each single, pixels whose weight is below ``maskpt`` times the 3-sigma-clipped mean
   of the positive weights (stcal's ``compute_weight_threshold``) are set to NaN;
3. the NaN-skipping median of the singles, pixel by pixel (:func:`nanmedian_stack`, numba;
   the mean of the two middle values in float32 for an even count, as numpy's nanmedian);
4. the median is "blotted" back to each member's pixels (:func:`blot_linear`, numba:
   drizzle's bilinear blot at the member pixel's position in the median grid, NaN outside
   it; positions from :func:`calib.steps.resample.pixel_map`);
5. a member pixel is an outlier when |SCI - blot - backg| exceeds ``snr1 ERR + scale1
   |d blot|`` in a 3x3 neighbourhood and ``snr2 ERR + scale2 |d blot|`` itself (stcal's
   ``flag_resampled_crs``, done in one numba pass with its arithmetic: :func:`flag_resampled_crs`;
   ``backg`` is the member's unsubtracted sky level when skymatch
   recorded one); it gets DQ DO_NOT_USE | OUTLIER and SCI/ERR/VAR_* NaN (jwst's
   ``match_nans_and_flags``).

The flagged members are the ``_crf`` products. Units: MJy/sr (SCI, ERR, median, blot).
"""
from __future__ import annotations

import contextlib
import tempfile

import numba
import numpy as np

from calib.errors import InputError
from calib.steps.resample import _cubic_basis, _spline_row
from calib.params import SUPPORT_DEFAULT_ONLY, SUPPORT_IGNORED, Param
from calib.step import StepSpec

__all__ = ["STEP", "nanmedian_stack", "blot_linear", "blot_median", "flag_resampled_crs", "detect_outliers"]


@numba.njit(cache=True, parallel=True)
def _nanmedian_stack(stack, out):
    n, ny, nx = stack.shape
    for j in numba.prange(ny):
        s = np.empty(n, np.float32)
        for i in range(nx):
            k = 0
            for g in range(n):                  # insertion sort of the finite values (n is small)
                v = stack[g, j, i]
                if not np.isnan(v):
                    m = k
                    while m > 0 and s[m - 1] > v:
                        s[m] = s[m - 1]
                        m -= 1
                    s[m] = v
                    k += 1
            if k == 0:
                out[j, i] = np.nan
                continue
            h = k // 2
            if k % 2 == 1:
                out[j, i] = s[h]
            else:
                out[j, i] = np.float32(np.float32(s[h - 1] + s[h]) / np.float32(2.0))


def nanmedian_stack(stack: np.ndarray) -> np.ndarray:
    """Median over the first axis, skipping NaN (NaN where every value is NaN).

    Parameters
    ----------
    stack : numpy.ndarray
        float32 (n, ny, nx): the drizzled singles (MJy/sr), NaN where masked.

    Returns
    -------
    numpy.ndarray
        float32 (ny, nx). For an even count of finite values, the float32 mean of the two
        middle ones (numpy's ``nanmedian`` on float32, which jwst uses through stcal).
    """
    stack = np.ascontiguousarray(stack, np.float32)
    out = np.empty(stack.shape[1:], np.float32)
    _nanmedian_stack(stack, out)
    return out


@numba.njit(cache=True, inline="always")
def _blot_at(data, px, py, fill):
    """Return drizzle's bilinear blot of ``data`` at (px, py) (float64, 0-based), ``fill`` outside or at NaN."""
    my, mx = data.shape
    one = np.float32(1.0)
    if np.isnan(px) or np.isnan(py):
        return fill
    x = np.float32(px)
    y = np.float32(py)
    if not (x >= 0.0 and x < np.float32(mx) and y >= 0.0 and y < np.float32(my)):
        return fill
    ix = int(x)
    iy = int(y)
    f00 = data[iy, ix]
    if ix == mx - 1:
        if iy == my - 1:
            return f00
        sy = np.float32(y - np.float32(iy))
        return (one - sy) * f00 + sy * data[iy + 1, ix]
    if iy == my - 1:
        sx = np.float32(x - np.float32(ix))
        return (one - sx) * f00 + sx * data[iy, ix + 1]
    sx = np.float32(x - np.float32(ix))
    tx = one - sx
    sy = np.float32(y - np.float32(iy))
    ty = one - sy
    return (tx * ty * f00 + sx * ty * data[iy, ix + 1] + sy * tx * data[iy + 1, ix]
            + sx * sy * data[iy + 1, ix + 1])


@numba.njit(cache=True, parallel=True)
def _blot_linear(data, pixmap, fill, out):
    ny, nx = out.shape
    for j in numba.prange(ny):
        for i in range(nx):
            out[j, i] = _blot_at(data, pixmap[j, i, 0], pixmap[j, i, 1], fill)


@numba.njit(cache=True, parallel=True)
def _blot_splines(data, qx, qy, ty, limits, fill, out):
    """:func:`_blot_linear` at the positions of :func:`calib.steps.resample.pixel_map_splines`' rows."""
    ny, nx = out.shape
    lx0, lx1, ly0, ly1 = limits[0], limits[1], limits[2], limits[3]
    for j in numba.prange(ny):
        if j < ly0 or j > ly1:
            for i in range(nx):
                out[j, i] = fill
            continue
        by = np.empty(4)
        row = np.empty((lx1 - lx0 + 1, 2))
        m = _cubic_basis(ty, np.float64(j), by)
        _spline_row(qx, qy, m, by, 0, row)
        for i in range(nx):
            if i < lx0 or i > lx1:
                out[j, i] = fill
            else:
                out[j, i] = _blot_at(data, row[i - lx0, 0], row[i - lx0, 1], fill)


def blot_linear(data: np.ndarray, pixmap: np.ndarray, fill: float = np.nan) -> np.ndarray:
    """Sample an image at given positions by bilinear interpolation (drizzle's "linear" blot).

    Parameters
    ----------
    data : numpy.ndarray
        float32 (my, mx): the image blotted from (the median, MJy/sr).
    pixmap : numpy.ndarray
        float64 (ny, nx, 2): x, y (0-based) in ``data`` of each output pixel; NaN: none.
    fill : float
        Value of output pixels whose position is NaN or outside ``0 <= x < mx``,
        ``0 <= y < my``.

    Returns
    -------
    numpy.ndarray
        float32 (ny, nx). The interpolation is done in float32, interpolating along one axis
        only in the last column/row and taking the pixel itself at the last corner, as the
        ``drizzle`` package's ``blot_image(interp="linear")`` (jwst's blot in
        outlier_detection) does.
    """
    out = np.empty(pixmap.shape[:2], np.float32)
    _blot_linear(np.ascontiguousarray(data, np.float32), np.ascontiguousarray(pixmap, np.float64),
                 np.float32(fill), out)
    return out


@numba.njit(cache=True, inline="always")
def _abs_deriv_at(blot, j, i, ny, nx):
    """Return stcal's ``_abs_deriv`` at one pixel: the largest finite |difference| with its 4 neighbours.

    NaN where the pixel is NaN, else 0 when no difference is finite.
    """
    v = blot[j, i]
    out = np.float32(np.nan) if np.isnan(v) else np.float32(0.0)
    if j >= 1:
        d = abs(v - blot[j - 1, i])
        if np.isfinite(d):
            out = d                     # stcal's putmask of the row differences: set, not max
    if j + 1 < ny:
        d = abs(blot[j + 1, i] - v)
        if d > out:
            out = d
    if i + 1 < nx:
        d = abs(blot[j, i + 1] - v)
        if d > out:
            out = d
    if i >= 1:
        d = abs(v - blot[j, i - 1])
        if d > out:
            out = d
    return out


@numba.njit(cache=True, parallel=True)
def _flag_resampled_crs(sci, err, blot, snr1, snr2, scale1, scale2, backg, wide, mask1, out):
    ny, nx = sci.shape
    big = np.float32(np.finfo(np.float32).max)
    for j in numba.prange(ny):
        for i in range(nx):
            e = err[j, i]
            if np.isnan(e):
                e = np.float32(0.0)
            elif e == np.inf:
                e = big
            elif e == -np.inf:
                e = -big
            der = _abs_deriv_at(blot, j, i, ny, nx)
            if wide:
                noise = abs(np.float64(sci[j, i] - blot[j, i]) - backg)
            else:
                noise = np.float64(abs(np.float32(sci[j, i] - blot[j, i]) - np.float32(backg)))
            t1 = np.float32(scale1 * der) + np.float32(snr1 * e)
            t2 = np.float32(scale2 * der) + np.float32(snr2 * e)
            mask1[j, i] = noise > t1
            out[j, i] = noise > t2
    for j in numba.prange(ny):
        for i in range(nx):
            if not out[j, i]:
                continue
            hit = False
            for yy in range(j - 1, j + 2):
                y = min(max(yy, 0), ny - 1)
                for xx in range(i - 1, i + 2):
                    if mask1[y, min(max(xx, 0), nx - 1)]:
                        hit = True
                        break
                if hit:
                    break
            out[j, i] = hit


def blot_median(median: np.ndarray, wcs_from, wcs_to, shape: tuple[int, int], fill: float = np.nan) -> np.ndarray:
    """Blot the median back onto a member: ``blot_linear(median, pixel_map(wcs_from, wcs_to, shape)[0])``.

    Parameters
    ----------
    median : numpy.ndarray
        float32 (my, mx): the median of the singles (MJy/sr) on ``wcs_to``'s grid.
    wcs_from : gwcs.WCS
        The member's WCS.
    wcs_to : gwcs.WCS
        The median's (the singles' output) WCS.
    shape : tuple of int
        (ny, nx) of the member.
    fill : float
        As for :func:`blot_linear`.

    Returns
    -------
    numpy.ndarray
        float32 (ny, nx), bit-identical to :func:`blot_linear` on :func:`calib.steps.resample.pixel_map`'s
        map; when that map is interpolated, its rows are evaluated one at a time by the kernel's
        tasks (:func:`calib.steps.resample.pixel_map_splines`) and the (ny, nx, 2) float64 map
        (67 MB for a full frame) is never made.
    """
    from calib.steps.resample import pixel_map_splines

    tables = pixel_map_splines(wcs_from, wcs_to, shape)
    if isinstance(tables, np.ndarray):
        return blot_linear(median, tables, fill)
    out = np.empty(shape, np.float32)
    _blot_splines(np.ascontiguousarray(median, np.float32), *tables, np.float32(fill), out)
    return out


def flag_resampled_crs(sci, err, blot, snr1: float, snr2: float, scale1: float, scale2: float, backg) -> np.ndarray:
    """Outliers of one member against its blotted median (stcal's ``flag_resampled_crs``), in numba.

    Parameters
    ----------
    sci, err, blot : numpy.ndarray
        float32 (ny, nx): the member's SCI and ERR and the blotted median (MJy/sr).
    snr1, snr2, scale1, scale2 : float
        The thresholds (multiples of ERR) and derivative scales before and after the 3x3
        spread.
    backg : float
        Sky level added to the blot (MJy/sr).

    Returns
    -------
    numpy.ndarray
        bool (ny, nx): ``|SCI - blot - backg| > scale2 |d blot| + snr2 ERR`` where also
        ``> scale1 |d blot| + snr1 ERR`` somewhere in the pixel's 3x3 neighbourhood (edges
        repeated), ERR's NaN taken as 0; ``|d blot|`` the largest finite absolute difference
        with the 4 neighbours (stcal's ``_abs_deriv``). The same float32 arithmetic as stcal's
        numpy expressions (a Python-float ``backg`` joins in float32, a numpy float64 one in
        float64, as numpy's promotion rules have it), so the same mask, in one pass without
        stcal's five full-frame temporaries.
    """
    sci, err, blot = (np.ascontiguousarray(a, np.float32) for a in (sci, err, blot))
    wide = isinstance(backg, np.floating) and np.dtype(type(backg)).itemsize > 4
    mask1 = np.empty(sci.shape, np.bool_)
    out = np.empty(sci.shape, np.bool_)
    _flag_resampled_crs(sci, err, blot, np.float32(snr1), np.float32(snr2), np.float32(scale1), np.float32(scale2),
                        float(backg), wide, mask1, out)
    return out


@numba.njit(cache=True, inline="always")
def _pairwise_block_f32(a, lo, n):
    """Return numpy's float32 ``pairwise_sum`` of at most 128 values ``a[lo:lo + n]`` (no further split).

    Below 8 values a plain sum from -0.0; else eight interleaved accumulators combined as
    ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7)), then the remainder in order.
    """
    if n < 8:
        res = np.float32(-0.0)
        for i in range(n):
            res += a[lo + i]
        return res
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    stop = n - n % 8
    for i in range(8, stop, 8):
        b = lo + i
        r0 += a[b]
        r1 += a[b + 1]
        r2 += a[b + 2]
        r3 += a[b + 3]
        r4 += a[b + 4]
        r5 += a[b + 5]
        r6 += a[b + 6]
        r7 += a[b + 7]
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    for i in range(stop, n):
        res += a[lo + i]
    return res


@numba.njit(cache=True)
def _pairwise_sum_f32(a, lo, n):
    """Return numpy's float32 pairwise sum of ``a[lo:lo + n]`` (``pairwise_sum`` of its add reduction).

    Above 128 values the two halves (the first a multiple of 8 long) are summed apart and
    added; at most 128 by :func:`_pairwise_block_f32`. The recursion is unrolled onto a stack
    (numba does not cache recursive functions called from others): nodes in post-order, each
    split node's two sums added left + right once both are done. All in float32.
    """
    if n <= 128:
        return _pairwise_block_f32(a, lo, n)
    nodes = np.empty((128, 3), np.int64)       # (lo, n, 0: not split yet / 1: children done)
    sums = np.empty(128, np.float32)
    top = 0
    nodes[0, 0], nodes[0, 1], nodes[0, 2] = lo, n, 0
    depth = 1
    while depth > 0:
        depth -= 1
        s0, sn, phase = nodes[depth, 0], nodes[depth, 1], nodes[depth, 2]
        if sn <= 128:
            sums[top] = _pairwise_block_f32(a, s0, sn)
            top += 1
        elif phase == 1:
            top -= 1
            sums[top - 1] = sums[top - 1] + sums[top]
        else:
            n2 = sn // 2
            n2 -= n2 % 8
            nodes[depth, 0], nodes[depth, 1], nodes[depth, 2] = s0, sn, 1
            nodes[depth + 1, 0], nodes[depth + 1, 1], nodes[depth + 1, 2] = s0 + n2, sn - n2, 0
            nodes[depth + 2, 0], nodes[depth + 2, 1], nodes[depth + 2, 2] = s0, n2, 0
            depth += 3
    return sums[0]


@numba.njit(cache=True)
def _finite_nonzero(weight, vals):
    """Copy the finite nonzero values of ``weight`` into ``vals`` in C order; return their count."""
    n = 0
    for v in weight.ravel():
        if np.isfinite(v) and v != 0:
            vals[n] = v
            n += 1
    return n


@numba.njit(cache=True)
def _clip_once(vals, n, cen, sigma, buf):
    """Run one iteration of astropy's ``sigma_clip(axis=None)`` on ``vals[:n]`` about the median ``cen``.

    The float32 standard deviation of numpy's ``nanstd`` (pairwise float32 sums; mean and
    variance divided in float64 and rounded to float32; float32 sqrt), the bounds
    ``cen -/+ float32(std * sigma)`` in float32; the values inside them are moved to the front
    of ``vals`` in order and their count returned. ``buf``: float32 scratch (>= n).
    """
    avg = np.float32(np.float64(_pairwise_sum_f32(vals, 0, n)) / np.float64(n))
    for i in range(n):
        d = np.float32(vals[i] - avg)
        buf[i] = np.float32(d * d)
    var = np.float32(np.float64(_pairwise_sum_f32(buf, 0, n)) / np.float64(n))
    spread = np.float32(np.float32(np.sqrt(var)) * sigma)
    lo = np.float32(cen - spread)
    hi = np.float32(cen + spread)
    m = 0
    for i in range(n):
        v = vals[i]
        if v >= lo and v <= hi:
            vals[m] = v
            m += 1
    return m


def weight_threshold(weight: np.ndarray, maskpt: float) -> float:
    """Return stcal's ``compute_weight_threshold``: ``maskpt`` times the 3-sigma-clipped mean of the nonzero weights.

    Parameters
    ----------
    weight : numpy.ndarray
        float32 (my, mx): a single's drizzle weights.
    maskpt : float
        Fraction of the clipped mean.

    Returns
    -------
    float
        The threshold, equal to stcal's: the clipping (astropy's ``sigma_clip``, sigma 3, 5
        iterations, median centre, ``std`` spread, on numpy's float32 ``nanmedian`` and
        ``nanstd``): each iteration numpy's median, then the standard deviation, bounds and
        kept values in one numba pass (:func:`_clip_once`), the kept values in stcal's order;
        their mean by numpy (``dtype="f8"``) as stcal takes it. stcal's own code for other
        dtypes or when no weight is kept.
    """
    from stcal.outlier_detection.utils import compute_weight_threshold

    if not (isinstance(weight, np.ndarray) and weight.dtype == np.float32 and weight.size > 0):
        return compute_weight_threshold(weight, maskpt)
    weight = np.ascontiguousarray(weight)
    vals = np.empty(weight.size, np.float32)
    buf = np.empty(weight.size, np.float32)
    n = _finite_nonzero(weight, vals)
    it, changed = 0, 1
    while changed != 0 and it < 5 and n > 0:        # astropy: maxiters 5, until nothing changes
        it += 1
        # numpy's median (nanmedian's for values without NaN): the middle value, or the float32 mean
        # of the two middle ones, found by one selection (np.median's three-way partition is slower)
        h = n // 2
        part = np.partition(vals[:n], h)
        cen = part[h] if n % 2 else np.float32(np.float32(part[:h].max() + part[h]) / np.float32(2.0))
        del part
        m = _clip_once(vals, n, np.float32(cen), np.float32(3.0), buf)
        changed, n = n - m, m
    if n == 0:
        return compute_weight_threshold(weight, maskpt)
    return np.mean(vals[:n], dtype="f8") * maskpt


def detect_outliers(library, models: list, params: dict, *, release=None, flagged=None) -> int:
    """Flag outliers of every member in place (DQ, NaN in SCI/ERR/VAR_*).

    Parameters
    ----------
    library : jwst.datamodels.ModelLibrary
        The association's members (in memory); its ``group_indices`` define the singles.
    models : list of ImageModel
        The same members, as the library holds them (``_cal``: SCI/ERR float32 (ny, nx)
        MJy/sr, DQ uint32, gwcs).
    params : dict
        The step's resolved parameters (jwst's names).
    release : callable, optional
        ``release(model)`` once a member's arrays were read for its single and once it is
        flagged (calwebb_image3: :meth:`calib.spill.ArraySpill.release`, so that one member
        at a time is resident); also the singles are then kept in a temporary file and their
        median made by sections of rows.
    flagged : callable, optional
        ``flagged(model)`` as soon as a member is flagged (before ``release``): its ``_crf``
        is final.

    Returns
    -------
    int
        The number of pixels flagged, over all members.
    """
    from jwst.lib.pipe_utils import match_nans_and_flags
    from stdatamodels.jwst.datamodels.dqflags import pixel

    from calib.steps.resample import make_resampler, match_nans_and_flags_fast

    snr1, snr2 = (float(v) for v in str(params["snr"]).split())
    scale1, scale2 = (float(v) for v in str(params["scale"]).split())
    rpars = {k: params[k] for k in ("pixfrac", "kernel", "fillval", "weight_type", "pixmap_stepsize",
                                   "pixmap_order", "good_bits")}
    resamp = make_resampler(library, rpars, blendheaders=False, enable_ctx=False, enable_var=False,
                            compute_err=None)
    resamp.release_input = release
    groups = list(library.group_indices.values())
    stack = None
    with contextlib.ExitStack() as files:
        for g, indices in enumerate(groups):
            single = resamp.resample_group(indices)
            if stack is None:
                stack = _SinglesStack((len(groups), *single.data.shape), files if release is not None else None)
            threshold = weight_threshold(single.wht, params["maskpt"])
            data = np.asarray(single.data, np.float32)
            data[single.wht < threshold] = np.nan
            stack.put(g, data)
            del single, data
        median = stack.median()
        del stack
    median_wcs = resamp.output_wcs
    flag = np.uint32(pixel["DO_NOT_USE"] | pixel["OUTLIER"])
    total = 0
    for model in models:
        blot = blot_median(median, model.meta.wcs, median_wcs, model.data.shape)
        bg = model.meta.background
        backg = bg.level if (bg.subtracted is False and bg.level is not None) else params["backg"]
        mask = flag_resampled_crs(model.data, model.err, blot, snr1, snr2, scale1, scale2, backg)
        total += int(np.count_nonzero(mask))
        del blot
        if not match_nans_and_flags_fast(model, mask, flag):
            model.dq |= mask.astype(np.uint32) * flag
            match_nans_and_flags(model)
        del mask
        if flagged is not None:
            flagged(model)
        if release is not None:
            release(model)
    return total


class _SinglesStack:
    """The drizzled singles (n, my, mx) float32, in memory or in a temporary file.

    In a file (``files`` given: an ExitStack that closes it), each single is written through
    its own mapping and the median is made by sections of rows, each section mapped alone:
    the stack's pages are resident one section at a time. The median is the same either way
    (pixel by pixel, :func:`nanmedian_stack`).
    """

    #: rows per section of the median (about 16 MB of singles for 8 NIRCam full frames)
    ROWS = 256

    def __init__(self, shape, files=None):
        self.shape = shape
        if files is None:
            self._fh = None
            self._mem = np.empty(shape, np.float32)
        else:
            self._fh = files.enter_context(tempfile.TemporaryFile(prefix="calib-singles-"))
            self._fh.truncate(int(np.prod(shape)) * 4)
            self._mem = None

    def _map(self):
        return np.memmap(self._fh, np.float32, "r+", shape=self.shape)

    def put(self, g: int, data: np.ndarray) -> None:
        """Store single ``g``."""
        if self._mem is not None:
            self._mem[g] = data
            return
        m = self._map()
        m[g] = data
        del m                  # no msync: the median's mappings share the page cache

    def median(self) -> np.ndarray:
        """Return the NaN-skipping median of the singles (:func:`nanmedian_stack`), float32 (my, mx)."""
        if self._mem is not None:
            return nanmedian_stack(self._mem)
        n, my, mx = self.shape
        out = np.empty((my, mx), np.float32)
        for r0 in range(0, my, self.ROWS):
            m = self._map()
            part = np.ascontiguousarray(m[:, r0:r0 + self.ROWS])
            del m
            _nanmedian_stack(part, out[r0:r0 + self.ROWS])
        return out


def _run(state, ctx) -> str:
    if not hasattr(state, "library"):
        raise InputError(f"{state.path}: the calib engine's outlier_detection runs on a Level-3 association")
    if len(state.models) < 2:
        return "SKIPPED"                    # jwst: fewer than two exposures
    write = getattr(state, "write_product", None) if hasattr(state, "crf_suffix") else None

    def flagged(model) -> None:
        model.meta.cal_step.outlier_detection = "COMPLETE"
        if write is not None:
            # its _crf is final: written now (one write at a time), from a copy of its metadata
            # sharing its arrays, so that later steps see the member as they would otherwise
            from calib.background import wait_for_writes

            wait_for_writes()
            shared = {id(v): v for v in model.instance.values() if isinstance(v, np.ndarray)}
            shared[id(model.meta.wcs)] = model.meta.wcs
            write(state.crf_suffix(model), model.copy(memo=shared))

    detect_outliers(state.library, state.models, dict(ctx.params), release=getattr(state, "release_member", None),
                    flagged=flagged)
    return "COMPLETE"


STEP = StepSpec(
    name="outlier_detection", jwst_class="jwst.outlier_detection.OutlierDetectionStep", run=_run,
    params=(
            Param("weight_type", "option", "ivm", choices=("ivm", "exptime"), doc="weighting of the singles"),
            Param("pixfrac", "float", 1.0, min=0.0, max=1.0, doc="Pixel shrinkage factor"),
            Param("kernel", "option", "square", choices=("square", "point", "turbo"), doc="Flux distribution kernel"),
            Param("fillval", "string", "NAN", doc="value of single pixels without weight"),
            Param("maskpt", "float", 0.7, doc="weight threshold, fraction of the clipped mean weight"),
            Param("snr", "string", "5.0 4.0", doc="'snr1 snr2': thresholds in ERR before and after the 3x3 spread"),
            Param("scale", "string", "1.2 0.7", doc="'scale1 scale2': multiples of the blot's derivative added"),
            Param("backg", "float", 0.0, doc="sky level added to the blot, MJy/sr"),
            Param("kernel_size", "string", "7 7", support=SUPPORT_IGNORED, doc="IFU mode only"),
            Param("threshold_percent", "float", 99.8, support=SUPPORT_IGNORED, doc="IFU mode only"),
            Param("rolling_window_width", "integer", 25, support=SUPPORT_IGNORED, doc="TSO mode only"),
            Param("ifu_second_check", "boolean", False, support=SUPPORT_IGNORED, doc="IFU mode only"),
            Param("save_intermediate_results", "boolean", False, support=SUPPORT_IGNORED,
                  doc="write singles, median and blots"),
            Param("resample_data", "boolean", True, support=SUPPORT_DEFAULT_ONLY,
                  doc="drizzle singles (False: median of the inputs)"),
            Param("good_bits", "string", "~DO_NOT_USE", doc="DQ flags to allow"),
            Param("in_memory", "boolean", True, support=SUPPORT_IGNORED,
                  doc="in_memory flag ignored if run within the pipeline; set at pipeline level instead"),
            Param("pixmap_stepsize", "float", 1.0,
                  doc="Interpolation step size for pixel map; interpolation is used for stepsize > 1"),
            Param("pixmap_order", "integer", 1, doc="Spline order for pixel mapping, must be 1 or 3"),
    ),
    doc="median of the exposure groups drizzled apart, blotted back and compared with each member (driz_cr).",
)
