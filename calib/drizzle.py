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

Edges: drizzle first limits the input pixels it scans to a polygon (the input bounding
box's mapped corners joined by straight lines, clipped to the output frame, mapped back,
its rows truncated and its columns rounded), so where the output frame cuts the input
footprint it skips some input pixels whose drops still overlap the output's outermost
column or row; here every input pixel within the bounds adds its overlap. Measured against
drizzle's C kernel on the same pixel map: NIRCam SUB640 bit-identical (SCI, WHT, CON,
variances); NIRISS SUB256 differs at the output's last column (258 of 65,656 weighted
pixels), MIRI BRIGHTSKY at its edges (121 of 261,697), a NIRCam full frame in a corner of
the last rows (318 of 4.2 million); elsewhere bit-identical.
"""
from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["drizzle_square"]


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
def _segment(x0, y0, x1, y1, xl, xr, yb):
    """Signed integral over x in [xl, xr] of clamp(y(x) - yb, 0, 1) along the segment (x0, y0)-(x1, y1)."""
    if x0 == x1:
        return 0.0
    if x0 < x1:
        a, b, sign = max(x0, xl), min(x1, xr), 1.0
    else:
        a, b, sign = max(x1, xl), min(x0, xr), -1.0
    if a >= b:
        return 0.0
    slope = (y1 - y0) / (x1 - x0)
    u = y0 + slope * (a - x0) - yb
    v = y0 + slope * (b - x0) - yb
    if abs(v - u) < 1e-12:
        mean = min(max(u, 0.0), 1.0)
    else:
        mean = (_ramp(v) - _ramp(u)) / (v - u)
    return sign * (b - a) * mean


@numba.njit(cache=True, inline="always")
def _overlap(ii, jj, xs, ys):
    """Area of the quadrilateral (xs, ys) inside output pixel (ii, jj) (the unit square about it).

    The sum over its edges of the signed area between each edge and the square's bottom,
    the edge's height clamped to the square.
    """
    xl, xr, yb = ii - 0.5, ii + 0.5, jj - 0.5
    area = (_segment(xs[0], ys[0], xs[1], ys[1], xl, xr, yb) + _segment(xs[1], ys[1], xs[2], ys[2], xl, xr, yb)
            + _segment(xs[2], ys[2], xs[3], ys[3], xl, xr, yb) + _segment(xs[3], ys[3], xs[0], ys[0], xl, xr, yb))
    return abs(area)


@numba.njit(cache=True)
def _square_kernel(data, extra, weight, pixmap, xmin, xmax, ymin, ymax, pixfrac, iscale,
                   out_img, out_extra, out_wht, out_ctx, bit):
    ny, nx = data.shape
    my, mx = out_img.shape
    nextra = extra.shape[0]
    dh = 0.5 * pixfrac
    xs = np.empty(4)
    ys = np.empty(4)
    xin = np.empty(4)
    yin = np.empty(4)
    scale = np.float32(iscale)
    dex = np.empty(nextra, np.float32)
    shared = pixfrac == 1.0             # neighbouring pixels share corners: map each corner once
    if shared:
        cx = np.empty((ymax - ymin + 2, xmax - xmin + 2))
        cy = np.empty((ymax - ymin + 2, xmax - xmin + 2))
        for cj in range(ymax - ymin + 2):
            for ci in range(xmax - xmin + 2):
                cx[cj, ci], cy[cj, ci] = _interp(pixmap, xmin + ci - 0.5, ymin + cj - 0.5, ny, nx)
    else:
        cx = np.empty((1, 1))
        cy = np.empty((1, 1))
    for j in range(ymin, ymax + 1):
        yin[0] = yin[1] = j + dh
        yin[2] = yin[3] = j - dh
        for i in range(xmin, xmax + 1):
            bad = False
            if shared:
                a, b = j - ymin, i - xmin
                xs[0], ys[0] = cx[a + 1, b], cy[a + 1, b]
                xs[1], ys[1] = cx[a + 1, b + 1], cy[a + 1, b + 1]
                xs[2], ys[2] = cx[a, b + 1], cy[a, b + 1]
                xs[3], ys[3] = cx[a, b], cy[a, b]
                for k in range(4):
                    if np.isnan(xs[k]) or np.isnan(ys[k]):
                        bad = True
            else:
                xin[0] = xin[3] = i - dh
                xin[1] = xin[2] = i + dh
                for k in range(4):
                    ox, oy = _interp(pixmap, xin[k], yin[k], ny, nx)
                    if np.isnan(ox) or np.isnan(oy):
                        bad = True
                        break
                    xs[k] = ox
                    ys[k] = oy
            if bad:
                continue
            jaco = 0.5 * ((xs[1] - xs[3]) * (ys[0] - ys[2]) - (xs[0] - xs[2]) * (ys[1] - ys[3]))
            if jaco < 0.0:
                jaco = -jaco
                xs[1], xs[3] = xs[3], xs[1]
                ys[1], ys[3] = ys[3], ys[1]
            d = np.float32(data[j, i] * scale)
            for e in range(nextra):
                dex[e] = np.float32(extra[e, j, i] * scale)
            w = np.float64(weight[j, i])
            jj0 = max(_fortran_round(ys.min()), 0)
            jj1 = min(_fortran_round(ys.max()), my - 1)
            ii0 = max(_fortran_round(xs.min()), 0)
            ii1 = min(_fortran_round(xs.max()), mx - 1)
            for jj in range(jj0, jj1 + 1):
                for ii in range(ii0, ii1 + 1):
                    dover = _overlap(ii, jj, xs, ys)
                    if dover > 0.0:
                        dow = np.float32(dover / jaco * w)
                        if out_ctx.shape[0] > 0 and dow > 0.0:
                            out_ctx[jj, ii] |= bit
                        if dow == 0.0:
                            continue
                        vc = out_wht[jj, ii]
                        tot = np.float64(np.float32(vc + dow))
                        if vc == 0.0:
                            out_img[jj, ii] = d
                            for e in range(nextra):
                                out_extra[e, jj, ii] = dex[e]
                        else:           # float32 numerator, double quotient: drizzle's arithmetic
                            out_img[jj, ii] = np.float32(out_img[jj, ii] * vc + dow * d) / tot
                            for e in range(nextra):
                                out_extra[e, jj, ii] = np.float32(out_extra[e, jj, ii] * vc + dow * dex[e]) / tot
                        out_wht[jj, ii] = np.float32(tot)


def drizzle_square(data, extra, weight, pixmap, bounds, pixfrac, out_img, out_extra, out_wht, out_ctx=None,
                   bit=1, iscale=1.0):
    """Drizzle one image and its companions with the square kernel, accumulating in place.

    Parameters
    ----------
    data : numpy.ndarray
        float32 (ny, nx), the image (e.g. SCI, MJy/sr).
    extra : numpy.ndarray
        float32 (k, ny, nx): companion arrays drizzled with the same overlaps and weights
        (jwst: the square roots of the three variances); k may be 0.
    weight : numpy.ndarray
        float32 (ny, nx), the input weights (0: not used).
    pixmap : numpy.ndarray
        float64 (ny, nx, 2), output x, y of each input pixel centre (NaN: unmapped).
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
    """
    ctx = out_ctx if out_ctx is not None else np.zeros((0, 0), np.int32)
    xmin, xmax, ymin, ymax = (int(v) for v in bounds)
    _square_kernel(np.ascontiguousarray(data, np.float32), np.ascontiguousarray(extra, np.float32),
                   np.ascontiguousarray(weight, np.float32), np.ascontiguousarray(pixmap, np.float64),
                   xmin, xmax, ymin, ymax, float(pixfrac), float(iscale), out_img, out_extra, out_wht, ctx,
                   np.int32(bit))
