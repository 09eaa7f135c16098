"""calib's numba sigma clipping (many-integration jump detection) against astropy.

jwst/stcal (``stcal.jump.twopoint_difference.det_jump_sigma_clipping``) call
``astropy.stats.sigma_clip(first_diffs, sigma=rejection_threshold, axis=0 (only_use_ints)
or (0, 1), masked=True, return_bounds=True)``: median centre, standard deviation,
maxiters 5, NaN differences masked. calib reproduces that in :mod:`calib.steps.jump`; the
clip masks must be identical (and the exact replica's bounds bit-identical).
"""
from __future__ import annotations

import warnings

import numba
import numpy as np
import pytest
from astropy.stats import sigma_clip

from calib import dqflags
from calib.steps import jump as J

DNU, SAT, JUMP = dqflags.DO_NOT_USE, dqflags.SATURATED, dqflags.JUMP_DET


def astropy_clip(values, sigma=4.0, axis=0):
    """As stcal calls it (float64 differences, as stcal's division by dt_group makes)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clipped, lo, hi = sigma_clip(values, sigma=sigma, axis=axis, masked=True,
                                     return_bounds=True)
    return np.ma.getmaskarray(clipped), lo, hi


def _columns(rng, ncol, n, dtype=np.float32):
    """(ncol, n) test values: noise with offsets, outliers, NaNs/infs, ties, equal columns."""
    out = np.empty((ncol, n), dtype)
    for c in range(ncol):
        v = rng.normal(rng.uniform(-1e4, 1e4), rng.uniform(0.01, 200.0), n)
        kind = c % 8
        if kind == 1:                                   # cosmic-ray-like outliers
            idx = rng.integers(0, n, max(1, n // 15))
            v[idx] += rng.exponential(2000.0, idx.size)
        elif kind == 2:                                 # NaN (flagged) differences
            v[rng.random(n) < 0.2] = np.nan
        elif kind == 3:                                 # coarse values: many ties
            v = np.round(v / 50.0) * 50.0
        elif kind == 4:                                 # all equal
            v[:] = v[0]
        elif kind == 5:                                 # heavy tails: several iterations
            v = rng.standard_cauchy(n) * 10.0
        elif kind == 6:                                 # a few equal values + outliers
            v = np.full(n, 3.0)
            v[: max(1, n // 10)] = 1e3
        elif kind == 7 and n > 1:                       # infs and a NaN
            v[0] = np.inf
            v[-1] = -np.inf
            v[n // 2] = np.nan
        out[c] = v
    return out


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 16, 33, 100, 300, 2700])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mask_equals_astropy(n, dtype):
    rng = np.random.default_rng(n)
    ncol = 400 if n <= 300 else 40
    vals = _columns(rng, ncol, n)
    if dtype is np.float64:
        vals = vals.astype(np.float64)        # float32 values in float64, as stcal passes
    ref, _, _ = astropy_clip(vals.T, axis=0)
    for exact in (False, True):
        out = np.empty(vals.shape, np.bool_)
        J.sigma_clip_mask(vals, 4.0, 5, out, exact)
        np.testing.assert_array_equal(out, ref.T)
    # float32 input to astropy (how calib called it before) gives the same mask
    ref32, _, _ = astropy_clip(vals.astype(np.float32).T, axis=0)
    np.testing.assert_array_equal(ref32, ref)


@pytest.mark.parametrize("sigma", [2.0, 3.0, 4.0])
def test_exact_replica_bounds_bit_identical(sigma):
    """The operation-by-operation replica gives astropy's bounds to the bit (this checks the
    Wirth selection order and the summation order, not only the masks)."""
    rng = np.random.default_rng(7)
    for n in (2, 5, 64, 300, 301):
        vals = _columns(rng, 200, n).astype(np.float64)
        _, lo, hi = astropy_clip(vals.T, sigma=sigma, axis=0)
        for c in range(vals.shape[0]):
            f = vals[c][np.isfinite(vals[c])]
            if f.size == 0:
                assert np.isnan(lo[c]) and np.isnan(hi[c])
                continue
            a, b = J._sigma_clip_bounds(f.copy(), f.size, sigma, 5)
            assert a == lo[c] and b == hi[c], (n, c)
            a2, b2, ok = J._sigma_clip_bounds_fast(f, f.size, sigma, 5, np.empty(f.size),
                                                   np.empty(f.size), np.empty(f.size))
            if ok:                    # certified: within the error bound, same decisions
                assert abs(a2 - lo[c]) <= 1e-9 * (1 + abs(lo[c]))
                assert abs(b2 - hi[c]) <= 1e-9 * (1 + abs(hi[c]))


def test_maxiters_rule():
    """maxiters counts iterations that changed the set; the final mask uses the last
    bounds computed (values clipped earlier can come back inside)."""
    rng = np.random.default_rng(3)
    vals = (rng.standard_cauchy((300, 300)) * 5.0).astype(np.float32)
    for maxiters in (1, 2, 5, -1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = np.ma.getmaskarray(sigma_clip(vals.T, sigma=2.0, axis=0, masked=True,
                                                maxiters=None if maxiters == -1 else maxiters))
        out = np.empty(vals.shape, np.bool_)
        J.sigma_clip_mask(vals, 2.0, maxiters, out)
        np.testing.assert_array_equal(out, ref.T)


def test_all_nan_column_masks_only_nan():
    vals = np.full((2, 150), np.nan, np.float32)
    vals[1, :3] = [1.0, 2.0, 3.0]
    out = np.empty(vals.shape, np.bool_)
    J.sigma_clip_mask(vals, 4.0, 5, out)
    ref, _, _ = astropy_clip(vals.T.astype(np.float64))
    np.testing.assert_array_equal(out, ref.T)
    assert out[0].all() and not out[1, :3].any()


def test_median_select_equals_nanmedian():
    rng = np.random.default_rng(11)
    for n in (1, 2, 31, 32, 33, 34, 300, 2700):
        for _ in range(30):
            a = rng.normal(0, 10, n)
            if rng.random() < 0.5:
                a = np.round(a)
            a[rng.random(n) < 0.1] = np.nan
            m = J._median_select(a, n, np.empty(n), np.empty(n))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ref = np.nanmedian(a)
            assert (np.isnan(m) and np.isnan(ref)) or m == ref


# --------------------------------------------------------------------- jump-step kernel
def stcal_reference(data, gdq, gain, sigma, only_use_ints):
    """The sigma-clipping part of stcal's jump detection, in numpy + astropy."""
    dat = data * gain[None, None]                       # float32, electrons
    dat[(gdq & (DNU | SAT)) != 0] = np.nan
    first_diffs = np.diff(dat, axis=1) / np.ones(1)[None, :, None, None]   # float64
    finite = np.isfinite(first_diffs)
    mask, _, _ = astropy_clip(first_diffs, sigma=sigma, axis=0 if only_use_ints else (0, 1))
    ok = (gdq[:, 1:] & (SAT | DNU)) == 0
    out = gdq.copy()
    out[:, 1:] |= (mask & finite & ok).astype(np.uint8) * np.uint8(JUMP)
    nints, ngroups = data.shape[:2]
    for i in range(nints):
        for g in range(ngroups):
            if np.all(out[i, g] & (JUMP | DNU) != 0):
                plane = out[i, g]
                plane[plane == JUMP] = 0
    return out


def _ramp(rng, nints, ngroups, ny, nx):
    rate = rng.uniform(0.0, 50.0, (ny, nx))
    data = (np.arange(ngroups)[None, :, None, None] * rate[None, None]
            + rng.normal(0, 4.0, (nints, ngroups, ny, nx)) + 1000.0).astype(np.float32)
    hits = rng.random(data.shape) < 0.003                # cosmic rays: steps up the ramp
    data += (np.cumsum(hits, axis=1) * 800.0).astype(np.float32)
    gdq = np.zeros(data.shape, np.uint8)
    gdq[rng.random(data.shape) < 0.01] |= np.uint8(DNU)
    sat = rng.random((nints, ny, nx)) < 0.02             # saturating from a random group
    first = rng.integers(1, ngroups, (nints, ny, nx))
    g = np.arange(ngroups)[None, :, None, None]
    gdq[(g >= first[:, None]) & sat[:, None]] |= np.uint8(SAT)
    gdq[:, :, 0, :3] = DNU                               # a few fully unusable pixels
    data[:, :, 1, 5] = np.nan
    gain = rng.uniform(1.5, 2.5, (ny, nx)).astype(np.float32)
    gain[2, 7] = 0.0
    return data, gdq, gain


@pytest.mark.parametrize("only_use_ints", [True, False])
@pytest.mark.parametrize("threads", [1, 2])
def test_sigclip_kernel_equals_stcal(only_use_ints, threads):
    rng = np.random.default_rng(5)
    data, gdq, gain = _ramp(rng, 120, 5, 4, 150)        # 150 columns: two XBLOCK blocks
    ref = stcal_reference(data, gdq, gain, 4.0, only_use_ints)
    ours = gdq.copy()
    prev = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        J._sigma_clip_jumps(data, ours, gain, 4.0, only_use_ints)
    finally:
        numba.set_num_threads(prev)
    np.testing.assert_array_equal(ours, ref)
    assert (ours & JUMP).any()


def test_clear_jump_only_planes():
    rng = np.random.default_rng(2)
    data, gdq, gain = _ramp(rng, 100, 4, 3, 20)
    data[:, :, 1, 5] = 1000.0                           # no NaN pixel, no zero gain here
    gain[2, 7] = 2.0
    data[3, 2] += 1e6               # every usable pixel jumps in groups 2 and 3 of int 3
    ref = stcal_reference(data, gdq, gain, 4.0, True)
    ours = gdq.copy()
    J._sigma_clip_jumps(data, ours, gain, 4.0, True)
    np.testing.assert_array_equal(ours, ref)
    assert not (ours[3, 2] == JUMP).any()
