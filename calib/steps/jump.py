"""jump: cosmic-ray jump detection by the two-point difference method.

Method: Anderson & Gordon 2011, PASP 123, 1237 ("Optimal cosmic-ray detection for
non-destructive read ramps"), as the jwst documentation "jump" describes it, reimplemented
here. Everything is computed per pixel in electrons (data and read noise times GAIN):

* first differences ``d = group[k+1] - group[k]`` over all integrations, NaN where either
  group is DO_NOT_USE or SATURATED;
* the noise of a difference ``sigma = sqrt(|median(d)| + RN_e**2 / NFRAMES)`` where RN is the
  READNOISE reference value (the CDS noise of two frames, DN) times GAIN;
* with at least ``min_diffs_single_pass`` (10) usable differences per integration: one pass,
  flag every difference with ``|d - median(d)| / sigma > rejection_threshold``;
* with fewer: iterative, on ``|d|`` pooled over integrations: the median is taken after
  dropping the largest value when >= 4 values are usable (3: plain median; 2: the smaller),
  the largest ratio ``| |d| - median | / sigma`` is compared with ``rejection_threshold``
  (>= 4 usable differences), ``four_group_rejection_threshold`` (3) or
  ``three_group_rejection_threshold`` (2); a detection flags that group JUMP_DET and removes
  it, and the search repeats until nothing more is found;
* ``flag_4_neighbors``: for jumps whose ratio (against the signed median and sigma of the
  first bullet) lies between ``min_jump_to_flag_neighbors`` and
  ``max_jump_to_flag_neighbors``, the 4 adjacent pixels of that group are flagged JUMP_DET
  unless SATURATED or DO_NOT_USE;
* JUMP_DET is finally removed where a group is also DO_NOT_USE or SATURATED.
Pixels with GAIN <= 0 or NaN get NO_GAIN_VALUE | DO_NOT_USE in PIXELDQ. The step does
nothing when fewer than ``minimum_groups`` (3) groups are usable. Snowball and shower
flagging (off by default in jwst) and after-jump flagging (off by default) are not
implemented. With >= ``minimum_sigclip_groups`` (100)
integrations the jumps are found instead by sigma clipping each difference across the
integrations, as jwst/stcal do with ``astropy.stats.sigma_clip(first_diffs,
sigma=rejection_threshold, axis=0, masked=True)`` (median centre, standard deviation, at
most 5 iterations, NaN differences masked); here by :func:`sigclip_jump_kernel`, a numba
kernel giving the same masks: the bounds are those of astropy's C code
(``stats/src/compute_bounds.c``), either reproduced operation by operation (Wirth
selection, sums in the same order, :func:`_sigma_clip_bounds`) or, when no value lies
near a bound, computed faster with a certified floating-point error bound
(:func:`_sigma_clip_bounds_fast`).

Implementation: blocks of XBLOCK columns; the pixels of a block are first screened
together (:func:`_screen_lanes`: lanes innermost, medians by a sorting network) and only
those with a flagged group or a detected jump go through the per-pixel search; the
screening makes exactly the per-pixel code's decision, so results are unchanged.
"""
from __future__ import annotations

import numba
import numpy as np

from calib import dqflags
from calib.params import SUPPORT_DEFAULT_ONLY, SUPPORT_IGNORED, Param
from calib.references import ref_array
from calib.step import StepSpec

__all__ = ["jump", "jump_kernel", "flag_neighbors_kernel", "STEP"]

_SAT = np.uint8(dqflags.SATURATED)
_DNU = np.uint8(dqflags.DO_NOT_USE)
_JUMP = np.uint8(dqflags.JUMP_DET)


#: columns per block of the per-pixel kernels: a (nints, ngroups, XBLOCK) block of the
#: ramp is copied to contiguous scratch memory first (the ramp's groups are far apart)
XBLOCK = 128
assert XBLOCK % 8 == 0, "bit-packed neighbour candidates need byte-aligned blocks"


@numba.njit(cache=True, error_model="numpy")
def _small_median(v, m):
    """Return the median of a few values by ranks.

    Median of v[:m] (no NaN, m >= 1) by ranks: the element of rank k (ties broken by
    position) is the k-th of the sorted values, so the result equals the median of the
    sorted array; branch-free O(m^2), faster than sorting for the few differences of a
    ramp.
    """
    half = m // 2
    lo = 0.0
    hi = 0.0
    for i in range(m):
        vi = v[i]
        r = 0
        for j in range(m):
            vj = v[j]
            r += (vj < vi) | ((vj == vi) & (j < i))
        if r == half:
            hi = vi
        elif r == half - 1:
            lo = vi
    if m % 2 == 1:
        return hi
    return 0.5 * (lo + hi)


@numba.njit(cache=True, error_model="numpy")
def _median_sorted_prefix(vals, n):
    """Median of vals[:n] (NaN-free); sorts vals[:n] in place (insertion sort when short)."""
    if n == 0:
        return np.nan
    if n <= 16:
        return _small_median(vals, n)
    if n <= 32:
        for j in range(1, n):
            v = vals[j]
            k = j - 1
            while k >= 0 and vals[k] > v:
                vals[k + 1] = vals[k]
                k -= 1
            vals[k + 1] = v
        s = vals
    else:
        s = np.sort(vals[:n])
    if n == 1:
        return s[0]
    if n == 2:
        return (s[0] + s[1]) / 2.0
    m = n >> 1
    if n & 1:
        return s[m]
    return (s[m] + s[m - 1]) / 2.0


@numba.njit(cache=True, error_model="numpy")
def _median_of(a, n, buf):
    """Median of the non-NaN values among a[:n] (NaN if none), using scratch ``buf``.

    The value equals numpy's nanmedian: the middle element (or the mean of the two middle
    elements) of the sorted values; small sets are sorted by insertion, no allocation.
    """
    m = 0
    for j in range(n):
        v = a[j]
        if not np.isnan(v):
            buf[m] = v
            m += 1
    return _median_sorted_prefix(buf, m)


@numba.njit(cache=True, error_model="numpy")
def _median_select(a, n, buf, tmp):
    """Return the median of the non-NaN values, as numpy's nanmedian.

    Median of the non-NaN values among a[:n] (NaN if none), the value numpy's nanmedian
    gives (middle order statistic, or the mean of the two middle ones); a is not
    modified, buf and tmp are float64 scratch (>= n). Up to 32 values as
    :func:`_median_of`; more by selection (:func:`_select`, O(n)) instead of a sort.
    """
    m = 0
    for j in range(n):
        v = a[j]
        if not np.isnan(v):
            buf[m] = v
            m += 1
    if m <= 32:
        return _median_sorted_prefix(buf, m)
    kk = m >> 1
    up = _select(buf, tmp, m, kk)
    if m & 1:
        return up
    # lower middle: the largest value below ``up`` if at least kk values are below it
    nbelow = 0
    mx = -np.inf
    for j in range(n):
        x = a[j]
        below = x < up                  # False for NaN
        nbelow += below
        y = x if below else -np.inf
        mx = y if y > mx else mx
    return (up + (mx if nbelow >= kk else up)) / 2.0


@numba.njit(cache=True, error_model="numpy")
def _iter_median(absd, n, tmp, buf):
    """Return the median first difference of one pixel (stcal calc_med_first_diffs).

    jwst/stcal calc_med_first_diffs on one pixel's pooled |differences| absd[:n]
    (NaN = unusable); tmp and buf are scratch arrays of length >= n.
    """
    cnt = 0
    mx = -np.inf
    for j in range(n):
        v = absd[j]
        if not np.isnan(v):
            cnt += 1
            if v > mx:
                mx = v
    if cnt < 2:
        return np.nan
    if cnt == 2:
        mn = np.inf
        for j in range(n):
            v = absd[j]
            if not np.isnan(v) and v < mn:
                mn = v
        return mn
    if cnt >= 4:
        for j in range(n):
            tmp[j] = np.nan if absd[j] == mx else absd[j]
        return _median_of(tmp, n, buf)
    return _median_of(absd, n, buf)


@numba.njit(cache=True, error_model="numpy")
def _net_sort(v, n, ca, cb):
    """Sort v[:n] in place by a comparator network.

    v float64 (>= n), no NaN; (ca, cb) the :func:`sorting_network` of n values, applied as
    branch-free min/max pairs.
    """
    for c in range(ca.size):
        i = ca[c]
        j = cb[c]
        a = v[i]
        b = v[j]
        v[i] = a if a < b else b
        v[j] = b if a < b else a


@numba.njit(cache=True, error_model="numpy")
def _sorted_range_median(v, lo, hi):
    """Return the median of the sorted values v[lo:hi] (NaN when empty).

    The value :func:`_median_sorted_prefix` gives for the same values: the middle one, or
    half the sum of the two middle ones.
    """
    n = hi - lo
    if n <= 0:
        return np.nan
    h = lo + (n >> 1)
    if n & 1:
        return v[h]
    return 0.5 * (v[h - 1] + v[h])


@numba.njit(cache=True, error_model="numpy")
def _iterative_search_sorted(diffs, nt, nd, bq, xx, sd, av, ca, cb, rn2, nframes, rej, rej4, rej3):
    """Run the iterative search of one pixel on its sorted differences; return the signed median.

    Same decisions as the per-pixel loop of :func:`jump_kernel` (mode 1: ``_iter_median``
    on the pooled |differences|, the largest ratio ``| |d| - median | / sigma`` against the
    threshold for the usable count, every difference of that ratio flagged JUMP_DET in
    ``bq[:, :, xx]`` and removed, repeated), for ``diffs[:nt]`` (float64, NaN = unusable,
    every usable value finite) with nt the size of the network (ca, cb). Both the signed and
    the absolute differences are sorted once by the network (unusable ones as +inf, last).
    Since ``| x - m |`` (rounded) cannot decrease away from m on either side, the values of
    the largest ratio are the last and/or the first of the sorted remaining ones, so the
    remaining values always form a range av[lo:hi] of the sorted ones: each median is that
    of a range (the same value as the median of the same set found by ranks) and equal
    values share their fate, so the differences flagged are exactly those outside
    [av[lo], av[hi - 1]]. sd, av: float64 scratch (>= nt). Returns the median of the usable
    signed differences (NaN if none; its sign of zero may differ, which its callers' abs()
    makes immaterial).
    """
    c = 0
    for j in range(nt):
        d = diffs[j]
        u = not np.isnan(d)
        c += u
        sd[j] = d if u else np.inf
        av[j] = abs(d) if u else np.inf
    _net_sort(sd, nt, ca, cb)
    _net_sort(av, nt, ca, cb)
    med = _sorted_range_median(sd, 0, c)
    lo = 0
    hi = c
    rnf = rn2 / nframes
    while hi - lo > 0:
        usable = hi - lo
        # _iter_median on the remaining values
        if usable < 2:
            m = np.nan
        elif usable == 2:
            m = av[lo]
        elif usable == 3:
            m = av[lo + 1]
        else:
            top = av[hi - 1]
            h2 = hi
            while h2 > lo and av[h2 - 1] == top:
                h2 -= 1
            m = _sorted_range_median(av, lo, h2)
        s = np.sqrt(abs(m) + rnf)
        if s == 0.0:
            s = np.nan
        r_top = abs(av[hi - 1] - m) / s
        r_bot = abs(av[lo] - m) / s
        if np.isnan(r_top):           # m or s NaN (finite values): every ratio is NaN
            break
        mx = r_top if r_top >= r_bot else r_bot
        cr = ((usable >= 4 and mx > rej) or (usable == 3 and mx > rej4)
              or (usable == 2 and mx > rej3))
        if not cr:
            break
        while hi > lo and abs(av[hi - 1] - m) / s == mx:
            hi -= 1
        while lo < hi and abs(av[lo] - m) / s == mx:
            lo += 1
    if hi - lo < c:
        keep_lo = av[lo] if hi > lo else np.inf
        keep_hi = av[hi - 1] if hi > lo else -np.inf
        for j in range(nt):
            d = diffs[j]
            if not np.isnan(d):
                a = abs(d)
                if a < keep_lo or a > keep_hi:
                    bq[j // nd, j % nd + 1, xx] |= _JUMP
    return med


#: the lane-wise screening of :func:`_screen_lanes` is used up to this many pooled
#: differences per pixel (its medians cost O(n^2) per pixel)
LANE_MAX_DIFFS = 32


def sorting_network(n: int):
    """Return the comparators of Batcher's odd-even merge sort for n elements.

    Comparator pairs (lo, hi) of Batcher's odd-even merge sort for n elements, as two
    int64 arrays: applying ``v[lo], v[hi] = min, max`` in order sorts any n values. Built
    for the next power of two; comparators touching positions >= n are dropped (valid: it
    is the same as padding with +inf, which no comparator moves).
    """
    size = 1
    while size < n:
        size *= 2
    pairs = []

    def merge(lo, m, r):
        step = r * 2
        if step < m:
            merge(lo, m, step)
            merge(lo + r, m, step)
            for i in range(lo + r, lo + m - r, step):
                pairs.append((i, i + r))
        else:
            pairs.append((lo, lo + r))

    def sort(lo, m):
        if m > 1:
            h = m // 2
            sort(lo, h)
            sort(lo + h, h)
            merge(lo, m, 1)

    sort(0, size)
    keep = [(i, j) for i, j in pairs if j < n]
    return (np.array([i for i, _ in keep], np.int64), np.array([j for _, j in keep], np.int64))


@numba.njit(cache=True, error_model="numpy")
def _lane_sort(v, ca, cb, w):
    """Sort every lane of a block with a sorting network.

    Sort v[:, xx] (float32 (n, >= w), no NaN) for every lane xx < w with the comparator
    network (ca, cb) of :func:`sorting_network`; lanes innermost, branch-free.
    """
    for c in range(ca.size):
        i = ca[c]
        j = cb[c]
        for xx in range(w):
            a = v[i, xx]
            b = v[j, xx]
            v[i, xx] = a if a < b else b
            v[j, xx] = b if a < b else a


@numba.njit(cache=True, error_model="numpy")
def _sorted_median(v, c, xx):
    """Return the median of the c smallest values of a sorted lane.

    Median of the c smallest values of the sorted lane v[:, xx], in float64 (NaN when c
    is 0): the same value as :func:`_median_sorted_prefix` on those values (equal values
    may be permuted, which can change only the sign of a zero median; callers use the
    median only through |m| and |x - m|).
    """
    if c == 0:
        return np.nan
    h = c >> 1
    if c & 1:
        return np.float64(v[h, xx])
    return 0.5 * (np.float64(v[h - 1, xx]) + np.float64(v[h, xx]))


@numba.njit(cache=True, error_model="numpy")
def _screen_lanes(bd, bq, gain, readnoise, y, x0, w, nints, nd, nframes, rej, mode, ca, cb,
                  done, dl, mxl):
    """Screen a block of pixels for the common case of no jump.

    Screen the w pixels of a block (lanes xx, columns x0 + xx of row y) for the common
    case: every group usable and unflagged (no DO_NOT_USE, SATURATED or JUMP_DET), GAIN > 0
    and the primary search finds no jump. Such pixels need nothing more (``done[xx]``
    True): their GROUPDQ stays as it is. All other pixels are left to the per-pixel code.

    The decision is exactly the one the per-pixel code makes (mode 0: single pass; mode 1:
    first iteration of the iterative search, which stops when it finds nothing): the same
    float32 differences and float64 medians (found by sorting each lane with the network
    (ca, cb) instead of by ranks), and the largest ratio taken from the extreme values,
    which is exact since |x - m| / s is monotonic in x on each side of m.
    Scratch: dl float32 (nt, >= w), mxl float32 (>= w).
    """
    nt = nints * nd
    for xx in range(w):
        done[xx] = gain[y, x0 + xx] > 0
    for i in range(nints):
        for k in range(nd + 1):
            for xx in range(w):
                if (bq[i, k, xx] & (_DNU | _SAT | _JUMP)) != 0:
                    done[xx] = False
    for i in range(nints):
        for k in range(nd):
            j = i * nd + k
            for xx in range(w):
                g = gain[y, x0 + xx]
                a = np.float32(bd[i, k, xx] * g)
                b = np.float32(bd[i, k + 1, xx] * g)
                d = np.float32(b - a)
                dl[j, xx] = d if mode == 0 else abs(d)
    if mode == 1:
        # the largest |d| (all copies) are left out of the median: move them to the end
        for xx in range(w):
            mxl[xx] = dl[0, xx]
        for j in range(1, nt):
            for xx in range(w):
                v = dl[j, xx]
                mxl[xx] = v if v > mxl[xx] else mxl[xx]
        for j in range(nt):
            for xx in range(w):
                v = dl[j, xx]
                dl[j, xx] = np.float32(np.inf) if v == mxl[xx] else v
    _lane_sort(dl, ca, cb, w)
    for xx in range(w):
        if not done[xx]:
            continue
        g = gain[y, x0 + xx]
        rn_e = readnoise[y, x0 + xx] * g
        rn2 = np.float64(rn_e) * np.float64(rn_e)
        if mode == 0:
            m = _sorted_median(dl, nt, xx)
            hi = np.float64(dl[nt - 1, xx])
        else:
            c = 0
            for j in range(nt):
                c += dl[j, xx] != np.inf
            m = _sorted_median(dl, c, xx)
            if np.isnan(m):           # all |d| equal: the search stops at once, no jump
                continue
            hi = np.float64(mxl[xx])
        lo = np.float64(dl[0, xx])
        s = np.sqrt(abs(m) + rn2 / nframes)
        r = max(abs(hi - m), abs(lo - m)) / s
        if not (s > 0.0 and r <= rej):
            done[xx] = False


@numba.njit(cache=True, parallel=True, error_model="numpy")
def jump_kernel(data, gdq, gain, readnoise, nframes, rej, rej4, rej3, mode,
                flag4, min_nb, max_nb, nbcand, net_lo, net_hi):
    """Flag primary jumps in ``gdq`` (in place) and mark neighbour-flagging candidates.

    data float32 (nints, ngroups, ny, nx) DN; gdq uint8 same shape; gain, readnoise float32
    (ny, nx) (e-/DN, DN); nframes int; rej/rej4/rej3 the thresholds for >= 4 / 3 / 2 usable
    differences (sigma); mode 0: single pass, 1: iterative, 2: no primary detection (already
    done by sigma clipping); nbcand uint8 (nints, ngroups, ny, (nx + 7) // 8), zeroed,
    output: bit x & 7 of byte x >> 3 marks pixel x (blocks start at multiples of XBLOCK,
    a multiple of 8, so no two work items write the same byte); net_lo/net_hi
    the :func:`sorting_network` of nints * (ngroups - 1) values (used up to
    LANE_MAX_DIFFS differences to screen out, many pixels at once, those with no jump).
    Work items are rows (scratch allocated once per row), done XBLOCK columns at a time;
    every pixel's result depends on that pixel only, so results do not depend on the
    number of threads.
    """
    nints, ngroups, ny, nx = data.shape
    nd = ngroups - 1
    nt = nints * nd
    nxb = (nx + XBLOCK - 1) // XBLOCK
    net_lo_n = min(nt, LANE_MAX_DIFFS)      # the number of values the network sorts
    for y in numba.prange(ny):
        # one work item: a row; scratch allocated once per row, then XBLOCK columns at a
        # time copied to contiguous scratch (the groups of a pixel are far apart in the ramp)
        bd = np.empty((nints, ngroups, XBLOCK), np.float32)
        bq = np.empty((nints, ngroups, XBLOCK), np.uint8)
        diffs = np.empty(nt, np.float64)
        absd = np.empty(nt, np.float64)
        ratio = np.empty(nt, np.float64)
        tmp = np.empty(nt, np.float64)
        buf = np.empty(nt, np.float64)
        done = np.zeros(XBLOCK, np.bool_)
        dl = np.empty((max(min(nt, LANE_MAX_DIFFS), 1), XBLOCK), np.float32)   # _screen_lanes
        mxl = np.empty(XBLOCK, np.float32)
        for b in range(nxb):
            x0 = b * XBLOCK
            w = min(nx, x0 + XBLOCK) - x0
            for i in range(nints):
                for k in range(ngroups):         # row slices: copied as memory blocks
                    bd[i, k, :w] = data[i, k, y, x0:x0 + w]
                    bq[i, k, :w] = gdq[i, k, y, x0:x0 + w]
            done[:] = False
            if mode != 2 and nt <= LANE_MAX_DIFFS and (mode == 0 or nt >= 4):
                _screen_lanes(bd, bq, gain, readnoise, y, x0, w, nints, nd, nframes, rej, mode,
                              net_lo, net_hi, done, dl, mxl)
            for xx in range(w):
                if done[xx]:
                    continue
                x = x0 + xx
                g = gain[y, x]
                rn_e = readnoise[y, x] * g
                rn2 = np.float64(rn_e) * np.float64(rn_e)
                if mode == 2:
                    # primary detection already done: the median is needed only to decide
                    # neighbour flagging around this pixel's jumps (often none)
                    need = False
                    if flag4:
                        for i in range(nints):
                            for k in range(1, ngroups):
                                need |= (bq[i, k, xx] & _JUMP) != 0
                            if need:
                                break
                    if not need:
                        continue
                finite = True
                for i in range(nints):
                    for k in range(nd):
                        q0 = bq[i, k, xx]
                        q1 = bq[i, k + 1, xx]
                        if (q0 & (_DNU | _SAT)) != 0 or (q1 & (_DNU | _SAT)) != 0:
                            diffs[i * nd + k] = np.nan
                        else:
                            a = np.float32(bd[i, k, xx] * g)
                            b = np.float32(bd[i, k + 1, xx] * g)
                            d = np.float32(b - a)
                            diffs[i * nd + k] = d
                            finite &= np.isfinite(d)
                if mode == 1 and finite and nt == net_lo_n:
                    # the common case: sorted once, the same decisions (see the function)
                    med = _iterative_search_sorted(diffs, nt, nd, bq, xx, absd, ratio, net_lo, net_hi,
                                                   rn2, nframes, rej, rej4, rej3)
                    sig = np.sqrt(abs(med) + rn2 / nframes)
                    if sig == 0.0:
                        sig = np.nan
                else:
                    med = _median_select(diffs, nt, buf, tmp)
                    sig = np.sqrt(abs(med) + rn2 / nframes)
                    if sig == 0.0:
                        sig = np.nan
                if mode == 0:
                    for j in range(nt):
                        d = diffs[j]
                        if not np.isnan(d) and abs(d - med) / sig > rej:
                            bq[j // nd, j % nd + 1, xx] |= _JUMP
                elif mode == 1 and not (finite and nt == net_lo_n):
                    for j in range(nt):
                        absd[j] = abs(diffs[j])
                    for _it in range(nt):
                        usable = 0
                        for j in range(nt):
                            if not np.isnan(absd[j]):
                                usable += 1
                        m = _iter_median(absd, nt, tmp, buf)
                        s = np.sqrt(abs(m) + rn2 / nframes)
                        if s == 0.0:
                            s = np.nan
                        mx = np.nan
                        for j in range(nt):
                            r = abs(absd[j] - m) / s
                            ratio[j] = r
                            if not np.isnan(r) and (np.isnan(mx) or r > mx):
                                mx = r
                        if np.isnan(mx):
                            break
                        cr = ((usable >= 4 and mx > rej) or (usable == 3 and mx > rej4)
                              or (usable == 2 and mx > rej3))
                        if not cr:
                            break
                        for j in range(nt):
                            if ratio[j] == mx:
                                bq[j // nd, j % nd + 1, xx] |= _JUMP
                                absd[j] = np.nan
                if flag4:
                    for i in range(nints):
                        for k in range(1, ngroups):
                            if (bq[i, k, xx] & _JUMP) != 0:
                                r = abs(diffs[i * nd + k - 1] - med) / sig
                                if r < max_nb and r > min_nb:
                                    nbcand[i, k, y, x >> 3] |= np.uint8(1 << (x & 7))
            if mode != 2:
                for i in range(nints):
                    for k in range(ngroups):
                        gdq[i, k, y, x0:x0 + w] = bq[i, k, :w]


@numba.njit(cache=True, parallel=True, error_model="numpy")
def flag_neighbors_kernel(gdq, nbcand):
    """Flag JUMP_DET at candidates and their 4 neighbours.

    Gdq |= JUMP_DET where the pixel or one of its 4 neighbours is a candidate (nbcand
    bit-packed as :func:`jump_kernel` writes it) and the group is neither SATURATED nor
    DO_NOT_USE; then drop JUMP_DET where DO_NOT_USE or SATURATED.
    """
    nints, ngroups, ny, nx = gdq.shape
    nbx = nbcand.shape[3]
    for y in numba.prange(ny):            # rows in parallel, x innermost (contiguous)
        for i in range(nints):
            for k in range(ngroups):
                # first no JUMP_DET where SATURATED or DO_NOT_USE (vectorised over the row) ...
                row = gdq[i, k, y]
                for x in range(nx):
                    q = row[x]
                    row[x] = q & ~_JUMP if (q & (_SAT | _DNU)) != 0 else q
                # ... then JUMP_DET at the (few) candidates of rows y-1, y, y+1 that touch
                # row y, except where SATURATED or DO_NOT_USE: the same result as testing
                # every pixel's 4 neighbours, visiting only the candidates
                for yy in range(max(0, y - 1), min(ny, y + 2)):
                    for b in range(nbx):
                        bits = nbcand[i, k, yy, b]
                        if bits == 0:
                            continue
                        for j in range(8):
                            if (bits >> j) & 1 == 0:
                                continue
                            xc = (b << 3) + j
                            lo = xc - 1 if (yy == y and xc > 0) else xc
                            hi = xc + 1 if (yy == y and xc < nx - 1) else xc
                            for x in range(lo, hi + 1):
                                q = gdq[i, k, y, x]
                                if (q & (_SAT | _DNU)) == 0:
                                    gdq[i, k, y, x] = q | _JUMP


@numba.njit(cache=True, error_model="numpy")
def _wirth_kth(a, n, k):
    """Return the k-th smallest value by Wirth's selection, as astropy.

    k-th smallest (0-based) of a[:n] (float64, no NaN) by N. Wirth's selection
    ("Algorithms + Data Structures = Programs", 1976; N. Devillard's C version), the
    routine astropy's ``_fast_sigma_clip`` uses: a[:n] is permuted in place exactly as
    that routine permutes it, which matters because astropy then sums the buffer in its
    new order (floating-point sums depend on the order).
    """
    lo = 0
    hi = n - 1
    while lo < hi:
        x = a[k]
        i = lo
        j = hi
        while True:
            while a[i] < x:
                i += 1
            while x < a[j]:
                j -= 1
            if i <= j:
                t = a[i]
                a[i] = a[j]
                a[j] = t
                i += 1
                j -= 1
            if i > j:
                break
        if j < k:
            lo = i
        if k < i:
            hi = j
    return a[k]


@numba.njit(cache=True, error_model="numpy")
def _sigma_clip_bounds(buf, count, sigma, maxiters):
    """Return astropy sigma_clip's final bounds for one set of values, exactly.

    Lower and upper bounds of astropy's ``sigma_clip(..., sigma=sigma, maxiters=maxiters,
    cenfunc="median", stdfunc="std")`` for one set of values (the axis=... fast path,
    astropy ``stats/src/compute_bounds.c``), reproduced operation by operation in float64.

    buf float64 (>= count,): the finite values in their original order (consumed: it is
    permuted and compacted in place); count >= 1; maxiters -1 for no limit. Each
    iteration: median (Wirth selection; for even counts the upper then the lower middle
    element, ``0.5 * (a + b)``), mean by a sequential sum over the permuted buffer,
    population standard deviation by a sequential sum of squared deviations, bounds
    ``median -/+ sigma * std``; values inside [lo, hi] are kept in order. Stops when no
    value was rejected, when none would remain (the bounds of that iteration are
    returned), or after ``maxiters`` iterations. Returns (lo, hi) float64.
    """
    it = 0
    lo = np.nan
    hi = np.nan
    while True:
        if count % 2 == 0:
            a = _wirth_kth(buf, count, count // 2)
            b = _wirth_kth(buf, count, count // 2 - 1)
            med = 0.5 * (a + b)
        else:
            med = _wirth_kth(buf, count, (count - 1) // 2)
        s = 0.0
        for j in range(count):
            s += buf[j]
        mean = s / count
        v = 0.0
        for j in range(count):
            d = buf[j] - mean
            v += d * d
        std = np.sqrt(v / count)
        lo = med - sigma * std
        hi = med + sigma * std
        nc = 0
        for j in range(count):
            d = buf[j]
            if d >= lo and d <= hi:
                buf[nc] = d
                nc += 1
        if nc == count or nc == 0:
            return lo, hi
        count = nc
        it += 1
        if maxiters != -1 and it >= maxiters:
            return lo, hi


#: unit roundoff of float64
_U = 2.0 ** -53


@numba.njit(cache=True, error_model="numpy")
def _select(a, b, m, k):
    """Return the k-th smallest value by branch-free quickselect.

    k-th smallest (0-based) of a[:m] (float64, no NaN, 0 <= k < m): quickselect with
    branch-free three-way partitions (median-of-3 pivot); a and b (length >= m) are
    overwritten. Returns the value, which as an order statistic does not depend on the
    algorithm.
    """
    while True:
        if m <= 2:
            if m == 1:
                return a[0]
            lo = a[0] if a[0] < a[1] else a[1]
            hi = a[1] if a[0] < a[1] else a[0]
            return lo if k == 0 else hi
        p0 = a[0]
        p1 = a[m >> 1]
        p2 = a[m - 1]
        # median of three
        if p0 > p1:
            p0, p1 = p1, p0
        if p1 > p2:
            p1 = p2
        p = p0 if p0 > p1 else p1
        nl = 0
        ne = 0
        for j in range(m):
            x = a[j]
            nl += x < p
            ne += x == p
        if k < nl:
            c = 0
            for j in range(m):
                x = a[j]
                b[c] = x
                c += x < p
            m = c
        elif k < nl + ne:
            return p
        else:
            c = 0
            for j in range(m):
                x = a[j]
                b[c] = x
                c += x > p
            m = c
            k -= nl + ne
        a, b = b, a


@numba.njit(cache=True, error_model="numpy")
def _sum4(a, m):
    """Return the sum of a[:m] with four accumulators.

    Sum of a[:m] with four accumulators (any summation order is covered by the error
    bound of :func:`_sigma_clip_bounds_fast`).
    """
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    j = 0
    while j + 4 <= m:
        s0 += a[j]
        s1 += a[j + 1]
        s2 += a[j + 2]
        s3 += a[j + 3]
        j += 4
    while j < m:
        s0 += a[j]
        j += 1
    return (s0 + s1) + (s2 + s3)


@numba.njit(cache=True, error_model="numpy")
def _sqdev4(a, m, mean):
    """Sum of (a[:m] - mean)**2 with four accumulators."""
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    j = 0
    while j + 4 <= m:
        d0 = a[j] - mean
        d1 = a[j + 1] - mean
        d2 = a[j + 2] - mean
        d3 = a[j + 3] - mean
        s0 += d0 * d0
        s1 += d1 * d1
        s2 += d2 * d2
        s3 += d3 * d3
        j += 4
    while j < m:
        d0 = a[j] - mean
        s0 += d0 * d0
        j += 1
    return (s0 + s1) + (s2 + s3)


@numba.njit(cache=True, error_model="numpy")
def _near(a, m, lo, hi, delta):
    """Return True when some a[:m] lies within delta of lo or hi."""
    hit = False
    for j in range(m):
        x = a[j]
        hit |= (abs(x - lo) <= delta) | (abs(x - hi) <= delta)
    return hit


@numba.njit(cache=True, error_model="numpy")
def _sigma_clip_bounds_fast(v, n, sigma, maxiters, t1, t2, t3):
    """Return the sigma-clipping bounds by the fast path, certified.

    The bounds of :func:`_sigma_clip_bounds` for the finite values v[:n] (float64, in
    original order, not modified), or ok=False when they cannot be certified.

    Medians are order statistics (any selection algorithm gives astropy's values); the
    mean and the standard deviation are summed here in another order than astropy's, so
    they may differ in the last bits. By the error bounds of floating-point summation
    (Higham, "Accuracy and Stability of Numerical Algorithms", 2nd ed. 2002, ch. 4: any
    order, |error| <= (count - 1) u sum|x|), astropy's bounds and these lie within
    ``delta`` of each other (taken 4x larger than the derivation gives). When no value
    lies within ``delta`` of a bound, every comparison ``lo <= x <= hi`` (so the kept
    sets, the number of iterations and the final mask) is the same as astropy's;
    otherwise (ties, e.g. equal values with zero standard deviation) ok is False and the
    caller uses the exact replica. t1, t2, t3 float64 scratch (>= n). Returns
    (lo, hi, ok).
    """
    big = 0.0
    for j in range(n):
        a = abs(v[j])
        big = a if a > big else big
    src = v
    count = n
    it = 0
    sg = abs(sigma)
    while True:
        # median: the upper middle order statistic, then for even counts the lower one
        kk = count // 2
        for j in range(count):
            t2[j] = src[j]
        up = _select(t2, t3, count, kk)
        if count % 2 == 0:
            nbelow = 0
            mx = -np.inf
            for j in range(count):
                x = src[j]
                below = x < up
                nbelow += below
                y = x if below else -np.inf
                mx = y if y > mx else mx
            med = 0.5 * (up + (mx if nbelow >= kk else up))
        else:
            med = up
        mean = _sum4(src, count) / count
        std = np.sqrt(_sqdev4(src, count, mean) / count)
        lo = med - sigma * std
        hi = med + sigma * std
        # |astropy - ours|: mean <= e_m, standard deviation <= ds, then the bounds
        e_m = (count + 2) * _U * big
        ds = (count + 8) * _U * std * 1.01 + e_m
        delta = 4.0 * (sg * ds + 4.0 * _U * (abs(med) + 2.0 * sg * (std + ds))) + 1e-300
        nc = 0
        hit = False
        for j in range(count):
            x = src[j]
            hit |= (abs(x - lo) <= delta) | (abs(x - hi) <= delta)
            t1[nc] = x
            nc += (x >= lo) & (x <= hi)
        if hit:
            return lo, hi, False
        it += 1
        if nc == count or nc == 0 or (maxiters != -1 and it >= maxiters):
            # the final mask compares every value with these bounds
            if count < n and _near(v, n, lo, hi, delta):
                return lo, hi, False
            return lo, hi, True
        src = t1
        count = nc


@numba.njit(cache=True, error_model="numpy")
def _clip_bounds(v, n, sigma, maxiters, t1, t2, t3):
    """Return astropy's sigma-clipping bounds of the finite values.

    Astropy's sigma-clipping bounds (lo, hi) of the finite values v[:n] (float64,
    original order, n >= 1, not modified): :func:`_sigma_clip_bounds_fast` when it can
    certify its result, else the exact replica :func:`_sigma_clip_bounds`. t1, t2, t3
    float64 scratch (>= n).
    """
    lo, hi, ok = _sigma_clip_bounds_fast(v, n, sigma, maxiters, t1, t2, t3)
    if ok:
        return lo, hi
    for j in range(n):
        t1[j] = v[j]
    return _sigma_clip_bounds(t1, n, sigma, maxiters)


@numba.njit(cache=True, inline="always")
def _row_bounds(row, n, buf, sigma, maxiters, t1, t2, t3, exact_only):
    """Return astropy sigma_clip's final bounds over one row's finite values.

    Astropy sigma_clip's final (lower, upper) bounds over the finite values among
    row[:n] (copied to buf as float64), or (NaN, NaN) when there are none: the
    operation-by-operation replica with ``exact_only``, else the certified fast path.
    """
    c = 0
    for j in range(n):
        d = np.float64(row[j])
        if np.isfinite(d):
            buf[c] = d
            c += 1
    if c == 0:
        return np.nan, np.nan
    if exact_only:
        return _sigma_clip_bounds(buf, c, sigma, maxiters)
    return _clip_bounds(buf, c, sigma, maxiters, t1, t2, t3)


@numba.njit(cache=True, error_model="numpy")
def sigma_clip_mask(values, sigma, maxiters, out, exact_only=False):
    """Compute astropy sigma_clip's mask row by row.

    Astropy ``sigma_clip(values, sigma=sigma, maxiters=maxiters, axis=-1,
    masked=True).mask`` (median centre, standard deviation) computed row by row.

    values float32 or float64 (m, n) (any units); out bool (m, n): True where a value is
    NaN/inf or lies outside that row's final bounds (comparisons in float64, as numpy
    compares a float32 array with astropy's float64 bounds). A row with no finite value
    has NaN bounds: only its non-finite values are masked. exact_only: always use the
    operation-by-operation replica (no certified fast path). Used by the tests against
    astropy; the jump step uses :func:`sigclip_jump_kernel` (same bounds code).
    """
    m, n = values.shape
    buf = np.empty(n, np.float64)
    t3 = np.empty(n, np.float64)
    t1 = np.empty(n, np.float64)
    t2 = np.empty(n, np.float64)
    for r in range(m):
        lo, hi = _row_bounds(values[r], n, buf, sigma, maxiters, t1, t2, t3, exact_only)
        for j in range(n):
            d = np.float64(values[r, j])
            out[r, j] = (not np.isfinite(d)) or d < lo or d > hi


@numba.njit(cache=True, parallel=True, error_model="numpy")
def sigclip_jump_kernel(data, gdq, gain, sigma, maxiters, only_use_ints):
    """Many-integration jump detection by sigma clipping, in place on ``gdq``.

    data float32 (nints, ngroups, ny, nx) DN; gdq uint8 same shape; gain float32 (ny, nx)
    e-/DN; sigma the rejection threshold; maxiters 5 (astropy's default, which jwst/stcal
    keep). Differences in electrons ``d[i, k] = float32(data[i, k+1] * gain) -
    float32(data[i, k] * gain)`` (float32 arithmetic, as jwst), NaN where either group is
    DO_NOT_USE or SATURATED. ``only_use_ints``: each difference k of a pixel is clipped
    among the nints integrations (astropy axis=0); otherwise all nints * (ngroups - 1)
    differences of a pixel together (axis=(0, 1), integration-major order as astropy's
    transposed reshape). A finite difference outside the final bounds gets JUMP_DET on its
    later group (finite implies that group is neither DO_NOT_USE nor SATURATED).

    Work items are XBLOCK columns of one row (and one difference with only_use_ints); each
    copies its differences to a small (columns, values) scratch array, so there are no
    exposure-sized temporaries, and every pixel's result depends on that pixel only
    (independent of the number of threads).
    """
    nints, ngroups, ny, nx = data.shape
    nd = ngroups - 1
    nxb = (nx + XBLOCK - 1) // XBLOCK
    nk = nd if only_use_ints else 1
    nv = nints if only_use_ints else nints * nd
    for item in numba.prange(nk * ny * nxb):
        k0 = item // (ny * nxb)
        y = (item // nxb) % ny
        x0 = (item % nxb) * XBLOCK
        w = min(nx, x0 + XBLOCK) - x0
        col = np.empty((w, nv), np.float32)
        buf = np.empty(nv, np.float64)
        t3 = np.empty(nv, np.float64)
        t1 = np.empty(nv, np.float64)
        t2 = np.empty(nv, np.float64)
        ka = k0 if only_use_ints else 0
        kb = k0 + 1 if only_use_ints else nd
        for i in range(nints):
            for k in range(ka, kb):
                j = i if only_use_ints else i * nd + k
                for xx in range(w):
                    x = x0 + xx
                    g = gain[y, x]
                    q0 = gdq[i, k, y, x]
                    q1 = gdq[i, k + 1, y, x]
                    if (q0 & (_DNU | _SAT)) != 0 or (q1 & (_DNU | _SAT)) != 0:
                        col[xx, j] = np.nan
                    else:
                        a = np.float32(data[i, k, y, x] * g)
                        b = np.float32(data[i, k + 1, y, x] * g)
                        col[xx, j] = np.float32(b - a)
        for xx in range(w):
            lo, hi = _row_bounds(col[xx], nv, buf, sigma, maxiters, t1, t2, t3, False)
            for j in range(nv):
                d = np.float64(col[xx, j])
                if np.isfinite(d) and (d < lo or d > hi):
                    if only_use_ints:
                        gdq[j, k0 + 1, y, x0 + xx] |= _JUMP
                    else:
                        gdq[j // nd, j % nd + 1, y, x0 + xx] |= _JUMP


@numba.njit(cache=True, parallel=True, error_model="numpy")
def _clear_jump_only_planes(gdq):
    """Unflag groups in which every pixel was flagged (jwst/stcal after sigma clipping).

    jwst/stcal after sigma clipping: in a group where every pixel is JUMP_DET or
    DO_NOT_USE, pixels whose flag is exactly JUMP_DET are reset to 0 (gdq uint8
    (nints, ngroups, ny, nx), in place).
    """
    nints, ngroups, ny, nx = gdq.shape
    for p in numba.prange(nints * ngroups):
        i = p // ngroups
        g = p % ngroups
        allset = True
        for y in range(ny):
            for x in range(nx):
                if (gdq[i, g, y, x] & (_JUMP | _DNU)) == 0:
                    allset = False
                    break
            if not allset:
                break
        if allset:
            for y in range(ny):
                for x in range(nx):
                    if gdq[i, g, y, x] == _JUMP:
                        gdq[i, g, y, x] = 0


def _sigma_clip_jumps(data, gdq, gain, threshold, only_use_ints):
    """Detect jumps by sigma clipping across integrations (many-integration mode).

    Many-integration mode: a difference is a jump when astropy's sigma clipping (median
    centre, standard deviation, ``threshold`` sigma, 5 iterations, as jwst/stcal call
    ``astropy.stats.sigma_clip``) rejects it among the same difference of all integrations
    (``only_use_ints``) or among all differences of the pixel; computed by
    :func:`sigclip_jump_kernel` (same masks as astropy), then groups made only of jumps
    lose them as in jwst.
    """
    sigclip_jump_kernel(data, gdq, gain, float(threshold), 5, bool(only_use_ints))
    _clear_jump_only_planes(gdq)


def jump(data, gdq, pdq, gain, readnoise, nframes: int, *, rejection_threshold: float = 4.0,
         three_group_rejection_threshold: float = 6.0, four_group_rejection_threshold: float = 5.0,
         flag_4_neighbors: bool = True, max_jump_to_flag_neighbors: float = 1000.0,
         min_jump_to_flag_neighbors: float = 10.0, min_diffs_single_pass: int = 10,
         minimum_groups: int = 3, minimum_sigclip_groups: int = 100, only_use_ints: bool = True):
    """Detect jumps.

    data float32 (nints, ngroups, ny, nx) DN (not modified); gdq uint8 same shape (JUMP_DET
    added in place); pdq uint32 (ny, nx); gain float (ny, nx) e-/DN; readnoise float (ny, nx)
    DN. Returns ``(gdq, pdq, "COMPLETE")``.
    """
    nints, ngroups = data.shape[:2]
    gain = np.ascontiguousarray(gain, dtype=np.float32)
    readnoise = np.ascontiguousarray(readnoise, dtype=np.float32)
    bad_gain = ~(gain > 0)
    pdq[bad_gain] |= np.uint32(dqflags.NO_GAIN_VALUE | dqflags.DO_NOT_USE)
    # groups in which every pixel is DO_NOT_USE: the AND of a group's flags has the bit
    # (an SIMD reduction with no temporary array)
    flagged = [sum(int(np.bitwise_and.reduce(gdq[i, g], axis=None)) & int(_DNU) != 0 for g in range(ngroups))
               for i in range(nints)]
    min_usable_groups = ngroups - max(flagged)
    total_groups = nints * ngroups - sum(flagged)
    sigclip = (nints >= minimum_sigclip_groups if only_use_ints
               else total_groups >= minimum_sigclip_groups)
    if min_usable_groups < minimum_groups and not sigclip:
        return gdq, pdq, "COMPLETE"
    if sigclip:
        _sigma_clip_jumps(data, gdq, gain, float(rejection_threshold), bool(only_use_ints))
        mode = 2
    else:
        mode = 0 if (min_usable_groups - 1) >= min_diffs_single_pass else 1
    nbcand = np.zeros(gdq.shape[:3] + ((gdq.shape[3] + 7) // 8,), np.uint8)
    jump_kernel(data, gdq, gain, readnoise, int(nframes), float(rejection_threshold),
                float(four_group_rejection_threshold), float(three_group_rejection_threshold),
                int(mode), bool(flag_4_neighbors), float(min_jump_to_flag_neighbors),
                float(max_jump_to_flag_neighbors), nbcand,
                *sorting_network(min(nints * (ngroups - 1), LANE_MAX_DIFFS)))
    flag_neighbors_kernel(gdq, nbcand)
    return gdq, pdq, "COMPLETE"


# ------------------------------------------------------------------------------ declared step
def _gain_readnoise(state, ctx):
    info, step = state.info, ctx.name
    gain = ctx.prepared("gain", ("data",), lambda m, p: ref_array(m, "data", info, p, step, dtype=np.float32))
    rn = ctx.prepared("readnoise", ("data",), lambda m, p: ref_array(m, "data", info, p, step, dtype=np.float32))
    return gain, rn


def _run(state, ctx) -> str:
    gain, rn = _gain_readnoise(state, ctx)
    kw = ctx.spec.native_params(ctx.params)
    state.gdq, state.pdq, status = jump(state.data, state.gdq, state.pdq, gain, rn, state.info.nframes, **kw)
    return status


_SNOWBALL = "snowball flagging parameter: without effect while expand_large_events is off"
_SHOWER = "MIRI shower flagging parameter: without effect while find_showers is off"
_FLAG_AFTER = "flag groups after a jump (jwst engine only)"
STEP = StepSpec(
    name="jump", jwst_class="jwst.jump.JumpStep", reftypes=("gain", "readnoise"), run=_run,
    skip_if_na=("gain", "readnoise"),
    params=(
        Param("rejection_threshold", "float", 4.0, min=0, doc="sigma threshold, >= 4 usable differences"),
        Param("three_group_rejection_threshold", "float", 6.0, min=0, doc="sigma threshold, 3 usable groups"),
        Param("four_group_rejection_threshold", "float", 5.0, min=0, doc="sigma threshold, 4 usable groups"),
        Param("maximum_cores", "string", "1", support=SUPPORT_IGNORED,
              doc="jwst's multiprocessing; this engine's threads follow NUMBA_NUM_THREADS"),
        Param("flag_4_neighbors", "boolean", True, doc="flag the 4 neighbours of a jump"),
        Param("max_jump_to_flag_neighbors", "float", 1000.0, min=0, doc="sigma above which neighbours are not flagged"),
        Param("min_jump_to_flag_neighbors", "float", 10.0, min=0, doc="sigma below which neighbours are not flagged"),
        Param("after_jump_flag_dn1", "float", 0.0, support=SUPPORT_DEFAULT_ONLY, doc=_FLAG_AFTER),
        Param("after_jump_flag_time1", "float", 0.0, support=SUPPORT_DEFAULT_ONLY, doc=_FLAG_AFTER),
        Param("after_jump_flag_dn2", "float", 0.0, support=SUPPORT_DEFAULT_ONLY, doc=_FLAG_AFTER),
        Param("after_jump_flag_time2", "float", 0.0, support=SUPPORT_DEFAULT_ONLY, doc=_FLAG_AFTER),
        Param("expand_large_events", "boolean", False, support=SUPPORT_DEFAULT_ONLY,
              doc="near-IR snowball flagging (jwst engine only)"),
        Param("min_sat_area", "float", 1.0, support=SUPPORT_IGNORED, doc=_SNOWBALL),
        Param("min_jump_area", "float", 5.0, support=SUPPORT_IGNORED, doc=_SNOWBALL),
        Param("expand_factor", "float", 2.0, support=SUPPORT_IGNORED, doc=_SNOWBALL),
        Param("use_ellipses", "boolean", False, support=SUPPORT_IGNORED, doc="deprecated in jwst"),
        Param("sat_required_snowball", "boolean", True, support=SUPPORT_IGNORED, doc=_SNOWBALL),
        Param("min_sat_radius_extend", "float", 2.5, support=SUPPORT_IGNORED, doc=_SNOWBALL),
        Param("sat_expand", "integer", 2, support=SUPPORT_IGNORED, doc=_SNOWBALL),
        Param("edge_size", "integer", 25, support=SUPPORT_IGNORED, doc=_SNOWBALL),
        Param("mask_snowball_core_next_int", "boolean", True, support=SUPPORT_IGNORED, doc=_SNOWBALL),
        Param("snowball_time_masked_next_int", "integer", 4000, support=SUPPORT_IGNORED, doc=_SNOWBALL),
        Param("find_showers", "boolean", False, support=SUPPORT_DEFAULT_ONLY,
              doc="MIRI shower flagging (jwst engine only)"),
        Param("max_shower_amplitude", "float", 4.0, support=SUPPORT_IGNORED, doc=_SHOWER),
        Param("extend_snr_threshold", "float", 1.2, support=SUPPORT_IGNORED, doc=_SHOWER),
        Param("extend_min_area", "integer", 90, support=SUPPORT_IGNORED, doc=_SHOWER),
        Param("extend_inner_radius", "float", 1.0, support=SUPPORT_IGNORED, doc=_SHOWER),
        Param("extend_outer_radius", "float", 2.6, support=SUPPORT_IGNORED, doc=_SHOWER),
        Param("extend_ellipse_expand_ratio", "float", 1.1, support=SUPPORT_IGNORED, doc=_SHOWER),
        Param("time_masked_after_shower", "float", 15.0, support=SUPPORT_IGNORED, doc=_SHOWER),
        Param("min_diffs_single_pass", "integer", 10, min=1,
              doc="usable differences from which one pass (no iteration) suffices"),
        Param("max_extended_radius", "integer", 200, support=SUPPORT_IGNORED, doc=_SNOWBALL),
        Param("minimum_groups", "integer", 3, min=1, doc="fewest groups for jump detection"),
        Param("minimum_sigclip_groups", "integer", 100, min=1,
              doc="groups (all integrations) from which sigma clipping replaces the two-point method"),
        Param("only_use_ints", "boolean", True, doc="sigma clipping compares one group across integrations"),
    ),
    doc="two-point difference jump detection (Anderson & Gordon 2011), sigma clipping for many integrations.",
)
