"""calib.drizzle's square kernel: its paths against drizzle's C kernel, bit for bit.

The cases of tests/test_calib_image2_parity.py (one companion array) run the generic
companion loop; jwst's resample drizzles three (the square roots of the variances), which
the kernel unrolls, and the outputs are indexed flat (C-contiguous arrays; others are
drizzled through contiguous copies). Each path here is compared with drizzle's C kernel (as
jwst runs it: one call per array) on a rotated, sheared map with unmapped pixels and zero
weights; the exact shortcuts of the per-pixel overlap (:func:`calib.drizzle._edge_area`)
against the reference form of the same arithmetic (:func:`calib.drizzle._segment`), and its
branch-free form the kernel runs four edges at a time (:func:`calib.drizzle._edge_term`,
vectorized by LLVM) against it.
"""
from __future__ import annotations

import numba
import numpy as np
import pytest

from calib.drizzle import _edge_area, _edge_part, _edge_term, _segment


def _scene(n=90, th=0.4, seed=2):
    """Return (data, var (3, n, n), weight, pixmap, out_shape): NaN pixels in the map, zero weights."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:n, 0:n].astype(float)
    pixmap = np.dstack([np.cos(th) * xx * 1.03 - np.sin(th) * yy + 60.2 + 2e-4 * xx * yy,
                        np.sin(th) * xx + np.cos(th) * yy * 0.97 + 4.9 - 1e-4 * xx * xx])
    pixmap[30:33, 10:25] = np.nan
    data = rng.normal(size=(n, n)).astype(np.float32)
    var = (rng.random((3, n, n)) * 2).astype(np.float32)
    var[1, 50:55, 40:44] = 0.0
    weight = rng.random((n, n)).astype(np.float32)
    weight[5:9, 5:12] = 0
    weight[60:62, :] = 0
    shape = (int(np.nanmax(pixmap[..., 1])) + 3, int(np.nanmax(pixmap[..., 0])) + 3)
    return data, var, weight, pixmap, shape


def _c_drizzle(arr, weight, pixmap, shape, pixfrac, ctx):
    from drizzle.resample import Drizzle

    ny, nx = arr.shape
    d = Drizzle(out_shape=shape, kernel="square", fillval="NAN", disable_ctx=not ctx)
    d.add_image(arr, exptime=1.0, pixmap=pixmap, weight_map=weight, pixfrac=pixfrac,
                xmin=0, xmax=nx - 1, ymin=0, ymax=ny - 1)
    return d


@pytest.mark.parametrize("nextra", [0, 2, 3])
@pytest.mark.parametrize(("pixfrac", "corners"), [(1.0, "blocks"), (1.0, "map"), (1.0, None), (0.7, None)])
def test_companions_equal_drizzles_c_kernel(nextra, pixfrac, corners):
    """SCI, WHT, CON and 0, 2 or 3 companion arrays (their square roots drizzled, as jwst's
    resample asks) bit-identical to drizzle's C kernel run once per array on the square roots;
    pixfrac 1 from the pixel map, from its corner map and block by block, and pixfrac 0.7."""
    import calib.drizzle as D

    data, var, weight, pixmap, shape = _scene()
    var = var[:nextra]
    ny, nx = data.shape
    ref = _c_drizzle(data, weight, pixmap, shape, pixfrac, True)
    img, wht = np.empty(shape, np.float32), np.zeros(shape, np.float32)
    extra, ctx = np.empty((nextra, *shape), np.float32), np.zeros(shape, np.int32)
    bounds = (0, nx - 1, 0, ny - 1)
    kw = {"bit": 1, "sqrt_extra": True, "init_fill": np.nan}
    if corners == "blocks":
        saved, D.CORNER_BLOCK_ROWS = D.CORNER_BLOCK_ROWS, 11
        try:
            D.drizzle_square(data, list(var), weight, None, bounds, pixfrac, img, extra, wht, ctx,
                             corners=lambda j0, j1: D.corner_map(pixmap, (0, nx - 1, j0, j1)), **kw)
        finally:
            D.CORNER_BLOCK_ROWS = saved
    elif corners == "map":
        D.drizzle_square(data, var, weight, None, bounds, pixfrac, img, extra, wht, ctx,
                         corners=D.corner_map(pixmap, bounds), **kw)
    else:
        D.drizzle_square(data, var, weight, pixmap, bounds, pixfrac, img, extra, wht, ctx, **kw)
    np.testing.assert_array_equal(img, ref.out_img)
    np.testing.assert_array_equal(wht, ref.out_wht)
    np.testing.assert_array_equal(ctx, ref.out_ctx[0])
    for k in range(nextra):
        np.testing.assert_array_equal(extra[k], _c_drizzle(np.sqrt(var[k]), weight, pixmap, shape, pixfrac,
                                                           False).out_img)


def test_non_contiguous_outputs_equal_contiguous():
    """Outputs that are views (every other column of larger arrays, a Fortran-ordered plane)
    are updated in place with the values contiguous outputs get, accumulating over two inputs."""
    from calib.drizzle import drizzle_square

    data, var, weight, pixmap, shape = _scene()
    ny, nx = data.shape
    bounds = (0, nx - 1, 0, ny - 1)

    def run(img, extra, wht, ctx):
        for bit, shift in ((1, 0.0), (2, 0.37)):
            pm = pixmap + shift
            drizzle_square(data, var, weight, pm, bounds, 1.0, img, extra, wht, ctx, bit=bit, sqrt_extra=True)

    want = (np.full(shape, np.nan, np.float32), np.full((3, *shape), np.nan, np.float32),
            np.zeros(shape, np.float32), np.zeros(shape, np.int32))
    run(*want)
    big = np.full((shape[0], 2 * shape[1]), np.nan, np.float32)
    bigx = np.full((3, shape[0], 2 * shape[1]), np.nan, np.float32)
    wht = np.asfortranarray(np.zeros(shape, np.float32))
    ctx = np.zeros((shape[0], 2 * shape[1]), np.int32)
    got = (big[:, ::2], bigx[:, :, ::2], wht, ctx[:, ::2])
    assert not any(g.flags.c_contiguous for g in got)
    run(*got)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)
    assert np.isnan(big[:, 1::2]).all() and np.isnan(bigx[:, :, 1::2]).all() and not ctx[:, 1::2].any()


@numba.njit
def _both_forms(x0, y0, x1, slope, xl, xr, yb):
    fl, yl, yr, wd = _edge_part(x0, y0, x1, slope, xl, xr)
    return _segment(x0, y0, x1, slope, xl, xr, yb), _edge_area(yb, fl, yl, yr, wd)


def test_edge_area_shortcuts_are_exact():
    """The per-pixel edge term with its shortcuts (no division for an edge part wholly below
    or wholly above the pixel) equals the reference form of the same arithmetic, to the bit
    (but the sign of a zero), on random edges placed on and near the pixel's bottom and top,
    steep, flat and exactly horizontal, crossing it, far above it (up to 1e6 px)."""
    rng = np.random.default_rng(7)
    n = 200_000
    yb = rng.integers(-50, 50, n) - 0.5
    xl = rng.integers(-50, 50, n) - 0.5
    kind = rng.integers(0, 6, n)
    base = np.choose(kind, [yb, yb + 1.0, yb + rng.random(n), yb + rng.normal(0, 3, n),
                            yb + rng.random(n) * 1e6, yb - rng.random(n) * 1e3])
    x0 = xl + rng.normal(0.5, 1.0, n)
    x1 = x0 + np.choose(rng.integers(0, 3, n), [rng.normal(0, 1e-3, n), rng.normal(0, 1.5, n),
                                                 rng.normal(0, 1e-9, n)])
    slope = np.choose(rng.integers(0, 4, n), [np.zeros(n), rng.normal(0, 1e-5, n), rng.normal(0, 1, n),
                                               rng.normal(0, 1e4, n)])
    y0 = base - slope * (x0 - xl) * rng.random(n)
    for k in range(n):
        ref, got = _both_forms(x0[k], y0[k], x1[k], slope[k], xl[k], xl[k] + 1.0, yb[k])
        assert ref == got, (k, ref, got)


@numba.njit
def _terms_both(yb, fl, yl, yr, wd, got, ref):
    """Every lane's :func:`_edge_term` in a loop of the kernel's form (vectorized), and :func:`_edge_area`."""
    for k in range(yb.size):
        uk = np.uint64(k)
        got[uk] = _edge_term(yb[uk], yl[uk], yr[uk], wd[uk])
    for k in range(yb.size):
        ref[k] = _edge_area(yb[k], fl[k], yl[k], yr[k], wd[k])


@numba.njit
def _parts(x0, y0, x1, slope, xl):
    n = x0.size
    fl, yl, yr, wd = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    for k in range(n):
        fl[k], yl[k], yr[k], wd[k] = _edge_part(x0[k], y0[k], x1[k], slope[k], xl[k], xl[k] + 1.0)
    return fl, yl, yr, wd


def _random_edges(rng, n):
    """``n`` random edges' (yb, fl, yl, yr, wd) of :func:`_edge_part`, degenerate ones included:
    vertical (x0 == x1) and outside the column (fl 0), zero and 1e-9 px wide, horizontal, ends
    exactly on the pixel's bottom or top or 1e-13 px from them (the 1e-12 branch), steep
    (slope 1e4), far above and below, and raw parts with huge, infinite and NaN ys."""
    yb = rng.integers(-60, 60, n) - 0.5
    xl = rng.integers(-60, 60, n) - 0.5
    kind = rng.integers(0, 8, n)
    base = np.choose(kind, [yb, yb + 1.0, yb + rng.random(n), yb + rng.normal(0, 3, n), yb + rng.random(n) * 1e6,
                            yb - rng.random(n) * 1e3, yb + 1.0 + 1e-13 * rng.integers(-2, 3, n),
                            yb + 1e-13 * rng.integers(-2, 3, n)])
    x0 = np.choose(rng.integers(0, 3, n), [xl + rng.normal(0.5, 1.0, n), xl, xl + 1.0])
    x1 = x0 + np.choose(rng.integers(0, 5, n), [rng.normal(0, 1e-3, n), rng.normal(0, 1.5, n), rng.normal(0, 1e-9, n),
                                                 np.zeros(n), np.sign(rng.normal(size=n)) * 2.0])
    slope = np.choose(rng.integers(0, 5, n), [np.zeros(n), rng.normal(0, 1e-5, n), rng.normal(0, 1, n),
                                               rng.normal(0, 1e4, n), 1e-13 * rng.normal(size=n)])
    y0 = base - slope * (x0 - xl) * np.choose(rng.integers(0, 3, n), [rng.random(n), np.zeros(n), np.ones(n)])
    fl, yl, yr, wd = _parts(x0, y0, x1, slope, xl)
    raw = rng.random(n) < 0.05                        # parts no edge gives: huge, infinite, NaN ys
    special = np.array([0.0, 1.0, -1.0, 1e300, -1e300, 1e308, -1e308, np.inf, -np.inf, np.nan, 0.5, 2.0**52])
    m = int(raw.sum())
    fl[raw] = 1.0
    yl[raw] = yb[raw] + special[rng.integers(0, special.size, m)]
    yr[raw] = np.where(rng.random(m) < 0.5, yb[raw] + special[rng.integers(0, special.size, m)], yl[raw])
    wd[raw] = np.choose(rng.integers(0, 3, m), [rng.normal(size=m), -rng.random(m), np.full(m, 1e300)])
    return yb, fl, yl, yr, wd


def test_branch_free_edge_term_equals_edge_area():
    """The branch-free edge term in the kernel's vectorized loop equals :func:`_edge_area` to the
    bit but the sign of a zero (NaN where it is NaN), on 1.2 million random edges with
    degenerate ones; so the overlap ``abs`` of four edges' sum, in edge order, is the same bits."""
    rng = np.random.default_rng(12)
    n = 1_200_000
    yb, fl, yl, yr, wd = _random_edges(rng, n)
    assert (fl == 0).sum() > n // 20 and (yl == yb + 1.0).any() and (yr == yb).any() and np.isnan(yl).any()
    got, ref = np.empty(n), np.empty(n)
    _terms_both(yb, fl, yl, yr, wd, got, ref)
    same = (got == ref) | (np.isnan(got) & np.isnan(ref))
    assert same.all(), (np.flatnonzero(~same)[:5], got[~same][:5], ref[~same][:5])
    for k in range(4):      # quads of consecutive edges: the kernel's sum over four lanes
        g, r = got[k:n - 3 + k:4], ref[k:n - 3 + k:4]
        sg = np.abs(((g[0::4] + g[1::4]) + g[2::4]) + g[3::4])
        sr = np.abs(((r[0::4] + r[1::4]) + r[2::4]) + r[3::4])
        np.testing.assert_array_equal(sg.view(np.int64)[~np.isnan(sr)], sr.view(np.int64)[~np.isnan(sr)])
        assert (np.isnan(sg) == np.isnan(sr)).all()


def test_square_kernel_has_no_fused_multiply_add():
    """No FMA contraction in the compiled kernel (it would change the products' roundings)."""
    import calib.drizzle as D

    data, var, weight, pixmap, shape = _scene(20)
    for nextra in (0, 3):
        img, wht = np.empty(shape, np.float32), np.zeros(shape, np.float32)
        D.drizzle_square(data, var[:nextra], weight, pixmap, (0, 19, 0, 19), 1.0, img,
                         np.empty((nextra, *shape), np.float32), wht, np.zeros(shape, np.int32), init_fill=np.nan)
    for sig in D._square_kernel.signatures:
        asm = D._square_kernel.inspect_asm(sig).lower()
        assert "vfma" not in asm and "vfnm" not in asm


def test_a_twisted_drop_gets_infinite_weight_as_in_drizzles_c_kernel():
    """A drop whose corners cross (a bow tie: the Jacobian is exactly 0, each half's overlap
    is not) gets the weight overlap / 0 = +inf, as drizzle's C kernel (IEEE division) gives,
    not a ZeroDivisionError (the parallel kernel divides with numpy's error model): the
    context bit of the pixels it reaches is set, their weight is +inf and their value NaN
    (inf / inf); pixels it does not reach keep finite weights."""
    import calib.drizzle as D

    # a 4x4 input on an identity grid of corners, the top corners of input pixel (1, 1) swapped:
    # its drop runs (5, 5) -> (4, 5) -> (5, 4) -> (4, 4), a bow tie
    cy, cx = np.mgrid[0:5, 0:5].astype(float) + 3.0
    cx[2, 1], cx[2, 2] = cx[2, 2], cx[2, 1]
    jaco = 0.5 * ((cx[2, 2] - cx[1, 1]) * (cy[2, 1] - cy[1, 2]) - (cx[2, 1] - cx[1, 2]) * (cy[2, 2] - cy[1, 1]))
    assert jaco == 0.0
    data = np.full((4, 4), 3.0, np.float32)
    weight = np.ones((4, 4), np.float32)
    shape = (10, 10)
    img, wht, ctx = np.empty(shape, np.float32), np.zeros(shape, np.float32), np.zeros(shape, np.int32)
    D.drizzle_square(data, [], weight, None, (0, 3, 0, 3), 1.0, img, np.empty((0, *shape), np.float32), wht, ctx,
                     corners=(cx, cy), init_fill=np.nan)
    inf = np.isposinf(wht)
    assert inf[4:6, 4:6].any() and (ctx[inf] == 1).all() and np.isnan(img[inf]).all()
    assert np.isfinite(wht[ctx == 1][~inf[ctx == 1]]).all() and (wht[3, 3] > 0) and img[3, 3] == 3.0
