"""calib's numba outlier flagging against stcal's ``flag_resampled_crs`` (the oracle jwst runs)."""
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
