"""Numba kernels for the source finding that jwst's tweakreg and source_catalog do with photutils.

Two full-frame passes of photutils 3.0 cost most of tweakreg's time on a NIRCam full frame,
both pure array work whose result is fully specified by photutils' documentation and code:

* :func:`zoom_mesh`: the upsampling of ``Background2D``'s low-resolution background (and
  RMS) mesh to the image size, which photutils does with ``scipy.ndimage.zoom`` (order-3
  spline, mode "reflect", ``grid_mode=True``, then clipped to the mesh's range): scipy
  evaluates 16 spline terms per output pixel in a generic N-d loop (~0.45 s per full-frame
  array); here the same tensor-product spline is evaluated separably, first along x for
  each mesh row, then along y (Unser, Aldroubi & Eden 1991, "Fast B-spline transforms for
  continuous image representation and interpolation"; the coefficients are scipy's own
  ``spline_filter`` of the mesh). Equal to scipy's result up to float64 rounding
  (|difference| <= 1e-12 x the mesh's range, tested).
* :func:`circular_peaks`: the local-maximum mask of ``find_peaks(min_separation=r)`` (the
  peak finder of ``IRAFStarFinder`` and ``DAOStarFinder``): a pixel is a peak when it
  equals the maximum of the circular footprint of radius ``r`` about it (0.0 included
  when the footprint's bounding square leaves the image, as photutils does). photutils
  finds candidates with two box maximum filters and checks the ~200,000 candidates a
  noisy full frame has against the circle in a Python loop (~1.6 s); here every pixel is
  checked in compiled code. Only comparisons: the mask is identical (tested against
  photutils' own function).
* :func:`filter_constant` and :func:`convolve_fill`: the convolutions of the star finders
  (scipy's ``ndimage.convolve``, constant mode) and of source_catalog (astropy's
  ``convolve`` with NaN interpolation), the same float64 sums in the same order, each
  kernel tap added to a whole row of sums at once (vectorized): identical values.
* :func:`single_peak`: whether a segment has one peak only, for ``deblend_sources``:
  photutils deblends each source by detecting it at 32 thresholds (``n_levels``), one
  ``scipy.ndimage.label`` each (~1 ms per source); when every pixel of the segment but one
  has a strictly brighter neighbour (in the connectivity's footprint, inside the segment),
  each set of pixels above a threshold is connected (follow the brighter neighbours up to
  the one peak), every threshold finds at most one source, and photutils leaves the source
  as it is: that answer is then given without the 32 labellings (:func:`fast_deblending`).
"""
from __future__ import annotations

import contextlib

import numba
import numpy as np

__all__ = ["zoom_mesh", "MeshZoom", "circular_peaks", "fast_peak_finding", "single_peak", "fast_deblending",
           "filter_constant", "fast_star_filter", "convolve_fill"]


@numba.njit(cache=True)
def _axis_weights(n_out, n_in, zoom, idx, w):
    """Fill the indices and cubic B-spline weights of an order-3 grid-mode zoom along one axis.

    Output sample k sits at input coordinate ``(k + 0.5) zoom - 0.5``; its four
    coefficients are at ``floor(c) - 1 .. floor(c) + 2``, reflected about the edges
    (half-sample symmetric, scipy's "reflect": ``-1 -> 0``, ``n -> n - 1``) outside ``0 .. n - 1``.
    """
    for k in range(n_out):
        c = (k + 0.5) * zoom - 0.5
        f = np.floor(c)
        t = c - f
        start = int(f) - 1
        w[k, 0] = (1.0 - t) ** 3 / 6.0
        w[k, 1] = (3.0 * t * t * (t - 2.0) + 4.0) / 6.0
        w[k, 2] = (-3.0 * t * t * t + 3.0 * t * t + 3.0 * t + 1.0) / 6.0
        w[k, 3] = t * t * t / 6.0
        for h in range(4):
            i = (start + h) % (2 * n_in)         # half-sample symmetric: -1 -> 0, n -> n - 1
            if i >= n_in:
                i = 2 * n_in - 1 - i
            idx[k, h] = i


@numba.njit(cache=True, parallel=True)
def _zoom_separable(coef, iy, wy, ix, wx, lo, hi, out):
    my, mx = coef.shape
    ny, nx = out.shape
    rows = np.empty((my, nx))
    for r in numba.prange(my):
        for i in range(nx):
            acc = 0.0
            for h in range(4):
                acc += wx[i, h] * coef[r, ix[i, h]]
            rows[r, i] = acc
    for j in numba.prange(ny):
        for i in range(nx):
            acc = 0.0
            for h in range(4):
                acc += wy[j, h] * rows[iy[j, h], i]
            out[j, i] = min(max(acc, lo), hi)


def zoom_mesh(mesh: np.ndarray, box_size, shape: tuple[int, int], dtype=None) -> np.ndarray:
    """Upsample a Background2D mesh to the image, as photutils' zoom interpolator does.

    Parameters
    ----------
    mesh : numpy.ndarray
        float (my, mx): the low-resolution background or RMS (units of the image).
    box_size : int or tuple of int
        Mesh box size, px (one value or (y, x)); the zoom factor.
    shape : tuple of int
        (ny, nx) of the image; the zoomed mesh (my * box_y, mx * box_x) is cropped to it.
    dtype : numpy.dtype, optional
        Output dtype when the mesh is constant (photutils' ``np.full`` case); otherwise the
        mesh's dtype, as ``scipy.ndimage.zoom`` returns.

    Returns
    -------
    numpy.ndarray
        (ny, nx): photutils' ``_BkgZoomInterpolator(order=3, mode="reflect", clip=True)``
        result: the order-3 spline of the mesh (``grid_mode``: mesh values at the centres
        of their boxes), clipped to [min, max] of the mesh.
    """
    from scipy.ndimage import spline_filter

    mesh = np.asarray(mesh)
    if np.ptp(mesh) == 0:
        return np.full(shape, np.min(mesh), dtype=dtype if dtype is not None else mesh.dtype)
    by, bx = (box_size, box_size) if np.ndim(box_size) == 0 else tuple(box_size)
    my, mx = mesh.shape
    ny, nx = min(shape[0], my * int(by)), min(shape[1], mx * int(bx))
    coef = spline_filter(mesh, 3, output=np.float64, mode="reflect")
    zy, zx = np.divide(np.array(mesh.shape), np.array((my * int(by), mx * int(bx))))
    iy, wy = np.empty((ny, 4), np.int64), np.empty((ny, 4))
    ix, wx = np.empty((nx, 4), np.int64), np.empty((nx, 4))
    _axis_weights(ny, my, float(zy), iy, wy)
    _axis_weights(nx, mx, float(zx), ix, wx)
    out = np.empty((ny, nx), mesh.dtype if mesh.dtype.kind == "f" else np.float64)
    _zoom_separable(coef, iy, wy, ix, wx, float(np.min(mesh)), float(np.max(mesh)), out)
    return out


class MeshZoom:
    """An interpolator for ``Background2D`` (its ``interpolator`` attribute): :func:`zoom_mesh`.

    Called as photutils calls its zoom interpolator: ``interp(mesh, shape=, dtype=, box_size=)``.
    """

    def __call__(self, data, **kwargs):
        """Return :func:`zoom_mesh` of ``data`` with photutils' keyword arguments."""
        from astropy.units import Quantity

        data = np.asanyarray(data)
        if isinstance(data, Quantity):
            data = data.value
        return zoom_mesh(data, kwargs["box_size"], kwargs["shape"], kwargs.get("dtype"))


@numba.njit(cache=True, parallel=True)
def _circular_peaks(data, fy, fx, size, half, side_insc, out):
    ny, nx = data.shape
    nf = fy.size
    hi = side_insc // 2
    for y in numba.prange(ny):
        for x in range(nx):
            v = data[y, x]
            # the inscribed square (photutils' candidates), 0.0 beyond the image
            ok = True
            if y - hi < 0 or y + hi >= ny or x - hi < 0 or x + hi >= nx:
                ok = v >= 0.0
            if ok:
                for yy in range(max(y - hi, 0), min(y + hi + 1, ny)):
                    for xx in range(max(x - hi, 0), min(x + hi + 1, nx)):
                        if data[yy, xx] > v:
                            ok = False
                            break
                    if not ok:
                        break
            if ok:
                y0, x0 = y - half, x - half
                if y0 < 0 or y0 + size > ny or x0 < 0 or x0 + size > nx:
                    ok = v >= 0.0
                if ok:
                    for k in range(nf):
                        yy, xx = y0 + fy[k], x0 + fx[k]
                        if 0 <= yy < ny and 0 <= xx < nx and data[yy, xx] > v:
                            ok = False
                            break
            out[y, x] = ok


def circular_peaks(data: np.ndarray, radius: float) -> np.ndarray:
    """Local maxima within a circle of ``radius`` (photutils' ``_fast_circular_peaks``).

    Parameters
    ----------
    data : numpy.ndarray
        float (ny, nx), NaN-free (photutils replaces NaN before).
    radius : float
        Circle radius, px.

    Returns
    -------
    numpy.ndarray
        bool (ny, nx): True where the pixel equals the maximum of the pixels of the circular
        footprint (``idx = arange(-radius, radius + 1)``, ``x**2 + y**2 <= radius**2``,
        centred at index ``len(idx) // 2``) and of its inscribed square, with 0.0 joining
        each maximum where that footprint's square leaves the image: photutils 3.0's
        definition (``photutils.detection.peakfinder._fast_circular_peaks``).
    """
    idx = np.arange(-radius, radius + 1)
    size = len(idx)
    xx, yy = np.meshgrid(idx, idx)
    fy, fx = np.nonzero((xx ** 2 + yy ** 2) <= radius ** 2)
    half = size // 2
    half_side = int(np.floor(radius / np.sqrt(2) - 0.5)) if size % 2 == 0 else int(np.floor(radius / np.sqrt(2)))
    side_insc = max(2 * half_side + 1, 3)
    out = np.empty(data.shape, np.bool_)
    _circular_peaks(np.ascontiguousarray(data), fy.astype(np.int64), fx.astype(np.int64), size, half, side_insc,
                    out)
    return out


@contextlib.contextmanager
def fast_peak_finding():
    """Make photutils' ``find_peaks`` use :func:`circular_peaks` inside the ``with`` block.

    photutils' own function is put back on exit (also on error).
    """
    from photutils.detection import peakfinder

    saved = peakfinder._fast_circular_peaks
    peakfinder._fast_circular_peaks = circular_peaks
    try:
        yield
    finally:
        peakfinder._fast_circular_peaks = saved


@numba.njit(cache=True)
def _count_peaks(data, inside, oy, ox):
    ny, nx = data.shape
    count = 0
    for y in range(ny):
        for x in range(nx):
            v = data[y, x]
            if not inside[y, x] or not v == v:      # NaN: never above a threshold
                continue
            top = True
            for k in range(oy.size):
                yy, xx = y + oy[k], x + ox[k]
                if 0 <= yy < ny and 0 <= xx < nx and inside[yy, xx] and data[yy, xx] > v:
                    top = False
                    break
            if top:
                count += 1
                if count > 1:
                    return count
    return count


def single_peak(data: np.ndarray, inside: np.ndarray, footprint: np.ndarray) -> bool:
    """Whether exactly one pixel of a segment has no strictly brighter neighbour in it.

    Parameters
    ----------
    data : numpy.ndarray
        float (ny, nx): the (convolved) cutout of one source.
    inside : numpy.ndarray
        bool (ny, nx): the source's segment.
    footprint : numpy.ndarray
        bool (3, 3): the pixel connectivity (its centre ignored).

    Returns
    -------
    bool
        True when exactly one non-NaN pixel of ``inside`` has no neighbour (footprint
        offsets, inside the segment) with a larger value. Then ``{data > t} & inside`` is
        connected for every ``t`` (from any of its pixels a path of strictly increasing
        values inside the segment leads to that peak, every step still above ``t``), so
        photutils' multi-thresholding finds at most one source at any threshold.
    """
    fy, fx = np.nonzero(np.asarray(footprint, bool))
    cy, cx = footprint.shape[0] // 2, footprint.shape[1] // 2
    keep = ~((fy == cy) & (fx == cx))
    return _count_peaks(np.asarray(data), np.asarray(inside, np.bool_), (fy[keep] - cy).astype(np.int64),
                        (fx[keep] - cx).astype(np.int64)) == 1


@contextlib.contextmanager
def fast_deblending():
    """Make photutils' per-source deblending skip single-peaked sources inside the block.

    photutils' ``_SingleSourceDeblender.deblend_source`` returns None (source kept whole)
    when no threshold splits the source; for a source that :func:`single_peak` finds
    single-peaked it returns None at once, after computing the thresholds as photutils
    does (their warnings, e.g. a non-positive minimum in exponential mode, are kept).
    Any other source goes through photutils' own method. Put back on exit (also on error).
    """
    from photutils.segmentation import deblend

    cls = deblend._SingleSourceDeblender
    saved = cls.deblend_source

    def deblend_source(self):
        if self.source_min != self.source_max and single_peak(self.data, self.segment_mask, self.footprint):
            self.compute_thresholds()
            return None
        return saved(self)

    cls.deblend_source = deblend_source
    try:
        yield
    finally:
        cls.deblend_source = saved


@numba.njit(cache=True, parallel=True)
def _correlate_constant(data, weights, offy, offx, cval, out):
    ny, nx = data.shape
    for y in numba.prange(ny):
        acc = np.zeros(nx)
        for k in range(weights.size):       # the taps in scipy's order, each added to the whole row
            w = weights[k]
            yy = y + offy[k]
            dx = offx[k]
            z = w * cval                    # a tap beyond the edge
            if yy < 0 or yy >= ny:
                for x in range(nx):
                    acc[x] += z
                continue
            lo, hi = min(max(0, -dx), nx), max(min(nx, nx - dx), 0)
            for x in range(lo):
                acc[x] += z
            if hi > lo:
                src = data[yy, lo + dx:hi + dx]
                a = acc[lo:hi]
                for i in range(hi - lo):
                    a[i] += w * np.float64(src[i])
            for x in range(max(hi, lo), nx):
                acc[x] += z
        for x in range(nx):
            out[y, x] = acc[x]


def filter_constant(data: np.ndarray, kernel: np.ndarray, fill_value: float = 0.0) -> np.ndarray:
    """Convolve as ``scipy.ndimage.convolve(data, kernel, mode="constant", cval=fill_value)`` does.

    photutils' ``_filter_data`` (the star finders' convolution with their zero-sum kernel).
    scipy flips the kernel (odd sizes: no origin shift), keeps the taps with ``|w| >
    DBL_EPSILON`` in C order and sums ``w * value`` in float64 from 0.0, ``w * cval`` for a
    tap outside the array, one output pixel at a time; the sum is rounded to the input's
    float type. Here the same taps are added in the same order, but to a whole row of
    output sums at once (vectorized; every pixel's sum is the same sequence of float64
    operations, so the result is identical; 0.024 against 0.085 s CPU on a 2048 x 2048
    float32 image with the 5 x 5 kernel of FWHM 2.5).

    Parameters
    ----------
    data : numpy.ndarray
        float32 or float64 (ny, nx).
    kernel : numpy.ndarray
        float (ky, kx), odd sizes.
    fill_value : float
        The value beyond the array's edges.

    Returns
    -------
    numpy.ndarray
        (ny, nx), ``data``'s dtype.
    """
    k = np.asarray(kernel, np.float64)
    if data.ndim != 2 or k.ndim != 2 or k.shape[0] % 2 == 0 or k.shape[1] % 2 == 0 or data.dtype.kind != "f":
        raise ValueError("filter_constant: a 2-D float image and a 2-D kernel of odd sizes")
    w = k[::-1, ::-1]
    keep = np.abs(w) > np.finfo(np.float64).eps
    ky, kx = np.nonzero(keep)
    native = data.dtype.newbyteorder("=")
    out = np.empty(data.shape, native)             # scipy's output: the input's type, native order
    _correlate_constant(np.ascontiguousarray(data, dtype=native), np.ascontiguousarray(w[keep]),
                        (ky - k.shape[0] // 2).astype(np.int64), (kx - k.shape[1] // 2).astype(np.int64),
                        float(fill_value), out)
    return out


@numba.njit(cache=True, parallel=True)
def _convolve_fill_nan(data, kernel, interpolate, out):
    ny, nx = data.shape
    ky, kx = kernel.shape
    wy, wx = ky // 2, kx // 2
    for y in numba.prange(ny):
        top = np.zeros(nx)
        bot = np.zeros(nx)
        for a in range(ky):                 # astropy's order: kernel rows, then columns, flipped
            yy = y - wy + a
            for b in range(kx):
                g = kernel[ky - 1 - a, kx - 1 - b]
                dx = b - wx
                z = 0.0 * g                 # the fill value 0.0 beyond the edges
                if yy < 0 or yy >= ny:
                    for x in range(nx):
                        top[x] += z
                        bot[x] += g
                    continue
                lo, hi = min(max(0, -dx), nx), max(min(nx, nx - dx), 0)
                for x in range(lo):
                    top[x] += z
                    bot[x] += g
                if hi > lo:
                    src = data[yy, lo + dx:hi + dx]
                    t = top[lo:hi]
                    s = bot[lo:hi]
                    if interpolate:
                        # a NaN is skipped as adding 0.0 to both sums: the same values, since a
                        # sum started at +0.0 is never -0.0 (x + 0.0 == x for every other x)
                        for i in range(hi - lo):
                            v = src[i]
                            keep = v == v
                            t[i] += (v if keep else 0.0) * g
                            s[i] += g if keep else 0.0
                    else:
                        for i in range(hi - lo):
                            t[i] += src[i] * g
                for x in range(max(hi, lo), nx):
                    top[x] += z
                    bot[x] += g
        if interpolate:
            for x in range(nx):
                out[y, x] = data[y, x] if bot[x] == 0 else top[x] / bot[x]
        else:
            for x in range(nx):
                out[y, x] = top[x]


def convolve_fill(data: np.ndarray, kernel: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """``astropy.convolution.convolve(data, kernel, mask=mask)`` with its defaults, in numba.

    astropy (boundary "fill" with 0.0, ``nan_treatment="interpolate"``,
    ``normalize_kernel=True``): masked pixels become NaN; the image, in float64, is padded
    with 0.0; each output pixel sums ``value * weight`` over the flipped kernel (rows, then
    columns) from 0.0, skipping NaN values, whose weights are left out of the normalization
    (``top / bot``; the pixel itself where ``bot`` is 0); without any NaN, ``top`` divided by
    the kernel's sum afterwards. The result is rounded to the input's float type. Here the
    same sums, term by term in the same order, are made for a whole row of pixels at once
    (vectorized; a NaN adds 0.0 to both sums, which leaves them as they are: a sum started
    at +0.0 is never -0.0): identical values, ~2.5x faster on one core than astropy's C
    loop (0.21 against 0.54 s on a 2300 x 2300 mosaic with a 7 x 7 kernel).

    Parameters
    ----------
    data : numpy.ndarray
        float (ny, nx).
    kernel : numpy.ndarray or astropy.convolution.Kernel2D
        (ky, kx), odd sizes, sum not ~0.
    mask : numpy.ndarray, optional
        bool (ny, nx), True where the pixel is left out (made NaN).

    Returns
    -------
    numpy.ndarray
        (ny, nx), ``data``'s float dtype.
    """
    k = np.array(getattr(kernel, "array", kernel), np.float64)
    if data.ndim != 2 or k.ndim != 2 or k.shape[0] % 2 == 0 or k.shape[1] % 2 == 0 or data.dtype.kind != "f":
        raise ValueError("convolve_fill: a 2-D float image and a 2-D kernel of odd sizes")
    arr = np.array(data, np.float64)
    if mask is not None:
        arr[mask] = np.nan
    interpolate = bool(np.isnan(arr.sum()))
    ksum = k.sum()
    if ksum < 1.0 / 100 or np.isclose(ksum, 0, atol=1e-8):       # astropy's MAX_NORMALIZATION, zero tolerance
        raise ValueError("convolve_fill: the kernel cannot be normalized")
    res = np.empty(arr.shape, np.float64)
    _convolve_fill_nan(arr, k, interpolate, res)
    if not interpolate:
        res /= ksum
    return res.astype(data.dtype, copy=False)


@contextlib.contextmanager
def fast_star_filter():
    """Make ``IRAFStarFinder`` convolve with :func:`filter_constant` inside the ``with`` block.

    Only the constant mode photutils' star finder uses is taken over; any other call goes
    to photutils' own ``_filter_data``, which is put back on exit (also on error).
    """
    from photutils.detection import irafstarfinder

    saved = irafstarfinder._filter_data

    def _filter_data(data, kernel, *, mode="constant", fill_value=0.0, check_normalization=False):
        k = getattr(kernel, "array", kernel)
        if (mode == "constant" and not check_normalization and isinstance(data, np.ndarray)
                and type(data) is np.ndarray and data.ndim == 2 and data.dtype.kind == "f"
                and k is not None and np.ndim(k) == 2 and all(s % 2 == 1 for s in np.shape(k))):
            return filter_constant(data, k, fill_value)
        return saved(data, kernel, mode=mode, fill_value=fill_value, check_normalization=check_normalization)

    irafstarfinder._filter_data = _filter_data
    try:
        yield
    finally:
        irafstarfinder._filter_data = saved
