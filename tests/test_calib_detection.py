"""calib.detection's numba kernels against the photutils/scipy code they stand in for."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from calib.detection import MeshZoom, circular_peaks, fast_peak_finding, zoom_mesh


@pytest.mark.parametrize(("mesh_shape", "box", "shape"), [
    ((6, 6), 400, (2048, 2048)),           # tweakreg's 400-px meshes on a NIRCam full frame
    ((9, 7), 64, (560, 440)),
    ((3, 5), 7, (20, 33)),
    ((1, 4), 5, (5, 20)),                  # one mesh row: the reflection of a single sample
    ((2, 2), 3, (6, 6)),
    ((6, 6), (400, 300), (2048, 1800)),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zoom_mesh_equals_photutils_zoom_interpolator(mesh_shape, box, shape, dtype):
    from photutils.background.interpolators import _BkgZoomInterpolator

    rng = np.random.default_rng(7)
    mesh = (rng.normal(size=mesh_shape) * 3 + 10).astype(dtype)
    ref = _BkgZoomInterpolator()(mesh, shape=shape, dtype=dtype, box_size=box)
    out = zoom_mesh(mesh, box, shape, dtype)
    assert out.dtype == ref.dtype and out.shape == ref.shape
    if dtype == np.float32:
        np.testing.assert_array_equal(out, ref)        # rounded to float32 from the same doubles
    else:
        assert np.abs(out - ref).max() <= 1e-12 * np.ptp(mesh)
    assert out.min() >= mesh.min() and out.max() <= mesh.max()        # clipped as photutils


def test_zoom_mesh_constant_mesh():
    out = zoom_mesh(np.full((3, 3), 2.5, np.float32), 10, (25, 28), np.float32)
    assert out.shape == (25, 28) and out.dtype == np.float32 and (out == 2.5).all()


def test_background2d_with_mesh_zoom_equals_photutils():
    from photutils.background import Background2D

    rng = np.random.default_rng(3)
    data = rng.normal(5.0, 1.0, (300, 420)).astype(np.float32)
    data[100:110, 50:60] += 40.0
    mask = np.zeros(data.shape, bool)
    mask[:, :17] = True
    ref = Background2D(data, 64, filter_size=(3, 3), coverage_mask=mask)
    ours = Background2D(data, 64, filter_size=(3, 3), coverage_mask=mask)
    ours.interpolator = MeshZoom()
    np.testing.assert_array_equal(ours.background, ref.background)
    np.testing.assert_array_equal(ours.background_rms, ref.background_rms)


@pytest.mark.parametrize("radius", [1.0, 1.5, 2.0, 2.5, 3.0, 4.2])
def test_circular_peaks_equals_photutils(radius):
    from photutils.detection.peakfinder import _fast_circular_peaks

    rng = np.random.default_rng(1)
    data = rng.normal(size=(300, 400)).astype(np.float32)
    data[:3] = -1.0                         # negative rows at the edge: photutils' cval 0.0 there
    data[100:110, 100:110] = 5.0            # a plateau: ties are peaks
    data[200, 0] = 9.0                      # a peak on the edge
    np.testing.assert_array_equal(circular_peaks(data, radius), _fast_circular_peaks(data, radius))


def test_iraf_star_finder_same_catalog_with_fast_peaks():
    from photutils.detection import IRAFStarFinder
    from photutils.detection import peakfinder

    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[:256, :300]
    data = rng.normal(0.0, 1.0, yy.shape)
    for x, y, f in zip(rng.uniform(5, 295, 40), rng.uniform(5, 251, 40), rng.uniform(30, 300, 40), strict=True):
        data += f * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.1 ** 2))
    finder = IRAFStarFinder(10.0, 2.5, min_separation=2, sharpness_range=(0.5, 2.0), roundness_range=(0.0, 0.2))
    ref = finder(data)
    saved = peakfinder._fast_circular_peaks
    with fast_peak_finding():
        assert peakfinder._fast_circular_peaks is circular_peaks
        ours = finder(data)
    assert peakfinder._fast_circular_peaks is saved
    assert len(ref) > 10
    for name in ref.colnames:
        np.testing.assert_array_equal(np.asarray(ours[name]), np.asarray(ref[name]))


def _blend_scene(seed, shape=(160, 200), offset=0.0):
    """Gaussian stars (some in touching pairs) on noise, convolved as source finding does."""
    from astropy.convolution import Gaussian2DKernel, convolve

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    img = rng.normal(offset, 1.0, shape)
    for _ in range(40):
        y, x = rng.uniform(5, shape[0] - 5), rng.uniform(5, shape[1] - 5)
        s = rng.uniform(1.0, 2.5)
        for dy, dx, f in ((0, 0, 1.0), (rng.uniform(2, 5), rng.uniform(-4, 4), rng.uniform(0, 0.8))):
            img += rng.uniform(20, 400) * f * np.exp(-((yy - y - dy) ** 2 + (xx - x - dx) ** 2) / (2 * s * s))
    img[rng.integers(0, shape[0], 20), rng.integers(0, shape[1], 20)] = np.nan
    return convolve(img, Gaussian2DKernel(1.2), nan_treatment="fill", fill_value=0.0).astype(np.float32)


@pytest.mark.parametrize("seed", range(4))
def test_single_peak_means_no_threshold_splits(seed):
    """A segment single_peak accepts is one source at each of photutils' thresholds."""
    from photutils.segmentation import detect_sources
    from photutils.segmentation.deblend import _DeblendParams, _SingleSourceDeblender

    from calib.detection import single_peak

    conv = _blend_scene(seed)
    segm = detect_sources(conv, 3.0, 5, connectivity=8)
    seen = {True: 0, False: 0}
    for conn, fp in ((8, np.ones((3, 3), bool)), (4, np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool))):
        params = _DeblendParams(n_pixels=5, footprint=fp, n_levels=32, contrast=0.001, mode="linear")
        for label, slc in zip(segm.labels, segm.slices, strict=True):
            d = _SingleSourceDeblender(conv[slc], segm.data[slc], label, params)
            one = single_peak(conv[slc], segm.data[slc] == label, fp)
            seen[one] += 1
            if one:
                assert all(s is None for s in d.multithreshold()), (conn, label)
    assert seen[True] > 20 and seen[False] > 5          # both kinds are there


@pytest.mark.parametrize("mode", ["exponential", "linear", "sinh"])
@pytest.mark.parametrize("connectivity", [8, 4])
def test_fast_deblending_equals_photutils(mode, connectivity):
    """deblend_sources with the single-peak shortcut: the same segmentation, labels and warnings."""
    from photutils.segmentation import deblend_sources, detect_sources

    from calib.detection import fast_deblending

    conv = _blend_scene(7)
    segm = detect_sources(conv, 2.5, 5, connectivity=connectivity)
    kw = {"n_levels": 32, "contrast": 0.001, "mode": mode, "connectivity": connectivity, "progress_bar": False}
    theirs = deblend_sources(conv, segm, 5, **kw)
    with fast_deblending():
        ours = deblend_sources(conv, segm, 5, **kw)
    assert theirs.n_labels > segm.n_labels               # some sources were split
    np.testing.assert_array_equal(ours.data, theirs.data)
    assert list(ours.labels) == list(theirs.labels)
    assert getattr(ours, "info", None) == getattr(theirs, "info", None)
    assert ours._deblend_label_map.keys() == theirs._deblend_label_map.keys()


def _noisy_image(seed, shape, dtype, nan_fraction=0.0):
    rng = np.random.default_rng(seed)
    img = rng.normal(0.0, 1.0, shape)
    img[rng.random(shape) < 0.01] = 0.0                  # exact zeros (signed-zero arithmetic)
    img[rng.integers(0, shape[0], 8), rng.integers(0, shape[1], 8)] = 50.0
    if nan_fraction:
        img[rng.random(shape) < nan_fraction] = np.nan
        img[:4, :6] = np.nan                             # a hole bigger than the kernel: bot == 0
    return img.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("fwhm", "shape"), [(2.5, (97, 130)), (1.5, (40, 7)), (4.0, (6, 30))])
def test_filter_constant_equals_scipy_convolve(dtype, fwhm, shape):
    """The star finders' convolution (photutils' _filter_data, scipy constant mode): identical values."""
    from photutils.detection.core import _StarFinderKernel
    from photutils.utils._convolution import _filter_data

    from calib.detection import filter_constant

    kernel = _StarFinderKernel(fwhm, sigma_radius=1.5).data
    data = _noisy_image(1, shape, dtype)
    ref = _filter_data(data, kernel, mode="constant", fill_value=0.0)
    ours = filter_constant(data, kernel)
    assert ours.dtype == ref.dtype
    np.testing.assert_array_equal(ours.view(np.uint8), ref.view(np.uint8))      # bits, signed zeros too
    ref = _filter_data(data, kernel[::-1], mode="constant", fill_value=0.5)     # an asymmetric kernel, cval
    np.testing.assert_array_equal(filter_constant(data, kernel[::-1], 0.5).view(np.uint8), ref.view(np.uint8))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nan_fraction", [0.0, 0.05])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize(("sigma", "shape"), [(0.85, (90, 121)), (2.0, (33, 12)), (0.6, (5, 40))])
def test_convolve_fill_equals_astropy_convolve(dtype, nan_fraction, masked, sigma, shape):
    """source_catalog's convolution (astropy's convolve, NaN interpolation, fill 0): identical values."""
    from astropy.convolution import Gaussian2DKernel, convolve

    from calib.detection import convolve_fill

    data = _noisy_image(2, shape, dtype, nan_fraction)
    mask = (np.random.default_rng(3).random(shape) < 0.1) if masked else None
    kernel = Gaussian2DKernel(sigma)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = convolve(data, kernel, mask=mask)
    ours = convolve_fill(data, kernel, mask=mask)
    assert ours.dtype == ref.dtype
    np.testing.assert_array_equal(ours.view(np.uint8), ref.view(np.uint8))
    asym = np.arange(15.0).reshape(3, 5) + 1.0                  # not symmetric: the flip matters
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = convolve(data, asym, mask=mask)
    np.testing.assert_array_equal(convolve_fill(data, asym, mask=mask).view(np.uint8), ref.view(np.uint8))
