"""refpix: near-IR reference pixel correction (jwst refpix step, non-IRS2, "median" algorithm).

Method: jwst documentation "refpix" (NIR detectors), reimplemented here. The group is placed
in its full-frame 2048x2048 detector frame (DMS -> detector orientation with FASTAXIS /
SLOWAXIS, as jwst's reffile_utils does; pixels outside the subarray are zero, the
4-pixel border outside the subarray is flagged REFERENCE_PIXEL | DO_NOT_USE).

* Full frame, or a subarray read with 4 outputs: for each amplifier (512 detector columns)
  the sigma-clipped mean (3 sigma, iterated to convergence like scipy.stats.sigmaclip) of
  the top 4 and of the bottom 4 reference rows is computed separately for odd and even
  columns, ignoring DO_NOT_USE pixels; the average of top and bottom (or the one that
  exists) is subtracted from the odd / even columns of that amplifier. Then, with
  ``use_side_ref_pixels``, the 4 left and 4 right reference columns are median filtered
  along rows (window ``side_smoothing_length``, reflected at the ends, DO_NOT_USE ignored),
  left and right are averaged row by row (NaN-aware; 0 where both missing) and
  ``side_gain`` times that vector is subtracted from every column.
* Subarray with 1 output: the clipped means of all usable reference pixels (REFERENCE_PIXEL
  and not DO_NOT_USE in PIXELDQ) in even and in odd detector columns are subtracted from the
  even / odd columns. A subarray without reference pixels is left unchanged, which jwst
  records as COMPLETE, and so do we.
* NIRSpec subarrays that reach no detector edge (SUB512, SUB512S, SUB32: jwst's
  "edgeless" subarrays): as jwst, the first and last 4 DMS columns of the subarray (the
  detector rows nearest the subarray's top and bottom) serve as reference pixels for the
  1-output method, although they are light-sensitive; PIXELDQ is not changed.
"""
from __future__ import annotations

import numba
import numpy as np

from calib import dqflags
from calib.params import SUPPORT_DEFAULT_ONLY, SUPPORT_IGNORED, Param
from calib.step import StepSpec

__all__ = ["refpix", "refpix_miri", "clipped_mean", "running_median_rows", "STEP"]

_FULL = 2048
_DNU = np.uint32(dqflags.DO_NOT_USE)
_REF = np.uint32(dqflags.REFERENCE_PIXEL)
#: NIRSpec subarrays without reference pixels whose edge columns jwst uses as such
NRS_EDGELESS_SUBARRAYS = ("SUB512", "SUB512S", "SUB32")


@numba.njit(cache=True)
def clipped_mean(values, low, high):
    """Return the iterative sigma-clipped mean of a 1-D float array (scipy.stats.sigmaclip semantics).

    Returns NaN for an empty array. Arithmetic in float64.
    """
    n = values.size
    if n == 0:
        return np.nan
    c = values.astype(np.float64)
    mean = c.mean()
    std = c.std()
    if std == 0.0:
        return mean
    while True:
        mean = c.mean()
        std = c.std()
        lo = mean - std * low
        hi = mean + std * high
        keep = (c >= lo) & (c <= hi)
        kept = c[keep]
        if kept.size == c.size:
            break
        c = kept
        if c.size == 0:
            return np.nan
    return c.mean()


@numba.njit(cache=True, parallel=True)
def running_median_rows(block, ok, length):
    """Median over a (length x ncols) window sliding along rows, reflected at the ends.

    block float (nrows, ncols); ok bool (nrows, ncols) usable pixels; length odd int.
    Returns float64 (nrows,), NaN where the window has no usable pixel.
    """
    nrows, ncols = block.shape
    half = length // 2
    out = np.empty(nrows, np.float64)
    for r in numba.prange(nrows):
        buf = np.empty(length * ncols, np.float64)
        k = 0
        for w in range(r - half, r + half + 1):
            # reflection as jwst's create_reflected: index -j -> j, nrows-1+j -> nrows-1-j
            if w < 0:
                ww = -w
            elif w >= nrows:
                ww = 2 * (nrows - 1) - w
            else:
                ww = w
            for c in range(ncols):
                if ok[ww, c]:
                    buf[k] = block[ww, c]
                    k += 1
        if k == 0:
            out[r] = np.nan
        else:
            out[r] = np.median(buf[:k])
    return out


def _to_detector(a, fastaxis, slowaxis):
    if abs(fastaxis) == 1:
        return a[..., :: int(np.sign(slowaxis)), :: int(np.sign(fastaxis))]
    a = a[..., :: int(np.sign(fastaxis)), :: int(np.sign(slowaxis))]
    return np.swapaxes(a, -2, -1)


def _to_science(a, fastaxis, slowaxis):
    if abs(fastaxis) == 1:
        return a[..., :: int(np.sign(slowaxis)), :: int(np.sign(fastaxis))]
    a = np.swapaxes(a, -2, -1)
    return a[..., :: int(np.sign(fastaxis)), :: int(np.sign(slowaxis))]


def _clip(vals, siglimit):
    v = np.ascontiguousarray(vals, dtype=np.float64)
    m = clipped_mean(v, siglimit, siglimit)
    return None if np.isnan(m) else m


@numba.njit(cache=True)
def _running_median_rows_serial(block, ok, length):
    """Compute :func:`running_median_rows` serially (same values), for use inside prange."""
    nrows, ncols = block.shape
    half = length // 2
    out = np.empty(nrows, np.float64)
    buf = np.empty(length * ncols, np.float64)
    for r in range(nrows):
        k = 0
        for w in range(r - half, r + half + 1):
            if w < 0:
                ww = -w
            elif w >= nrows:
                ww = 2 * (nrows - 1) - w
            else:
                ww = w
            for c in range(ncols):
                if ok[ww, c]:
                    buf[k] = block[ww, c]
                    k += 1
        if k == 0:
            out[r] = np.nan
        else:
            out[r] = np.median(buf[:k])
    return out


@numba.njit(cache=True)
def _lower_bound(buf, n, v):
    """First index of the sorted buf[:n] whose value is not below v (binary search)."""
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) >> 1
        if buf[mid] < v:
            lo = mid + 1
        else:
            hi = mid
    return lo


@numba.njit(cache=True)
def _sorted_insert(buf, n, v):
    """Insert v into the sorted buf[:n] (float64); returns n + 1."""
    lo = _lower_bound(buf, n, v)
    for j in range(n, lo, -1):
        buf[j] = buf[j - 1]
    buf[lo] = v
    return n + 1


@numba.njit(cache=True)
def _sorted_remove(buf, n, v):
    """Remove one element equal to v from the sorted buf[:n] (v must be there); returns n - 1."""
    lo = _lower_bound(buf, n, v)
    for j in range(lo, n - 1):
        buf[j] = buf[j + 1]
    return n - 1


@numba.njit(cache=True)
def _sorted_replace(buf, n, old, v):
    """Replace one element equal to ``old`` in the sorted buf[:n] by v, keeping it sorted.

    Only the elements between the old and the new position move (the values of neighbouring
    rows are alike, so fewer than a removal plus an insertion would move).
    """
    lo = _lower_bound(buf, n, old)
    j = lo
    if v > old:
        while j + 1 < n and buf[j + 1] < v:
            buf[j] = buf[j + 1]
            j += 1
    else:
        while j > 0 and buf[j - 1] > v:
            buf[j] = buf[j - 1]
            j -= 1
    buf[j] = v


@numba.njit(cache=True)
def _reflect(w, nrows):
    if w < 0:
        return -w
    if w >= nrows:
        return 2 * (nrows - 1) - w
    return w


@numba.njit(cache=True)
def _sliding_median_rows(block, ok, length):
    """Compute :func:`running_median_rows` serially (same values) with a sliding sorted window.

    The window's usable values are kept sorted; moving down one row replaces the values of
    the row leaving it by those of the row entering it, column by column (reflected at the ends, as
    :func:`running_median_rows`), so each median is read off the sorted values instead of a
    selection over the whole window. A median is an order statistic (or, for an even count,
    ``(a + b) / 2`` of the two middle ones, as numba's ``np.median``), the same whichever
    algorithm finds it, as long as equal values are indistinguishable: a block with a NaN
    or a -0.0 among its usable values (whose order under ``<`` is ambiguous), or a window
    longer than the block, goes to :func:`_running_median_rows_serial` instead.
    """
    nrows, ncols = block.shape
    half = length // 2
    if half >= nrows:
        return _running_median_rows_serial(block, ok, length)
    for r in range(nrows):
        for c in range(ncols):
            if ok[r, c]:
                v = block[r, c]
                if np.isnan(v) or (v == 0.0 and np.signbit(v)):
                    return _running_median_rows_serial(block, ok, length)
    out = np.empty(nrows, np.float64)
    buf = np.empty(length * ncols + 1, np.float64)
    n = 0
    for w in range(-half, half + 1):
        ww = _reflect(w, nrows)
        for c in range(ncols):
            if ok[ww, c]:
                n = _sorted_insert(buf, n, block[ww, c])
    for r in range(nrows):
        if r > 0:
            wo = _reflect(r - half - 1, nrows)
            wi = _reflect(r + half, nrows)
            for c in range(ncols):
                if ok[wo, c] and ok[wi, c]:
                    _sorted_replace(buf, n, block[wo, c], block[wi, c])
                elif ok[wo, c]:
                    n = _sorted_remove(buf, n, block[wo, c])
            for c in range(ncols):
                if ok[wi, c] and not ok[wo, c]:
                    n = _sorted_insert(buf, n, block[wi, c])
        if n == 0:
            out[r] = np.nan
        elif n & 1:
            out[r] = buf[n >> 1]
        else:
            out[r] = (buf[(n >> 1) - 1] + buf[n >> 1]) / 2
    return out


@numba.njit(cache=True)
def _det_value(plane, srow, scol, R, C):
    sr = srow[R]
    sc = scol[C]
    if sr < 0 or sc < 0:
        return np.float32(0.0)
    return plane[sr, sc]


@numba.njit(cache=True)
def _ref_mean(plane, good, srow, scol, rs, re_, c0, c1, step, siglimit, buf):
    """Return the clipped mean of the usable pixels of a block.

    Clipped mean of the usable detector pixels rows rs:re_, columns c0:c1:step (row-major
    order, as numpy's boolean indexing gives them); NaN when there are none.
    """
    n = 0
    for R in range(rs, re_):
        for C in range(c0, c1, step):
            if good[R, C]:
                buf[n] = np.float64(_det_value(plane, srow, scol, R, C))
                n += 1
    return clipped_mean(buf[:n], siglimit, siglimit)


@numba.njit(cache=True)
def _top_bottom(a, b):
    if np.isnan(a) and np.isnan(b):
        return np.nan
    if np.isnan(a):
        return b
    if np.isnan(b):
        return a
    return 0.5 * (a + b)


@numba.njit(cache=True, parallel=True)
def _amplifier_kernel(data, good, srow, scol, r0, c0, fa, sa, odd_even, use_side, length,
                      side_gain, siglimit):
    """Apply the per-amplifier (+ side) correction to every group.

    Per-amplifier (+ side) correction of every group (planes in parallel, each plane
    computed serially, so results do not depend on the thread count).
    """
    nints, ngroups, ny, nx = data.shape
    for p in numba.prange(nints * ngroups):
        plane = data[p // ngroups, p % ngroups]
        buf = np.empty(8 * 512, np.float64)
        off = np.zeros(_FULL, np.float32)
        use_off = np.zeros(_FULL, np.bool_)
        for amp in range(4):
            cs = amp * 512
            ce = cs + 512
            if odd_even:
                vo = _top_bottom(_ref_mean(plane, good, srow, scol, 2044, 2048, cs, ce, 2, siglimit, buf),
                                 _ref_mean(plane, good, srow, scol, 0, 4, cs, ce, 2, siglimit, buf))
                ve = _top_bottom(_ref_mean(plane, good, srow, scol, 2044, 2048, cs + 1, ce, 2, siglimit, buf),
                                 _ref_mean(plane, good, srow, scol, 0, 4, cs + 1, ce, 2, siglimit, buf))
                if not np.isnan(vo) and not np.isnan(ve):
                    for C in range(cs, ce, 2):
                        off[C] = np.float32(vo)
                        off[C + 1] = np.float32(ve)
                        use_off[C] = True
                        use_off[C + 1] = True
            else:
                v = _top_bottom(_ref_mean(plane, good, srow, scol, 2044, 2048, cs, ce, 1, siglimit, buf),
                                _ref_mean(plane, good, srow, scol, 0, 4, cs, ce, 1, siglimit, buf))
                if not np.isnan(v):
                    for C in range(cs, ce):
                        off[C] = np.float32(v)
                        use_off[C] = True
        side = np.zeros(_FULL, np.float64)
        if use_side:
            lb = np.empty((_FULL, 4), np.float64)
            rb = np.empty((_FULL, 4), np.float64)
            gl = np.empty((_FULL, 4), np.bool_)
            gr = np.empty((_FULL, 4), np.bool_)
            for R in range(_FULL):
                for c in range(4):
                    v = _det_value(plane, srow, scol, R, c)
                    if use_off[c]:
                        v = v - off[c]
                    lb[R, c] = np.float64(v)
                    gl[R, c] = good[R, c]
                    C = _FULL - 4 + c
                    v = _det_value(plane, srow, scol, R, C)
                    if use_off[C]:
                        v = v - off[C]
                    rb[R, c] = np.float64(v)
                    gr[R, c] = good[R, C]
            left = _sliding_median_rows(lb, gl, length)
            right = _sliding_median_rows(rb, gr, length)
            for R in range(_FULL):
                le = left[R]
                ri = right[R]
                if np.isnan(le):
                    cm = 0.0 if np.isnan(ri) else ri
                else:
                    cm = le if np.isnan(ri) else 0.5 * (le + ri)
                side[R] = side_gain * cm
        # the offset of every science column (+0.0 where none applies: v - 0.0 == v for
        # every float32 v, -0.0 and NaN included), so that the rows are corrected branch-free
        offx = np.zeros(nx, np.float32)
        for x in range(nx):
            C = c0 + x if fa > 0 else _FULL - 1 - (c0 + x)
            if use_off[C]:
                offx[x] = off[C]
        for y in range(ny):
            R = r0 + y if sa > 0 else _FULL - 1 - (r0 + y)
            sr = side[R]
            row = plane[y]
            if use_side:
                for x in range(nx):
                    row[x] = np.float32(np.float64(row[x] - offx[x]) - sr)
            else:
                for x in range(nx):
                    row[x] = row[x] - offx[x]


def _refpix_amplifiers(data, good, r0, c0, fa, sa, odd_even_columns, use_side_ref_pixels,
                       side_smoothing_length, side_gain, siglimit):
    """Apply the per-amplifier method to a subarray read in place.

    The per-amplifier (+ side) method for FASTAXIS +-1 without building the full frame:
    only the reference rows/columns are read (in detector orientation, so the clipped means
    see the same values in the same order), and one pass corrects the subarray. Same
    arithmetic as the general path in :func:`refpix`; planes are processed in parallel.
    """
    ny, nx = data.shape[-2:]
    idx = np.arange(_FULL)
    srow = (idx if sa > 0 else _FULL - 1 - idx) - r0     # det row -> science row
    scol = (idx if fa > 0 else _FULL - 1 - idx) - c0     # det col -> science col
    srow = np.where((srow >= 0) & (srow < ny), srow, -1).astype(np.int64)
    scol = np.where((scol >= 0) & (scol < nx), scol, -1).astype(np.int64)
    length = side_smoothing_length + (1 - side_smoothing_length % 2)
    _amplifier_kernel(data, np.ascontiguousarray(good), srow, scol, int(r0), int(c0), int(fa),
                      int(sa), bool(odd_even_columns), bool(use_side_ref_pixels), int(length),
                      float(side_gain), float(siglimit))


def refpix(data, pdq, info, *, odd_even_columns: bool = True, use_side_ref_pixels: bool = True,
           side_smoothing_length: int = 11, side_gain: float = 1.0, siglimit: float = 3.0):
    """Correct near-IR ``data`` in place with the reference pixels.

    data float32 (nints, ngroups, ny, nx) DN; pdq uint32 (ny, nx); info an ExposureInfo
    (SUBSTRT/SUBSIZE, FASTAXIS/SLOWAXIS, NOUTPUTS). Returns ``(data, "COMPLETE")``.
    """
    nints, ngroups, ny, nx = data.shape
    r0, c0 = info.ystart - 1, info.xstart - 1
    if r0 < 0 or c0 < 0 or r0 + ny > _FULL or c0 + nx > _FULL:
        return data, "SKIPPED"   # jwst: SUBARRAY_DOESNTFIT
    fa, sa = info.fastaxis or 1, info.slowaxis or 2
    full_dq = np.zeros((_FULL, _FULL), np.uint32)
    if info.is_subarray:
        border = _DNU | _REF
        full_dq[:4, :] = border
        full_dq[-4:, :] = border
        full_dq[4:-4, :4] = border
        full_dq[4:-4, -4:] = border
    full_dq[r0:r0 + ny, c0:c0 + nx] = pdq
    if info.is_subarray and info.subarray in NRS_EDGELESS_SUBARRAYS:
        full_dq[r0:r0 + ny, c0:c0 + 4] |= _REF
        full_dq[r0:r0 + ny, c0 + nx - 4:c0 + nx] |= _REF
    det_dq = np.ascontiguousarray(_to_detector(full_dq, fa, sa))
    good = (det_dq & _DNU) == 0
    fullframe_method = (not info.is_subarray) or info.noutputs == 4
    full = np.zeros((_FULL, _FULL), np.float32)

    if not fullframe_method:
        refmask = ((det_dq & _REF) != 0) & good
        if not refmask.any():
            return data, "COMPLETE"
        cols = np.arange(_FULL)
        even_mask = refmask & (cols[None, :] % 2 == 0)
        odd_mask = refmask & (cols[None, :] % 2 == 1)

    if fullframe_method and abs(fa) == 1:
        _refpix_amplifiers(data, good, r0, c0, fa, sa, odd_even_columns, use_side_ref_pixels,
                           side_smoothing_length, side_gain, siglimit)
        return data, "COMPLETE"

    for i in range(nints):
        for g in range(ngroups):
            full[r0:r0 + ny, c0:c0 + nx] = data[i, g]
            grp = np.array(_to_detector(full, fa, sa), dtype=np.float32)
            if fullframe_method:
                for amp in range(4):
                    cs, ce = amp * 512, amp * 512 + 512
                    vals = {}
                    for parity, start in (("odd", cs), ("even", cs + 1)):
                        tb = []
                        for rs, re_ in ((2044, 2048), (0, 4)):
                            sel = good[rs:re_, start:ce:2]
                            tb.append(_clip(grp[rs:re_, start:ce:2][sel], siglimit))
                        a, b = tb
                        vals[parity] = (None if a is None and b is None else
                                        b if a is None else a if b is None else 0.5 * (a + b))
                    if odd_even_columns:
                        if vals["odd"] is not None and vals["even"] is not None:
                            grp[:, cs:ce:2] -= np.float32(vals["odd"])
                            grp[:, cs + 1:ce:2] -= np.float32(vals["even"])
                    else:
                        tb = []
                        for rs, re_ in ((2044, 2048), (0, 4)):
                            sel = good[rs:re_, cs:ce]
                            tb.append(_clip(grp[rs:re_, cs:ce][sel], siglimit))
                        a, b = tb
                        v = (None if a is None and b is None else
                             b if a is None else a if b is None else 0.5 * (a + b))
                        if v is not None:
                            grp[:, cs:ce] -= np.float32(v)
                if use_side_ref_pixels:
                    length = side_smoothing_length + (1 - side_smoothing_length % 2)
                    left = running_median_rows(np.ascontiguousarray(grp[:, 0:4], np.float64),
                                               np.ascontiguousarray(good[:, 0:4]), length)
                    right = running_median_rows(np.ascontiguousarray(grp[:, 2044:2048], np.float64),
                                                np.ascontiguousarray(good[:, 2044:2048]), length)
                    comb = np.where(np.isnan(left), np.where(np.isnan(right), 0.0, right),
                                    np.where(np.isnan(right), left, 0.5 * (left + right)))
                    grp = (grp - side_gain * comb[:, None]).astype(np.float32)
            else:
                if odd_even_columns:
                    ev = _clip(grp[even_mask], siglimit)
                    od = _clip(grp[odd_mask], siglimit)
                    if ev is not None:
                        grp[:, 0::2] -= np.float32(ev)
                    if od is not None:
                        grp[:, 1::2] -= np.float32(od)
                else:
                    v = _clip(grp[refmask], siglimit)
                    if v is not None:
                        grp -= np.float32(v)
            back = _to_science(grp, fa, sa)
            data[i, g] = back[r0:r0 + ny, c0:c0 + nx]
    return data, "COMPLETE"


def refpix_miri(data, pdq, info, *, odd_even_rows: bool = True, siglimit: float = 3.0):
    """MIRI full-frame reference pixel correction (jwst documentation "refpix", MIRI).

    The first group is subtracted from every group of its integration; then for each group
    after the first and each of the 4 amplifiers (amplifier a reads columns a, a+4, ...),
    the sigma-clipped means of the left (column a) and right (column 1028+a) reference
    columns, separately for odd and even rows (``odd_even_rows``), ignoring DO_NOT_USE
    pixels, are averaged and subtracted from that amplifier's columns; the first group is
    added back. Subarrays are SKIPPED, as jwst does.
    data float32 (nints, ngroups, 1024, 1032) DN; pdq uint32 (1024, 1032).
    Returns ``(data, status)``.
    """
    if info.is_subarray:
        return data, "SKIPPED"
    nints, ngroups, ny, nx = data.shape
    good = (pdq & _DNU) == 0
    for i in range(nints):
        first = data[i, 0].astype(np.float64)
        data[i] = data[i] - first
        for g in range(1, ngroups):
            grp = data[i, g]
            refs = {}
            bad = False
            for a in range(4):
                for side, col in (("left", a), ("right", 1028 + a)):
                    if odd_even_rows:
                        for parity in (0, 1):
                            sel = good[parity::2, col]
                            v = _clip(grp[parity::2, col][sel], siglimit)
                            bad |= v is None
                            refs[(a, side, parity)] = v
                    else:
                        v = _clip(grp[:, col][good[:, col]], siglimit)
                        bad |= v is None
                        refs[(a, side)] = v
            if bad:
                break
            for a in range(4):
                if odd_even_rows:
                    for parity in (0, 1):
                        sig = 0.5 * (refs[(a, "left", parity)] + refs[(a, "right", parity)])
                        grp[parity::2, a::4] -= np.float32(sig)
                else:
                    sig = 0.5 * (refs[(a, "left")] + refs[(a, "right")])
                    grp[:, a::4] -= np.float32(sig)
        data[i] = data[i] + first
    return data, "COMPLETE"


# ------------------------------------------------------------------------------ declared step
def _reads(spec, keys, params) -> tuple[str, ...]:
    # jwst reads REFPIX only for NIRSpec IRS2 readouts (refused by this engine) and SIRSKERNEL
    # only for refpix_algorithm="sirs" (default-only here): the median method reads neither
    return ()


def _run(state, ctx) -> str:
    c, info = ctx.params, state.info
    if info.is_miri:
        state.data, status = refpix_miri(state.data, state.pdq, info, odd_even_rows=bool(c["odd_even_rows"]),
                                         siglimit=float(c["siglimit"]))
    else:
        state.data, status = refpix(
            state.data, state.pdq, info, odd_even_columns=bool(c["odd_even_columns"]),
            use_side_ref_pixels=bool(c["use_side_ref_pixels"]),
            side_smoothing_length=int(c["side_smoothing_length"]), side_gain=float(c["side_gain"]),
            siglimit=float(c["siglimit"]))
    return status


_IRS2_ONLY = "affects NIRSpec IRS2 readouts only, which this engine refuses"
_SIRS_ONLY = "affects refpix_algorithm='sirs' only"
STEP = StepSpec(
    name="refpix", jwst_class="jwst.refpix.RefPixStep", reftypes=("refpix", "sirskernel"), run=_run,
    reads=_reads, skip_if_na=(),
    params=(
        Param("odd_even_columns", "boolean", True, doc="separate reference signal for odd/even columns"),
        Param("use_side_ref_pixels", "boolean", True, doc="subtract the side reference pixels' signal per row"),
        Param("side_smoothing_length", "integer", 11, min=1, max=2048,
              doc="median window (rows) smoothing the side reference signal"),
        Param("side_gain", "float", 1.0, doc="factor on the side reference signal"),
        Param("odd_even_rows", "boolean", True, doc="MIRI: separate reference signal for odd/even rows"),
        Param("ovr_corr_mitigation_ftr", "float", 3.0, support=SUPPORT_IGNORED, doc=_IRS2_ONLY),
        Param("preserve_irs2_refpix", "boolean", False, support=SUPPORT_IGNORED, doc=_IRS2_ONLY),
        Param("irs2_mean_subtraction", "boolean", False, support=SUPPORT_IGNORED, doc=_IRS2_ONLY),
        Param("refpix_algorithm", "option", "median", choices=("median", "sirs"), support=SUPPORT_DEFAULT_ONLY,
              doc="near-IR full-frame side-pixel algorithm; 'sirs' needs the jwst engine"),
        Param("sigreject", "float", 4.0, support=SUPPORT_IGNORED, doc=_SIRS_ONLY),
        Param("gaussmooth", "float", 1.0, support=SUPPORT_IGNORED, doc=_SIRS_ONLY),
        Param("halfwidth", "integer", 30, support=SUPPORT_IGNORED, doc=_SIRS_ONLY),
        Param("siglimit", "float", 3.0, min=0.001, doc="sigma-clipping limit (sigma) of the reference means"),
    ),
    doc="subtract the reference-pixel signal per amplifier, odd/even columns, side pixels (jwst refpix).",
)
