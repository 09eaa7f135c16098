"""Drizzle's square kernel in numba, for SCI and any number of companion arrays in one pass.

The "square" kernel of the drizzle algorithm (Fruchter & Hook 2002, PASP 114, 144; the
``drizzle`` package's ``do_kernel_square``, which jwst's resample step uses): each input
pixel, shrunk by ``pixfrac`` about its centre, is mapped to a quadrilateral on the output
grid (its corners interpolated bilinearly in the pixel map, extrapolated from the nearest
2x2 cell at the edges); its value is added to every output pixel it overlaps with weight
``w * overlap_area / quadrilateral_area`` as a running weighted mean, the weights are
summed, and the context bit of the image is set where the weight added is positive.

jwst drizzles SCI and the square roots of VAR_POISSON, VAR_RNOISE and VAR_FLAT with the same
pixel map and weights, in four passes of drizzle's C kernel; the overlaps are the same in
all four, so :func:`drizzle_square` computes them once and updates every array.

Parallel and still in drizzle's order: the output rows are cut into bands (``BANDS_PER_THREAD``
per numba thread, handed out to the threads one at a time), each band a task that scans the
input in drizzle's order (rows, then columns) and updates only its own rows, so each output
pixel receives its drops in the serial order from one thread and the result is bit-identical
to the serial kernel for any number of threads. A first pass records, per input row segment
of ``SEGMENT`` pixels, the output rows its drops reach (with shared corners, the rows between
its lowest and highest corner), so a band skips the segments that cannot touch it; input
pixels of weight 0 are skipped (they add nothing).

Edges, as drizzle's "image scanner" (:func:`scan_limits`): drizzle maps the corners of the
input box to the output, joins them by straight lines, clips that outline to the output frame,
maps the clipped polygon back to the input (a golden-section search, to 0.03 px) and drizzles
in each input row only the pixels wholly inside that polygon (to 0.03 px); an input pixel
whose footprint straddles the output's edge adds nothing, though part of its drop lands
inside. Bit-identical to drizzle's C kernel (drizzle 2.2) on maps crossing every output edge,
rotated, partly or wholly outside (tests/test_calib_image2_parity.py).
"""
from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["drizzle_square", "corner_map"]


@numba.njit(cache=True, inline="always")
def _fortran_round(x):
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(0.5 - x))


@numba.njit(cache=True)
def _interp(pixmap, x, y, ny, nx):
    """Bilinear interpolation of the pixel map at (x, y), input px (extrapolating at edges)."""
    i0 = int(x)
    j0 = int(y)
    if i0 < 0:
        i0 = 0
    elif i0 > nx - 2:
        i0 = nx - 2
    if j0 < 0:
        j0 = 0
    elif j0 > ny - 2:
        j0 = ny - 2
    fx = x - i0
    fy = y - j0
    gx = 1.0 - fx
    gy = 1.0 - fy
    ox = (pixmap[j0, i0, 0] * gx * gy + pixmap[j0, i0 + 1, 0] * fx * gy
          + pixmap[j0 + 1, i0, 0] * gx * fy + pixmap[j0 + 1, i0 + 1, 0] * fx * fy)
    oy = (pixmap[j0, i0, 1] * gx * gy + pixmap[j0, i0 + 1, 1] * fx * gy
          + pixmap[j0 + 1, i0, 1] * gx * fy + pixmap[j0 + 1, i0 + 1, 1] * fx * fy)
    return ox, oy


@numba.njit(cache=True, inline="always")
def _ramp(t):
    """Integral of clamp(s, 0, 1) ds from 0 to t."""
    if t <= 0.0:
        return 0.0
    if t >= 1.0:
        return t - 0.5
    return 0.5 * t * t


@numba.njit(cache=True, inline="always")
def _segment(x0, y0, x1, slope, xl, xr, yb):
    """Signed integral over x in [xl, xr] of clamp(y(x) - yb, 0, 1) along the segment from (x0, y0) to x1.

    ``slope`` is the segment's (y1 - y0) / (x1 - x0), computed once per drop. The overlap of a
    drop with the output pixel whose left, right and bottom sides are xl, xr, yb is the absolute
    value of the sum of this over the drop's four edges (k = 0..3, k -> k + 1); the kernel does
    these operations split in two: :func:`_edge_part` per output column, :func:`_edge_term` per
    output pixel (the reference form, not called; :func:`_edge_area` is the per-pixel part with
    branches, the scalar reference of :func:`_edge_term`).
    """
    if x0 == x1:
        return 0.0
    if x0 < x1:
        a, b, sign = max(x0, xl), min(x1, xr), 1.0
    else:
        a, b, sign = max(x1, xl), min(x0, xr), -1.0
    if a >= b:
        return 0.0
    u = y0 + slope * (a - x0) - yb
    v = y0 + slope * (b - x0) - yb
    if abs(v - u) < 1e-12:
        mean = min(max(u, 0.0), 1.0)
    else:
        mean = (_ramp(v) - _ramp(u)) / (v - u)
    return sign * (b - a) * mean


@numba.njit(cache=True, inline="always")
def _drop(i, j, xmin, ymin, shared, cx, cy, pixmap, dh, ny, nx, xs, ys):
    """Corners (xs, ys) of input pixel (i, j)'s drop in the output frame; False when one is unmapped.

    Corner order as drizzle's: (-, +), (+, +), (+, -), (-, -) in (x, y) about the centre.
    """
    if shared:
        a, b = j - ymin, i - xmin
        xs[0], ys[0] = cx[a + 1, b], cy[a + 1, b]
        xs[1], ys[1] = cx[a + 1, b + 1], cy[a + 1, b + 1]
        xs[2], ys[2] = cx[a, b + 1], cy[a, b + 1]
        xs[3], ys[3] = cx[a, b], cy[a, b]
        for k in range(4):
            if np.isnan(xs[k]) or np.isnan(ys[k]):
                return False
        return True
    for k in range(4):
        xi = i - dh if (k == 0 or k == 3) else i + dh
        yi = j + dh if k < 2 else j - dh
        ox, oy = _interp(pixmap, xi, yi, ny, nx)
        if np.isnan(ox) or np.isnan(oy):
            return False
        xs[k] = ox
        ys[k] = oy
    return True


@numba.njit(cache=True, nogil=True, parallel=True)
def _corner_map(pixmap, xmin, xmax, ymin, ymax, cx, cy):
    """Output positions of the input pixel corners (x +- 0.5, y +- 0.5) of the drizzled range."""
    ny, nx = pixmap.shape[0], pixmap.shape[1]
    for cj in numba.prange(ymax - ymin + 2):
        for ci in range(xmax - xmin + 2):
            cx[cj, ci], cy[cj, ci] = _interp(pixmap, xmin + ci - 0.5, ymin + cj - 0.5, ny, nx)


@numba.njit(cache=True, nogil=True, parallel=True)
def _segment_rows(weight, pixmap, xmin, xmax, ymin, ymax, dh, shared, cx, cy, seg, lo, hi, slo, shi):
    """Range of output rows (drizzle's rounding, unclipped) the drops of each row segment reach.

    ``lo[r, s] > hi[r, s]`` when no drop of input row ``ymin + r``, pixels ``xmin + s*seg``
    onward, has weight and is mapped.
    """
    ny, nx = pixmap.shape[0], pixmap.shape[1]
    nseg = lo.shape[1]
    for r in numba.prange(ymax - ymin + 1):
        j = ymin + r
        xs = np.empty(4)
        ys = np.empty(4)
        for s in range(nseg):
            a, b = 2**31 - 1, -2**31
            for i in range(max(xmin + s * seg, slo[r]), min(xmin + (s + 1) * seg, xmax + 1, shi[r] + 1)):
                if weight[j, i] == 0.0 or not _drop(i, j, xmin, ymin, shared, cx, cy, pixmap, dh, ny, nx, xs, ys):
                    continue
                a = min(a, _fortran_round(ys.min()))
                b = max(b, _fortran_round(ys.max()))
            lo[r, s] = a
            hi[r, s] = b


@numba.njit(cache=True, nogil=True, parallel=True)
def _segment_rows_shared(cy, xmin, xmax, ymin, ymax, seg, lo, hi, slo, shi):
    """:func:`_segment_rows` for shared corners, from the corners alone: a range that contains it.

    The output rows (drizzle's rounding) between the lowest and the highest mapped corner of
    the segment's pixels, whatever their weights: the kernel skips a band only when no drop
    can reach it, so a wider range changes no result (it only visits a few more segments).
    """
    nseg = lo.shape[1]
    for r in numba.prange(ymax - ymin + 1):
        for s in range(nseg):
            i0 = max(xmin + s * seg, slo[r])
            i1 = min(xmin + (s + 1) * seg, xmax + 1, shi[r] + 1)
            mn = np.inf
            mx = -np.inf
            stop = i1 - xmin + 1 if i1 > i0 else i0 - xmin      # corner columns of pixels i0..i1 - 1
            for b in range(i0 - xmin, stop):
                for v in (cy[r, b], cy[r + 1, b]):
                    if v < mn:             # NaN (unmapped) compares false: skipped
                        mn = v
                    if v > mx:
                        mx = v
            if mn <= mx:
                lo[r, s] = _fortran_round(mn)
                hi[r, s] = _fortran_round(mx)
            else:
                lo[r, s] = 2**31 - 1
                hi[r, s] = -2**31


@numba.njit(cache=True, inline="always")
def _edge_part(x0, y0, x1, slope, xl, xr):
    """Return the x-only part of :func:`_segment` for one edge and one output column [xl, xr] (once per drop).

    Returns
    -------
    tuple of float
        (1.0 if the edge spans part of the column else 0.0, the edge's y at the left and at
        the right end of that part, sign * width of the part), all float64, output px; the
        operations of :func:`_segment` up to ``u``, ``v`` (which subtract the row's ``yb``).
    """
    if x0 == x1:
        return 0.0, 0.0, 0.0, 0.0
    if x0 < x1:
        a, b, sign = max(x0, xl), min(x1, xr), 1.0
    else:
        a, b, sign = max(x1, xl), min(x0, xr), -1.0
    if a >= b:
        return 0.0, 0.0, 0.0, 0.0
    return 1.0, y0 + slope * (a - x0), y0 + slope * (b - x0), sign * (b - a)


@numba.njit(cache=True, inline="always")
def _edge_area(yb, fl, yl, yr, wd):
    """Finish :func:`_segment` for one edge in the output pixel whose bottom is ``yb`` (float64, px).

    ``fl, yl, yr, wd``: the edge's :func:`_edge_part` in the pixel's column. The operations
    of :func:`_segment`, less those whose result is known exactly: an edge part wholly below
    the pixel (``u, v <= 0``: both ramps 0, the mean +-0, the term a signed zero, which changes
    no non-zero sum and no ``abs``) or wholly above it (``u, v >= 1``: ``ramp(t) = t - 0.5``
    is exact for 1 <= t < 2**52, so the ramps' difference is the correctly rounded ``v - u``,
    the very ``v - u`` it is divided by, and the mean is exactly 1, as in the
    ``abs(v - u) < 1e-12`` branch): no division for these. The scalar reference of
    :func:`_edge_term`, which the kernel runs (tests/test_calib_drizzle_kernel.py).
    """
    if fl == 0.0:
        return 0.0
    u = yl - yb
    v = yr - yb
    if u <= 0.0 and v <= 0.0:
        return 0.0
    if u >= 1.0 and v >= 1.0:
        return wd
    if abs(v - u) < 1e-12:
        mean = min(max(u, 0.0), 1.0)
    else:
        mean = (_ramp(v) - _ramp(u)) / (v - u)
    return wd * mean


@numba.njit(cache=True, inline="always")
def _ramp_sel(t):
    """:func:`_ramp` as selects: the same comparisons in the same order, the same results."""
    return 0.0 if t <= 0.0 else (t - 0.5 if t >= 1.0 else 0.5 * t * t)


@numba.njit(cache=True, inline="always")
def _edge_term(yb, yl, yr, wd):
    """:func:`_edge_area` without branches (every operation done, the result selected): four lanes vectorize.

    ``yl, yr, wd``: the edge's :func:`_edge_part` in the pixel's column, all 0.0 where the
    edge does not span part of it (``fl`` 0). The same operations as :func:`_edge_area` give
    the selected result, so it is the same to the bit but the sign of a zero (an edge part
    not in the column gives ``0 * mean``, +-0; a zero changes no non-zero sum and no ``abs``).
    The division is done for every edge (its divisor 1.0 where ``abs(v - u) < 1e-12``, whose
    quotient is not used), four at once.
    """
    u = yl - yb
    v = yr - yb
    dv = v - u
    near = abs(dv) < 1e-12
    q = (_ramp_sel(v) - _ramp_sel(u)) / (1.0 if near else dv)
    t = wd * (min(max(u, 0.0), 1.0) if near else q)
    t = wd if ((u >= 1.0) & (v >= 1.0)) else t
    return 0.0 if ((u <= 0.0) & (v <= 0.0)) else t


@numba.njit(cache=True, inline="always")
def _slope(x0, y0, x1, y1):
    return (y1 - y0) / (x1 - x0) if x1 != x0 else 0.0


@numba.njit(cache=True, nogil=True, parallel=True)
def _square_kernel(data, extra, nextra, sqrt_extra, weight, pixmap, xmin, xmax, ymin, ymax, pixfrac, iscale,
                   out_img, out_extra, out_wht, out_ctx, bit, shared, cx, cy, seg, lo, hi, edges, slo, shi, init, fill):
    """Drizzle the input range onto output row bands ``edges[b]:edges[b + 1]``, one band per task.

    Each band scans the input in drizzle's order (rows, then columns) and updates only its own
    output rows, so every output pixel receives its drops in the serial order, by one thread.
    With ``init``, a band first sets its rows of ``out_img`` to ``fill`` and of ``out_extra``
    to NaN (the bands cover every output row).

    Per drop: its corners, Jacobian, edge slopes (scalars) and the edges' parts per output
    column (:func:`_edge_part`, a small table: lane 4c + k holds edge k in column c); per output
    row the terms of every lane (:func:`_edge_term`, branch-free: LLVM vectorizes the loop, 4
    doubles a step with AVX2, no FMA contraction), per output pixel its four lanes summed in
    edge order, the weight and drizzle's running-mean update, each with drizzle's operations
    in drizzle's order. Array indices are unsigned where they
    cannot be negative (numba then emits no negative-index wraparound), the outputs indexed
    flat (C-contiguous), three companion arrays (jwst's case) unrolled.
    """
    ny, nx = data.shape
    my, mx = out_img.shape
    nseg = lo.shape[1]
    dh = 0.5 * pixfrac
    scale = np.float32(iscale)
    has_ctx = out_ctx.shape[0] > 0
    img1 = out_img.reshape(my * mx)
    wht1 = out_wht.reshape(my * mx)
    ctx1 = out_ctx.reshape(out_ctx.size)
    ex1 = out_extra.reshape(out_extra.shape[0], my * mx)
    for band in numba.prange(edges.size - 1):
        b0 = edges[band]
        b1 = edges[band + 1] - 1
        if init:
            for jj in range(b0, b1 + 1):
                for ii in range(mx):
                    out_img[jj, ii] = fill
                for e in range(nextra):
                    for ii in range(mx):
                        out_extra[e, jj, ii] = np.float32(np.nan)
        xs = np.empty(4)
        ys = np.empty(4)
        dex = np.empty(max(nextra, 1), np.float32)
        tyl, tyr, twd, tt = np.empty(32), np.empty(32), np.empty(32), np.empty(32)
        for r in range(ymax - ymin + 1):
            j = ymin + r
            for s in range(nseg):
                if hi[r, s] < b0 or lo[r, s] > b1:
                    continue
                for i in range(max(xmin + s * seg, slo[r]), min(xmin + (s + 1) * seg, xmax + 1, shi[r] + 1)):
                    uj, ui = np.uint64(j), np.uint64(i)      # unsigned indices: no wraparound code
                    w = np.float64(weight[uj, ui])
                    if w == 0.0:        # adds nothing (drizzle: dow = 0)
                        continue
                    if shared:
                        a0, a1 = np.uint64(j - ymin), np.uint64(j - ymin + 1)
                        c0, c1 = np.uint64(i - xmin), np.uint64(i - xmin + 1)
                        x0, y0 = cx[a1, c0], cy[a1, c0]
                        x1, y1 = cx[a1, c1], cy[a1, c1]
                        x2, y2 = cx[a0, c1], cy[a0, c1]
                        x3, y3 = cx[a0, c0], cy[a0, c0]
                        if (np.isnan(x0) or np.isnan(y0) or np.isnan(x1) or np.isnan(y1) or np.isnan(x2)
                                or np.isnan(y2) or np.isnan(x3) or np.isnan(y3)):
                            continue
                    else:
                        if not _drop(i, j, xmin, ymin, shared, cx, cy, pixmap, dh, ny, nx, xs, ys):
                            continue
                        x0, x1, x2, x3 = xs[0], xs[1], xs[2], xs[3]
                        y0, y1, y2, y3 = ys[0], ys[1], ys[2], ys[3]
                    jj0 = max(_fortran_round(min(min(y0, y1), min(y2, y3))), 0, b0)
                    jj1 = min(_fortran_round(max(max(y0, y1), max(y2, y3))), my - 1, b1)
                    if jj0 > jj1:
                        continue
                    jaco = 0.5 * ((x1 - x3) * (y0 - y2) - (x0 - x2) * (y1 - y3))
                    if jaco < 0.0:
                        jaco = -jaco
                        x1, x3 = x3, x1
                        y1, y3 = y3, y1
                    s0 = _slope(x0, y0, x1, y1)
                    s1 = _slope(x1, y1, x2, y2)
                    s2 = _slope(x2, y2, x3, y3)
                    s3 = _slope(x3, y3, x0, y0)
                    d = np.float32(data[uj, ui] * scale)
                    if nextra == 3:
                        v0, v1, v2 = extra[0][uj, ui], extra[1][uj, ui], extra[2][uj, ui]
                        if sqrt_extra:
                            v0, v1, v2 = np.sqrt(v0), np.sqrt(v1), np.sqrt(v2)
                        e0, e1, e2 = np.float32(v0 * scale), np.float32(v1 * scale), np.float32(v2 * scale)
                    else:
                        for e in range(nextra):
                            v = extra[e][uj, ui]
                            if sqrt_extra:
                                v = np.sqrt(v)
                            dex[e] = np.float32(v * scale)
                        e0 = e1 = e2 = np.float32(0.0)
                    ii0 = max(_fortran_round(min(min(x0, x1), min(x2, x3))), 0)
                    ii1 = min(_fortran_round(max(max(x0, x1), max(x2, x3))), mx - 1)
                    ncol = ii1 - ii0 + 1
                    if 4 * ncol > tyl.size:
                        n4 = 4 * ncol
                        tyl, tyr, twd, tt = np.empty(n4), np.empty(n4), np.empty(n4), np.empty(n4)
                    for c in range(ncol):
                        # the four edges' parts in column c: lanes 4c..4c+3 of the left y, right y, signed width
                        xl = (ii0 + c) - 0.5
                        xr = (ii0 + c) + 0.5
                        k = np.uint64(4 * c)
                        _, tyl[k], tyr[k], twd[k] = _edge_part(x0, y0, x1, s0, xl, xr)
                        _, tyl[k + 1], tyr[k + 1], twd[k + 1] = _edge_part(x1, y1, x2, s1, xl, xr)
                        _, tyl[k + 2], tyr[k + 2], twd[k + 2] = _edge_part(x2, y2, x3, s2, xl, xr)
                        _, tyl[k + 3], tyr[k + 3], twd[k + 3] = _edge_part(x3, y3, x0, s3, xl, xr)
                    for jj in range(jj0, jj1 + 1):
                        yb = jj - 0.5
                        for k in range(4 * ncol):      # branch-free, a loop LLVM vectorizes (4 doubles a step)
                            uk = np.uint64(k)
                            tt[uk] = _edge_term(yb, tyl[uk], tyr[uk], twd[uk])
                        for c in range(ncol):
                            ii = ii0 + c
                            k = np.uint64(4 * c)
                            area = ((tt[k] + tt[k + 1]) + tt[k + 2]) + tt[k + 3]
                            dover = abs(area)
                            if dover > 0.0:
                                dow = np.float32(dover / jaco * w)
                                q = np.uint64(jj * mx + ii)     # flat, non-negative: no wraparound code
                                if has_ctx and dow > 0.0:
                                    ctx1[q] |= bit
                                if dow == 0.0:
                                    continue
                                vc = wht1[q]
                                tot = np.float64(np.float32(vc + dow))
                                if vc == 0.0:
                                    img1[q] = d
                                    if nextra == 3:
                                        ex1[0, q] = e0
                                        ex1[1, q] = e1
                                        ex1[2, q] = e2
                                    else:
                                        for e in range(nextra):
                                            ex1[e, q] = dex[e]
                                else:   # float32 numerator, double quotient: drizzle's arithmetic
                                    img1[q] = np.float32(img1[q] * vc + dow * d) / tot
                                    if nextra == 3:
                                        ex1[0, q] = np.float32(ex1[0, q] * vc + dow * e0) / tot
                                        ex1[1, q] = np.float32(ex1[1, q] * vc + dow * e1) / tot
                                        ex1[2, q] = np.float32(ex1[2, q] * vc + dow * e2) / tot
                                    else:
                                        for e in range(nextra):
                                            ex1[e, q] = np.float32(ex1[e, q] * vc + dow * dex[e]) / tot
                                wht1[q] = np.float32(tot)


# --- drizzle's scan limits: which input pixels its square kernel processes at all -----------------

#: drizzle's tolerance of the pixel-map inversion and of the scan limits, input px
_INV_ERR = 0.03
_ATOL = 1.0e-12
_TINY = 1.0e3 * 2.2250738585072014e-308


def _cross(a, b):
    return a[0] * b[1] - a[1] * b[0]


def _ccw(poly):
    """Return the polygon counter-clockwise: reversed when its first two vertices turn clockwise about its mean."""
    if len(poly) < 3:
        return poly
    mx = 0.0
    my = 0.0
    for v in poly:
        mx += v[0]
        my += v[1]
    mx /= len(poly)
    my /= len(poly)
    a = (poly[0][0] - mx, poly[0][1] - my)
    b = (poly[1][0] - mx, poly[1][1] - my)
    return poly if _cross(a, b) >= 0.0 else poly[::-1]


def _same(a, b):
    return abs(a[0] - b[0]) < _ATOL and abs(a[1] - b[1]) < _ATOL


def _push(poly, v):
    if poly and (_same(poly[-1], v) or _same(poly[0], v)):
        return
    if len(poly) < 8:
        poly.append(v)


def _clip(poly, window):
    """Clip ``poly`` to the convex ``window`` (Sutherland-Hodgman, both made counter-clockwise).

    A vertex is kept when strictly left of a window edge; repeated and collinear vertices are dropped.
    """
    poly = _ccw(poly)
    window = _ccw(window)
    out = list(poly)
    for k in range(len(window)):
        w0, w1 = window[k - 1], window[k]
        dw = (w1[0] - w0[0], w1[1] - w0[1])
        src, out = out, []
        for m in range(len(src)):
            p0, p1 = src[m - 1], src[m]
            dp = (p1[0] - p0[0], p1[1] - p0[1])
            in0 = (_cross(p0, w0) - _cross(w1, w0) - _cross(p0, w1)) > 0.0
            in1 = (_cross(p1, w0) - _cross(w1, w0) - _cross(p1, w1)) > 0.0
            if in0 != in1:
                d = _cross(dp, dw)
                a = _cross(p1, p0)
                b = _cross(w1, w0)
                _push(out, ((a * dw[0] - b * dp[0]) / d, (a * dw[1] - b * dp[1]) / d))
                if in1:
                    _push(out, p1)
            elif in0:
                _push(out, p1)
    out = _ccw(out)
    if len(out) < 3:
        return out
    kept = []
    n = len(out)
    for k in range(n):
        prev, cur, nxt = out[k - 1], out[k], out[(k + 1) % n]
        dp = (nxt[0] - prev[0], nxt[1] - prev[1])
        dq = (cur[0] - prev[0], cur[1] - prev[1])
        if abs(_cross(dp, dq)) > _TINY and math.sqrt(dp[0] * dp[0] + dp[1] * dp[1]) > _ATOL:
            kept.append(cur)
    return kept


def _invert(fwd, xo, yo, box):
    """Find the input position mapped to output (xo, yo) by a golden-section search over the input box.

    Drizzle's inversion, to _INV_ERR (the box's width and height start the search); None when
    the map is undefined on the way or it does not converge in 50 steps.
    """
    gr = 0.6180339887498948482
    x0, x1, y0, y1 = box
    dx, dy = x1 - x0, y1 - y0
    for _ in range(50):
        if not (dx > _INV_ERR or dy > _INV_ERR):
            return 0.5 * (x0 + x1), 0.5 * (y0 + y1)
        xa = x1 - gr * dx
        xb = x0 + gr * dx
        ya = y1 - gr * dy
        yb = y0 + gr * dy
        d = []
        for px, py in ((xa, ya), (xa, yb), (xb, ya), (xb, yb)):
            ox, oy = fwd(px, py)
            if math.isnan(ox) or math.isnan(oy):
                return None
            ex, ey = ox - xo, oy - yo
            d.append(ex * ex + ey * ey)
        d11, d12, d21, d22 = d
        if d11 < d12 and d11 < d21 and d11 < d22:
            x1, y1 = xb, yb
        elif d12 < d11 and d12 < d21 and d12 < d22:
            x1, y0 = xb, ya
        elif d21 < d11 and d21 < d12 and d21 < d22:
            x0, y1 = xa, yb
        else:
            x0, y0 = xa, ya
        dx = x1 - x0
        dy = y1 - y0
    return None                 # 50 steps: drizzle calls it a failure even when the last one converged


def _edge(v1, v2, side):
    """(v1, v2, slope dx/dy, x at y=0 moved by half a pixel (and its slope) inward): drizzle's scan edge."""
    m = (v2[0] - v1[0]) / (v2[1] - v1[1])
    b = (v1[0] * v2[1] - v1[1] * v2[0]) / (v2[1] - v1[1])
    return v1, v2, m, b - math.copysign(0.5 + 0.5 * abs(m), side)


def scan_limits(fwd, bounds, out_shape):
    """Input columns drizzle's square kernel processes in each input row (its "image scanner").

    Drizzle (``init_image_scanner``/``get_scanline_limits`` of the drizzle package) maps the
    corners of the input box (``bounds`` +- 0.5) to the output, joins them by straight lines,
    clips that quadrilateral to the output frame, maps the clipped polygon's vertices back to
    the input (a golden-section search, to 0.03 px) and processes in each input row only the
    pixels lying wholly inside that polygon (to 0.03 px): an input pixel whose footprint
    crosses the output's edge is skipped, even though part of its drop lands in the output.

    Parameters
    ----------
    fwd : callable
        ``fwd(x, y) -> (x_out, y_out)``, the bilinear pixel map at an input position.
    bounds : tuple of int
        (xmin, xmax, ymin, ymax), inclusive input range.
    out_shape : tuple of int
        (my, mx) of the output.

    Returns
    -------
    lo, hi : numpy.ndarray
        int64 (ymax - ymin + 1,): first and last input column processed in row ymin + r
        (``lo > hi``: none).
    """
    xmin, xmax, ymin, ymax = bounds
    my, mx = out_shape
    nrow = ymax - ymin + 1
    lo = np.ones(nrow, np.int64)
    hi = np.zeros(nrow, np.int64)
    box = [(xmin - 0.5, ymin - 0.5), (xmax + 0.5, ymin - 0.5), (xmax + 0.5, ymax + 0.5), (xmin - 0.5, ymax + 0.5)]
    poly = list(box)
    mapped = []
    for v in box:
        ox, oy = fwd(*v)
        if math.isnan(ox) or math.isnan(oy):
            mapped = None
            break
        mapped.append((ox, oy))
    if mapped is not None:
        frame = [(-0.5, -0.5), (mx - 0.5, -0.5), (mx - 0.5, my - 0.5), (-0.5, my - 0.5)]
        clipped = _clip(mapped, frame)
        if len(clipped) < 3:
            return lo, hi                                   # drizzle: an error, nothing added
        inv_box = (xmin - 0.5, xmax + 0.5, ymin - 0.5, ymax + 0.5)
        back = list(box) + [box[0]] * 4
        ok = True
        for k, v in enumerate(clipped):
            w = _invert(fwd, v[0], v[1], inv_box)
            if w is None:
                ok = False
                break
            back[k] = w
        # drizzle: on failure, the vertices inverted so far replace the box's (not reoriented)
        poly = _ccw(back[:len(clipped)]) if ok else back[:4]
    n = len(poly)
    if n < 3:
        return lo, hi
    ys = [v[1] for v in poly]
    kmin = 0
    for k in range(1, n):
        if ys[k] < ys[kmin]:
            kmin = k
    min_y = ys[kmin]
    i1, i2 = (kmin - 1) % n, (kmin + 1) % n
    min_r = i1 if ys[i1] < ys[i2] else i2
    min_l = kmin
    if ys[min_r] <= min_y * (1.0 + math.copysign(_ATOL, min_y)):
        if poly[min_l][0] > poly[min_r][0]:
            min_l, min_r = min_r, min_l
    else:
        min_r = min_l
    kmax = 0
    for k in range(1, n):
        if ys[k] > ys[kmax]:
            kmax = k
    max_y = ys[kmax]
    i1, i2 = (kmax - 1) % n, (kmax + 1) % n
    max_l = i1 if ys[i1] > ys[i2] else i2
    max_r = kmax
    if ys[max_l] >= max_y * (1.0 - math.copysign(_ATOL, max_y)):
        if poly[max_l][0] > poly[max_r][0]:
            max_l, max_r = max_r, max_l
    else:
        max_l = max_r
    if max_l > min_l:
        min_l += n
    left = []
    for k in range(min_l - max_l):
        a = (min_l - k) % n
        left.append(_edge(poly[a], poly[(a - 1) % n], -1.0))
    if max_r < min_r:
        max_r += n
    right = []
    for k in range(max_r - min_r):
        a = (min_r + k) % n
        right.append(_edge(poly[a], poly[(a + 1) % n], 1.0))
    j0 = max(0, int(min_y + 0.5 + 2.0 * _INV_ERR))
    j1 = min(ymax, int(max_y + 2.0 * _INV_ERR))
    il = ir = 0
    for j in range(j0, j1 + 1):
        if j < 0 or j > ymax:
            continue
        pyb, pyt = j - 0.5, j + 0.5
        if pyt <= min_y or pyb >= max_y + 1:
            continue
        done = False
        while pyb > left[il][1][1]:
            if il == len(left) - 1:
                done = True
                break
            il += 1
        if not done:
            while pyb > right[ir][1][1]:
                if ir == len(right) - 1:
                    done = True
                    break
                ir += 1
        if not done:
            xlb = left[il][2] * j + left[il][3] - _INV_ERR
            xrb = right[ir][2] * j + right[ir][3] + _INV_ERR
            while pyt > left[il][1][1] + 0.5 + _INV_ERR:
                if il == len(left) - 1:
                    done = True
                    break
                il += 1
        if not done:
            while pyt > right[ir][1][1] + 0.5 + _INV_ERR:
                if ir == len(right) - 1:
                    done = True
                    break
                ir += 1
        if done:
            break                                           # the scan ended: no further rows
        xlt = left[il][2] * j + left[il][3] - _INV_ERR
        xrt = right[ir][2] * j + right[ir][3] + _INV_ERR
        if xmax >= xmin:
            xlb, xlt = max(xlb, xmin), max(xlt, xmin)
            xrb, xrt = min(xrb, xmax), min(xrt, xmax)
        if xlt >= xrt:
            if xlb >= xrb:
                continue
            a, b = xlb, xrb
        elif xlb >= xrb:
            a, b = xlt, xrt
        else:
            a, b = max(xlb, xlt), min(xrb, xrt)
        if j >= ymin:
            lo[j - ymin] = _cround(a)
            hi[j - ymin] = _cround(b)
    return lo, hi


def _scan_rows(pixmap, corners, bounds, out_shape):
    """Return :func:`scan_limits` for :func:`drizzle_square`, over the whole ``bounds`` rows.

    From the pixel map (its range shrunk to the box of its mapped pixels, as drizzle does) or,
    without it, bilinear in the corner map.
    """
    xmin, xmax, ymin, ymax = bounds
    if pixmap is not None:
        ny, nx = pixmap.shape[0], pixmap.shape[1]
        good = ~np.isnan(pixmap[ymin:ymax + 1, xmin:xmax + 1]).any(axis=2)
        rows = np.flatnonzero(good.any(axis=1))
        cols = np.flatnonzero(good.any(axis=0))
        if rows.size == 0:
            return np.ones(ymax - ymin + 1, np.int64), np.zeros(ymax - ymin + 1, np.int64)
        box = (xmin + int(cols[0]), xmin + int(cols[-1]), ymin + int(rows[0]), ymin + int(rows[-1]))

        def fwd(x, y):
            return _interp(pixmap, x, y, ny, nx)
    else:
        box = bounds
        gy, gx = ymax - ymin + 2, xmax - xmin + 2
        if callable(corners):
            got = {}

            def rows(j0):
                """Corner rows j0 and j0 + 1, from the block of ``_SCAN_ROWS`` pixel rows holding j0 (made once)."""
                c = j0 // _SCAN_ROWS
                if c not in got:
                    got[c] = corners(ymin + c * _SCAN_ROWS, min(ymin + (c + 1) * _SCAN_ROWS - 1, ymax))
                bx, by = got[c]
                k = j0 - c * _SCAN_ROWS
                return bx[k:k + 2], by[k:k + 2]
        else:
            def rows(j0):
                return corners[0][j0:j0 + 2], corners[1][j0:j0 + 2]

        def fwd(x, y):
            u = x - (xmin - 0.5)
            v = y - (ymin - 0.5)
            i0 = min(max(int(u), 0), gx - 2)
            j0 = min(max(int(v), 0), gy - 2)
            fx, fy = u - i0, v - j0
            w = ((1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy)
            cx, cy = rows(j0)
            return (cx[0, i0] * w[0] + cx[0, i0 + 1] * w[1] + cx[1, i0] * w[2] + cx[1, i0 + 1] * w[3],
                    cy[0, i0] * w[0] + cy[0, i0 + 1] * w[1] + cy[1, i0] * w[2] + cy[1, i0 + 1] * w[3])
    lo, hi = scan_limits(fwd, box, out_shape)
    full_lo = np.ones(ymax - ymin + 1, np.int64)
    full_hi = np.zeros(ymax - ymin + 1, np.int64)
    full_lo[box[2] - ymin:box[3] - ymin + 1] = lo
    full_hi[box[2] - ymin:box[3] - ymin + 1] = hi
    return full_lo, full_hi


def _cround(x):
    """C's round(): half away from zero."""
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))


#: input pixels per row segment whose reach in output rows is found before drizzling
SEGMENT = 64
#: output row bands per thread (more bands: finer load balance, more rescanning)
BANDS_PER_THREAD = 8
#: input rows drizzled per block when the corners are made block by block (``corners`` callable)
CORNER_BLOCK_ROWS = 512
#: input rows per block of corners made for the scan limits (``corners`` callable)
_SCAN_ROWS = 16


def _reach_bands(lo, hi, my, nbands) -> np.ndarray:
    """Band edges over only the output rows a block's segments can reach (``lo``/``hi``).

    A block of input rows reaches a narrow stripe of the output: bands over the whole output
    would leave all but one or two tasks idle. The kernel's result does not depend on where
    the bands are cut (each output pixel gets its drops in drizzle's order from one task), so
    narrower bands change no result. An empty array when nothing is reached.
    """
    rmin, rmax = max(int(lo.min()), 0), min(int(hi.max()), my - 1)
    if rmin > rmax:
        return np.empty(0, np.int64)
    n = max(1, min(nbands, rmax - rmin + 1))
    return np.linspace(rmin, rmax + 1, n + 1).round().astype(np.int64)


def corner_map(pixmap, bounds) -> tuple[np.ndarray, np.ndarray]:
    """Output positions of the pixel corners of an input range, as drizzle interpolates them.

    Parameters
    ----------
    pixmap : numpy.ndarray
        float64 (ny, nx, 2), output x, y of each input pixel centre (NaN: unmapped).
    bounds : tuple of int
        (xmin, xmax, ymin, ymax), inclusive input range.

    Returns
    -------
    cx, cy : numpy.ndarray
        float64 (ymax - ymin + 2, xmax - xmin + 2): output x and y of the corner
        (xmin + i - 0.5, ymin + j - 0.5), bilinear in the pixel map (extrapolated from the
        nearest 2x2 cell at the edges), for :func:`drizzle_square` with ``pixfrac`` 1 (then
        the pixel map itself is no longer needed and may be freed first).
    """
    xmin, xmax, ymin, ymax = (int(v) for v in bounds)
    cx = np.empty((ymax - ymin + 2, xmax - xmin + 2))
    cy = np.empty_like(cx)
    _corner_map(np.ascontiguousarray(pixmap, np.float64), xmin, xmax, ymin, ymax, cx, cy)
    return cx, cy


def drizzle_square(data, extra, weight, pixmap, bounds, pixfrac, out_img, out_extra, out_wht, out_ctx=None,
                   bit=1, iscale=1.0, corners=None, sqrt_extra=False, init_fill=None):
    """Drizzle one image and its companions with the square kernel, accumulating in place.

    Parameters
    ----------
    data : numpy.ndarray
        float32 (ny, nx), the image (e.g. SCI, MJy/sr).
    extra : numpy.ndarray or sequence of numpy.ndarray
        float32 (k, ny, nx) or k arrays (ny, nx): companion arrays drizzled with the same
        overlaps and weights (jwst: the square roots of the three variances); k may be 0.
    weight : numpy.ndarray
        float32 (ny, nx), the input weights (0: not used).
    pixmap : numpy.ndarray or None
        float64 (ny, nx, 2), output x, y of each input pixel centre (NaN: unmapped); may be
        None when ``corners`` are given and ``pixfrac`` is 1.
    bounds : tuple of int
        (xmin, xmax, ymin, ymax), inclusive input range drizzled.
    pixfrac : float
        Drop size, fraction of an input pixel.
    out_img, out_wht : numpy.ndarray
        float32 (my, mx): running weighted mean and summed weights, updated in place
        (out_img starts as the fill value, out_wht as 0).
    out_extra : numpy.ndarray
        float32 (k, my, mx), updated in place like ``out_img``.
    out_ctx : numpy.ndarray, optional
        int32 (my, mx) context plane: ``bit`` is set where the image adds weight.
    bit : int
        The image's context bit.
    iscale : float
        Intensity scale applied to the input values.
    corners : tuple of numpy.ndarray or callable, optional
        ``corner_map(pixmap, bounds)``, for ``pixfrac`` 1 (computed here when not given); or
        ``corners(j0, j1)`` returning ``corner_map(pixmap, (xmin, xmax, j0, j1))`` for input rows
        ``j0..j1`` (inclusive, inside ``bounds``): the input is then drizzled in blocks of
        ``CORNER_BLOCK_ROWS`` rows, one block's corners at a time, in drizzle's order (the
        result is the one of the whole corner map, bit for bit; the whole map, 67 MB float64
        for a full frame, never exists).
    sqrt_extra : bool
        Drizzle the square roots of the companion arrays (float32 ``sqrt``, as
        ``numpy.sqrt`` of the arrays) instead of the arrays.
    init_fill : float, optional
        Fresh outputs: ``out_img`` is first set to this value and ``out_extra`` to NaN (each
        row band by the task that drizzles it, in parallel), so they may be given
        uninitialized (``numpy.empty``); the result is that of ``numpy.full`` outputs.

    Raises
    ------
    ValueError
        If neither a pixel map nor, for ``pixfrac`` 1, the corners are given.
    """
    outs = [out_img, out_extra, out_wht] + ([] if out_ctx is None else [out_ctx])
    if not all(o.flags.c_contiguous for o in outs):       # the kernel indexes the outputs flat
        work = [np.ascontiguousarray(o) for o in outs]
        _drizzle_square(data, extra, weight, pixmap, bounds, pixfrac, *work[:3], work[3] if len(work) > 3 else None,
                        bit, iscale, corners, sqrt_extra, init_fill)
        for o, w in zip(outs, work, strict=True):
            if w is not o:
                o[...] = w
        return
    _drizzle_square(data, extra, weight, pixmap, bounds, pixfrac, out_img, out_extra, out_wht, out_ctx, bit, iscale,
                    corners, sqrt_extra, init_fill)


def _drizzle_square(data, extra, weight, pixmap, bounds, pixfrac, out_img, out_extra, out_wht, out_ctx, bit, iscale,
                    corners, sqrt_extra, init_fill):
    """:func:`drizzle_square` on C-contiguous outputs."""
    ctx = out_ctx if out_ctx is not None else np.zeros((0, 0), np.int32)
    xmin, xmax, ymin, ymax = (int(v) for v in bounds)
    if xmax < xmin or ymax < ymin:
        if init_fill is not None:
            out_img[...] = init_fill
            out_extra[...] = np.nan
        return
    shared = float(pixfrac) == 1.0     # neighbouring pixels share corners: map each corner once
    if pixmap is not None:
        pixmap = np.ascontiguousarray(pixmap, np.float64)
    slo, shi = _scan_rows(pixmap, corners, (xmin, xmax, ymin, ymax), out_img.shape)
    blocks = shared and callable(corners)
    if blocks:
        pixmap = np.full((1, 1, 2), np.nan)      # not read
    elif shared:
        cx, cy = corners if corners is not None else corner_map(pixmap, bounds)
        pixmap = np.full((1, 1, 2), np.nan)      # not read
    elif pixmap is None:
        raise ValueError("drizzle_square: a pixel map is needed for pixfrac != 1")
    else:
        cx = cy = np.empty((1, 1))
    weight = np.ascontiguousarray(weight, np.float32)
    nseg = (xmax - xmin) // SEGMENT + 1
    my = out_img.shape[0]
    nbands = max(1, min(my, numba.get_num_threads() * BANDS_PER_THREAD))
    edges = np.linspace(0, my, nbands + 1).round().astype(np.int64)
    planes = tuple(np.ascontiguousarray(e, np.float32) for e in extra)
    nextra = len(planes)
    if nextra < 3:      # typed placeholders, not read: the kernel indexes planes 0-2 statically
        planes = planes + (np.zeros((1, 1), np.float32),) * (3 - nextra)
    data = np.ascontiguousarray(data, np.float32)
    if blocks:
        # blocks of rows in order, each one's drops in drizzle's order: every output pixel gets them in the
        # order of the whole range; a block's bands cover only the output rows it reaches (_reach_bands)
        if init_fill is not None:      # first the outputs initialized, by every band's task (no input row)
            empty = np.empty((0, nseg), np.int32)
            _square_kernel(data, planes, nextra, bool(sqrt_extra), weight, pixmap, xmin, xmax, ymin, ymin - 1, 1.0,
                           float(iscale), out_img, out_extra, out_wht, ctx, np.int32(bit), True,
                           np.empty((1, 1)), np.empty((1, 1)), SEGMENT, empty, empty, edges, slo[:0], shi[:0], True,
                           np.float32(init_fill))
        for y0 in range(ymin, ymax + 1, CORNER_BLOCK_ROWS):
            y1 = min(y0 + CORNER_BLOCK_ROWS - 1, ymax)
            cx, cy = corners(y0, y1)
            lo = np.empty((y1 - y0 + 1, nseg), np.int32)
            hi = np.empty_like(lo)
            bslo, bshi = slo[y0 - ymin:y1 - ymin + 1], shi[y0 - ymin:y1 - ymin + 1]
            _segment_rows_shared(cy, xmin, xmax, y0, y1, SEGMENT, lo, hi, bslo, bshi)
            block_edges = _reach_bands(lo, hi, my, nbands)
            if block_edges.size < 2:
                continue                 # no drop of this block reaches the output
            with numba.parallel_chunksize(1):
                _square_kernel(data, planes, nextra, bool(sqrt_extra), weight, pixmap, xmin, xmax, y0, y1, 1.0,
                               float(iscale), out_img, out_extra, out_wht, ctx, np.int32(bit), True, cx, cy,
                               SEGMENT, lo, hi, block_edges, bslo, bshi, False, np.float32(np.nan))
            del cx, cy
        return
    lo = np.empty((ymax - ymin + 1, nseg), np.int32)
    hi = np.empty_like(lo)
    if shared:
        _segment_rows_shared(cy, xmin, xmax, ymin, ymax, SEGMENT, lo, hi, slo, shi)
    else:
        _segment_rows(weight, pixmap, xmin, xmax, ymin, ymax, 0.5 * float(pixfrac), shared, cx, cy, SEGMENT, lo, hi,
                      slo, shi)
    # bands handed out one at a time (dynamic): a thread that gets less CPU on a shared machine does less
    with numba.parallel_chunksize(1):
        _square_kernel(data, planes, nextra, bool(sqrt_extra), weight,
                       pixmap, xmin, xmax, ymin, ymax, float(pixfrac), float(iscale), out_img, out_extra, out_wht,
                       ctx, np.int32(bit), shared, cx, cy, SEGMENT, lo, hi, edges, slo, shi, init_fill is not None,
                       np.float32(np.nan if init_fill is None else init_fill))
