"""saturation: flag saturated and A/D-floor groups (jwst saturation step).

Method: jwst documentation "saturation" (and the stcal ``flag_saturated_pixels`` algorithm
it describes), reimplemented here:

1. A group whose value (DN, after group_scale, before superbias) is >= the SATURATION
   threshold is flagged SATURATED, and so is every following group of that integration.
   The SATURATED flag of each group is then grown by ``n_pix_grow_sat`` pixels (a square
   box, clipped at the array edge) to account for charge spilling.
2. A group at or below 0 DN is flagged AD_FLOOR | DO_NOT_USE (that group only).
3. Pixels with NO_SAT_CHECK in the reference DQ, or a NaN threshold (which adds
   NO_SAT_CHECK), get the threshold 65536 (the 16-bit A/D limit + 1): never saturated.
4. Read pattern (``use_readpatt``, jwst default True), with the jwst read pattern
   ``[[g*nframes + 1, ..., g*nframes + nframes] for each group g]``:
   a. (frame-averaged groups only) backwards over groups, a group that exceeds
      threshold * mean(frames)/last(frame), is not yet SATURATED/DO_NOT_USE and is followed
      by a SATURATED group is flagged DO_NOT_USE, and that DO_NOT_USE flag is grown;
   b. group 2 (index 1) gets DO_NOT_USE when group 3 is SATURATED but group 2 is not, the
      bias-subtracted first group extrapolated to the last frame of group 3 stays below
      threshold, and group 2 jumped by more than (threshold - group1) / nframes.
5. PIXELDQ |= SATURATION.DQ.

GROUPDQ gets SATURATED (not DO_NOT_USE) for saturated groups, exactly as jwst does; ramp
fitting and jump detection treat SATURATED groups as unusable.
"""
from __future__ import annotations

import numba
import numpy as np

from calib import dqflags

__all__ = ["saturation", "saturation_kernel", "saturation_kernel_ints", "prepare_threshold",
           "ATOD_LIMIT"]

ATOD_LIMIT = 65535.0

_SAT = np.uint8(dqflags.SATURATED)
_DNU = np.uint8(dqflags.DO_NOT_USE)
_ADF = np.uint8(dqflags.AD_FLOOR)


@numba.njit(cache=True, parallel=True)
def _grow(src, dst, flag, n):
    """dst[y, x] |= flag where any src in the (2n+1)^2 box around (y, x) is True.

    Rows with no True source within n rows are skipped (saturation is rare)."""
    ny, nx = src.shape
    rowany = np.zeros(ny, np.bool_)
    for y in numba.prange(ny):
        for x in range(nx):
            if src[y, x]:
                rowany[y] = True
                break
    for y in numba.prange(ny):
        y0 = max(0, y - n)
        y1 = min(ny, y + n + 1)
        near = False
        for yy in range(y0, y1):
            if rowany[yy]:
                near = True
        if not near:
            continue
        for x in range(nx):
            x0 = max(0, x - n)
            x1 = min(nx, x + n + 1)
            hit = False
            for yy in range(y0, y1):
                if not rowany[yy]:
                    continue
                for xx in range(x0, x1):
                    if src[yy, xx]:
                        hit = True
                        break
                if hit:
                    break
            if hit:
                dst[y, x] |= flag


@numba.njit(cache=True)
def _grow_serial(src, dst, flag, n):
    """Serial twin of _grow: dst[y, x] |= flag where any src in the (2n+1)^2 box around (y, x) is True.

    Rows with no True source within n rows are skipped (saturation is rare)."""
    ny, nx = src.shape
    rowany = np.zeros(ny, np.bool_)
    for y in range(ny):
        for x in range(nx):
            if src[y, x]:
                rowany[y] = True
                break
    for y in range(ny):
        y0 = max(0, y - n)
        y1 = min(ny, y + n + 1)
        near = False
        for yy in range(y0, y1):
            if rowany[yy]:
                near = True
        if not near:
            continue
        for x in range(nx):
            x0 = max(0, x - n)
            x1 = min(nx, x + n + 1)
            hit = False
            for yy in range(y0, y1):
                if not rowany[yy]:
                    continue
                for xx in range(x0, x1):
                    if src[yy, xx]:
                        hit = True
                        break
                if hit:
                    break
            if hit:
                dst[y, x] |= flag


@numba.njit(cache=True, parallel=True)
def saturation_kernel(data, gdq, thresh, no_check, bias, dilution, n_grow,
                      grp2_mean0, grp2_last2, grp2_len1, use_readpatt):
    """Flag saturation in ``gdq`` in place.

    data float32 (nints, ngroups, ny, nx) DN; gdq uint8 same shape; thresh float32 (ny, nx)
    DN (already 65536 where no check); no_check bool (ny, nx); bias float32 (ny, nx) DN
    (zeros when no superbias); dilution float64 (ngroups,) = mean(frames)/last(frame) per
    group; n_grow int; grp2_* the read-pattern numbers of step 4b; use_readpatt bool.
    """
    nints, ngroups, ny, nx = data.shape
    for i in range(nints):
        crossed = np.zeros((ny, nx), dtype=np.bool_)
        for g in range(ngroups):
            plane = data[i, g]
            dq = gdq[i, g]
            for y in numba.prange(ny):
                for x in range(nx):
                    v = plane[y, x]
                    if v >= thresh[y, x]:
                        crossed[y, x] = True
                    if crossed[y, x]:
                        dq[y, x] |= _SAT
                    if v <= 0.0:
                        dq[y, x] |= _ADF | _DNU
            if n_grow > 0:
                onlysat = np.zeros((ny, nx), dtype=np.bool_)
                for y in numba.prange(ny):
                    for x in range(nx):
                        onlysat[y, x] = (dq[y, x] & _SAT) != 0
                _grow(onlysat, dq, _SAT, n_grow)
        if use_readpatt:
            for g in range(ngroups - 2, -1, -1):
                if dilution[g] == 1.0:
                    continue
                plane = data[i, g]
                thisdq = gdq[i, g]
                nextdq = gdq[i, g + 1]
                newflag = np.zeros((ny, nx), dtype=np.bool_)
                for y in numba.prange(ny):
                    for x in range(nx):
                        dil = 1.0 if no_check[y, x] else dilution[g]
                        if (plane[y, x] >= thresh[y, x] * dil
                                and (thisdq[y, x] & (_SAT | _DNU)) == 0
                                and (nextdq[y, x] & _SAT) != 0):
                            newflag[y, x] = True
                for y in numba.prange(ny):
                    for x in range(nx):
                        if newflag[y, x]:
                            thisdq[y, x] |= _DNU
                if n_grow > 0:
                    _grow(newflag, thisdq, _DNU, n_grow)
            if ngroups > 2:
                dq2 = gdq[i, 1]
                dq3 = gdq[i, 2]
                d0 = data[i, 0]
                d1 = data[i, 1]
                for y in numba.prange(ny):
                    for x in range(nx):
                        b = bias[y, x]
                        t = thresh[y, x]
                        c1 = ((d0[y, x] - b) / grp2_mean0) * grp2_last2 + b < t
                        c2 = (d1[y, x] - d0[y, x]) > (t - d0[y, x]) / grp2_len1
                        c3 = (dq3[y, x] & _SAT) != 0 and (dq2[y, x] & _SAT) == 0
                        if c1 and c2 and c3:
                            dq2[y, x] |= _DNU


@numba.njit(cache=True)
def _saturate_one(data, gdq, i, thresh, no_check, bias, dilution, n_grow,
                  grp2_mean0, grp2_last2, grp2_len1, use_readpatt):
    """Integration ``i`` of :func:`saturation_kernel`, serially (same logic and results)."""
    nints, ngroups, ny, nx = data.shape
    crossed = np.zeros((ny, nx), dtype=np.bool_)
    for g in range(ngroups):
        plane = data[i, g]
        dq = gdq[i, g]
        for y in range(ny):
            for x in range(nx):
                v = plane[y, x]
                if v >= thresh[y, x]:
                    crossed[y, x] = True
                if crossed[y, x]:
                    dq[y, x] |= _SAT
                if v <= 0.0:
                    dq[y, x] |= _ADF | _DNU
        if n_grow > 0:
            onlysat = np.zeros((ny, nx), dtype=np.bool_)
            for y in range(ny):
                for x in range(nx):
                    onlysat[y, x] = (dq[y, x] & _SAT) != 0
            _grow_serial(onlysat, dq, _SAT, n_grow)
    if use_readpatt:
        for g in range(ngroups - 2, -1, -1):
            if dilution[g] == 1.0:
                continue
            plane = data[i, g]
            thisdq = gdq[i, g]
            nextdq = gdq[i, g + 1]
            newflag = np.zeros((ny, nx), dtype=np.bool_)
            for y in range(ny):
                for x in range(nx):
                    dil = 1.0 if no_check[y, x] else dilution[g]
                    if (plane[y, x] >= thresh[y, x] * dil
                            and (thisdq[y, x] & (_SAT | _DNU)) == 0
                            and (nextdq[y, x] & _SAT) != 0):
                        newflag[y, x] = True
            for y in range(ny):
                for x in range(nx):
                    if newflag[y, x]:
                        thisdq[y, x] |= _DNU
            if n_grow > 0:
                _grow_serial(newflag, thisdq, _DNU, n_grow)
        if ngroups > 2:
            dq2 = gdq[i, 1]
            dq3 = gdq[i, 2]
            d0 = data[i, 0]
            d1 = data[i, 1]
            for y in range(ny):
                for x in range(nx):
                    b = bias[y, x]
                    t = thresh[y, x]
                    c1 = ((d0[y, x] - b) / grp2_mean0) * grp2_last2 + b < t
                    c2 = (d1[y, x] - d0[y, x]) > (t - d0[y, x]) / grp2_len1
                    c3 = (dq3[y, x] & _SAT) != 0 and (dq2[y, x] & _SAT) == 0
                    if c1 and c2 and c3:
                        dq2[y, x] |= _DNU


@numba.njit(cache=True, parallel=True)
def saturation_kernel_ints(data, gdq, thresh, no_check, bias, dilution, n_grow,
                           grp2_mean0, grp2_last2, grp2_len1, use_readpatt):
    """As :func:`saturation_kernel`, with integrations in parallel (each one serial): for
    many-integration exposures of small frames, where per-row parallelism costs more in
    thread start-ups than it gains. Same results."""
    for i in numba.prange(data.shape[0]):
        _saturate_one(data, gdq, i, thresh, no_check, bias, dilution, n_grow,
                      grp2_mean0, grp2_last2, grp2_len1, use_readpatt)


def prepare_threshold(sat_thresh, sat_dq):
    """Per-pixel thresholds from the SATURATION reference (cut to the subarray).

    sat_thresh float (ny, nx) DN; sat_dq uint32 (ny, nx). Returns ``(thresh, no_check,
    sdq)``: thresh float32 (ny, nx) DN, 65536 where not checked (NO_SAT_CHECK or NaN);
    no_check bool (ny, nx); sdq uint32 (ny, nx), the reference DQ plus NO_SAT_CHECK where
    the threshold is NaN. Depends only on the reference, so it can be cached.
    """
    thresh = np.array(sat_thresh, dtype=np.float32)
    sdq = np.array(sat_dq, dtype=np.uint32)
    nan = np.isnan(thresh)
    sdq[nan] |= np.uint32(dqflags.NO_SAT_CHECK)
    no_check = ((sdq & np.uint32(dqflags.NO_SAT_CHECK)) != 0) | nan
    thresh[no_check] = ATOD_LIMIT + 1
    return thresh, no_check, sdq


def saturation(data, gdq, pdq, sat_thresh, sat_dq, nframes: int, *, bias=None,
               n_pix_grow_sat: int = 1, use_readpatt: bool = True, prepared=None):
    """Flag saturation.

    data float32 (nints, ngroups, ny, nx) DN; gdq uint8 same shape; pdq uint32 (ny, nx);
    sat_thresh float (ny, nx) DN and sat_dq uint32 (ny, nx) from the SATURATION reference
    cut to the subarray; bias float (ny, nx) DN from SUPERBIAS or None; prepared: the
    result of :func:`prepare_threshold` for these two arrays (then they are not read).
    Returns ``(gdq, pdq, "COMPLETE")``.
    """
    ngroups = data.shape[1]
    if prepared is None:
        prepared = prepare_threshold(sat_thresh, sat_dq)
    thresh, no_check, sdq = prepared
    read_pattern = [[x + 1 + g * nframes for x in range(nframes)] for g in range(ngroups)]
    dilution = np.array([np.mean(rp) / rp[-1] for rp in read_pattern], dtype=np.float64)
    if ngroups > 2:
        m0, l2, n1 = float(np.mean(read_pattern[0])), float(read_pattern[2][-1]), float(nframes)
    else:
        m0, l2, n1 = 1.0, 1.0, 1.0
    b = np.zeros(thresh.shape, np.float32) if bias is None else np.asarray(bias, np.float32)
    # small frames with many integrations: integrations in parallel; else rows in parallel
    kern = saturation_kernel_ints if data.shape[0] >= 8 else saturation_kernel
    kern(data, gdq, thresh, no_check, np.ascontiguousarray(b), dilution,
         int(n_pix_grow_sat), m0, l2, n1, bool(use_readpatt))
    pdq |= sdq
    return gdq, pdq, "COMPLETE"
