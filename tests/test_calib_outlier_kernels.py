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
