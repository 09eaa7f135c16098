"""Plain-numpy oracles of ramp_fit (OLS, optimal weighting) and jump (two-point difference),
written from the algorithm descriptions, compared with the numba kernels."""
from __future__ import annotations

import numpy as np
import pytest

from calib import dqflags
from calib.steps.jump import jump
from calib.steps.ramp_fit import ramp_fit

DNU, SAT, JUMP = dqflags.DO_NOT_USE, dqflags.SATURATED, dqflags.JUMP_DET


# ----------------------------------------------------------------------------- ramp_fit
def _power(snr):
    for lim, p in ((5, 0.0), (10, 0.4), (20, 1.0), (50, 3.0), (100, 6.0)):
        if snr < lim:
            return p
    return 10.0


def _median(vals):
    vals = [v for v in vals if not np.isnan(v)]
    return float(np.median(vals)) if vals else np.nan


def oracle_ramp_fit(data, gdq, pdq, gain, rn_cds, nframes, tg):
    """Straightforward per-pixel OLS following the stcal "ramp_fitting" description."""
    nints, ngroups, ny, nx = data.shape
    rate = np.zeros((ny, nx))
    rvp = np.zeros((ny, nx))
    rvr = np.zeros((ny, nx))
    rerr = np.zeros((ny, nx))
    islope = np.zeros((nints, ny, nx))
    for y in range(ny):
        for x in range(nx):
            g = float(gain[y, x])
            rn = float(np.float32(rn_cds[y, x]) * np.float32(g / np.sqrt(2.0 * nframes)))
            q = gdq[:, :, y, x].astype(int).copy()
            for i in range(nints):
                if ngroups > 1 and np.sum((q[i] & ~32) == 0) == 1:
                    q[i] |= DNU
            d = np.where(q & SAT, np.nan, data[:, :, y, x].astype(float))
            # median rate: mean over ints of median first difference (/tg), jumps excluded
            mr = []
            for i in range(nints):
                loc = np.where(q[i] & DNU, np.nan, d[i] / tg)
                diffs = [np.nan if q[i, k + 1] & JUMP else loc[k + 1] - loc[k]
                         for k in range(ngroups - 1)]
                if all(np.isnan(diffs)) and not np.isnan(loc[0]):
                    diffs[0] = loc[0]
                m = _median(diffs)
                mr.append(0.0 if np.isnan(m) else m)
            mrate = float(np.mean(mr))
            segs_all = []
            int_bad = []
            for i in range(nints):
                good = (q[i] & ~32) == 0
                if q[i, 0] & SAT or not good.any():
                    int_bad.append(True)
                    segs_all.append([])
                    continue
                int_bad.append(False)
                segs = []
                k = 0
                while k < ngroups:
                    if good[k]:
                        s = k - 1 if k > 0 and (q[i, k - 1] & ~32) == JUMP else k
                        e = k
                        while e < ngroups and good[e]:
                            e += 1
                        segs.append((s, e - s))
                        k = e
                    else:
                        k += 1
                if len(segs) > 1:
                    if max(n for _, n in segs) < 2:
                        segs = [(segs[0][0], 1)]
                    else:
                        segs = [sg for sg in segs if sg[1] > 1]
                segs_all.append(segs)
            num_tot = ivr_tot = ivp_tot = 0.0
            for i in range(nints):
                ivr = ivp = ive = num = 0.0
                for (s, n) in segs_all[i]:
                    y_ = d[i, s:s + n]
                    if n == 1:
                        slope = y_[0] / tg
                        vr = 12 * (rn / tg) ** 2 / (6 * g * g)
                        vp = max(mrate, 0) / (tg * g)
                    elif n == 2:
                        slope = (y_[1] - y_[0]) / tg
                        vr = 12 * (rn / tg) ** 2 / (6 * g * g)
                        vp = max(mrate, 0) / (tg * g)
                    else:
                        sig = y_[-1] - y_[0]
                        den = rn * rn + sig * g
                        snr = 0.0 if den <= 0 else max(sig * g / np.sqrt(den), 0.0)
                        mid = (n - 1) / 2
                        w = np.abs((np.arange(n) - mid) / mid) ** _power(snr)
                        xs = np.arange(n, dtype=float)
                        xb = np.sum(w * xs) / np.sum(w)
                        yb = np.sum(w * y_) / np.sum(w)
                        slope = np.sum(w * (xs - xb) * (y_ - yb)) / np.sum(w * (xs - xb) ** 2) / tg
                        vr = 12 * (rn / tg) ** 2 / ((n ** 3 - n) * g * g)
                        vp = max(mrate, 0) / (tg * g * (n - 1))
                    ivr += 1 / vr
                    ive += 1 / (vp + vr)
                    if vp > 0:
                        ivp += 1 / vp
                    num += slope / vr
                if segs_all[i]:
                    islope[i, y, x] = num / ivr
                    num_tot += num
                    ivr_tot += ivr
                    ivp_tot += ivp
                else:
                    islope[i, y, x] = np.nan
            if ivr_tot > 0 and not (pdq[y, x] & DNU):
                rate[y, x] = num_tot / ivr_tot
                rvr[y, x] = 1 / ivr_tot
                rvp[y, x] = 1 / ivp_tot if ivp_tot > 0 else 0.0
                rerr[y, x] = np.sqrt(rvr[y, x] + rvp[y, x])
            else:
                rate[y, x] = np.nan
    return rate, rvp, rvr, rerr, islope


def _random_ramps(seed, nints=3, ngroups=7, ny=9, nx=11):
    rng = np.random.default_rng(seed)
    tg = 2.5
    gain = rng.uniform(1.5, 3.0, (ny, nx)).astype(np.float32)
    rn = rng.uniform(5, 15, (ny, nx)).astype(np.float32)
    rate = 10 ** rng.uniform(-1, 3.5, (ny, nx))
    t = tg * np.arange(1, ngroups + 1)
    data = (rate[None, None] * t[None, :, None, None]
            + rng.normal(0, 10, (nints, ngroups, ny, nx))).astype(np.float32)
    gdq = np.zeros(data.shape, np.uint8)
    # jumps, saturation, do-not-use, one-good-group ramps
    for _ in range(25):
        i, k, y, x = (rng.integers(nints), rng.integers(1, ngroups), rng.integers(ny), rng.integers(nx))
        gdq[i, k, y, x] |= JUMP
        data[i, k:, y, x] += 500
    for _ in range(10):
        i, k, y, x = (rng.integers(nints), rng.integers(0, ngroups), rng.integers(ny), rng.integers(nx))
        gdq[i, k:, y, x] |= SAT
    for _ in range(10):
        i, k, y, x = (rng.integers(nints), rng.integers(0, ngroups), rng.integers(ny), rng.integers(nx))
        gdq[i, k, y, x] |= DNU
    gdq[0, 1:, 2, 3] |= SAT          # one good group -> suppressed
    gdq[:, :, 4, 4] |= DNU           # dead pixel
    pdq = np.zeros((ny, nx), np.uint32)
    pdq[4, 4] = DNU
    return data, gdq, pdq, gain, rn, tg


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_ramp_fit_matches_numpy_oracle(seed):
    data, gdq, pdq, gain, rn, tg = _random_ramps(seed)
    rate, ints, status = ramp_fit(data, gdq, pdq, gain, rn, nframes=1, group_time=tg)
    assert status == "COMPLETE"
    o_rate, o_vp, o_vr, o_err, o_islope = oracle_ramp_fit(data, gdq, pdq, gain, rn, 1, tg)
    np.testing.assert_array_equal(np.isnan(rate["data"]), np.isnan(o_rate))
    ok = ~np.isnan(o_rate)
    assert ok.sum() > 90
    np.testing.assert_allclose(rate["data"][ok], o_rate[ok], rtol=2e-5, atol=1e-5)
    np.testing.assert_allclose(rate["var_rnoise"][ok], o_vr[ok], rtol=2e-5)
    np.testing.assert_allclose(rate["var_poisson"][ok], o_vp[ok], rtol=2e-5, atol=1e-9)
    np.testing.assert_allclose(rate["err"][ok], o_err[ok], rtol=2e-5)
    ook = ~np.isnan(o_islope)
    np.testing.assert_allclose(ints["data"][ook], o_islope[ook], rtol=2e-5, atol=1e-5)
    # DQ: jumps propagate, dead pixel is DO_NOT_USE, saturation is reported
    assert rate["dq"][4, 4] & DNU
    jumped = (gdq & JUMP).any(axis=(0, 1))
    assert np.all((rate["dq"][jumped] & JUMP) != 0)


def test_ramp_fit_recovers_known_rate_noiseless():
    ny = nx = 3
    tg = 10.0
    t = tg * np.arange(1, 11)
    data = np.broadcast_to((5.0 * t)[None, :, None, None], (1, 10, ny, nx)).astype(np.float32).copy()
    rate, _, _ = ramp_fit(data, np.zeros(data.shape, np.uint8), np.zeros((ny, nx), np.uint32),
                          np.full((ny, nx), 2.0, np.float32), np.full((ny, nx), 10.0, np.float32),
                          nframes=1, group_time=tg)
    np.testing.assert_allclose(rate["data"], 5.0, rtol=1e-6)
    # VAR_RNOISE = 12 RN_e^2 / ((n^3 - n) tg^2 g^2) with RN_e = 10 * 2 / sqrt(2)
    rn_e = 10.0 * 2.0 / np.sqrt(2.0)
    np.testing.assert_allclose(rate["var_rnoise"], 12 * rn_e ** 2 / (990 * 100 * 4), rtol=1e-5)
    np.testing.assert_allclose(rate["var_poisson"], 5.0 / (tg * 2.0 * 9), rtol=1e-5)


# ----------------------------------------------------------------------------- jump
def oracle_jump(data, gdq, gain, rn_cds, nframes, rej=4.0, rej4=5.0, rej3=6.0, flag4=True,
                min_nb=10.0, max_nb=1000.0):
    """Two-point difference (Anderson & Gordon 2011) per the jwst "jump" description."""
    nints, ngroups, ny, nx = data.shape
    out = gdq.copy()
    nd = ngroups - 1
    cand = np.zeros(gdq.shape, bool)
    single = nd >= 10
    for y in range(ny):
        for x in range(nx):
            g = np.float32(gain[y, x])
            rn2 = float(np.float32(rn_cds[y, x]) * g) ** 2
            e = (data[:, :, y, x] * g).astype(np.float32)
            bad = (gdq[:, :, y, x] & (DNU | SAT)) != 0
            e = np.where(bad, np.nan, e)
            d = np.diff(e, axis=1).astype(np.float32).astype(float)   # (nints, nd)
            med = np.nanmedian(d) if np.isfinite(d).any() else np.nan
            sig = np.sqrt(abs(med) + rn2 / nframes)
            if single:
                hit = np.abs(d - med) / sig > rej
                for i, k in zip(*np.nonzero(hit), strict=True):
                    out[i, k + 1, y, x] |= JUMP
            else:
                a = np.abs(d)
                while True:
                    n = np.isfinite(a).sum()
                    b = a.copy()
                    if n >= 4:
                        b[b == np.nanmax(b)] = np.nan
                        m = np.nanmedian(b)
                    elif n == 3:
                        m = np.nanmedian(b)
                    elif n == 2:
                        m = np.nanmin(b)
                    else:
                        break
                    s = np.sqrt(abs(m) + rn2 / nframes)
                    r = np.abs(a - m) / s
                    if not np.isfinite(r).any():
                        break
                    mx = np.nanmax(r)
                    thr = rej if n >= 4 else rej4 if n == 3 else rej3
                    if not mx > thr:
                        break
                    for i, k in zip(*np.nonzero(r == mx), strict=True):
                        out[i, k + 1, y, x] |= JUMP
                        a[i, k] = np.nan
            if flag4:
                r = np.abs(d - med) / sig
                for i in range(nints):
                    for k in range(nd):
                        if out[i, k + 1, y, x] & JUMP and min_nb < r[i, k] < max_nb:
                            cand[i, k + 1, y, x] = True
    if flag4:
        grown = cand.copy()
        grown[:, :, 1:, :] |= cand[:, :, :-1, :]
        grown[:, :, :-1, :] |= cand[:, :, 1:, :]
        grown[:, :, :, 1:] |= cand[:, :, :, :-1]
        grown[:, :, :, :-1] |= cand[:, :, :, 1:]
        ok = (out & (SAT | DNU)) == 0
        out[grown & ok] |= JUMP
    clear = ((out & JUMP) != 0) & ((out & (SAT | DNU)) != 0)
    out[clear] &= np.uint8(~JUMP & 0xFF)
    return out


@pytest.mark.parametrize("ngroups,nints", [(6, 2), (5, 1), (12, 1), (4, 3)])
def test_jump_matches_numpy_oracle(ngroups, nints):
    rng = np.random.default_rng(ngroups * 10 + nints)
    ny, nx = 14, 13
    gain = rng.uniform(1.5, 2.5, (ny, nx)).astype(np.float32)
    rn = rng.uniform(6, 12, (ny, nx)).astype(np.float32)
    rate = 10 ** rng.uniform(0, 2.5, (ny, nx))
    data = (rate[None, None] * np.arange(1, ngroups + 1)[None, :, None, None] * 3.0
            + rng.normal(0, 7, (nints, ngroups, ny, nx))).astype(np.float32)
    gdq = np.zeros(data.shape, np.uint8)
    for _ in range(12):
        i, k, y, x = (rng.integers(nints), rng.integers(1, ngroups), rng.integers(ny), rng.integers(nx))
        data[i, k:, y, x] += rng.choice([60.0, 300.0, 5000.0])
    gdq[0, -1, 3, 3] |= SAT
    gdq[:, 0, 5, 6] |= DNU
    pdq = np.zeros((ny, nx), np.uint32)
    expected = oracle_jump(data, gdq, gain, rn, 1)
    got, _, _ = jump(data, gdq.copy(), pdq, gain, rn, 1)
    np.testing.assert_array_equal(got, expected)
    assert (got & JUMP).any()


@pytest.mark.parametrize("ngroups,nints,seed", [(10, 1, 1), (4, 2, 2), (3, 1, 3), (7, 3, 4), (5, 8, 5)])
def test_jump_iterative_search_with_ties_matches_numpy_oracle(ngroups, nints, seed):
    """The iterative search (fewer than 10 differences) on whole-DN ramps with GAIN 1 and
    little read noise: many equal |differences|, hence equal medians and ratios (the
    sorted-range search must remove all copies of the largest ratio, at either end), jumps
    down as well as up, flagged groups (DO_NOT_USE, SATURATED) and a NaN (the general code)."""
    rng = np.random.default_rng(seed)
    ny, nx = 24, 40
    gain = np.ones((ny, nx), np.float32)
    rn = rng.choice([0.5, 1.0, 2.0], (ny, nx)).astype(np.float32)
    step = rng.integers(0, 4, (ny, nx))
    data = (step[None, None] * np.arange(ngroups)[None, :, None, None]
            + rng.integers(-1, 2, (nints, ngroups, ny, nx))).astype(np.float32)
    hit = rng.random(data.shape) < 0.08
    data += np.cumsum(hit * rng.choice([-40.0, 15.0, 40.0, 900.0], data.shape), axis=1).astype(np.float32)
    gdq = np.zeros(data.shape, np.uint8)
    gdq[rng.random(data.shape) < 0.03] |= DNU
    gdq[:, -1][rng.random((nints, ny, nx)) < 0.05] |= SAT
    data[0, 1, 0, 0] = np.nan
    pdq = np.zeros((ny, nx), np.uint32)
    expected = oracle_jump(data, gdq, gain, rn, 1)
    got, _, _ = jump(data, gdq.copy(), pdq, gain, rn, 1)
    np.testing.assert_array_equal(got, expected)
    assert (got & JUMP).any()


def test_jump_flags_injected_cosmic_ray():
    rng = np.random.default_rng(5)
    ny = nx = 20
    data = (np.arange(1, 11)[None, :, None, None] * 50.0
            + rng.normal(0, 5, (1, 10, ny, nx))).astype(np.float32)
    data[0, 6:, 10, 10] += 800.0
    gdq = np.zeros(data.shape, np.uint8)
    out, _, _ = jump(data, gdq, np.zeros((ny, nx), np.uint32),
                     np.full((ny, nx), 2.0, np.float32), np.full((ny, nx), 8.0, np.float32), 1)
    assert out[0, 6, 10, 10] & JUMP
    for (y, x) in ((9, 10), (11, 10), (10, 9), (10, 11)):
        assert out[0, 6, y, x] & JUMP          # 4 neighbours
    assert not out[0, 6, 9, 9] & JUMP          # diagonal is not a neighbour


# ----------------------------------------------------------------------------- ipc, refpix
def test_ipc_matches_direct_convolution():
    from types import SimpleNamespace

    from calib.steps.ipc import ipc

    rng = np.random.default_rng(3)
    data = rng.normal(1000, 50, (1, 2, 20, 24)).astype(np.float32)
    kern = rng.normal(0, 0.01, (3, 3)).astype(np.float32)
    kern[1, 1] = 1.0
    info = SimpleNamespace(xstart=1, ystart=1, xsize=24, ysize=20, is_miri=False)
    out, st = ipc(data.copy(), kern, info)
    assert st == "COMPLETE"
    # reference pixels (first 4 rows/columns of the full frame) untouched
    np.testing.assert_array_equal(out[..., :4, :], data[..., :4, :])
    np.testing.assert_array_equal(out[..., :, :4], data[..., :, :4])
    region = data[..., 4:, 4:].astype(np.float64)
    pad = np.zeros(region.shape[:2] + (region.shape[2] + 2, region.shape[3] + 2))
    pad[..., 1:-1, 1:-1] = region
    expect = np.zeros_like(region)
    for j in range(3):
        for i in range(3):
            expect += kern[j, i] * pad[..., 2 - j:2 - j + region.shape[2], 2 - i:2 - i + region.shape[3]]
    np.testing.assert_allclose(out[..., 4:, 4:], expect, rtol=1e-5)


def test_clipped_mean_matches_scipy_sigmaclip():
    from scipy import stats

    from calib.steps.refpix import clipped_mean, running_median_rows

    rng = np.random.default_rng(4)
    for _ in range(5):
        v = np.concatenate([rng.normal(0, 3, 500), rng.normal(40, 1, 7)])
        c, _, _ = stats.sigmaclip(v, 3.0, 3.0)
        assert clipped_mean(v, 3.0, 3.0) == pytest.approx(c.mean(), rel=1e-12)
    block = rng.normal(0, 1, (30, 4))
    ok = rng.random((30, 4)) > 0.1
    med = running_median_rows(block, ok, 11)
    for r in (0, 3, 15, 29):
        rows = [abs(w) if w < 30 else 58 - w for w in range(r - 5, r + 6)]
        vals = np.concatenate([block[w][ok[w]] for w in rows])
        assert med[r] == pytest.approx(np.median(vals))


def test_match_dark_reuses_a_matching_big_endian_dark_in_place():
    from calib.steps.dark_current import match_dark

    rng = np.random.default_rng(3)
    dark = rng.normal(0, 1, (1, 6, 8, 9)).astype(">f4")
    dark[0, 2, 3, 4] = np.nan
    expect = match_dark(dark.copy(), 5, 4, 1, 4, 1)
    got = match_dark(dark, 5, 4, 1, 4, 1, reuse_input=True)
    assert got.dtype == np.float32 and got.dtype.isnative and got.shape == (1, 5, 8, 9)
    np.testing.assert_array_equal(got, expect)
    assert np.shares_memory(got, dark) and got[0, 2, 3, 4] == 0.0
    # a different readout (frames averaged) or a strided view: a new array, input untouched
    src = rng.normal(0, 1, (1, 12, 8, 9)).astype(np.float32)
    keep = src.copy()
    avg = match_dark(src, 3, 4, 0, 1, 0, reuse_input=True)
    assert not np.shares_memory(avg, src)
    np.testing.assert_array_equal(src, keep)
    np.testing.assert_allclose(avg[0, 1], keep[0, 4:8].mean(axis=0), rtol=1e-6)
