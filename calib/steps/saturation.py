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

Implementation: up to MASK_MAX_GROUPS groups, :func:`saturation_rows` (rows in parallel,
three passes per integration): each pixel's SATURATED groups and the groups step 4a flags
are bit masks, grown by OR-ing the masks of the box, and rows with no saturated pixel
within n_pix_grow_sat rows skip the growing and the read-pattern tests (which need a
SATURATED group). The plane-by-plane kernels (:func:`saturation_kernel`) give the same
results and serve longer ramps.
"""
from __future__ import annotations

import numba
import numpy as np

from calib import dqflags
from calib.params import Param
from calib.references import ref_array
from calib.step import StepSpec

__all__ = ["saturation", "saturation_kernel", "saturation_kernel_ints", "prepare_threshold",
           "ATOD_LIMIT", "STEP"]

ATOD_LIMIT = 65535.0

_SAT = np.uint8(dqflags.SATURATED)
_DNU = np.uint8(dqflags.DO_NOT_USE)
_ADF = np.uint8(dqflags.AD_FLOOR)


@numba.njit(cache=True, parallel=True)
def _grow(src, dst, flag, n):
    """dst[y, x] |= flag where any src in the (2n+1)^2 box around (y, x) is True.

    Rows with no True source within n rows are skipped (saturation is rare).
    """
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
    """Grow flags serially (the twin of _grow).

    dst[y, x] |= flag where any src in the (2n+1)^2 box around (y, x) is True.
    Rows with no True source within n rows are skipped (saturation is rare).
    """
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
    """Flag saturation with integrations in parallel.

    As :func:`saturation_kernel`, with integrations in parallel (each one serial): for
    many-integration exposures of small frames, where per-row parallelism costs more in
    thread start-ups than it gains. Same results.
    """
    for i in numba.prange(data.shape[0]):
        _saturate_one(data, gdq, i, thresh, no_check, bias, dilution, n_grow,
                      grp2_mean0, grp2_last2, grp2_len1, use_readpatt)


#: ``saturation`` uses the row kernels below up to this many groups (bit masks of groups in
#: a uint64); beyond, the plane-by-plane kernels above (same results)
MASK_MAX_GROUPS = 64


@numba.njit(cache=True)
def _rows_flag(data, gdq, i, y, thresh, sm, crossed, acc):
    """Flag saturation and the A/D floor in one row (steps 1 and 2).

    Steps 1 (without growing) and 2 for row y of integration i: SATURATED from the first
    group at or above the threshold on, AD_FLOOR | DO_NOT_USE at or below 0 DN. Sets
    sm[y, x] (unsigned integer, >= ngroups bits) to the bit mask of the groups whose
    GROUPDQ has SATURATED (flags already present included), the sources of the growing.
    Scratch: crossed uint8 (nx,), acc (nx,) of sm's type (the group masks are built in the
    narrowest type that holds them, one vectorised pass per group). Returns True when some
    pixel of the row has a SATURATED group.
    """
    ngroups, nx = data.shape[1], data.shape[3]
    one = acc.dtype.type(1)
    zero = acc.dtype.type(0)
    for x in range(nx):
        crossed[x] = 0
        acc[x] = zero
    t = thresh[y]
    for g in range(ngroups):
        d = data[i, g, y]
        q = gdq[i, g, y]
        bit = one << acc.dtype.type(g)
        for x in range(nx):
            v = d[x]
            c = crossed[x] | np.uint8(v >= t[x])
            crossed[x] = c
            qq = q[x] | (c << np.uint8(1)) | (np.uint8(v <= 0.0) * (_ADF | _DNU))
            q[x] = qq
            if qq & _SAT:
                acc[x] |= bit
    anyrow = zero
    for x in range(nx):
        sm[y, x] = acc[x]
        anyrow |= acc[x]
    return anyrow != 0


@numba.njit(cache=True)
def _near(rowany, y, n):
    """Return True when some rowany[yy] is True for |yy - y| <= n."""
    for yy in range(max(0, y - n), min(rowany.size, y + n + 1)):
        if rowany[yy]:
            return True
    return False


@numba.njit(cache=True)
def _box_or(m, rowany, y, x, n):
    """Return the OR of m over the box around one pixel.

    OR of m[yy, xx] (uint64) over the (2n+1)^2 box around (y, x), clipped at the array
    edge; rows with rowany False (all zero) are skipped.
    """
    ny, nx = m.shape
    acc = np.uint64(0)
    for yy in range(max(0, y - n), min(ny, y + n + 1)):
        if rowany[yy]:
            for xx in range(max(0, x - n), min(nx, x + n + 1)):
                acc |= m[yy, xx]
    return acc


@numba.njit(cache=True)
def _rows_grow_readpatt(data, gdq, i, y, thresh, no_check, bias, dilution, n, sm, rowany,
                        nf, grp2_mean0, grp2_last2, grp2_len1, use_readpatt):
    """Grow the SATURATED flags of one row and apply the read-pattern tests.

    For row y of integration i, after :func:`_rows_flag` ran on every row: grow the
    SATURATED flags (step 1: box of n pixels around every source of sm), then the read
    pattern tests on the final SATURATED flags: nf[y, x] (uint64) = the bit mask of the
    groups that step 4a flags DO_NOT_USE (grown by :func:`_rows_grow_dnu`), and step 4b.
    A pixel's final SATURATED flags are the bits of F = OR of sm over its box (n >= 0), so
    rows with no source within n rows have none and nothing to do. Returns True when some
    nf[y, x] is not 0.
    """
    ngroups, nx = data.shape[1], data.shape[3]
    for x in range(nx):
        nf[y, x] = 0
    if not _near(rowany, y, n):
        return False
    anyrow = False
    for x in range(nx):
        own = sm[y, x]
        f = _box_or(sm, rowany, y, x, n) if n > 0 else own
        add = f & ~own
        if add != 0:
            for g in range(ngroups):
                if (add >> np.uint64(g)) & np.uint64(1):
                    gdq[i, g, y, x] |= _SAT
        if not use_readpatt or (f >> np.uint64(1)) == 0:
            continue                  # no SATURATED group after the first: 4a, 4b false
        bits = np.uint64(0)
        for g in range(ngroups - 2, -1, -1):
            if dilution[g] == 1.0:
                continue
            if ((f >> np.uint64(g + 1)) & np.uint64(1)) == 0:
                continue              # next group not SATURATED
            if (f >> np.uint64(g)) & np.uint64(1):
                continue              # this group SATURATED
            if gdq[i, g, y, x] & _DNU:
                continue
            dil = 1.0 if no_check[y, x] else dilution[g]
            if data[i, g, y, x] >= thresh[y, x] * dil:
                bits |= np.uint64(1) << np.uint64(g)
        if bits != 0:
            nf[y, x] = bits
            anyrow = True
        if ngroups > 2:
            c3 = (((f >> np.uint64(2)) & np.uint64(1)) != 0
                  and ((f >> np.uint64(1)) & np.uint64(1)) == 0)
            if c3:
                b = bias[y, x]
                t = thresh[y, x]
                d0 = data[i, 0, y, x]
                d1 = data[i, 1, y, x]
                c1 = ((d0 - b) / grp2_mean0) * grp2_last2 + b < t
                c2 = (d1 - d0) > (t - d0) / grp2_len1
                if c1 and c2:
                    gdq[i, 1, y, x] |= _DNU
    return anyrow


@numba.njit(cache=True)
def _rows_grow_dnu(gdq, i, y, n, nf, nfany):
    """Flag DO_NOT_USE on one row's step-4a groups (step 4a).

    Step 4a for row y of integration i: DO_NOT_USE on the groups of nf (bit masks from
    :func:`_rows_grow_readpatt`) over the box of n pixels (n = 0: the pixel itself).
    """
    ngroups, nx = gdq.shape[1], gdq.shape[3]
    if not _near(nfany, y, n):
        return
    for x in range(nx):
        f = _box_or(nf, nfany, y, x, n)
        if f != 0:
            for g in range(ngroups):
                if (f >> np.uint64(g)) & np.uint64(1):
                    gdq[i, g, y, x] |= _DNU


@numba.njit(cache=True, parallel=True)
def saturation_rows(data, gdq, thresh, no_check, bias, dilution, n_grow,
                    grp2_mean0, grp2_last2, grp2_len1, use_readpatt, sm, nf):
    """Flag saturation with per-pixel bit masks of groups, rows in parallel.

    As :func:`saturation_kernel` (same arguments, same results; ngroups <= 64), with
    rows in parallel and three passes per integration instead of several per group: the
    groups of a pixel are reduced to bit masks (groups flagged SATURATED, groups step 4a
    flags), which are grown instead of per-group planes. Steps 4a and 4b read only the
    final SATURATED flags and the group's own DO_NOT_USE, so their order among groups does
    not matter. sm, nf: scratch (ny, nx) of an unsigned type of >= ngroups bits.
    """
    nints, ngroups, ny, nx = data.shape
    n = max(n_grow, 0)
    rowany = np.zeros(ny, np.bool_)
    nfany = np.zeros(ny, np.bool_)
    for i in range(nints):
        for y in numba.prange(ny):
            rowany[y] = _rows_flag(data, gdq, i, y, thresh, sm, np.empty(nx, np.uint8),
                                   np.empty(nx, sm.dtype))
        for y in numba.prange(ny):
            nfany[y] = _rows_grow_readpatt(data, gdq, i, y, thresh, no_check, bias, dilution,
                                           n, sm, rowany, nf, grp2_mean0, grp2_last2,
                                           grp2_len1, use_readpatt)
        if use_readpatt:
            for y in numba.prange(ny):
                _rows_grow_dnu(gdq, i, y, n, nf, nfany)


@numba.njit(cache=True, parallel=True)
def saturation_rows_ints(data, gdq, thresh, no_check, bias, dilution, n_grow,
                         grp2_mean0, grp2_last2, grp2_len1, use_readpatt, sm, nf):
    """Flag saturation by bit masks with integrations in parallel.

    As :func:`saturation_rows`, with integrations in parallel (each one serial), for
    many-integration exposures of small frames. Same results. sm, nf: arrays of an
    unsigned type of >= ngroups bits (only their type is used: each integration allocates
    its own (ny, nx) scratch).
    """
    nints, ngroups, ny, nx = data.shape
    n = max(n_grow, 0)
    for i in numba.prange(nints):
        sm_i = np.empty((ny, nx), sm.dtype)
        nf_i = np.empty((ny, nx), nf.dtype)
        rowany = np.zeros(ny, np.bool_)
        nfany = np.zeros(ny, np.bool_)
        crossed = np.empty(nx, np.uint8)
        acc = np.empty(nx, sm.dtype)
        for y in range(ny):
            rowany[y] = _rows_flag(data, gdq, i, y, thresh, sm_i, crossed, acc)
        for y in range(ny):
            nfany[y] = _rows_grow_readpatt(data, gdq, i, y, thresh, no_check, bias, dilution,
                                           n, sm_i, rowany, nf_i, grp2_mean0, grp2_last2,
                                           grp2_len1, use_readpatt)
        if use_readpatt:
            for y in range(ny):
                _rows_grow_dnu(gdq, i, y, n, nf_i, nfany)


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
    args = (data, gdq, thresh, no_check, np.ascontiguousarray(b), dilution,
            int(n_pix_grow_sat), m0, l2, n1, bool(use_readpatt))
    if ngroups <= MASK_MAX_GROUPS:
        mtype = np.uint16 if ngroups <= 16 else np.uint32 if ngroups <= 32 else np.uint64
        if data.shape[0] >= 8:
            saturation_rows_ints(*args, np.empty(1, mtype), np.empty(1, mtype))
        else:
            saturation_rows(*args, np.empty(data.shape[2:], mtype),
                            np.empty(data.shape[2:], mtype))
    else:
        (saturation_kernel_ints if data.shape[0] >= 8 else saturation_kernel)(*args)
    pdq |= sdq
    return gdq, pdq, "COMPLETE"


# ------------------------------------------------------------------------------ declared step
def _reads(spec, keys, params) -> tuple[str, ...]:
    # the superbias refines the group-2 test of near-IR read patterns; MIRI has none
    return ("saturation",) if keys.is_miri else ("saturation", "superbias")


def _run(state, ctx) -> str:
    info, step = state.info, ctx.name
    sat = ctx.prepared("saturation", ("threshold",), lambda m, p: prepare_threshold(
        ref_array(m, "data", info, p, step, dtype=np.float32),
        ref_array(m, "dq", info, p, step, dtype=np.uint32)))
    bias = None
    if not info.is_miri:
        bias = ctx.prepared("superbias", ("data",), lambda m, p: ref_array(
            m, "data", info, p, step, dtype=np.float32))
    state.gdq, state.pdq, status = saturation(
        state.data, state.gdq, state.pdq, None, None, info.nframes, bias=bias,
        n_pix_grow_sat=int(ctx.params["n_pix_grow_sat"]), use_readpatt=bool(ctx.params["use_readpatt"]),
        prepared=sat)
    return status


STEP = StepSpec(
    name="saturation", jwst_class="jwst.saturation.SaturationStep", reftypes=("saturation", "superbias"),
    run=_run, reads=_reads, skip_if_na=("saturation",),
    params=(Param("n_pix_grow_sat", "integer", 1, min=0, max=64,
                  doc="pixels around a saturated one also flagged SATURATED"),
            Param("use_readpatt", "boolean", True,
                  doc="use the read pattern of frame-averaged groups to flag early saturation")),
    doc="SATURATED/AD_FLOOR groups from the SATURATION thresholds (jwst saturation, stcal).",
)
