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
"""
from __future__ import annotations

import numba
import numpy as np

from calib import dqflags

__all__ = ["refpix", "refpix_miri", "clipped_mean", "running_median_rows"]

_FULL = 2048
_DNU = np.uint32(dqflags.DO_NOT_USE)
_REF = np.uint32(dqflags.REFERENCE_PIXEL)


@numba.njit(cache=True)
def clipped_mean(values, low, high):
    """Iterative sigma-clipped mean of a 1-D float array (scipy.stats.sigmaclip semantics).

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
