"""ramp_fit: slopes by ordinary least squares with optimal weighting (jwst ramp_fit, OLS).

Method: Fixsen et al. 2000, PASP 112, 1350 ("Cosmic-ray rejection and readout efficiency
for large-area arrays"), as the stcal documentation "ramp_fitting" describes it,
reimplemented here. Per pixel and integration:

* groups with any GROUPDQ bit other than PERSISTENCE are unusable; a ramp with exactly one
  usable group is suppressed (``suppress_one_group``, jwst default); each integration is
  split into segments of consecutive usable groups; a group flagged only JUMP_DET starts
  the next segment (its value is the segment's first point); one-group segments are dropped
  unless all segments have one group (then the first one is kept);
* each segment of n >= 3 groups is fitted by weighted least squares with weights
  ``|(k - (n-1)/2) / ((n-1)/2)|**P`` where P comes from the segment's signal to noise
  ``S/N = s*g / sqrt(RN_e**2 + s*g)`` (s = last - first value, DN; g = GAIN) via the table
  S/N < 5: 0, < 10: 0.4, < 20: 1, < 50: 3, < 100: 6, else 10; n = 2: the difference; n = 1:
  the value itself, divided by TGROUP;
* RN_e = READNOISE * GAIN / sqrt(2 * NFRAMES) (electrons per group);
  VAR_RNOISE(segment) = 12 (RN_e/TGROUP)**2 / ((n**3 - n) g**2) (n = 1, 2: 12(RN_e/TGROUP)**2
  / (6 g**2)); VAR_POISSON(segment) = (median rate + dark) / (TGROUP g (n - 1)) with the
  median rate the mean over integrations of the median first difference / TGROUP
  (group-1 for n <= 2), (DN/s)**2;
* an integration combines its segments: VAR_RNOISE = 1 / sum(1/var_r), VAR_POISSON =
  1 / sum(1/var_p), slope = sum(slope/var_r) * VAR_RNOISE, ERR = sqrt(1 / sum(1/(var_p +
  var_r))); the exposure combines all segments of all integrations the same way with
  ERR = sqrt(VAR_POISSON + VAR_RNOISE);
* integrations with CHARGELOSS groups (charge_migration) get VAR_RNOISE recomputed as if
  the CHARGELOSS | DO_NOT_USE groups were usable (stcal behaviour; slopes unchanged);
* DQ: the PIXELDQ, plus JUMP_DET if any group had a jump, SATURATED if any group
  saturated; DO_NOT_USE (and SATURATED) when no usable group (all saturated); slope NaN and
  variances 0 for DO_NOT_USE/SATURATED-invalid results; GAIN <= 0/NaN gives
  NO_GAIN_VALUE | DO_NOT_USE. Variances >= 1e6 are reported as 0.
Units: data DN, slopes DN/s, variances (DN/s)**2.

Implementation: blocks of XBLOCK columns, classified by :func:`_lane_prep`, which also
finds the median rates of the block's clean and jump-only pixels at once (lanes
innermost). Pixels without any GROUPDQ flag (one segment per integration, the common
case) are fitted together, lanes innermost, with the weights of the full-ramp segment
computed once per exposure (:func:`_clean_fit_lanes`); pixels whose only flags are
JUMP_DET by a short per-pixel fit without the flag bookkeeping (:func:`_jump_fit_lanes`);
the others by the general per-pixel code. Segment weights come from a table computed once
per exposure (:func:`_weight_table`). All paths evaluate the same expressions in the same
order, so the results do not depend on the path.
"""
from __future__ import annotations

import numba
import numpy as np

from calib import dqflags
from calib.errors import ReferenceFileError
from calib.params import SUPPORT_DEFAULT_ONLY, SUPPORT_IGNORED, Param
from calib.references import ref_array
from calib.step import StepSpec
from calib.steps.jump import _lane_sort, _median_sorted_prefix, _sorted_median, sorting_network

__all__ = ["ramp_fit", "ols_kernel", "snr_power", "STEP"]

_SAT = np.uint8(dqflags.SATURATED)
_DNU = np.uint8(dqflags.DO_NOT_USE)
_JUMP = np.uint8(dqflags.JUMP_DET)
_PERS = np.uint8(dqflags.PERSISTENCE)
_NPERS = np.uint8(0xFF & ~dqflags.PERSISTENCE)
_U_DNU = np.uint32(dqflags.DO_NOT_USE)
_U_SAT = np.uint32(dqflags.SATURATED)
_U_JUMP = np.uint32(dqflags.JUMP_DET)
_U_PERS = np.uint32(dqflags.PERSISTENCE)
_U_NGV = np.uint32(dqflags.NO_GAIN_VALUE)
_CHLO = np.uint8(dqflags.group["CHARGELOSS"])
LARGE_VARIANCE_THRESHOLD = 1.0e6
#: columns per block of ols_kernel (see calib.steps.jump.XBLOCK)
XBLOCK = 128


#: the weighting exponents P of the Fixsen et al. 2000 table, by index (see _power_index)
_POWERS = np.array([0.0, 0.4, 1.0, 3.0, 6.0, 10.0], np.float32)


@numba.njit(cache=True, error_model="numpy")
def _power_index(snr):
    """Index into _POWERS of the weighting exponent for a segment signal-to-noise ratio."""
    if snr < 5.0:
        return 0
    if snr < 10.0:
        return 1
    if snr < 20.0:
        return 2
    if snr < 50.0:
        return 3
    if snr < 100.0:
        return 4
    return 5


@numba.njit(cache=True, error_model="numpy")
def snr_power(snr):
    """Weighting exponent P for a segment signal-to-noise ratio (Fixsen et al. 2000 table)."""
    return (0.0, 0.4, 1.0, 3.0, 6.0, 10.0)[_power_index(snr)]


@numba.njit(cache=True, error_model="numpy")
def _segment_weights(wcache, wcache_n, pidx, n):
    """Return the optimal-weighting weights of an n-group segment.

    The unnormalised weights ``|(k - (n-1)/2) / ((n-1)/2)|**P`` (float32 power, as a
    float64) of an n-group segment with exponent ``_POWERS[pidx]``, k = 0..n-1, from the
    per-thread cache ``wcache[pidx, :n]`` (recomputed when ``wcache_n[pidx] != n``):
    most segments of an exposure share n and P, so the pow() runs rarely.
    """
    if wcache_n[pidx] != n:
        power = _POWERS[pidx]
        mid = (n - 1) / 2.0
        invmid = 1.0 / mid
        for kk in range(n):
            w = abs((np.float64(kk) - mid) * invmid)
            wcache[pidx, kk] = np.float64(np.float32(w) ** power)
        wcache_n[pidx] = n
    return wcache[pidx]


#: the block-wise median of :func:`_lane_prep` is used up to this many differences
LANE_MAX_GROUPS = 64


@numba.njit(cache=True, error_model="numpy")
def _lane_prep(bd, bq, gain, pdq, y, x0, w, tg, net_lo, net_hi, kind, mrate, dl, loc, cnt, orq):
    """Classify the w pixels (lanes xx) of a block and find their median rates.

    kind[xx] (int8): 1 = clean (no GROUPDQ flag in any group), 2 = jump-only candidate
    (every GROUPDQ flag is exactly JUMP_DET; :func:`_jump_fit_lanes` checks the rest), both
    only with GAIN > 0 and no DO_NOT_USE/SATURATED in PIXELDQ; 0 = any other pixel (left
    to the per-pixel code). For kinds 1 and 2, mrate[xx] = the sum over integrations of
    the median first difference / TGROUP (DN/s) over the differences whose second group
    is unflagged, computed as the per-pixel code does (float64 differences of group /
    TGROUP; median by sorting each lane with the network (net_lo, net_hi) of
    calib.steps.jump.sorting_network, excluded differences set to +inf so that they sort
    last; same value up to the sign of a zero, immaterial in a sum starting at +0).
    dl: float64 scratch (ngroups - 1, >= w); loc: float64 scratch (>= w); cnt: int64
    scratch (>= w); orq: uint8 scratch (>= w), the OR of each lane's flags. Returns the
    number of kind-2 lanes.
    """
    nints, ngroups = bd.shape[0], bd.shape[1]
    nd = ngroups - 1
    orq[:w] = 0
    for i in range(nints):
        for k in range(ngroups):
            for xx in range(w):
                orq[xx] |= bq[i, k, xx]
    nj = 0
    for xx in range(w):
        ok = (np.float64(gain[y, x0 + xx]) > 0.0
              and (pdq[y, x0 + xx] & (_U_DNU | _U_SAT)) == 0)
        kind[xx] = 0
        if ok and orq[xx] == 0:
            kind[xx] = 1
        elif ok and orq[xx] == _JUMP:
            kind[xx] = 2
            nj += 1
        mrate[xx] = 0.0
    for i in range(nints):
        for xx in range(w):
            loc[xx] = np.float64(bd[i, 0, xx]) / tg
            cnt[xx] = nd
        if nj == 0:
            for k in range(nd):
                for xx in range(w):
                    nxt = np.float64(bd[i, k + 1, xx]) / tg
                    dl[k, xx] = nxt - loc[xx]
                    loc[xx] = nxt
        else:
            for k in range(nd):
                for xx in range(w):
                    nxt = np.float64(bd[i, k + 1, xx]) / tg
                    fl = bq[i, k + 1, xx] != 0
                    d = nxt - loc[xx]
                    dl[k, xx] = np.inf if fl else d
                    cnt[xx] -= fl
                    loc[xx] = nxt
        _lane_sort(dl, net_lo, net_hi, w)
        if nj == 0:
            for xx in range(w):
                mrate[xx] += _sorted_median(dl, nd, xx)
        else:
            for xx in range(w):
                if kind[xx] != 0:
                    mrate[xx] += _sorted_median(dl, cnt[xx], xx)
    return nj


_NSC = 18   # rows of the scratch array of _clean_fit_lanes


@numba.njit(cache=True, error_model="numpy")
def _clean_fit_lanes(bd, gain, rnoise_e, dcurrent, pdq, y, x0, w, tg, wfull, mrate, kind,
                     sc, pid, want_ints, r_slope, r_dq, r_vp, r_vr, r_err,
                     i_slope, i_dq, i_vp, i_vr, i_err):
    """Fit the clean pixels of a block, all lanes at once.

    Fit the clean pixels of a block (``kind[xx] == 1``, see :func:`_lane_prep`; mrate[xx]
    their summed median rates): one segment of all ngroups groups per integration, so the
    fit of :func:`_fit_segment` and the combination of ``ols_kernel`` reduce to the
    expressions below, evaluated for all lanes at once (lanes innermost) in the same
    order of operations, hence with the same results. wfull float64 (6, ngroups): the
    full-segment weights per exponent (_segment_weights); sc float64 (_NSC, >= w) and pid
    int64 (>= w) scratch. Writes the outputs of the clean pixels only.
    """
    nints, n = bd.shape[0], bd.shape[1]
    for xx in range(w):
        rn = np.float64(rnoise_e[y, x0 + xx])
        sc[0, xx] = np.float64(gain[y, x0 + xx])
        sc[1, xx] = rn
        sc[2, xx] = np.float64(dcurrent[y, x0 + xx])
        sc[3, xx] = mrate[xx] / np.float32(nints)
        sc[4, xx] = 1.0 / (rn * rn)
        sc[10, xx] = 0.0          # sum of 1/VAR_POISSON over integrations
        sc[11, xx] = 0.0          # sum of 1/VAR_RNOISE
        sc[12, xx] = 0.0          # sum of slope/VAR_RNOISE
    for i in range(nints):
        for xx in range(w):
            g = sc[0, xx]
            rn = sc[1, xx]
            sig = np.float64(bd[i, n - 1, xx]) - np.float64(bd[i, 0, xx])
            den = rn * rn + sig * g
            snr = 0.0 if (den <= 0.0 or g == 0.0) else sig * g / np.sqrt(den)
            pid[xx] = _power_index(0.0 if snr < 0.0 else snr)
            for r in range(5, 10):
                sc[r, xx] = 0.0
        # the sums, lanes innermost over 1-D rows (vectorised), the weights gathered first
        s4, s5, s6, s7, s8, s9, wl = sc[4], sc[5], sc[6], sc[7], sc[8], sc[9], sc[17]
        for kk in range(n):
            xv = np.float64(kk) + 0
            for xx in range(w):
                wl[xx] = wfull[pid[xx], kk]
            row = bd[i, kk]
            for xx in range(w):
                wt = wl[xx] * s4[xx]
                dv = np.float64(row[xx])
                dv = 0.0 if np.isnan(dv) else dv
                xw = xv * wt
                s5[xx] += wt
                s6[xx] += xw
                s7[xx] += xv * xw
                s8[xx] += dv * wt
                s9[xx] += dv * xw
        # every lane, clean or not, without branches (so that the loop is vectorised; the
        # values of other lanes are not used), then the clean lanes' results are stored
        s0, s1, s2, s3 = sc[0], sc[1], sc[2], sc[3]
        s10, s11, s12, s13, s14, s15, s16 = sc[10], sc[11], sc[12], sc[13], sc[14], sc[15], sc[16]
        for xx in range(w):
            g = s0[xx]
            rn = s1[xx]
            dc = s2[xx]
            median_rate = s3[xx]
            sw = s5[xx]
            sx = s6[xx]
            dd = sw * s7[xx] - sx * sx
            num = sw * s9[xx] - sx * s8[xx]
            slope = (num * (1.0 / dd)) / tg
            pden = tg * g * (n - 1.0)
            vp = (median_rate + dc) / pden if median_rate > 0.0 else dc / pden
            rnum = rn / tg
            vr = 12.0 * rnum * rnum / ((n * n * n - n) * g * g)   # g > 0 (clean)
            ve = vp + vr
            ivr = 1.0 / vr
            ivp = 1.0 / vp if vp > 0.0 else 0.0
            ive = 1.0 / ve
            snum = slope / vr
            s13[xx] = ivp
            s14[xx] = ivr
            s15[xx] = ive
            s16[xx] = snum
            s10[xx] = s10[xx] + ivp if ivp > 0.0 else s10[xx]
            s11[xx] += ivr
            s12[xx] += snum
        if want_ints:
            for xx in range(w):
                if kind[xx] != 1:
                    continue
                ivp = sc[13, xx]
                ivr = sc[14, xx]
                ive = sc[15, xx]
                snum = sc[16, xx]
                vp_out = 1.0 / ivp if ivp > 0.0 else 0.0
                if vp_out >= LARGE_VARIANCE_THRESHOLD:
                    vp_out = 0.0
                vr_out = 1.0 / ivr
                if vr_out >= LARGE_VARIANCE_THRESHOLD:
                    vr_out = 0.0
                ve_out = 1.0 / ive
                x = x0 + xx
                i_slope[i, y, x] = np.float32(snum * vr_out)
                i_dq[i, y, x] = pdq[y, x]
                i_vp[i, y, x] = np.float32(vp_out)
                i_vr[i, y, x] = np.float32(vr_out)
                i_err[i, y, x] = np.float32(0.0 if ve_out > LARGE_VARIANCE_THRESHOLD
                                            else np.sqrt(ve_out))
    s10, s11, s12, s13, s14, s15, s16 = sc[10], sc[11], sc[12], sc[13], sc[14], sc[15], sc[16]
    for xx in range(w):          # every lane, branch-free as above
        vp = s10[xx]
        vp = 1.0 / vp if vp > 0.0 else vp
        vp = 0.0 if (vp >= LARGE_VARIANCE_THRESHOLD or vp < 0.0) else vp
        vr = s11[xx]
        vr = 1.0 / vr if vr > 0.0 else vr
        vr = 0.0 if vr >= LARGE_VARIANCE_THRESHOLD else vr
        slope = s12[xx]
        s13[xx] = np.sqrt(vp + vr)
        s14[xx] = slope if np.isnan(slope) else slope * vr
        s15[xx] = vp
        s16[xx] = vr
    for xx in range(w):
        if kind[xx] != 1:
            continue
        x = x0 + xx
        r_err[y, x] = np.float32(sc[13, xx])
        r_slope[y, x] = np.float32(sc[14, xx])
        r_dq[y, x] = pdq[y, x]
        r_vp[y, x] = np.float32(sc[15, xx])
        r_vr[y, x] = np.float32(sc[16, xx])


#: segments of up to this many groups take their weights from the table of _weight_table
WTAB_MAX_GROUPS = 128


@numba.njit(cache=True, inline="always")
def _ramp_segments(flags, n, seg_s, seg_l):
    """Find the fitted segments of one integration's ramp.

    The fitted segments of one integration's ramp: runs of groups whose GROUPDQ (flags,
    uint8 (n,), PERSISTENCE ignored) is 0, each starting one group earlier when the group
    before it is a JUMP_DET (the jump lies between the two), then the stcal rule of
    :func:`_keep_multi_group_segments`. Writes starts/lengths into seg_s/seg_l; returns
    ``(nseg, any group flagged)``.
    """
    nseg = 0
    in_seg = False
    start = 0
    maxlen = 0
    flagged = False
    for k in range(n):
        if (flags[k] & _NPERS) == 0:
            if not in_seg:
                start = k - 1 if (k > 0 and (flags[k - 1] & _NPERS) == _JUMP) else k
                in_seg = True
        else:
            flagged = True
            if in_seg:
                seg_s[nseg] = start
                seg_l[nseg] = k - start
                maxlen = max(maxlen, k - start)
                nseg += 1
                in_seg = False
    if in_seg:
        seg_s[nseg] = start
        seg_l[nseg] = n - start
        maxlen = max(maxlen, n - start)
        nseg += 1
    return _keep_multi_group_segments(seg_s, seg_l, nseg, maxlen), flagged


@numba.njit(cache=True, inline="always")
def _keep_multi_group_segments(seg_s, seg_l, nseg, maxlen):
    """Keep the segments stcal fits among those found.

    The segments of one integration that are fitted (stcal's rule): with several
    segments, the one-group ones are dropped when a longer one exists; when all are one
    group long, only the first is kept. Edits seg_s/seg_l (int arrays) in place and returns
    the new count.
    """
    if nseg < 2:
        return nseg
    if maxlen < 2:
        seg_l[0] = 1
        return 1
    m = 0
    for k in range(nseg):
        if seg_l[k] != 1:
            seg_s[m] = seg_s[k]
            seg_l[m] = seg_l[k]
            m += 1
    return m


@numba.njit(cache=True, error_model="numpy")
def _weight_table(ngroups):
    """Return the table of segment weights for every exponent and length.

    float64 (6, m + 1, m), m = min(ngroups, WTAB_MAX_GROUPS): [pidx, n, :n] the weights
    of an n-group segment (3 <= n <= m) with exponent ``_POWERS[pidx]``, as
    :func:`_segment_weights` computes them (so the values do not depend on which path
    uses them); other entries 0. Longer segments use the per-thread cache.
    """
    m = min(ngroups, WTAB_MAX_GROUPS)
    wtab = np.zeros((_POWERS.size, m + 1, max(m, 1)), np.float64)
    wc = np.empty((_POWERS.size, max(m, 1)), np.float64)
    wn = np.full(_POWERS.size, -1, np.int64)
    for n in range(3, m + 1):
        for pidx in range(_POWERS.size):
            wk = _segment_weights(wc, wn, pidx, n)
            for kk in range(n):
                wtab[pidx, n, kk] = wk[kk]
    return wtab


@numba.njit(cache=True, error_model="numpy")
def _jump_fit_lanes(bd, bq, gain, rnoise_e, dcurrent, pdq, y, x0, w, tg, wtab, wcache,
                    wcache_n, mrate, kind, alld, seg_s, seg_l, want_ints,
                    r_slope, r_dq, r_vp, r_vr, r_err,
                    i_slope, i_dq, i_vp, i_vr, i_err):
    """Fit the jump-only pixels of a block, pixel by pixel.

    Fit the jump-only pixels of a block (``kind[xx] == 2``, see :func:`_lane_prep`;
    mrate[xx] their summed median rates), pixel by pixel.

    A candidate with non-finite data or an integration with fewer than 2 unflagged groups
    is handed back to the per-pixel code (kind[xx] set to 0). For the others, each
    integration's segments are found as the per-pixel code finds them (a JUMP_DET group
    ends a segment and is the first point of the next one; one-group segments dropped when
    a longer one exists), fitted by :func:`_fit_segment` and combined as in
    ``ols_kernel``, in the same order of operations, hence with the same results; such
    pixels have no DO_NOT_USE, SATURATED, PERSISTENCE or CHARGELOSS group, so those
    branches do not apply. Scratch: alld float64 (nints, ngroups); seg_s, seg_l int64
    (ngroups,); wtab, wcache, wcache_n see :func:`_fit_segment`. Writes the outputs of
    the pixels it fits only.
    """
    nints, n = bd.shape[0], bd.shape[1]
    median_scale = np.float32(nints)
    for xx in range(w):
        if kind[xx] != 2:
            continue
        good = True
        for i in range(nints):
            c = 0
            for k in range(n):
                v = bd[i, k, xx]
                if not np.isfinite(v):
                    good = False
                c += bq[i, k, xx] == 0
                alld[i, k] = v
            if c < 2:
                good = False
        if not good:
            kind[xx] = 0                  # per-pixel code
            continue
        x = x0 + xx
        g = np.float64(gain[y, x])
        rn = np.float64(rnoise_e[y, x])
        dc = np.float64(dcurrent[y, x])
        pix = pdq[y, x]
        median_rate = mrate[xx] / median_scale
        rate_slope = 0.0
        rate_ivp = 0.0
        rate_ivr = 0.0
        rate_dq = pix
        for i in range(nints):
            # a jump-only lane: every flag is JUMP_DET
            nseg, jmp = _ramp_segments(bq[i, :, xx], n, seg_s, seg_l)
            ivr = 0.0
            ivp = 0.0
            ive = 0.0
            snum = 0.0
            for s_ in range(nseg):
                slope, vp, vr = _fit_segment(alld, i, seg_s[s_], seg_l[s_], g, rn, dc, tg,
                                             median_rate, wtab, wcache, wcache_n)
                ve = vp + vr
                ivr += 1.0 / vr
                if vp > 0.0:
                    ivp += 1.0 / vp
                ive += 1.0 / ve
                snum += slope / vr
            vp_out, vr_out = _int_variances(ivp, ivr)
            if jmp:
                rate_dq |= _U_JUMP
            if want_ints:
                ve_out = 1.0 / ive
                i_slope[i, y, x] = np.float32(snum * vr_out)
                i_dq[i, y, x] = pix | _U_JUMP if jmp else pix
                i_vp[i, y, x] = np.float32(vp_out)
                i_vr[i, y, x] = np.float32(vr_out)
                i_err[i, y, x] = np.float32(0.0 if ve_out > LARGE_VARIANCE_THRESHOLD
                                            else np.sqrt(ve_out))
            if ivp > 0.0:
                rate_ivp += ivp
            rate_ivr += ivr
            rate_slope += snum
        vp, vr = _rate_variances(rate_ivp, rate_ivr)
        r_err[y, x] = np.float32(np.sqrt(vp + vr))
        slope = rate_slope
        if not np.isnan(slope):
            slope = slope * vr
        r_slope[y, x] = np.float32(slope)
        r_dq[y, x] = rate_dq
        r_vp[y, x] = np.float32(vp)
        r_vr[y, x] = np.float32(vr)


@numba.njit(cache=True, error_model="numpy")
def _int_variances(ivp, ivr):
    """Return an integration's VAR_POISSON and VAR_RNOISE ((DN/s)**2), float64.

    From its segments' summed inverse variances: 1/sum, 0 where there is no Poisson term or
    at or above LARGE_VARIANCE_THRESHOLD (as stcal's ramp_fit).
    """
    vp = 1.0 / ivp if ivp > 0.0 else 0.0
    if vp >= LARGE_VARIANCE_THRESHOLD:
        vp = 0.0
    vr = 1.0 / ivr
    if vr >= LARGE_VARIANCE_THRESHOLD:
        vr = 0.0
    return vp, vr


@numba.njit(cache=True, error_model="numpy")
def _rate_variances(rate_ivp, rate_ivr):
    """Return the rate's VAR_POISSON and VAR_RNOISE ((DN/s)**2), float64.

    From the integrations' summed inverse variances: 1/sum where the sum is positive, 0
    where negative or at or above LARGE_VARIANCE_THRESHOLD (as stcal's ramp_fit).
    """
    vp = rate_ivp
    if vp > 0.0:
        vp = 1.0 / vp
    if vp >= LARGE_VARIANCE_THRESHOLD or vp < 0.0:
        vp = 0.0
    vr = rate_ivr
    if vr > 0.0:
        vr = 1.0 / vr
    if vr >= LARGE_VARIANCE_THRESHOLD:
        vr = 0.0
    return vp, vr


@numba.njit(cache=True, error_model="numpy")
def _fit_segment(alld, i, st, n, g, rn, dc, tg, median_rate, wtab, wcache, wcache_n):
    """Fit one segment: slope and its Poisson and read-noise variances.

    Slope (DN/s), VAR_POISSON and VAR_RNOISE ((DN/s)**2) of the segment of n groups of
    integration i starting at group st (alld float64 (nints, ngroups) DN, NaN counted as
    0 in the sums); g gain, rn read noise (e- per group), dc dark current, tg TGROUP,
    median_rate the pixel's median rate (DN/s); weights from wtab (:func:`_weight_table`)
    or, for longer segments, from the per-thread cache wcache/wcache_n (_segment_weights).
    """
    if n <= 2:
        if n == 1:
            slope = alld[i, st] / tg
        else:
            slope = (alld[i, st + 1] - alld[i, st]) / tg
        pden = tg * g
        vp = (median_rate + dc) / pden if median_rate > 0.0 else dc / pden
        rnum = rn / tg
        vr = 12.0 * rnum * rnum / (6.0 * g * g)
        return slope, vp, vr
    sig = alld[i, st + n - 1] - alld[i, st]
    den = rn * rn + sig * g
    if den <= 0.0 or g == 0.0:
        snr = 0.0
    else:
        snr = sig * g / np.sqrt(den)
        if snr < 0.0:
            snr = 0.0
    pidx = _power_index(snr)
    if n < wtab.shape[1]:
        wk = wtab[pidx, n]
    else:
        wk = _segment_weights(wcache, wcache_n, pidx, n)
    invrn2 = 1.0 / (rn * rn)
    sw = 0.0
    sx = 0.0
    sxx = 0.0
    sy = 0.0
    sxy = 0.0
    for kk in range(n):
        wt = wk[kk] * invrn2
        xv = np.float64(kk) + st
        dv = alld[i, st + kk]
        if np.isnan(dv):
            dv = 0.0
        xw = xv * wt
        sw += wt
        sx += xw
        sxx += xv * xw
        sy += dv * wt
        sxy += dv * xw
    dd = sw * sxx - sx * sx
    num = sw * sxy - sx * sy
    slope = (num * (1.0 / dd)) / tg
    pden = tg * g * (n - 1.0)
    vp = (median_rate + dc) / pden if median_rate > 0.0 else dc / pden
    if g <= 0.0 or np.isnan(g):
        vr = 0.0
    else:
        rnum = rn / tg
        vr = 12.0 * rnum * rnum / ((n * n * n - n) * g * g)
    return slope, vp, vr


@numba.njit(cache=True, parallel=True, error_model="numpy")
def ols_kernel(data, gdq, pdq, gain, rnoise_e, dcurrent, group_time, suppress1g, chargeloss,
               r_slope, r_dq, r_vp, r_vr, r_err, i_slope, i_dq, i_vp, i_vr, i_err,
               net_lo, net_hi):
    """Fit all ramps.

    Inputs: data float32 (nints, ngroups, ny, nx) DN; gdq uint8 same shape; pdq uint32
    (ny, nx); gain float32 (ny, nx) e-/DN; rnoise_e float32 (ny, nx) electrons per group
    (READNOISE * GAIN / sqrt(2 NFRAMES)); dcurrent float32 (ny, nx) average dark current;
    group_time float s; suppress1g bool; chargeloss bool: some group of the exposure has
    CHARGELOSS, so VAR_RNOISE of the affected integrations is recomputed with the
    CHARGELOSS | DO_NOT_USE groups counted as usable (as stcal does).
    Outputs (filled): r_* (ny, nx) rate slope/DQ/VAR_POISSON/VAR_RNOISE/ERR (float32, DQ
    uint32), i_* (nints, ny, nx) the same per integration, or arrays of shape
    (nints, 0, 0) when the per-integration results are not wanted. net_lo/net_hi: the
    calib.steps.jump.sorting_network of ngroups - 1 values (median rates of clean pixels).
    """
    nints, ngroups, ny, nx = data.shape
    tg = group_time
    want_ints = i_slope.shape[1] != 0
    # weights of every segment length for the 6 exponents, shared by all pixels
    wtab = _weight_table(ngroups)
    # full-ramp segments (clean pixels)
    wfull = np.empty((_POWERS.size, ngroups), np.float64)
    wfull_n = np.full(_POWERS.size, -1, np.int64)
    if ngroups >= 3:
        for pidx in range(_POWERS.size):
            _segment_weights(wfull, wfull_n, pidx, ngroups)
    nxb = (nx + XBLOCK - 1) // XBLOCK
    for y in numba.prange(ny):
        # one work item: a row; scratch allocated once per row, then XBLOCK columns at a
        # time copied to contiguous scratch (the groups of a pixel are far apart in the ramp)
        bd = np.empty((nints, ngroups, XBLOCK), np.float32)
        bq = np.empty((nints, ngroups, XBLOCK), np.uint8)
        idq = np.empty(nints, np.uint32)
        tmp = np.empty(max(ngroups - 1, 1), np.float64)
        loc = np.empty(ngroups, np.float64)
        seg_s = np.empty(ngroups, np.int64)
        seg_l = np.empty(ngroups, np.int64)
        allq = np.empty((nints, ngroups), np.uint8)
        alld = np.empty((nints, ngroups), np.float64)
        wcache = np.empty((_POWERS.size, ngroups), np.float64)   # segments > WTAB_MAX_GROUPS
        wcache_n = np.full(_POWERS.size, -1, np.int64)
        cnt_sat = np.zeros(nints, np.int64)
        cnt_dnu_sat = np.zeros(nints, np.int64)
        int_vr = np.zeros(nints, np.float64)
        og = np.empty(ngroups, np.uint8)
        kind = np.zeros(XBLOCK, np.int8)
        lane_mrate = np.zeros(XBLOCK, np.float64)
        dl = np.empty((max(ngroups - 1, 1), XBLOCK), np.float64)
        lloc = np.empty(XBLOCK, np.float64)
        lcnt = np.empty(XBLOCK, np.int64)
        orq = np.empty(XBLOCK, np.uint8)
        sc = np.empty((_NSC, XBLOCK), np.float64)
        pid = np.empty(XBLOCK, np.int64)
        for b in range(nxb):
            x0 = b * XBLOCK
            w = min(nx, x0 + XBLOCK) - x0
            for i in range(nints):
                for k in range(ngroups):         # row slices: copied as memory blocks
                    bd[i, k, :w] = data[i, k, y, x0:x0 + w]
                    bq[i, k, :w] = gdq[i, k, y, x0:x0 + w]
            # clean pixels (no GROUPDQ flag at all, GAIN > 0, no DO_NOT_USE/SATURATED in
            # PIXELDQ) have one segment per integration, jump-only pixels a few: their median
            # rates are found for the whole block at once (lanes innermost), then both kinds
            # are fitted lane-wise; the rest (kind 0) by the per-pixel code below
            kind[:] = 0
            if ngroups >= 3 and ngroups - 1 <= LANE_MAX_GROUPS:
                njl = _lane_prep(bd, bq, gain, pdq, y, x0, w, tg, net_lo, net_hi, kind,
                                 lane_mrate, dl, lloc, lcnt, orq)
                _clean_fit_lanes(bd, gain, rnoise_e, dcurrent, pdq, y, x0, w, tg, wfull,
                                 lane_mrate, kind, sc, pid, want_ints, r_slope, r_dq, r_vp, r_vr,
                                 r_err, i_slope, i_dq, i_vp, i_vr, i_err)
                if njl > 0:
                    _jump_fit_lanes(bd, bq, gain, rnoise_e, dcurrent, pdq, y, x0, w, tg, wtab,
                                    wcache, wcache_n, lane_mrate, kind, alld, seg_s, seg_l, want_ints,
                                    r_slope, r_dq, r_vp, r_vr, r_err,
                                    i_slope, i_dq, i_vp, i_vr, i_err)
            for xx in range(w):
                x = x0 + xx
                g = np.float64(gain[y, x])
                rn = np.float64(rnoise_e[y, x])
                dc = np.float64(dcurrent[y, x])
                pix = pdq[y, x]
                if kind[xx] != 0:
                    continue              # fitted by _clean_fit_lanes / _jump_fit_lanes
                if not (g > 0.0):
                    pix |= _U_DNU | _U_NGV
                rate_dq = pix
                for i in range(nints):
                    idq[i] = pix
                # gather, suppress one-good-group ramps, stats
                for i in range(nints):
                    ngood_np = 0
                    for k in range(ngroups):
                        q = bq[i, k, xx]
                        allq[i, k] = q
                        if (q & _NPERS) == 0:
                            ngood_np += 1
                    if suppress1g and ngroups > 1 and ngood_np == 1:
                        for k in range(ngroups):
                            allq[i, k] |= _DNU
                    jump_det = False
                    pers = False
                    cnt_sat[i] = 0
                    cnt_dnu_sat[i] = 0
                    for k in range(ngroups):
                        q = allq[i, k]
                        if q & _JUMP:
                            jump_det = True
                        if q & _PERS:
                            pers = True
                        if (q & _DNU) or (q & _SAT):
                            cnt_dnu_sat[i] += 1
                        if q & _SAT:
                            alld[i, k] = np.nan
                            cnt_sat[i] += 1
                        else:
                            alld[i, k] = bd[i, k, xx]
                    if jump_det:
                        idq[i] |= _U_JUMP
                        rate_dq |= _U_JUMP
                    if pers:
                        idq[i] |= _U_PERS
                        rate_dq |= _U_PERS
                # median rate
                accum = 0.0
                for i in range(nints):
                    if ngroups == 1:
                        mrate = np.nan if (allq[i, 0] & _DNU) else alld[i, 0] / tg
                    else:
                        for k in range(ngroups):
                            loc[k] = np.nan if (allq[i, k] & _DNU) else alld[i, k] / tg
                        loc0 = loc[0]
                        all_nan = True
                        nfin = 0
                        for k in range(ngroups - 1):
                            if allq[i, k + 1] & _JUMP:
                                v = np.nan
                            else:
                                v = loc[k + 1] - loc[k]
                            tmp[k] = v
                            if not np.isnan(v):
                                all_nan = False
                        if all_nan and not np.isnan(loc0):
                            tmp[0] = loc0
                        for k in range(ngroups - 1):
                            if not np.isnan(tmp[k]):
                                tmp[nfin] = tmp[k]
                                nfin += 1
                        mrate = _median_sorted_prefix(tmp, nfin)
                    if np.isnan(mrate):
                        mrate = 0.0
                    accum += mrate
                median_rate = accum / np.float32(nints)
                # per integration fits
                rate_slope = 0.0
                rate_ivp = 0.0
                rate_ivr = 0.0
                dnu_cnt = 0
                sat_cnt = 0
                set_rate_sat = False
                for i in range(nints):
                    s_out = 0.0
                    vp_out = 0.0
                    vr_out = 0.0
                    err_out = 0.0
                    if allq[i, 0] & _SAT:
                        idq[i] |= _U_DNU | _U_SAT
                        s_out = np.nan
                    elif ngroups == cnt_dnu_sat[i]:
                        idq[i] |= _U_DNU
                        if ngroups == cnt_sat[i]:
                            idq[i] |= _U_SAT
                    else:
                        # segments
                        nseg, _ = _ramp_segments(allq[i], ngroups, seg_s, seg_l)
                        if nseg > 0:
                            ivr = 0.0
                            ivp = 0.0
                            ive = 0.0
                            snum = 0.0
                            for s in range(nseg):
                                st = seg_s[s]
                                n = seg_l[s]
                                slope, vp, vr = _fit_segment(alld, i, st, n, g, rn, dc, tg,
                                                             median_rate, wtab, wcache,
                                                             wcache_n)
                                ve = vp + vr
                                ivr += 1.0 / vr
                                if vp > 0.0:
                                    ivp += 1.0 / vp
                                ive += 1.0 / ve
                                snum += slope / vr
                            vp_out, vr_out = _int_variances(ivp, ivr)
                            if idq[i] & (_U_DNU | _U_SAT):
                                s_out = np.nan
                                vp_out = 0.0
                                vr_out = 0.0
                                err_out = 0.0
                            else:
                                ve_out = 1.0 / ive
                                s_out = snum * vr_out
                                err_out = 0.0 if ve_out > LARGE_VARIANCE_THRESHOLD else np.sqrt(ve_out)
                            if ivp > 0.0:
                                rate_ivp += ivp
                            rate_ivr += ivr
                            rate_slope += snum
                    if idq[i] & _U_DNU:
                        dnu_cnt += 1
                        s_out = np.nan
                    if idq[i] & _U_SAT:
                        sat_cnt += 1
                        s_out = np.nan
                    if cnt_sat[i] > 0:
                        idq[i] |= _U_SAT
                        set_rate_sat = True
                    int_vr[i] = vr_out
                    if want_ints:
                        i_slope[i, y, x] = np.float32(s_out)
                        i_dq[i, y, x] = idq[i]
                        i_vp[i, y, x] = np.float32(vp_out)
                        i_vr[i, y, x] = np.float32(vr_out)
                        i_err[i, y, x] = np.float32(err_out)
                if dnu_cnt == nints:
                    rate_dq |= _U_DNU
                if sat_cnt == nints:
                    rate_dq |= _U_SAT
                vp, vr = _rate_variances(rate_ivp, rate_ivr)
                err = np.sqrt(vp + vr)
                slope = rate_slope
                if rate_dq & (_U_DNU | _U_SAT):
                    slope = np.nan
                    vp = 0.0
                    vr = 0.0
                    err = 0.0
                if set_rate_sat:
                    rate_dq |= _U_SAT
                if not np.isnan(slope):
                    slope = slope * vr
                if chargeloss:
                    evar = 0.0
                    any_cl = False
                    for i in range(nints):
                        has_cl = False
                        for k in range(ngroups):
                            if allq[i, k] & _CHLO:
                                has_cl = True
                        if not has_cl:
                            if int_vr[i] > 0.0:
                                evar += 1.0 / int_vr[i]
                            continue
                        any_cl = True
                        for k in range(ngroups):
                            q = bq[i, k, xx]
                            if q & _CHLO:
                                q = q ^ (_DNU | _CHLO)
                            og[k] = q & _NPERS
                        nseg = 0
                        in_seg = False
                        start = 0
                        maxlen = 0
                        for k in range(ngroups):
                            if og[k] == 0:
                                if not in_seg:
                                    start = k - 1 if (k > 0 and og[k - 1] == _JUMP) else k
                                    in_seg = True
                            elif in_seg:
                                seg_l[nseg] = k - start
                                maxlen = max(maxlen, k - start)
                                nseg += 1
                                in_seg = False
                        if in_seg:
                            seg_l[nseg] = ngroups - start
                            maxlen = max(maxlen, ngroups - start)
                            nseg += 1
                        ivr = 0.0
                        for s_ in range(nseg):
                            n = seg_l[s_]
                            if nseg >= 2 and maxlen >= 2 and n == 1:
                                continue          # pruned one-group segment
                            if nseg >= 2 and maxlen < 2 and s_ > 0:
                                continue          # only the first one-group segment is kept
                            rnum = rn / tg
                            if n <= 2:
                                svr = 12.0 * rnum * rnum / (6.0 * g * g)
                            elif g <= 0.0 or np.isnan(g):
                                svr = 0.0
                            else:
                                svr = 12.0 * rnum * rnum / ((n * n * n - n) * g * g)
                            if svr > 0.0:
                                ivr += 1.0 / svr
                        v = 1.0 / ivr if ivr > 0.0 else np.inf
                        if v >= LARGE_VARIANCE_THRESHOLD:
                            v = 0.0
                        if want_ints:
                            i_vr[i, y, x] = np.float32(v)
                        evar += ivr
                    if any_cl:
                        if evar > 0.0:
                            vr = 1.0 / evar
                        if vr >= LARGE_VARIANCE_THRESHOLD:
                            vr = 0.0
                r_slope[y, x] = np.float32(slope)
                r_dq[y, x] = rate_dq
                r_vp[y, x] = np.float32(vp)
                r_vr[y, x] = np.float32(vr)
                r_err[y, x] = np.float32(err)


@numba.njit(cache=True, parallel=True, error_model="numpy")
def _electrons_per_group(readnoise, gain, scale):
    """Return READNOISE * GAIN / scale (scale = sqrt(2 NFRAMES)) as float32, rows in parallel.

    readnoise, gain float32 (ny, nx). Each value is float32(float64(rn) * (float64(g) /
    scale)): what numpy computes for ``rn *= gain / np.sqrt(2.0 * nframes)`` on float32
    arrays (the float64 scalar makes the quotient float64; the in-place product is rounded
    to float32), so the results are the same bits.
    """
    ny, nx = readnoise.shape
    out = np.empty((ny, nx), np.float32)
    for y in numba.prange(ny):
        for x in range(nx):
            out[y, x] = np.float32(np.float64(readnoise[y, x]) * (np.float64(gain[y, x]) / scale))
    return out


def _any_flag(gdq, flag) -> bool:
    """Return True when some element of gdq (uint8, any shape) has a bit of flag.

    numpy's OR reduction (SIMD; ~2 ms CPU for a (1, 10, 2048, 2048) ramp, against ~45 ms
    for a byte loop in numba).
    """
    if gdq.size == 0:
        return False
    return (int(np.bitwise_or.reduce(gdq, axis=None)) & int(flag)) != 0


def ramp_fit(data, gdq, pdq, gain, readnoise, *, nframes: int, group_time: float,
             dark_current=None, suppress_one_group: bool = True, rateints: bool = True):
    """Fit slopes.

    data float32 (nints, ngroups, ny, nx) DN; gdq uint8 same shape; pdq uint32 (ny, nx);
    gain float (ny, nx) e-/DN; readnoise float (ny, nx) DN (READNOISE reference, CDS noise);
    group_time TGROUP s; dark_current None or float (ny, nx) average dark current.
    Returns ``(rate, rateints, "COMPLETE")`` where rate = dict(data, dq, var_poisson,
    var_rnoise, err) of (ny, nx) arrays and rateints the same with (nints, ny, nx) arrays
    (None with ``rateints=False``: the per-integration results are then not kept, which
    saves 5 arrays of (nints, ny, nx) when only the rate product is wanted);
    data/err float32 DN/s, variances float32 (DN/s)**2, dq uint32.
    """
    nints, ngroups, ny, nx = data.shape
    gain32 = np.ascontiguousarray(gain, dtype=np.float32)
    rn = _electrons_per_group(np.ascontiguousarray(readnoise, dtype=np.float32).reshape(ny, nx),
                              gain32.reshape(ny, nx), float(np.sqrt(2.0 * nframes)))
    dc = (np.zeros((ny, nx), np.float32) if dark_current is None
          else np.ascontiguousarray(np.broadcast_to(dark_current, (ny, nx)), dtype=np.float32))
    if suppress_one_group and ngroups == 1:
        suppress_one_group = False
    rate = {k: np.zeros((ny, nx), np.float32) for k in ("data", "var_poisson", "var_rnoise", "err")}
    rate["dq"] = np.zeros((ny, nx), np.uint32)
    shape = (nints, ny, nx) if rateints else (nints, 0, 0)
    ints = {k: np.zeros(shape, np.float32) for k in ("data", "var_poisson", "var_rnoise", "err")}
    ints["dq"] = np.zeros(shape, np.uint32)
    gdq = np.ascontiguousarray(gdq)
    ols_kernel(np.ascontiguousarray(data, dtype=np.float32), gdq,
               np.ascontiguousarray(pdq, dtype=np.uint32), gain32, rn, dc, float(group_time),
               bool(suppress_one_group), bool(_any_flag(gdq, _CHLO)),
               rate["data"], rate["dq"], rate["var_poisson"], rate["var_rnoise"], rate["err"],
               ints["data"], ints["dq"], ints["var_poisson"], ints["var_rnoise"], ints["err"],
               *sorting_network(min(max(ngroups - 1, 0), LANE_MAX_GROUPS)))
    return rate, (ints if rateints else None), "COMPLETE"


# ------------------------------------------------------------------------------ declared step
def _run(state, ctx) -> str:
    info, step = state.info, ctx.name
    gain = ctx.prepared("gain", ("data",), lambda m, p: ref_array(m, "data", info, p, step, dtype=np.float32))
    rn = ctx.prepared("readnoise", ("data",), lambda m, p: ref_array(m, "data", info, p, step, dtype=np.float32))
    if gain is None or rn is None:
        raise ReferenceFileError(f"ramp_fit: gain and readnoise references are required (got "
                                 f"gain={ctx.path('gain')!r}, readnoise={ctx.path('readnoise')!r})")
    state.rate, state.rateints, status = ramp_fit(
        state.data, state.gdq, state.pdq, gain, rn, nframes=info.nframes, group_time=info.group_time,
        dark_current=state.average_dark_current, suppress_one_group=bool(ctx.params["suppress_one_group"]),
        rateints=info.nints > 1)   # no rateints product for NINTS 1
    return status


_OUTPUT_ONLY = "names or writes an optional output file; no effect on the products"
STEP = StepSpec(
    name="ramp_fit", jwst_class="jwst.ramp_fitting.RampFitStep", reftypes=("readnoise", "gain"), run=_run,
    skip_if_na=(),
    params=(
        Param("algorithm", "option", "OLS_C", choices=("OLS_C", "LIKELY"), support=SUPPORT_DEFAULT_ONLY,
              doc="ordinary least squares with optimal weighting; LIKELY needs the jwst engine"),
        Param("int_name", "string", "", support=SUPPORT_IGNORED, doc=_OUTPUT_ONLY),
        Param("save_opt", "boolean", False, support=SUPPORT_IGNORED, doc=_OUTPUT_ONLY),
        Param("opt_name", "string", "", support=SUPPORT_IGNORED, doc=_OUTPUT_ONLY),
        Param("suppress_one_group", "boolean", True,
              doc="no slope from the 0th group alone when all later groups are saturated"),
        Param("firstgroup", "integer", None, support=SUPPORT_DEFAULT_ONLY, doc="ignore groups before this one"),
        Param("lastgroup", "integer", None, support=SUPPORT_DEFAULT_ONLY, doc="ignore groups after this one"),
        Param("maximum_cores", "string", "1", support=SUPPORT_IGNORED,
              doc="jwst's multiprocessing; this engine's threads follow NUMBA_NUM_THREADS"),
    ),
    doc="optimally weighted least-squares slopes per segment (Fixsen et al. 2000; jwst ramp_fit, stcal).",
)
