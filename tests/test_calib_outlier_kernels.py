"""calib's numba outlier flagging and skymatch polygon fill against stcal's and gwcs's code (the oracles jwst runs)."""
from __future__ import annotations

import numpy as np
import pytest

from calib.steps.outlier_detection import flag_resampled_crs


def _member(seed: int, shape=(180, 230)):
    rng = np.random.default_rng(seed)
    blot = rng.normal(1.0, 0.05, shape).astype(np.float32)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for x, y in rng.uniform(0, shape[1], (15, 2)) * [1, shape[0] / shape[1]]:
        blot += (20 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 3.0)).astype(np.float32)
    err = rng.uniform(0.02, 0.08, shape).astype(np.float32)
    sci = (blot + rng.normal(0, 1, shape).astype(np.float32) * err).astype(np.float32)
    hits = rng.integers(0, sci.size, 300)
    sci.flat[hits] += rng.uniform(0.1, 50, hits.size).astype(np.float32)          # cosmic rays
    blot[rng.random(shape) < 0.01] = np.nan          # no median there
    sci[rng.random(shape) < 0.01] = np.nan
    err[rng.random(shape) < 0.01] = np.nan
    err.flat[rng.integers(0, sci.size, 5)] = np.inf
    blot[:, :3] = np.nan                               # an uncovered edge
    return sci, err, blot


@pytest.mark.filterwarnings("ignore::RuntimeWarning")     # stcal on the inf ERR
@pytest.mark.parametrize("backg", [0.0, 0.013, np.float64(0.013), np.float32(0.2)])
@pytest.mark.parametrize("seed", [0, 1])
def test_flag_resampled_crs_equals_stcal(seed, backg):
    from stcal.outlier_detection.utils import flag_resampled_crs as stcal_flag

    sci, err, blot = _member(seed)
    ref = stcal_flag(sci, err, blot, 5.0, 4.0, 1.2, 0.7, backg)
    ours = flag_resampled_crs(sci, err, blot, 5.0, 4.0, 1.2, 0.7, backg)
    assert 100 < ref.sum() < ref.size // 4
    np.testing.assert_array_equal(ours, ref)


def _random_polygon(rng, n, cx, cy, r):
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    rad = rng.uniform(0.5 * r, r, n)
    pts = [(cx + a * np.cos(t), cy + a * np.sin(t)) for a, t in zip(rad, ang, strict=True)]
    return [*pts, pts[0]]


@pytest.mark.parametrize("seed", range(6))
def test_scan_polygon_equals_gwcs(seed):
    """calib's polygon fill (skymatch's overlap masks) against gwcs's ``Polygon.scan``."""
    from gwcs import region

    from calib.steps.skymatch import scan_polygon

    rng = np.random.default_rng(seed)
    shape = (300, 420)
    for k in range(20):
        cx, cy = rng.uniform(-100, 500), rng.uniform(-100, 400)      # some partly or wholly outside
        verts = _random_polygon(rng, int(rng.integers(3, 9)), cx, cy, rng.uniform(3, 300))
        if k % 5 == 0:                                               # axis-aligned: horizontal edges
            x0, y0, x1, y1 = cx, cy, cx + rng.uniform(1, 200), cy + rng.uniform(1, 200)
            verts = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]
        ref = region.Polygon(True, verts).scan(np.zeros(shape, bool))
        ours = scan_polygon(region.Polygon(True, verts), np.zeros(shape, bool))
        np.testing.assert_array_equal(ours, ref)


def test_scan_polygon_left_of_the_array_as_gwcs():
    """A crossing pair left of the array: gwcs's negative slice end fills most of the row; so does ours."""
    from gwcs import region

    from calib.steps.skymatch import scan_polygon

    verts = [(-10.2, 5.1), (50.7, 8.3), (40.1, 40.9), (-12.5, 30.2), (-10.2, 5.1)]
    ref = region.Polygon(True, verts).scan(np.zeros((60, 60), bool))
    assert ref[5].sum() > 40                 # the quirk is there
    np.testing.assert_array_equal(scan_polygon(region.Polygon(True, verts), np.zeros((60, 60), bool)), ref)


def _gwcs_pair(shape):
    """An input gwcs with a polynomial distortion and a bounding box inside ``shape``, and an affine output gwcs."""
    from astropy.modeling import models
    from gwcs import coordinate_frames as cf
    from gwcs import wcs

    det = cf.Frame2D(name="detector")
    sky = cf.Frame2D(name="world")
    px = models.Polynomial2D(3, c0_0=3.1, c1_0=1.02, c0_1=0.013, c2_0=2e-5, c1_1=-1.1e-5, c0_2=3e-6, c3_0=1e-8)
    py = models.Polynomial2D(3, c0_0=-4.7, c1_0=-0.011, c0_1=0.99, c2_0=-1e-6, c1_1=2.2e-5, c0_2=-1.3e-5, c0_3=2e-9)
    fwd = models.Mapping((0, 1, 0, 1)) | px & py
    win = wcs.WCS([(det, fwd), (sky, None)])
    win.bounding_box = ((2.5, shape[1] - 4.2), (1.3, shape[0] - 1.5))
    aff = models.AffineTransformation2D(matrix=[[0.9, 0.05], [-0.04, 0.95]], translation=[-12.0, 7.5])
    wout = wcs.WCS([(cf.Frame2D(name="detector"), aff.inverse), (cf.Frame2D(name="world"), None)])
    return win, wout


def test_blot_median_equals_blot_linear_on_the_pixel_map():
    """The blot evaluated row by row from the pixel map's splines equals ``blot_linear`` on
    ``pixel_map``'s whole map bit for bit (positions off the median and outside the input's
    bounding box included)."""
    from calib.steps.outlier_detection import blot_linear, blot_median
    from calib.steps.resample import pixel_map

    shape = (300, 410)
    win, wout = _gwcs_pair(shape)
    median = np.random.default_rng(2).normal(1.0, 0.3, (280, 380)).astype(np.float32)
    median[100:120, 50:60] = np.nan
    pixmap, err, step = pixel_map(win, wout, shape)
    assert step > 2 and np.isnan(pixmap).any()           # an interpolated map with unmapped pixels
    expected = blot_linear(median, pixmap)
    ours = blot_median(median, win, wout, shape)
    assert ours.tobytes() == expected.tobytes()
    assert np.isnan(ours).sum() > 1000 and np.isfinite(ours).sum() > 50000


@pytest.mark.parametrize("order", ["<", ">"])
def test_flags_and_match_nans_equal_jwsts(order):
    """The one-pass flagging + NaN/DO_NOT_USE matching on the arrays' bits gives the bytes of
    ``dq |= mask * flag`` and jwst's ``match_nans_and_flags`` (native and big-endian arrays as read
    from FITS, NaN with other payloads, NaN in one array only, DO_NOT_USE without NaN); the no-op
    check says so only when nothing would change."""
    from jwst.lib.pipe_utils import match_nans_and_flags
    from stdatamodels.jwst import datamodels

    from calib.steps.resample import match_changes_nothing, match_nans_and_flags_fast

    rng = np.random.default_rng(4)
    shape = (64, 80)
    names = ("data", "err", "var_rnoise", "var_poisson", "var_flat")
    m = datamodels.ImageModel(shape)
    for k, n in enumerate(names):
        a = rng.normal(1.0, 0.1, shape).astype(f"{order}f4")
        a[rng.random(shape) < 0.01] = np.nan
        a.view(f"{order}u4")[rng.random(shape) < 0.005] = 0xFFC00000 + k      # other NaN payloads
        setattr(m, n, a)
    m.dq = rng.choice(np.array([0, 1, 4, 1 << 13], np.uint32), shape).astype(f"{order}u4")
    mask = rng.random(shape) < 0.03
    flag = 1 | 16
    assert not match_changes_nothing(m)
    ref = m.copy()
    ref.dq |= mask.astype(np.uint32) * np.uint32(flag)
    match_nans_and_flags(ref)
    assert match_changes_nothing(ref)
    assert match_nans_and_flags_fast(m, mask, flag)
    for n in ("dq", *names):
        a, b = getattr(m, n), getattr(ref, n)
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), n
    assert match_changes_nothing(m)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_weight_threshold_equals_stcals():
    """The numba sigma clipping of the singles' weights gives stcal's ``compute_weight_threshold``
    bit for bit (numpy's float32 median and pairwise sums; odd and even counts, short and long
    arrays, zeros, NaN and inf left out, outliers clipped over several iterations)."""
    from stcal.outlier_detection.utils import compute_weight_threshold

    from calib.steps.outlier_detection import _pairwise_sum_f32, weight_threshold

    rng = np.random.default_rng(11)
    for n in (*range(1, 40), 127, 128, 129, 255, 256, 257, 1000, 4099, 100_003, 1_000_000):
        a = rng.random(n).astype(np.float32) * np.float32(10 ** rng.uniform(-3, 3))
        assert _pairwise_sum_f32(a, 0, n) == np.sum(a), n
    for k, n in enumerate((1, 2, 3, 8, 9, 130, 1001, 4096, 65_537, 2_000_001)):
        w = rng.gamma(20.0, 1.0, n).astype(np.float32) * np.float32(10 ** rng.uniform(-4, 4))
        w[rng.random(n) < 0.2] = 0.0
        w[rng.random(n) < 0.01] *= 50.0                  # high tails: clipped
        w[rng.random(n) < 0.01] *= 0.01                  # low tails
        if k % 2:
            w[rng.random(n) < 0.01] = np.nan
            w[:1] = np.inf
        w = w.reshape(1, n) if k % 3 == 0 else w
        ref = compute_weight_threshold(w, 0.7)
        ours = weight_threshold(w, 0.7)
        assert (np.isnan(ref) and np.isnan(ours)) or ours == ref, (n, ours, ref)
    assert np.isnan(weight_threshold(np.zeros((4, 5), np.float32), 0.7))
