"""skymatch: sky levels of the members of a Level-3 imaging association.

As jwst's skymatch step does (jwst documentation "skymatch"), with stcal's sky matching
(``stcal.skymatch``, which jwst's step calls): each member (or each exposure group of
members, by the association library's ``group_indices``) becomes a ``SkyImage`` of its
SCI array, its good-pixel mask (DQ without the ``dqbits`` "bad" bits, and finite), its
gwcs forward and inverse transforms and the clipped sky statistic of the parameters;
``skymatch`` then computes the sky of each ("local", "global") or the differences of the
skies in their overlaps ("match", the default, with ``match_down``). The level is written
to ``meta.background`` (``level``, ``method``, ``subtracted``) and, with ``subtract``, taken
from SCI. Units: SCI's (MJy/sr).

"match" measures every member in its overlap with every other: twice per pair, quadratic in
the members. Each of those measurements is made cheap, with the same values bit for bit:
the statistic (stcal's ``SkyStats``, i.e. stsci.imagestats' clipped mean/mode) is
:class:`SkyStatistic`, compiled, its float64 sums vectorized and certified against the
sequential sums imagestats makes; the overlap's pixels are gathered by :func:`overlap_values`
from the rows the overlap polygon reaches (gwcs's scan-line fill compiled as
:func:`scan_polygon`) instead of full-frame masks and copies; the inverse WCS is built once
per member (:func:`_inverse`). stcal still drives the matching (overlaps on the sphere, the
linear system of sky differences).
"""
from __future__ import annotations

import numba
import numpy as np

from calib.errors import InputError
from calib.params import SUPPORT_DEFAULT_ONLY, SUPPORT_IGNORED, Param
from calib.step import StepSpec

__all__ = ["STEP", "match_sky", "scan_polygon"]

#: gwcs.region's tolerance of a zero determinant (an edge parallel to the scan line)
_INTERSECT_ATOL = 1e2 * np.finfo(float).eps
#: float64's unit roundoff (bounds of summation error)
_UNIT_ROUNDOFF = 2.0 ** -53
#: C's ``1.0f - FLT_EPSILON``
_ONE_BELOW = np.float32(1.0) - np.finfo(np.float32).eps


@numba.njit(cache=True)
def _polygon_spans(vx, vy, bx, by, bw, bh, shiftx, shifty, ny, nx):
    """Return gwcs's scan-line fill as (row, start, stop) spans, in the order gwcs fills them."""
    ne = vx.size - 1
    active = np.zeros(ne, np.bool_)
    xs = np.empty(ne, np.int64)
    cap = max(bh + 1, 0) * (ne // 2 + 1)
    rows, starts, stops = np.empty(cap, np.int64), np.empty(cap, np.int64), np.empty(cap, np.int64)
    n = 0
    scline = bh + by
    for y in range(by, scline + 1):
        if y < scline:
            for e in range(ne):             # gwcs's update_AET: join at ymin, leave at ymax
                y0, y1 = vy[e], vy[e + 1]
                if y0 != y1 and min(y0, y1) == y and not active[e]:
                    active[e] = True
            for e in range(ne):
                if active[e] and max(vy[e], vy[e + 1]) == y:
                    active[e] = False
        if bw <= 0:
            continue
        k = 0
        for e in range(ne):
            if not active[e]:
                continue
            u0, u1 = vx[e + 1] - vx[e], vy[e + 1] - vy[e]
            d = u0 * 0 - u1 * bw            # _det(u, v) with v = (bw, 0)
            if abs(d) < _INTERSECT_ATOL:
                x = np.float64(vx[e])
            else:
                t = np.float64(bw * (vy[e] - y)) / np.float64(d)     # _det(v, w) / D
                x = t * u0 + vx[e]
            xs[k] = int(np.ceil(x))
            k += 1
        ysh = y + shifty
        if ysh < 0 or ysh >= ny:
            continue
        xv = np.sort(xs[:k])
        for p in range(k // 2):
            x0 = max(0, xv[2 * p] + shiftx)
            stop = min(xv[2 * p + 1] + shiftx, nx - 1) + 1
            if stop < 0:                    # gwcs fills data[y][x0:stop]: a negative stop counts from the end
                stop = max(stop + nx, 0)
            if stop > x0:
                rows[n], starts[n], stops[n] = ysh, x0, stop
                n += 1
    return rows[:n], starts[:n], stops[:n]


@numba.njit(cache=True)
def _scan_polygon(vx, vy, bx, by, bw, bh, shiftx, shifty, data):
    ny, nx = data.shape
    rows, starts, stops = _polygon_spans(vx, vy, bx, by, bw, bh, shiftx, shifty, ny, nx)
    for i in range(rows.size):
        for x in range(starts[i], stops[i]):
            data[rows[i], x] = True


@numba.njit(cache=True)
def _gather_spans(rows, starts, stops, bits, swap, good):
    """Gather the float32 words of ``bits`` where ``good`` along disjoint spans in row-major order.

    Returns (words, True), or (empty, False) when two spans of a row overlap or go backwards
    (then the pixel set is not a concatenation of the spans: the mask path is taken).
    """
    total = 0
    for i in range(rows.size):
        if i > 0 and rows[i] == rows[i - 1] and starts[i] < stops[i - 1]:
            return np.empty(0, np.uint32).view(np.float32), False
        total += stops[i] - starts[i]
    out = np.empty(total, np.uint32)
    k = 0
    for i in range(rows.size):
        r = rows[i]
        for x in range(starts[i], stops[i]):
            if good[r, x]:
                b = bits[r, x]
                if swap:
                    b = (((b & 0xFF) << 24) | ((b & 0xFF00) << 8) | ((b >> 8) & 0xFF00) | (b >> 24))
                out[k] = b
                k += 1
    return out[:k].view(np.float32), True


@numba.njit(cache=True, error_model="numpy")
def _clip_sums_exact(v, clipmin, clipmax):
    """Run imagestats' ``computeMean`` first loop as written: count, extremes, sequential float64 sum."""
    v0 = v[0]
    lo = clipmin if clipmin > v0 else v0        # imagestats' start values of the extremes
    hi = clipmax if clipmax < v0 else v0
    n = 0
    total = 0.0
    for x in v:
        if x >= clipmin and x <= clipmax:
            if x <= lo:
                lo = x
            if x >= hi:
                hi = x
            n += 1
            total += np.float64(x)
    return n, lo, hi, total


@numba.njit(cache=True, error_model="numpy", fastmath={"reassoc", "nnan", "nsz"})
def _clip_sums_fast(v, clipmin, clipmax):
    """Compute the same count and extremes, the sum (and the sum of magnitudes) in any order: vectorized.

    The extremes are taken on the values' bit patterns mapped to ordered integers (an integer
    min/max vectorizes, a float one with imagestats' start values does not). No NaN in ``v``.
    """
    bits = v.view(np.int32)
    top, bottom = np.int32(2 ** 31 - 1), np.int32(-(2 ** 31))
    lo, hi = top, bottom
    total = 0.0
    mag = 0.0
    n = 0
    for i in range(v.size):
        x = v[i]
        k = (x >= clipmin) & (x <= clipmax)
        y = np.float64(x) if k else 0.0
        total += y
        mag += abs(y)
        n += k
        b = bits[i]
        key = b ^ ((b >> 31) & np.int32(0x7FFFFFFF))     # float order as int32 order
        lo = min(lo, key if k else top)
        hi = max(hi, key if k else bottom)
    ext = np.empty(2, np.int32)
    ext[0] = lo ^ ((lo >> 31) & np.int32(0x7FFFFFFF))
    ext[1] = hi ^ ((hi >> 31) & np.int32(0x7FFFFFFF))
    vals = ext.view(np.float32)
    v0 = v[0]                                   # imagestats' start values of the extremes
    start_lo = clipmin if clipmin > v0 else v0
    start_hi = clipmax if clipmax < v0 else v0
    return n, (vals[0] if n > 0 and vals[0] < start_lo else start_lo), \
        (vals[1] if n > 0 and vals[1] > start_hi else start_hi), total, mag


@numba.njit(cache=True, error_model="numpy")
def _deviation_exact(v, lo, hi, mean):
    """Run imagestats' second loop as written: sequential float64 sum of the float32 squared deviations."""
    dev = 0.0
    for x in v:
        if x >= lo and x <= hi:
            d = x - mean                        # float32, as the C code
            dev += np.float64(d * d)
    return dev


@numba.njit(cache=True, error_model="numpy", fastmath={"reassoc"})
def _deviation_fast(v, lo, hi, mean):
    """Sum the same float32 terms in any order: vectorized."""
    dev = 0.0
    for i in range(v.size):
        x = v[i]
        d = x - mean
        dev += np.float64(d * d) if (x >= lo) & (x <= hi) else 0.0
    return dev


@numba.njit(cache=True, error_model="numpy")
def _clip_pass(v, clipmin, clipmax, fast):
    """One clipping iteration over ``v`` (float32): the values of imagestats' ``computeMean``.

    imagestats sums in order, in float64, and rounds the mean and the standard deviation to
    float32: a chain of dependent additions. With ``fast`` (no NaN in ``v``) the sums are
    vectorized instead (~3x faster), and certified: a sum in any order differs from the
    sequential one by at most ``2 (n-1) u sum|x|`` (u = 2**-53; both are within
    ``gamma_(n-1) sum|x|`` of the exact sum), doubled for the rounding of the bounds; when
    both ends of that interval give the same float32 (the roundings are monotonic), so does
    the sequential sum, else (and when an extreme is a zero, whose sign depends on the order)
    that loop is run as written. Returns imagestats' (n, mean, stddev, lo, hi) bit for bit,
    and the number of loops run as written.
    """
    if not fast:
        n, lo, hi, total = _clip_sums_exact(v, clipmin, clipmax)
        mean = np.float32(total / n)
        return n, mean, np.float32(np.sqrt(_deviation_exact(v, lo, hi, mean) / (n - 1))), lo, hi, 2
    exact = 0
    n, lo, hi, total, mag = _clip_sums_fast(v, clipmin, clipmax)
    tol = 4.0 * n * _UNIT_ROUNDOFF * mag
    mean = np.float32(total / n)
    if (lo == 0 or hi == 0 or mean != np.float32((total - tol) / n)
            or mean != np.float32((total + tol) / n)):
        n, lo, hi, total = _clip_sums_exact(v, clipmin, clipmax)
        mean = np.float32(total / n)
        exact += 1
    dev = _deviation_fast(v, lo, hi, mean)
    tol = 4.0 * n * _UNIT_ROUNDOFF * dev
    std = np.float32(np.sqrt(dev / (n - 1)))
    if std != np.float32(np.sqrt((dev - tol) / (n - 1))) or std != np.float32(np.sqrt((dev + tol) / (n - 1))):
        std = np.float32(np.sqrt(_deviation_exact(v, lo, hi, mean) / (n - 1)))
        exact += 1
    return n, mean, std, lo, hi, exact


@numba.njit(cache=True, error_model="numpy")
def _histogram(v, nbins, width, vmin, vmax):
    """Count as imagestats' ``populate1DHist``: float32 bin arithmetic, the last edge nudged down if needed."""
    counts = np.zeros(nbins, np.uint32)
    f = np.float32(1.0) / width
    edge = vmin + width * np.float32(nbins)
    closed = False
    if int(f * (edge - vmin)) == nbins:
        edge *= _ONE_BELOW
        closed = True
    if vmax > edge:
        vmax = edge
    lanes = np.zeros((4, nbins), np.uint32)     # four counters: a run of equal bins is not one dependency chain
    for i in range(v.size):
        x = v[i]
        if x >= vmin and (x < vmax or (closed and x == vmax)):
            k = int(f * (x - vmin))
            if k < nbins:                       # always (the nudged edge); C would write past the end
                lanes[i & 3, k] += 1
    for j in range(4):
        counts += lanes[j]
    return counts


class SkyStatistic:
    """The clipped sky statistic of ``stcal.skymatch.SkyStats`` (``stsci.imagestats.ImageStats``), compiled.

    Parameters
    ----------
    skystat : {"mode", "midpt", "mean", "median"}
        The statistic returned.
    lower, upper : float or None
        Pixel values outside are never used (None: the data's extremes). Units of the data.
    nclip : int
        Clipping iterations (>= 0).
    lsig, usig : float
        Lower and upper clipping limits, in standard deviations (> 0).
    binwidth : float
        Histogram bin width of mode and midpt, in standard deviations (> 0).

    Notes
    -----
    Called on a 1-D array of pixel values (cast to float32 as imagestats does), it returns
    ``(value, npix)`` equal to ``SkyStats(...)(data)``: the ``nclip + 1`` passes of imagestats'
    ``computeMean`` (a sequential float64 sum of the float32 values inside the clip limits,
    the mean rounded to float32, the standard deviation from a second float32 pass over the
    values between the extremes found; the limits recomputed as ``mean -/+ sig * stddev``
    bounded by ``lower``/``upper``, rounded to float32 as imagestats passes them to C), then
    its histogram (``binwidth`` standard deviations wide, float32 bin arithmetic) for the
    parabolic-peak mode or the interpolated midpoint, or numpy's median of the clipped
    values. The same order of summation makes the same float64 sums, so the values are
    bit-identical (tested against imagestats). Raises ValueError where imagestats does (no
    data, bad parameters, no pixel inside the limits), which stcal's ``calc_sky`` turns into
    "no sky".
    """

    def __init__(self, skystat: str = "mode", lower=None, upper=None, nclip: int = 5, lsig: float = 4.0,
                 usig: float = 4.0, binwidth: float = 0.1):
        if skystat not in ("mode", "midpt", "mean", "median"):
            raise ValueError(f"unknown sky statistic {skystat!r}")
        self.skystat, self.lower, self.upper = skystat, lower, upper
        self.nclip, self.lsig, self.usig, self.binwidth = nclip, lsig, usig, binwidth

    def __call__(self, data) -> tuple:
        v = np.ascontiguousarray(np.asanyarray(data).ravel(), dtype=np.float32)
        if v.size == 0:
            raise ValueError("no data for the sky statistic")
        if self.nclip < 0 or self.lsig <= 0.0 or self.usig <= 0.0 or self.binwidth <= 0.0:
            raise ValueError("nclip, lsigma, usigma and binwidth must be positive")
        vmin, vmax = np.minimum.reduce(v), np.maximum.reduce(v)
        lower, upper = self.lower, self.upper
        if lower is None:
            lower = vmin
        elif lower > vmax or (upper is not None and lower > upper):
            raise ValueError("no pixel above the lower limit")
        if upper is None:
            upper = vmax
        elif upper < vmin:
            raise ValueError("no pixel below the upper limit")
        clipmin, clipmax = lower, upper
        fast = not (np.isnan(vmin) or np.isnan(vmax))
        for it in range(self.nclip + 1):
            lim = np.float32(clipmin), np.float32(clipmax)
            n, mean, std, lo, hi, _ = _clip_pass(v, *lim, fast and not np.isnan(lim).any())
            if n <= 0:
                raise ValueError("no pixel inside the clipping limits")
            mean, std, lo, hi = float(mean), float(std), float(lo), float(hi)
            if it < self.nclip:         # Python's max/min as imagestats: a NaN limit keeps the bound
                clipmin = max(lower, mean - self.lsig * std)
                clipmax = min(upper, mean + self.usig * std)
        if self.skystat == "mean":
            return mean, n
        if self.skystat == "median":
            kept = v[(v <= clipmax) & (v >= clipmin)] if self.nclip > 0 else v
            return np.median(kept), n
        return self._from_histogram(v, std, lo, hi), n

    def _from_histogram(self, v, std, lo, hi):
        width = self.binwidth * std
        span = hi - lo
        tiny = 10.0 * np.finfo(np.float32).eps
        if width < tiny or abs(span) < tiny or width > span:
            nbins, step = 1, span
        else:
            nbins = int((hi - lo) / width) + 1
            step = float(hi - lo) / float(nbins - 1)
        step32, lo32 = np.float32(step), np.float32(lo)
        counts = _histogram(v, nbins, step32, lo32, lo32 + step32 * nbins)
        if self.skystat == "midpt":
            if counts.size <= 1:
                return counts[0]        # imagestats returns the single bin's count
            frac = np.cumsum(counts).astype(np.float32)
            frac = frac / frac[-1]
            k = np.flatnonzero(frac >= 0.5)[0]        # numpy int64: h1 is float64, as imagestats'
            h1 = lo + k * width
            rise = frac[k] if k == 0 else frac[k] - frac[k - 1]
            if rise == 0:
                return h1
            if k == 0:
                return h1 + 0.5 / rise * width
            return h1 + ((0.5 - frac[k - 1]) / rise * width)
        if nbins == 1:
            return lo + 0.5 * width
        if nbins == 2:
            if counts[0] == counts[1]:
                return lo + width
            return lo + (0.5 if counts[0] > counts[1] else 1.5) * width
        k = int(np.argmax(counts))
        if k == 0:
            return lo + 0.5 * width
        if k == nbins - 1:
            return lo + (nbins - 0.5) * width
        d1, d2 = int(counts[k]) - int(counts[k - 1]), int(counts[k]) - int(counts[k + 1])
        if d1 + d2 == 0:
            return lo + (k + 0.5) * width
        peak = k + 1 + (0.5 * (d1 - d2) / np.uint32(d1 + d2))
        return lo + ((peak - 0.5) * width)


def scan_polygon(polygon, data: np.ndarray) -> np.ndarray:
    """Set the pixels of a gwcs ``region.Polygon`` in a boolean mask, as its ``scan`` does.

    Parameters
    ----------
    polygon : gwcs.region.Polygon
        The polygon (its rounded, shifted vertices, bounding box and shifts as gwcs made them).
    data : numpy.ndarray
        bool (ny, nx), updated in place.

    Returns
    -------
    numpy.ndarray
        ``data``. gwcs's scan-line fill (the edges active on each scan line: joined at their
        lower end and dropped at their upper end, except on the last line; the crossings
        ``ceil(t u_x + x_start)`` with gwcs's determinant arithmetic, sorted, filled in
        pairs, clipped to the array, a pair left of the array filling the row up to ``nx +
        end`` as gwcs's negative slice end does), in one compiled loop instead of gwcs's Python loop
        that builds an ``Edge`` per scan line (~0.1 s per full frame). stcal's skymatch calls
        it once per overlapping pair of images.
    """
    _scan_polygon(*_scan_args(polygon), int(polygon._shifty), data)
    return data


def _scan_args(polygon) -> tuple:
    """``_scan_polygon``'s arguments from a gwcs Polygon, up to the row shift."""
    v = np.asarray(polygon._vertices, np.int64)
    bx, by, bw, bh = (int(b) for b in polygon._bbox)
    return np.ascontiguousarray(v[:, 0]), np.ascontiguousarray(v[:, 1]), bx, by, bw, bh, int(polygon._shiftx)


@numba.njit(cache=True)
def _masked_values(bits, swap, good, fill, row0):
    """Gather the float32 words of ``bits`` (byte-swapped with ``swap``) where ``good`` and ``fill``, row-major."""
    ny, nx = fill.shape
    out = np.empty(int(fill.sum()), np.uint32)
    k = 0
    for r in range(ny):
        for x in range(nx):
            if fill[r, x] and good[row0 + r, x]:
                b = bits[row0 + r, x]
                if swap:
                    b = (((b & 0xFF) << 24) | ((b & 0xFF00) << 8) | ((b >> 8) & 0xFF00) | (b >> 24))
                out[k] = b
                k += 1
    return out[:k].view(np.float32)


def overlap_values(image: np.ndarray, good: np.ndarray, polygons: list) -> np.ndarray:
    """Select the good pixel values inside gwcs pixel polygons, as stcal's ``SkyImage.calc_sky`` selects them.

    Parameters
    ----------
    image : numpy.ndarray
        float (ny, nx), the SCI array (any byte order).
    good : numpy.ndarray
        bool (ny, nx), the pixels usable for the sky.
    polygons : list of gwcs.region.Polygon
        The overlap polygons in ``image``'s pixel coordinates.

    Returns
    -------
    numpy.ndarray
        float32 (n,): ``image[fill & good]`` with ``fill`` the union of the polygons' gwcs scans
        (:func:`scan_polygon`), in row-major order. Only the rows the polygons' scan lines reach
        are masked (stcal masks the whole array, and copies a big-endian SCI twice).
    """
    ny = image.shape[0]
    if image.dtype.kind == "f" and image.dtype.itemsize == 4 and len(polygons) == 1:
        p = polygons[0]             # one polygon: its spans gathered directly (no mask)
        spans = _polygon_spans(*_scan_args(p), int(p._shifty), ny, image.shape[1])
        bits = np.ascontiguousarray(image).view(np.uint32)
        values, ok = _gather_spans(*spans, bits, not image.dtype.isnative, np.ascontiguousarray(good))
        if ok:
            return values
    rows = [(int(p._bbox[1]) + int(p._shifty), int(p._bbox[1]) + int(p._bbox[3]) + int(p._shifty)) for p in polygons]
    y0 = max(0, min(r[0] for r in rows))
    y1 = min(ny - 1, max(r[1] for r in rows))
    if y1 < y0:
        return np.empty(0, np.float32)
    fill = np.zeros((y1 + 1 - y0, image.shape[1]), bool)
    for p in polygons:
        _scan_polygon(*_scan_args(p), int(p._shifty) - y0, fill)
    if image.dtype.kind != "f" or image.dtype.itemsize != 4:
        image, y0, good = image[y0:y1 + 1].astype(np.float32), 0, good[y0:y1 + 1]
    swap = not image.dtype.isnative
    bits = np.ascontiguousarray(image).view(np.uint32)      # the raw words, swapped in the kernel
    return _masked_values(bits, swap, np.ascontiguousarray(good), fill, y0)


def _overlap_sky(image, other, delta: bool):
    """Compute stcal's ``SkyImage.calc_sky(overlap=other)``, the pixels taken by :func:`overlap_values`.

    The same overlap (``image``'s spherical polygon intersected with ``other``'s, or with each
    member of a ``SkyGroup``, empty intersections skipped), its area (the summed ``area()``),
    the same pixel polygons (the vertices through ``image``'s inverse WCS, polygons of fewer than
    four vertices skipped) and the same statistic; (None, 0, 0.0) where stcal gives no sky.
    """
    from gwcs import region
    from stcal.skymatch import SkyImage

    area, outlines = 0.0, []
    for part in ([other] if isinstance(other, SkyImage) else list(other)):
        inter = image.intersection(part)
        a = np.fabs(inter.area())
        if a == 0.0 and not isinstance(other, SkyImage):
            continue
        area += a
        outlines.extend(inter.to_radec())
    if area == 0.0:
        return None, 0, 0.0
    polygons = []
    for ra, dec in outlines:
        if len(ra) >= 4:
            x, y = image._wcs_inv(ra, dec, with_bounding_box=False)
            polygons.append(region.Polygon(True, list(zip(x, y, strict=True))))
    data = overlap_values(image.image, image.mask, polygons) if polygons else np.empty(0, np.float32)
    if data.size < 1:
        return None, 0, 0.0
    try:
        sky, npix = image.skystat(data)
    except ValueError:
        return None, 0, 0.0
    if not np.isfinite(sky):
        return None, 0, 0.0
    return (sky - image.sky if delta else sky), npix, area


def _sky_image_class():
    """Make stcal's ``SkyImage`` whose overlap statistics use :func:`_overlap_sky` (the whole-image sky is stcal's)."""
    from stcal.skymatch import SkyImage

    class OverlapSkyImage(SkyImage):
        def calc_sky(self, overlap=None, delta=True):
            if overlap is None:
                return super().calc_sky(overlap=None, delta=delta)
            return _overlap_sky(self, overlap, delta)

    return OverlapSkyImage


def _inverse(wcs):
    """``wcs.invert`` as stcal calls it (sky to pixel, no bounding box), its transform built once.

    gwcs builds the inverse compound model anew on each call (~20 ms, once per overlapping
    pair and side); without units or a bounding box, ``invert`` is that transform evaluated
    with NaN fill, so it is built once per member. With units or no analytic inverse, gwcs's own.
    """
    try:
        transform = wcs.backward_transform
    except NotImplementedError:
        return wcs.invert
    if transform.uses_quantity:
        return wcs.invert

    def invert(ra, dec, with_bounding_box=True):
        if with_bounding_box:
            return wcs.invert(ra, dec)
        return transform(ra, dec, with_bounding_box=False, fill_value=np.nan)

    return invert


def _sky_image(model, index: int, stats, params: dict, dqbits):
    from astropy.nddata.bitmask import bitfield_to_boolean_mask

    good = np.isfinite(model.data)
    if dqbits is not None:
        good &= bitfield_to_boolean_mask(model.dq, dqbits, good_mask_value=True, dtype="bool")
    bg = model.meta.background
    if bg.subtracted is not None and bg.subtracted != params["subtract"]:
        raise InputError(f"{model.meta.filename}: skymatch's 'subtract' ({params['subtract']}) disagrees with "
                         f"the background already recorded (subtracted={bg.subtracted})")
    # jwst's step passes a deep copy; stcal only calls the two methods, which leave the gwcs as
    # it is, so the member's own is used (a copy costs ~0.12 s per member)
    wcs = model.meta.wcs
    im = _sky_image_class()(image=model.data, wcs_fwd=wcs.__call__, wcs_inv=_inverse(wcs), mask=good,
                  sky_id=model.meta.filename, skystat=stats, stepsize=params["stepsize"], meta={"index": index})
    if params["subtract"]:
        im.sky = bg.level if bg.subtracted else 0.0
    return im


def match_sky(models: list, groups: list[list[int]], params: dict) -> list[str]:
    """Compute (and optionally subtract) the sky of each image, in place.

    Parameters
    ----------
    models : list of ImageModel
        The members: SCI float32 (ny, nx) (MJy/sr), DQ uint32, gwcs ``meta.wcs``.
    groups : list of list of int
        Indices of ``models`` per exposure group (images of one exposure share one sky).
    params : dict
        The step's resolved parameters (jwst's names: skymethod, match_down, subtract,
        stepsize, skystat, dqbits, lower, upper, nclip, lsigma, usigma, binwidth).

    Returns
    -------
    list of str
        "COMPLETE" or "SKIPPED" per model (SKIPPED where no valid sky could be computed).
    """
    from astropy.nddata.bitmask import interpret_bit_flags
    from stcal.skymatch import SkyGroup, skymatch
    from stdatamodels.jwst.datamodels.dqflags import pixel

    dqbits = interpret_bit_flags(params["dqbits"], flag_name_map=pixel)
    stats = SkyStatistic(params["skystat"], params["lower"], params["upper"], params["nclip"], params["lsigma"],
                         params["usigma"], params["binwidth"])
    images = []
    for gid, inds in enumerate(groups):
        sky = [_sky_image(models[i], i, stats, params, dqbits) for i in inds]
        images.extend(sky) if len(sky) == 1 else images.append(SkyGroup(sky, sky_id=gid))
    skymatch(images, skymethod=params["skymethod"], match_down=params["match_down"], subtract=params["subtract"])
    status = ["SKIPPED"] * len(models)
    for im in [g for item in images for g in (item if isinstance(item, SkyGroup) else [item])]:
        i = im.meta["index"]
        if im.is_sky_valid:
            bg = models[i].meta.background
            bg.method, bg.level, bg.subtracted = str(params["skymethod"]), im.sky, params["subtract"]
            if params["subtract"]:
                models[i].data[...] = im.image[...]
            status[i] = "COMPLETE"
    return status


def _run(state, ctx) -> str:
    p = dict(ctx.params)
    if p["skymethod"] == "user":
        raise InputError("skymatch: skymethod 'user' (sky values from a skylist file) is not implemented by the "
                         "calib engine; use the jwst engine")
    if len(state.models) < 2 and p["skymethod"] == "match":
        return "SKIPPED"            # jwst turns skymatch off for one image with 'match'
    with state.library:
        groups = [list(v) for v in state.library.group_indices.values()]
    status = match_sky(state.models, groups, p)
    for model, s in zip(state.models, status, strict=True):
        model.meta.cal_step.skymatch = s
    return "COMPLETE" if "COMPLETE" in status else "SKIPPED"


STEP = StepSpec(
    name="skymatch", jwst_class="jwst.skymatch.SkyMatchStep", run=_run,
    params=(Param("skymethod", "option", "match", choices=("local", "global", "match", "global+match", "user"),
                  doc="how the sky is computed"),
            Param("match_down", "boolean", True, doc="match skies to the lowest"),
            Param("subtract", "boolean", False, doc="subtract the sky from SCI"),
            Param("skylist", "string", None, support=SUPPORT_DEFAULT_ONLY, doc="user sky values (skymethod user)"),
            Param("stepsize", "integer", None, doc="largest vertex separation of the bounding polygon, px"),
            Param("skystat", "option", "mode", choices=("median", "midpt", "mean", "mode"), doc="sky statistic"),
            Param("dqbits", "string", "~DO_NOT_USE+NON_SCIENCE", doc="DQ bits of good pixels"),
            Param("lower", "float", None, doc="lowest good pixel value, MJy/sr"),
            Param("upper", "float", None, doc="highest good pixel value, MJy/sr"),
            Param("nclip", "integer", 5, min=0, doc="clipping iterations"),
            Param("lsigma", "float", 4.0, min=0.0, doc="lower clipping limit, sigma"),
            Param("usigma", "float", 4.0, min=0.0, doc="upper clipping limit, sigma"),
            Param("binwidth", "float", 0.1, min=0.0, doc="bin width of mode/midpt, sigma"),
            Param("in_memory", "boolean", True, support=SUPPORT_IGNORED, doc="keep models in memory")),
    doc="stcal's sky statistics and matching over the members' overlaps (as jwst's skymatch).",
)
